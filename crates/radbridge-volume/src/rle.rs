//! A check of RLE Lossless frames (DICOM PS3.5 Annex G) before they reach the decoder.
//!
//! dicom-pixeldata 0.10 decodes RLE well but trusts the segment contents: a segment that
//! decodes to fewer bytes than the frame needs indexes past its buffer, and a literal run that
//! overruns the segment fails inside an `unwrap` — both panics (found by the `dicom_file`
//! fuzz target; regression files in tests/fuzz/regressions/dicom_file). This check walks the
//! PackBits stream of every segment, counting output bytes without allocating, and refuses
//! the frame with a reason unless each segment yields a full plane.

/// Why an RLE frame cannot be decoded.
pub fn check_frame(fragment: &[u8], rows: usize, cols: usize, samples_per_pixel: usize, bytes_per_sample: usize) -> Result<(), String> {
    if fragment.len() < 64 {
        return Err(format!("RLE frame of {} bytes is shorter than its 64-byte header", fragment.len()));
    }
    let word = |i: usize| u32::from_le_bytes([fragment[4 * i], fragment[4 * i + 1], fragment[4 * i + 2], fragment[4 * i + 3]]) as usize;
    let segments = word(0);
    let expected = samples_per_pixel.saturating_mul(bytes_per_sample);
    if segments == 0 || segments > 15 || segments != expected {
        return Err(format!(
            "RLE header declares {segments} segments; {samples_per_pixel} sample(s) of {bytes_per_sample} byte(s) need {expected}"
        ));
    }
    let plane = rows.checked_mul(cols).ok_or_else(|| format!("RLE plane of {rows} x {cols} pixels overflows"))?;
    for s in 0..segments {
        let start = word(1 + s);
        let end = if s + 1 < segments { word(2 + s) } else { fragment.len() };
        if start < 64 || start > end || end > fragment.len() {
            return Err(format!("RLE segment {} spans bytes {start}..{end} of a {}-byte frame", s + 1, fragment.len()));
        }
        let produced = packbits_len(&fragment[start..end], plane).map_err(|why| format!("RLE segment {}: {why}", s + 1))?;
        if produced < plane {
            return Err(format!("RLE segment {} decodes to {produced} bytes; the frame needs {plane}", s + 1));
        }
    }
    Ok(())
}

/// Bytes a PackBits stream decodes to, stopping once `enough` is reached.
fn packbits_len(seg: &[u8], enough: usize) -> Result<usize, String> {
    let (mut i, mut n) = (0usize, 0usize);
    while i < seg.len() && n < enough {
        let h = seg[i] as i8;
        i += 1;
        match h {
            0..=127 => {
                let len = h as usize + 1;
                if i + len > seg.len() {
                    return Err(format!("a literal run of {len} bytes overruns the segment at byte {i}"));
                }
                i += len;
                n += len;
            }
            -127..=-1 => {
                if i >= seg.len() {
                    return Err("a repeat run has no byte to repeat".into());
                }
                i += 1;
                n += (1 - h as isize) as usize;
            }
            -128 => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[0..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut off = 64u32;
        let mut body = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            h[4 + 4 * i..8 + 4 * i].copy_from_slice(&off.to_le_bytes());
            off += s.len() as u32;
            body.extend_from_slice(s);
        }
        h.extend(body);
        h
    }

    #[test]
    fn a_full_frame_passes() {
        // 2 x 2 pixels, 16-bit: two segments of 4 bytes each (a repeat run and a literal run).
        let f = frame(&[&[0xFD, 0x00], &[0x03, 1, 2, 3, 4]]);
        assert_eq!(check_frame(&f, 2, 2, 1, 2), Ok(()));
    }

    #[test]
    fn short_segments_overruns_and_bad_headers_are_refused() {
        let short = frame(&[&[0xFE, 0x00], &[0x03, 1, 2, 3, 4]]);
        assert!(check_frame(&short, 2, 2, 1, 2).unwrap_err().contains("decodes to 3 bytes"));
        let overrun = frame(&[&[0xFD, 0x00], &[0x07, 1, 2]]);
        assert!(check_frame(&overrun, 2, 2, 1, 2).unwrap_err().contains("overruns"));
        let one = frame(&[&[0xFD, 0x00]]);
        assert!(check_frame(&one, 2, 2, 1, 2).unwrap_err().contains("need 2"));
        let mut far = frame(&[&[0xFD, 0x00], &[0x03, 1, 2, 3, 4]]);
        far[8..12].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        assert!(check_frame(&far, 2, 2, 1, 2).unwrap_err().contains("spans"));
        assert!(check_frame(&[0; 10], 2, 2, 1, 2).unwrap_err().contains("header"));
    }
}
