//! The `volume://localhost/…` scheme: binary data for the UI, never JSON arrays.
//! - `voxels`: the displayed volume as raw little-endian int16 (canonical LPS, i fastest).
//! - `slice/<k>`: one axial plane of it (k along the superior axis), for a first paint before
//!   the whole volume has arrived.
//! - `heatmap/<id>`: a heat map from `finding_heatmap`, as `u32 n` + n bytes of JSON metadata
//!   (dims, step, min, max, peak) padded to 4 bytes + uint8 voxels (0..255 between min and
//!   max), subsampled in-plane to at most 256² (the map is smooth: it comes from the patch grid).

use std::sync::Arc;

use serde_json::json;
use tauri::http::{Request, Response, StatusCode};
use tauri::{Manager, Runtime, UriSchemeContext, UriSchemeResponder};

use super::state::{lock, AppState};
use radbridge_volume::{self as volume, OpenOptions, Voxels};

fn i16_of(v: f32) -> i16 {
    v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

fn plain(status: StatusCode, msg: String) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "text/plain")
        .header("Access-Control-Allow-Origin", "*")
        .body(msg.into_bytes())
        .unwrap()
}

fn binary(body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/octet-stream")
        .header("Access-Control-Allow-Origin", "*")
        .body(body)
        .unwrap()
}

/// Encode a heat map file for the UI (see the module docs).
pub fn encode_heatmap(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let vol = volume::open(path, &OpenOptions { any_modality: true, ..Default::default() })?.volume.into_canonical();
    let [nx, ny, nz] = vol.dims;
    let values: Vec<f32> = match vol.voxels {
        Voxels::F32(v) => v,
        Voxels::I16(v) => v.iter().map(|&x| x as f32).collect(),
    };
    let (mut lo, mut hi, mut peak) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
    for (n, &v) in values.iter().enumerate() {
        if v.is_finite() {
            lo = lo.min(v);
            if v > hi {
                hi = v;
                peak = n;
            }
        }
    }
    if !lo.is_finite() {
        anyhow::bail!("{}: the heat map has no finite value", path.display());
    }
    let step = if nx.max(ny) > 256 { nx.max(ny).div_ceil(256) } else { 1 };
    let (mx, my) = (nx.div_ceil(step), ny.div_ceil(step));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let meta = json!({
        "dims": [mx, my, nz],
        "step": [step, step, 1],
        "min": lo,
        "max": hi,
        "peak": [peak % nx, (peak / nx) % ny, peak / (nx * ny)],
    })
    .to_string();
    let mut body = Vec::with_capacity(8 + meta.len() + mx * my * nz);
    body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    body.extend_from_slice(meta.as_bytes());
    while body.len() % 4 != 0 {
        body.push(b' ');
    }
    for k in 0..nz {
        for j in (0..ny).step_by(step) {
            for i in (0..nx).step_by(step) {
                let v = values[(k * ny + j) * nx + i];
                body.push(if v.is_finite() { (((v - lo) / span) * 255.0).round().clamp(0.0, 255.0) as u8 } else { 0 });
            }
        }
    }
    Ok(body)
}

pub fn handle<R: Runtime>(ctx: UriSchemeContext<'_, R>, request: Request<Vec<u8>>, responder: UriSchemeResponder) {
    let app = ctx.app_handle().clone();
    std::thread::spawn(move || {
        let state = app.state::<AppState>();
        let path = request.uri().path().trim_start_matches('/').to_string();
        let parts: Vec<&str> = path.split('/').collect();
        let resp = match parts.as_slice() {
            ["voxels"] => {
                let vol = lock(&state.displayed).as_ref().map(|d| d.volume.clone());
                match vol {
                    Some(v) => {
                        let mut body = Vec::with_capacity(v.voxel_count() * 2);
                        match &v.voxels {
                            Voxels::I16(x) => x.iter().for_each(|s| body.extend_from_slice(&s.to_le_bytes())),
                            Voxels::F32(x) => x.iter().for_each(|s| body.extend_from_slice(&i16_of(*s).to_le_bytes())),
                        }
                        binary(body)
                    }
                    None => plain(StatusCode::NOT_FOUND, "no volume loaded".into()),
                }
            }
            ["slice", k] => {
                let vol = lock(&state.displayed).as_ref().map(|d| d.volume.clone());
                match (vol, k.parse::<usize>()) {
                    (Some(v), Ok(k)) if k < v.dims[2] => {
                        let n = v.dims[0] * v.dims[1];
                        let mut body = Vec::with_capacity(n * 2);
                        match &v.voxels {
                            Voxels::I16(x) => x[k * n..(k + 1) * n].iter().for_each(|s| body.extend_from_slice(&s.to_le_bytes())),
                            Voxels::F32(x) => x[k * n..(k + 1) * n].iter().for_each(|s| body.extend_from_slice(&i16_of(*s).to_le_bytes())),
                        }
                        binary(body)
                    }
                    (None, _) => plain(StatusCode::NOT_FOUND, "no volume loaded".into()),
                    _ => plain(StatusCode::BAD_REQUEST, format!("no slice {k}")),
                }
            }
            ["heatmap", id] => {
                let id: Option<usize> = id.parse().ok();
                let (cached, file) = {
                    let run = lock(&state.run);
                    (id.and_then(|i| run.served.get(&i).cloned()), id.and_then(|i| run.heatmaps.get(i).cloned()))
                };
                match (id, cached, file) {
                    (_, Some(body), _) => binary(body.as_ref().clone()),
                    (Some(id), None, Some(f)) => match encode_heatmap(&f) {
                        Ok(body) => {
                            let body = Arc::new(body);
                            lock(&state.run).served.insert(id, body.clone());
                            binary(body.as_ref().clone())
                        }
                        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
                    },
                    _ => plain(StatusCode::NOT_FOUND, format!("no heat map {path}")),
                }
            }
            _ => plain(StatusCode::NOT_FOUND, format!("unknown resource {path}")),
        };
        responder.respond(resp);
    });
}
