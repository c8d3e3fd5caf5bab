//! Load benchmark: time `volume::open` on a path, report throughput. Peers (SimpleITK,
//! pydicom, nibabel) are timed on the same files in the same run by
//! `tests/reference/bench_readers.py`, which prints the ratios.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::volume::{self, OpenOptions, Result};

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

/// Peak resident set size of this process, from /proc/self/status (Linux).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
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
