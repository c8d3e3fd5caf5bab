//! A decoder for sequential-DCT, Huffman-coded JPEG with one component and 8- or 12-bit
//! samples: ITU-T T.81 processes 1 (baseline, SOF0) and 4 (extended, SOF1, 12-bit), as found in
//! DICOM transfer syntaxes 1.2.840.10008.1.2.4.50 and 1.2.840.10008.1.2.4.51.
//!
//! Written from the standard (T.81 annexes B, C, F). It exists because the pure-Rust JPEG decoder
//! in our DICOM stack refuses 12-bit DCT data.
//!
//! What it handles: SOI; APPn/COM and other length-prefixed segments (skipped); DQT with 8- and
//! 16-bit tables; DHT with several tables per segment; SOF0/SOF1 with 8- or 12-bit precision and
//! one component (any sampling factors: a single-component scan is non-interleaved, so its MCU is
//! one 8x8 block); SOS with one component and Ss=0, Se=63, Ah=Al=0; DRI and RST0..7; byte
//! stuffing (FF 00); fill bytes (FF FF ...) before markers; images whose size is not a multiple
//! of 8; a missing EOI at the end.
//!
//! What it refuses, with a named error: progressive, lossless, hierarchical and arithmetic-coded
//! processes, JPEG-LS, more than one component, other precisions, a height defined by DNL.
//!
//! Reconstruction (T.81 A.3.3, F.2.1.5): dequantisation, a separable floating-point (f64) IDCT,
//! level shift by +2^(P-1), rounding to nearest and clamping to [0, 2^P - 1].
//!
//! No input makes it panic: every index into the input and into tables is checked, and
//! corrupt or short input gives a `Jpeg12Error`.

/// A decoded single-component image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    /// Sample precision from the frame header: 8 or 12.
    pub precision: u8,
    /// Row-major, `width * height` unsigned samples in 0..=(2^precision - 1).
    pub samples: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Jpeg12Error {
    #[error("not a JPEG stream: it does not start with the SOI marker (FF D8)")]
    NotJpeg,

    #[error("truncated JPEG data: {0}")]
    Truncated(String),

    #[error(
        "unsupported JPEG process: {process} (marker FF {marker:02X}); only sequential DCT with \
         Huffman coding (SOF0 baseline, SOF1 extended) is supported"
    )]
    UnsupportedProcess { marker: u8, process: &'static str },

    #[error("unsupported sample precision: {0} bits (sequential DCT supports 8 and 12)")]
    UnsupportedPrecision(u8),

    #[error("unsupported number of components: {0} (only single-component grayscale is supported)")]
    UnsupportedComponents(usize),

    #[error("unsupported JPEG feature: {0}")]
    Unsupported(String),

    #[error("invalid {segment} segment at offset {offset}: {reason}")]
    InvalidSegment { segment: &'static str, offset: usize, reason: String },

    #[error("expected a marker at offset {offset}, found byte {found:#04x}")]
    ExpectedMarker { offset: usize, found: u8 },

    #[error("unexpected marker {marker} at offset {offset}: {reason}")]
    UnexpectedMarker { marker: String, offset: usize, reason: &'static str },

    #[error("the scan uses {class} Huffman table {id}, which is not defined")]
    MissingHuffmanTable { class: &'static str, id: u8 },

    #[error("the frame uses quantization table {0}, which is not defined")]
    MissingQuantTable(u8),

    #[error("end of image (EOI) before {0}")]
    EarlyEnd(&'static str),

    #[error("bad Huffman code in block {block} of {total} ({class} table, near offset {offset})")]
    BadHuffmanCode { block: usize, total: usize, class: &'static str, offset: usize },

    #[error("corrupt entropy-coded data in block {block} of {total} (near offset {offset}): {reason}")]
    CorruptData { block: usize, total: usize, offset: usize, reason: String },

    #[error("the JPEG frame is {width}x{height} but {expected_width}x{expected_height} was expected")]
    SizeMismatch { width: usize, height: usize, expected_width: usize, expected_height: usize },

    #[error("bad restart marker at offset {offset}: expected RST{expected}, found {found}")]
    BadRestart { expected: u8, found: String, offset: usize },
}

type Result<T> = std::result::Result<T, Jpeg12Error>;

/// Zig-zag index -> natural (row-major) index within an 8x8 block (T.81 figure A.6).
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56,
    57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// A readable name for a marker code (the byte after FF).
fn marker_name(m: u8) -> String {
    match m {
        0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => format!("SOF{}", m - 0xC0),
        0xC4 => "DHT".into(),
        0xC8 => "JPG".into(),
        0xCC => "DAC".into(),
        0xD0..=0xD7 => format!("RST{}", m - 0xD0),
        0xD8 => "SOI".into(),
        0xD9 => "EOI".into(),
        0xDA => "SOS".into(),
        0xDB => "DQT".into(),
        0xDC => "DNL".into(),
        0xDD => "DRI".into(),
        0xDE => "DHP".into(),
        0xDF => "EXP".into(),
        0xE0..=0xEF => format!("APP{}", m - 0xE0),
        0xF7 => "SOF55 (JPEG-LS)".into(),
        0xF8 => "LSE (JPEG-LS)".into(),
        0xFE => "COM".into(),
        _ => format!("FF{m:02X}"),
    }
}

/// The process a refused frame/table marker stands for, or None for markers we handle or skip.
fn unsupported_process(m: u8) -> Option<&'static str> {
    Some(match m {
        0xC2 => "progressive DCT, Huffman coding (SOF2)",
        0xC3 => "lossless, Huffman coding (SOF3)",
        0xC5 => "hierarchical: differential sequential DCT, Huffman coding (SOF5)",
        0xC6 => "hierarchical: differential progressive DCT, Huffman coding (SOF6)",
        0xC7 => "hierarchical: differential lossless, Huffman coding (SOF7)",
        0xC9 => "extended sequential DCT, arithmetic coding (SOF9)",
        0xCA => "progressive DCT, arithmetic coding (SOF10)",
        0xCB => "lossless, arithmetic coding (SOF11)",
        0xCC => "arithmetic coding (DAC conditioning table)",
        0xCD => "hierarchical: differential sequential DCT, arithmetic coding (SOF13)",
        0xCE => "hierarchical: differential progressive DCT, arithmetic coding (SOF14)",
        0xCF => "hierarchical: differential lossless, arithmetic coding (SOF15)",
        0xDE => "hierarchical (DHP marker)",
        0xDF => "hierarchical (EXP marker)",
        0xF7 => "JPEG-LS (SOF55)",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Huffman tables (T.81 annex C, F.2.2.3)

const LOOKAHEAD: u32 = 9;

#[derive(Debug, Clone)]
struct Huffman {
    /// Indexed by the next LOOKAHEAD bits: (code length << 8) | symbol, or 0 when the code is
    /// longer than LOOKAHEAD bits (or invalid).
    lookup: Vec<u16>,
    /// Largest code of each length 1..=16 (index = length), -1 when there is none.
    maxcode: [i32; 17],
    /// For length l: index into `values` = code + valoffset[l].
    valoffset: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    /// Builds the canonical code (T.81 C.2) from BITS (codes per length 1..=16) and HUFFVAL.
    fn build(counts: &[u8; 16], values: &[u8]) -> std::result::Result<Huffman, String> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total != values.len() {
            return Err(format!("{} symbols declared, {} given", total, values.len()));
        }
        if total == 0 {
            return Err("table has no codes".into());
        }
        let mut maxcode = [-1i32; 17];
        let mut valoffset = [0i32; 17];
        let mut lookup = vec![0u16; 1 << LOOKAHEAD];
        let mut code: u32 = 0;
        let mut k: usize = 0;
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            if n > 0 {
                valoffset[len as usize] = k as i32 - code as i32;
                for i in 0..n {
                    let c = code + i as u32;
                    if c >= (1u32 << len) {
                        return Err(format!("too many codes of length {len} (over-subscribed code)"));
                    }
                    if len <= LOOKAHEAD {
                        let shift = LOOKAHEAD - len;
                        let start = (c << shift) as usize;
                        let end = ((c + 1) << shift) as usize;
                        let sym = values.get(k + i).copied().unwrap_or(0);
                        let entry = ((len as u16) << 8) | sym as u16;
                        for e in lookup.get_mut(start..end).into_iter().flatten() {
                            *e = entry;
                        }
                    }
                }
                code += n as u32;
                k += n;
                maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(Huffman { lookup, maxcode, valoffset, values: values.to_vec() })
    }
}

// ---------------------------------------------------------------------------------------------
// Bit reader over entropy-coded data (T.81 F.2.2.5, B.1.1.5)

/// Why the reader stopped taking bytes from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// A marker (FF xx, xx != 00) starts at this offset.
    Marker(usize),
    /// The input ended.
    End,
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Next bits, most significant first.
    buf: u64,
    nbits: u32,
    /// How many of the `nbits` (the last ones) are padding added after `stop`.
    pad: u32,
    stop: Stop,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader { data, pos, buf: 0, nbits: 0, pad: 0, stop: Stop::Running }
    }

    /// Tops the buffer up to at least 57 bits. After a marker or the end of the input, pads with
    /// 1-bits, which are counted so that using them is reported as truncation.
    fn fill(&mut self) {
        while self.nbits <= 56 {
            let byte = if self.stop != Stop::Running {
                self.pad += 8;
                0xFF
            } else {
                match self.data.get(self.pos) {
                    None => {
                        self.stop = Stop::End;
                        continue;
                    }
                    Some(&0xFF) => match self.data.get(self.pos + 1) {
                        Some(0x00) => {
                            self.pos += 2;
                            0xFF
                        }
                        Some(_) => {
                            self.stop = Stop::Marker(self.pos);
                            continue;
                        }
                        None => {
                            // A lone FF as the last byte: the start of a marker that was cut off.
                            self.stop = Stop::End;
                            continue;
                        }
                    },
                    Some(&b) => {
                        self.pos += 1;
                        b
                    }
                }
            };
            self.buf |= (byte as u64) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    /// Real (non-padding) bits available in the buffer.
    #[inline]
    fn real_bits(&self) -> u32 {
        self.nbits - self.pad
    }

    #[inline]
    fn peek(&self, n: u32) -> u32 {
        debug_assert!((1..=32).contains(&n));
        (self.buf >> (64 - n)) as u32
    }

    /// Drops n bits; false when that would use padding (the data ran out).
    #[inline]
    fn consume(&mut self, n: u32) -> bool {
        if n > self.real_bits() {
            return false;
        }
        self.buf <<= n;
        self.nbits -= n;
        true
    }

    /// Offset of the byte being read, for messages.
    fn offset(&self) -> usize {
        self.pos
    }

    /// Forgets buffered bits (the rest of a restart interval) and steps past the next marker,
    /// which must be RST`expected`. Bytes between the current position and that marker are
    /// skipped, as other decoders do.
    fn restart(&mut self, expected: u8) -> Result<()> {
        self.buf = 0;
        self.nbits = 0;
        self.pad = 0;
        self.stop = Stop::Running;
        let len = self.data.len();
        loop {
            match self.data.get(self.pos) {
                None => {
                    return Err(Jpeg12Error::Truncated(format!(
                        "data ended at offset {len} where restart marker RST{expected} was expected"
                    )))
                }
                Some(&0xFF) => {
                    let start = self.pos;
                    let mut p = self.pos + 1;
                    while self.data.get(p) == Some(&0xFF) {
                        p += 1;
                    }
                    let Some(&m) = self.data.get(p) else {
                        return Err(Jpeg12Error::Truncated(format!(
                            "data ended at offset {len} where restart marker RST{expected} was expected"
                        )));
                    };
                    if m == 0x00 {
                        // Stuffed data byte left over from the previous interval: skip.
                        self.pos = p + 1;
                        continue;
                    }
                    if m == 0xD0 + expected {
                        self.pos = p + 1;
                        return Ok(());
                    }
                    return Err(Jpeg12Error::BadRestart { expected, found: marker_name(m), offset: start });
                }
                Some(_) => self.pos += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Marker segments

#[derive(Debug, Clone, Copy)]
struct Frame {
    precision: u8,
    width: usize,
    height: usize,
    component_id: u8,
    quant_table: u8,
}

/// The payload of the length-prefixed segment whose length field starts at `pos`, and the
/// offset just after it.
fn segment(data: &[u8], pos: usize, marker: u8) -> Result<(&[u8], usize)> {
    let hi = data.get(pos).copied();
    let lo = data.get(pos + 1).copied();
    let (Some(hi), Some(lo)) = (hi, lo) else {
        return Err(Jpeg12Error::Truncated(format!(
            "data ended inside the length field of the {} segment at offset {}",
            marker_name(marker),
            pos.saturating_sub(2)
        )));
    };
    let len = u16::from_be_bytes([hi, lo]) as usize;
    if len < 2 {
        return Err(Jpeg12Error::InvalidSegment {
            segment: "marker",
            offset: pos.saturating_sub(2),
            reason: format!("{} segment length {len} is less than 2", marker_name(marker)),
        });
    }
    let end = pos + len;
    match data.get(pos + 2..end) {
        Some(payload) => Ok((payload, end)),
        None => Err(Jpeg12Error::Truncated(format!(
            "the {} segment at offset {} declares {} bytes but only {} remain",
            marker_name(marker),
            pos.saturating_sub(2),
            len,
            data.len().saturating_sub(pos)
        ))),
    }
}

fn parse_dqt(seg: &[u8], offset: usize, tables: &mut [Option<[u16; 64]>; 4]) -> Result<()> {
    let bad = |reason: String| Jpeg12Error::InvalidSegment { segment: "DQT", offset, reason };
    let mut s = seg;
    if s.is_empty() {
        return Err(bad("empty segment".into()));
    }
    while let Some((&pqtq, rest)) = s.split_first() {
        let (pq, tq) = (pqtq >> 4, pqtq & 0x0F);
        if pq > 1 {
            return Err(bad(format!("element precision Pq={pq} (must be 0 or 1)")));
        }
        if tq > 3 {
            return Err(bad(format!("table destination Tq={tq} (must be 0..3)")));
        }
        let n = if pq == 0 { 64 } else { 128 };
        let Some(body) = rest.get(..n) else {
            return Err(bad(format!("table {tq} needs {n} bytes, {} remain", rest.len())));
        };
        let mut q = [0u16; 64];
        for (k, v) in q.iter_mut().enumerate() {
            *v = if pq == 0 { body[k] as u16 } else { u16::from_be_bytes([body[2 * k], body[2 * k + 1]]) };
        }
        tables[tq as usize] = Some(q);
        s = &rest[n..];
    }
    Ok(())
}

fn parse_dht(seg: &[u8], offset: usize, dc: &mut [Option<Huffman>; 4], ac: &mut [Option<Huffman>; 4]) -> Result<()> {
    let bad = |reason: String| Jpeg12Error::InvalidSegment { segment: "DHT", offset, reason };
    let mut s = seg;
    if s.is_empty() {
        return Err(bad("empty segment".into()));
    }
    while let Some((&tcth, rest)) = s.split_first() {
        let (tc, th) = (tcth >> 4, tcth & 0x0F);
        if tc > 1 {
            return Err(bad(format!("table class Tc={tc} (must be 0 for DC or 1 for AC)")));
        }
        if th > 3 {
            return Err(bad(format!("table destination Th={th} (must be 0..3)")));
        }
        let Some(bits) = rest.get(..16) else {
            return Err(bad(format!("code-length counts cut short ({} bytes remain)", rest.len())));
        };
        let mut counts = [0u8; 16];
        counts.copy_from_slice(bits);
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        if total > 256 {
            return Err(bad(format!("{total} codes declared (at most 256)")));
        }
        let Some(values) = rest.get(16..16 + total) else {
            return Err(bad(format!("{total} symbols declared, {} bytes remain", rest.len() - 16)));
        };
        let table = Huffman::build(&counts, values).map_err(|r| bad(format!("table {th}: {r}")))?;
        if tc == 0 {
            dc[th as usize] = Some(table);
        } else {
            ac[th as usize] = Some(table);
        }
        s = &rest[16 + total..];
    }
    Ok(())
}

/// SOF0 and SOF1 are decoded alike; both accept 8- and 12-bit precision.
fn parse_sof(seg: &[u8], offset: usize) -> Result<Frame> {
    let bad = |reason: String| Jpeg12Error::InvalidSegment { segment: "SOF", offset, reason };
    if seg.len() < 6 {
        return Err(bad(format!("{} bytes, need at least 6", seg.len())));
    }
    let precision = seg[0];
    let height = u16::from_be_bytes([seg[1], seg[2]]) as usize;
    let width = u16::from_be_bytes([seg[3], seg[4]]) as usize;
    let nf = seg[5] as usize;
    if precision != 8 && precision != 12 {
        return Err(Jpeg12Error::UnsupportedPrecision(precision));
    }
    if nf != 1 {
        return Err(Jpeg12Error::UnsupportedComponents(nf));
    }
    if seg.len() != 6 + 3 * nf {
        return Err(bad(format!("{} bytes for {nf} component(s), expected {}", seg.len(), 6 + 3 * nf)));
    }
    if height == 0 {
        return Err(Jpeg12Error::Unsupported("image height 0 in the frame header (height given later by a DNL marker)".into()));
    }
    if width == 0 {
        return Err(bad("image width is 0".into()));
    }
    let (id, hv, tq) = (seg[6], seg[7], seg[8]);
    let (h, v) = (hv >> 4, hv & 0x0F);
    if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
        return Err(bad(format!("sampling factors {h}x{v} (must be 1..4)")));
    }
    if tq > 3 {
        return Err(bad(format!("quantization table selector {tq} (must be 0..3)")));
    }
    Ok(Frame { precision, width, height, component_id: id, quant_table: tq })
}

// ---------------------------------------------------------------------------------------------
// IDCT (T.81 A.3.3)

/// `m[x][u] = C(u)/2 * cos((2x+1) u pi / 16)`, C(0) = 1/sqrt(2), else 1.
fn idct_matrix() -> [[f64; 8]; 8] {
    let mut m = [[0.0; 8]; 8];
    for (x, row) in m.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let c = if u == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
            *v = 0.5 * c * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
        }
    }
    m
}

/// In-place 2-D IDCT of a dequantised block in natural order (index = 8*row + column).
fn idct(block: &mut [f64; 64], m: &[[f64; 8]; 8]) {
    let mut tmp = [0.0f64; 64];
    // Rows: tmp[v][x] = sum_u m[x][u] * F[v][u]
    for v in 0..8 {
        let row = &block[8 * v..8 * v + 8];
        if row[1..].iter().all(|&c| c == 0.0) {
            let dc = row[0] * m[0][0];
            tmp[8 * v..8 * v + 8].iter_mut().for_each(|t| *t = dc);
            continue;
        }
        for x in 0..8 {
            let mx = &m[x];
            let mut s = 0.0;
            for u in 0..8 {
                s += mx[u] * row[u];
            }
            tmp[8 * v + x] = s;
        }
    }
    // Columns: out[y][x] = sum_v m[y][v] * tmp[v][x]
    for y in 0..8 {
        let my = &m[y];
        for x in 0..8 {
            let mut s = 0.0;
            for v in 0..8 {
                s += my[v] * tmp[8 * v + x];
            }
            block[8 * y + x] = s;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decode a 12-bit (or 8-bit) sequential-DCT Huffman JPEG with one component.
pub fn decode(data: &[u8]) -> Result<Decoded> {
    decode_inner(data, None, None)
}

/// `decode`, refusing a frame whose size is not `width` x `height` as soon as the frame header
/// is read, before the output is allocated.
pub fn decode_expecting(data: &[u8], width: usize, height: usize) -> Result<Decoded> {
    decode_inner(data, None, Some((width, height)))
}

/// `coefs`, when given, receives each block's quantised coefficients in zig-zag order, DC as
/// the absolute value (tests re-encode streams from them).
fn decode_inner(data: &[u8], mut coefs: Option<&mut Vec<[i32; 64]>>, expect: Option<(usize, usize)>) -> Result<Decoded> {
    if data.len() < 2 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(Jpeg12Error::NotJpeg);
    }
    let mut pos = 2usize;
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = Default::default();
    let mut ac: [Option<Huffman>; 4] = Default::default();
    let mut frame: Option<Frame> = None;
    let mut restart_interval = 0usize;

    loop {
        // The next marker, after any fill bytes.
        let start = pos;
        match data.get(pos) {
            None => return Err(Jpeg12Error::Truncated(format!("data ended at offset {pos} before the scan (no SOS marker)"))),
            Some(&0xFF) => {}
            Some(&b) => return Err(Jpeg12Error::ExpectedMarker { offset: pos, found: b }),
        }
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&m) = data.get(pos) else {
            return Err(Jpeg12Error::Truncated(format!("data ended at offset {pos} inside a marker, before the scan")));
        };
        pos += 1;
        if let Some(process) = unsupported_process(m) {
            return Err(Jpeg12Error::UnsupportedProcess { marker: m, process });
        }
        match m {
            0x00 => return Err(Jpeg12Error::ExpectedMarker { offset: start, found: 0xFF }),
            // Markers without a length: TEM, RSTn outside a scan, a repeated SOI. Ignore.
            0x01 | 0xD0..=0xD8 => {}
            0xD9 => return Err(Jpeg12Error::EarlyEnd(if frame.is_none() { "the frame header (SOF)" } else { "the scan (SOS)" })),
            0xC0 | 0xC1 => {
                let (seg, next) = segment(data, pos, m)?;
                if frame.is_some() {
                    return Err(Jpeg12Error::UnexpectedMarker { marker: marker_name(m), offset: start, reason: "a second frame header" });
                }
                let f = parse_sof(seg, start)?;
                if let Some((w, h)) = expect {
                    if (f.width, f.height) != (w, h) {
                        return Err(Jpeg12Error::SizeMismatch { width: f.width, height: f.height, expected_width: w, expected_height: h });
                    }
                }
                frame = Some(f);
                pos = next;
            }
            0xDB => {
                let (seg, next) = segment(data, pos, m)?;
                parse_dqt(seg, start, &mut qt)?;
                pos = next;
            }
            0xC4 => {
                let (seg, next) = segment(data, pos, m)?;
                parse_dht(seg, start, &mut dc, &mut ac)?;
                pos = next;
            }
            0xDD => {
                let (seg, next) = segment(data, pos, m)?;
                let [hi, lo] = seg else {
                    return Err(Jpeg12Error::InvalidSegment {
                        segment: "DRI",
                        offset: start,
                        reason: format!("length {} (must be 4)", seg.len() + 2),
                    });
                };
                restart_interval = u16::from_be_bytes([*hi, *lo]) as usize;
                pos = next;
            }
            0xDA => {
                let (seg, next) = segment(data, pos, m)?;
                let Some(frame) = frame else {
                    return Err(Jpeg12Error::UnexpectedMarker {
                        marker: "SOS".into(),
                        offset: start,
                        reason: "scan before the frame header (SOF)",
                    });
                };
                return decode_scan(data, seg, start, next, &frame, &qt, &dc, &ac, restart_interval, &mut coefs);
            }
            // Everything else with a length (APPn, COM, DNL, JPGn, reserved): skip.
            _ => {
                let (_, next) = segment(data, pos, m)?;
                pos = next;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    sos: &[u8],
    sos_offset: usize,
    scan_start: usize,
    frame: &Frame,
    qt: &[Option<[u16; 64]>; 4],
    dc_tables: &[Option<Huffman>; 4],
    ac_tables: &[Option<Huffman>; 4],
    restart_interval: usize,
    coefs_out: &mut Option<&mut Vec<[i32; 64]>>,
) -> Result<Decoded> {
    let bad = |reason: String| Jpeg12Error::InvalidSegment { segment: "SOS", offset: sos_offset, reason };
    let Some(&ns) = sos.first() else {
        return Err(bad("empty segment".into()));
    };
    if ns != 1 {
        return Err(Jpeg12Error::Unsupported(format!("scan with {ns} components (the frame has one component)")));
    }
    let [_, cs, tdta, ss, se, ahal] = sos else {
        return Err(bad(format!("{} bytes for one component, expected 6", sos.len())));
    };
    if *cs != frame.component_id {
        return Err(bad(format!("scan component {cs} is not the frame's component {}", frame.component_id)));
    }
    if *ss != 0 || *se != 63 || *ahal != 0 {
        return Err(Jpeg12Error::Unsupported(format!(
            "scan parameters Ss={ss} Se={se} Ah={} Al={} (sequential DCT needs Ss=0 Se=63 Ah=Al=0)",
            ahal >> 4,
            ahal & 0x0F
        )));
    }
    let (td, ta) = (tdta >> 4, tdta & 0x0F);
    let dc_table = dc_tables.get(td as usize).and_then(Option::as_ref).ok_or(Jpeg12Error::MissingHuffmanTable { class: "DC", id: td })?;
    let ac_table = ac_tables.get(ta as usize).and_then(Option::as_ref).ok_or(Jpeg12Error::MissingHuffmanTable { class: "AC", id: ta })?;
    let q = qt.get(frame.quant_table as usize).and_then(|t| t.as_ref()).ok_or(Jpeg12Error::MissingQuantTable(frame.quant_table))?;

    let (width, height) = (frame.width, frame.height);
    let bw = width.div_ceil(8);
    let bh = height.div_ceil(8);
    let total = bw * bh;
    // Every block takes at least 2 bits (a DC code and an EOB code): refuse before allocating
    // when the remaining input cannot hold the scan.
    let remaining = data.len().saturating_sub(scan_start);
    if total > remaining.saturating_mul(4) {
        return Err(Jpeg12Error::Truncated(format!(
            "the {width}x{height} image has {total} blocks (at least 2 bits each) but only \
             {remaining} bytes follow the scan header"
        )));
    }

    let precision = frame.precision;
    let maxval = ((1u32 << precision) - 1) as f64;
    let shift = (1u32 << (precision - 1)) as f64;
    // Largest DC difference / AC magnitude category for this precision (T.81 F.1.2.1, F.1.2.2).
    let max_dc_cat = precision as u32 + 3;
    let max_ac_cat = precision as u32 + 2;
    let qf: [f64; 64] = std::array::from_fn(|k| q[k] as f64);
    let m = idct_matrix();

    let mut samples = vec![0u16; width * height];
    let mut br = BitReader::new(data, scan_start);
    let mut pred: i32 = 0;
    let mut zz = [0i32; 64];
    let mut block = [0f64; 64];

    for n in 0..total {
        if restart_interval > 0 && n > 0 && n % restart_interval == 0 {
            br.restart(((n / restart_interval - 1) % 8) as u8)?;
            pred = 0;
        }

        // --- Entropy decoding of one block (T.81 F.2.2) ---
        let truncated = |br: &BitReader| {
            Jpeg12Error::Truncated(match br.stop {
                Stop::Marker(at) => format!(
                    "entropy-coded data ended at marker {} (offset {at}) in block {n} of {total}",
                    data.get(at + 1).map(|&b| marker_name(b)).unwrap_or_default()
                ),
                _ => format!("data ended at offset {} in block {n} of {total}", data.len()),
            })
        };
        let corrupt = |br: &BitReader, reason: String| Jpeg12Error::CorruptData { block: n, total, offset: br.offset(), reason };
        let decode_symbol = |br: &mut BitReader, t: &Huffman, class: &'static str| -> Result<u8> {
            if br.nbits < 16 {
                br.fill();
            }
            let e = t.lookup[br.peek(LOOKAHEAD) as usize];
            if e != 0 {
                if !br.consume((e >> 8) as u32) {
                    return Err(truncated(br));
                }
                return Ok(e as u8);
            }
            for len in LOOKAHEAD + 1..=16 {
                let code = br.peek(len) as i32;
                if code <= t.maxcode[len as usize] {
                    if !br.consume(len) {
                        return Err(truncated(br));
                    }
                    let idx = code + t.valoffset[len as usize];
                    return usize::try_from(idx).ok().and_then(|i| t.values.get(i).copied()).ok_or(Jpeg12Error::BadHuffmanCode {
                        block: n,
                        total,
                        class,
                        offset: br.offset(),
                    });
                }
            }
            if br.real_bits() < 16 {
                return Err(truncated(br));
            }
            Err(Jpeg12Error::BadHuffmanCode { block: n, total, class, offset: br.offset() })
        };
        // RECEIVE(s) + EXTEND (T.81 F.2.2.1), s in 1..=16.
        let receive_extend = |br: &mut BitReader, s: u32| -> Result<i32> {
            if br.nbits < s {
                br.fill();
            }
            let v = br.peek(s) as i32;
            if !br.consume(s) {
                return Err(truncated(br));
            }
            Ok(if v < (1 << (s - 1)) { v - (1 << s) + 1 } else { v })
        };

        zz.fill(0);
        let t = decode_symbol(&mut br, dc_table, "DC")? as u32;
        if t > max_dc_cat {
            return Err(corrupt(&br, format!("DC difference category {t} (at most {max_dc_cat} for {precision}-bit data)")));
        }
        if t > 0 {
            pred = pred.wrapping_add(receive_extend(&mut br, t)?);
        }
        zz[0] = pred;
        let mut k = 1usize;
        while k < 64 {
            let rs = decode_symbol(&mut br, ac_table, "AC")?;
            let (r, s) = ((rs >> 4) as usize, (rs & 0x0F) as u32);
            if s == 0 {
                match r {
                    0 => break, // EOB
                    15 => {
                        // ZRL: sixteen zeros.
                        if k + 16 > 64 {
                            return Err(corrupt(&br, format!("run of 16 zeros from coefficient {k} passes 63")));
                        }
                        k += 16;
                        continue;
                    }
                    _ => return Err(corrupt(&br, format!("invalid AC symbol {rs:#04x}"))),
                }
            }
            if s > max_ac_cat {
                return Err(corrupt(&br, format!("AC magnitude category {s} (at most {max_ac_cat} for {precision}-bit data)")));
            }
            k += r;
            if k > 63 {
                return Err(corrupt(&br, format!("zero run reaches coefficient {k} (past 63)")));
            }
            zz[k] = receive_extend(&mut br, s)?;
            k += 1;
        }
        if let Some(out) = coefs_out.as_deref_mut() {
            out.push(zz);
        }

        // --- Dequantisation, IDCT, level shift, clamp (T.81 A.3.3, F.2.1.5) ---
        block.fill(0.0);
        for (kk, &c) in zz.iter().enumerate() {
            if c != 0 {
                block[ZIGZAG[kk]] = c as f64 * qf[kk];
            }
        }
        idct(&mut block, &m);
        let (bx, by) = (n % bw, n / bw);
        let x0 = bx * 8;
        let y0 = by * 8;
        let cols = (width - x0).min(8);
        let rows = (height - y0).min(8);
        for y in 0..rows {
            let dst_start = (y0 + y) * width + x0;
            let Some(dst) = samples.get_mut(dst_start..dst_start + cols) else { continue };
            for (x, d) in dst.iter_mut().enumerate() {
                let v = (block[8 * y + x] + shift).round();
                *d = v.clamp(0.0, maxval) as u16;
            }
        }
    }

    Ok(Decoded { width, height, precision, samples })
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
    }

    /// The JPEG codestream of a single-frame encapsulated DICOM file.
    fn codestream(name: &str) -> Vec<u8> {
        let path = data_dir().join("generated").join(format!("{name}.dcm"));
        let obj = dicom_object::open_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let elem = obj.element(dicom_dictionary_std::tags::PIXEL_DATA).expect("pixel data");
        let frags = elem.value().fragments().expect("encapsulated pixel data");
        frags.iter().flat_map(|f| f.iter().copied()).collect()
    }

    struct Reference {
        rows: usize,
        columns: usize,
        index: Vec<usize>,
        stored: Vec<f64>,
        slope: f64,
        intercept: f64,
        mean_hu: f64,
    }

    fn reference(key: &str) -> Reference {
        let text = std::fs::read_to_string(data_dir().join("reference/volumes.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let r = &json[key];
        let rescale = r["rescale"].as_array().unwrap();
        let slope = rescale[0].as_f64().unwrap();
        let intercept = rescale[1].as_f64().unwrap();
        let index = r["sample"]["index"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let stored = r["sample"]["value"].as_array().unwrap().iter().map(|v| (v.as_f64().unwrap() - intercept) / slope).collect();
        Reference {
            rows: r["rows"].as_u64().unwrap() as usize,
            columns: r["columns"].as_u64().unwrap() as usize,
            index,
            stored,
            slope,
            intercept,
            mean_hu: r["stats"]["mean"].as_f64().unwrap(),
        }
    }

    /// Compares with the pydicom/libjpeg reference; returns (exact, off by one).
    fn check_against_reference(name: &str, precision: u8) -> (usize, usize) {
        let stream = codestream(name);
        let r = reference(&format!("generated/{name}"));
        let d = decode(&stream).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((d.width, d.height), (r.columns, r.rows), "{name}: dims");
        assert_eq!(d.precision, precision, "{name}: precision");
        assert_eq!(d.samples.len(), d.width * d.height);
        let (mut exact, mut off1) = (0, 0);
        for (&i, &s) in r.index.iter().zip(&r.stored) {
            let want = s.round();
            assert!((s - want).abs() < 1e-3, "{name}: reference value at {i} is not an integer stored value ({s})");
            let got = d.samples[i] as f64;
            let diff = (got - want).abs();
            assert!(diff <= 1.0, "{name}: sample {i}: decoded {got}, reference {want}");
            if diff == 0.0 {
                exact += 1;
            } else {
                off1 += 1;
            }
        }
        assert!(exact as f64 > 0.95 * r.index.len() as f64, "{name}: only {exact} of {} exact", r.index.len());
        // Whole-image mean HU against the reference statistics.
        let mean_stored = d.samples.iter().map(|&v| v as f64).sum::<f64>() / d.samples.len() as f64;
        let mean_hu = mean_stored * r.slope + r.intercept;
        assert!((mean_hu - r.mean_hu).abs() < 0.05 * r.slope, "{name}: mean HU {mean_hu} vs reference {}", r.mean_hu);
        let max = (1u32 << precision) - 1;
        assert!(d.samples.iter().all(|&v| v as u32 <= max));
        println!(
            "{name}: {}x{} {}-bit: {exact} exact, {off1} off by one, of {} reference samples; mean HU {mean_hu:.4} vs {:.4}",
            d.width,
            d.height,
            d.precision,
            r.index.len(),
            r.mean_hu
        );
        (exact, off1)
    }

    #[test]
    fn ct_small_extended12_matches_reference() {
        check_against_reference("ct_small_jpeg_extended12", 12);
    }

    #[test]
    fn ct693_extended12_matches_reference() {
        check_against_reference("693_jpeg_extended12", 12);
    }

    #[test]
    fn ct_small_baseline_matches_reference() {
        check_against_reference("ct_small_jpeg_baseline", 8);
    }

    #[test]
    fn ct693_baseline_matches_reference() {
        check_against_reference("693_jpeg_baseline", 8);
    }

    // --- Stream surgery helpers ---

    /// (marker, offset of FF, offset after the segment) for each marker up to and including SOS.
    fn segments(s: &[u8]) -> Vec<(u8, usize, usize)> {
        let mut out = vec![(0xD8, 0, 2)];
        let mut p = 2;
        loop {
            assert_eq!(s[p], 0xFF);
            let m = s[p + 1];
            let len = u16::from_be_bytes([s[p + 2], s[p + 3]]) as usize;
            out.push((m, p, p + 2 + len));
            p += 2 + len;
            if m == 0xDA {
                return out;
            }
        }
    }

    fn find_segment(s: &[u8], marker: u8) -> (usize, usize) {
        let (_, a, b) = *segments(s).iter().find(|x| x.0 == marker).expect("segment");
        (a, b)
    }

    #[test]
    fn lossless_streams_are_refused_by_name() {
        for name in ["ct_small_jpeg_lossless_sv1", "ct_small_jpeg_lossless_p14"] {
            let e = decode(&codestream(name)).unwrap_err();
            assert!(matches!(e, Jpeg12Error::UnsupportedProcess { marker: 0xC3, .. }), "{name}: {e:?}");
            assert!(e.to_string().contains("lossless"), "{e}");
        }
    }

    #[test]
    fn other_processes_are_refused_by_name() {
        let s = codestream("ct_small_jpeg_extended12");
        let (sof, _) = find_segment(&s, 0xC1);
        for (m, word) in [
            (0xC2, "progressive"),
            (0xC3, "lossless"),
            (0xC5, "hierarchical"),
            (0xC9, "arithmetic"),
            (0xCA, "progressive"),
            (0xCB, "lossless"),
            (0xF7, "JPEG-LS"),
        ] {
            let mut t = s.clone();
            t[sof + 1] = m;
            let e = decode(&t).unwrap_err();
            assert!(matches!(e, Jpeg12Error::UnsupportedProcess { marker, .. } if marker == m), "{m:02X}: {e:?}");
            assert!(e.to_string().contains(word), "{e}");
        }
    }

    #[test]
    fn bad_frames_are_refused_by_name() {
        let s = codestream("ct_small_jpeg_extended12");
        let (sof, _) = find_segment(&s, 0xC1);
        // Precision 16.
        let mut t = s.clone();
        t[sof + 4] = 16;
        assert_eq!(decode(&t).unwrap_err(), Jpeg12Error::UnsupportedPrecision(16));
        // Three components.
        let mut t = s.clone();
        t[sof + 9] = 3;
        assert_eq!(decode(&t).unwrap_err(), Jpeg12Error::UnsupportedComponents(3));
        // Height 0 (DNL).
        let mut t = s.clone();
        t[sof + 5] = 0;
        t[sof + 6] = 0;
        assert!(matches!(decode(&t).unwrap_err(), Jpeg12Error::Unsupported(_)));
        // Not JPEG at all.
        assert_eq!(decode(b"DICM").unwrap_err(), Jpeg12Error::NotJpeg);
        assert_eq!(decode(&[]).unwrap_err(), Jpeg12Error::NotJpeg);
        // Scan referring to a missing Huffman table.
        let (sos, _) = find_segment(&s, 0xDA);
        let mut t = s.clone();
        t[sos + 6] = 0x20;
        assert_eq!(decode(&t).unwrap_err(), Jpeg12Error::MissingHuffmanTable { class: "DC", id: 2 });
        // Progressive-style scan parameters.
        let mut t = s.clone();
        t[sos + 8] = 5;
        assert!(matches!(decode(&t).unwrap_err(), Jpeg12Error::Unsupported(_)));
    }

    #[test]
    fn a_frame_of_another_size_than_expected_is_refused_before_decoding() {
        let s = codestream("ct_small_jpeg_extended12");
        let full = decode(&s).unwrap();
        assert_eq!(decode_expecting(&s, full.width, full.height).unwrap(), full);
        let e = decode_expecting(&s, full.width, full.height + 1).unwrap_err();
        assert_eq!(
            e,
            Jpeg12Error::SizeMismatch {
                width: full.width,
                height: full.height,
                expected_width: full.width,
                expected_height: full.height + 1
            }
        );
    }

    #[test]
    fn truncated_streams_give_errors() {
        let s = codestream("ct_small_jpeg_extended12");
        let full = decode(&s).unwrap();
        assert_eq!(&s[s.len() - 2..], &[0xFF, 0xD9]);
        let (_, scan_start) = find_segment(&s, 0xDA);
        // Cut in half.
        let e = decode(&s[..s.len() / 2]).unwrap_err();
        assert!(matches!(e, Jpeg12Error::Truncated(_)), "{e:?}");
        // Every prefix: never a panic; inside the headers an error, inside the entropy-coded
        // data a Truncated error; without EOI (or with its FF only) the image is complete.
        for len in 0..s.len() {
            let r = decode(&s[..len]);
            if len >= s.len() - 2 {
                assert_eq!(r.as_ref().ok(), Some(&full), "prefix {len}");
            } else if len >= scan_start {
                assert!(matches!(r, Err(Jpeg12Error::Truncated(_))), "prefix {len}: {r:?}");
            } else {
                assert!(r.is_err(), "prefix {len}");
            }
        }
        // EOI replaced by another marker mid-scan: the data is cut, reported as truncated.
        let mut t = s[..s.len() * 3 / 4].to_vec();
        t.extend_from_slice(&[0xFF, 0xD9]);
        let e = decode(&t).unwrap_err();
        assert!(matches!(&e, Jpeg12Error::Truncated(m) if m.contains("EOI")), "{e:?}");
    }

    #[test]
    fn corrupt_streams_never_panic() {
        for name in ["ct_small_jpeg_extended12", "ct_small_jpeg_baseline"] {
            let s = codestream(name);
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let (mut ok, mut err) = (0, 0);
            for _ in 0..400 {
                let mut t = s.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % t.len() as u64) as usize;
                    t[i] = next() as u8;
                }
                match decode(&t) {
                    Ok(d) => {
                        assert_eq!(d.samples.len(), d.width * d.height);
                        ok += 1;
                    }
                    Err(_) => err += 1,
                }
            }
            println!("{name}: 400 corrupted copies: {ok} decoded, {err} refused");
        }
    }

    #[test]
    fn sampling_factors_and_partial_blocks() {
        let s = codestream("ct_small_jpeg_extended12");
        let full = decode(&s).unwrap();
        let (sof, _) = find_segment(&s, 0xC1);
        // Sampling factors 2x2 on the single component: still one block per MCU.
        let mut t = s.clone();
        assert_eq!(t[sof + 11], 0x11);
        t[sof + 11] = 0x22;
        assert_eq!(decode(&t).unwrap(), full);
        // 125 x 121 (same 16x16 blocks): the decoded image is the top-left crop.
        let mut t = s.clone();
        t[sof + 5..sof + 7].copy_from_slice(&121u16.to_be_bytes());
        t[sof + 7..sof + 9].copy_from_slice(&125u16.to_be_bytes());
        let d = decode(&t).unwrap();
        assert_eq!((d.width, d.height), (125, 121));
        for y in 0..121 {
            assert_eq!(&d.samples[y * 125..(y + 1) * 125], &full.samples[y * 128..y * 128 + 125], "row {y}");
        }
    }

    #[test]
    fn sixteen_bit_quant_tables_and_fill_bytes() {
        let s = codestream("693_jpeg_extended12");
        let full = decode(&s).unwrap();
        let (dqt, dqt_end) = find_segment(&s, 0xDB);
        let seg = &s[dqt + 4..dqt_end];
        // Rewrite every table with Pq=1 (16-bit entries).
        let mut body = Vec::new();
        let mut p = 0;
        while p < seg.len() {
            let pq = seg[p] >> 4;
            assert_eq!(pq, 0);
            body.push(0x10 | (seg[p] & 0x0F));
            for &v in &seg[p + 1..p + 65] {
                body.extend_from_slice(&(v as u16).to_be_bytes());
            }
            p += 65;
        }
        let mut t = s[..dqt].to_vec();
        // Fill bytes before the DQT marker, an APP and a COM segment to skip.
        t.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
        t.extend_from_slice(&[0xFF, 0xEF, 0x00, 0x04, 0xAB, 0xCD, 0xFF, 0xFE, 0x00, 0x05, b'h', b'i', b'!']);
        t.extend_from_slice(&[0xFF, 0xDB]);
        t.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        t.extend_from_slice(&body);
        t.extend_from_slice(&s[dqt_end..]);
        assert_eq!(decode(&t).unwrap(), full);
    }

    /// Canonical codes (code, length) per symbol for a DHT table.
    fn encode_table(counts: &[u8], values: &[u8]) -> [(u32, u32); 256] {
        let mut out = [(0u32, 0u32); 256];
        let (mut code, mut k) = (0u32, 0usize);
        for len in 1..=16u32 {
            for _ in 0..counts[len as usize - 1] {
                out[values[k] as usize] = (code, len);
                code += 1;
                k += 1;
            }
            code <<= 1;
        }
        out
    }

    struct BitWriter {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl BitWriter {
        fn put(&mut self, bits: u32, len: u32) {
            for i in (0..len).rev() {
                self.acc = (self.acc << 1) | ((bits >> i) & 1);
                self.n += 1;
                if self.n == 8 {
                    let b = self.acc as u8;
                    self.out.push(b);
                    if b == 0xFF {
                        self.out.push(0x00);
                    }
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }
        fn flush(&mut self) {
            if self.n > 0 {
                let pad = 8 - self.n;
                self.put((1 << pad) - 1, pad);
            }
        }
    }

    fn category(v: i32) -> u32 {
        32 - v.unsigned_abs().leading_zeros()
    }

    /// Re-encodes a stream's coefficients with restart markers every `ri` blocks (fill bytes
    /// before some of them), a DC table covering every category and the original AC table, both
    /// in one DHT segment.
    fn reencode_with_restarts(s: &[u8], ri: usize) -> Vec<u8> {
        let mut coefs = Vec::new();
        decode_inner(s, Some(&mut coefs), None).unwrap();
        let segs = segments(s);
        let mut out = Vec::new();
        let mut ac_def = None;
        for &(m, a, b) in &segs {
            match m {
                0xC4 => {
                    let mut p = a + 4;
                    while p < b {
                        let counts = &s[p + 1..p + 17];
                        let total: usize = counts.iter().map(|&c| c as usize).sum();
                        if s[p] == 0x10 {
                            ac_def = Some(s[p..p + 17 + total].to_vec());
                        }
                        p += 17 + total;
                    }
                }
                0xDA => {
                    // DHT: DC table 0 with all 16 categories as 5-bit codes, then AC table 0.
                    let ac = ac_def.clone().expect("AC table 0");
                    let mut dht = vec![0x00];
                    dht.extend_from_slice(&[0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                    dht.extend(0..16u8);
                    dht.extend_from_slice(&ac);
                    out.extend_from_slice(&[0xFF, 0xC4]);
                    out.extend_from_slice(&((dht.len() + 2) as u16).to_be_bytes());
                    out.extend_from_slice(&dht);
                    out.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x04]);
                    out.extend_from_slice(&(ri as u16).to_be_bytes());
                    let mut sos = s[a..b].to_vec();
                    sos[6] = 0x00; // Td=0, Ta=0
                    out.extend_from_slice(&sos);
                }
                _ => out.extend_from_slice(&s[a..b]),
            }
        }
        let ac = ac_def.unwrap();
        let dc_codes = encode_table(&[0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &(0..16).collect::<Vec<u8>>());
        let ac_codes = encode_table(&ac[1..17], &ac[17..]);
        let mut w = BitWriter { out: Vec::new(), acc: 0, n: 0 };
        let mut pred = 0;
        for (n, zz) in coefs.iter().enumerate() {
            if n > 0 && n % ri == 0 {
                w.flush();
                if (n / ri).is_multiple_of(2) {
                    w.out.extend_from_slice(&[0xFF, 0xFF]); // fill bytes
                }
                w.out.extend_from_slice(&[0xFF, 0xD0 + ((n / ri - 1) % 8) as u8]);
                pred = 0;
            }
            let emit = |w: &mut BitWriter, v: i32, sym_code: (u32, u32), s: u32| {
                assert!(sym_code.1 > 0, "symbol missing from table");
                w.put(sym_code.0, sym_code.1);
                if s > 0 {
                    let bits = if v < 0 { (v - 1) as u32 & ((1 << s) - 1) } else { v as u32 };
                    w.put(bits, s);
                }
            };
            let diff = zz[0] - pred;
            pred = zz[0];
            let s = category(diff);
            emit(&mut w, diff, dc_codes[s as usize], s);
            let mut run = 0;
            let last = (1..64).rev().find(|&k| zz[k] != 0).unwrap_or(0);
            for &v in &zz[1..=last] {
                if v == 0 {
                    run += 1;
                    continue;
                }
                while run >= 16 {
                    emit(&mut w, 0, ac_codes[0xF0], 0);
                    run -= 16;
                }
                let s = category(v);
                emit(&mut w, v, ac_codes[(run << 4 | s) as usize], s);
                run = 0;
            }
            if last < 63 {
                emit(&mut w, 0, ac_codes[0x00], 0);
            }
        }
        w.flush();
        out.extend_from_slice(&w.out);
        out.extend_from_slice(&[0xFF, 0xFF, 0xD9]);
        out
    }

    #[test]
    fn restart_markers() {
        for name in ["ct_small_jpeg_extended12", "693_jpeg_extended12", "ct_small_jpeg_baseline"] {
            let s = codestream(name);
            let full = decode(&s).unwrap();
            for ri in [1, 7, 16, 100] {
                let t = reencode_with_restarts(&s, ri);
                let d = decode(&t).unwrap_or_else(|e| panic!("{name} ri={ri}: {e}"));
                assert!(d == full, "{name}: restart interval {ri} decodes differently");
                assert!(t.windows(2).any(|w| w == [0xFF, 0xD7]) || ri == 100 && full.width == 128);
            }
            // A wrong restart number is reported by name.
            let mut t = reencode_with_restarts(&s, 16);
            let (_, scan_start) = find_segment(&t, 0xDA);
            let i = (scan_start..t.len() - 1).find(|&i| t[i] == 0xFF && t[i + 1] == 0xD1).unwrap();
            t[i + 1] = 0xD5;
            let e = decode(&t).unwrap_err();
            assert!(matches!(e, Jpeg12Error::BadRestart { expected: 1, .. }), "{e:?}");
        }
    }
}
