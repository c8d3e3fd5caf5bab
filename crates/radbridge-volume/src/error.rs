//! Typed errors for volume loading. Every variant names the file (or folder) it is about, so a
//! user reading one line knows which input is bad and why.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },

    #[error("{path}: empty file (0 bytes)")]
    EmptyFile { path: PathBuf },

    #[error("{path}: no DICOM image or NIfTI volume found ({scanned} files scanned, {skipped} skipped as not DICOM images)")]
    NoImages { path: PathBuf, scanned: usize, skipped: usize },

    #[error("{path}: not a DICOM file ({reason})")]
    NotDicom { path: PathBuf, reason: String },

    #[error("{path}: unsupported transfer syntax {uid} ({name})")]
    UnsupportedTransferSyntax { path: PathBuf, uid: String, name: String },

    #[error("{path}: modality is {modality}, not CT (pass --any-modality to load it anyway)")]
    WrongModality { path: PathBuf, modality: String },

    #[error("{path}: no pixel data (7FE0,0010) in this DICOM file")]
    MissingPixelData { path: PathBuf },

    #[error("{path}: missing or invalid DICOM attribute {attribute}")]
    MissingAttribute { path: PathBuf, attribute: &'static str },

    #[error("{path}: cannot decode pixel data ({transfer_syntax}): {reason}")]
    Decode { path: PathBuf, transfer_syntax: String, reason: String },

    #[error("{path}: unsupported image: {reason}")]
    UnsupportedImage { path: PathBuf, reason: String },

    #[error("{path}: not a NIfTI file: {reason}")]
    NotNifti { path: PathBuf, reason: String },

    #[error("{path}: truncated {what}: expected {expected} bytes, found {found}")]
    Truncated { path: PathBuf, what: &'static str, expected: u64, found: u64 },

    #[error("{path}: corrupt file: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error("{path}: invalid NIfTI header: {reason}")]
    BadNiftiHeader { path: PathBuf, reason: String },

    #[error("{path}: volume too large: {voxels} voxels exceeds the limit of {limit}")]
    TooLarge { path: PathBuf, voxels: u64, limit: u64 },

    #[error("{path}: no series matches '{selector}'; available: {available}")]
    SeriesNotFound { path: PathBuf, selector: String, available: String },

    #[error("{path}: inconsistent geometry: {reason}")]
    Geometry { path: PathBuf, reason: String },

    #[error("{path}: cannot write output: {reason}")]
    Write { path: PathBuf, reason: String },

    #[error("{path}: invalid DICOM header: {reason}")]
    BadDicomHeader { path: PathBuf, reason: String },

    #[error("{path}: element {tag} at byte {offset} declares {declared} bytes but only {available} bytes follow it in the file")]
    DeclaredLengthTooLarge { path: PathBuf, tag: String, offset: u64, declared: u64, available: u64 },

    #[error("{path}: {frames} frames declared (NumberOfFrames), more than the limit of {limit}")]
    TooManyFrames { path: PathBuf, frames: u64, limit: u64 },

    #[error("{path}: more than {limit} slices found while scanning (the limit); open a smaller folder")]
    TooManySlices { path: PathBuf, limit: u64 },

    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// The one cancellation error of every layer: a long job stopped because its [`crate::CancelToken`]
/// was cancelled. Each crate's error enum wraps it (`Cancelled(#[from] Cancelled)`) and answers
/// `is_cancelled()`, so callers branch on the type, never on a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl VolumeError {
    /// Whether loading stopped because it was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, VolumeError::Cancelled(_))
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            VolumeError::NotFound { path }
        } else {
            VolumeError::Io { path, source }
        }
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_is_one_type_and_answers_is_cancelled() {
        let token = crate::CancelToken::default();
        assert_eq!(token.check(), Ok(()));
        token.cancel();
        let e: VolumeError = token.check().unwrap_err().into();
        assert!(e.is_cancelled(), "{e:?}");
        assert_eq!(e.to_string(), "cancelled");
        assert!(!VolumeError::NotFound { path: "x.nii".into() }.is_cancelled());
    }
}
