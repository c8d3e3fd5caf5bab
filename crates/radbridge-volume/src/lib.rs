//! CT volumes: one `Volume` type for everything downstream (voxels in Hounsfield units, the
//! voxel-to-patient affine in LPS millimetres, where it came from, and what looked wrong while
//! loading it).
//!
//! `open` takes a DICOM folder or file, or a NIfTI file, and returns the chosen series' volume
//! together with the list of series found so a user can pick another one.

pub mod atomic;
pub mod dicom;
pub mod error;
pub mod geometry;
#[cfg(test)]
mod hostile_tests;
mod j2k;
pub mod jpeg12;
mod jpeg_frame;
pub mod measure;
pub mod nifti;
mod prescan;
mod rle;
pub mod series;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use error::{Cancelled, Result, VolumeError};
pub use geometry::Affine;
pub use series::{ScanSummary, SeriesInfo};

/// Voxel values in Hounsfield units (or the source's units for non-CT data). Stored as int16
/// when every value is an exact int16, otherwise as float32.
#[derive(Debug, Clone, PartialEq)]
pub enum Voxels {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

impl Voxels {
    pub fn len(&self) -> usize {
        match self {
            Voxels::I16(v) => v.len(),
            Voxels::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the voxel buffer.
    pub fn byte_len(&self) -> usize {
        match self {
            Voxels::I16(v) => v.len() * 2,
            Voxels::F32(v) => v.len() * 4,
        }
    }

    pub fn dtype(&self) -> &'static str {
        match self {
            Voxels::I16(_) => "int16",
            Voxels::F32(_) => "float32",
        }
    }

    #[inline]
    pub fn get_f32(&self, idx: usize) -> f32 {
        match self {
            Voxels::I16(v) => v[idx] as f32,
            Voxels::F32(v) => v[idx],
        }
    }

    /// All values as f32 (a copy).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Voxels::I16(v) => v.iter().map(|&x| x as f32).collect(),
            Voxels::F32(v) => v.clone(),
        }
    }

    /// (min, max) over finite values; None when empty.
    pub fn range(&self) -> Option<(f32, f32)> {
        use rayon::prelude::*;
        let fold = |a: (f32, f32), b: (f32, f32)| (a.0.min(b.0), a.1.max(b.1));
        let id = || (f32::INFINITY, f32::NEG_INFINITY);
        let r = match self {
            Voxels::I16(v) => v.par_iter().map(|&x| (x as f32, x as f32)).reduce(id, fold),
            Voxels::F32(v) => v.par_iter().filter(|x| x.is_finite()).map(|&x| (x, x)).reduce(id, fold),
        };
        (r.0 <= r.1).then_some(r)
    }
}

/// Something noticed while loading that a reader of the images should know. Never hidden.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Warning {
    pub code: WarningCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    UnevenSpacing,
    MissingSlices,
    DuplicatePositions,
    GantryTilt,
    MixedDimensions,
    MixedOrientations,
    MixedRescale,
    SkippedFiles,
    NotCt,
    FourDimensional,
    NoSpatialTransform,
    QformSformMismatch,
    PaddingValues,
    SingleSlice,
    NonFiniteValues,
    /// DICOM files without an image (DICOMDIR, reports, ...), named.
    NonImageFiles,
    /// Images of the folder that belong to other series than the one loaded.
    OtherSeries,
}

impl Warning {
    pub fn new(code: WarningCode, message: impl Into<String>) -> Self {
        Warning { code, message: message.into() }
    }
}

/// The file format a volume was read from. Serialized in lowercase ("dicom", "nifti",
/// "heatmap"): the strings of `inspect --json`, `diagnose --json` and the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Dicom,
    /// NIfTI-1 or NIfTI-2 (also the default: a volume built in memory has no DICOM headers).
    #[default]
    Nifti,
    /// A heat map computed over a CT (its grid and affine, not a file).
    Heatmap,
}

impl SourceFormat {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Dicom => "dicom",
            SourceFormat::Nifti => "nifti",
            SourceFormat::Heatmap => "heatmap",
        }
    }

    /// DICOM for a path that is not a NIfTI file name (a folder or a DICOM file), else NIfTI.
    pub fn of_path(path: &Path) -> SourceFormat {
        if is_nifti_path(path) {
            SourceFormat::Nifti
        } else {
            SourceFormat::Dicom
        }
    }
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a volume came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceMeta {
    /// The path the user opened (folder or file).
    pub path: PathBuf,
    pub format: SourceFormat,
    /// e.g. "NIfTI-1", "NIfTI-2", or the DICOM transfer syntax names in the series.
    pub format_detail: String,
    pub modality: Option<String>,
    pub series_uid: Option<String>,
    pub series_description: Option<String>,
    /// Files that make up the volume (one for NIfTI, one per slice or per multi-frame file).
    pub files: Vec<PathBuf>,
    /// Voxels that held the DICOM PixelPaddingValue (set to -1024 HU).
    pub padding_voxels: usize,
    /// Identifying fields, kept only in memory for an export the user asks for; never logged
    /// or printed by default.
    #[serde(skip)]
    pub patient: PatientInfo,
    /// SOP class and instance UIDs of the files of a DICOM series, in slice order (empty for
    /// NIfTI and for anonymised files without UIDs).
    #[serde(skip)]
    pub instances: Vec<InstanceUids>,
}

/// The identifying DICOM fields of a volume's source: patient, study and the study-level
/// UIDs. Empty for NIfTI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientInfo {
    pub patient: PatientFields,
    pub study: StudyFields,
    pub study_uid: Option<String>,
    pub frame_of_reference_uid: Option<String>,
}

/// The patient of a study (DICOM PatientName, PatientID, PatientBirthDate, PatientSex,
/// PatientAge), as read. The one patient record of the workspace: the diagnosis' source and
/// the report use it too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PatientFields {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub birth_date: Option<String>,
    #[serde(default)]
    pub sex: Option<String>,
    #[serde(default)]
    pub age: Option<String>,
}

/// The study (DICOM StudyDate, StudyTime, StudyID, AccessionNumber, StudyDescription,
/// ReferringPhysicianName, InstitutionName, Manufacturer, and the series' BurnedInAnnotation),
/// as read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct StudyFields {
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub accession_number: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub referring_physician: Option<String>,
    #[serde(default)]
    pub institution: Option<String>,
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// BurnedInAnnotation (0028,0301) of the series: "YES" when the pixels carry identifying
    /// text, which a de-identified export must not show. Absent in JSON written before it
    /// was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub burned_in_annotation: Option<String>,
}

/// One DICOM instance of a loaded series (for references to the source, e.g. in a DICOM SR).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct InstanceUids {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// Voxels + voxel-to-patient affine (LPS, mm) + source metadata + warnings.
///
/// Layout: `dims = [nx, ny, nz]`, flat index `i + nx * (j + ny * k)` (i fastest), matching
/// NIfTI on disk and DICOM rows within a slice (i = column, j = row, k = slice).
#[derive(Debug, Clone)]
pub struct Volume {
    pub dims: [usize; 3],
    pub voxels: Voxels,
    pub affine: Affine,
    pub meta: SourceMeta,
    pub warnings: Vec<Warning>,
}

impl Volume {
    pub fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn spacing(&self) -> [f64; 3] {
        self.affine.spacing()
    }

    /// Orientation letters of the voxel axes, e.g. "LPS".
    pub fn orientation(&self) -> String {
        self.affine.axcodes_string()
    }

    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }

    /// This volume with its axes permuted and flipped so that axis 0 points to the patient's
    /// left, axis 1 posterior and axis 2 superior ("LPS"), the order the viewer and the models
    /// use. The world position of every voxel is unchanged; no interpolation happens. Borrows
    /// when the volume is already in that order.
    pub fn canonical(&self) -> std::borrow::Cow<'_, Volume> {
        match self.affine.canonical_plan(self.dims) {
            None => std::borrow::Cow::Borrowed(self),
            Some(plan) => std::borrow::Cow::Owned(Volume {
                dims: plan.new_dims,
                voxels: match &self.voxels {
                    Voxels::I16(v) => Voxels::I16(plan.apply(v, self.dims)),
                    Voxels::F32(v) => Voxels::F32(plan.apply(v, self.dims)),
                },
                affine: plan.affine,
                meta: self.meta.clone(),
                warnings: self.warnings.clone(),
            }),
        }
    }

    /// `canonical`, consuming the volume (no copy when it is already canonical).
    pub fn into_canonical(self) -> Volume {
        if self.affine.canonical_plan(self.dims).is_none() {
            return self;
        }
        self.canonical().into_owned()
    }
}

/// Progress of a long load, reported as (done, total) units of work with a stage name.
pub trait Progress: Send + Sync {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

/// A no-op progress sink.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Cooperative cancellation shared between the caller and the loader.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// The flag itself, for code that polls an `AtomicBool` (the DIMSE layer).
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.0
    }
    /// `Err(Cancelled)` once cancelled: `token.check()?` between the stages of a long job.
    pub fn check(&self) -> std::result::Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Default voxel limit: 2^31 voxels (4 GiB as int16).
pub const DEFAULT_MAX_VOXELS: u64 = 1 << 31;

/// Default limit on the frames one DICOM file may declare (NumberOfFrames). Enhanced CT files
/// hold a few thousand frames at most.
pub const DEFAULT_MAX_FRAMES: u64 = 1 << 16;

/// Default limit on the slices (frames of all files) one folder scan may collect.
pub const DEFAULT_MAX_SLICES: u64 = 1 << 18;

/// How many file names one warning lists before it says how many more there are.
pub const MAX_NAMED_FILES: usize = 20;

/// How to open a path.
#[derive(Clone)]
pub struct OpenOptions {
    /// Series to load when a folder holds several: a 0-based index into the series list or
    /// a SeriesInstanceUID. Default: the CT series with the most slices.
    pub series: Option<String>,
    /// Load non-CT modalities too (otherwise they are refused with `WrongModality`).
    pub any_modality: bool,
    /// Refuse volumes with more voxels than this (also any single DICOM file whose declared
    /// frames hold more, checked while scanning, before anything is allocated).
    pub max_voxels: u64,
    /// Refuse (skip, with a warning naming it) a DICOM file declaring more frames than this.
    pub max_frames: u64,
    /// Stop a folder scan that would collect more slices (frames of all files) than this.
    pub max_slices: u64,
    pub cancel: CancelToken,
    pub progress: Arc<dyn Progress>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            series: None,
            any_modality: false,
            max_voxels: DEFAULT_MAX_VOXELS,
            max_frames: DEFAULT_MAX_FRAMES,
            max_slices: DEFAULT_MAX_SLICES,
            cancel: CancelToken::default(),
            progress: Arc::new(NoProgress),
        }
    }
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("series", &self.series)
            .field("any_modality", &self.any_modality)
            .field("max_voxels", &self.max_voxels)
            .field("max_frames", &self.max_frames)
            .field("max_slices", &self.max_slices)
            .finish()
    }
}

/// The result of opening a path: the chosen volume and what else was found.
#[derive(Debug)]
pub struct Loaded {
    pub volume: Volume,
    pub series: Vec<SeriesInfo>,
    /// Index of `volume` in `series`.
    pub chosen: usize,
    pub scan: ScanSummary,
}

/// Is this file a NIfTI file (by name)?
pub fn is_nifti_path(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Open a DICOM folder, a single DICOM file, or a NIfTI file.
pub fn open(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Loaded> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| VolumeError::io(path, e))?;
    if meta.is_file() && is_nifti_path(path) {
        let volume = nifti::read(path, options)?;
        let info = SeriesInfo::from_volume(&volume);
        return Ok(Loaded {
            volume,
            series: vec![info],
            chosen: 0,
            scan: ScanSummary { root: path.to_path_buf(), files_scanned: 1, ..Default::default() },
        });
    }
    if meta.is_file() && meta.len() == 0 {
        return Err(VolumeError::EmptyFile { path: path.to_path_buf() });
    }
    let scan = series::scan(path, options)?;
    if scan.series.is_empty() {
        // Images were found but refused (cut short, past a limit): say why, naming the first.
        if let Some(e) = scan.first_rejection {
            return Err(e);
        }
        // A single file that was not DICOM: say why it was refused, naming it.
        if meta.is_file() {
            if let Some((p, reason)) = scan.summary.skipped.first() {
                return Err(VolumeError::NotDicom { path: p.clone(), reason: reason.clone() });
            }
        }
        return Err(VolumeError::NoImages {
            path: path.to_path_buf(),
            scanned: scan.summary.files_scanned,
            skipped: scan.summary.non_dicom_skipped + scan.summary.rejected,
        });
    }
    let chosen = series::choose(&scan, path, options.series.as_deref())?;
    let volume = series::load(&scan, chosen, path, options)?;
    let infos = scan.series.iter().map(|s| s.info.clone()).collect();
    Ok(Loaded { volume, series: infos, chosen, scan: scan.summary })
}

/// Path display helper for messages.
pub(crate) fn display_list(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_format_strings() {
        for (f, name) in [(SourceFormat::Dicom, "dicom"), (SourceFormat::Nifti, "nifti"), (SourceFormat::Heatmap, "heatmap")] {
            assert_eq!(serde_json::to_value(f).unwrap(), serde_json::json!(name));
            assert_eq!(serde_json::from_value::<SourceFormat>(serde_json::json!(name)).unwrap(), f);
            assert_eq!(f.to_string(), name);
        }
        assert!(serde_json::from_value::<SourceFormat>(serde_json::json!("DICOM")).is_err());
        assert_eq!(SourceFormat::of_path(Path::new("/x/ct.nii.gz")), SourceFormat::Nifti);
        assert_eq!(SourceFormat::of_path(Path::new("/x/series")), SourceFormat::Dicom);
    }
}
