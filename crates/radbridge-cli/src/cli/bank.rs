//! `radbridge bank describe`: name each knowledge-bank entry by the corpus sentences that
//! weight it most; writes bank.json into the model directory. With `--feedback`, the site's
//! own sentences (confirmed findings and missed-finding texts from the feedback store) join the
//! corpus and are marked in bank.json (`site_sentences`, per entry `site_examples`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct BankArgs {
    #[command(subcommand)]
    what: BankCommand,
}

#[derive(Subcommand)]
enum BankCommand {
    /// Name each bank entry by the corpus sentences that weight it most; writes bank.json into the model
    Describe {
        #[arg(long)]
        model: PathBuf,
        /// Sentences, one per line: a JSON string, or an object with "text" (or "sentence").
        /// Default: the bundled corpus of summarised CT-RATE validation reports
        /// (models/corpus/ct-rate-valid-sentences.jsonl, CC-BY-NC-SA 4.0)
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// Add the site's own words: the labels of confirmed findings (a typed finding's label
        /// is the reader's sentence) and the texts of missed findings in the feedback database,
        /// undone reviews excluded. bank.json marks them (`site_sentences`, `site_examples`)
        #[arg(long)]
        feedback: bool,
        /// Feedback database file for --feedback (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3,
        /// else the platform's app-data folder)
        #[arg(long, value_name = "FILE", requires = "feedback")]
        db: Option<PathBuf>,
    },
}

pub fn run(a: &BankArgs) -> Result<()> {
    match &a.what {
        BankCommand::Describe { model, corpus, feedback, db } => {
            let site = if *feedback { Some(db.clone().map_or_else(radbridge_store::default_path, Ok)?) } else { None };
            bank_describe(model, corpus.as_deref(), site.as_deref())
        }
    }
}

/// The site's sentences in the feedback database `db` (which must exist: reading never creates
/// one). An error when there are none.
fn site_sentences(db: &Path) -> Result<Vec<radbridge_store::site_words::SiteSentence>> {
    anyhow::ensure!(db.is_file(), "{}: no feedback database (no such file)", db.display());
    let store = radbridge_store::Store::open(db)?;
    let site = store.site_sentences(None)?;
    anyhow::ensure!(!site.is_empty(), "no confirmed or missed findings in {}; nothing to add", db.display());
    Ok(site)
}

/// `sentences` with the `site` texts appended that the corpus lacks (compared trimmed and
/// case-insensitively), and per sentence whether it is a site one. Returns how many were added.
fn append_site(sentences: &mut Vec<String>, site: &[radbridge_store::site_words::SiteSentence]) -> (Vec<bool>, usize) {
    let mut seen: std::collections::HashSet<String> = sentences.iter().map(|s| s.trim().to_lowercase()).collect();
    let mut marks = vec![false; sentences.len()];
    let mut added = 0usize;
    for s in site {
        if seen.insert(s.text.trim().to_lowercase()) {
            sentences.push(s.text.clone());
            marks.push(true);
            added += 1;
        }
    }
    (marks, added)
}

fn bank_describe(model: &Path, corpus: Option<&Path>, feedback_db: Option<&Path>) -> Result<()> {
    use radbridge_model::analysis::{Engine, TextCode};
    let bundled;
    let (corpus, corpus_name) = match corpus {
        Some(c) => (c, c.display().to_string()),
        None => {
            bundled = radbridge_model::bank::find_bundled_corpus(Some(model)).with_context(|| {
                format!(
                    "the bundled corpus {} was not found (set RADBRIDGE_CORPUS or give --corpus)",
                    radbridge_model::bank::BUNDLED_CORPUS
                )
            })?;
            (bundled.as_path(), radbridge_model::bank::BUNDLED_CORPUS.to_string())
        }
    };
    let meta = radbridge_model::bank::CorpusMeta::load(corpus)?.unwrap_or_default();
    let text = std::fs::read_to_string(corpus).with_context(|| format!("{}: cannot read corpus", corpus.display()))?;
    let mut sentences = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", corpus.display(), n + 1))?;
        let s = match &v {
            serde_json::Value::String(s) => s.clone(),
            o => o
                .get("text")
                .or_else(|| o.get("sentence"))
                .and_then(|x| x.as_str())
                .map(String::from)
                .with_context(|| format!("{}:{}: no \"text\"", corpus.display(), n + 1))?,
        };
        sentences.push(s);
    }
    anyhow::ensure!(!sentences.is_empty(), "{}: no sentences", corpus.display());
    let (site_marks, site_added, site_total) = match feedback_db {
        Some(db) => {
            let site = site_sentences(db)?;
            let (marks, added) = append_site(&mut sentences, &site);
            (marks, added, site.len())
        }
        None => (Vec::new(), 0, 0),
    };
    let mut engine = Engine::load(model)?;
    anyhow::ensure!(engine.arch() == radbridge_model::checkpoint::Arch::Brgsa, "{}: only BrgSA has a knowledge bank", model.display());
    let codes = engine.embed_prompts(&sentences)?;
    let z: Vec<Vec<f32>> = codes
        .into_iter()
        .map(|c| match c {
            TextCode::Brgsa { z, .. } => z,
            TextCode::Ctclip { .. } => unreachable!(),
        })
        .collect();
    let bank_size = z.first().map(|v| v.len()).unwrap_or(0);
    let mut d = radbridge_model::bank::BankDescriptions::from_weights_with_site(&corpus_name, &sentences, &z, bank_size, &site_marks);
    d.corpus_license = meta.license;
    d.corpus_source = meta.source;
    let out = model.join("bank.json");
    super::common::write_file(&out, serde_json::to_string_pretty(&d)? + "\n")?;
    let mut pkg = engine.package.clone();
    pkg.manifest.bank = Some("bank.json".into());
    pkg.write_manifest()?;
    eprintln!("wrote {}: {} of {} entries described from {} sentences", out.display(), d.entries.len(), bank_size, sentences.len());
    if let Some(db) = feedback_db {
        eprintln!(
            "site words from {}: {} sentence(s) added ({} already in the corpus); {} entries now name at least one site sentence",
            db.display(),
            site_added,
            site_total.saturating_sub(site_added),
            d.entries_with_site_examples()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use radbridge_store::site_words::SiteSentence;

    #[test]
    fn site_sentences_already_in_the_corpus_are_not_added_twice() {
        let mut sentences = vec!["Pleural effusion.".to_string(), "nodule".to_string()];
        let site = [SiteSentence { text: "  NODULE ".into(), runs: 2 }, SiteSentence { text: "our words".into(), runs: 1 }];
        let (marks, added) = append_site(&mut sentences, &site);
        assert_eq!(added, 1);
        assert_eq!(sentences, vec!["Pleural effusion.", "nodule", "our words"]);
        assert_eq!(marks, vec![false, false, true]);
    }

    #[test]
    fn a_missing_or_empty_database_is_an_error_naming_it() {
        let d = std::env::temp_dir().join(format!("radbridge-bank-site-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let missing = d.join("absent.sqlite3");
        let e = site_sentences(&missing).unwrap_err().to_string();
        assert!(e.contains("absent.sqlite3") && e.contains("no such file"), "{e}");
        assert!(!missing.exists(), "reading never creates a database");
        let empty = d.join("empty.sqlite3");
        drop(radbridge_store::Store::open(&empty).unwrap());
        let e = site_sentences(&empty).unwrap_err().to_string();
        assert_eq!(e, format!("no confirmed or missed findings in {}; nothing to add", empty.display()));
        let _ = std::fs::remove_dir_all(&d);
    }
}
