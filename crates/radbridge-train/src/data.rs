//! Reading a synthetic corpus (`radbridge synth`, format "radbridge-synth-1": `corpus.json`,
//! `cases.jsonl`, per-case NIfTI volume, report and masks), the training text of each case (the
//! summariser's sentences of its report), and the cache of preprocessed model inputs (each
//! volume is preprocessed once, stored as float16).

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::summarize::Summarizer;
use radbridge_model::preprocess::{self, PreprocessConfig};
use radbridge_volume::{self as volume, atomic, CancelToken, Cancelled, OpenOptions};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Volume { path: PathBuf, source: volume::VolumeError },
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl DataError {
    /// Whether the work stopped because it was cancelled (here or while loading a volume).
    pub fn is_cancelled(&self) -> bool {
        match self {
            DataError::Cancelled(_) => true,
            DataError::Volume { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io { path: path.to_path_buf(), source }
}

/// One line of `cases.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseEntry {
    pub id: String,
    /// Volume path relative to the corpus folder.
    pub volume: String,
    /// Report path relative to the corpus folder.
    pub report: String,
    /// Every corpus label → 0/1.
    #[serde(default)]
    pub labels: BTreeMap<String, u8>,
    /// Label → mask path (relative), for present abnormalities with a location.
    #[serde(default)]
    pub masks: BTreeMap<String, String>,
    #[serde(default)]
    pub base: Option<String>,
}

/// A corpus folder.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub dir: PathBuf,
    /// Labels listed in `corpus.json` (else the union of the cases' labels, sorted).
    pub labels: Vec<String>,
    pub seed: Option<u64>,
    pub cases: Vec<CaseEntry>,
}

impl Corpus {
    pub fn open(dir: &Path) -> Result<Corpus, DataError> {
        let cases_path = dir.join("cases.jsonl");
        let f = std::fs::File::open(&cases_path).map_err(io(&cases_path))?;
        let mut cases = Vec::new();
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io(&cases_path))?;
            if line.trim().is_empty() {
                continue;
            }
            let c: CaseEntry = serde_json::from_str(&line)
                .map_err(|e| DataError::Invalid { path: cases_path.clone(), reason: format!("line {}: {e}", n + 1) })?;
            cases.push(c);
        }
        if cases.is_empty() {
            return Err(DataError::Invalid { path: cases_path, reason: "no cases".into() });
        }
        let meta_path = dir.join("corpus.json");
        let (mut labels, mut seed) = (Vec::new(), None);
        if meta_path.exists() {
            let t = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
            let v: serde_json::Value =
                serde_json::from_str(&t).map_err(|e| DataError::Invalid { path: meta_path.clone(), reason: e.to_string() })?;
            if let Some(a) = v.get("labels").and_then(|a| a.as_array()) {
                labels = a.iter().filter_map(|x| x.as_str().map(String::from)).collect();
            }
            seed = v.get("seed").and_then(|s| s.as_u64());
        }
        if labels.is_empty() {
            let set: std::collections::BTreeSet<&String> = cases.iter().flat_map(|c| c.labels.keys()).collect();
            labels = set.into_iter().cloned().collect();
        }
        Ok(Corpus { dir: dir.to_path_buf(), labels, seed, cases })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn report(&self, case: &CaseEntry) -> Result<String, DataError> {
        let p = self.path(&case.report);
        std::fs::read_to_string(&p).map_err(io(&p))
    }
}

/// The training text of a report with no finding present or possible, under `findings_only`.
pub const NORMAL_SENTENCE: &str = "There is no abnormality.";

/// The training sentences of a report: the summariser's finding sentences; a report it finds
/// nothing in falls back to the report's own sentences (split on full stops). With
/// `findings_only`, only the sentences stating a present or possible finding, and for a report
/// with none, [`NORMAL_SENTENCE`] alone: its negated findings ("There is no pleural
/// effusion.") would pair a normal image with every finding's words, which a text encoder
/// trained from scratch cannot tell from the positive prompts.
pub fn training_sentences(summarizer: &crate::summarize::Builtin, report: &str, findings_only: bool) -> Vec<String> {
    let mut s: Vec<String> = match summarizer.summarize(report) {
        Ok(sum) if findings_only => {
            let pos: Vec<String> = sum
                .sentences
                .into_iter()
                .zip(sum.sentence_status)
                .filter(|(_, st)| *st != crate::summarize::Status::Absent)
                .map(|(x, _)| x)
                .collect();
            if pos.is_empty() {
                return vec![NORMAL_SENTENCE.to_string()];
            }
            pos
        }
        Ok(sum) => sum.sentences,
        Err(_) => Vec::new(),
    };
    s.retain(|x| x.split_whitespace().count() > 1);
    if s.is_empty() {
        s = report.split(['.', '\n']).map(|x| x.trim()).filter(|x| x.split_whitespace().count() > 1).map(|x| format!("{x}.")).collect();
    }
    s
}

/// Preprocessed model inputs of many cases, float16, each of shape `shape` (A0, A1, A2).
pub struct InputCache {
    pub shape: [usize; 3],
    pub ids: Vec<String>,
    data: Vec<half::f16>,
}

#[derive(Serialize, Deserialize)]
struct CacheIndex {
    shape: [usize; 3],
    ids: Vec<String>,
    preprocess: PreprocessConfig,
}

impl InputCache {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }
    /// Case `i` as float16.
    pub fn get(&self, i: usize) -> &[half::f16] {
        let n = self.voxels();
        &self.data[i * n..(i + 1) * n]
    }

    /// Copy the `crop`-sized block of case `i` starting at voxel `origin` into `dst` (f32,
    /// row-major, `crop[0]·crop[1]·crop[2]` values). The block must lie inside `shape`.
    pub fn crop_into(&self, i: usize, origin: [usize; 3], crop: [usize; 3], dst: &mut [f32]) {
        let [_, s1, s2] = self.shape;
        let [c0, c1, c2] = crop;
        debug_assert!((0..3).all(|a| origin[a] + crop[a] <= self.shape[a]) && dst.len() == c0 * c1 * c2);
        let src = self.get(i);
        for a in 0..c0 {
            for b in 0..c1 {
                let from = ((origin[0] + a) * s1 + origin[1] + b) * s2 + origin[2];
                let to = (a * c1 + b) * c2;
                for (d, s) in dst[to..to + c2].iter_mut().zip(&src[from..from + c2]) {
                    *d = s.to_f32();
                }
            }
        }
    }

    /// Load `dir/inputs.json` + `dir/inputs.f16` if they hold exactly `ids` under `cfg`;
    /// otherwise preprocess every case (in parallel) and write them.
    pub fn load_or_build(
        corpus: &Corpus,
        cases: &[&CaseEntry],
        cfg: &PreprocessConfig,
        dir: &Path,
        cancel: &CancelToken,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<InputCache, DataError> {
        let ids: Vec<String> = cases.iter().map(|c| c.id.clone()).collect();
        let index_path = dir.join("inputs.json");
        let data_path = dir.join("inputs.f16");
        let shape = cfg.target_shape;
        let n = shape.iter().product::<usize>();
        if index_path.exists() && data_path.exists() {
            if let Ok(t) = std::fs::read_to_string(&index_path) {
                if let Ok(idx) = serde_json::from_str::<CacheIndex>(&t) {
                    if idx.ids == ids && &idx.preprocess == cfg && idx.shape == shape {
                        let mut bytes = Vec::new();
                        std::fs::File::open(&data_path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(&data_path))?;
                        if bytes.len() == ids.len() * n * 2 {
                            let data = bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]])).collect();
                            tracing::info!("input cache {}: {} cases", data_path.display(), ids.len());
                            return Ok(InputCache { shape, ids, data });
                        }
                    }
                }
            }
        }
        let done = std::sync::atomic::AtomicUsize::new(0);
        let total = cases.len();
        let per_case: Vec<Vec<half::f16>> = cases
            .par_iter()
            .map(|c| {
                cancel.check()?;
                let p = corpus.path(&c.volume);
                let loaded = volume::open(&p, &OpenOptions::default()).map_err(|source| DataError::Volume { path: p.clone(), source })?;
                let input = preprocess::preprocess(&loaded.volume, cfg)
                    .map_err(|e| DataError::Invalid { path: p.clone(), reason: format!("cannot preprocess: {e}") })?;
                let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(k, total);
                Ok::<_, DataError>(input.data.iter().map(|&x| half::f16::from_f32(x)).collect())
            })
            .collect::<Result<_, _>>()?;
        let data: Vec<half::f16> = per_case.into_iter().flatten().collect();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut f = atomic::AtomicFile::create(&data_path).map_err(io(&data_path))?;
        for x in &data {
            f.write_all(&x.to_le_bytes()).map_err(io(&data_path))?;
        }
        f.commit().map_err(io(&data_path))?;
        let idx = CacheIndex { shape, ids: ids.clone(), preprocess: cfg.clone() };
        atomic::write(&index_path, serde_json::to_string(&idx).expect("index serialises")).map_err(io(&index_path))?;
        Ok(InputCache { shape, ids, data })
    }
}

#[cfg(test)]
mod tests {
    use super::training_sentences;
    use crate::summarize::Builtin;

    const REPORT: &str = "Findings: A small right pleural effusion is present. No pneumothorax. \
        There is no consolidation. A possible 6 mm nodule in the left upper lobe. Impression: Right pleural effusion.";

    #[test]
    fn findings_only_keeps_present_and_possible_findings() {
        let s = Builtin::new();
        let all = training_sentences(&s, REPORT, false);
        let pos = training_sentences(&s, REPORT, true);
        assert!(all.iter().any(|x| x.contains("no pneumothorax")), "{all:?}");
        assert!(pos.len() < all.len(), "{pos:?} vs {all:?}");
        assert!(pos.iter().any(|x| x.contains("pleural effusion")), "{pos:?}");
        assert!(pos.iter().any(|x| x.starts_with("There may be") && x.contains("nodule")), "{pos:?}");
        assert!(pos.iter().all(|x| !x.contains(" no ")), "{pos:?}");
    }

    #[test]
    fn a_normal_report_is_one_normal_sentence() {
        let s = Builtin::new();
        let normal = "No pleural effusion. No pneumothorax. The heart size is normal.";
        assert_eq!(training_sentences(&s, normal, true), vec![super::NORMAL_SENTENCE.to_string()]);
        let all = training_sentences(&s, normal, false);
        assert!(all.iter().any(|x| x.contains("no pleural effusion")), "{all:?}");
    }
}
