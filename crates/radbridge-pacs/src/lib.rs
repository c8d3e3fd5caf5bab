//! PACS networking for Radbridge: find studies, retrieve series and send reports.
//!
//! Two protocols behind one [`Server`]:
//! - **DICOMweb** ([`dicomweb`]): QIDO-RS search, WADO-RS retrieve (the multipart response is
//!   split as it streams in, each instance written byte for byte as the server sent it), STOW-RS
//!   send.
//! - **DIMSE** ([`dimse`]): C-ECHO, C-FIND, C-MOVE to a Storage SCP of our own, C-STORE, on
//!   `dicom-ul` associations.
//!
//! [`retrieve`] lays retrieved instances out as `<dir>/<series uid>/<sop instance uid>.dcm`,
//! each written under a temporary name and renamed once complete, so a broken transfer leaves
//! only complete files under final names and a second run fetches only what is missing.
//! [`servers`] keeps the named servers; their secrets live in a separate owner-only file, never
//! in the settings. Every error names the server: `pacs <server>: <problem>`.

pub mod dicomweb;
pub mod dimse;
mod http;
pub mod multipart;
pub mod query;
pub mod retrieve;
pub mod send;
pub mod server;
pub mod servers;

pub use query::{is_uid, SeriesMatch, StudyMatch, StudyQuery};
pub use retrieve::{Progress, RetrieveOutcome, RetrieveRequest};
pub use send::SendOutcome;
pub use server::{Auth, Endpoint, Server};

use std::path::PathBuf;

/// A PACS operation failed; `Display` is `pacs <server>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("pacs {server}: {kind}")]
pub struct PacsError {
    /// The server's name, or its URL without credentials.
    pub server: String,
    pub kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("not a PACS address: {0} (expected http(s)://host:port/dicom-web or dimse://AET@host:port)")]
    BadAddress(String),
    #[error("{0}: put credentials in --user/--password-env or --token-env, not in the URL")]
    CredentialsInAddress(String),
    #[error("no server named {0:?} (add it with `radbridge pacs server add`)")]
    UnknownServer(String),
    #[error("cannot reach {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("the server refused the credentials (HTTP {status}){}", hint(.body))]
    Unauthorized { status: u16, body: String },
    #[error("HTTP {status} from {url}{}", hint(.body))]
    Http { status: u16, url: String, body: String },
    #[error("study {0} not found on the server")]
    StudyNotFound(String),
    #[error("series {series} not found in study {study}")]
    SeriesNotFound { study: String, series: String },
    #[error("malformed multipart response from {url}: {msg}")]
    Multipart { url: String, msg: String },
    #[error("malformed DICOM JSON from {url}: {msg}")]
    Json { url: String, msg: String },
    #[error("the connection dropped during the transfer from {url}: {detail}")]
    Dropped { url: String, detail: String },
    #[error("{0}")]
    Dimse(#[from] dimse::DimseError),
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {msg}", .path.display())]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Config(String),
    #[error("cancelled")]
    Cancelled,
}

fn hint(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        let mut s: String = body.chars().take(200).collect();
        if body.chars().count() > 200 {
            s.push('…');
        }
        format!(": {}", s.replace(['\n', '\r'], " "))
    }
}

pub type Result<T> = std::result::Result<T, PacsError>;

impl PacsError {
    pub fn new(server: impl Into<String>, kind: ErrorKind) -> PacsError {
        PacsError { server: server.into(), kind }
    }
}

/// Find studies with their series (QIDO-RS or C-FIND).
pub fn search(server: &Server, query: &StudyQuery) -> Result<Vec<StudyMatch>> {
    match &server.endpoint {
        Endpoint::DicomWeb { .. } => dicomweb::search(server, query),
        Endpoint::Dimse { .. } => {
            let peer = server.dimse_peer().ok_or_else(|| server.err(ErrorKind::Config("not a DIMSE server".into())))?;
            dimse::find_studies(&peer, query).map_err(|e| server.err(ErrorKind::Dimse(e)))
        }
    }
}

/// Check the server answers and accepts us (C-ECHO, or a QIDO-RS query for nothing).
pub fn echo(server: &Server) -> Result<()> {
    match &server.endpoint {
        Endpoint::DicomWeb { .. } => dicomweb::echo(server),
        Endpoint::Dimse { .. } => {
            let peer = server.dimse_peer().ok_or_else(|| server.err(ErrorKind::Config("not a DIMSE server".into())))?;
            dimse::echo(&peer).map_err(|e| server.err(ErrorKind::Dimse(e)))
        }
    }
}
