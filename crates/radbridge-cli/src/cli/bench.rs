//! `radbridge bench load|model`: loading and model timings. Contract: the JSON field names of
//! `bench load --json` (and `bench model --json`, read by `tests/reference/bench_models.py`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};

use super::common::{open_options, read_prompts, LoadArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
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
    /// Time a model on CPU: load, image encoder (median) and text encoder (median) on a model
    /// input .npy; peak RSS
    Model {
        /// Model directory
        #[arg(long)]
        model: PathBuf,
        /// The model input tensor as .npy (float32, C order, shape (1, 1, d0, d1, d2))
        #[arg(long)]
        volume: PathBuf,
        /// Prompts, one per line (default: what `diagnose` embeds for the model's default label set)
        #[arg(long)]
        prompts: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// One untimed image + text pass before the timed ones
        #[arg(long)]
        warmup: bool,
        #[arg(long)]
        json: bool,
        /// Write the last repeat's embeddings (image code and one text code per prompt) as JSON
        #[arg(long)]
        embeddings: Option<PathBuf>,
    },
}

pub fn run(a: &BenchArgs) -> Result<()> {
    match &a.what {
        BenchCommand::Load { path, repeats, json, load } => bench_load(path, *repeats, *json, load),
        BenchCommand::Model { model, volume, prompts, repeats, warmup, json, embeddings } => {
            bench_model(model, volume, prompts.as_deref(), *repeats, *warmup, *json, embeddings.as_deref())
        }
    }
}

fn bench_load(path: &Path, repeats: usize, as_json: bool, load: &LoadArgs) -> Result<()> {
    let r = radbridge_model::bench::load(path, repeats, &open_options(load, false))?;
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

fn bench_model(
    model: &Path,
    volume: &Path,
    prompts: Option<&Path>,
    repeats: usize,
    warmup: bool,
    as_json: bool,
    embeddings: Option<&Path>,
) -> Result<()> {
    let prompts = prompts.map(read_prompts).transpose()?;
    let (r, out) = radbridge_model::bench::model(model, volume, prompts, repeats, warmup)?;
    if let Some(p) = embeddings {
        super::common::write_file(p, serde_json::to_string(&out)? + "\n")?;
    }
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} ({:?}), input {:?}: load {:.2} s; image median {:.3} s, text ({} prompts) median {:.3} s over {} runs{}; peak RSS {:.0} MB ({} threads)",
            r.model,
            r.architecture,
            r.input_shape,
            r.load_seconds,
            r.image_seconds,
            r.prompts,
            r.text_seconds,
            r.repeats,
            if r.warmup { " after a warm-up" } else { "" },
            r.peak_rss_bytes as f64 / 1e6,
            r.threads
        );
    }
    Ok(())
}
