//! The cross-modal knowledge bank seen from the user's side: which entries an image and a
//! finding use (their softmax weights z over the bank), the entries both share — the bridge
//! that raised the finding — and what each entry means in words (`bank.json`, written by
//! `radbridge bank describe` from a corpus of report sentences).

use std::path::Path;

use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// One bank entry's weight in a z vector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct EntryWeight {
    pub index: usize,
    pub weight: f32,
}

/// The `k` largest weights of z, largest first.
pub fn top_k(z: &[f32], k: usize) -> Vec<EntryWeight> {
    let mut v: Vec<EntryWeight> = z.iter().enumerate().map(|(index, &weight)| EntryWeight { index, weight }).collect();
    v.sort_by(|a, b| b.weight.partial_cmp(&a.weight).unwrap_or(std::cmp::Ordering::Equal).then(a.index.cmp(&b.index)));
    v.truncate(k);
    v
}

/// Entries that both the image and the finding draw on, ranked by the product of their
/// weights (the share of z_image·z_text each entry contributes), largest first.
pub fn shared(z_image: &[f32], z_text: &[f32], k: usize) -> Vec<SharedEntry> {
    let mut v: Vec<SharedEntry> = z_image
        .iter()
        .zip(z_text)
        .enumerate()
        .map(|(index, (&a, &b))| SharedEntry { index, image_weight: a, text_weight: b, bridge: a * b })
        .collect();
    v.sort_by(|a, b| b.bridge.partial_cmp(&a.bridge).unwrap_or(std::cmp::Ordering::Equal).then(a.index.cmp(&b.index)));
    v.truncate(k);
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct SharedEntry {
    pub index: usize,
    pub image_weight: f32,
    pub text_weight: f32,
    /// image_weight × text_weight.
    pub bridge: f32,
}

/// What a bank entry means: the corpus sentences whose text-side z weights it most.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryDescription {
    pub index: usize,
    /// The strongest sentence, shown as the entry's name.
    pub description: String,
    /// Up to five sentences with their weights, strongest first.
    pub examples: Vec<(String, f32)>,
    /// The sentences of `examples` (same spelling, same order) that came from this site's
    /// feedback (`bank describe --feedback`): confirmed findings and missed-finding texts.
    /// Absent in files written without `--feedback` and in older files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_examples: Vec<String>,
}

impl EntryDescription {
    /// Whether `sentence` (one of `examples`) came from the site's feedback.
    pub fn is_site(&self, sentence: &str) -> bool {
        self.site_examples.iter().any(|s| s == sentence)
    }
}

/// `bank.json`: descriptions of the bank entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BankDescriptions {
    /// The corpus file the descriptions came from (for the bundled corpus, its path in the
    /// repository, `models/corpus/ct-rate-valid-sentences.jsonl`).
    pub corpus: String,
    pub sentences: usize,
    pub entries: Vec<EntryDescription>,
    /// The corpus' license (from its `.meta.json`), e.g. CC-BY-NC-SA 4.0 for CT-RATE text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_license: Option<String>,
    /// Where the corpus' sentences came from (from its `.meta.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus_source: Option<String>,
    /// The site's own sentences that were added to the corpus (`bank describe --feedback`):
    /// the texts of confirmed findings and missed findings in the feedback store, text only.
    /// Counted in `sentences`. Absent without `--feedback` and in older files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_sentences: Vec<String>,
}

/// The bundled sentence corpus: CT-RATE validation reports summarised by `radbridge summarize`.
pub const BUNDLED_CORPUS: &str = "models/corpus/ct-rate-valid-sentences.jsonl";

/// The metadata file of a sentence corpus: `x.jsonl` → `x.meta.json`.
pub fn corpus_meta_path(corpus: &Path) -> std::path::PathBuf {
    let stem = corpus.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    corpus.with_file_name(format!("{stem}.meta.json"))
}

/// A corpus' `.meta.json` (written by `radbridge summarize --corpus-out`), if present.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CorpusMeta {
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub sentences: Option<usize>,
}

impl CorpusMeta {
    pub fn load(corpus: &Path) -> Result<Option<CorpusMeta>, ModelError> {
        let p = corpus_meta_path(corpus);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(ModelError::io(&p, "cannot read"))?;
        Ok(Some(serde_json::from_str(&text).map_err(ModelError::json(&p, "invalid corpus metadata"))?))
    }
}

/// Find the bundled corpus: `$RADBRIDGE_CORPUS`, else `models/corpus/…` beside a model
/// directory's parent, in the current directory or above the executable (a checkout's
/// `target/<profile>/radbridge`), else in the source tree this binary was built from.
pub fn find_bundled_corpus(model_dir: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("RADBRIDGE_CORPUS").map(std::path::PathBuf::from) {
        return Some(p);
    }
    let rel = Path::new(BUNDLED_CORPUS);
    let file = rel.file_name()?;
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(m) = model_dir {
        // models/<name>/ → models/corpus/…
        if let Some(parent) = m.parent() {
            candidates.push(parent.join("corpus").join(file));
        }
    }
    candidates.push(rel.to_path_buf());
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(5) {
            candidates.push(anc.join(rel));
        }
    }
    // The crate lives in crates/radbridge-model: the source tree is two folders up.
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join(rel));
    candidates.into_iter().find(|p| p.is_file())
}

impl BankDescriptions {
    pub fn load(path: &Path) -> Result<Option<BankDescriptions>, ModelError> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(ModelError::io(path, "cannot read"))?;
        Ok(Some(serde_json::from_str(&text).map_err(ModelError::json(path, "invalid bank descriptions"))?))
    }

    pub fn describe(&self, index: usize) -> Option<&str> {
        self.entries.iter().find(|e| e.index == index).map(|e| e.description.as_str())
    }

    /// The site sentences among the examples of entry `index` (empty when none, or when the
    /// entry has no description).
    pub fn site_examples(&self, index: usize) -> &[String] {
        self.entries.iter().find(|e| e.index == index).map(|e| e.site_examples.as_slice()).unwrap_or(&[])
    }

    /// Entries that name at least one site sentence among their examples.
    pub fn entries_with_site_examples(&self) -> usize {
        self.entries.iter().filter(|e| !e.site_examples.is_empty()).count()
    }

    /// Build descriptions from sentences and their z vectors: for each entry, the sentences
    /// with the largest weight on it. Entries no sentence uses get no description. Sentences
    /// without a z vector (and z vectors without a sentence) are ignored.
    pub fn from_weights(corpus: &str, sentences: &[String], z: &[Vec<f32>], bank_size: usize) -> BankDescriptions {
        Self::from_weights_with_site(corpus, sentences, z, bank_size, &[])
    }

    /// [`BankDescriptions::from_weights`] where `site[i]` says that `sentences[i]` came from
    /// the site's feedback (missing entries of `site` count as false): such sentences are listed
    /// in `site_sentences` and, where they are among an entry's examples, in its
    /// `site_examples`.
    pub fn from_weights_with_site(corpus: &str, sentences: &[String], z: &[Vec<f32>], bank_size: usize, site: &[bool]) -> BankDescriptions {
        let is_site = |i: usize| site.get(i).copied().unwrap_or(false);
        let n = sentences.len().min(z.len());
        let mut entries = Vec::new();
        for k in 0..bank_size {
            let mut ranked: Vec<(usize, f32)> =
                z.iter().take(n).enumerate().map(|(i, zi)| (i, zi.get(k).copied().unwrap_or(0.0))).collect();
            ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
            ranked.truncate(5);
            let Some(&(best, w)) = ranked.first() else { continue };
            let Some(description) = sentences.get(best) else { continue };
            if w > 0.0 {
                let examples: Vec<(String, f32)> = ranked.iter().filter_map(|&(i, w)| sentences.get(i).map(|s| (s.clone(), w))).collect();
                let site_examples = ranked.iter().filter(|&&(i, _)| is_site(i)).filter_map(|&(i, _)| sentences.get(i).cloned()).collect();
                entries.push(EntryDescription { index: k, description: description.clone(), examples, site_examples });
            }
        }
        let site_sentences = sentences.iter().enumerate().filter(|&(i, _)| is_site(i)).map(|(_, s)| s.clone()).collect();
        BankDescriptions {
            corpus: corpus.to_string(),
            sentences: sentences.len(),
            entries,
            corpus_license: None,
            corpus_source: None,
            site_sentences,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_and_shared_rank_by_weight() {
        let zi = [0.1, 0.6, 0.3];
        let zt = [0.7, 0.1, 0.2];
        let t = top_k(&zi, 2);
        assert_eq!(t.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2]);
        let s = shared(&zi, &zt, 3);
        // products: 0.07, 0.06, 0.06 → entry 0 first, then the tie broken by index.
        assert_eq!(s.iter().map(|e| e.index).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!((s[0].bridge - 0.07).abs() < 1e-7);
    }

    #[test]
    fn descriptions_pick_the_strongest_sentence_per_entry() {
        let sentences = vec!["pleural effusion".to_string(), "nodule".to_string()];
        let z = vec![vec![0.9, 0.1, 0.0], vec![0.2, 0.8, 0.0]];
        let d = BankDescriptions::from_weights("c.jsonl", &sentences, &z, 3);
        assert_eq!(d.describe(0), Some("pleural effusion"));
        assert_eq!(d.describe(1), Some("nodule"));
        assert_eq!(d.describe(2), None);
        assert!(d.site_sentences.is_empty() && d.entries.iter().all(|e| e.site_examples.is_empty()));
        let j = serde_json::to_value(&d).unwrap();
        assert!(j.get("site_sentences").is_none() && j["entries"][0].get("site_examples").is_none(), "{j}");
    }

    #[test]
    fn site_sentences_are_marked_among_the_examples() {
        let sentences = vec!["pleural effusion".to_string(), "nodule".to_string(), "our words for effusion".to_string()];
        let z = vec![vec![0.9, 0.1, 0.0], vec![0.0, 0.8, 0.0], vec![0.5, 0.0, 0.0]];
        let d = BankDescriptions::from_weights_with_site("c.jsonl", &sentences, &z, 3, &[false, false, true]);
        assert_eq!(d.sentences, 3);
        assert_eq!(d.site_sentences, vec!["our words for effusion".to_string()]);
        assert_eq!(d.site_examples(0), ["our words for effusion".to_string()]);
        // Entry 1 lists every sentence among its (up to five) examples, the site one too.
        assert_eq!(d.site_examples(1), ["our words for effusion".to_string()]);
        assert!(d.site_examples(2).is_empty(), "no description, no site words");
        assert_eq!(d.entries_with_site_examples(), 2);
        let e0 = d.entries.iter().find(|e| e.index == 0).unwrap();
        assert!(e0.is_site("our words for effusion") && !e0.is_site("pleural effusion"));
        assert_eq!(
            e0.examples.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            vec!["pleural effusion", "our words for effusion", "nodule"]
        );
        // Round trip.
        let back: BankDescriptions = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back.site_examples(0), d.site_examples(0));
        assert_eq!(back.site_sentences, d.site_sentences);
    }

    #[test]
    fn old_bank_json_without_site_fields_still_loads() {
        let old = r#"{"corpus":"c.jsonl","sentences":2,"entries":[{"index":4,"description":"nodule","examples":[["nodule",0.5],["mass",0.25]]}]}"#;
        let d: BankDescriptions = serde_json::from_str(old).unwrap();
        assert_eq!(d.describe(4), Some("nodule"));
        assert!(d.site_sentences.is_empty() && d.site_examples(4).is_empty());
    }

    #[test]
    fn mismatched_sentences_and_z_do_not_panic() {
        let sentences = vec!["a".to_string()];
        let z = vec![vec![0.5, 0.5], vec![0.9, 0.9]];
        let d = BankDescriptions::from_weights_with_site("c", &sentences, &z, 4, &[true, true, true]);
        assert_eq!(d.describe(0), Some("a"));
        assert_eq!(d.site_sentences, vec!["a".to_string()]);
        let d = BankDescriptions::from_weights("c", &["a".to_string(), "b".to_string()], &[vec![0.1]], 1);
        assert_eq!(d.entries[0].examples.len(), 1);
    }
}
