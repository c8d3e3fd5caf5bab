//! The model layer's error: every variant about a file names it (`{path}: …`) and keeps the
//! underlying error as its `#[source]`, so the CLI's one-line message (the chain joined by
//! ": ") reads "path: what went wrong: cause". Cancellation is one variant,
//! [`ModelError::Cancelled`], whatever stage it stopped.

use std::path::PathBuf;

use radbridge_volume::{Cancelled, VolumeError};

/// A model directory (`model.json` and the files it names) that cannot be read or is invalid
/// (re-exported as `package::PackageError`; defined here so that every module of the crate
/// can name the crate's errors without importing `package`).
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (model configuration, thresholds, bank words) does not parse or does not fit.
    #[error("{path}: {what}")]
    Json {
        path: PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The network could not be built from, or run with, the files at `path`.
    #[error("{path}: {what}")]
    Weights {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Box<candle_core::Error>,
    },
    /// A file or folder that is unusable for a reason of its own (no tokenizer, a bad input).
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The tokenizer could not be built or could not encode a text.
    #[error("{path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    /// A text could not be tokenised (no file involved: the tokenizer is already loaded).
    #[error("tokenizer: {reason}")]
    Encode { reason: String },
    /// A tensor operation failed (shapes, devices); the message is candle's.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl ModelError {
    /// Whether the work stopped because it was cancelled (here or while loading the volume).
    pub fn is_cancelled(&self) -> bool {
        match self {
            ModelError::Cancelled(_) => true,
            ModelError::Volume(e) => e.is_cancelled(),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io { path, action, source }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> ModelError {
        let (path, what) = (path.into(), what.into());
        move |source| ModelError::Json { path, what, source }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_file_error_names_the_file_and_keeps_its_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = ModelError::io("/m/thresholds.json", "cannot read")(cause);
        assert_eq!(e.to_string(), "/m/thresholds.json: cannot read");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("denied"));
        assert!(!e.is_cancelled());
    }

    #[test]
    fn cancellation_is_recognised_from_every_layer() {
        assert!(ModelError::from(Cancelled).is_cancelled());
        assert!(ModelError::from(VolumeError::from(Cancelled)).is_cancelled());
        assert!(!ModelError::Invalid { path: "x".into(), reason: "y".into() }.is_cancelled());
        assert!(ModelError::from(Cancelled).to_string().contains("cancel"));
    }
}
