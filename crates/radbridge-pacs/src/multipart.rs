//! A streaming reader of `multipart/related` bodies (RFC 2046), as WADO-RS returns them: each
//! part's bytes are copied to a writer as they arrive, so an instance of any size needs only a
//! fixed buffer. Written by hand: the maintained multipart crates are async (`multer`) or
//! buffer whole parts in memory (`multipart-rs`, used by the `dicom-web` crate).

use std::io::{self, Read, Write};

use memchr::memmem;

const BUF: usize = 256 * 1024;
/// The header block of one part may not exceed this.
pub const MAX_HEADERS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// Reading the body failed (a dropped connection, a timeout).
    #[error("{0}")]
    Read(io::Error),
    /// Writing a part's bytes failed.
    #[error("writing part {part}: {source}")]
    Write { part: usize, source: io::Error },
    #[error("the body ended inside part {part}, before its closing boundary")]
    Truncated { part: usize },
    #[error("no opening boundary {boundary:?} in the body")]
    NoBoundary { boundary: String },
    #[error("the headers of part {part} exceed {MAX_HEADERS} bytes")]
    HeadersTooLong { part: usize },
    #[error("part {part} exceeds the limit of {limit} bytes")]
    PartTooLarge { part: usize, limit: u64 },
    #[error("{0}")]
    Malformed(String),
}

/// The `boundary` parameter of a `multipart/related` Content-Type.
pub fn boundary(content_type: &str) -> std::result::Result<String, MultipartError> {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(MultipartError::Malformed(format!("expected multipart/related, got Content-Type {content_type:?}")));
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("boundary") {
                let v = v.trim().trim_matches('"');
                if v.is_empty() || v.len() > 70 {
                    return Err(MultipartError::Malformed(format!("invalid boundary {v:?}")));
                }
                return Ok(v.to_string());
            }
        }
    }
    Err(MultipartError::Malformed(format!("no boundary in Content-Type {content_type:?}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// At a delimiter (`\r\n--boundary` at `start`).
    AtDelimiter,
    /// Inside a part's body.
    Body,
    Done,
}

/// One part's headers, names lower-cased.
#[derive(Debug, Clone, Default)]
pub struct PartHeaders {
    pub headers: Vec<(String, String)>,
}

impl PartHeaders {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads parts one after the other from `inner`.
pub struct MultipartReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// `\r\n--boundary`
    delim: Vec<u8>,
    boundary: String,
    state: State,
    part: usize,
}

impl<R: Read> MultipartReader<R> {
    pub fn new(inner: R, boundary: &str) -> Self {
        let mut buf = vec![0u8; BUF];
        // A body may start with the delimiter without the CRLF that precedes later ones: start
        // the buffer with one so every delimiter looks the same.
        buf[..2].copy_from_slice(b"\r\n");
        MultipartReader {
            inner,
            buf,
            start: 0,
            end: 2,
            eof: false,
            delim: format!("\r\n--{boundary}").into_bytes(),
            boundary: boundary.to_string(),
            state: State::Preamble,
            part: 0,
        }
    }

    /// Parts read so far.
    pub fn parts(&self) -> usize {
        self.part
    }

    /// Read more into the buffer; false at the end of the body.
    fn fill(&mut self) -> Result<bool, MultipartError> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start > BUF / 2) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(true); // full: the caller consumes first
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(MultipartError::Read(e)),
            }
        }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Make at least `n` bytes available; false if the body ends first.
    fn need(&mut self, n: usize) -> Result<bool, MultipartError> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Move to the next part and read its headers; `None` after the closing delimiter.
    pub fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        match self.state {
            State::Done => return Ok(None),
            State::Body => {
                self.copy_body(&mut io::sink(), u64::MAX)?;
            }
            State::Preamble => {
                // Skip to the first delimiter.
                let finder = memmem::Finder::new(&self.delim).into_owned();
                loop {
                    if let Some(i) = finder.find(self.avail()) {
                        self.start += i;
                        break;
                    }
                    let keep = self.delim.len() - 1;
                    let len = self.end - self.start;
                    if len > keep {
                        self.start = self.end - keep;
                    }
                    if !self.fill()? {
                        return Err(MultipartError::NoBoundary { boundary: self.boundary.clone() });
                    }
                }
            }
            State::AtDelimiter => {}
        }
        // At `\r\n--boundary`: then `--` (the end) or transport padding and CRLF.
        let dl = self.delim.len();
        if !self.need(dl + 2)? {
            return Err(MultipartError::Truncated { part: self.part });
        }
        debug_assert!(self.avail().starts_with(&self.delim));
        self.start += dl;
        if self.avail().starts_with(b"--") {
            self.state = State::Done;
            return Ok(None);
        }
        loop {
            if !self.need(2)? {
                return Err(MultipartError::Truncated { part: self.part });
            }
            match self.avail()[0] {
                b' ' | b'\t' => self.start += 1,
                b'\r' if self.avail()[1] == b'\n' => {
                    self.start += 2;
                    break;
                }
                _ => return Err(MultipartError::Malformed(format!("part {}: junk after the boundary", self.part + 1))),
            }
        }
        self.part += 1;
        // Headers end at an empty line (a part with no headers starts with it).
        let end_of_headers = loop {
            if self.avail().starts_with(b"\r\n") {
                break 0;
            }
            if let Some(i) = memmem::find(self.avail(), b"\r\n\r\n") {
                if i + 2 > MAX_HEADERS {
                    return Err(MultipartError::HeadersTooLong { part: self.part });
                }
                break i + 2;
            }
            if self.end - self.start > MAX_HEADERS {
                return Err(MultipartError::HeadersTooLong { part: self.part });
            }
            if !self.fill()? {
                return Err(MultipartError::Truncated { part: self.part });
            }
        };
        let text = String::from_utf8_lossy(&self.avail()[..end_of_headers]).into_owned();
        self.start += end_of_headers + 2;
        let mut headers = Vec::new();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| MultipartError::Malformed(format!("part {}: header line without a colon: {line:?}", self.part)))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        self.state = State::Body;
        Ok(Some(PartHeaders { headers }))
    }

    /// Copy the current part's body to `w` (at most `limit` bytes); returns its length.
    pub fn copy_body(&mut self, w: &mut dyn Write, limit: u64) -> Result<u64, MultipartError> {
        if self.state != State::Body {
            return Ok(0);
        }
        let finder = memmem::Finder::new(&self.delim).into_owned();
        let keep = self.delim.len() - 1;
        let mut written = 0u64;
        let part = self.part;
        let mut emit = |bytes: &[u8], written: &mut u64| -> Result<(), MultipartError> {
            *written = written.saturating_add(bytes.len() as u64);
            if *written > limit {
                return Err(MultipartError::PartTooLarge { part, limit });
            }
            w.write_all(bytes).map_err(|source| MultipartError::Write { part, source })
        };
        loop {
            if let Some(i) = finder.find(self.avail()) {
                let (s, e) = (self.start, self.start + i);
                emit(&self.buf[s..e], &mut written)?;
                self.start = e;
                self.state = State::AtDelimiter;
                return Ok(written);
            }
            let len = self.end - self.start;
            if len > keep {
                let (s, e) = (self.start, self.end - keep);
                emit(&self.buf[s..e], &mut written)?;
                self.start = e;
            }
            if !self.fill()? {
                return Err(MultipartError::Truncated { part: self.part });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn body(parts: &[&[u8]], b: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts {
            v.extend_from_slice(format!("--{b}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
            v.extend_from_slice(p);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        v
    }

    fn read_all(data: &[u8], b: &str, step: usize) -> Result<Vec<Vec<u8>>, MultipartError> {
        let mut r = MultipartReader::new(Trickle { data, step }, b);
        let mut out = Vec::new();
        while let Some(h) = r.next_part()? {
            assert_eq!(h.get("Content-Type"), Some("application/dicom"));
            let mut v = Vec::new();
            r.copy_body(&mut v, u64::MAX)?;
            out.push(v);
        }
        Ok(out)
    }

    #[test]
    fn parts_come_out_byte_for_byte_whatever_the_chunking() {
        // Part contents that contain CRLFs, dashes and a near-boundary.
        let big: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let tricky = b"\r\n--bound\r\n--boundar--\r\n".to_vec();
        let parts: Vec<&[u8]> = vec![b"first", &tricky, &big, b""];
        let data = body(&parts, "boundary");
        for step in [1, 3, 64, 4096, 1 << 20] {
            let got = read_all(&data, "boundary", step).unwrap();
            assert_eq!(got.len(), 4, "step {step}");
            for (g, p) in got.iter().zip(&parts) {
                assert_eq!(g.as_slice(), *p, "step {step}");
            }
        }
    }

    #[test]
    fn preamble_padding_and_skipped_bodies() {
        let mut data = b"preamble text\r\n".to_vec();
        data.extend(body(&[b"a", b"bb"], "xyz").iter().copied());
        let data = String::from_utf8(data).unwrap().replace("--xyz\r\n", "--xyz  \r\n");
        let mut r = MultipartReader::new(data.as_bytes(), "xyz");
        assert!(r.next_part().unwrap().is_some());
        assert!(r.next_part().unwrap().is_some()); // first body skipped
        let mut v = Vec::new();
        r.copy_body(&mut v, 10).unwrap();
        assert_eq!(v, b"bb");
        assert!(r.next_part().unwrap().is_none());
        assert!(r.next_part().unwrap().is_none());
    }

    #[test]
    fn malformed_bodies_give_named_errors() {
        let good = body(&[b"0123456789"], "b1");
        // Cut inside the part.
        let cut = &good[..good.len() - 12];
        assert!(matches!(read_all(cut, "b1", 7), Err(MultipartError::Truncated { part: 1 })));
        // No boundary at all.
        assert!(matches!(read_all(b"<html>oops</html>", "b1", 5), Err(MultipartError::NoBoundary { .. })));
        // Endless headers.
        let mut h = b"--b1\r\nX: ".to_vec();
        h.extend(std::iter::repeat_n(b'a', MAX_HEADERS + 10));
        assert!(matches!(read_all(&h, "b1", 4096), Err(MultipartError::HeadersTooLong { part: 1 })));
        // A header line without a colon.
        assert!(matches!(read_all(b"--b1\r\nnot a header\r\n\r\nx\r\n--b1--", "b1", 9), Err(MultipartError::Malformed(_))));
        // Junk after a boundary.
        assert!(matches!(read_all(b"--b1junk\r\n\r\nx\r\n--b1--", "b1", 9), Err(MultipartError::Malformed(_))));
        // Over the per-part limit.
        let mut r = MultipartReader::new(good.as_slice(), "b1");
        r.next_part().unwrap();
        assert!(matches!(r.copy_body(&mut Vec::new(), 5), Err(MultipartError::PartTooLarge { part: 1, limit: 5 })));
    }

    #[test]
    fn content_type_boundary() {
        assert_eq!(boundary("multipart/related; type=\"application/dicom\"; boundary=\"abc 1\"").unwrap(), "abc 1");
        assert_eq!(boundary("Multipart/Related;boundary=xyz").unwrap(), "xyz");
        assert!(boundary("application/json").is_err());
        assert!(boundary("multipart/related; type=application/dicom").is_err());
    }
}
