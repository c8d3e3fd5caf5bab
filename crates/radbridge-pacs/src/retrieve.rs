//! Retrieve a study or one series into `<output>/<series uid>/<sop instance uid>.dcm`.
//!
//! Each instance is streamed to a hidden temporary file in its series folder and renamed to its
//! final name once complete, so whatever stops a transfer (a dropped connection, a cancel, a
//! crash) leaves only complete instances under final names. A second run lists the series'
//! instances, keeps those already there and fetches only the rest (DICOMweb: QIDO-RS, then
//! WADO-RS per missing instance; DIMSE: image-level C-FIND, then one image-level C-MOVE of the
//! missing SOP Instance UIDs).
//! The folder opens with `inspect`/`diagnose`/the app like any other DICOM folder.
//!
//! Files are not fsync'ed one by one (that would cost more than the transfer): a process that
//! dies leaves the page cache intact, and after a power cut a resume re-fetches any file found
//! empty or without its file meta group.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use radbridge_volume::CancelToken;
use serde::Serialize;

use crate::dicomweb;
use crate::http::{uid_segment, Http};
use crate::multipart::{self, MultipartError, MultipartReader};
use crate::{Endpoint, ErrorKind, PacsError, Result, Server};

/// One instance may not exceed this (a multi-frame CT can be large, but not larger).
pub const MAX_INSTANCE_BYTES: u64 = 4 << 30;

/// What to retrieve, and where.
#[derive(Debug, Clone)]
pub struct RetrieveRequest {
    pub study_uid: String,
    /// Only this series; `None`: every series of the study.
    pub series_uid: Option<String>,
    pub output: PathBuf,
}

/// Progress, reported after each instance (the app's `pacs-progress` event).
#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
#[ts(rename = "PacsProgress")]
pub struct Progress {
    pub series_uid: String,
    /// Instances complete on disk (already there plus fetched).
    pub instances_done: u64,
    /// Instances expected, when the server said.
    pub instances_total: Option<u64>,
    pub bytes: u64,
}

/// One retrieved series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesOutcome {
    pub series_uid: String,
    pub folder: PathBuf,
    /// Instances on disk at the end.
    pub instances: u64,
    /// Of which fetched in this run.
    pub fetched: u64,
    /// Of which already complete from an earlier run.
    pub already_present: u64,
}

/// What a retrieve did.
#[derive(Debug, Clone, Serialize)]
pub struct RetrieveOutcome {
    pub study_uid: String,
    pub series: Vec<SeriesOutcome>,
    pub bytes: u64,
}

/// Retrieve `req` from `server`. `progress` may be called from another thread (DIMSE).
pub fn retrieve(
    server: &Server,
    req: &RetrieveRequest,
    progress: &mut (dyn FnMut(&Progress) + Send),
    cancel: &CancelToken,
) -> Result<RetrieveOutcome> {
    uid_segment(server, &req.study_uid)?;
    if let Some(s) = &req.series_uid {
        uid_segment(server, s)?;
    }
    let io_err = |path: &Path, source| server.err(ErrorKind::Io { path: path.to_path_buf(), source });
    std::fs::create_dir_all(&req.output).map_err(|e| io_err(&req.output, e))?;
    match server.endpoint {
        Endpoint::DicomWeb { .. } => retrieve_dicomweb(server, req, progress, cancel),
        Endpoint::Dimse { .. } => retrieve_dimse(server, req, progress, cancel),
    }
}

/// The series folder: created, stale temporaries removed, complete instances listed.
fn prepare_folder(server: &Server, output: &Path, series_uid: &str) -> Result<(PathBuf, HashSet<String>)> {
    let folder = output.join(series_uid);
    let io_err = |source| server.err(ErrorKind::Io { path: folder.clone(), source });
    std::fs::create_dir_all(&folder).map_err(io_err)?;
    let mut present = HashSet::new();
    for e in std::fs::read_dir(&folder).map_err(io_err)? {
        let e = e.map_err(io_err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".part") {
            let _ = std::fs::remove_file(e.path());
        } else if let Some(uid) = name.strip_suffix(".dcm") {
            // Complete files were renamed into place; one a power cut left empty or without its
            // file meta group is fetched again.
            if has_file_meta(&e.path()) {
                present.insert(uid.to_string());
            } else {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok((folder, present))
}

fn has_file_meta(path: &Path) -> bool {
    let mut head = Vec::with_capacity(HEAD);
    let Ok(f) = File::open(path) else { return false };
    if io::Read::read_to_end(&mut io::Read::take(f, HEAD as u64), &mut head).is_err() {
        return false;
    }
    sop_uid_of(&head).is_some_and(|u| !u.is_empty())
}

/// The SOP Instance UID in the file meta group of a Part-10 file's first bytes.
fn sop_uid_of(head: &[u8]) -> Option<String> {
    let start = if head.get(128..132) == Some(b"DICM") {
        128
    } else if head.starts_with(b"DICM") {
        0
    } else {
        return None;
    };
    let meta = dicom_object::meta::FileMetaTable::from_reader(&head[start..]).ok()?;
    Some(meta.media_storage_sop_instance_uid().trim_end_matches(['\0', ' ']).to_string())
}

/// Writes a part to a temporary file, keeping its first bytes for the file meta group, and
/// stops when the transfer is cancelled.
struct PartSink<'c> {
    file: BufWriter<File>,
    head: Vec<u8>,
    cancel: &'c CancelToken,
}

const HEAD: usize = 64 * 1024;

impl Write for PartSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            // Not `Interrupted`: write_all would retry that.
            return Err(io::Error::other("cancelled"));
        }
        if self.head.len() < HEAD {
            let n = (HEAD - self.head.len()).min(buf.len());
            self.head.extend_from_slice(&buf[..n]);
        }
        self.file.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Removes a temporary file unless it was renamed.
struct TempGuard(Option<PathBuf>);
impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

struct Counters {
    done: u64,
    fetched: u64,
    bytes: u64,
}

/// Stream one WADO-RS multipart response into `folder`; returns the UIDs written.
#[allow(clippy::too_many_arguments)]
fn fetch_multipart(
    http: &Http<'_>,
    url: &str,
    folder: &Path,
    series_uid: &str,
    total: Option<u64>,
    c: &mut Counters,
    progress: &mut (dyn FnMut(&Progress) + Send),
    cancel: &CancelToken,
) -> Result<()> {
    let server = http.server;
    let resp = http.get(url, "multipart/related; type=\"application/dicom\"; transfer-syntax=*")?;
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let malformed = |msg: String| server.err(ErrorKind::Multipart { url: url.to_string(), msg });
    let boundary = multipart::boundary(&ct).map_err(|e| malformed(e.to_string()))?;
    let mut reader = MultipartReader::new(resp.into_body().into_reader(), &boundary);
    let mut n = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(server.err(ErrorKind::Cancelled));
        }
        let map = |e: MultipartError, c: &Counters| match e {
            MultipartError::Read(io) => server.err(ErrorKind::Dropped {
                url: url.to_string(),
                detail: format!("{io} after {} instance(s); run the same retrieve again to fetch the rest", c.fetched),
            }),
            MultipartError::Truncated { .. } => server.err(ErrorKind::Dropped {
                url: url.to_string(),
                detail: format!("{e} after {} instance(s); run the same retrieve again to fetch the rest", c.fetched),
            }),
            MultipartError::Write { .. } if cancel.is_cancelled() => server.err(ErrorKind::Cancelled),
            MultipartError::Write { source, .. } => server.err(ErrorKind::Io { path: folder.to_path_buf(), source }),
            other => malformed(other.to_string()),
        };
        let Some(headers) = reader.next_part().map_err(|e| map(e, c))? else { break };
        n += 1;
        if let Some(t) = headers.get("content-type") {
            if !t.to_ascii_lowercase().starts_with("application/dicom") {
                return Err(malformed(format!("part {n} is {t:?}, not application/dicom")));
            }
        }
        let tmp = folder.join(format!(".{n}.{}.part", std::process::id()));
        let mut guard = TempGuard(Some(tmp.clone()));
        let file = File::create(&tmp).map_err(|source| server.err(ErrorKind::Io { path: tmp.clone(), source }))?;
        let mut sink = PartSink { file: BufWriter::with_capacity(1 << 20, file), head: Vec::new(), cancel };
        let len = reader.copy_body(&mut sink, MAX_INSTANCE_BYTES).map_err(|e| map(e, c))?;
        sink.flush().map_err(|source| server.err(ErrorKind::Io { path: tmp.clone(), source }))?;
        let uid = sop_uid_of(&sink.head).ok_or_else(|| malformed(format!("part {n} is not a DICOM Part-10 file")))?;
        if !crate::is_uid(&uid) {
            return Err(malformed(format!("part {n} has an invalid SOP Instance UID {uid:?}")));
        }
        let dest = folder.join(format!("{uid}.dcm"));
        std::fs::rename(&tmp, &dest).map_err(|source| server.err(ErrorKind::Io { path: dest.clone(), source }))?;
        guard.0 = None;
        c.done += 1;
        c.fetched += 1;
        c.bytes += len;
        progress(&Progress { series_uid: series_uid.to_string(), instances_done: c.done, instances_total: total, bytes: c.bytes });
    }
    if n == 0 {
        return Err(malformed("no parts".into()));
    }
    Ok(())
}

fn retrieve_dicomweb(
    server: &Server,
    req: &RetrieveRequest,
    progress: &mut (dyn FnMut(&Progress) + Send),
    cancel: &CancelToken,
) -> Result<RetrieveOutcome> {
    let http = Http::new(server)?;
    let root = dicomweb::root(server)?;
    let series = dicomweb::list_series(&http, root, &req.study_uid, req.series_uid.as_deref())?;
    if series.is_empty() {
        if let Some(se) = &req.series_uid {
            if dicomweb::study_exists(&http, root, &req.study_uid)? {
                return Err(server.err(ErrorKind::SeriesNotFound { study: req.study_uid.clone(), series: se.clone() }));
            }
        }
        return Err(server.err(ErrorKind::StudyNotFound(req.study_uid.clone())));
    }
    let mut outcome = RetrieveOutcome { study_uid: req.study_uid.clone(), series: Vec::new(), bytes: 0 };
    for s in &series {
        if cancel.is_cancelled() {
            return Err(server.err(ErrorKind::Cancelled));
        }
        if !crate::is_uid(&s.series_uid) {
            return Err(server.err(ErrorKind::Json { url: root.to_string(), msg: format!("invalid series UID {:?}", s.series_uid) }));
        }
        let (folder, present) = prepare_folder(server, &req.output, &s.series_uid)?;
        // A fresh folder takes the whole series in one request; only a resume needs the list of
        // instances to know what is missing.
        let expected = if present.is_empty() { None } else { Some(dicomweb::list_instances(&http, root, &req.study_uid, &s.series_uid)?) };
        let missing: Option<Vec<&String>> = expected.as_ref().map(|e| e.iter().filter(|u| !present.contains(*u)).collect());
        let already = match (&expected, &missing) {
            (Some(e), Some(m)) => (e.len() - m.len()) as u64,
            _ => 0,
        };
        let total = expected.as_ref().map(|e| e.len() as u64).or(s.instances);
        let mut c = Counters { done: already, fetched: 0, bytes: 0 };
        progress(&Progress { series_uid: s.series_uid.clone(), instances_done: c.done, instances_total: total, bytes: 0 });
        let series_url = format!("{root}/studies/{}/series/{}", req.study_uid, s.series_uid);
        let all = match (&expected, &missing) {
            (Some(e), Some(m)) => m.len() == e.len() || e.is_empty(),
            _ => true,
        };
        if all {
            fetch_multipart(&http, &series_url, &folder, &s.series_uid, total, &mut c, progress, cancel)?;
        } else {
            for uid in missing.unwrap_or_default() {
                let url = format!("{series_url}/instances/{}", uid_segment(server, uid)?);
                fetch_multipart(&http, &url, &folder, &s.series_uid, total, &mut c, progress, cancel)?;
            }
        }
        outcome.bytes += c.bytes;
        outcome.series.push(SeriesOutcome {
            series_uid: s.series_uid.clone(),
            folder,
            instances: c.done,
            fetched: c.fetched,
            already_present: already,
        });
    }
    Ok(outcome)
}

fn retrieve_dimse(
    server: &Server,
    req: &RetrieveRequest,
    progress: &mut (dyn FnMut(&Progress) + Send),
    cancel: &CancelToken,
) -> Result<RetrieveOutcome> {
    let peer = server.dimse_peer().ok_or_else(|| server.err(ErrorKind::Config("not a DIMSE server".into())))?;
    let wrap = |e: crate::dimse::DimseError| server.err(ErrorKind::Dimse(e));
    // What the peer has (C-FIND), to name the error and to know the totals.
    let query = crate::StudyQuery { study_uid: Some(req.study_uid.clone()), ..Default::default() };
    let found = crate::dimse::find_studies(&peer, &query).map_err(wrap)?;
    let Some(study) = found.into_iter().find(|s| s.study_uid == req.study_uid) else {
        return Err(server.err(ErrorKind::StudyNotFound(req.study_uid.clone())));
    };
    let series: Vec<_> = study.series.iter().filter(|s| req.series_uid.as_ref().is_none_or(|u| *u == s.series_uid)).collect();
    if series.is_empty() {
        let se = req.series_uid.clone().unwrap_or_default();
        return Err(server.err(ErrorKind::SeriesNotFound { study: req.study_uid.clone(), series: se }));
    }
    /// What one series has on disk, and how many instances this run wrote.
    struct SeriesState {
        folder: PathBuf,
        present: HashSet<String>,
        written: u64,
    }
    struct State {
        per_series: std::collections::HashMap<String, SeriesState>,
        bytes: u64,
        error: Option<PacsError>,
    }
    let mut state = State { per_series: Default::default(), bytes: 0, error: None };
    let mut totals = std::collections::HashMap::new();
    // What to move: a fresh series whole; one with complete files from an earlier run only its
    // missing instances (image-level C-FIND, then an image-level C-MOVE of those UIDs).
    let mut plan: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for s in &series {
        if !crate::is_uid(&s.series_uid) {
            return Err(server.err(ErrorKind::Config(format!("invalid series UID {:?}", s.series_uid))));
        }
        let (folder, present) = prepare_folder(server, &req.output, &s.series_uid)?;
        if present.is_empty() {
            plan.push((s.series_uid.clone(), None));
        } else {
            let listed = crate::dimse::find_instances(&peer, &req.study_uid, &s.series_uid).map_err(wrap)?;
            let missing: Vec<String> = listed.into_iter().filter(|u| !present.contains(u)).collect();
            if !missing.is_empty() {
                plan.push((s.series_uid.clone(), Some(missing)));
            }
        }
        totals.insert(s.series_uid.clone(), s.instances);
        state.per_series.insert(s.series_uid.clone(), SeriesState { folder, present, written: 0 });
    }
    let state = Mutex::new(state);
    let server_name = server.name.clone();
    let progress = Mutex::new(progress);
    let mut on_instance = |inst: crate::dimse::ReceivedInstance| -> std::result::Result<(), String> {
        let mut st = state.lock().map_err(|_| "state poisoned".to_string())?;
        if !crate::is_uid(&inst.sop_instance_uid) {
            return Err(format!("invalid SOP Instance UID {:?}", inst.sop_instance_uid));
        }
        let series_uid = inst.series_uid.clone().unwrap_or_default();
        let entry = st.per_series.get_mut(&series_uid).ok_or_else(|| format!("an instance of an unexpected series {series_uid:?}"))?;
        let dest = entry.folder.join(format!("{}.dcm", inst.sop_instance_uid));
        if !entry.present.contains(&inst.sop_instance_uid) {
            let tmp = entry.folder.join(format!(".{}.{}.part", inst.sop_instance_uid, std::process::id()));
            let write = std::fs::write(&tmp, &inst.file_bytes).and_then(|()| std::fs::rename(&tmp, &dest));
            if let Err(source) = write {
                let _ = std::fs::remove_file(&tmp);
                let msg = format!("{}: {source}", dest.display());
                st.error = Some(PacsError::new(server_name.clone(), ErrorKind::Io { path: dest, source }));
                return Err(msg);
            }
            entry.present.insert(inst.sop_instance_uid.clone());
            entry.written += 1;
        }
        let done = entry.present.len() as u64;
        st.bytes += inst.file_bytes.len() as u64;
        let p = Progress {
            series_uid: series_uid.clone(),
            instances_done: done,
            instances_total: totals.get(&series_uid).copied().flatten(),
            bytes: st.bytes,
        };
        drop(st);
        if let Ok(mut f) = progress.lock() {
            (*f)(&p);
        }
        Ok(())
    };
    let scp_port = if server.scp_port == 0 { 11112 } else { server.scp_port };
    let whole_study = req.series_uid.is_none() && series.len() > 1 && plan.len() == series.len() && plan.iter().all(|(_, m)| m.is_none());
    let scopes: Vec<crate::dimse::MoveScope<'_>> = if whole_study {
        vec![crate::dimse::MoveScope::Study]
    } else {
        plan.iter()
            .map(|(uid, missing)| match missing {
                None => crate::dimse::MoveScope::Series(uid),
                Some(m) => crate::dimse::MoveScope::Instances { series_uid: uid, sop_uids: m },
            })
            .collect()
    };
    let mut outcome = crate::dimse::MoveOutcome { completed: 0, failed: 0, warning: 0, received: 0 };
    let mut moved = Ok(());
    for scope in scopes {
        match crate::dimse::move_scope_to_self(&peer, &req.study_uid, scope, scp_port, &mut on_instance, cancel.as_atomic()) {
            Ok(o) => {
                outcome.completed += o.completed;
                outcome.failed += o.failed;
                outcome.warning += o.warning;
                outcome.received += o.received;
            }
            Err(e) => {
                moved = Err(e);
                break;
            }
        }
    }
    let cancelled = cancel.is_cancelled();
    let mut st = state.lock().map_err(|_| server.err(ErrorKind::Config("state poisoned".into())))?;
    if let Some(e) = st.error.take() {
        return Err(e);
    }
    if cancelled {
        return Err(server.err(ErrorKind::Cancelled));
    }
    moved.map_err(wrap)?;
    if outcome.failed > 0 {
        return Err(server.err(ErrorKind::Dimse(crate::dimse::DimseError::Status {
            op: "C-MOVE",
            status: 0xB000,
            comment: Some(format!(
                "{} sub-operation(s) failed, {} completed; run the same retrieve again to resume",
                outcome.failed, outcome.completed
            )),
        })));
    }
    let mut out = RetrieveOutcome { study_uid: req.study_uid.clone(), series: Vec::new(), bytes: st.bytes };
    for s in &series {
        if let Some(e) = st.per_series.get(&s.series_uid) {
            let instances = e.present.len() as u64;
            out.series.push(SeriesOutcome {
                series_uid: s.series_uid.clone(),
                folder: e.folder.clone(),
                instances,
                fetched: e.written,
                already_present: instances - e.written,
            });
        }
    }
    Ok(out)
}
