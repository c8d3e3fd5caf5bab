//! DICOM series: scan a folder, group files into series, order slices in space, check the
//! stack (spacing, gaps, duplicates, tilt, mixed sizes), and assemble the chosen series into a
//! `Volume`.
//!
//! Slices are ordered by ImagePositionPatient projected on the slice normal, never by
//! InstanceNumber. Nothing is resampled: an uneven stack is reported as a warning and its
//! affine uses the mean step from the first to the last slice.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::dicom::{self, HeaderOutcome, SliceHeader, SliceOut};
use super::error::{Cancelled, Result, VolumeError};
use super::geometry::{angle_deg, cross, dot, norm, sub, Affine};
use super::{display_list, OpenOptions, SourceMeta, Volume, Voxels, Warning, WarningCode, MAX_NAMED_FILES};

/// HU written for voxels equal to PixelPaddingValue (outside the scanned field of view).
pub const PADDING_HU: f64 = -1024.0;

/// What a folder scan saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanSummary {
    pub root: PathBuf,
    pub files_scanned: usize,
    /// Files that are not DICOM at all (or could not be read).
    pub non_dicom_skipped: usize,
    /// DICOM files holding no image (DICOMDIR, reports, ...).
    pub non_image_skipped: usize,
    /// DICOM files refused before decoding (cut short, a declared length or frame count the
    /// file cannot hold, a size past the limits).
    pub rejected: usize,
    /// Every file or folder the scan left out, with the reason.
    #[serde(skip)]
    pub skipped: Vec<(PathBuf, String)>,
    /// The same, by kind (for the warnings).
    #[serde(skip)]
    pub skipped_kinds: Vec<SkipKind>,
}

/// Why the scan left a path out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    NotDicom,
    NotImage,
    Rejected,
    /// A folder not entered (unreadable, or a symbolic link back into a folder already walked).
    Folder,
    /// A link to a file already scanned.
    SameFile,
}

impl ScanSummary {
    fn skip(&mut self, path: PathBuf, kind: SkipKind, reason: String) {
        match kind {
            SkipKind::NotDicom => self.non_dicom_skipped += 1,
            SkipKind::NotImage => self.non_image_skipped += 1,
            SkipKind::Rejected => self.rejected += 1,
            SkipKind::Folder | SkipKind::SameFile => {}
        }
        self.skipped.push((path, reason));
        self.skipped_kinds.push(kind);
    }

    /// The skipped paths of one kind, with their reasons.
    pub fn skipped_of(&self, kind: SkipKind) -> Vec<&(PathBuf, String)> {
        self.skipped.iter().zip(&self.skipped_kinds).filter(|(_, k)| **k == kind).map(|(s, _)| s).collect()
    }
}

/// "a (why), b (why)" for at most `MAX_NAMED_FILES` entries, then "and N more".
pub(crate) fn name_files<'a>(items: impl IntoIterator<Item = (&'a Path, Option<&'a str>)>) -> String {
    let items: Vec<_> = items.into_iter().collect();
    let mut parts: Vec<String> = items
        .iter()
        .take(MAX_NAMED_FILES)
        .map(|(p, why)| match why {
            Some(w) => format!("{} ({w})", p.display()),
            None => p.display().to_string(),
        })
        .collect();
    if items.len() > MAX_NAMED_FILES {
        parts.push(format!("and {} more", items.len() - MAX_NAMED_FILES));
    }
    parts.join("; ")
}

/// One series as the user picks it from a list.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct SeriesInfo {
    pub index: usize,
    /// SeriesInstanceUID, or empty when the files had none.
    pub uid: String,
    /// How the series was identified: "series_instance_uid", "fallback" (frame of reference +
    /// orientation + size + acquisition number), or "nifti".
    pub grouped_by: String,
    pub modality: String,
    pub description: String,
    pub slice_count: usize,
    /// [columns, rows, slices] = [nx, ny, nz].
    pub dimensions: [usize; 3],
    /// [column spacing, row spacing, slice step] in mm.
    pub spacing: [f64; 3],
    pub transfer_syntaxes: Vec<String>,
    pub warnings: Vec<Warning>,
}

impl SeriesInfo {
    pub fn from_volume(v: &Volume) -> Self {
        SeriesInfo {
            index: 0,
            uid: v.meta.series_uid.clone().unwrap_or_default(),
            grouped_by: v.meta.format.to_string(),
            modality: v.meta.modality.clone().unwrap_or_else(|| "unknown".into()),
            description: v.meta.series_description.clone().unwrap_or_default(),
            slice_count: v.dims[2],
            dimensions: v.dims,
            spacing: v.spacing(),
            transfer_syntaxes: vec![],
            warnings: v.warnings.clone(),
        }
    }
}

/// A series with its slices in spatial order.
#[derive(Debug, Clone)]
pub struct Series {
    pub info: SeriesInfo,
    pub slices: Vec<SliceHeader>,
    pub affine: Affine,
}

#[derive(Debug)]
pub struct Scan {
    pub summary: ScanSummary,
    pub series: Vec<Series>,
    /// Why the first refused file was refused (returned as the error when a single file was
    /// opened and refused).
    pub first_rejection: Option<VolumeError>,
}

/// Files under `root` (itself when it is a file), sorted, skipping hidden names. Symbolic links
/// are followed, but a folder already walked (a link cycle, or two links to one folder) and a
/// file already listed are left out and reported. Checks `cancel` at each folder.
fn walk(root: &Path, options: &OpenOptions, out: &mut Vec<PathBuf>, summary: &mut ScanSummary) -> Result<()> {
    let meta = std::fs::metadata(root).map_err(|e| VolumeError::io(root, e))?;
    if meta.is_file() {
        out.push(root.to_path_buf());
        return Ok(());
    }
    let mut seen_dirs = std::collections::HashSet::new();
    if let Ok(c) = std::fs::canonicalize(root) {
        seen_dirs.insert(c);
    }
    walk_dir(root, options, out, summary, &mut seen_dirs, true)
}

fn walk_dir(
    dir: &Path,
    options: &OpenOptions,
    out: &mut Vec<PathBuf>,
    summary: &mut ScanSummary,
    seen_dirs: &mut std::collections::HashSet<PathBuf>,
    is_root: bool,
) -> Result<()> {
    options.cancel.check()?;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_root => return Err(VolumeError::io(dir, e)),
        Err(e) => {
            summary.skip(dir.to_path_buf(), SkipKind::Folder, format!("cannot read the folder ({e})"));
            return Ok(());
        }
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let is_link = std::fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false);
        let Ok(meta) = std::fs::metadata(&p) else {
            if is_link {
                summary.skip(p, SkipKind::NotDicom, "broken symbolic link".into());
            }
            continue;
        };
        if meta.is_dir() {
            let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if !seen_dirs.insert(canonical.clone()) {
                summary.skip(
                    p,
                    SkipKind::Folder,
                    format!("a symbolic link to {}, a folder already scanned (link cycle or second link)", canonical.display()),
                );
                continue;
            }
            walk_dir(&p, options, out, summary, seen_dirs, false)?;
        } else if meta.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Scan a folder (recursively) or a single file for DICOM images and group them into series.
pub fn scan(root: &Path, options: &OpenOptions) -> Result<Scan> {
    let mut files = Vec::new();
    let mut summary = ScanSummary { root: root.to_path_buf(), ..Default::default() };
    walk(root, options, &mut files, &mut summary)?;
    // A file reached directly and through a link (or through two links) is scanned once.
    dedup_linked_files(&mut files, &mut summary);
    summary.files_scanned = files.len();
    options.progress.stage("scan", files.len() as u64);
    let cancelled = AtomicBool::new(false);
    let too_many = AtomicBool::new(false);
    let slice_count = AtomicU64::new(0);
    let outcomes: Vec<(PathBuf, HeaderOutcome)> = files
        .par_iter()
        .map(|p| {
            if options.cancel.is_cancelled() {
                cancelled.store(true, Ordering::Relaxed);
                return (p.clone(), HeaderOutcome::NotDicom("cancelled".into()));
            }
            if too_many.load(Ordering::Relaxed) {
                return (p.clone(), HeaderOutcome::NotDicom("not read: too many slices".into()));
            }
            let o = dicom::read_headers(p, options);
            if let HeaderOutcome::Image(h) = &o {
                let total = slice_count.fetch_add(h.len() as u64, Ordering::Relaxed).saturating_add(h.len() as u64);
                if total > options.max_slices {
                    too_many.store(true, Ordering::Relaxed);
                }
            }
            options.progress.advance(1);
            (p.clone(), o)
        })
        .collect();
    if cancelled.load(Ordering::Relaxed) {
        return Err(VolumeError::Cancelled(Cancelled));
    }
    if too_many.load(Ordering::Relaxed) {
        return Err(VolumeError::TooManySlices { path: root.to_path_buf(), limit: options.max_slices });
    }
    let mut slices = Vec::new();
    let mut first_rejection = None;
    for (p, o) in outcomes {
        match o {
            HeaderOutcome::Image(h) => slices.extend(h),
            HeaderOutcome::NotImage(r) => summary.skip(p, SkipKind::NotImage, r),
            HeaderOutcome::NotDicom(r) => summary.skip(p, SkipKind::NotDicom, r),
            HeaderOutcome::Rejected(e) => {
                summary.skip(p, SkipKind::Rejected, e.to_string());
                first_rejection.get_or_insert(e);
            }
        }
    }
    if !summary.skipped.is_empty() {
        tracing::info!(
            root = %root.display(),
            non_dicom = summary.non_dicom_skipped,
            non_image = summary.non_image_skipped,
            rejected = summary.rejected,
            "skipped files while scanning"
        );
    }
    let series = group(slices, &summary);
    Ok(Scan { summary, series, first_rejection })
}

/// Leave out a file that is a link to another listed file (reported, not silent).
fn dedup_linked_files(files: &mut Vec<PathBuf>, summary: &mut ScanSummary) {
    let is_link: Vec<bool> =
        files.iter().map(|f| std::fs::symlink_metadata(f).map(|m| m.file_type().is_symlink()).unwrap_or(false)).collect();
    if !is_link.contains(&true) {
        return;
    }
    let canon: Vec<Option<PathBuf>> = files.iter().map(|f| std::fs::canonicalize(f).ok()).collect();
    let mut seen = std::collections::HashMap::new();
    let mut drop = vec![false; files.len()];
    // Real files first, so a link is the one left out.
    let order = (0..files.len()).filter(|&i| !is_link[i]).chain((0..files.len()).filter(|&i| is_link[i]));
    for i in order {
        if let Some(c) = &canon[i] {
            if let Some(&first) = seen.get(c) {
                let first: usize = first;
                drop[i] = true;
                summary.skip(files[i].clone(), SkipKind::SameFile, format!("the same file as {}, already scanned", files[first].display()));
            } else {
                seen.insert(c.clone(), i);
            }
        }
    }
    let mut k = 0;
    files.retain(|_| {
        k += 1;
        !drop[k - 1]
    });
}

fn round_key(v: &[f64], decimals: i32) -> String {
    let f = 10f64.powi(decimals);
    v.iter().map(|x| format!("{}", (x * f).round() / f + 0.0)).collect::<Vec<_>>().join(",")
}

/// Group slices into series: by SeriesInstanceUID, or — when it is missing or empty — by frame
/// of reference + orientation + size + acquisition number. A UID group holding several sizes
/// or orientations is split, with a warning on each part.
fn group(slices: Vec<SliceHeader>, summary: &ScanSummary) -> Vec<Series> {
    let mut by_key: BTreeMap<(String, String), Vec<SliceHeader>> = BTreeMap::new();
    for s in slices {
        let iop = s.iop.map(|o| round_key(&o, 4)).unwrap_or_default();
        let key = match &s.series_uid {
            Some(uid) => (format!("uid:{uid}"), String::new()),
            None => (
                format!(
                    "fallback:{}|{}|{}x{}|{}",
                    s.frame_of_reference.clone().unwrap_or_default(),
                    iop,
                    s.cols,
                    s.rows,
                    s.acquisition_number.map(|a| a.to_string()).unwrap_or_default()
                ),
                String::new(),
            ),
        };
        by_key.entry(key).or_default().push(s);
    }
    let mut out = Vec::new();
    for ((key, _), group) in by_key {
        // Split a UID group by size and orientation.
        let mut parts: BTreeMap<(u32, u32, String), Vec<SliceHeader>> = BTreeMap::new();
        for s in group {
            let iop = s.iop.map(|o| round_key(&o, 3)).unwrap_or_default();
            parts.entry((s.cols, s.rows, iop)).or_default().push(s);
        }
        let n_parts = parts.len();
        let sizes: std::collections::BTreeSet<(u32, u32)> = parts.keys().map(|k| (k.0, k.1)).collect();
        let orients: std::collections::BTreeSet<&String> = parts.keys().map(|k| &k.2).collect();
        let mut split_warnings = Vec::new();
        if sizes.len() > 1 {
            split_warnings.push(Warning::new(
                WarningCode::MixedDimensions,
                format!(
                    "this series holds images of {} different sizes ({}); it was split into {} parts",
                    sizes.len(),
                    display_list(sizes.iter().map(|(c, r)| format!("{c}x{r}"))),
                    n_parts
                ),
            ));
        }
        if orients.len() > 1 {
            split_warnings.push(Warning::new(
                WarningCode::MixedOrientations,
                format!("this series holds images in {} different orientations; it was split into {} parts", orients.len(), n_parts),
            ));
        }
        for (_, slices) in parts {
            let mut s = build_series(slices, key.starts_with("uid:"));
            s.info.warnings.splice(0..0, split_warnings.iter().cloned());
            out.push(s);
        }
    }
    // Stable order: series number, then description, then UID.
    out.sort_by(|a, b| {
        let na = a.slices[0].series_number.unwrap_or(i64::MAX);
        let nb = b.slices[0].series_number.unwrap_or(i64::MAX);
        na.cmp(&nb).then(a.info.uid.cmp(&b.info.uid)).then(a.info.description.cmp(&b.info.description))
    });
    let skipped = skipped_warnings(summary);
    for (i, s) in out.iter_mut().enumerate() {
        s.info.index = i;
        s.info.warnings.extend(skipped.iter().cloned());
    }
    out
}

/// One warning per kind of left-out file, naming the files and why.
fn skipped_warnings(summary: &ScanSummary) -> Vec<Warning> {
    let mut out = Vec::new();
    let named = |kind| {
        let items = summary.skipped_of(kind);
        (items.len(), name_files(items.iter().map(|(p, why)| (p.as_path(), Some(why.as_str())))))
    };
    let (n, names) = named(SkipKind::NotDicom);
    if n > 0 {
        out.push(Warning::new(WarningCode::SkippedFiles, format!("{n} files in the folder were not DICOM and were skipped: {names}")));
    }
    // A refusal's message already names its file.
    let rejected = summary.skipped_of(SkipKind::Rejected);
    if !rejected.is_empty() {
        let mut list: Vec<String> = rejected.iter().take(MAX_NAMED_FILES).map(|(_, why)| why.clone()).collect();
        if rejected.len() > MAX_NAMED_FILES {
            list.push(format!("and {} more", rejected.len() - MAX_NAMED_FILES));
        }
        out.push(Warning::new(
            WarningCode::SkippedFiles,
            format!("{} DICOM files were refused and left out: {}", rejected.len(), list.join("; ")),
        ));
    }
    let (n, names) = named(SkipKind::Folder);
    if n > 0 {
        out.push(Warning::new(WarningCode::SkippedFiles, format!("{n} folders were not scanned: {names}")));
    }
    let (n, names) = named(SkipKind::SameFile);
    if n > 0 {
        out.push(Warning::new(WarningCode::SkippedFiles, format!("{n} links to files already scanned were skipped: {names}")));
    }
    let (n, names) = named(SkipKind::NotImage);
    if n > 0 {
        out.push(Warning::new(WarningCode::NonImageFiles, format!("{n} DICOM files hold no image and were skipped: {names}")));
    }
    out
}

/// Order slices along the normal and work out the affine and the stack warnings.
fn build_series(mut slices: Vec<SliceHeader>, by_uid: bool) -> Series {
    let mut warnings = Vec::new();
    // Orientation: two (near) unit vectors that are not parallel; anything else (a hostile or
    // broken header: huge, zero or parallel cosines) is not used, with a warning, so that no
    // position below can become infinite or NaN.
    let valid_iop = slices[0].iop.filter(|o| {
        let (row, col) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        let unit = |v: [f64; 3]| (0.5..=2.0).contains(&norm(v));
        unit(row) && unit(col) && norm(cross(row, col)) > 0.1
    });
    if slices[0].iop.is_some() && valid_iop.is_none() {
        warnings.push(Warning::new(
            WarningCode::NoSpatialTransform,
            format!(
                "ImageOrientationPatient of {} is not a pair of unit direction cosines: orientation is unknown",
                slices[0].path.display()
            ),
        ));
    }
    let iop = valid_iop.unwrap_or([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    let row = [iop[0], iop[1], iop[2]];
    let col = [iop[3], iop[4], iop[5]];
    let normal = cross(row, col);
    // Positions further than this from the origin (mm) are not a patient's.
    const MAX_POSITION_MM: f64 = 1e7;
    let sane = |p: &[f64; 3]| p.iter().all(|x| x.is_finite() && x.abs() <= MAX_POSITION_MM);
    let all_ipp = slices.iter().all(|s| s.ipp.is_some());
    let have_pos = all_ipp && slices.iter().all(|s| s.ipp.as_ref().is_some_and(sane));
    if all_ipp && !have_pos {
        let bad: Vec<&SliceHeader> = slices.iter().filter(|s| !s.ipp.as_ref().is_some_and(sane)).collect();
        warnings.push(Warning::new(
            WarningCode::NoSpatialTransform,
            format!(
                "ImagePositionPatient is not a position (beyond {MAX_POSITION_MM} mm) in {}: patient geometry is unknown; slices are kept in file order",
                name_files(bad.iter().map(|s| (s.path.as_path(), None)))
            ),
        ));
    }
    if !all_ipp || slices[0].iop.is_none() {
        warnings.push(Warning::new(
            WarningCode::NoSpatialTransform,
            "images lack ImagePositionPatient/ImageOrientationPatient: patient geometry is unknown; slices are kept in file order",
        ));
    }
    let pos = |s: &SliceHeader| s.ipp.filter(|p| sane(p)).map(|p| dot(p, normal)).unwrap_or(0.0);
    if have_pos {
        slices.sort_by(|a, b| {
            pos(a).total_cmp(&pos(b)).then(a.instance_number.cmp(&b.instance_number)).then(a.path.cmp(&b.path)).then(a.frame.cmp(&b.frame))
        });
    }
    // Duplicate positions: keep the first (lowest InstanceNumber; files cut short were already
    // left out by the scan), and name each image left out and the one kept in its place.
    if have_pos && slices.len() > 1 {
        let before = slices.len();
        let mut kept: Vec<SliceHeader> = Vec::with_capacity(before);
        let mut dropped: Vec<(PathBuf, String)> = Vec::new();
        for s in slices.drain(..) {
            if let Some(last) = kept.last() {
                if (pos(&s) - pos(last)).abs() < 1e-3 {
                    let what = |h: &SliceHeader| {
                        if h.n_frames > 1 {
                            format!("{} frame {}", h.path.display(), h.frame)
                        } else {
                            h.path.display().to_string()
                        }
                    };
                    dropped.push((s.path.clone(), format!("{:.3} mm, same as {}", pos(&s), what(last))));
                    continue;
                }
            }
            kept.push(s);
        }
        slices = kept;
        if slices.len() < before {
            warnings.push(Warning::new(
                WarningCode::DuplicatePositions,
                format!(
                    "{} images share a slice position with another image and were left out (kept the lowest InstanceNumber at each position): {}",
                    before - slices.len(),
                    name_files(dropped.iter().map(|(p, why)| (p.as_path(), Some(why.as_str()))))
                ),
            ));
        }
    }
    let n = slices.len();
    let ps = slices[0].pixel_spacing.unwrap_or([1.0, 1.0]);
    // Column 0 steps along a row (next column): row direction × column spacing (PixelSpacing[1]).
    let col0 = row.map(|v| v * ps[1]);
    let col1 = col.map(|v| v * ps[0]);
    let origin = slices[0].ipp.filter(|p| sane(p)).unwrap_or([0.0; 3]);
    let col2 = if n > 1 && have_pos {
        let last = slices[n - 1].ipp.unwrap_or(origin);
        sub(last, origin).map(|v| v / (n - 1) as f64)
    } else {
        let step = slices[0].spacing_between_slices.or(slices[0].slice_thickness).filter(|t| *t > 0.0).unwrap_or(1.0);
        normal.map(|v| v * step)
    };
    if n == 1 {
        warnings.push(Warning::new(WarningCode::SingleSlice, "a single image: the slice step is taken from SliceThickness"));
    }
    if n > 1 && have_pos {
        stack_warnings(&slices, normal, col2, &mut warnings);
    }
    // Rescale differing between slices is legal (it is applied per slice) but worth knowing.
    let rescales: std::collections::BTreeSet<String> = slices.iter().map(|s| format!("{}/{}", s.slope, s.intercept)).collect();
    if rescales.len() > 1 {
        warnings.push(Warning::new(
            WarningCode::MixedRescale,
            format!("rescale slope/intercept differ between slices ({} pairs); applied per slice", rescales.len()),
        ));
    }
    let mut ts: Vec<String> = slices.iter().map(|s| s.transfer_syntax.clone()).collect();
    ts.sort();
    ts.dedup();
    let first = &slices[0];
    let info = SeriesInfo {
        index: 0,
        uid: first.series_uid.clone().unwrap_or_default(),
        grouped_by: if by_uid { "series_instance_uid".into() } else { "fallback".into() },
        modality: first.modality.clone(),
        description: first.series_description.clone().unwrap_or_default(),
        slice_count: n,
        dimensions: [first.cols as usize, first.rows as usize, n],
        spacing: [ps[1], ps[0], norm(col2)],
        transfer_syntaxes: ts,
        warnings,
    };
    Series { info, slices, affine: Affine::from_columns([col0, col1, col2], origin) }
}

fn stack_warnings(slices: &[SliceHeader], normal: [f64; 3], col2: [f64; 3], warnings: &mut Vec<Warning>) {
    let positions: Vec<f64> = slices.iter().map(|s| dot(s.ipp.unwrap_or([0.0; 3]), normal)).collect();
    let mut diffs: Vec<f64> = positions.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted = diffs.clone();
    sorted.sort_by(f64::total_cmp);
    let Some(&median) = sorted.get(sorted.len() / 2) else { return };
    let tol = (0.01 * median).max(0.01);
    // Gaps that are whole multiples of the usual step: missing slices.
    let mut missing = 0usize;
    let mut gap_at = Vec::new();
    for (i, d) in diffs.iter().enumerate() {
        if *d > 1.5 * median {
            let k = (d / median).round();
            if (d - k * median).abs() <= tol * k {
                missing = missing.saturating_add((k as usize).saturating_sub(1));
                gap_at.push(format!("{:.2} mm after slice {}", d, i));
            }
        }
    }
    if missing > 0 {
        warnings.push(Warning::new(
            WarningCode::MissingSlices,
            format!("about {missing} slices appear to be missing ({}); the usual step is {:.3} mm", gap_at.join("; "), median),
        ));
    }
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    if max - min > tol {
        diffs.dedup_by(|a, b| (*a - *b).abs() <= tol);
        warnings.push(Warning::new(
            WarningCode::UnevenSpacing,
            format!(
                "slice spacing is uneven: steps range from {:.3} to {:.3} mm (median {:.3}); the volume uses the mean step {:.3} mm without resampling, so distances along the slice axis are approximate",
                min,
                max,
                median,
                norm(col2)
            ),
        ));
    }
    // Gantry tilt: the stack direction is not the slice normal.
    let tilt = angle_deg(col2, normal);
    let tilt = tilt.min(180.0 - tilt);
    if tilt > 0.1 {
        warnings.push(Warning::new(
            WarningCode::GantryTilt,
            format!("gantry tilt of {tilt:.2}°: slices are sheared along the stack; the affine keeps the true positions (no resampling)"),
        ));
    }
}

/// Pick a series: by 0-based index or SeriesInstanceUID; default the CT series with the most
/// slices (any series with the most slices when none is CT).
pub fn choose(scan: &Scan, root: &Path, selector: Option<&str>) -> Result<usize> {
    let list = || {
        display_list(scan.series.iter().map(|s| {
            format!(
                "{}: {} {} ({} slices)",
                s.info.index,
                s.info.modality,
                if s.info.uid.is_empty() { "(no UID)" } else { &s.info.uid },
                s.info.slice_count
            )
        }))
    };
    if let Some(sel) = selector {
        if let Ok(i) = sel.parse::<usize>() {
            if i < scan.series.len() {
                return Ok(i);
            }
        }
        return scan.series.iter().position(|s| s.info.uid == sel).ok_or_else(|| VolumeError::SeriesNotFound {
            path: root.to_path_buf(),
            selector: sel.to_string(),
            available: list(),
        });
    }
    let best = scan
        .series
        .iter()
        .max_by_key(|s| (s.info.modality == "CT", s.info.slice_count, std::cmp::Reverse(s.info.index)))
        .map(|s| s.info.index)
        .unwrap_or(0);
    Ok(best)
}

thread_local! {
    /// The last file opened by this worker thread: multi-frame files are opened once.
    static LAST_OBJECT: RefCell<Option<(PathBuf, Arc<dicom_object::DefaultDicomObject>)>> = const { RefCell::new(None) };
}

fn object_for(path: &Path) -> Result<Arc<dicom_object::DefaultDicomObject>> {
    LAST_OBJECT.with(|cell| {
        if let Some((p, o)) = cell.borrow().as_ref() {
            if p == path {
                return Ok(o.clone());
            }
        }
        let o = Arc::new(dicom::open_full(path)?);
        *cell.borrow_mut() = Some((path.to_path_buf(), o.clone()));
        Ok(o)
    })
}

fn clear_cache() {
    rayon::broadcast(|_| LAST_OBJECT.with(|c| *c.borrow_mut() = None));
    LAST_OBJECT.with(|c| *c.borrow_mut() = None);
}

/// Decode series `index` into a volume (slices decoded in parallel).
pub fn load(scan: &Scan, index: usize, root: &Path, options: &OpenOptions) -> Result<Volume> {
    let series = &scan.series[index];
    let first = &series.slices[0];
    if !options.any_modality && series.info.modality != "CT" {
        return Err(VolumeError::WrongModality { path: first.path.clone(), modality: series.info.modality.clone() });
    }
    let [nx, ny, nz] = series.info.dimensions;
    let voxels = (nx as u64).checked_mul(ny as u64).and_then(|p| p.checked_mul(nz as u64)).unwrap_or(u64::MAX);
    if voxels > options.max_voxels {
        return Err(VolumeError::TooLarge { path: root.to_path_buf(), voxels, limit: options.max_voxels });
    }
    if nx == 0 || ny == 0 || nz == 0 {
        // The scan refuses Rows or Columns of 0; kept as a guard (chunks of 0 would panic).
        return Err(VolumeError::BadDicomHeader { path: first.path.clone(), reason: format!("image size {nx}x{ny}x{nz}") });
    }
    let total =
        usize::try_from(voxels).map_err(|_| VolumeError::TooLarge { path: root.to_path_buf(), voxels, limit: options.max_voxels })?;
    for s in &series.slices {
        dicom::check_transfer_syntax(&s.path, &s.transfer_syntax)?;
    }
    let plane = nx * ny;
    options.progress.stage("decode", nz as u64);
    let pads = AtomicUsize::new(0);
    let decode_into = |out: Voxels| -> Result<(Voxels, bool)> {
        let exact = AtomicBool::new(true);
        let run = |k: usize, dst: SliceOut<'_>| -> Result<()> {
            if options.cancel.is_cancelled() {
                return Err(VolumeError::Cancelled(Cancelled));
            }
            let h = &series.slices[k];
            let obj = object_for(&h.path)?;
            let (ok, p) = dicom::decode_frame(&obj, h, dst, PADDING_HU)?;
            if !ok {
                exact.store(false, Ordering::Relaxed);
            }
            pads.fetch_add(p, Ordering::Relaxed);
            options.progress.advance(1);
            Ok(())
        };
        let out = match out {
            Voxels::I16(mut buf) => {
                buf.par_chunks_mut(plane).enumerate().try_for_each(|(k, d)| {
                    if !exact.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    run(k, SliceOut::I16(d))
                })?;
                Voxels::I16(buf)
            }
            Voxels::F32(mut buf) => {
                buf.par_chunks_mut(plane).enumerate().try_for_each(|(k, d)| run(k, SliceOut::F32(d)))?;
                Voxels::F32(buf)
            }
        };
        Ok((out, exact.load(Ordering::Relaxed)))
    };
    let result = decode_into(Voxels::I16(vec![0i16; total]));
    let result = match result {
        Ok((v, true)) => Ok(v),
        Ok((_, false)) => {
            // Some value is not an exact int16 (fractional slope, wide range): decode as float32.
            pads.store(0, Ordering::Relaxed);
            options.progress.stage("decode (float32)", nz as u64);
            decode_into(Voxels::F32(vec![0f32; total])).map(|(v, _)| v)
        }
        Err(e) => Err(e),
    };
    clear_cache();
    let voxels = result?;
    let mut warnings = series.info.warnings.clone();
    let pads = pads.load(Ordering::Relaxed);
    if pads > 0 {
        warnings.push(Warning::new(
            WarningCode::PaddingValues,
            format!("{pads} voxels hold the PixelPaddingValue (outside the scanned area) and read as {PADDING_HU} HU"),
        ));
    }
    let others: Vec<&Series> = scan.series.iter().filter(|s| s.info.index != series.info.index).collect();
    if !others.is_empty() {
        let mut files: Vec<(&Path, String)> = Vec::new();
        for o in &others {
            let mut last: Option<&Path> = None;
            for sl in &o.slices {
                if last != Some(sl.path.as_path()) {
                    files.push((sl.path.as_path(), format!("series {}", o.info.index)));
                    last = Some(sl.path.as_path());
                }
            }
        }
        warnings.push(Warning::new(
            WarningCode::OtherSeries,
            format!(
                "{} files of {} other series were not loaded (pick one with --series or in the series list): {}",
                files.len(),
                others.len(),
                name_files(files.iter().map(|(p, why)| (*p, Some(why.as_str()))))
            ),
        ));
    }
    if series.info.modality != "CT" {
        warnings.push(Warning::new(
            WarningCode::NotCt,
            format!("modality is {}, not CT: values are not Hounsfield units", series.info.modality),
        ));
    }
    let files: Vec<PathBuf> = {
        let mut f: Vec<PathBuf> = series.slices.iter().map(|s| s.path.clone()).collect();
        f.dedup();
        f
    };
    Ok(Volume {
        dims: series.info.dimensions,
        voxels,
        affine: series.affine,
        meta: SourceMeta {
            path: root.to_path_buf(),
            format: super::SourceFormat::Dicom,
            format_detail: display_list(series.info.transfer_syntaxes.iter().map(|t| format!("{t} ({})", dicom::transfer_syntax_name(t)))),
            modality: Some(series.info.modality.clone()),
            series_uid: first.series_uid.clone(),
            series_description: first.series_description.clone(),
            files,
            padding_voxels: pads,
            patient: first.patient.clone(),
            instances: {
                let mut v: Vec<super::InstanceUids> = series
                    .slices
                    .iter()
                    .filter_map(|s| {
                        s.sop_instance_uid
                            .as_ref()
                            .map(|u| super::InstanceUids { sop_class_uid: s.sop_class.clone(), sop_instance_uid: u.clone() })
                    })
                    .collect();
                v.dedup();
                v
            },
        },
        warnings,
    })
}
