//! The store's file writes (exports, audit exports, recalibrated model files): atomic, with the
//! error naming the file.

use std::path::Path;

use crate::{FeedbackError, Result};

/// Write `bytes` to `path` atomically.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    radbridge_volume::atomic::write(path, bytes).map_err(|source| FeedbackError::Io { path: path.to_path_buf(), source })
}

/// Write lines to a file atomically (no half-written export).
pub(crate) fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    radbridge_volume::atomic::write_lines(path, lines).map_err(|source| FeedbackError::Io { path: path.to_path_buf(), source })
}
