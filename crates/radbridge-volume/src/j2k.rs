//! A check of JPEG 2000 frames (DICOM PS3.5 A.4.4) before they reach the decoder.
//!
//! dicom-pixeldata 0.10 sizes its output from Rows × Columns but copies every sample the
//! codestream decodes to, so a codestream whose image is larger than the header says writes
//! past the buffer and panics (found by the `dicom_file` fuzz target; regression file in
//! tests/fuzz/regressions/dicom_file). The codestream's SIZ marker segment declares the image
//! size and components: this check reads it and refuses a frame that does not match the
//! DICOM header, before anything is decoded (so OpenJPEG also never sizes its buffers from a
//! hostile SIZ).

/// Transfer syntaxes decoded by the JPEG 2000 adapter (JPEG 2000, Part 2, HTJ2K).
pub fn is_j2k(transfer_syntax: &str) -> bool {
    matches!(
        transfer_syntax,
        "1.2.840.10008.1.2.4.90"
            | "1.2.840.10008.1.2.4.91"
            | "1.2.840.10008.1.2.4.92"
            | "1.2.840.10008.1.2.4.93"
            | "1.2.840.10008.1.2.4.201"
            | "1.2.840.10008.1.2.4.202"
            | "1.2.840.10008.1.2.4.203"
    )
}

/// Why a JPEG 2000 frame does not match its DICOM header.
pub fn check_frame(frame: &[u8], rows: usize, cols: usize, samples_per_pixel: usize) -> Result<(), String> {
    // The codestream starts with SOC (FF4F) followed by SIZ (FF51); a JP2 file wraps it in boxes.
    let at = frame
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .ok_or("JPEG 2000 frame has no codestream header (SOC followed by SIZ)")?;
    let siz = &frame[at + 4..];
    let u16_at = |i: usize| siz.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as u64);
    let u32_at = |i: usize| siz.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64);
    let short = || "JPEG 2000 SIZ marker segment is cut short".to_string();
    // Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz.
    let (xsiz, ysiz) = (u32_at(4).ok_or_else(short)?, u32_at(8).ok_or_else(short)?);
    let (xo, yo) = (u32_at(12).ok_or_else(short)?, u32_at(16).ok_or_else(short)?);
    let csiz = u16_at(36).ok_or_else(short)? as usize;
    if xo >= xsiz || yo >= ysiz {
        return Err(format!("JPEG 2000 image offset ({xo}, {yo}) is outside its size ({xsiz}, {ysiz})"));
    }
    let (w, h) = (xsiz - xo, ysiz - yo);
    if w != cols as u64 || h != rows as u64 {
        return Err(format!("JPEG 2000 image is {w}x{h} but the header says {cols}x{rows}"));
    }
    if csiz != samples_per_pixel {
        return Err(format!("JPEG 2000 image has {csiz} components; SamplesPerPixel is {samples_per_pixel}"));
    }
    for c in 0..csiz {
        // Ssiz, XRsiz, YRsiz per component, from byte 38.
        let sub = siz.get(38 + 3 * c + 1..38 + 3 * c + 3).ok_or_else(short)?;
        if sub != [1, 1] {
            return Err(format!("JPEG 2000 component {} is subsampled ({}x{}); a CT frame is not", c + 1, sub[0], sub[1]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codestream(w: u32, h: u32, xo: u32, comps: &[[u8; 3]]) -> Vec<u8> {
        let mut b = vec![0xFF, 0x4F, 0xFF, 0x51];
        b.extend_from_slice(&((38 + 3 * comps.len()) as u16).to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        for v in [w + xo, h, xo, 0, w + xo, h, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&(comps.len() as u16).to_be_bytes());
        for c in comps {
            b.extend_from_slice(c);
        }
        b
    }

    #[test]
    fn a_frame_of_the_header_size_passes() {
        assert_eq!(check_frame(&codestream(128, 96, 0, &[[15, 1, 1]]), 96, 128, 1), Ok(()));
        assert_eq!(check_frame(&codestream(128, 96, 5, &[[15, 1, 1]]), 96, 128, 1), Ok(()));
    }

    #[test]
    fn other_sizes_components_subsampling_and_cut_headers_are_refused() {
        assert!(check_frame(&codestream(130, 96, 0, &[[15, 1, 1]]), 96, 128, 1).unwrap_err().contains("130x96"));
        assert!(check_frame(&codestream(128, 96, 0, &[[15, 1, 1], [15, 1, 1]]), 96, 128, 1).unwrap_err().contains("2 components"));
        assert!(check_frame(&codestream(128, 96, 0, &[[15, 2, 1]]), 96, 128, 1).unwrap_err().contains("subsampled"));
        assert!(check_frame(&codestream(128, 96, 0, &[[15, 1, 1]])[..20], 96, 128, 1).unwrap_err().contains("cut short"));
        assert!(check_frame(b"\xFF\xD8\xFF\xE0", 96, 128, 1).unwrap_err().contains("no codestream"));
    }
}
