//! Errors of a batch run or merge; each names the file or folder concerned.

use std::path::PathBuf;

use radbridge_model::ModelError;
use radbridge_volume::VolumeError;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The manifest cannot be read.
    #[error("{path}: cannot read the manifest")]
    ManifestRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The manifest is malformed (the reason names the line).
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    /// The input folder cannot be scanned.
    #[error("{path}: cannot scan the input folder")]
    Input {
        path: PathBuf,
        #[source]
        source: VolumeError,
    },
    /// The input folder holds no study.
    #[error("{0}: no NIfTI file and no DICOM series found")]
    NoStudies(PathBuf),
    /// The shard flags or environment do not make a shard.
    #[error("shard: {0}")]
    Shard(String),
    #[error("{path}: cannot {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file of the output folder is not what a run writes.
    #[error("{path}: {reason}")]
    Record { path: PathBuf, reason: String },
    /// `merge` found no shard record.
    #[error("{0}: no batch run here (no parts/shard-*.json)")]
    NoRun(PathBuf),
    /// Shard records of different runs (another model or other prompts) share the folder.
    #[error("{path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    /// The model failed before any study (embedding the prompts).
    #[error("{path}")]
    Model {
        path: PathBuf,
        #[source]
        source: ModelError,
    },
    #[error("cancelled")]
    Cancelled(#[from] radbridge_volume::Cancelled),
}

impl BatchError {
    pub(crate) fn io(path: impl Into<PathBuf>, what: &'static str) -> impl FnOnce(std::io::Error) -> BatchError {
        let path = path.into();
        move |source| BatchError::Io { path, what, source }
    }
}

/// An error and its causes, joined by ": " (the line `radbridge diagnose` prints), each cut at
/// its first line (candle appends a backtrace when RUST_BACKTRACE is set).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let first_line = |s: String| s.lines().next().unwrap_or_default().to_string();
    let mut parts = vec![first_line(e.to_string())];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(first_line(s.to_string()));
        cur = s.source();
    }
    parts.join(": ")
}
