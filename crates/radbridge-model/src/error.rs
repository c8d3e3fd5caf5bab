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
    /// A file name in `model.json` that would leave the model folder (absolute, `..`, or a
    /// symbolic link resolving outside it).
    #[error("{path}: {field} {reason}; files must stay inside the model folder")]
    UnsafePath { path: PathBuf, field: &'static str, reason: String },
    /// A numeric setting of `model.json` (or the BERT `config.json`) out of range.
    #[error("{path}: {field}: {reason}")]
    Setting { path: PathBuf, field: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Preprocessing settings or a volume that preprocessing refuses (re-exported as
/// `preprocess::PreprocessError`): checked before anything is allocated, so a hostile spacing
/// or setting is an error rather than an enormous buffer or a panic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// A setting of `PreprocessConfig` (model.json `preprocess`) is out of range.
    #[error("preprocess.{field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// The volume has no voxels along some axis.
    #[error("the volume's grid {dims:?} is empty")]
    EmptyVolume { dims: [usize; 3] },
    /// The grid does not match the number of voxels held.
    #[error("the volume's grid {dims:?} does not match its {len} voxels")]
    VoxelCount { dims: [usize; 3], len: usize },
    /// A voxel spacing that is zero, negative or not finite.
    #[error("voxel spacing along axis {axis} is {spacing} mm; it must be finite and positive")]
    Spacing { axis: usize, spacing: f64 },
    /// The resampled grid along one axis is not a finite size (spacing / target overflows).
    #[error("resampling {size} voxels of {spacing} mm to {target} mm along axis {axis} gives {value} voxels, not a usable grid size")]
    GridSize { axis: usize, size: usize, spacing: f64, target: f64, value: f64 },
    /// A resampled (or intermediate) grid holds more voxels than allowed.
    #[error("resampling {dims:?} voxels of {spacing:?} mm to {target:?} mm needs a grid of {voxels} voxels, over the limit of {limit}")]
    TooLarge { dims: [usize; 3], spacing: [f64; 3], target: [f64; 3], voxels: u128, limit: usize },
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
    /// The volume at `path` (or the model's settings) cannot be preprocessed.
    #[error("{path}: cannot preprocess for the model")]
    Preprocess {
        path: PathBuf,
        #[source]
        source: Box<PreprocessError>,
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// The device asked for cannot be used (unknown name, not compiled in, not present).
    #[error("device '{device}': {reason}")]
    Device { device: String, reason: String },
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

/// A configuration setting out of range: the field (dotted path) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingError {
    pub field: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> SettingError {
        SettingError { field: field.into(), reason: reason.into() }
    }

    /// As a [`PackageError`] naming the file that holds the setting.
    pub fn in_file(self, path: impl Into<PathBuf>) -> PackageError {
        PackageError::Setting { path: path.into(), field: self.field, reason: self.reason }
    }
}

/// `value` of setting `field` must be in `1..=max`.
pub(crate) fn check_size(field: &str, value: usize, max: usize) -> std::result::Result<(), SettingError> {
    if value == 0 || value > max {
        return Err(SettingError::new(field, format!("{value} must be in 1..={max}")));
    }
    Ok(())
}

/// `value` of setting `field` must be at most `max` (zero allowed).
pub(crate) fn check_at_most(field: &str, value: usize, max: usize) -> std::result::Result<(), SettingError> {
    if value > max {
        return Err(SettingError::new(field, format!("{value} must be at most {max}")));
    }
    Ok(())
}

/// `value` of setting `field` must be finite and positive.
pub(crate) fn check_positive(field: &str, value: f64) -> std::result::Result<(), SettingError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(SettingError::new(field, format!("{value} must be finite and positive")));
    }
    Ok(())
}

/// Bounds of model dimensions read from files: widths, vocabularies and bank sizes.
pub(crate) const MAX_WIDTH: usize = 1 << 20;
/// Depths (layers) and heads.
pub(crate) const MAX_DEPTH: usize = 1024;
/// Image sides, patch sizes and text lengths.
pub(crate) const MAX_SIDE: usize = 1 << 16;

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
