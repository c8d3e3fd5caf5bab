//! Measurement commands: the page says where (voxel positions of the displayed grid, or a region
//! on a slice); the values are computed here from the displayed volume in patient space
//! (`radbridge_volume::measure`) and kept per study in the local database, so they come back
//! when the study is opened again.

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager};
use ts_rs::TS;

use super::error::{AppError, AppResult, ErrorCode};
use super::feedback::with_store;
use super::state::{blocking, lock, AppState};
use radbridge_volume::measure::{self, Region, RoiStats, SlicePlane};

/// What to measure, in voxel coordinates of the displayed (canonical LPS) grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MeasureInput {
    Distance {
        a: [f64; 3],
        b: [f64; 3],
    },
    Angle {
        a: [f64; 3],
        vertex: [f64; 3],
        b: [f64; 3],
    },
    /// An ellipse on a slice: centre and semi-axes in the slice's (u, v) voxel coordinates.
    Ellipse {
        plane: SlicePlane,
        slice: i64,
        center: [f64; 2],
        radii: [f64; 2],
    },
    Rectangle {
        plane: SlicePlane,
        slice: i64,
        a: [f64; 2],
        b: [f64; 2],
    },
}

impl MeasureInput {
    fn kind(&self) -> &'static str {
        match self {
            MeasureInput::Distance { .. } => "distance",
            MeasureInput::Angle { .. } => "angle",
            MeasureInput::Ellipse { .. } => "ellipse",
            MeasureInput::Rectangle { .. } => "rectangle",
        }
    }
}

/// A measurement with its values.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Measurement {
    #[ts(type = "number")]
    pub id: i64,
    pub input: MeasureInput,
    /// The headline value: mm (distance), degrees (angle), mean HU (regions).
    pub value: f64,
    pub unit: String,
    /// Regions: mean, SD, min, max HU, area.
    pub stats: Option<RoiStats>,
    /// One line for the list, e.g. "23.4 mm" or "mean 41.2 HU, SD 12.0, 312.5 mm²".
    pub text: String,
}

fn compute(vol: &radbridge_volume::Volume, input: &MeasureInput) -> Result<(f64, String, Option<RoiStats>), measure::MeasureError> {
    Ok(match *input {
        MeasureInput::Distance { a, b } => (measure::distance_mm(vol, a, b)?, "mm".into(), None),
        MeasureInput::Angle { a, vertex, b } => (measure::angle_deg(vol, a, vertex, b)?, "°".into(), None),
        MeasureInput::Ellipse { plane, slice, center, radii } => {
            let s = measure::region_stats(vol, plane, slice, Region::Ellipse { center, radii })?;
            (s.mean, "HU".into(), Some(s))
        }
        MeasureInput::Rectangle { plane, slice, a, b } => {
            let s = measure::region_stats(vol, plane, slice, Region::Rectangle { a, b })?;
            (s.mean, "HU".into(), Some(s))
        }
    })
}

fn text(value: f64, unit: &str, stats: Option<&RoiStats>) -> String {
    match stats {
        Some(s) => format!(
            "mean {:.1} HU, SD {:.1}, min {:.0}, max {:.0}, {:.1} mm² ({} voxels)",
            s.mean, s.sd, s.min, s.max, s.area_mm2, s.voxels
        ),
        None if unit == "mm" => format!("{value:.1} mm"),
        None => format!("{value:.1}{unit}"),
    }
}

/// The displayed volume and its study's key in the store.
fn displayed(state: &AppState) -> AppResult<(std::sync::Arc<radbridge_volume::Volume>, String)> {
    let (vol, path) = {
        let d = lock(&state.displayed);
        let d = d.as_ref().ok_or_else(|| AppError::new(ErrorCode::NoStudy, "open a CT first"))?;
        (d.volume.clone(), d.summary.path.clone())
    };
    let uid = vol.meta.patient.study_uid.clone().filter(|u| !u.is_empty());
    let key = with_store(state, |s| s.study_key(uid.as_deref(), &path))?;
    Ok((vol, key))
}

fn from_stored(m: radbridge_store::measurements::StoredMeasurement) -> Option<Measurement> {
    let input: MeasureInput = serde_json::from_value(m.geometry).ok()?;
    let stats: Option<RoiStats> = serde_json::from_value(m.value["stats"].clone()).ok();
    let value = m.value["value"].as_f64()?;
    let unit = m.value["unit"].as_str().unwrap_or_default().to_string();
    Some(Measurement { id: m.id, text: text(value, &unit, stats.as_ref()), input, value, unit, stats })
}

/// Measure on the displayed study and keep the measurement with it (off the UI thread: a
/// region's statistics and the store's write).
#[tauri::command]
pub async fn measurement_add(input: MeasureInput, app: AppHandle) -> AppResult<Measurement> {
    blocking("the measurement", move || {
        let state = app.state::<AppState>();
        let (vol, key) = displayed(&state)?;
        let (value, unit, stats) = compute(&vol, &input).map_err(|e| AppError::new(ErrorCode::BadInput, format!("measurement: {e}")))?;
        let geometry = serde_json::to_value(&input).map_err(|e| AppError::internal("measurement", e))?;
        let stored = serde_json::json!({"value": value, "unit": unit, "stats": stats});
        let m = with_store(&state, |s| s.add_measurement(&key, input.kind(), &geometry, &stored))?;
        Ok(Measurement { id: m.id, text: text(value, &unit, stats.as_ref()), input, value, unit, stats })
    })
    .await
}

/// The measurements of the displayed study, oldest first.
#[tauri::command]
pub async fn measurements_list(app: AppHandle) -> AppResult<Vec<Measurement>> {
    blocking("the measurements", move || {
        let state = app.state::<AppState>();
        let (_, key) = displayed(&state)?;
        Ok(with_store(&state, |s| s.measurements(&key))?.into_iter().filter_map(from_stored).collect())
    })
    .await
}

#[tauri::command]
pub async fn measurement_delete(id: i64, app: AppHandle) -> AppResult<()> {
    blocking("the measurement", move || {
        let state = app.state::<AppState>();
        let (_, key) = displayed(&state)?;
        if !with_store(&state, |s| s.delete_measurement(&key, id))? {
            return Err(AppError::new(ErrorCode::BadInput, format!("no measurement {id} on this study")));
        }
        Ok(())
    })
    .await
}

/// The displayed study's measurements as a report lists them (none when no study is open).
pub fn for_report(state: &AppState) -> Vec<radbridge_report::ReportMeasurement> {
    let Ok((_, key)) = displayed(state) else { return Vec::new() };
    let stored = match with_store(state, |s| s.measurements(&key)) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("measurements for the report: {}", e.message);
            return Vec::new();
        }
    };
    stored
        .into_iter()
        .filter_map(from_stored)
        .map(|m| radbridge_report::ReportMeasurement { kind: m.input.kind().to_string(), value: m.value, unit: m.unit, text: m.text })
        .collect()
}
