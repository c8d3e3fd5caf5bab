//! `radbridge inspect`: the series found, the chosen series' geometry, HU range and warnings.
//! Contract: the JSON field names of `--json`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use radbridge_volume::SourceFormat;
use serde_json::json;

use super::common::{open, LoadArgs};

#[derive(Args)]
pub struct InspectArgs {
    /// DICOM folder or file, or NIfTI file (.nii, .nii.gz)
    path: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

pub fn run(a: &InspectArgs) -> Result<()> {
    inspect(&a.path, &a.load, a.json)
}

fn inspect(path: &Path, load: &LoadArgs, as_json: bool) -> Result<()> {
    let loaded = open(path, load)?;
    let v = &loaded.volume;
    let (lo, hi) = v.voxels.range().unwrap_or((f32::NAN, f32::NAN));
    let canon = v.affine.canonical_plan(v.dims).map(|p| p.new_dims).unwrap_or(v.dims);
    let out = json!({
        "path": path.display().to_string(),
        "format": v.meta.format,
        "format_detail": v.meta.format_detail,
        "files_scanned": loaded.scan.files_scanned,
        "non_dicom_skipped": loaded.scan.non_dicom_skipped,
        "non_image_skipped": loaded.scan.non_image_skipped,
        "rejected": loaded.scan.rejected,
        "skipped_files": loaded.scan.skipped.iter().map(|(p, why)| json!({"path": p.display().to_string(), "reason": why})).collect::<Vec<_>>(),
        "series": loaded.series,
        "chosen": loaded.chosen,
        "volume": {
            "modality": v.meta.modality,
            "series_uid": v.meta.series_uid,
            "description": v.meta.series_description,
            "dimensions": v.dims,
            "spacing": v.spacing(),
            "affine_lps": v.affine.0,
            "orientation": v.orientation(),
            "canonical_dimensions": canon,
            "dtype": v.voxels.dtype(),
            "hu_min": lo,
            "hu_max": hi,
            "files": v.meta.files.len(),
        },
        "warnings": v.warnings,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} ({}; {})", path.display(), v.meta.format, v.meta.format_detail);
    if v.meta.format == SourceFormat::Dicom {
        println!(
            "scanned {} files; {} not DICOM, {} DICOM without image",
            loaded.scan.files_scanned, loaded.scan.non_dicom_skipped, loaded.scan.non_image_skipped
        );
        if !loaded.scan.skipped.is_empty() {
            println!("skipped:");
            for (p, why) in loaded.scan.skipped.iter().take(radbridge_volume::MAX_NAMED_FILES) {
                println!("  - {}: {why}", p.display());
            }
            if loaded.scan.skipped.len() > radbridge_volume::MAX_NAMED_FILES {
                println!("  … and {} more (all in --json)", loaded.scan.skipped.len() - radbridge_volume::MAX_NAMED_FILES);
            }
        }
    }
    println!("series:");
    for s in &loaded.series {
        println!(
            "  {}{} {:<4} {:>4} slices {:?} spacing [{:.3}, {:.3}, {:.3}] {} {}",
            if s.index == loaded.chosen { "*" } else { " " },
            s.index,
            s.modality,
            s.slice_count,
            s.dimensions,
            s.spacing[0],
            s.spacing[1],
            s.spacing[2],
            if s.uid.is_empty() { "(no SeriesInstanceUID)" } else { &s.uid },
            s.description
        );
    }
    println!("volume: {:?} voxels, {}, orientation {}", v.dims, v.voxels.dtype(), v.orientation());
    let sp = v.spacing();
    println!("spacing: [{:.4}, {:.4}, {:.4}] mm", sp[0], sp[1], sp[2]);
    println!("affine (voxel → LPS mm):");
    for r in &v.affine.0[..3] {
        println!("  [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]", r[0], r[1], r[2], r[3]);
    }
    println!("HU range: {lo} .. {hi}");
    if v.warnings.is_empty() {
        println!("warnings: none");
    } else {
        println!("warnings:");
        for w in &v.warnings {
            println!("  - [{}] {}", serde_json::to_value(w.code)?.as_str().unwrap_or(""), w.message);
        }
    }
    Ok(())
}
