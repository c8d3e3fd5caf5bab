//! DICOM DIMSE client: C-ECHO, C-FIND (study + series level), C-MOVE to ourselves (with a
//! short-lived Storage SCP receiving the instances) and C-STORE, over `dicom-ul`.
//!
//! Self-contained: depends only on `crate::query` and the dicom-rs crates. Command sets are
//! built as `InMemDicomObject`s and encoded in implicit VR little endian. Nothing that comes
//! from the network is indexed or unwrapped; every accumulation is bounded.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::{TransferSyntax, TransferSyntaxIndex};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::{Association, SyncAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::{ClientAssociationOptions, Pdu, ServerAssociationOptions};
use tracing::{debug, info, warn};

use crate::query::{SeriesMatch, StudyMatch, StudyQuery};

/// A remote DICOM node and how we present ourselves to it.
#[derive(Debug, Clone)]
pub struct DimsePeer {
    pub called_aet: String,
    pub host: String,
    pub port: u16,
    pub calling_aet: String,
    /// Connect timeout, and the longest we wait for any answer (or any progress) from the peer.
    pub timeout: Duration,
}

/// What can go wrong talking DIMSE. Messages are lowercase phrases meant to follow
/// `error: pacs <server>: `.
#[derive(Debug, thiserror::Error)]
pub enum DimseError {
    /// TCP connection could not be made (refused, unreachable, or not within `peer.timeout`).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The peer answered the A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ.
    #[error("association rejected by the server ({reason}); check the AE titles")]
    AssociationRejected { reason: String },
    /// The association was accepted but none of the presentation contexts we need were.
    #[error("the server does not support {what}")]
    Unsupported { what: String },
    /// The peer aborted the association or dropped the connection.
    #[error("{0}")]
    Aborted(String),
    /// The peer said nothing for longer than `peer.timeout`.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// A DIMSE operation ended with a failure (or cancel-unrelated refusal) status.
    #[error("{op} failed with status 0x{status:04X} ({}){}", status_meaning(*status), comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Status { op: &'static str, status: u16, comment: Option<String> },
    /// The peer broke the protocol (malformed command, unexpected PDU, oversized message...).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Our own Storage SCP could not listen on the requested port.
    #[error("cannot listen on port {port} for incoming instances: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The caller's cancel flag turned true.
    #[error("cancelled")]
    Cancelled,
}

/// One instance received by our Storage SCP during a C-MOVE, as a complete Part-10 file.
#[derive(Debug, Clone)]
pub struct ReceivedInstance {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub series_uid: Option<String>,
    pub transfer_syntax: String,
    /// 128-byte preamble + "DICM" + file meta group + the data set bytes exactly as received.
    pub file_bytes: Vec<u8>,
}

/// Counts from the final C-MOVE response, plus how many instances our SCP accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveOutcome {
    pub completed: u32,
    pub failed: u32,
    pub warning: u32,
    pub received: u32,
}

/// Per-file result of [`store`].
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    pub path: PathBuf,
    /// Empty when the file could not be read.
    pub sop_instance_uid: String,
    /// The C-STORE response status, or a locally generated failure status when the file was
    /// not sent: 0xC000 (file unreadable / not DICOM), 0x0122 (no accepted presentation
    /// context for its SOP class / transfer syntax).
    pub status: u16,
    pub accepted: bool,
    pub comment: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// constants

/// Largest PDU we accept (advertised in the association; strict mode enforces it).
const MAX_PDU: u32 = 1 << 20;
/// Largest command set we accept.
const MAX_COMMAND_BYTES: usize = 1 << 20;
/// Largest C-FIND identifier we accept.
const MAX_IDENTIFIER_BYTES: u64 = 16 << 20;
/// Largest instance our Storage SCP accepts.
const MAX_INSTANCE_BYTES: u64 = 2 << 30;
/// Largest number of C-FIND matches kept per query.
const MAX_MATCHES: usize = 100_000;
/// How often a blocked read wakes up to poll the cancel flag.
const POLL_TICK: Duration = Duration::from_millis(200);

const IMPLEMENTATION_CLASS_UID: &str = "2.25.189137459543658904093171137097979721915";
const IMPLEMENTATION_VERSION: &str = "RADBRIDGE";

const TS_IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const TS_EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const TS_EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const TS_DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const VERIFICATION: &str = "1.2.840.10008.1.1";

const CMD_C_STORE_RQ: u16 = 0x0001;
const CMD_C_STORE_RSP: u16 = 0x8001;
const CMD_C_FIND_RQ: u16 = 0x0020;
const CMD_C_FIND_RSP: u16 = 0x8020;
const CMD_C_MOVE_RQ: u16 = 0x0021;
const CMD_C_MOVE_RSP: u16 = 0x8021;
const CMD_C_ECHO_RQ: u16 = 0x0030;
const CMD_C_ECHO_RSP: u16 = 0x8030;
const CMD_C_CANCEL_RQ: u16 = 0x0FFF;
const NO_DATASET: u16 = 0x0101;

/// Transfer syntaxes our Storage SCP accepts (data passes through untouched).
const SCP_TRANSFER_SYNTAXES: &[&str] = &[
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::JPEG2000MC_LOSSLESS,
    uids::JPEG2000MC,
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG_BASELINE8_BIT,
    uids::JPEG_EXTENDED12_BIT,
    uids::JPEG_LOSSLESS,
    uids::JPEG_LOSSLESS_SV1,
    uids::RLE_LOSSLESS,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K_LOSSLESS_RPCL,
    uids::HTJ2K,
    TS_DEFLATED_LE,
    TS_EXPLICIT_LE,
    TS_IMPLICIT_LE,
    TS_EXPLICIT_BE,
];

/// Storage SOP classes our Storage SCP lists explicitly (it is also promiscuous, so other
/// storage classes a PACS proposes are accepted too).
const SCP_SOP_CLASSES: &[&str] = &[
    uids::CT_IMAGE_STORAGE,
    uids::ENHANCED_CT_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ENHANCED_MR_IMAGE_STORAGE,
    uids::LEGACY_CONVERTED_ENHANCED_MR_IMAGE_STORAGE,
    uids::MR_SPECTROSCOPY_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_TRUE_COLOR_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::BASIC_TEXT_SR_STORAGE,
    uids::ENHANCED_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::COMPREHENSIVE3_DSR_STORAGE,
    uids::X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::SEGMENTATION_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
    uids::RAW_DATA_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
    uids::RT_STRUCTURE_SET_STORAGE,
    uids::RT_DOSE_STORAGE,
    uids::RT_PLAN_STORAGE,
    uids::SPATIAL_REGISTRATION_STORAGE,
];

// ---------------------------------------------------------------------------------------------
// status helpers

fn is_pending(status: u16) -> bool {
    status == 0xFF00 || status == 0xFF01
}

fn is_success(status: u16) -> bool {
    status == 0x0000
}

fn is_warning(status: u16) -> bool {
    status == 0x0001 || (status & 0xF000) == 0xB000
}

fn is_cancel(status: u16) -> bool {
    status == 0xFE00
}

fn status_meaning(status: u16) -> &'static str {
    match status {
        0x0000 => "success",
        0xFF00 | 0xFF01 => "pending",
        0xFE00 => "cancelled",
        0x0001 | 0xB000..=0xBFFF => "warning",
        0xA801 => "move destination unknown",
        0xA700..=0xA7FF => "out of resources",
        0xA900..=0xA9FF => "data set does not match sop class",
        0x0122 => "sop class not supported",
        0x0124 => "not authorized",
        0x0211 => "unrecognized operation",
        0x0210 => "duplicate invocation",
        0xC000..=0xCFFF => "unable to process",
        _ => "failure",
    }
}

// ---------------------------------------------------------------------------------------------
// error mapping

fn io_is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// The i/o error behind a dicom-ul receive/send error, if that is what it was.
fn ul_io_error(e: &dicom_ul::association::Error) -> Option<&std::io::Error> {
    use dicom_ul::association::Error as E;
    match e {
        E::ReceivePdu { source, .. } => match source {
            dicom_ul::pdu::ReadError::ReadPdu { source, .. } => Some(source),
            dicom_ul::pdu::ReadError::ReadPduItem { source, .. } => Some(source),
            dicom_ul::pdu::ReadError::ReadPduField { source, .. } => Some(source),
            _ => None,
        },
        E::WireSend { source, .. } => Some(source),
        E::WireRead { source, .. } => Some(source),
        E::Timeout { source, .. } => Some(source),
        _ => None,
    }
}

fn abort_text(source: &dicom_ul::pdu::AbortRQSource) -> String {
    use dicom_ul::pdu::AbortRQSource as S;
    match source {
        S::ServiceUser => "by the peer".to_string(),
        S::ServiceProvider(r) => format!("by the peer's network layer: {}", r.to_string().to_lowercase()),
        S::Reserved => "by the peer (reserved source)".to_string(),
    }
}

/// An error and its sources, "a: b: c", lowercase.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut n = 0;
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
        n += 1;
        if n > 8 {
            break;
        }
    }
    s.to_lowercase()
}

fn map_ul(e: dicom_ul::association::Error, timeout: Duration, addr: &str) -> DimseError {
    use dicom_ul::association::Error as E;
    if let Some(io) = ul_io_error(&e) {
        if io_is_timeout(io) {
            return DimseError::Timeout(timeout);
        }
        return DimseError::Aborted(format!("the connection dropped ({io})"));
    }
    match e {
        E::Connect { source, .. } | E::ToAddress { source, .. } => {
            let source = if io_is_timeout(&source) {
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"))
            } else {
                source
            };
            DimseError::Connect { addr: addr.to_string(), source }
        }
        E::Rejected { association_rj, .. } => {
            DimseError::AssociationRejected { reason: format!("{}", association_rj.source).to_lowercase() }
        }
        E::Aborted { .. } => DimseError::Aborted("the server aborted the association".into()),
        E::ConnectionClosed { .. } => DimseError::Aborted("the server closed the connection".into()),
        E::NoAcceptedPresentationContexts { .. } => DimseError::Unsupported { what: "any of the proposed presentation contexts".into() },
        E::UnexpectedPdu { pdu, .. } => match *pdu {
            Pdu::AbortRQ { source } => DimseError::Aborted(format!("the association was aborted {}", abort_text(&source))),
            other => DimseError::Protocol(format!("unexpected pdu from the server: {}", other.short_description())),
        },
        other => DimseError::Protocol(error_chain(&other)),
    }
}

// ---------------------------------------------------------------------------------------------
// command sets

fn pad_uid(s: &str) -> String {
    let mut s = s.trim_end_matches(['\0', ' ']).to_string();
    if s.len() % 2 == 1 {
        s.push('\0');
    }
    s
}

fn pad_text(s: &str) -> String {
    let mut s = s.to_string();
    if s.len() % 2 == 1 {
        s.push(' ');
    }
    s
}

type Elem = DataElement<InMemDicomObject, dicom_object::mem::InMemFragment>;

fn el_uid(tag: Tag, v: &str) -> Elem {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(pad_uid(v)))
}

fn el_us(tag: Tag, v: u16) -> Elem {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

fn el_text(tag: Tag, vr: VR, v: &str) -> Elem {
    if v.is_empty() {
        DataElement::new(tag, vr, PrimitiveValue::Empty)
    } else {
        DataElement::new(tag, vr, PrimitiveValue::from(pad_text(v)))
    }
}

fn ts_by_uid(uid: &str) -> Option<&'static TransferSyntax> {
    TransferSyntaxRegistry.get(uid.trim_end_matches(['\0', ' ']))
}

fn encode_command(elements: Vec<Elem>) -> Result<Vec<u8>, DimseError> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let ts = ts_by_uid(TS_IMPLICIT_LE).ok_or_else(|| DimseError::Protocol("implicit vr little endian not registered".into()))?;
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, ts).map_err(|e| DimseError::Protocol(format!("cannot encode command: {e}")))?;
    Ok(out)
}

fn decode_command(bytes: &[u8]) -> Result<InMemDicomObject, DimseError> {
    let ts = ts_by_uid(TS_IMPLICIT_LE).ok_or_else(|| DimseError::Protocol("implicit vr little endian not registered".into()))?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| DimseError::Protocol(format!("malformed command set: {e}")))
}

fn encode_dataset(obj: &InMemDicomObject, ts_uid: &str) -> Result<Vec<u8>, DimseError> {
    let ts = ts_by_uid(ts_uid).ok_or_else(|| DimseError::Protocol(format!("unknown transfer syntax {ts_uid}")))?;
    let mut out = Vec::with_capacity(512);
    obj.write_dataset_with_ts(&mut out, ts).map_err(|e| DimseError::Protocol(format!("cannot encode data set: {e}")))?;
    Ok(out)
}

fn decode_dataset(bytes: &[u8], ts_uid: &str) -> Result<InMemDicomObject, DimseError> {
    let ts = ts_by_uid(ts_uid).ok_or_else(|| DimseError::Protocol(format!("unknown transfer syntax {ts_uid}")))?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| DimseError::Protocol(format!("malformed data set: {e}")))
}

fn get_u16(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    obj.get(tag).and_then(|e| e.to_int::<u16>().ok())
}

fn get_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

fn get_string(obj: &InMemDicomObject, tag: Tag) -> String {
    get_str(obj, tag).unwrap_or_default()
}

/// Status, error comment and command field of a response command.
struct Response {
    field: u16,
    status: u16,
    comment: Option<String>,
}

fn response_of(cmd: &InMemDicomObject) -> Result<Response, DimseError> {
    let field = get_u16(cmd, tags::COMMAND_FIELD).ok_or_else(|| DimseError::Protocol("response without command field".into()))?;
    let status = get_u16(cmd, tags::STATUS).ok_or_else(|| DimseError::Protocol("response without status".into()))?;
    Ok(Response { field, status, comment: get_str(cmd, tags::ERROR_COMMENT) })
}

// ---------------------------------------------------------------------------------------------
// message transport over an association

struct Message {
    pcid: u8,
    command: InMemDicomObject,
    data: Option<Vec<u8>>,
}

/// An association plus the P-DATA values received but not yet consumed.
struct Link<A> {
    assoc: A,
    pending: VecDeque<PDataValue>,
    /// Longest silence tolerated.
    idle_limit: Duration,
    /// Incremented on every PDU received (lets another thread see progress).
    activity: Option<Arc<AtomicU64>>,
    addr: String,
}

/// Called whenever a read times out: Err stops waiting (cancel), Ok(true) means "progress was
/// made elsewhere, reset the idle timer".
type Poll<'p> = &'p mut dyn FnMut() -> Result<bool, DimseError>;

impl<A: SyncAssociation<TcpStream>> Link<A> {
    fn new(mut assoc: A, idle_limit: Duration, addr: String) -> Result<Self, DimseError> {
        let tick = POLL_TICK.min(idle_limit).max(Duration::from_millis(10));
        assoc.inner_stream().set_read_timeout(Some(tick))?;
        Ok(Link { assoc, pending: VecDeque::new(), idle_limit, activity: None, addr })
    }

    fn recv_pdu(&mut self, poll: Poll<'_>) -> Result<Pdu, DimseError> {
        let mut last = Instant::now();
        loop {
            match SyncAssociation::receive(&mut self.assoc) {
                Ok(pdu) => {
                    if let Some(a) = &self.activity {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(pdu);
                }
                Err(e) if ul_io_error(&e).is_some_and(io_is_timeout) => {
                    if poll()? {
                        last = Instant::now();
                    }
                    if last.elapsed() >= self.idle_limit {
                        return Err(DimseError::Timeout(self.idle_limit));
                    }
                }
                Err(e) => return Err(map_ul(e, self.idle_limit, &self.addr)),
            }
        }
    }

    /// Next P-DATA value, or None when the peer asked to release the association.
    fn next_pdv(&mut self, poll: Poll<'_>) -> Result<Option<PDataValue>, DimseError> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(Some(p));
            }
            match self.recv_pdu(poll)? {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::ReleaseRQ => return Ok(None),
                Pdu::AbortRQ { source } => return Err(DimseError::Aborted(format!("the association was aborted {}", abort_text(&source)))),
                other => return Err(DimseError::Protocol(format!("unexpected pdu: {}", other.short_description()))),
            }
        }
    }

    /// Read one DIMSE message (command + data set if announced). `Ok(None)`: A-RELEASE-RQ.
    fn read_message(&mut self, poll: Poll<'_>, max_data: u64) -> Result<Option<Message>, DimseError> {
        let mut cmd = Vec::new();
        let mut pcid: Option<u8> = None;
        loop {
            let Some(pdv) = self.next_pdv(poll)? else {
                if cmd.is_empty() {
                    return Ok(None);
                }
                return Err(DimseError::Protocol("release requested mid-message".into()));
            };
            if pdv.value_type != PDataValueType::Command {
                return Err(DimseError::Protocol("data set received before its command".into()));
            }
            match pcid {
                None => pcid = Some(pdv.presentation_context_id),
                Some(id) if id != pdv.presentation_context_id => {
                    return Err(DimseError::Protocol("command fragments on different presentation contexts".into()))
                }
                Some(_) => {}
            }
            if cmd.len().saturating_add(pdv.data.len()) > MAX_COMMAND_BYTES {
                return Err(DimseError::Protocol("command set too large".into()));
            }
            cmd.extend_from_slice(&pdv.data);
            if pdv.is_last {
                break;
            }
        }
        let pcid = pcid.unwrap_or(0);
        let command = decode_command(&cmd)?;
        let data_type =
            get_u16(&command, tags::COMMAND_DATA_SET_TYPE).ok_or_else(|| DimseError::Protocol("command without data set type".into()))?;
        if data_type == NO_DATASET {
            return Ok(Some(Message { pcid, command, data: None }));
        }
        let mut data: Vec<u8> = Vec::new();
        loop {
            let Some(pdv) = self.next_pdv(poll)? else {
                return Err(DimseError::Protocol("release requested mid-message".into()));
            };
            if pdv.value_type != PDataValueType::Data {
                return Err(DimseError::Protocol("command received instead of data set".into()));
            }
            if pdv.presentation_context_id != pcid {
                return Err(DimseError::Protocol("data set on a different presentation context than its command".into()));
            }
            if (data.len() as u64).saturating_add(pdv.data.len() as u64) > max_data {
                return Err(DimseError::Protocol(format!("data set larger than {max_data} bytes")));
            }
            data.extend_from_slice(&pdv.data);
            if pdv.is_last {
                break;
            }
        }
        Ok(Some(Message { pcid, command, data: Some(data) }))
    }

    fn send_command(&mut self, pcid: u8, cmd: Vec<u8>) -> Result<(), DimseError> {
        let pdu = Pdu::PData {
            data: vec![PDataValue { presentation_context_id: pcid, value_type: PDataValueType::Command, is_last: true, data: cmd }],
        };
        SyncAssociation::send(&mut self.assoc, &pdu).map_err(|e| map_ul(e, self.idle_limit, &self.addr))
    }

    fn send_data(&mut self, pcid: u8, data: &[u8]) -> Result<(), DimseError> {
        let mut w = SyncAssociation::send_pdata(&mut self.assoc, pcid);
        let r = w.write_all(data).and_then(|_| w.finish());
        r.map_err(|e| {
            if io_is_timeout(&e) {
                DimseError::Timeout(self.idle_limit)
            } else {
                DimseError::Aborted(format!("the connection dropped while sending ({e})"))
            }
        })
    }

    fn send_message(&mut self, pcid: u8, cmd: Vec<Elem>, data: Option<&[u8]>) -> Result<(), DimseError> {
        let cmd = encode_command(cmd)?;
        self.send_command(pcid, cmd)?;
        if let Some(d) = data {
            self.send_data(pcid, d)?;
        }
        Ok(())
    }

    fn release(self) {
        if let Err(e) = SyncAssociation::release(self.assoc) {
            debug!("association release: {e}");
        }
    }

    fn abort(self) {
        if let Err(e) = SyncAssociation::abort(self.assoc) {
            debug!("association abort: {e}");
        }
    }

    /// Release the association after success; abort it after a failure (unless the peer did).
    fn finish<T>(self, result: &Result<T, DimseError>) {
        match result {
            Ok(_) => self.release(),
            Err(DimseError::Aborted(_)) => {}
            Err(_) => self.abort(),
        }
    }
}

fn no_poll() -> Result<bool, DimseError> {
    Ok(false)
}

fn peer_addr(peer: &DimsePeer) -> String {
    format!("{}@{}:{}", peer.called_aet, peer.host, peer.port)
}

/// Open an association proposing `contexts` (abstract syntax, transfer syntaxes).
fn connect(peer: &DimsePeer, contexts: &[(String, Vec<String>)]) -> Result<ClientLink, DimseError> {
    let addr = peer_addr(peer);
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(peer.calling_aet.clone())
        .called_ae_title(peer.called_aet.clone())
        .max_pdu_length(MAX_PDU)
        .strict(true)
        .connection_timeout(peer.timeout)
        .read_timeout(peer.timeout)
        .write_timeout(peer.timeout);
    for (abs, ts) in contexts {
        opts = opts.with_presentation_context(abs.clone(), ts.clone());
    }
    debug!(peer = %addr, contexts = contexts.len(), "requesting association");
    let assoc = opts.establish((peer.host.as_str(), peer.port)).map_err(|e| map_ul(e, peer.timeout, &addr))?;
    Link::new(assoc, peer.timeout, addr)
}

type ClientLink = Link<dicom_ul::ClientAssociation<TcpStream>>;

/// Run `work` on an association proposing `contexts`, then [`Link::finish`] it.
fn with_association<T>(
    peer: &DimsePeer,
    contexts: &[(String, Vec<String>)],
    work: impl FnOnce(&mut ClientLink) -> Result<T, DimseError>,
) -> Result<T, DimseError> {
    let mut link = connect(peer, contexts)?;
    let result = work(&mut link);
    link.finish(&result);
    result
}

/// One query/retrieve model in explicit or implicit VR little endian.
fn qr_context(abstract_syntax: &str) -> [(String, Vec<String>); 1] {
    [(abstract_syntax.to_string(), vec![TS_EXPLICIT_LE.to_string(), TS_IMPLICIT_LE.to_string()])]
}

/// Accepted presentation context for `abstract_syntax` (first one, any transfer syntax).
fn accepted_pc<A: Association>(assoc: &A, abstract_syntax: &str) -> Option<(u8, String)> {
    assoc
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance && pc.abstract_syntax.trim_end_matches(['\0', ' ']) == abstract_syntax
        })
        .map(|pc| (pc.id, pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string()))
}

// ---------------------------------------------------------------------------------------------
// C-ECHO

/// C-ECHO the peer: Ok when it answers with success.
pub fn echo(peer: &DimsePeer) -> Result<(), DimseError> {
    let contexts = [(VERIFICATION.to_string(), vec![TS_IMPLICIT_LE.to_string(), TS_EXPLICIT_LE.to_string()])];
    with_association(peer, &contexts, |link| {
        let (pcid, _) =
            accepted_pc(&link.assoc, VERIFICATION).ok_or_else(|| DimseError::Unsupported { what: "verification (c-echo)".into() })?;
        link.send_message(
            pcid,
            vec![
                el_uid(tags::AFFECTED_SOP_CLASS_UID, VERIFICATION),
                el_us(tags::COMMAND_FIELD, CMD_C_ECHO_RQ),
                el_us(tags::MESSAGE_ID, 1),
                el_us(tags::COMMAND_DATA_SET_TYPE, NO_DATASET),
            ],
            None,
        )?;
        let msg = link.read_message(&mut no_poll, 0)?.ok_or_else(|| DimseError::Protocol("release instead of c-echo response".into()))?;
        let rsp = response_of(&msg.command)?;
        if rsp.field != CMD_C_ECHO_RSP {
            return Err(DimseError::Protocol(format!("expected c-echo response, got command 0x{:04X}", rsp.field)));
        }
        if is_success(rsp.status) {
            Ok(())
        } else {
            Err(DimseError::Status { op: "c-echo", status: rsp.status, comment: rsp.comment })
        }
    })
}

// ---------------------------------------------------------------------------------------------
// C-FIND

/// One C-FIND on an open association; returns the identifiers of all pending responses.
fn c_find(
    link: &mut ClientLink,
    pcid: u8,
    ts: &str,
    message_id: u16,
    identifier: &InMemDicomObject,
) -> Result<Vec<InMemDicomObject>, DimseError> {
    let data = encode_dataset(identifier, ts)?;
    link.send_message(
        pcid,
        vec![
            el_uid(tags::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_FIND),
            el_us(tags::COMMAND_FIELD, CMD_C_FIND_RQ),
            el_us(tags::MESSAGE_ID, message_id),
            el_us(tags::PRIORITY, 0),
            el_us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
        ],
        Some(&data),
    )?;
    let mut out = Vec::new();
    let mut truncated = false;
    loop {
        let msg = link
            .read_message(&mut no_poll, MAX_IDENTIFIER_BYTES)?
            .ok_or_else(|| DimseError::Protocol("release instead of c-find response".into()))?;
        let rsp = response_of(&msg.command)?;
        if rsp.field != CMD_C_FIND_RSP {
            return Err(DimseError::Protocol(format!("expected c-find response, got command 0x{:04X}", rsp.field)));
        }
        if is_pending(rsp.status) {
            if let Some(d) = msg.data {
                if out.len() < MAX_MATCHES {
                    out.push(decode_dataset(&d, ts)?);
                } else if !truncated {
                    truncated = true;
                    warn!("c-find: more than {MAX_MATCHES} matches, ignoring the rest");
                }
            }
            continue;
        }
        if is_success(rsp.status) || is_warning(rsp.status) {
            return Ok(out);
        }
        if is_cancel(rsp.status) {
            return Err(DimseError::Cancelled);
        }
        return Err(DimseError::Status { op: "c-find", status: rsp.status, comment: rsp.comment });
    }
}

fn opt_key(v: &Option<String>) -> &str {
    v.as_deref().map(str::trim).unwrap_or("")
}

/// Study-level C-FIND, then a series-level C-FIND per study, on one association.
pub fn find_studies(peer: &DimsePeer, query: &StudyQuery) -> Result<Vec<StudyMatch>, DimseError> {
    with_association(peer, &qr_context(STUDY_ROOT_FIND), |link| find_on(link, query))
}

fn find_on(link: &mut ClientLink, query: &StudyQuery) -> Result<Vec<StudyMatch>, DimseError> {
    let (pcid, ts) =
        accepted_pc(&link.assoc, STUDY_ROOT_FIND).ok_or_else(|| DimseError::Unsupported { what: "study root c-find".into() })?;
    let mut ident = InMemDicomObject::new_empty();
    ident.put(el_text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"));
    let keys = [&query.patient_id, &query.patient_name, &query.study_date, &query.modality, &query.accession, &query.study_uid];
    if keys.iter().any(|k| !opt_key(k).is_ascii()) {
        // only announce a character set when one is needed: old PACS choke on it
        ident.put(el_text(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    }
    ident.put(el_text(tags::PATIENT_ID, VR::LO, opt_key(&query.patient_id)));
    ident.put(el_text(tags::PATIENT_NAME, VR::PN, opt_key(&query.patient_name)));
    ident.put(el_text(tags::STUDY_DATE, VR::DA, opt_key(&query.study_date)));
    ident.put(el_text(tags::STUDY_TIME, VR::TM, ""));
    ident.put(el_text(tags::MODALITIES_IN_STUDY, VR::CS, opt_key(&query.modality)));
    ident.put(el_text(tags::ACCESSION_NUMBER, VR::SH, opt_key(&query.accession)));
    let study_uid = opt_key(&query.study_uid);
    if study_uid.is_empty() {
        ident.put(DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty));
    } else {
        ident.put(el_uid(tags::STUDY_INSTANCE_UID, study_uid));
    }
    ident.put(el_text(tags::STUDY_DESCRIPTION, VR::LO, ""));
    ident.put(el_text(tags::NUMBER_OF_STUDY_RELATED_SERIES, VR::IS, ""));
    ident.put(el_text(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""));

    let mut message_id: u16 = 1;
    let studies = c_find(link, pcid, &ts, message_id, &ident)?;
    debug!(count = studies.len(), "c-find study matches");

    let mut out = Vec::with_capacity(studies.len());
    for s in studies {
        let Some(study_uid) = get_str(&s, tags::STUDY_INSTANCE_UID) else {
            warn!("c-find: study match without StudyInstanceUID, skipped");
            continue;
        };
        let mut m = StudyMatch {
            study_uid: study_uid.clone(),
            patient_id: get_string(&s, tags::PATIENT_ID),
            patient_name: get_string(&s, tags::PATIENT_NAME),
            study_date: get_string(&s, tags::STUDY_DATE),
            accession: get_string(&s, tags::ACCESSION_NUMBER),
            description: get_string(&s, tags::STUDY_DESCRIPTION),
            modalities: get_string(&s, tags::MODALITIES_IN_STUDY)
                .split('\\')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            series: Vec::new(),
        };

        message_id = message_id.wrapping_add(1).max(1);
        let mut sq = InMemDicomObject::new_empty();
        sq.put(el_text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"));
        sq.put(el_uid(tags::STUDY_INSTANCE_UID, &study_uid));
        sq.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::Empty));
        sq.put(el_text(tags::MODALITY, VR::CS, ""));
        sq.put(el_text(tags::SERIES_DESCRIPTION, VR::LO, ""));
        sq.put(el_text(tags::SERIES_NUMBER, VR::IS, ""));
        sq.put(el_text(tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""));
        for r in c_find(link, pcid, &ts, message_id, &sq)? {
            let Some(series_uid) = get_str(&r, tags::SERIES_INSTANCE_UID) else {
                continue;
            };
            m.series.push(SeriesMatch {
                series_uid,
                modality: get_string(&r, tags::MODALITY),
                description: get_string(&r, tags::SERIES_DESCRIPTION),
                number: get_str(&r, tags::SERIES_NUMBER).and_then(|v| v.parse::<i64>().ok()),
                instances: get_str(&r, tags::NUMBER_OF_SERIES_RELATED_INSTANCES).and_then(|v| v.parse::<u64>().ok()),
            });
        }
        m.series
            .sort_by(|a, b| a.number.unwrap_or(i64::MAX).cmp(&b.number.unwrap_or(i64::MAX)).then_with(|| a.series_uid.cmp(&b.series_uid)));
        if m.modalities.is_empty() {
            for s in &m.series {
                if !s.modality.is_empty() && !m.modalities.contains(&s.modality) {
                    m.modalities.push(s.modality.clone());
                }
            }
        }
        out.push(m);
    }
    Ok(out)
}

/// Image-level C-FIND: the SOP Instance UIDs of one series (to resume a retrieve).
pub fn find_instances(peer: &DimsePeer, study_uid: &str, series_uid: &str) -> Result<Vec<String>, DimseError> {
    with_association(peer, &qr_context(STUDY_ROOT_FIND), |link| {
        let (pcid, ts) =
            accepted_pc(&link.assoc, STUDY_ROOT_FIND).ok_or_else(|| DimseError::Unsupported { what: "study root c-find".into() })?;
        let mut q = InMemDicomObject::new_empty();
        q.put(el_text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"));
        q.put(el_uid(tags::STUDY_INSTANCE_UID, study_uid));
        q.put(el_uid(tags::SERIES_INSTANCE_UID, series_uid));
        q.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::Empty));
        let rows = c_find(link, pcid, &ts, 1, &q)?;
        Ok(rows.iter().filter_map(|r| get_str(r, tags::SOP_INSTANCE_UID)).collect::<Vec<_>>())
    })
}

// ---------------------------------------------------------------------------------------------
// C-MOVE + Storage SCP

/// What a C-MOVE asks for.
#[derive(Debug, Clone, Copy)]
pub enum MoveScope<'a> {
    Study,
    Series(&'a str),
    /// These instances of a series (a resume): one image-level C-MOVE with the UIDs as a list.
    Instances {
        series_uid: &'a str,
        sop_uids: &'a [String],
    },
}

/// C-MOVE a study (or one of its series) to our own AE and receive it with a Storage SCP
/// listening on `scp_port` for the duration of the move.
pub fn move_to_self(
    peer: &DimsePeer,
    study_uid: &str,
    series_uid: Option<&str>,
    scp_port: u16,
    on_instance: &mut (dyn FnMut(ReceivedInstance) -> Result<(), String> + Send),
    cancel: &AtomicBool,
) -> Result<MoveOutcome, DimseError> {
    let scope = match series_uid {
        Some(se) => MoveScope::Series(se),
        None => MoveScope::Study,
    };
    move_scope_to_self(peer, study_uid, scope, scp_port, on_instance, cancel)
}

/// [`move_to_self`] for any [`MoveScope`].
pub fn move_scope_to_self(
    peer: &DimsePeer,
    study_uid: &str,
    scope: MoveScope<'_>,
    scp_port: u16,
    on_instance: &mut (dyn FnMut(ReceivedInstance) -> Result<(), String> + Send),
    cancel: &AtomicBool,
) -> Result<MoveOutcome, DimseError> {
    if cancel.load(Ordering::Relaxed) {
        return Err(DimseError::Cancelled);
    }
    let listener = TcpListener::bind(("0.0.0.0", scp_port)).map_err(|source| DimseError::Listen { port: scp_port, source })?;
    listener.set_nonblocking(true).map_err(|source| DimseError::Listen { port: scp_port, source })?;
    let stop = AtomicBool::new(false);
    let activity = Arc::new(AtomicU64::new(0));
    let received = AtomicU32::new(0);

    let result = std::thread::scope(|s| {
        let scp = s.spawn(|| scp_loop(&listener, peer, &stop, activity.clone(), &received, cancel, on_instance));
        let r = run_move(peer, study_uid, scope, scp_port, cancel, &activity);
        stop.store(true, Ordering::Relaxed);
        if scp.join().is_err() {
            warn!("storage scp thread panicked");
        }
        r
    });
    let mut outcome = result?;
    outcome.received = received.load(Ordering::Relaxed);
    info!(
        completed = outcome.completed,
        failed = outcome.failed,
        warning = outcome.warning,
        received = outcome.received,
        "c-move finished"
    );
    Ok(outcome)
}

fn run_move(
    peer: &DimsePeer,
    study_uid: &str,
    scope: MoveScope<'_>,
    scp_port: u16,
    cancel: &AtomicBool,
    activity: &AtomicU64,
) -> Result<MoveOutcome, DimseError> {
    with_association(peer, &qr_context(STUDY_ROOT_MOVE), |link| move_on(link, peer, study_uid, scope, scp_port, cancel, activity))
}

fn move_on(
    link: &mut ClientLink,
    peer: &DimsePeer,
    study_uid: &str,
    scope: MoveScope<'_>,
    scp_port: u16,
    cancel: &AtomicBool,
    activity: &AtomicU64,
) -> Result<MoveOutcome, DimseError> {
    let (pcid, ts) =
        accepted_pc(&link.assoc, STUDY_ROOT_MOVE).ok_or_else(|| DimseError::Unsupported { what: "study root c-move".into() })?;
    let mut ident = InMemDicomObject::new_empty();
    ident.put(el_uid(tags::STUDY_INSTANCE_UID, study_uid));
    match scope {
        MoveScope::Series(se) => {
            ident.put(el_text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES"));
            ident.put(el_uid(tags::SERIES_INSTANCE_UID, se));
        }
        MoveScope::Study => {
            ident.put(el_text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"));
        }
        MoveScope::Instances { series_uid, sop_uids } => {
            ident.put(el_text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "IMAGE"));
            ident.put(el_uid(tags::SERIES_INSTANCE_UID, series_uid));
            // List of UID matching (PS3.4 C.2.2.2.2): the values separated by backslashes.
            ident.put(el_uid(tags::SOP_INSTANCE_UID, &sop_uids.join("\\")));
        }
    }
    let data = encode_dataset(&ident, &ts)?;
    let message_id: u16 = 1;
    link.send_message(
        pcid,
        vec![
            el_uid(tags::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_MOVE),
            el_us(tags::COMMAND_FIELD, CMD_C_MOVE_RQ),
            el_us(tags::MESSAGE_ID, message_id),
            el_us(tags::PRIORITY, 0),
            el_us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
            el_text(tags::MOVE_DESTINATION, VR::AE, peer.calling_aet.trim()),
        ],
        Some(&data),
    )?;
    info!(study = study_uid, scope = ?scope, dest = %peer.calling_aet, "c-move requested");

    let mut seen = activity.load(Ordering::Relaxed);
    loop {
        let mut poll = || -> Result<bool, DimseError> {
            if cancel.load(Ordering::Relaxed) {
                return Err(DimseError::Cancelled);
            }
            let now = activity.load(Ordering::Relaxed);
            let progressed = now != seen;
            seen = now;
            Ok(progressed)
        };
        let msg = match link.read_message(&mut poll, MAX_IDENTIFIER_BYTES) {
            Ok(m) => m,
            Err(DimseError::Cancelled) => {
                info!("c-move cancelled, sending c-cancel");
                if let Err(e) = link.send_message(
                    pcid,
                    vec![
                        el_us(tags::COMMAND_FIELD, CMD_C_CANCEL_RQ),
                        el_us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
                        el_us(tags::COMMAND_DATA_SET_TYPE, NO_DATASET),
                    ],
                    None,
                ) {
                    debug!("c-cancel not sent: {e}");
                    return Err(DimseError::Cancelled);
                }
                // wait (bounded) for the final response, then give up on the association
                let sent = Instant::now();
                let deadline = peer.timeout.min(Duration::from_secs(10));
                let mut grace = || -> Result<bool, DimseError> {
                    if sent.elapsed() > deadline {
                        Err(DimseError::Cancelled)
                    } else {
                        Ok(true)
                    }
                };
                while let Ok(Some(m)) = link.read_message(&mut grace, MAX_IDENTIFIER_BYTES) {
                    match response_of(&m.command) {
                        Ok(rsp) if is_pending(rsp.status) => {}
                        _ => break,
                    }
                }
                return Err(DimseError::Cancelled);
            }
            Err(e) => return Err(e),
        };
        let msg = msg.ok_or_else(|| DimseError::Protocol("release instead of c-move response".into()))?;
        let rsp = response_of(&msg.command)?;
        if rsp.field != CMD_C_MOVE_RSP {
            return Err(DimseError::Protocol(format!("expected c-move response, got command 0x{:04X}", rsp.field)));
        }
        let count = |tag| get_u16(&msg.command, tag).map(u32::from).unwrap_or(0);
        let outcome = MoveOutcome {
            completed: count(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
            failed: count(tags::NUMBER_OF_FAILED_SUBOPERATIONS),
            warning: count(tags::NUMBER_OF_WARNING_SUBOPERATIONS),
            received: 0,
        };
        if is_pending(rsp.status) {
            debug!(remaining = count(tags::NUMBER_OF_REMAINING_SUBOPERATIONS), completed = outcome.completed, "c-move pending");
            continue;
        }
        if cancel.load(Ordering::Relaxed) {
            // the final answer raced our poll of the flag; the caller asked to stop
            return Err(DimseError::Cancelled);
        }
        if is_success(rsp.status) || is_warning(rsp.status) {
            if is_warning(rsp.status) {
                warn!(status = rsp.status, failed = outcome.failed, "c-move finished with warnings");
            }
            return Ok(outcome);
        }
        if is_cancel(rsp.status) {
            return Err(DimseError::Cancelled);
        }
        let comment = match rsp.comment {
            Some(c) => Some(c),
            None if outcome.completed == 0 && outcome.failed == 0 && outcome.warning == 0 => Some(format!(
                "nothing was sent; check that the server knows ae title {} (this host, port {}) as a move destination",
                peer.calling_aet.trim(),
                scp_port
            )),
            None => None,
        };
        return Err(DimseError::Status { op: "c-move", status: rsp.status, comment });
    }
}

fn scp_loop(
    listener: &TcpListener,
    peer: &DimsePeer,
    stop: &AtomicBool,
    activity: Arc<AtomicU64>,
    received: &AtomicU32,
    cancel: &AtomicBool,
    on_instance: &mut (dyn FnMut(ReceivedInstance) -> Result<(), String> + Send),
) {
    let mut opts = ServerAssociationOptions::new()
        .accept_any()
        .ae_title(peer.calling_aet.clone())
        .max_pdu_length(MAX_PDU)
        .strict(true)
        .promiscuous(true)
        .read_timeout(peer.timeout)
        .write_timeout(peer.timeout)
        .with_abstract_syntax(VERIFICATION);
    for sop in SCP_SOP_CLASSES {
        opts = opts.with_abstract_syntax(*sop);
    }
    for ts in SCP_TRANSFER_SYNTAXES {
        opts = opts.with_transfer_syntax(*ts);
    }
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, from)) => {
                debug!(%from, "storage scp: incoming connection");
                if let Err(e) = stream.set_nonblocking(false) {
                    warn!("storage scp: {e}");
                    continue;
                }
                let assoc = match opts.establish(stream) {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(%from, "storage scp: association not established: {e}");
                        continue;
                    }
                };
                let addr = format!("{}@{from}", assoc.peer_ae_title());
                match Link::new(assoc, peer.timeout, addr) {
                    Ok(mut link) => {
                        link.activity = Some(activity.clone());
                        serve_association(link, stop, received, cancel, on_instance);
                    }
                    Err(e) => warn!("storage scp: {e}"),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => {
                warn!("storage scp: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_association(
    mut link: Link<dicom_ul::ServerAssociation<TcpStream>>,
    stop: &AtomicBool,
    received: &AtomicU32,
    cancel: &AtomicBool,
    on_instance: &mut (dyn FnMut(ReceivedInstance) -> Result<(), String> + Send),
) {
    // once the move is over, give a dangling association a short grace period
    let mut stop_seen: Option<Instant> = None;
    let mut poll = || -> Result<bool, DimseError> {
        if stop.load(Ordering::Relaxed) {
            let t = *stop_seen.get_or_insert_with(Instant::now);
            if t.elapsed() > Duration::from_secs(3) {
                return Err(DimseError::Cancelled);
            }
        }
        Ok(false)
    };
    loop {
        let msg = match link.read_message(&mut poll, MAX_INSTANCE_BYTES) {
            Ok(Some(m)) => m,
            Ok(None) => {
                let _ = SyncAssociation::send(&mut link.assoc, &Pdu::ReleaseRP);
                debug!("storage scp: association released");
                return;
            }
            Err(DimseError::Aborted(e)) => {
                debug!("storage scp: {e}");
                return;
            }
            Err(e) => {
                warn!("storage scp: {e}; aborting the association");
                link.abort();
                return;
            }
        };
        let field = get_u16(&msg.command, tags::COMMAND_FIELD).unwrap_or(0);
        let msg_id = get_u16(&msg.command, tags::MESSAGE_ID).unwrap_or(0);
        let sop_class = get_string(&msg.command, tags::AFFECTED_SOP_CLASS_UID);
        let reply = match field {
            CMD_C_STORE_RQ => {
                let sop_instance = get_string(&msg.command, tags::AFFECTED_SOP_INSTANCE_UID);
                let ts = link
                    .assoc
                    .presentation_contexts()
                    .iter()
                    .find(|pc| pc.id == msg.pcid)
                    .map(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']).to_string());
                let (status, comment) = match (ts, msg.data) {
                    _ if cancel.load(Ordering::Relaxed) => (0xA700, Some("retrieve cancelled".to_string())),
                    (None, _) => (0x0122, Some("unknown presentation context".to_string())),
                    (_, None) => (0xA900, Some("c-store without data set".to_string())),
                    (Some(ts), Some(data)) => match build_instance(&sop_class, &sop_instance, &ts, data) {
                        Err(e) => (0xA700, Some(e)),
                        Ok(inst) => match on_instance(inst) {
                            Ok(()) => {
                                received.fetch_add(1, Ordering::Relaxed);
                                (0x0000, None)
                            }
                            Err(e) => {
                                warn!(sop = %sop_instance, "instance refused: {e}");
                                (0xA700, Some(e))
                            }
                        },
                    },
                };
                let mut cmd = vec![
                    el_uid(tags::AFFECTED_SOP_CLASS_UID, &sop_class),
                    el_us(tags::COMMAND_FIELD, CMD_C_STORE_RSP),
                    el_us(tags::MESSAGE_ID_BEING_RESPONDED_TO, msg_id),
                    el_us(tags::COMMAND_DATA_SET_TYPE, NO_DATASET),
                    el_us(tags::STATUS, status),
                    el_uid(tags::AFFECTED_SOP_INSTANCE_UID, &sop_instance),
                ];
                if let Some(c) = comment {
                    let c: String = c.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(64).collect();
                    cmd.push(el_text(tags::ERROR_COMMENT, VR::LO, &c));
                }
                cmd
            }
            CMD_C_ECHO_RQ => vec![
                el_uid(tags::AFFECTED_SOP_CLASS_UID, &sop_class),
                el_us(tags::COMMAND_FIELD, CMD_C_ECHO_RSP),
                el_us(tags::MESSAGE_ID_BEING_RESPONDED_TO, msg_id),
                el_us(tags::COMMAND_DATA_SET_TYPE, NO_DATASET),
                el_us(tags::STATUS, 0x0000),
            ],
            other => {
                warn!("storage scp: unsupported command 0x{other:04X}");
                vec![
                    el_uid(tags::AFFECTED_SOP_CLASS_UID, &sop_class),
                    el_us(tags::COMMAND_FIELD, other | 0x8000),
                    el_us(tags::MESSAGE_ID_BEING_RESPONDED_TO, msg_id),
                    el_us(tags::COMMAND_DATA_SET_TYPE, NO_DATASET),
                    el_us(tags::STATUS, 0x0211),
                ]
            }
        };
        if let Err(e) = link.send_message(msg.pcid, reply, None) {
            warn!("storage scp: cannot send response: {e}");
            link.abort();
            return;
        }
    }
}

/// Wrap a received data set into a Part-10 file, without touching the data set bytes.
fn build_instance(sop_class: &str, sop_instance: &str, ts: &str, mut data: Vec<u8>) -> Result<ReceivedInstance, String> {
    if sop_instance.is_empty() {
        return Err("c-store without affected sop instance uid".into());
    }
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .transfer_syntax(ts)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION)
        .build()
        .map_err(|e| format!("cannot build file meta: {e}"))?;
    let mut header = Vec::with_capacity(400);
    header.extend_from_slice(&[0u8; 128]);
    header.extend_from_slice(b"DICM");
    meta.write(&mut header).map_err(|e| format!("cannot write file meta: {e}"))?;
    // put the header in front of the data set in place (no second copy of a big instance)
    data.try_reserve_exact(header.len()).map_err(|_| "out of memory".to_string())?;
    data.splice(0..0, header);
    let file = data;
    let series_uid = series_uid_of(&file);
    Ok(ReceivedInstance {
        sop_instance_uid: sop_instance.to_string(),
        sop_class_uid: sop_class.to_string(),
        series_uid,
        transfer_syntax: ts.to_string(),
        file_bytes: file,
    })
}

fn series_uid_of(file: &[u8]) -> Option<String> {
    let body = file.get(128..)?;
    let obj = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(body)
        .ok()?;
    let s = obj.get(tags::SERIES_INSTANCE_UID)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

// ---------------------------------------------------------------------------------------------
// C-STORE

fn is_native_ts(ts: &str) -> bool {
    matches!(ts, TS_IMPLICIT_LE | TS_EXPLICIT_LE | TS_EXPLICIT_BE | TS_DEFLATED_LE)
}

/// The data set bytes of a Part-10 file (everything after the file meta group), as stored.
fn raw_dataset(bytes: &[u8]) -> Option<&[u8]> {
    let mut pos = if bytes.get(128..132) == Some(b"DICM") {
        132usize
    } else if bytes.get(0..4) == Some(b"DICM") {
        4
    } else {
        return None;
    };
    loop {
        let head = bytes.get(pos..pos.checked_add(8)?)?;
        let group = u16::from_le_bytes([*head.first()?, *head.get(1)?]);
        if group != 0x0002 {
            return bytes.get(pos..);
        }
        let vr = head.get(4..6)?;
        let long = matches!(vr, b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"OV" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR" | b"SV" | b"UV");
        let (hlen, len) = if long {
            let l: [u8; 4] = bytes.get(pos + 8..pos.checked_add(12)?)?.try_into().ok()?;
            (12usize, u32::from_le_bytes(l) as usize)
        } else {
            (8usize, u16::from_le_bytes([*head.get(6)?, *head.get(7)?]) as usize)
        };
        if len == 0xFFFF_FFFF {
            return None;
        }
        pos = pos.checked_add(hlen)?.checked_add(len)?;
    }
}

/// What `store` needs to know about a file before the association: read from its meta only.
struct FileInfo {
    path: PathBuf,
    sop_class: String,
    sop_instance: String,
    ts: String,
}

fn clean_uid(s: &str) -> String {
    s.trim_end_matches(['\0', ' ']).to_string()
}

fn probe(path: &std::path::Path) -> Result<FileInfo, String> {
    // stop right after the file meta group: cheap even for big files
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(Tag(0x0008, 0x0001))
        .open_file(path)
        .map_err(|e| format!("not a readable dicom file: {e}"))?;
    let meta = obj.meta();
    let info = FileInfo {
        path: path.to_path_buf(),
        sop_class: clean_uid(meta.media_storage_sop_class_uid()),
        sop_instance: clean_uid(meta.media_storage_sop_instance_uid()),
        ts: clean_uid(meta.transfer_syntax()),
    };
    if info.sop_class.is_empty() || info.sop_instance.is_empty() {
        return Err("file meta lacks the sop class or sop instance uid".into());
    }
    Ok(info)
}

fn raw_after_preamble(raw: &[u8]) -> &[u8] {
    if raw.get(128..132) == Some(b"DICM") {
        raw.get(128..).unwrap_or(raw)
    } else {
        raw
    }
}

/// The data set bytes to send for `f` in transfer syntax `target`: the stored bytes when the
/// syntax is the file's own, else the data set re-encoded (only native syntaxes get here).
fn dataset_for(f: &FileInfo, target: &str) -> Result<Vec<u8>, String> {
    let raw = std::fs::read(&f.path).map_err(|e| format!("cannot read file: {e}"))?;
    if target == f.ts {
        if let Some(d) = raw_dataset(&raw) {
            let mut v = d.to_vec();
            // a deflated stream may end on an odd byte: pad it (PDV lengths must be even)
            if v.len() % 2 == 1 && f.ts == TS_DEFLATED_LE {
                v.push(0);
            }
            return Ok(v);
        }
    }
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(raw_after_preamble(&raw))
        .map_err(|e| format!("not a readable dicom file: {e}"))?;
    drop(raw);
    encode_dataset(&obj, target).map_err(|e| format!("cannot encode in {target}: {e}"))
}

/// Proposed presentation contexts: (abstract syntax, transfer syntaxes).
type Contexts = Vec<(String, Vec<String>)>;

fn contexts_for(f: &FileInfo) -> Contexts {
    let mut v = vec![(f.sop_class.clone(), vec![f.ts.clone()])];
    if f.ts != TS_EXPLICIT_LE {
        v.push((f.sop_class.clone(), vec![TS_EXPLICIT_LE.to_string(), TS_IMPLICIT_LE.to_string()]));
    }
    v
}

/// C-STORE each file to the peer; per-file outcomes, hard errors only for association failures.
pub fn store(peer: &DimsePeer, files: &[PathBuf]) -> Result<Vec<StoreOutcome>, DimseError> {
    let mut outcomes: Vec<StoreOutcome> = Vec::with_capacity(files.len());
    // group files into associations of at most MAX_CONTEXTS presentation contexts
    const MAX_CONTEXTS: usize = 120;
    let mut batches: Vec<(Vec<FileInfo>, Contexts)> = Vec::new();
    for path in files {
        let f = match probe(path) {
            Ok(f) => f,
            Err(e) => {
                warn!(path = %path.display(), "not sent: {e}");
                outcomes.push(StoreOutcome {
                    path: path.clone(),
                    sop_instance_uid: String::new(),
                    status: 0xC000,
                    accepted: false,
                    comment: Some(e),
                });
                continue;
            }
        };
        let wanted = contexts_for(&f);
        let fits = batches.last().is_some_and(|(_, ctx)| {
            let new = wanted.iter().filter(|w| !ctx.contains(w)).count();
            ctx.len() + new <= MAX_CONTEXTS
        });
        if !fits {
            batches.push((Vec::new(), Vec::new()));
        }
        if let Some((fs, ctx)) = batches.last_mut() {
            for w in wanted {
                if !ctx.contains(&w) {
                    ctx.push(w);
                }
            }
            fs.push(f);
        }
    }

    let mut message_id: u16 = 0;
    for (batch, contexts) in &batches {
        let mut link = match connect(peer, contexts) {
            Ok(l) => l,
            Err(DimseError::Unsupported { .. }) => {
                for f in batch {
                    outcomes.push(refused(f, 0x0122, "the server accepts none of the proposed sop classes".into()));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let r = store_batch(&mut link, batch, &mut outcomes, &mut message_id);
        link.finish(&r);
        r?;
    }

    // keep the caller's file order
    let order = |p: &PathBuf| files.iter().position(|f| f == p).unwrap_or(usize::MAX);
    outcomes.sort_by_key(|o| order(&o.path));
    Ok(outcomes)
}

fn store_batch(
    link: &mut ClientLink,
    batch: &[FileInfo],
    outcomes: &mut Vec<StoreOutcome>,
    message_id: &mut u16,
) -> Result<(), DimseError> {
    let accepted: Vec<(u8, String, String)> = link
        .assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| (pc.id, clean_uid(&pc.abstract_syntax), clean_uid(&pc.transfer_syntax)))
        .collect();
    for f in batch {
        let same = accepted.iter().find(|(_, a, t)| *a == f.sop_class && *t == f.ts);
        let native_alt = if is_native_ts(&f.ts) {
            accepted.iter().find(|(_, a, t)| *a == f.sop_class && (t == TS_EXPLICIT_LE || t == TS_IMPLICIT_LE))
        } else {
            None
        };
        let Some((pcid, _, target)) = same.or(native_alt) else {
            let any_class = accepted.iter().any(|(_, a, _)| *a == f.sop_class);
            let why = if any_class {
                format!("the server does not accept transfer syntax {}", f.ts)
            } else {
                format!("the server does not accept sop class {}", f.sop_class)
            };
            outcomes.push(refused(f, 0x0122, why));
            continue;
        };
        let data = match dataset_for(f, target) {
            Ok(d) => d,
            Err(e) => {
                outcomes.push(refused(f, 0xC000, e));
                continue;
            }
        };
        if *target != f.ts {
            debug!(path = %f.path.display(), from = %f.ts, to = %target, "re-encoded for c-store");
        }

        *message_id = message_id.wrapping_add(1).max(1);
        link.send_message(
            *pcid,
            vec![
                el_uid(tags::AFFECTED_SOP_CLASS_UID, &f.sop_class),
                el_us(tags::COMMAND_FIELD, CMD_C_STORE_RQ),
                el_us(tags::MESSAGE_ID, *message_id),
                el_us(tags::PRIORITY, 0),
                el_us(tags::COMMAND_DATA_SET_TYPE, 0x0000),
                el_uid(tags::AFFECTED_SOP_INSTANCE_UID, &f.sop_instance),
            ],
            Some(&data),
        )?;
        drop(data);
        let msg = link
            .read_message(&mut no_poll, MAX_IDENTIFIER_BYTES)?
            .ok_or_else(|| DimseError::Protocol("release instead of c-store response".into()))?;
        let rsp = response_of(&msg.command)?;
        if rsp.field != CMD_C_STORE_RSP {
            return Err(DimseError::Protocol(format!("expected c-store response, got command 0x{:04X}", rsp.field)));
        }
        let ok = is_success(rsp.status) || is_warning(rsp.status);
        if ok {
            debug!(path = %f.path.display(), status = rsp.status, "stored");
        } else {
            warn!(path = %f.path.display(), status = rsp.status, "c-store refused");
        }
        outcomes.push(StoreOutcome {
            path: f.path.clone(),
            sop_instance_uid: f.sop_instance.clone(),
            status: rsp.status,
            accepted: ok,
            comment: rsp.comment,
        });
    }
    Ok(())
}

fn refused(f: &FileInfo, status: u16, why: String) -> StoreOutcome {
    warn!(path = %f.path.display(), "not sent: {why}");
    StoreOutcome { path: f.path.clone(), sop_instance_uid: f.sop_instance.clone(), status, accepted: false, comment: Some(why) }
}
