//! The one error type of every command: a stable `code` the UI branches on and a `message` for
//! people (it names the file). Core errors are mapped to codes by their typed variants, never
//! by their text. Serialised as `{"code": "...", "message": "..."}` (`AppError` in
//! `ui/src/api.ts`, generated into `ui/src/bindings/`).

use serde::Serialize;
use ts_rs::TS;

use radbridge_report::ReportError;
use radbridge_store::FeedbackError;
use radbridge_volume::VolumeError;

/// What kind of failure a command reports (the serde names are the UI's `ErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The user cancelled the work.
    Cancelled,
    /// No study is open.
    NoStudy,
    /// No usable model directory.
    NoModel,
    /// The file, folder or argument is not usable (the message names it).
    BadInput,
    /// Reading or writing a file failed.
    Io,
    /// The model failed to load or run.
    Model,
    /// The feedback store refused or failed.
    Store,
    /// The report could not be built or written.
    Report,
    /// A bug: a worker stopped unexpectedly.
    Internal,
}

/// A failed command, as the UI receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError { code, message: message.into() }
    }

    /// A worker thread that panicked or was dropped (`what` says which work stopped).
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        AppError::new(ErrorCode::Internal, format!("{what} stopped unexpectedly: {e}"))
    }

    /// An error of the model layer (an `anyhow` chain): its message is the whole chain; the code
    /// comes from the first typed cause found in it (a `VolumeError`, e.g. `Cancelled`, or a
    /// store error), else `fallback`.
    pub fn from_chain(e: &anyhow::Error, fallback: ErrorCode) -> Self {
        let code = e
            .chain()
            .find_map(|c| {
                if let Some(v) = c.downcast_ref::<VolumeError>() {
                    Some(volume_code(v))
                } else if c.downcast_ref::<FeedbackError>().is_some() {
                    Some(ErrorCode::Store)
                } else if c.downcast_ref::<ReportError>().is_some() {
                    Some(ErrorCode::Report)
                } else if c.downcast_ref::<std::io::Error>().is_some() {
                    Some(ErrorCode::Io)
                } else {
                    None
                }
            })
            .unwrap_or(fallback);
        AppError::new(code, chain_message(e))
    }
}

/// An `anyhow` error and its causes as one line: `context: cause: root cause`.
pub fn chain_message(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

/// Cancelled → cancelled; failed reads and writes → io; everything else about the input
/// (missing, empty, not DICOM/NIfTI, unsupported, corrupt, too large, …) → bad_input.
fn volume_code(e: &VolumeError) -> ErrorCode {
    match e {
        VolumeError::Cancelled => ErrorCode::Cancelled,
        VolumeError::Io { .. } | VolumeError::Write { .. } => ErrorCode::Io,
        _ => ErrorCode::BadInput,
    }
}

impl From<VolumeError> for AppError {
    fn from(e: VolumeError) -> Self {
        AppError::new(volume_code(&e), e.to_string())
    }
}

impl From<FeedbackError> for AppError {
    fn from(e: FeedbackError) -> Self {
        AppError::new(ErrorCode::Store, e.to_string())
    }
}

impl From<ReportError> for AppError {
    fn from(e: ReportError) -> Self {
        AppError::new(ErrorCode::Report, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_code_and_message() {
        let e = AppError::new(ErrorCode::NoStudy, "open a CT first");
        assert_eq!(serde_json::to_value(&e).unwrap(), serde_json::json!({"code": "no_study", "message": "open a CT first"}));
        let names: Vec<String> = [
            ErrorCode::Cancelled,
            ErrorCode::NoStudy,
            ErrorCode::NoModel,
            ErrorCode::BadInput,
            ErrorCode::Io,
            ErrorCode::Model,
            ErrorCode::Store,
            ErrorCode::Report,
            ErrorCode::Internal,
        ]
        .iter()
        .map(|c| serde_json::to_value(c).unwrap().as_str().unwrap().to_string())
        .collect();
        assert_eq!(names, ["cancelled", "no_study", "no_model", "bad_input", "io", "model", "store", "report", "internal"]);
    }

    #[test]
    fn volume_errors_map_by_variant() {
        let p = std::path::PathBuf::from("/x/ct.nii");
        assert_eq!(AppError::from(VolumeError::Cancelled).code, ErrorCode::Cancelled);
        let io = AppError::from(VolumeError::Io { path: p.clone(), source: std::io::Error::other("disk on fire") });
        assert_eq!(io.code, ErrorCode::Io);
        assert!(io.message.contains("/x/ct.nii"), "{}", io.message);
        let bad = AppError::from(VolumeError::EmptyFile { path: p.clone() });
        assert_eq!(bad.code, ErrorCode::BadInput);
        assert_eq!(bad.message, VolumeError::EmptyFile { path: p }.to_string());
    }

    #[test]
    fn a_cancelled_cause_deep_in_a_chain_is_cancelled() {
        use anyhow::Context;
        let e: anyhow::Result<()> = Err(anyhow::Error::from(VolumeError::Cancelled)).context("encode image");
        let e = AppError::from_chain(&e.unwrap_err(), ErrorCode::Model);
        assert_eq!(e.code, ErrorCode::Cancelled);
        assert_eq!(e.message, "encode image: loading cancelled");
        let other = AppError::from_chain(&anyhow::anyhow!("the net failed"), ErrorCode::Model);
        assert_eq!(other.code, ErrorCode::Model);
    }

    #[test]
    fn store_and_report_errors_have_their_codes() {
        assert_eq!(AppError::from(FeedbackError::NoSuchRun(7)).code, ErrorCode::Store);
        assert_eq!(AppError::from(ReportError::NoSource).code, ErrorCode::Report);
    }
}
