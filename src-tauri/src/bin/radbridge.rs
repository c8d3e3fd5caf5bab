//! `radbridge`: the command-line face of the Radbridge core, for batch and headless use.
//!
//! Contract (relied on by checks outside the repo): subcommands `inspect`, `convert`,
//! `preprocess`, `bench load`, their flags, and the JSON field names of `inspect --json` and
//! `bench load --json`. Bad input exits non-zero with one line naming the file and the problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use radbridge::preprocess::{self, PreprocessConfig};
use radbridge::volume::{self, Loaded, OpenOptions, Progress};
use serde_json::json;

#[derive(Parser)]
#[command(name = "radbridge", version, about = "Radbridge: CT volumes and model inputs for zero-shot CT review (research use only, not for diagnosis)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Series to load when the folder holds several: 0-based index or SeriesInstanceUID
    #[arg(long)]
    series: Option<String>,
    /// Load non-CT modalities too (values are then not Hounsfield units)
    #[arg(long)]
    any_modality: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Series found, chosen series geometry, HU range, warnings
    Inspect {
        /// DICOM folder or file, or NIfTI file (.nii, .nii.gz)
        path: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write the volume in HU as NIfTI (int16 where lossless, else float32) with its affine
    Convert {
        path: PathBuf,
        /// Output file (.nii.gz or .nii)
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write the exact model input tensor as .npy (float32, C order)
    Preprocess {
        path: PathBuf,
        /// brgsa → (1,1,256,256,128) over (L→R.. see docs); ctclip → (1,1,240,480,480)
        #[arg(long)]
        model: String,
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Benchmarks
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time loading PATH: MB/s (decoded int16 voxels) and slices/s
    Load {
        path: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
}

/// Progress bar on stderr (hidden when stderr is not a terminal).
struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn open_options(load: &LoadArgs, progress: bool) -> OpenOptions {
    let mut o = OpenOptions { series: load.series.clone(), any_modality: load.any_modality, ..Default::default() };
    if progress {
        let pb = ProgressBar::new(0);
        pb.set_style(ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "));
        o.progress = Arc::new(Bar(pb));
    }
    o
}

fn open(path: &Path, load: &LoadArgs) -> Result<Loaded> {
    Ok(volume::open(path, &open_options(load, true))?)
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
    if v.meta.format == "dicom" {
        println!(
            "scanned {} files; {} not DICOM, {} DICOM without image",
            loaded.scan.files_scanned, loaded.scan.non_dicom_skipped, loaded.scan.non_image_skipped
        );
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

fn convert(path: &Path, output: &Path, load: &LoadArgs) -> Result<()> {
    let loaded = open(path, load)?;
    volume::nifti::write(&loaded.volume, output)?;
    for w in &loaded.volume.warnings {
        eprintln!("warning: {}", w.message);
    }
    eprintln!(
        "wrote {} ({:?}, {}, orientation {})",
        output.display(),
        loaded.volume.dims,
        loaded.volume.voxels.dtype(),
        loaded.volume.orientation()
    );
    Ok(())
}

fn run_preprocess(path: &Path, model: &str, output: &Path, load: &LoadArgs) -> Result<()> {
    let cfg = PreprocessConfig::for_model(model)
        .with_context(|| format!("unknown model '{model}' (expected brgsa or ctclip)"))?;
    let loaded = open(path, load)?;
    for w in &loaded.volume.warnings {
        eprintln!("warning: {}", w.message);
    }
    let input = preprocess::preprocess(&loaded.volume, &cfg);
    preprocess::write_npy(output, &input.shape, &input.data).with_context(|| format!("{}: cannot write", output.display()))?;
    eprintln!("wrote {} float32 {:?} (resampled grid {:?})", output.display(), input.shape, input.resampled_shape);
    Ok(())
}

fn bench_load(path: &Path, repeats: usize, as_json: bool, load: &LoadArgs) -> Result<()> {
    let r = radbridge::bench::load(path, repeats, &open_options(load, false))?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} slices, {} files, {:.1} MB on disk → median {:.4} s over {} runs: {:.1} MB/s (int16 voxels), {:.1} slices/s ({} threads)",
            r.path,
            r.slices,
            r.files,
            r.file_bytes as f64 / 1e6,
            r.seconds_median,
            r.repeats,
            r.mb_per_s,
            r.slices_per_s,
            r.threads
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RADBRIDGE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect { path, load, json } => inspect(path, load, *json),
        Command::Convert { path, output, load } => convert(path, output, load),
        Command::Preprocess { path, model, output, load } => run_preprocess(path, model, output, load),
        Command::Bench { what: BenchCommand::Load { path, repeats, json, load } } => bench_load(path, *repeats, *json, load),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error chain joined.
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
