//! A cheap walk over the element headers of a DICOM file before `dicom-object` reads it.
//!
//! `dicom-parser` reserves an element's declared length (up to 4 GiB) before it reads the
//! value, so a few hostile bytes could make it allocate gigabytes. This walk reads only tags,
//! VRs and lengths (values are skipped with a seek) and refuses any element, item or fragment
//! whose declared length is more than what follows it in the file (or in its enclosing
//! sequence item), so nothing that is allocated afterwards exceeds the file's size. It also
//! reports where the pixel data is and whether it is cut short.
//!
//! Structure it does not understand (no DICM magic, a broken tag) is left to `dicom-object`,
//! which then reports its own error: the walk only refuses what would be dangerous to parse.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_encoding::transfer_syntax::Endianness;
use dicom_encoding::{Codec, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::error::VolumeError;

/// Undefined length (0xFFFFFFFF).
const UNDEFINED: u32 = u32::MAX;
/// Deepest nesting of sequences accepted.
const MAX_DEPTH: usize = 32;
/// Largest data set a deflated file may inflate to.
const MAX_INFLATED: u64 = 4 << 30;

/// Where the top-level pixel data element is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PixelData {
    /// Byte offset of the value in the (inflated) data stream.
    pub offset: u64,
    /// Declared length; None for encapsulated (undefined length) pixel data.
    pub length: Option<u64>,
    /// Items (basic offset table + fragments) of encapsulated pixel data.
    pub items: u64,
}

/// What the walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Whether the file had the DICM magic and a file meta group the walk could read.
    pub understood: bool,
    pub pixel_data: Option<PixelData>,
    /// Length of the data set (inflated for deflated files), in bytes.
    pub data_len: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

/// Why the walk stopped early.
enum Halt {
    /// Structure the walk does not understand: leave it to dicom-object.
    GiveUp,
    Refuse(VolumeError),
}

type Step = std::result::Result<(), Halt>;

trait Source: Read {
    fn skip(&mut self, n: u64) -> std::io::Result<()>;
}

impl Source for BufReader<File> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let n = i64::try_from(n).map_err(|_| std::io::Error::other("skip too large"))?;
        self.seek_relative(n)
    }
}

impl<R: Read> Source for flate2::read::DeflateDecoder<R> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let copied = std::io::copy(&mut self.take(n), &mut std::io::sink())?;
        if copied < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

struct Walker<'a, S> {
    src: S,
    path: &'a Path,
    pos: u64,
    /// Bytes in the stream (the file, or the inflated data set).
    len: u64,
    pixel_data: Option<PixelData>,
}

/// VRs with a 2-byte length in explicit VR (PS3.5 7.1.2), exactly as dicom-parser reads them.
fn short_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::AE
            | VR::AS
            | VR::AT
            | VR::CS
            | VR::DA
            | VR::DS
            | VR::DT
            | VR::FL
            | VR::FD
            | VR::IS
            | VR::LO
            | VR::LT
            | VR::PN
            | VR::SH
            | VR::SL
            | VR::SS
            | VR::ST
            | VR::TM
            | VR::UI
            | VR::UL
            | VR::US
    )
}

fn tag_name(g: u16, e: u16) -> String {
    format!("({g:04X},{e:04X})")
}

impl<S: Source> Walker<'_, S> {
    fn bytes<const N: usize>(&mut self) -> std::result::Result<[u8; N], Halt> {
        let mut b = [0u8; N];
        self.src.read_exact(&mut b).map_err(|_| Halt::GiveUp)?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u16(&mut self, be: bool) -> std::result::Result<u16, Halt> {
        let b = self.bytes::<2>()?;
        Ok(if be { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32(&mut self, be: bool) -> std::result::Result<u32, Halt> {
        let b = self.bytes::<4>()?;
        Ok(if be { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn skip(&mut self, n: u64) -> Step {
        self.src.skip(n).map_err(|_| Halt::GiveUp)?;
        self.pos += n;
        Ok(())
    }

    /// Refuse `declared` bytes for the element at `offset` when more than `limit` (the end of
    /// the file or of the enclosing item) minus the current position remain.
    fn check(&self, g: u16, e: u16, offset: u64, declared: u64, limit: u64) -> Step {
        let available = limit.saturating_sub(self.pos);
        if declared > available {
            let path = self.path.to_path_buf();
            return Err(Halt::Refuse(if (g, e) == (0x7FE0, 0x0010) {
                VolumeError::Truncated { path, what: "pixel data", expected: declared, found: available }
            } else {
                VolumeError::DeclaredLengthTooLarge { path, tag: tag_name(g, e), offset, declared, available }
            }));
        }
        Ok(())
    }

    fn corrupt(&self, reason: String) -> Halt {
        Halt::Refuse(VolumeError::Corrupt { path: self.path.to_path_buf(), reason })
    }

    /// Elements until `end` (or the end of the stream, or an item delimiter when `end` is None
    /// inside an item).
    fn dataset(&mut self, end: Option<u64>, syntax: Syntax, depth: usize) -> Step {
        let be = syntax == Syntax::ExplicitBe;
        let limit = end.unwrap_or(self.len);
        loop {
            if self.pos >= limit {
                return Ok(());
            }
            let offset = self.pos;
            let g = self.u16(be)?;
            let e = self.u16(be)?;
            if g == 0xFFFE {
                let len = self.u32(be)?;
                if e == 0xE00D {
                    if depth == 0 {
                        // Outside any item: dicom-parser ignores it and reads on.
                        continue;
                    }
                    if end.is_none() {
                        // The end of an undefined-length item.
                        return Ok(());
                    }
                    return Err(self.corrupt(format!("an item delimiter inside a defined-length item at byte {offset}")));
                }
                // Any other (FFFE,xxxx) tag at element level: dicom-parser reads it as an
                // element of that length (or a sequence when undefined).
                if len == UNDEFINED {
                    self.sequence(None, limit, syntax, depth + 1)?;
                } else {
                    self.check(g, e, offset, len as u64, limit)?;
                    self.skip(len as u64)?;
                }
                continue;
            }
            let (vr, len) = match syntax {
                Syntax::ImplicitLe => {
                    let len = self.u32(false)?;
                    let vr = StandardDataDictionary.by_tag(Tag(g, e)).map(|d| d.vr());
                    let vr = match vr {
                        Some(VirtualVr::Exact(VR::SQ)) => VR::SQ,
                        _ if len == UNDEFINED => VR::SQ,
                        _ => VR::UN,
                    };
                    (vr, len)
                }
                _ => {
                    // As dicom-parser: an unknown VR is read as UN (4-byte length).
                    let vr = VR::from_binary(self.bytes::<2>()?).unwrap_or(VR::UN);
                    let len = if short_length(vr) {
                        self.u16(be)? as u32
                    } else {
                        self.skip(2)?;
                        self.u32(be)?
                    };
                    (vr, len)
                }
            };
            let is_pixel_data = (g, e) == (0x7FE0, 0x0010);
            if len == UNDEFINED {
                // As dicom-parser: undefined-length pixel data holds fragments; any other
                // undefined-length element is read as a sequence in the same syntax.
                if is_pixel_data {
                    let items = self.fragments(g, e, limit, be)?;
                    if depth == 0 {
                        self.pixel_data = Some(PixelData { offset, length: None, items });
                    }
                } else {
                    self.sequence(None, limit, syntax, depth + 1)?;
                }
                continue;
            }
            let len = len as u64;
            self.check(g, e, offset, len, limit)?;
            if vr == VR::SQ {
                let end = self.pos + len;
                self.sequence(Some(end), end, syntax, depth + 1)?;
                if self.pos < end {
                    self.skip(end - self.pos)?;
                }
            } else {
                if is_pixel_data && depth == 0 {
                    self.pixel_data = Some(PixelData { offset: self.pos, length: Some(len), items: 0 });
                }
                self.skip(len)?;
            }
        }
    }

    /// Items of a sequence until its delimiter (undefined length) or `end`.
    fn sequence(&mut self, end: Option<u64>, limit: u64, syntax: Syntax, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(Halt::Refuse(VolumeError::Corrupt {
                path: self.path.to_path_buf(),
                reason: format!("sequences nested more than {MAX_DEPTH} deep at byte {}", self.pos),
            }));
        }
        let be = syntax == Syntax::ExplicitBe;
        let limit = end.unwrap_or(limit);
        loop {
            if end.is_some() && self.pos >= limit {
                return Ok(());
            }
            let offset = self.pos;
            let g = self.u16(be)?;
            let e = self.u16(be)?;
            let len = self.u32(be)?;
            match (g, e) {
                (0xFFFE, 0xE000) if len == UNDEFINED => self.dataset(None, syntax, depth)?,
                (0xFFFE, 0xE000) => {
                    let len = len as u64;
                    self.check(g, e, offset, len, limit)?;
                    let item_end = self.pos + len;
                    self.dataset(Some(item_end), syntax, depth)?;
                    if self.pos < item_end {
                        self.skip(item_end - self.pos)?;
                    }
                }
                (0xFFFE, 0xE0DD) => return Ok(()),
                _ => return Err(Halt::GiveUp),
            }
        }
    }

    /// Items of encapsulated data (offset table, fragments) until the sequence delimiter.
    fn fragments(&mut self, g: u16, e: u16, limit: u64, be: bool) -> std::result::Result<u64, Halt> {
        let mut items = 0u64;
        loop {
            if self.pos >= limit {
                // No delimiter: the data ends inside the pixel data.
                return Ok(items);
            }
            let offset = self.pos;
            let ig = self.u16(be)?;
            let ie = self.u16(be)?;
            let len = self.u32(be)?;
            match (ig, ie) {
                (0xFFFE, 0xE000) => {
                    // A fragment longer than the rest of the file: name the element it is in.
                    self.check(g, e, offset, len as u64, limit)?;
                    self.skip(len as u64)?;
                    items += 1;
                }
                (0xFFFE, 0xE0DD) => return Ok(items),
                _ => return Err(Halt::GiveUp),
            }
        }
    }
}

/// Walk the element headers of the DICOM file at `path` (of `file_len` bytes). `Ok` with
/// `understood: false` when the file is not laid out as the walk expects (dicom-object then
/// says why); `Err` when a declared length is larger than the data that follows it.
pub(crate) fn walk(path: &Path, file_len: u64) -> Result<Report, VolumeError> {
    let file = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut r = BufReader::with_capacity(64 * 1024, file);
    // Preamble: "DICM" at 128 (preamble) or at 0 (none), as dicom-object's auto detection.
    let mut head = [0u8; 132];
    let n = read_up_to(&mut r, &mut head).map_err(|e| VolumeError::io(path, e))?;
    let start = if n >= 132 && &head[128..132] == b"DICM" {
        132u64
    } else if n >= 4 && &head[0..4] == b"DICM" {
        4
    } else {
        return Ok(Report::default());
    };
    r.seek(SeekFrom::Start(start)).map_err(|e| VolumeError::io(path, e))?;
    // File meta group: explicit VR little endian, group 0002.
    let mut meta = Walker { src: r, path, pos: start, len: file_len, pixel_data: None };
    let ts = match meta_group(&mut meta) {
        Ok(ts) => ts,
        Err(Halt::GiveUp) => return Ok(Report::default()),
        Err(Halt::Refuse(e)) => return Err(e),
    };
    let data_start = meta.pos;
    // The syntax as dicom-object will read it: from the registry (an unknown UID, or a
    // data set codec that is not built in, makes dicom-object fail before the data set).
    let Some(entry) = TransferSyntaxRegistry.get(&ts) else { return Ok(Report::default()) };
    let syntax = if ts == "1.2.840.10008.1.2" {
        Syntax::ImplicitLe
    } else if entry.endianness() == Endianness::Big {
        Syntax::ExplicitBe
    } else {
        Syntax::ExplicitLe
    };
    let deflated = match entry.codec() {
        Codec::Dataset(Some(_)) => true,
        Codec::Dataset(None) => return Ok(Report::default()),
        _ => false,
    };
    let result = if deflated {
        // Deflated: count the inflated bytes first (no allocation), then walk them.
        let inflate = || -> std::io::Result<flate2::read::DeflateDecoder<BufReader<File>>> {
            let mut f = BufReader::new(File::open(path)?);
            f.seek(SeekFrom::Start(data_start))?;
            Ok(flate2::read::DeflateDecoder::new(f))
        };
        let Ok(d) = inflate() else { return Ok(Report::default()) };
        // A stream that does not inflate is refused here: dicom-object would read what came out
        // before the damage with nothing checking the lengths (found by the dicom_file fuzzer:
        // one flipped byte, 0.8 GB and seconds; tests/fuzz/regressions/dicom_file).
        let total = std::io::copy(&mut d.take(MAX_INFLATED + 1), &mut std::io::sink()).map_err(|e| VolumeError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the deflated data set does not inflate ({e})"),
        })?;
        if total > MAX_INFLATED {
            return Err(VolumeError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("the deflated data set inflates to more than {} GiB", MAX_INFLATED >> 30),
            });
        }
        let Ok(d) = inflate() else { return Ok(Report::default()) };
        let mut w = Walker { src: d, path, pos: 0, len: total, pixel_data: None };
        let r = w.dataset(None, syntax, 0);
        (r, w.pixel_data, total)
    } else {
        let mut w = meta;
        let r = w.dataset(None, syntax, 0);
        (r, w.pixel_data, file_len)
    };
    match result {
        (Ok(()), pixel_data, data_len) => Ok(Report { understood: true, pixel_data, data_len }),
        (Err(Halt::GiveUp), pixel_data, data_len) => Ok(Report { understood: false, pixel_data, data_len }),
        (Err(Halt::Refuse(e)), ..) => Err(e),
    }
}

/// The file meta group, read as dicom-object reads it: (0002,0000) with its 4-byte group
/// length first, then elements (explicit VR little endian, whatever their group) until that
/// many bytes are consumed; each length is checked. Returns the transfer syntax UID.
fn meta_group(w: &mut Walker<'_, BufReader<File>>) -> std::result::Result<String, Halt> {
    let header = |w: &mut Walker<'_, BufReader<File>>| -> std::result::Result<(u16, u16, u32, u32), Halt> {
        let g = w.u16(false)?;
        let e = w.u16(false)?;
        if g == 0xFFFE {
            return Ok((g, e, w.u32(false)?, 8));
        }
        let vr = VR::from_binary(w.bytes::<2>()?).unwrap_or(VR::UN);
        Ok(if short_length(vr) {
            (g, e, w.u16(false)? as u32, 8)
        } else {
            w.skip(2)?;
            (g, e, w.u32(false)?, 12)
        })
    };
    let (g, e, len, _) = header(w)?;
    if (g, e, len) != (0x0002, 0x0000, 4) {
        return Err(Halt::GiveUp);
    }
    let group_length = u32::from_le_bytes(w.bytes::<4>()?);
    let mut consumed = 0u32;
    let mut ts = None;
    while consumed < group_length {
        let offset = w.pos;
        let (g, e, len, header_len) = header(w)?;
        if len == UNDEFINED {
            return Err(Halt::GiveUp);
        }
        let limit = w.len;
        w.check(g, e, offset, len as u64, limit)?;
        if (g, e) == (0x0002, 0x0010) && len <= 256 {
            let mut v = vec![0u8; len as usize];
            w.src.read_exact(&mut v).map_err(|_| Halt::GiveUp)?;
            w.pos += len as u64;
            ts = Some(String::from_utf8_lossy(&v).trim_end_matches(['\0', ' ']).trim().to_string());
        } else {
            w.skip(len as u64)?;
        }
        consumed = consumed.saturating_add(header_len).saturating_add(len);
    }
    ts.ok_or(Halt::GiveUp)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
