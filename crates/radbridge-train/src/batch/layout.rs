//! The output folder of a batch: where each file lives, the settings a run is bound to, and
//! the record each shard leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radbridge_model::analysis::Diagnosis;
use radbridge_model::checkpoint::Arch;
use serde::{Deserialize, Serialize};

use super::{BatchError, Shard, Source, Study};

/// Paths inside an output folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub out: PathBuf,
}

impl Layout {
    pub fn new(out: &Path) -> Layout {
        Layout { out: out.to_path_buf() }
    }
    pub fn studies(&self) -> PathBuf {
        self.out.join("studies")
    }
    pub fn parts(&self) -> PathBuf {
        self.out.join("parts")
    }
    pub fn study_json(&self, s: &Study) -> PathBuf {
        self.studies().join(format!("{}.json", s.safe))
    }
    pub fn embedding(&self, s: &Study) -> PathBuf {
        self.parts().join("embeddings").join(format!("{}.safetensors", s.safe))
    }
    pub fn failure(&self, s: &Study) -> PathBuf {
        self.parts().join("failures").join(format!("{}.json", s.safe))
    }
    pub fn shard_record(&self, shard: &Shard) -> PathBuf {
        self.parts().join(shard.file_name())
    }

    /// Create the folders a shard writes into.
    pub fn create(&self) -> Result<(), BatchError> {
        for d in [self.studies(), self.parts().join("embeddings"), self.parts().join("failures")] {
            std::fs::create_dir_all(&d).map_err(BatchError::io(&d, "create the folder"))?;
        }
        Ok(())
    }

    /// The finished record of a study, if there is one for this model and these prompts
    /// (with its embeddings beside it).
    pub fn finished(&self, s: &Study, settings: &Settings) -> Option<Diagnosis> {
        let text = std::fs::read_to_string(self.study_json(s)).ok()?;
        let d: Diagnosis = serde_json::from_str(&text).ok()?;
        let prompts: Vec<(String, String)> = d.findings.iter().map(|f| (f.finding.label.clone(), f.finding.prompt.clone())).collect();
        (d.model.weights_sha256 == settings.model.weights_sha256 && prompts == settings.prompts && self.embedding(s).is_file()).then_some(d)
    }

    /// Every shard record in the folder, by file.
    pub fn shard_records(&self) -> Result<Vec<(PathBuf, ShardRecord)>, BatchError> {
        let parts = self.parts();
        let Ok(entries) = std::fs::read_dir(&parts) else { return Ok(vec![]) };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-") && n.to_string_lossy().ends_with(".json")))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).map_err(BatchError::io(&p, "read"))?;
                let r: ShardRecord = serde_json::from_str(&text)
                    .map_err(|e| BatchError::Record { path: p.clone(), reason: format!("not a shard record: {e}") })?;
                Ok((p, r))
            })
            .collect()
    }
}

/// The model a run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub dir: PathBuf,
    pub name: String,
    pub architecture: Arch,
    pub weights_sha256: String,
}

impl ModelRef {
    /// The model of a loaded engine, opened from `dir`.
    pub fn of(engine: &radbridge_model::analysis::Engine, dir: &Path) -> ModelRef {
        let m = &engine.package.manifest;
        ModelRef { dir: dir.to_path_buf(), name: m.name.clone(), architecture: m.architecture, weights_sha256: m.weights_sha256.clone() }
    }
}

/// What a run is bound to: its studies' source, the model, and what is scored. A finished
/// study is kept by a later run only when the model checksum and the prompts are the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub source: Source,
    pub model: ModelRef,
    /// The label set named (`ct-rate`, `all`, ...).
    pub label_set: String,
    pub labels: Vec<String>,
    /// Findings typed with `--finding`.
    pub findings: Vec<String>,
    /// (label or finding, the positive prompt scored), in the order of the score columns.
    pub prompts: Vec<(String, String)>,
    pub any_modality: bool,
}

/// What one shard was asked to do and what it did (`parts/shard-<I>-of-<N>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRecord {
    pub program: String,
    pub version: String,
    pub settings: Settings,
    pub shard: Shard,
    /// Studies of this shard.
    pub studies: usize,
    /// Computed in this run.
    pub done: usize,
    pub failed: usize,
    /// Already finished by an earlier run (resumed).
    pub skipped: usize,
    /// Unix seconds.
    pub started: f64,
    pub finished: Option<f64>,
    pub seconds: f64,
    /// Seconds per stage, summed over the studies this run computed.
    pub stage_seconds: BTreeMap<String, f64>,
    #[serde(default)]
    pub host: String,
    /// Where the model ran (`cpu`, `cuda:0`, …).
    #[serde(default)]
    pub device: String,
}

/// Remove a file of the output folder; one that is already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), BatchError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BatchError::io(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// Unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
