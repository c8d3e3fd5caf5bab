//! Key images: for each flagged finding with a peak, the axial CT slice through the peak in a
//! lung window (1500/−600), shown in radiological convention (patient right on the image
//! left, anterior up) at true aspect ratio, with the finding's heat map laid over it (values
//! between the slice median and the peak, red → yellow) when `diagnose --heatmaps` wrote one,
//! and a ring marker at the peak in every case.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ReportError, Result};
use radbridge_model::analysis::{Diagnosis, Peak, StudySource};
use radbridge_volume::{self as volume, OpenOptions, Volume};

/// Longest side of a rendered key image, pixels.
pub const MAX_SIDE: usize = 448;
/// Display window (width, level) in HU.
pub const WINDOW: (f32, f32) = (1500.0, -600.0);

/// One rendered key image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyImage {
    pub label: String,
    /// Axial slice index k on the canonical grid.
    pub slice: usize,
    pub peak: Peak,
    /// "heatmap" (heat map overlaid + marker) or "marker" (marker only: no heat map file).
    pub overlay: String,
    /// "W 1500 / L -600 HU".
    pub window: String,
    pub width: u32,
    pub height: u32,
    /// Index into the study's `instances` of the DICOM slice holding the peak (single-frame
    /// series only).
    pub instance: Option<usize>,
    /// The image as PNG (base64 in JSON).
    #[serde(with = "b64")]
    pub png: Vec<u8>,
    /// RGB8 pixels, row-major (for the PDF).
    #[serde(skip)]
    pub rgb: Vec<u8>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Load the source study (canonical) as the diagnosis saw it, with the affine and size it has
/// on disk (to find the source slice of a position).
pub fn load_study(source: &StudySource) -> Result<(Volume, radbridge_volume::Affine, [usize; 3])> {
    let path = PathBuf::from(&source.path);
    let err = |reason: String| ReportError::Study { path: path.clone(), reason };
    let series = source.series_instance_uid.clone().filter(|u| !u.is_empty()).or_else(|| source.series_index.map(|i| i.to_string()));
    let opts = OpenOptions { series, any_modality: true, ..Default::default() };
    let v = volume::open(&path, &opts).map_err(|e| err(e.to_string()))?.volume;
    let (affine, dims) = (v.affine, v.dims);
    let v = v.into_canonical();
    if source.dims != [0, 0, 0] && v.dims != source.dims {
        return Err(err(format!("the volume is now {:?}, the analysis saw {:?}: the study changed since", v.dims, source.dims)));
    }
    Ok((v, affine, dims))
}

/// Key images of the flagged findings of a diagnosis (loads the study once).
pub fn key_images(d: &Diagnosis, source: &StudySource) -> Result<Vec<KeyImage>> {
    Ok(key_images_checked(d, source)?.0)
}

/// Key images, and the BurnedInAnnotation of the study as loaded now (None when no image was
/// wanted, for NIfTI, or when the files do not say).
pub fn key_images_checked(d: &Diagnosis, source: &StudySource) -> Result<(Vec<KeyImage>, Option<String>)> {
    let wanted: Vec<_> = d.findings.iter().filter(|f| f.finding.flagged == Some(true) && f.peak.is_some()).collect();
    if wanted.is_empty() {
        return Ok((vec![], None));
    }
    let (ct, disk_affine, disk_dims) = load_study(source)?;
    let burned_in = ct.meta.patient.study.burned_in_annotation.clone();
    let inv = disk_affine.inverse();
    let mut out = Vec::new();
    for f in wanted {
        let peak = f.peak.clone().expect("filtered");
        if (0..3).any(|a| peak.voxel[a] >= ct.dims[a]) {
            return Err(ReportError::Study {
                path: source.path.clone().into(),
                reason: format!("peak {:?} of '{}' lies outside the volume {:?}", peak.voxel, f.finding.label, ct.dims),
            });
        }
        let heat = f.heatmap.as_ref().and_then(|p| match volume::open(p, &OpenOptions { any_modality: true, ..Default::default() }) {
            Ok(l) => {
                let h = l.volume.into_canonical();
                if h.dims == ct.dims {
                    Some(h)
                } else {
                    tracing::warn!("{p}: heat map grid {:?} differs from the CT {:?}; showing a marker instead", h.dims, ct.dims);
                    None
                }
            }
            Err(e) => {
                tracing::warn!("{p}: cannot read the heat map ({e}); showing a marker instead");
                None
            }
        });
        let (rgb, w, h) = render(&ct, heat.as_ref(), &peak);
        // The slice on disk: DICOM slices run along axis 2 of the volume as loaded.
        let instance = inv.as_ref().and_then(|inv| {
            let o = inv.apply(ct.affine.apply(peak.voxel.map(|x| x as f64)));
            let k = o[2].round();
            (source.instances.len() == disk_dims[2] && k >= 0.0 && (k as usize) < disk_dims[2]).then_some(k as usize)
        });
        let png = encode_png(&rgb, w, h)?;
        out.push(KeyImage {
            label: f.finding.label.clone(),
            slice: peak.voxel[2],
            overlay: if heat.is_some() { "heatmap" } else { "marker" }.into(),
            window: format!("W {} / L {} HU", WINDOW.0, WINDOW.1),
            width: w as u32,
            height: h as u32,
            instance,
            peak,
            png,
            rgb,
        });
    }
    Ok((out, burned_in))
}

/// Render the axial slice through `peak` of a canonical CT: RGB8, (width, height).
pub fn render(ct: &Volume, heat: Option<&Volume>, peak: &Peak) -> (Vec<u8>, usize, usize) {
    let [nx, ny, _] = ct.dims;
    let k = peak.voxel[2];
    let sp = ct.spacing();
    let (wmm, hmm) = (nx as f64 * sp[0], ny as f64 * sp[1]);
    let scale = MAX_SIDE as f64 / wmm.max(hmm);
    // Bounded whatever the spacing says (a zero, infinite or NaN spacing gives 1..=MAX_SIDE).
    let w = ((wmm * scale).round() as usize).clamp(1, MAX_SIDE);
    let h = ((hmm * scale).round() as usize).clamp(1, MAX_SIDE);
    let col = |x: usize| (((x as f64 + 0.5) / w as f64 * nx as f64) as usize).min(nx - 1);
    let row = |y: usize| (((y as f64 + 0.5) / h as f64 * ny as f64) as usize).min(ny - 1);
    let (ww, wl) = WINDOW;
    let lo = wl - ww / 2.0;
    // Heat-map scaling on this slice: from its median to its maximum.
    let hrange = heat.map(|hv| {
        let mut vals: Vec<f32> = (0..nx * ny).map(|n| hv.voxels.get_f32(hv.index(n % nx, n / nx, k))).filter(|v| v.is_finite()).collect();
        vals.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let med = vals.get(vals.len() / 2).copied().unwrap_or(0.0);
        let max = vals.last().copied().unwrap_or(1.0);
        (med, (max - med).max(1e-6))
    });
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        let j = row(y);
        for x in 0..w {
            let i = col(x);
            let hu = ct.voxels.get_f32(ct.index(i, j, k));
            let g = (((hu - lo) / ww).clamp(0.0, 1.0) * 255.0).round();
            let mut px = [g, g, g];
            if let (Some(hv), Some((med, span))) = (heat, hrange) {
                let t = ((hv.voxels.get_f32(hv.index(i, j, k)) - med) / span).clamp(0.0, 1.0);
                if t > 0.0 {
                    let a = 0.6 * t;
                    let c = [255.0, 255.0 * t, 0.0];
                    for ch in 0..3 {
                        px[ch] = px[ch] * (1.0 - a) + c[ch] * a;
                    }
                }
            }
            let o = (y * w + x) * 3;
            for ch in 0..3 {
                rgb[o + ch] = px[ch].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    // Ring marker around the peak (cyan), leaving the peak itself visible.
    let cx = (peak.voxel[0] as f64 + 0.5) / nx as f64 * w as f64;
    let cy = (peak.voxel[1] as f64 + 0.5) / ny as f64 * h as f64;
    let r = (w.max(h) as f64 / 28.0).max(6.0);
    for y in 0..h {
        for x in 0..w {
            let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
            let tick = ((x as f64 + 0.5 - cx).abs() < 1.0 || (y as f64 + 0.5 - cy).abs() < 1.0) && d > r && d < 1.8 * r;
            if (d - r).abs() < 1.2 || tick {
                let o = (y * w + x) * 3;
                rgb[o..o + 3].copy_from_slice(&[0, 230, 255]);
            }
        }
    }
    (rgb, w, h)
}

/// PNG bytes of an RGB8 image.
pub fn encode_png(rgb: &[u8], w: usize, h: usize) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| ReportError::Image(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radbridge_volume::{Affine, Voxels};

    fn vol(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
        let mut v = Vec::new();
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    v.push(f(i, j, k));
                }
            }
        }
        Volume { dims, voxels: Voxels::F32(v), affine: Affine::identity(), meta: Default::default(), warnings: vec![] }
    }

    #[test]
    fn overlay_is_hot_at_the_peak_and_grey_elsewhere() {
        let ct = vol([64, 32, 4], |_, _, _| -600.0); // window level: mid grey
        let heat = vol([64, 32, 4], |i, j, _| -(((i as f32 - 40.0).powi(2) + (j as f32 - 10.0).powi(2)).sqrt()));
        let peak = Peak { voxel: [40, 10, 2], lps_mm: [40.0, 10.0, 2.0], value: 0.0, from: radbridge_model::heatmap::PeakSource::Heatmap };
        let (rgb, w, h) = render(&ct, Some(&heat), &peak);
        assert_eq!((w, h), (448, 224));
        let at = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
        let (px, py) = (40 * 7 + 3, 10 * 7 + 3);
        let p = at(px, py);
        assert!(p[0] > 200 && p[2] < 80, "peak pixel {p:?}");
        let far = at(5, 200);
        assert!(far[0] == far[1] && far[1] == far[2] && (120..=136).contains(&far[0]), "far pixel {far:?}");
        let marker = render(&ct, None, &peak).0;
        assert!(marker.chunks(3).any(|c| c == [0, 230, 255]));
        assert!(encode_png(&rgb, w, h).unwrap().starts_with(b"\x89PNG"));
    }
}
