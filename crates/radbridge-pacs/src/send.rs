//! Send DICOM files (a findings SR, typically) to a server: STOW-RS or C-STORE, with what the
//! peer accepted and refused, file by file.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::dicomweb::{self, tag};
use crate::http::Http;
use crate::{Endpoint, ErrorKind, PacsError, Result, Server};

/// A file larger than this is not sent (STOW-RS bodies are built in memory).
pub const MAX_SEND_BYTES: u64 = 1 << 30;

/// What the peer did with one file.
#[derive(Debug, Clone, Serialize)]
pub struct SendOutcome {
    pub path: PathBuf,
    pub sop_instance_uid: String,
    pub accepted: bool,
    /// The peer's status or failure reason, when it gave one.
    pub detail: String,
}

/// A file to send: its bytes and SOP Instance UID, checked before anything goes on the wire.
struct Outgoing {
    path: PathBuf,
    bytes: Vec<u8>,
    sop_uid: String,
}

fn read_dicom(server: &Server, path: &Path) -> Result<Outgoing> {
    let file_err = |msg: String| server.err(ErrorKind::File { path: path.to_path_buf(), msg });
    let meta = std::fs::metadata(path).map_err(|source| server.err(ErrorKind::Io { path: path.to_path_buf(), source }))?;
    if !meta.is_file() {
        return Err(file_err("not a file".into()));
    }
    if meta.len() > MAX_SEND_BYTES {
        return Err(file_err(format!("{} bytes, more than the {} that can be sent", meta.len(), MAX_SEND_BYTES)));
    }
    let bytes = std::fs::read(path).map_err(|source| server.err(ErrorKind::Io { path: path.to_path_buf(), source }))?;
    if bytes.get(128..132) != Some(b"DICM") {
        return Err(file_err("not a DICOM Part-10 file (no DICM marker at byte 128)".into()));
    }
    let meta =
        dicom_object::meta::FileMetaTable::from_reader(&bytes[128..]).map_err(|e| file_err(format!("unreadable file meta group: {e}")))?;
    let sop_uid = meta.media_storage_sop_instance_uid().trim_end_matches(['\0', ' ']).to_string();
    if sop_uid.is_empty() {
        return Err(file_err("no SOP Instance UID in the file meta group".into()));
    }
    Ok(Outgoing { path: path.to_path_buf(), bytes, sop_uid })
}

/// Send `files`; every file is checked first, so a bad file sends nothing.
pub fn send(server: &Server, files: &[PathBuf]) -> Result<Vec<SendOutcome>> {
    if files.is_empty() {
        return Err(server.err(ErrorKind::Config("no files to send".into())));
    }
    match &server.endpoint {
        Endpoint::DicomWeb { .. } => {
            let out: Vec<Outgoing> = files.iter().map(|p| read_dicom(server, p)).collect::<Result<_>>()?;
            stow(server, &out)
        }
        Endpoint::Dimse { .. } => {
            for p in files {
                read_dicom(server, p)?;
            }
            let peer = server.dimse_peer().ok_or_else(|| server.err(ErrorKind::Config("not a DIMSE server".into())))?;
            let results = crate::dimse::store(&peer, files).map_err(|e| server.err(ErrorKind::Dimse(e)))?;
            Ok(results
                .into_iter()
                .map(|r| SendOutcome {
                    path: r.path,
                    sop_instance_uid: r.sop_instance_uid,
                    accepted: r.accepted,
                    detail: match r.comment {
                        Some(c) => format!("status 0x{:04X}: {c}", r.status),
                        None => format!("status 0x{:04X}", r.status),
                    },
                })
                .collect())
        }
    }
}

fn stow(server: &Server, files: &[Outgoing]) -> Result<Vec<SendOutcome>> {
    let http = Http::new(server)?;
    let root = dicomweb::root(server)?;
    let url = format!("{root}/studies");
    let boundary = format!("radbridge-{:016x}", boundary_seed());
    let mut body = Vec::with_capacity(files.iter().map(|f| f.bytes.len() + 128).sum());
    for f in files {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
        body.extend_from_slice(&f.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    // 409 Conflict: some instances failed; the body still says which.
    let resp = match http.post(&url, &ct, "application/dicom+json", &body) {
        Ok(r) => Some(r),
        Err(PacsError { kind: ErrorKind::Http { status: 409, body, .. }, .. }) => {
            return parse_stow(server, &url, files, &body);
        }
        Err(e) => return Err(e),
    };
    let text = match resp {
        Some(mut r) => r
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| server.err(ErrorKind::Dropped { url: url.clone(), detail: e.to_string() }))?,
        None => String::new(),
    };
    parse_stow(server, &url, files, &text)
}

fn boundary_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((std::process::id() as u64) << 32)
}

/// The STOW-RS response (PS3.18 10.5.3): ReferencedSOPSequence (accepted) and
/// FailedSOPSequence with a FailureReason.
fn parse_stow(server: &Server, url: &str, files: &[Outgoing], text: &str) -> Result<Vec<SendOutcome>> {
    let v: Value = serde_json::from_str(text).map_err(|e| server.err(ErrorKind::Json { url: url.to_string(), msg: e.to_string() }))?;
    // Some servers wrap the response dataset in an array.
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        other => other,
    };
    let items = |t: &str| -> Vec<Value> { v.get(t).and_then(|e| e.get("Value")).and_then(Value::as_array).cloned().unwrap_or_default() };
    let accepted: Vec<String> =
        items(tag::REFERENCED_SOP_SEQUENCE).iter().map(|i| dicomweb::text(i, tag::REFERENCED_SOP_INSTANCE)).collect();
    let failed: Vec<(String, String)> = items(tag::FAILED_SOP_SEQUENCE)
        .iter()
        .map(|i| (dicomweb::text(i, tag::REFERENCED_SOP_INSTANCE), dicomweb::text(i, tag::FAILURE_REASON)))
        .collect();
    Ok(files
        .iter()
        .map(|f| {
            let (accepted, detail) = if accepted.contains(&f.sop_uid) {
                (true, "stored".to_string())
            } else if let Some((_, reason)) = failed.iter().find(|(u, _)| *u == f.sop_uid) {
                (false, failure_reason(reason))
            } else {
                (false, "not in the server's answer".to_string())
            };
            SendOutcome { path: f.path.clone(), sop_instance_uid: f.sop_uid.clone(), accepted, detail }
        })
        .collect())
}

/// The common DICOM failure reasons (PS3.4 status codes; STOW-RS gives them as decimals).
fn failure_reason(code: &str) -> String {
    let name = match code.trim().parse::<u32>().ok() {
        Some(0xA700) => "out of resources",
        Some(0xA900) => "data set does not match SOP class",
        Some(0xC000) => "cannot understand",
        Some(0x0110) => "processing failure",
        Some(0x0122) => "SOP class not supported",
        _ => "refused",
    };
    if code.is_empty() {
        name.to_string()
    } else {
        format!("{name} (failure reason {code})")
    }
}
