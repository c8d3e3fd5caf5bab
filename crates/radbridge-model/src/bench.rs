//! Load benchmark: time `volume::open` on a path, report throughput. Peers (SimpleITK,
//! pydicom, nibabel) are timed on the same files in the same run by
//! `tests/reference/bench_readers.py`, which prints the ratios.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::ModelError;
use radbridge_volume::{self as volume, OpenOptions, Result};

#[derive(Debug, Clone, Serialize)]
pub struct LoadBench {
    pub path: String,
    /// Files that make up the loaded volume.
    pub files: usize,
    pub slices: usize,
    /// Bytes of those files on disk.
    pub file_bytes: u64,
    /// Decoded voxels as int16 (2 bytes each): the common measure across readers.
    pub voxel_bytes: u64,
    pub seconds: Vec<f64>,
    pub seconds_median: f64,
    /// Decoded megabytes (1e6 bytes of int16 voxels) per second.
    pub mb_per_s: f64,
    pub slices_per_s: f64,
    pub repeats: usize,
    pub threads: usize,
    /// Peak resident memory of this process (Linux VmHWM), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
}

/// A "kB" field of /proc/self/status (Linux) in bytes; 0 where unknown.
fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Peak resident set size of this process, from /proc/self/status (Linux).
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// Current resident set size of this process (VmRSS, Linux).
pub fn current_rss_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

pub fn load(path: &Path, repeats: usize, options: &OpenOptions) -> Result<LoadBench> {
    let repeats = repeats.max(1);
    let mut seconds = Vec::with_capacity(repeats);
    let mut last = None;
    // One untimed warm-up so every repeat sees the same (warm) file cache.
    let _ = volume::open(path, options)?;
    for _ in 0..repeats {
        let t = Instant::now();
        let loaded = volume::open(path, options)?;
        seconds.push(t.elapsed().as_secs_f64());
        last = Some(loaded);
    }
    let loaded = last.expect("repeats >= 1");
    let v = &loaded.volume;
    let file_bytes = v.meta.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let mut sorted = seconds.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    let voxel_bytes = v.voxel_count() as u64 * 2;
    Ok(LoadBench {
        path: path.display().to_string(),
        files: v.meta.files.len(),
        slices: v.dims[2],
        file_bytes,
        voxel_bytes,
        seconds,
        seconds_median: median,
        mb_per_s: voxel_bytes as f64 / 1e6 / median,
        slices_per_s: v.dims[2] as f64 / median,
        repeats,
        threads: rayon::current_num_threads(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Model benchmark: `radbridge bench model`. The same weights and input are timed in PyTorch
/// in the same run by `tests/reference/bench_models.py`, which prints the ratios.
#[derive(Debug, Clone, Serialize)]
pub struct ModelBench {
    /// Model name from model.json.
    pub model: String,
    pub model_dir: String,
    pub architecture: crate::checkpoint::Arch,
    pub input_shape: Vec<usize>,
    /// `Engine::load`: manifest, weights checksum (SHA-256 of the whole file), weights, tokenizer.
    pub load_seconds: f64,
    /// Median over `repeats` of `Engine::encode_image` on the input tensor.
    pub image_seconds: f64,
    /// Median over `repeats` of `Engine::embed_prompts` (tokenise + encode) on all prompts,
    /// with an empty in-memory text cache each time.
    pub text_seconds: f64,
    pub image_seconds_all: Vec<f64>,
    pub text_seconds_all: Vec<f64>,
    pub prompts: usize,
    pub repeats: usize,
    /// Whether one untimed image + text pass ran first.
    pub warmup: bool,
    /// Peak resident memory of the whole process (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    /// VmHWM right after the model and the input were loaded, before any forward pass.
    pub peak_rss_after_load_bytes: u64,
    /// VmRSS (current, not peak) at that point.
    pub rss_after_load_bytes: u64,
    pub threads: usize,
}

/// What the last repeat produced (for checking the numbers against another implementation).
#[derive(Debug, Clone, Serialize)]
pub struct ModelBenchOutput {
    pub image: crate::analysis::ImageCode,
    pub prompts: Vec<String>,
    pub text: Vec<crate::analysis::TextCode>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The prompts `diagnose` embeds for the model's default label set (positives, then negatives).
pub fn default_prompts(engine: &crate::analysis::Engine) -> Vec<String> {
    let m = &engine.package.manifest;
    let labels = m.labels(&m.default_label_set).unwrap_or_default();
    let mut p: Vec<String> = labels.iter().map(|l| m.prompts.positive_for(l)).collect();
    p.extend(labels.iter().filter_map(|l| m.prompts.negative_for(l)));
    p
}

/// Load the model directory, read the (1, 1, d0, d1, d2) float32 `.npy`, then time
/// `encode_image` and `embed_prompts` `repeats` times each (median reported). The text cache is
/// replaced by an empty in-memory one before every text pass, so each pass really runs the
/// text encoder and nothing is written to disk.
pub fn model(
    dir: &Path,
    volume: &Path,
    prompts: Option<Vec<String>>,
    repeats: usize,
    warmup: bool,
) -> Result<(ModelBench, ModelBenchOutput), ModelError> {
    use crate::analysis::Engine;
    use crate::zeroshot::TextCache;
    let repeats = repeats.max(1);
    let t = Instant::now();
    let mut engine = Engine::load(dir)?;
    let load_seconds = t.elapsed().as_secs_f64();
    let sha = engine.package.manifest.weights_sha256.clone();
    engine.cache = TextCache::in_memory(&sha);
    let (shape, data) = crate::preprocess::read_npy(volume).map_err(ModelError::io(volume, "cannot read the input"))?;
    if !(shape.len() == 5 && shape[0] == 1 && shape[1] == 1) {
        return Err(ModelError::Invalid {
            path: volume.to_path_buf(),
            reason: format!("expected a (1, 1, d0, d1, d2) tensor, found {shape:?}"),
        });
    }
    let x = candle_core::Tensor::from_vec(data, shape.clone(), &engine.device)?;
    let prompts = prompts.unwrap_or_else(|| default_prompts(&engine));
    if prompts.is_empty() {
        return Err(ModelError::Invalid { path: dir.to_path_buf(), reason: "no prompts".into() });
    }
    let peak_rss_after_load_bytes = peak_rss_bytes();
    let rss_after_load_bytes = current_rss_bytes();
    if warmup {
        engine.encode_image(&x)?;
        engine.embed_prompts(&prompts)?;
        engine.cache = TextCache::in_memory(&sha);
    }
    let mut image_seconds_all = Vec::with_capacity(repeats);
    let mut image = None;
    for _ in 0..repeats {
        drop(image.take());
        let t = Instant::now();
        let code = engine.encode_image(&x)?;
        image_seconds_all.push(t.elapsed().as_secs_f64());
        image = Some(code);
    }
    let mut text_seconds_all = Vec::with_capacity(repeats);
    let mut text = Vec::new();
    for _ in 0..repeats {
        engine.cache = TextCache::in_memory(&sha);
        let t = Instant::now();
        text = engine.embed_prompts(&prompts)?;
        text_seconds_all.push(t.elapsed().as_secs_f64());
    }
    let m = &engine.package.manifest;
    let bench = ModelBench {
        model: m.name.clone(),
        model_dir: dir.display().to_string(),
        architecture: m.architecture,
        input_shape: shape,
        load_seconds,
        image_seconds: median(&image_seconds_all),
        text_seconds: median(&text_seconds_all),
        image_seconds_all,
        text_seconds_all,
        prompts: prompts.len(),
        repeats,
        warmup,
        peak_rss_bytes: peak_rss_bytes(),
        peak_rss_after_load_bytes,
        rss_after_load_bytes,
        threads: rayon::current_num_threads(),
    };
    Ok((bench, ModelBenchOutput { image: image.expect("repeats >= 1"), prompts, text }))
}
