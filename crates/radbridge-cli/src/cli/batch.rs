//! `radbridge batch`: one model over a cohort, resumable, sharded over a job array.
//!
//! Contract (relied on outside the repo):
//! ```text
//! radbridge batch --model <DIR> (--manifest <FILE.csv> | --input <DIR>) --output <OUT>
//!                 [--labels ct-rate|ct-rate-lt|ct-rate-extended|all] [--finding "<text>"]...
//!                 [--shard-index I --shard-count N] [--force] [--threads N]
//! radbridge batch merge <OUT>
//! ```
//! After an unsharded run, or `batch merge` of a sharded one, `<OUT>` holds `scores.csv`,
//! `embeddings.safetensors`, `studies/<id>.json`, `failures.csv` and `run.json` (see
//! `radbridge_train::batch`). The shard comes from the flags, else from
//! `SLURM_ARRAY_TASK_ID`/`SLURM_ARRAY_TASK_COUNT`, or `JOB_COMPLETION_INDEX` with
//! `--shard-count`. Exit status: 0 when every study succeeded, 3 when some failed (listed in
//! `failures.csv`) or, after a merge, are missing; 1 when nothing could run (one named error).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use radbridge_model::analysis::Engine;
use radbridge_train::batch::{self, BatchOptions, Event, ModelRef, Settings, Shard, Source};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(group(ArgGroup::new("studies").required(true).args(["manifest", "input"])))]
pub struct BatchArgs {
    #[command(subcommand)]
    cmd: Option<BatchCmd>,
    /// Model directory
    #[arg(long, required = true)]
    model: Option<PathBuf>,
    /// CSV with a header holding `id` and `path` (a DICOM folder or NIfTI file; relative to
    /// the manifest's folder); other columns are ignored
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Every NIfTI file and DICOM series under this folder is a study
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output folder (shards of one run may share it)
    #[arg(long, required = true)]
    output: Option<PathBuf>,
    /// ct-rate, ct-rate-lt, ct-rate-extended or all (default: the model's default set)
    #[arg(long)]
    labels: Option<String>,
    /// A finding to score, in words (repeatable; one more column in scores.csv)
    #[arg(long = "finding")]
    findings: Vec<String>,
    /// This process's shard (study k belongs to shard k mod N)
    #[arg(long)]
    shard_index: Option<usize>,
    /// Number of shards
    #[arg(long)]
    shard_count: Option<usize>,
    /// Recompute studies that are already finished
    #[arg(long)]
    force: bool,
    /// CPU threads for the model (default: every core)
    #[arg(long)]
    threads: Option<usize>,
    /// Where the model runs: cpu, cuda[:N] or metal[:N] (a GPU needs a build with that feature)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Load non-CT modalities too
    #[arg(long)]
    any_modality: bool,
    /// Knowledge-bank entries listed per image and finding in each study's record
    #[arg(long, default_value_t = 5)]
    top_k: usize,
}

#[derive(Subcommand)]
enum BatchCmd {
    /// Build scores.csv, embeddings.safetensors, failures.csv and run.json from the shards'
    /// files, and say which studies are missing
    Merge {
        /// The output folder the shards wrote into
        out: PathBuf,
    },
}

pub fn run(a: &BatchArgs) -> Result<ExitCode> {
    if let Some(BatchCmd::Merge { out }) = &a.cmd {
        return merge(out);
    }
    let (Some(model), Some(output)) = (&a.model, &a.output) else {
        anyhow::bail!("batch needs --model and --output");
    };
    if let Some(n) = a.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        // candle's CPU kernels read RAYON_NUM_THREADS; rayon's pool is sized once.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    let shard = Shard::resolve(a.shard_index, a.shard_count, &|k| std::env::var(k).ok())?;
    let absolute = |p: &PathBuf| std::path::absolute(p).with_context(|| format!("{}: cannot resolve the path", p.display()));
    let source = match (&a.manifest, &a.input) {
        (Some(m), _) => Source::Manifest(absolute(m)?),
        (None, Some(d)) => Source::Input(absolute(d)?),
        (None, None) => anyhow::bail!("batch needs --manifest or --input"),
    };
    let studies = batch::plan(&source)?;
    let device = super::common::device(&a.device)?;
    let mut engine = Engine::load_on(model, &device).with_context(|| format!("{}: cannot load the model", model.display()))?;
    let m = &engine.package.manifest;
    let (set, labels) = super::common::label_set(m, a.labels.as_deref())?;
    let prompts = labels.iter().chain(&a.findings).map(|l| (l.clone(), m.prompts.positive_for(l))).collect();
    let settings = Settings {
        source,
        model: ModelRef::of(&engine, &absolute(model)?),
        label_set: set,
        labels,
        findings: a.findings.clone(),
        prompts,
        any_modality: a.any_modality,
    };
    let cancel = radbridge_volume::CancelToken::default();
    super::common::cancel_on_interrupt(cancel.clone(), None);
    let pacs_dir = radbridge_store::default_dir().ok();
    let opts = BatchOptions { settings, shard, force: a.force, top_k: a.top_k, prefetch: 2, cancel, pacs_dir };

    let pb = super::common::counter_bar(0, "{prefix} [{bar:30}] {pos}/{len} {msg} {elapsed_precise} ETA {eta_precise}");
    if shard.count > 1 {
        pb.set_prefix(format!("shard {}/{}", shard.index, shard.count));
    } else {
        pb.set_prefix("batch");
    }
    let counts = std::cell::Cell::new((0usize, 0usize));
    let record = batch::run(&mut engine, &studies, output, &opts, &|e| match e {
        Event::Start { studies, skipped } => {
            pb.set_length((studies - skipped) as u64);
            if skipped > 0 {
                pb.println(format!("{skipped} of {studies} studies already done (resuming; --force recomputes them)"));
            }
        }
        Event::Done(_) => {
            let (d, f) = counts.get();
            counts.set((d + 1, f));
            pb.set_message(format!("done {} failed {f}", d + 1));
            pb.inc(1);
        }
        Event::Failed(s, err) => {
            let (d, f) = counts.get();
            counts.set((d, f + 1));
            pb.set_message(format!("done {d} failed {}", f + 1));
            pb.println(format!("failed: {}: {err}", s.id));
            pb.inc(1);
        }
    });
    pb.finish_and_clear();
    let record = match record {
        Err(batch::BatchError::Cancelled(_)) => {
            let (d, f) = counts.get();
            eprintln!("interrupted: {d} studies done and {f} failed in this run are kept; the same command resumes ({})", output.display());
            return Ok(ExitCode::from(130));
        }
        r => r?,
    };
    eprintln!(
        "{}: {} studies, {} done, {} failed, {} already done, {:.1} s",
        if shard.count > 1 { format!("shard {} of {}", shard.index, shard.count) } else { "batch".into() },
        record.studies,
        record.done,
        record.failed,
        record.skipped,
        record.seconds
    );
    if shard.count > 1 {
        eprintln!("when every shard has finished: radbridge batch merge {}", output.display());
        return Ok(if record.failed > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS });
    }
    merge(output)
}

fn merge(out: &std::path::Path) -> Result<ExitCode> {
    let r = batch::merge(out)?;
    eprintln!(
        "{}: {} studies, {} with results, {} failed, {} missing; wrote scores.csv, embeddings.safetensors, failures.csv, run.json",
        out.display(),
        r.studies,
        r.succeeded,
        r.failed.len(),
        r.missing.len()
    );
    for (id, shard) in r.missing.iter().take(20) {
        eprintln!("missing: {id} (shard {shard})");
    }
    if r.missing.len() > 20 {
        eprintln!("missing: and {} more (failures.csv lists them all)", r.missing.len() - 20);
    }
    Ok(if r.failed.is_empty() && r.missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}
