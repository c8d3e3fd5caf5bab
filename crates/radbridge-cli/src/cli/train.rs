//! `radbridge train`: train BrgSA on a synthetic corpus and write a model directory.
//!
//! Contract: `radbridge train --config <FILE> --data <DIR> --output <MODEL_DIR> [--resume]
//! [--seed S] [--epochs N] [--state-dir DIR] [--max-steps N]`. Progress bar with the loss and
//! the ETA on a terminal, one log line per `--log-every` steps otherwise. Ctrl-C (or SIGTERM)
//! finishes the current step, saves a checkpoint and exits with status 130; `--resume`
//! continues from it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use radbridge_train::config::TrainConfig;
use radbridge_train::trainer::{self, Event, TrainError, TrainOptions};
use radbridge_volume::CancelToken;

#[derive(Args)]
pub struct TrainArgs {
    /// Training configuration (JSON; missing fields take the defaults)
    #[arg(long)]
    pub config: PathBuf,
    /// Corpus folder written by `radbridge synth`
    #[arg(long)]
    pub data: PathBuf,
    /// Model directory to write
    #[arg(long, short)]
    pub output: PathBuf,
    /// Continue from the checkpoint in the state folder
    #[arg(long)]
    pub resume: bool,
    /// Override the config's seed
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the config's number of epochs
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Checkpoints and the preprocessed-input cache (default: <OUTPUT>/train-state)
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Stop after this many steps in total and write the model
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Log line every N steps when not on a terminal
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Compute threads (default: RAYON_NUM_THREADS, else 1 — on a busy 2-core machine one
    /// thread is faster than two spinning on each other); does not change the results
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Many short-lived tensors of a few MB are allocated per step; glibc returns each to the
/// kernel (mmap) and the next one page-faults fresh zeroed memory, which took a third of the
/// time. Keep freed memory in the heap instead.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

pub fn run(a: &TrainArgs) -> Result<()> {
    let threads = a.threads.or_else(|| std::env::var("RAYON_NUM_THREADS").ok().and_then(|t| t.parse().ok())).unwrap_or(1).max(1);
    // SAFETY: called before this process starts any other thread.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    tune_allocator();
    let mut config = TrainConfig::load(&a.config)?;
    if let Some(s) = a.seed {
        config.seed = s;
    }
    if let Some(e) = a.epochs {
        config.epochs = e;
    }
    config.validate().map_err(|e| anyhow::anyhow!("{}: {e}", a.config.display()))?;
    let cancel = CancelToken::default();
    super::common::cancel_on_interrupt(
        cancel.clone(),
        Some("interrupted: saving a checkpoint after this step (press Ctrl-C again to quit now)"),
    );
    let opts = TrainOptions {
        config,
        data: a.data.clone(),
        output: a.output.clone(),
        state_dir: a.state_dir.clone().unwrap_or_else(|| a.output.join("train-state")),
        resume: a.resume,
        max_steps: a.max_steps,
        cancel,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pb = super::common::counter_bar(0, "{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise} ETA {eta_precise}");
    let log_every = a.log_every.max(1);
    let mut ema: Option<f64> = None;
    let mut total = 0usize;
    let mut started = std::time::Instant::now();
    let mut first = 0usize;
    let mut on_event = |e: &Event| match e {
        Event::Preprocess { total: n, .. } => eprintln!("inputs ready: {n} cases"),
        Event::Start { cases, steps_per_epoch, total_steps, first_step, vocab_size, parameters } => {
            eprintln!(
                "training on {cases} cases: {steps_per_epoch} steps per epoch, {total_steps} steps in all, \
                 starting at step {first_step}; vocabulary {vocab_size}, {parameters} trainable parameters"
            );
            total = *total_steps;
            first = *first_step;
            // The ETA counts BrgSA steps only (not input preparation or pre-training).
            started = std::time::Instant::now();
            pb.set_length(*total_steps as u64);
            pb.set_position(*first_step as u64);
            pb.reset_eta();
        }
        Event::Step(s) => {
            let l = ema.map(|m| 0.9 * m + 0.1 * s.loss).unwrap_or(s.loss);
            ema = Some(l);
            pb.set_message(format!("epoch {} loss {:.4}", s.epoch + 1, l));
            pb.set_position((s.global_step + 1) as u64);
            if !tty && (s.global_step + 1) % log_every == 0 {
                let done = s.global_step + 1 - first;
                let el = started.elapsed().as_secs_f64();
                let eta = if done > 0 { el / done as f64 * (total.saturating_sub(s.global_step + 1)) as f64 } else { 0.0 };
                eprintln!(
                    "step {}/{} epoch {} loss {:.4} (avg {:.4}; info {:.3}+{:.3} recon {:.3}+{:.3} mse {:.4}+{:.4}) |g| {:.3} lr {:.2e} {:.2} s/step ETA {:.0} s",
                    s.global_step + 1,
                    total,
                    s.epoch + 1,
                    s.loss,
                    l,
                    s.parts[0],
                    s.parts[1],
                    s.parts[2],
                    s.parts[3],
                    s.parts[4],
                    s.parts[5],
                    s.grad_norm,
                    s.lr,
                    s.seconds,
                    eta
                );
            }
        }
        Event::EpochEnd { epoch, mean_loss, checkpoint } => {
            pb.suspend(|| eprintln!("epoch {} mean loss {:.4}; checkpoint {}", epoch + 1, mean_loss, checkpoint.display()));
        }
        Event::PretrainStep { total: n, step: s } => {
            let l = ema.map(|m| 0.95 * m + 0.05 * s.loss).unwrap_or(s.loss);
            ema = Some(l);
            if s.step == 0 {
                pb.set_length(*n as u64);
            }
            pb.set_message(format!("pre-training loss {l:.4}"));
            pb.set_position((s.step + 1) as u64);
            if !tty && (s.step + 1) % log_every == 0 {
                eprintln!(
                    "pre-training step {}/{} masked-patch loss {:.4} (avg {:.4}) |g| {:.3} lr {:.2e} {:.2} s/step",
                    s.step + 1,
                    n,
                    s.loss,
                    l,
                    s.grad_norm,
                    s.lr,
                    s.seconds
                );
            }
        }
        Event::PretrainDone { weights, reused, seconds } => {
            ema = None;
            let how = if *reused { "reused" } else { "trained" };
            pb.suspend(|| eprintln!("pre-trained image encoder {how} ({seconds:.0} s): {}", weights.display()));
        }
    };
    let result = trainer::train(&opts, &mut on_event);
    pb.finish_and_clear();
    match result {
        Ok(r) => {
            eprintln!(
                "wrote {}: {} cases, {} epochs, {} steps, loss {:.4} → {:.4}, {:.0} s of training (+ {:.0} s of pre-training)",
                r.output.display(),
                r.cases,
                r.epochs,
                r.steps,
                r.first_loss,
                r.final_loss,
                r.train_seconds,
                r.pretrain_seconds
            );
            println!("{}", serde_json::to_string(&r).context("report")?);
            Ok(())
        }
        Err(e @ TrainError::Cancelled { .. }) => {
            eprintln!("{e}");
            std::process::exit(130);
        }
        Err(e) => Err(e).with_context(|| format!("training on {}", a.data.display())),
    }
}
