//! What the window holds: the loaded volume in display order, and the path given at start.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::volume::{SeriesInfo, Warning};

/// The loaded volume, reoriented to canonical LPS, as int16 HU for display.
pub struct Displayed {
    pub summary: VolumeSummary,
    pub voxels: Arc<Vec<i16>>,
}

/// What the UI needs to draw and label a volume (the voxels come separately, as binary).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeSummary {
    pub path: String,
    pub format: String,
    pub format_detail: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    /// Display grid (canonical LPS: axis 0 → patient left, 1 → posterior, 2 → superior).
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub orientation: String,
    /// Orientation letters of the file as stored, before reorientation.
    pub source_orientation: String,
    pub affine_lps: [[f64; 4]; 4],
    pub hu_min: f32,
    pub hu_max: f32,
    pub series: Vec<SeriesInfo>,
    pub chosen: usize,
    pub files_scanned: usize,
    pub non_dicom_skipped: usize,
    pub warnings: Vec<Warning>,
    /// Bumped on every load so the UI never mixes a new summary with old voxels.
    pub generation: u64,
}

pub struct AppState {
    pub initial: Option<PathBuf>,
    pub displayed: Mutex<Option<Displayed>>,
    pub generation: Mutex<u64>,
}

impl AppState {
    pub fn new(initial: Option<PathBuf>) -> Self {
        AppState { initial, displayed: Mutex::new(None), generation: Mutex::new(0) }
    }
}
