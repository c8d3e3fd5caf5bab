//! A check of JPEG (baseline, extended 8-bit, lossless) frames before they reach the decoder.
//!
//! dicom-pixeldata 0.10 sizes its output from Rows × Columns × frames and copies each decoded
//! JPEG image into it, so an image larger than the header says writes past the buffer and
//! panics (found by the `dicom_file` fuzz target; regression files in
//! tests/fuzz/regressions/dicom_file). Every image's frame header (SOFn) declares its size,
//! components and precision: this check walks the marker segments of each image and refuses
//! one that does not fit the DICOM header, before anything is decoded.

/// Transfer syntaxes decoded by dicom-pixeldata's JPEG adapter.
pub fn is_jpeg(transfer_syntax: &str) -> bool {
    matches!(transfer_syntax, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70")
}

/// Why the JPEG images in `data` (the pixel data's fragments, concatenated) do not fit.
pub fn check_images(data: &[u8], rows: usize, cols: usize, samples_per_pixel: usize, bits_allocated: usize) -> Result<(), String> {
    let mut pos = 0;
    let mut images = 0;
    while let Some(soi) = find_soi(data, pos) {
        images += 1;
        let (sof, end) = frame_header(data, soi + 2).map_err(|why| format!("JPEG image {images}: {why}"))?;
        let (precision, lines, samples, components) = sof;
        if lines != rows || samples != cols {
            return Err(format!("JPEG image {images} is {samples}x{lines} but the header says {cols}x{rows}"));
        }
        if components != samples_per_pixel {
            return Err(format!("JPEG image {images} has {components} components; SamplesPerPixel is {samples_per_pixel}"));
        }
        let bytes = if precision > 8 { 2 } else { 1 };
        if bytes * 8 > bits_allocated {
            return Err(format!("JPEG image {images} has {precision}-bit samples; BitsAllocated is {bits_allocated}"));
        }
        pos = end;
    }
    if images == 0 {
        return Err("no JPEG image (start-of-image marker) in the pixel data".into());
    }
    Ok(())
}

fn find_soi(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?.windows(3).position(|w| w == [0xFF, 0xD8, 0xFF]).map(|i| from + i)
}

type Sof = (usize, usize, usize, usize);

/// Walk marker segments from just after SOI to the frame header; (precision, lines, samples
/// per line, components) and the offset after that segment.
fn frame_header(data: &[u8], mut pos: usize) -> Result<(Sof, usize), String> {
    loop {
        let m = data.get(pos..pos + 2).ok_or("the stream ends before its frame header")?;
        if m[0] != 0xFF {
            return Err(format!("no marker at byte {pos} before the frame header"));
        }
        let kind = m[1];
        if kind == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        let len = data.get(pos + 2..pos + 4).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).ok_or("a marker segment is cut short")?;
        if len < 2 {
            return Err(format!("marker segment FF{kind:02X} has length {len}"));
        }
        let body = data.get(pos + 4..pos + 2 + len).ok_or("a marker segment runs past the data")?;
        let sof = matches!(kind, 0xC0..=0xCF) && !matches!(kind, 0xC4 | 0xC8 | 0xCC);
        if sof {
            if body.len() < 6 {
                return Err("the frame header is cut short".into());
            }
            let lines = u16::from_be_bytes([body[1], body[2]]) as usize;
            let samples = u16::from_be_bytes([body[3], body[4]]) as usize;
            return Ok(((body[0] as usize, lines, samples, body[5] as usize), pos + 2 + len));
        }
        if kind == 0xDA {
            return Err("scan data before any frame header".into());
        }
        pos += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(precision: u8, lines: u16, samples: u16, comps: u8) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xFF, 0xD8]; // SOI, an APP0 holding FFD8
        b.extend_from_slice(&[0xFF, 0xC3, 0x00, 8 + 3 * comps, precision]);
        b.extend_from_slice(&lines.to_be_bytes());
        b.extend_from_slice(&samples.to_be_bytes());
        b.push(comps);
        for c in 0..comps {
            b.extend_from_slice(&[c + 1, 0x11, 0]);
        }
        b.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]);
        b
    }

    #[test]
    fn images_of_the_header_size_pass() {
        assert_eq!(check_images(&image(16, 96, 128, 1), 96, 128, 1, 16), Ok(()));
        let two = [image(8, 96, 128, 1), image(8, 96, 128, 1)].concat();
        assert_eq!(check_images(&two, 96, 128, 1, 8), Ok(()));
    }

    #[test]
    fn larger_images_more_components_wider_samples_and_cut_headers_are_refused() {
        assert!(check_images(&image(8, 192, 128, 1), 96, 128, 1, 8).unwrap_err().contains("128x192"));
        let two = [image(8, 96, 128, 1), image(8, 96, 256, 1)].concat();
        assert!(check_images(&two, 96, 128, 1, 8).unwrap_err().contains("image 2"));
        assert!(check_images(&image(8, 96, 128, 3), 96, 128, 1, 8).unwrap_err().contains("3 components"));
        assert!(check_images(&image(12, 96, 128, 1), 96, 128, 1, 8).unwrap_err().contains("BitsAllocated"));
        assert!(check_images(&image(8, 96, 128, 1)[..12], 96, 128, 1, 8).is_err());
        assert!(check_images(b"no jpeg here", 96, 128, 1, 8).unwrap_err().contains("no JPEG image"));
    }
}
