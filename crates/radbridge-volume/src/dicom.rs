//! DICOM: reading the per-slice (per-frame) header facts the volume needs, and decoding one
//! frame's pixels into Hounsfield units.
//!
//! Headers are read without pixel data during the folder scan; pixels are decoded later, in
//! parallel, only for the chosen series. Decoding goes through `dicom-pixeldata`, which covers
//! native (implicit/explicit little and big endian, deflated), JPEG baseline/lossless,
//! JPEG-LS (CharLS), JPEG 2000 (OpenJPEG) and RLE; 12-bit JPEG Extended, which the JPEG crate
//! does not read, goes to our own decoder (`jpeg12.rs`). Rescale, bit masking, sign and padding are
//! applied here, per frame, from the frame's own header values.

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::mem::InMemDicomObject;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::error::{Result, VolumeError};
use super::prescan;
use super::{OpenOptions, PatientFields, PatientInfo, StudyFields};

/// Header facts of one frame (one slice) of a DICOM image.
#[derive(Debug, Clone)]
pub struct SliceHeader {
    pub path: PathBuf,
    /// Frame number within the file (0 for single-frame images).
    pub frame: u32,
    pub n_frames: u32,
    pub transfer_syntax: String,
    pub sop_class: String,
    pub sop_instance_uid: Option<String>,
    pub modality: String,
    pub series_uid: Option<String>,
    pub series_description: Option<String>,
    pub series_number: Option<i64>,
    pub frame_of_reference: Option<String>,
    pub acquisition_number: Option<i64>,
    pub instance_number: Option<i64>,
    pub rows: u32,
    pub cols: u32,
    /// ImageOrientationPatient: row direction cosines then column direction cosines.
    pub iop: Option<[f64; 6]>,
    pub ipp: Option<[f64; 3]>,
    /// PixelSpacing: (row spacing = between rows, column spacing = between columns), mm.
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    pub slope: f64,
    pub intercept: f64,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub pixel_representation: u16,
    pub samples_per_pixel: u16,
    pub photometric: String,
    pub padding: Option<i64>,
    pub patient: PatientInfo,
}

/// Why a file was not taken as a DICOM image (non-DICOM files are counted, not fatal).
#[derive(Debug)]
pub enum HeaderOutcome {
    Image(Vec<SliceHeader>),
    /// A DICOM file that holds no image (DICOMDIR, structured report, ...).
    NotImage(String),
    NotDicom(String),
    /// A DICOM file refused before it was parsed further: a declared length, frame count or
    /// size that the file cannot hold or that passes a limit.
    Rejected(VolumeError),
}

/// Media Storage SOP Class of a DICOMDIR.
const DICOMDIR_SOP_CLASS: &str = "1.2.840.10008.1.3.10";

fn trim(s: &str) -> String {
    s.trim_end_matches(['\0', ' ']).trim().to_string()
}

fn get_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = trim(&obj.get(tag)?.to_str().ok()?);
    (!s.is_empty()).then_some(s)
}

fn get_f64s(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

fn get_f64(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    get_f64s(obj, tag).map(|v| v[0])
}

fn get_int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

/// An unsigned short attribute; None when absent or out of range (never wrapped).
fn get_u16(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    get_int(obj, tag).and_then(|v| u16::try_from(v).ok())
}

/// First item of a sequence attribute.
fn first_item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Look up `tag` inside functional group `group_seq` of a frame's group item, then of the
/// shared group (per-frame values win, as the standard says).
fn functional<'a, T>(
    per_frame: Option<&'a InMemDicomObject>,
    shared: Option<&'a InMemDicomObject>,
    group_seq: Tag,
    f: impl Fn(&'a InMemDicomObject) -> Option<T>,
) -> Option<T> {
    per_frame.and_then(|pf| first_item(pf, group_seq)).and_then(&f).or_else(|| shared.and_then(|s| first_item(s, group_seq)).and_then(&f))
}

fn six(v: Vec<f64>) -> Option<[f64; 6]> {
    (v.len() >= 6).then(|| [v[0], v[1], v[2], v[3], v[4], v[5]])
}
fn three(v: Vec<f64>) -> Option<[f64; 3]> {
    (v.len() >= 3).then(|| [v[0], v[1], v[2]])
}
fn two(v: Vec<f64>) -> Option<[f64; 2]> {
    (v.len() >= 2).then(|| [v[0], v[1]])
}

fn open_options() -> OpenFileOptions {
    OpenFileOptions::new().read_preamble(dicom_object::file::ReadPreamble::Auto)
}

/// Read the header of one file (everything before the pixel data) and describe each frame.
///
/// Before `dicom-object` reads anything, every declared length in the file is checked against
/// the bytes that follow it (see `prescan`), and the frame count and image size against the
/// file's length and the limits in `options`: a hostile header is refused here, naming the
/// file, before anything is allocated for it.
pub fn read_headers(path: &Path, options: &OpenOptions) -> HeaderOutcome {
    let file_len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return HeaderOutcome::NotDicom(format!("cannot read it ({e})")),
    };
    if file_len == 0 {
        return HeaderOutcome::NotDicom("empty file (0 bytes)".into());
    }
    let report = match prescan::walk(path, file_len) {
        Ok(r) => r,
        Err(e) => return HeaderOutcome::Rejected(e),
    };
    let obj = match open_options().read_until(tags::PIXEL_DATA).open_file(path) {
        Ok(o) => o,
        Err(e) => return HeaderOutcome::NotDicom(e.to_string()),
    };
    if obj.meta().media_storage_sop_class_uid().trim_end_matches('\0') == DICOMDIR_SOP_CLASS {
        return HeaderOutcome::NotImage("DICOMDIR".into());
    }
    let rows = get_int(&obj, tags::ROWS);
    let cols = get_int(&obj, tags::COLUMNS);
    let (Some(rows), Some(cols)) = (rows, cols) else {
        return HeaderOutcome::NotImage("no Rows/Columns (not an image)".into());
    };
    match check_frame_bounds(path, &obj, rows, cols, file_len, &report, options) {
        Ok((rows, cols)) => {
            let headers = headers_from_object(path, &obj, rows, cols);
            match headers.iter().find_map(|h| h.pixel_spacing.filter(|ps| !plausible_spacing(ps))) {
                Some(ps) => HeaderOutcome::Rejected(VolumeError::BadDicomHeader {
                    path: path.to_path_buf(),
                    reason: format!("PixelSpacing {}\\{} mm is not two positive sizes of at most {MAX_PIXEL_SPACING_MM} mm", ps[0], ps[1]),
                }),
                None => HeaderOutcome::Image(headers),
            }
        }
        Err(e) => HeaderOutcome::Rejected(e),
    }
}

/// Largest PixelSpacing accepted (mm): far beyond any CT, small enough that positions stay
/// finite and a preprocessing grid can be sized (the grid has its own limit).
pub const MAX_PIXEL_SPACING_MM: f64 = 10_000.0;

fn plausible_spacing(ps: &[f64; 2]) -> bool {
    ps.iter().all(|v| v.is_finite() && *v > 0.0 && *v <= MAX_PIXEL_SPACING_MM)
}

/// Rows, Columns and NumberOfFrames against the standard's ranges, the limits and what the
/// file can hold (checked arithmetic throughout).
fn check_frame_bounds(
    path: &Path,
    obj: &DefaultDicomObject,
    rows: i64,
    cols: i64,
    file_len: u64,
    report: &prescan::Report,
    options: &OpenOptions,
) -> Result<(u32, u32)> {
    let bad = |reason: String| VolumeError::BadDicomHeader { path: path.to_path_buf(), reason };
    let dim = |name: &str, v: i64| -> Result<u32> {
        match u16::try_from(v) {
            Ok(0) => Err(bad(format!("{name} is 0 (an image needs at least one row and one column)"))),
            Ok(v) => Ok(v as u32),
            Err(_) => Err(bad(format!("{name} is {v} (must be 1..65535)"))),
        }
    };
    let (rows, cols) = (dim("Rows", rows)?, dim("Columns", cols)?);
    let frames = match get_int(obj, tags::NUMBER_OF_FRAMES) {
        None => 1u64,
        Some(f) if f < 0 => return Err(bad(format!("NumberOfFrames is {f}"))),
        Some(f) => (f as u64).max(1),
    };
    if frames > options.max_frames || frames > u32::MAX as u64 {
        return Err(VolumeError::TooManyFrames { path: path.to_path_buf(), frames, limit: options.max_frames.min(u32::MAX as u64) });
    }
    let plane = rows as u64 * cols as u64;
    let voxels = plane.saturating_mul(frames);
    if voxels > options.max_voxels {
        return Err(VolumeError::TooLarge { path: path.to_path_buf(), voxels, limit: options.max_voxels });
    }
    // Every frame takes at least one byte of the file (8 for an encapsulated fragment).
    if frames > file_len {
        return Err(VolumeError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("{frames} frames declared in a file of {file_len} bytes"),
        });
    }
    let bits_allocated = get_u16(obj, tags::BITS_ALLOCATED).unwrap_or(16);
    let samples = get_u16(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1);
    match report.pixel_data {
        Some(prescan::PixelData { length: Some(len), .. }) if bits_allocated >= 8 => {
            // Native pixel data: the declared value must hold every frame.
            let need =
                voxels.checked_mul(samples as u64).and_then(|v| v.checked_mul((bits_allocated as u64).div_ceil(8))).unwrap_or(u64::MAX);
            if len < need {
                return Err(VolumeError::Truncated { path: path.to_path_buf(), what: "pixel data", expected: need, found: len });
            }
        }
        Some(prescan::PixelData { length: None, items, .. }) => {
            // Encapsulated: the basic offset table item, then at least one fragment per frame.
            let fragments = items.saturating_sub(1);
            if fragments < frames {
                return Err(VolumeError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("{frames} frames declared but the encapsulated pixel data holds {fragments} fragments"),
                });
            }
        }
        _ => {}
    }
    Ok((rows, cols))
}

fn headers_from_object(path: &Path, obj: &DefaultDicomObject, rows: u32, cols: u32) -> Vec<SliceHeader> {
    // Checked by `check_frame_bounds`: 1..=u32::MAX.
    let n_frames = get_int(obj, tags::NUMBER_OF_FRAMES).and_then(|f| u32::try_from(f).ok()).unwrap_or(1).max(1);
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: Option<&[InMemDicomObject]> = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items());
    let patient = PatientInfo {
        patient: PatientFields {
            name: get_str(obj, tags::PATIENT_NAME),
            id: get_str(obj, tags::PATIENT_ID),
            birth_date: get_str(obj, tags::PATIENT_BIRTH_DATE),
            sex: get_str(obj, tags::PATIENT_SEX),
            age: get_str(obj, tags::PATIENT_AGE),
        },
        study: StudyFields {
            date: get_str(obj, tags::STUDY_DATE),
            time: get_str(obj, tags::STUDY_TIME),
            id: get_str(obj, tags::STUDY_ID),
            accession_number: get_str(obj, tags::ACCESSION_NUMBER),
            description: get_str(obj, tags::STUDY_DESCRIPTION),
            referring_physician: get_str(obj, tags::REFERRING_PHYSICIAN_NAME),
            institution: get_str(obj, tags::INSTITUTION_NAME),
            manufacturer: get_str(obj, tags::MANUFACTURER),
            burned_in_annotation: get_str(obj, tags::BURNED_IN_ANNOTATION),
        },
        study_uid: get_str(obj, tags::STUDY_INSTANCE_UID),
        frame_of_reference_uid: get_str(obj, tags::FRAME_OF_REFERENCE_UID),
    };
    let base_iop = get_f64s(obj, tags::IMAGE_ORIENTATION_PATIENT).and_then(six);
    let base_ipp = get_f64s(obj, tags::IMAGE_POSITION_PATIENT).and_then(three);
    let base_ps = get_f64s(obj, tags::PIXEL_SPACING).and_then(two);
    let base_thick = get_f64(obj, tags::SLICE_THICKNESS);
    let base_sbs = get_f64(obj, tags::SPACING_BETWEEN_SLICES);
    let base_slope = get_f64(obj, tags::RESCALE_SLOPE);
    let base_inter = get_f64(obj, tags::RESCALE_INTERCEPT);
    let pixel_representation = get_u16(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0);
    let bits_allocated = get_u16(obj, tags::BITS_ALLOCATED).unwrap_or(16);

    (0..n_frames)
        .map(|f| {
            let pf = per_frame.and_then(|items| items.get(f as usize));
            let iop =
                functional(pf, shared, tags::PLANE_ORIENTATION_SEQUENCE, |i| get_f64s(i, tags::IMAGE_ORIENTATION_PATIENT).and_then(six))
                    .or(base_iop);
            let mut ipp =
                functional(pf, shared, tags::PLANE_POSITION_SEQUENCE, |i| get_f64s(i, tags::IMAGE_POSITION_PATIENT).and_then(three))
                    .or(base_ipp);
            let pixel_spacing =
                functional(pf, shared, tags::PIXEL_MEASURES_SEQUENCE, |i| get_f64s(i, tags::PIXEL_SPACING).and_then(two)).or(base_ps);
            let slice_thickness =
                functional(pf, shared, tags::PIXEL_MEASURES_SEQUENCE, |i| get_f64(i, tags::SLICE_THICKNESS)).or(base_thick);
            let spacing_between_slices =
                functional(pf, shared, tags::PIXEL_MEASURES_SEQUENCE, |i| get_f64(i, tags::SPACING_BETWEEN_SLICES)).or(base_sbs);
            let rescale = functional(pf, shared, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, |i| {
                Some((get_f64(i, tags::RESCALE_SLOPE)?, get_f64(i, tags::RESCALE_INTERCEPT)?))
            });
            let (slope, intercept) = rescale.unwrap_or((base_slope.filter(|s| *s != 0.0).unwrap_or(1.0), base_inter.unwrap_or(0.0)));
            // A classic multi-frame image without per-frame positions: frames are stacked along
            // the normal at SpacingBetweenSlices (or SliceThickness).
            if pf.is_none() && n_frames > 1 {
                if let (Some(p), Some(o)) = (ipp, iop) {
                    let n = super::geometry::cross([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
                    let step = spacing_between_slices.or(slice_thickness).unwrap_or(1.0);
                    ipp = Some([0, 1, 2].map(|r| p[r] + n[r] * step * f as f64));
                }
            }
            SliceHeader {
                path: path.to_path_buf(),
                frame: f,
                n_frames,
                transfer_syntax: trim(obj.meta().transfer_syntax()),
                sop_class: trim(obj.meta().media_storage_sop_class_uid()),
                sop_instance_uid: get_str(obj, tags::SOP_INSTANCE_UID),
                modality: get_str(obj, tags::MODALITY).unwrap_or_else(|| "unknown".into()),
                series_uid: get_str(obj, tags::SERIES_INSTANCE_UID),
                series_description: get_str(obj, tags::SERIES_DESCRIPTION),
                series_number: get_int(obj, tags::SERIES_NUMBER),
                frame_of_reference: get_str(obj, tags::FRAME_OF_REFERENCE_UID),
                acquisition_number: get_int(obj, tags::ACQUISITION_NUMBER),
                instance_number: get_int(obj, tags::INSTANCE_NUMBER),
                rows,
                cols,
                iop,
                ipp,
                pixel_spacing,
                slice_thickness,
                spacing_between_slices,
                slope,
                intercept,
                bits_allocated,
                bits_stored: get_u16(obj, tags::BITS_STORED).unwrap_or(bits_allocated),
                pixel_representation,
                samples_per_pixel: get_u16(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
                photometric: get_str(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
                padding: get_int(obj, tags::PIXEL_PADDING_VALUE),
                patient: patient.clone(),
            }
        })
        .collect()
}

/// Human name of a transfer syntax UID, or "unknown transfer syntax".
pub fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry.get(uid).map(|ts| ts.name().to_string()).unwrap_or_else(|| "unknown transfer syntax".to_string())
}

/// Refuse early, naming the UID, when no decoder exists for a file's transfer syntax.
pub fn check_transfer_syntax(path: &Path, uid: &str) -> Result<()> {
    match TransferSyntaxRegistry.get(uid) {
        None => Err(VolumeError::UnsupportedTransferSyntax {
            path: path.to_path_buf(),
            uid: uid.to_string(),
            name: "unknown transfer syntax".into(),
        }),
        Some(ts) if !ts.can_decode_dataset() || ts.is_unsupported_pixel_encapsulation() => {
            Err(VolumeError::UnsupportedTransferSyntax { path: path.to_path_buf(), uid: uid.to_string(), name: ts.name().to_string() })
        }
        Some(_) => Ok(()),
    }
}

/// Open a whole DICOM file (headers and pixel data). Called after the header scan read the
/// file, so a failure here means the data after the header is cut short or damaged.
pub fn open_full(path: &Path) -> Result<DefaultDicomObject> {
    // The file may have changed since the scan: check its declared lengths again.
    let len = std::fs::metadata(path).map_err(|e| VolumeError::io(path, e))?.len();
    prescan::walk(path, len)?;
    open_options().open_file(path).map_err(|e| VolumeError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("the header reads but the rest does not (file cut short or damaged): {e}"),
    })
}

const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The JPEG codestream of one frame of encapsulated pixel data: all fragments for a single
/// frame; one fragment per frame; or the basic offset table's split.
fn encapsulated_frame(obj: &DefaultDicomObject, h: &SliceHeader) -> std::result::Result<Vec<u8>, String> {
    let value = obj.get(tags::PIXEL_DATA).ok_or("no pixel data")?.value();
    let frags = value.fragments().ok_or("pixel data is not encapsulated")?;
    if h.n_frames <= 1 {
        return Ok(frags.concat());
    }
    if frags.len() == h.n_frames as usize {
        return Ok(frags[h.frame as usize].clone());
    }
    let table = value.offset_table().unwrap_or(&[]);
    if table.len() != h.n_frames as usize {
        return Err(format!("{} fragments for {} frames and no usable offset table", frags.len(), h.n_frames));
    }
    // Offsets count bytes from the first fragment's item header (8 bytes per item header).
    let (start, end) = (table[h.frame as usize] as usize, table.get(h.frame as usize + 1).map(|&e| e as usize));
    let mut pos = 0usize;
    let mut out = Vec::new();
    for f in frags {
        if pos >= start && end.is_none_or(|e| pos < e) {
            out.extend_from_slice(f);
        }
        pos += 8 + f.len();
    }
    if out.is_empty() {
        return Err(format!("offset table points outside the fragments for frame {}", h.frame));
    }
    Ok(out)
}

/// Where decoded values go: one slice, as int16 when exact, else as float32.
pub enum SliceOut<'a> {
    I16(&'a mut [i16]),
    F32(&'a mut [f32]),
}

/// Decode frame `h.frame` of `obj` into HU, writing `rows × cols` values (row-major, i fastest).
/// Returns `Ok(false)` when writing int16 and some value is not an exact int16 (the caller
/// then decodes again into float32). Also returns the number of padding voxels seen.
pub fn decode_frame(obj: &DefaultDicomObject, h: &SliceHeader, out: SliceOut<'_>, padding_hu: f64) -> Result<(bool, usize)> {
    let path = &h.path;
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(VolumeError::MissingPixelData { path: path.clone() });
    }
    if h.samples_per_pixel != 1 {
        return Err(VolumeError::UnsupportedImage {
            path: path.clone(),
            reason: format!("{} samples per pixel ({}); a CT volume needs grayscale", h.samples_per_pixel, h.photometric),
        });
    }
    check_transfer_syntax(path, &h.transfer_syntax)?;
    let decode_err = |reason: String| VolumeError::Decode {
        path: path.clone(),
        transfer_syntax: format!("{} {}", h.transfer_syntax, transfer_syntax_name(&h.transfer_syntax)),
        reason,
    };
    let n = h.rows as usize * h.cols as usize;
    // 12-bit JPEG Extended goes to our own decoder (the JPEG crate reads 8-bit DCT only);
    // everything else through dicom-pixeldata.
    let jpeg12_bytes: Vec<u8>;
    let decoded;
    let (data, bytes_per, bits_stored): (&[u8], usize, u32) = if h.transfer_syntax == JPEG_EXTENDED && h.bits_stored > 8 {
        let stream = encapsulated_frame(obj, h).map_err(decode_err)?;
        let d = super::jpeg12::decode_expecting(&stream, h.cols as usize, h.rows as usize)
            .map_err(|e| decode_err(format!("JPEG Extended: {e}")))?;
        if d.width != h.cols as usize || d.height != h.rows as usize {
            return Err(decode_err(format!("JPEG frame is {}x{} but the header says {}x{}", d.width, d.height, h.cols, h.rows)));
        }
        jpeg12_bytes = d.samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        (&jpeg12_bytes, 2, h.bits_stored as u32)
    } else {
        if h.transfer_syntax == RLE_LOSSLESS {
            // dicom-pixeldata decodes every fragment as a frame and trusts their segments.
            let value = obj.get(tags::PIXEL_DATA).map(|e| e.value());
            let frags = value.and_then(|v| v.fragments()).ok_or_else(|| decode_err("RLE pixel data is not encapsulated".into()))?;
            let bytes_per_sample = (h.bits_allocated as usize).div_ceil(8);
            for f in frags {
                super::rle::check_frame(f, h.rows as usize, h.cols as usize, h.samples_per_pixel as usize, bytes_per_sample)
                    .map_err(decode_err)?;
            }
        }
        if super::jpeg_frame::is_jpeg(&h.transfer_syntax) {
            // dicom-pixeldata copies each decoded image into a buffer sized from the header.
            let value = obj.get(tags::PIXEL_DATA).map(|e| e.value());
            let frags = value.and_then(|v| v.fragments()).ok_or_else(|| decode_err("JPEG pixel data is not encapsulated".into()))?;
            super::jpeg_frame::check_images(
                &frags.concat(),
                h.rows as usize,
                h.cols as usize,
                h.samples_per_pixel as usize,
                h.bits_allocated as usize,
            )
            .map_err(decode_err)?;
        }
        if super::j2k::is_j2k(&h.transfer_syntax) {
            // dicom-pixeldata copies every decoded sample into a buffer sized from the header.
            let frame = encapsulated_frame(obj, h).map_err(decode_err)?;
            super::j2k::check_frame(&frame, h.rows as usize, h.cols as usize, h.samples_per_pixel as usize).map_err(decode_err)?;
        }
        decoded = if h.n_frames > 1 { obj.decode_pixel_data_frame(h.frame) } else { obj.decode_pixel_data() }
            .map_err(|e| decode_err(e.to_string()))?;
        let data = decoded.frame_data(0).map_err(|e| decode_err(e.to_string()))?;
        (data, (decoded.bits_allocated() as usize).div_ceil(8), decoded.bits_stored() as u32)
    };
    if bytes_per == 0 || bytes_per > 4 {
        return Err(decode_err(format!("unsupported BitsAllocated {}", bytes_per * 8)));
    }
    if data.len() < n * bytes_per {
        return Err(VolumeError::Truncated {
            path: path.clone(),
            what: "pixel data",
            expected: (n * bytes_per) as u64,
            found: data.len() as u64,
        });
    }
    let bits_stored = bits_stored.clamp(1, 32);
    let signed = h.pixel_representation == 1;
    let mask: u64 = if bits_stored >= 32 { u32::MAX as u64 } else { (1u64 << bits_stored) - 1 };
    let stored = |idx: usize| -> i64 {
        let o = idx * bytes_per;
        let raw: u64 = match bytes_per {
            1 => data[o] as u64,
            2 => u16::from_le_bytes([data[o], data[o + 1]]) as u64,
            3 => u32::from_le_bytes([data[o], data[o + 1], data[o + 2], 0]) as u64,
            _ => u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) as u64,
        };
        let v = raw & mask;
        if signed && (v >> (bits_stored - 1)) & 1 == 1 {
            v as i64 - (1i64 << bits_stored)
        } else {
            v as i64
        }
    };
    let (slope, inter) = (h.slope, h.intercept);
    let mut pads = 0usize;
    match out {
        SliceOut::I16(dst) => {
            for (idx, d) in dst.iter_mut().enumerate().take(n) {
                let s = stored(idx);
                let hu = if Some(s) == h.padding {
                    pads += 1;
                    padding_hu
                } else {
                    s as f64 * slope + inter
                };
                if hu.fract() != 0.0 || hu < i16::MIN as f64 || hu > i16::MAX as f64 {
                    return Ok((false, pads));
                }
                *d = hu as i16;
            }
        }
        SliceOut::F32(dst) => {
            for (idx, d) in dst.iter_mut().enumerate().take(n) {
                let s = stored(idx);
                *d = if Some(s) == h.padding {
                    pads += 1;
                    padding_hu as f32
                } else {
                    (s as f64 * slope + inter) as f32
                };
            }
        }
    }
    Ok((true, pads))
}
