//! The one error type of every command: a stable `code` the UI branches on and a `message` for
//! people (it names the file). Core errors are mapped to codes by their typed variants, never
//! by their text. Serialised as `{"code": "...", "message": "..."}` (`AppError` in
//! `ui/src/api.ts`, generated into `ui/src/bindings/`).

use serde::Serialize;
use ts_rs::TS;

use radbridge_model::error::ModelError;
use radbridge_report::ReportError;
use radbridge_store::FeedbackError;
use radbridge_volume::{Cancelled, VolumeError};

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
    /// The page asked for a path the user did not choose (open, model folder).
    NotPermitted,
    /// A PACS could not be reached, refused us, or answered something unusable (the message
    /// names the server).
    Pacs,
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

    /// An error of the core and its causes: the message is the whole chain; the code comes from
    /// the first typed cause found in it (a cancellation, a `VolumeError`, a store or report
    /// error, an I/O error), else `fallback`.
    pub fn from_chain(e: &(dyn std::error::Error + 'static), fallback: ErrorCode) -> Self {
        let mut code = None;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let (None, Some(c)) = (code, cause) {
            code = if c.downcast_ref::<Cancelled>().is_some() {
                Some(ErrorCode::Cancelled)
            } else if let Some(m) = c.downcast_ref::<ModelError>() {
                match m {
                    ModelError::Cancelled(_) => Some(ErrorCode::Cancelled),
                    ModelError::Volume(v) => Some(volume_code(v)),
                    // A volume whose grid cannot be resampled (a hostile spacing).
                    ModelError::Preprocess { .. } => Some(ErrorCode::BadInput),
                    _ => None,
                }
            } else if let Some(v) = c.downcast_ref::<VolumeError>() {
                Some(volume_code(v))
            } else if c.downcast_ref::<FeedbackError>().is_some() {
                Some(ErrorCode::Store)
            } else if c.downcast_ref::<ReportError>().is_some() {
                Some(ErrorCode::Report)
            } else if c.downcast_ref::<std::io::Error>().is_some() {
                Some(ErrorCode::Io)
            } else {
                None
            };
            cause = c.source();
        }
        AppError::new(code.unwrap_or(fallback), chain_message(e))
    }
}

/// An error and its causes as one line: `context: cause: root cause` (a cause whose text the
/// previous one already ends with is not repeated).
pub fn chain_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !parts.last().is_some_and(|p| p.ends_with(&t)) {
            parts.push(t);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// Cancelled → cancelled; failed reads and writes → io; everything else about the input
/// (missing, empty, not DICOM/NIfTI, unsupported, corrupt, too large, …) → bad_input.
fn volume_code(e: &VolumeError) -> ErrorCode {
    match e {
        VolumeError::Cancelled(_) => ErrorCode::Cancelled,
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
        assert_eq!(AppError::from(VolumeError::Cancelled(Cancelled)).code, ErrorCode::Cancelled);
        let io = AppError::from(VolumeError::Io { path: p.clone(), source: std::io::Error::other("disk on fire") });
        assert_eq!(io.code, ErrorCode::Io);
        assert!(io.message.contains("/x/ct.nii"), "{}", io.message);
        let bad = AppError::from(VolumeError::EmptyFile { path: p.clone() });
        assert_eq!(bad.code, ErrorCode::BadInput);
        assert_eq!(bad.message, VolumeError::EmptyFile { path: p }.to_string());
    }

    #[test]
    fn a_cancelled_cause_deep_in_a_chain_is_cancelled() {
        let e = ModelError::Volume(VolumeError::Cancelled(Cancelled));
        assert_eq!(AppError::from_chain(&e, ErrorCode::Model).code, ErrorCode::Cancelled);
        let e = ModelError::Cancelled(Cancelled);
        let e = AppError::from_chain(&e, ErrorCode::Model);
        assert_eq!((e.code, e.message.as_str()), (ErrorCode::Cancelled, "cancelled"));
        let bad = ModelError::Volume(VolumeError::EmptyFile { path: "/x/ct.nii".into() });
        assert_eq!(AppError::from_chain(&bad, ErrorCode::Model).code, ErrorCode::BadInput);
        let io = ModelError::Io { path: "/m/model.json".into(), action: "cannot read", source: std::io::Error::other("gone") };
        let io = AppError::from_chain(&io, ErrorCode::Model);
        assert_eq!((io.code, io.message.as_str()), (ErrorCode::Io, "/m/model.json: cannot read: gone"));
        let spacing = ModelError::Preprocess {
            path: "/x/ct.nii".into(),
            source: Box::new(radbridge_model::error::PreprocessError::Spacing { axis: 0, spacing: f64::INFINITY }),
        };
        let spacing = AppError::from_chain(&spacing, ErrorCode::Model);
        assert_eq!(spacing.code, ErrorCode::BadInput);
        assert!(spacing.message.starts_with("/x/ct.nii: cannot preprocess for the model: voxel spacing"), "{}", spacing.message);
        let other = ModelError::Invalid { path: "/m".into(), reason: "the net failed".into() };
        assert_eq!(AppError::from_chain(&other, ErrorCode::Model).code, ErrorCode::Model);
    }

    #[test]
    fn store_and_report_errors_have_their_codes() {
        assert_eq!(AppError::from(FeedbackError::NoSuchRun(7)).code, ErrorCode::Store);
        assert_eq!(AppError::from(ReportError::NoSource).code, ErrorCode::Report);
    }
}
