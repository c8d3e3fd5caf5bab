//! `radbridge synth`: write a synthetic chest-CT corpus (volumes, masks, labels, reports).
//!
//! Contract: `radbridge synth --count N --seed S --output DIR [--chest-ct FILE]
//! [--chest-fraction F] [--threads T]`; the folder layout is "radbridge-synth-1"
//! (notes/interfaces.md, `radbridge_train::synth`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use radbridge_train::synth::{self, SynthOptions};
use radbridge_volume::CancelToken;

/// The real chest CT of the test data, relative to the repository root.
const DEFAULT_CHEST_CT: &str = "tests/data/totalsegmentator/chest_ct.nii.gz";

#[derive(Args)]
pub struct SynthArgs {
    /// Number of cases
    #[arg(long)]
    pub count: usize,
    /// Seed: the same seed gives byte-identical files
    #[arg(long)]
    pub seed: u64,
    /// Output folder (created; must be absent or empty)
    #[arg(long, short)]
    pub output: PathBuf,
    /// Real chest CT (NIfTI or DICOM) that lesions are also inserted into
    #[arg(long, default_value = DEFAULT_CHEST_CT)]
    pub chest_ct: PathBuf,
    /// Share of cases built on the real chest CT (0 = procedural only)
    #[arg(long, default_value_t = synth::DEFAULT_CHEST_FRACTION)]
    pub chest_fraction: f64,
    /// Multiply every finding's prevalence by this (1 = the default mix, about 6.8 findings
    /// per case; 0.35 gives about 2.5)
    #[arg(long, default_value_t = 1.0)]
    pub prevalence_scale: f64,
    /// Worker threads (default: all cores); does not change the output
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(a: &SynthArgs) -> Result<()> {
    let mut command = format!("radbridge synth --count {} --seed {} --output {}", a.count, a.seed, a.output.display());
    if a.chest_ct.as_os_str() != DEFAULT_CHEST_CT {
        command.push_str(&format!(" --chest-ct {}", a.chest_ct.display()));
    }
    if a.chest_fraction != synth::DEFAULT_CHEST_FRACTION {
        command.push_str(&format!(" --chest-fraction {}", a.chest_fraction));
    }
    if a.prevalence_scale != 1.0 {
        command.push_str(&format!(" --prevalence-scale {}", a.prevalence_scale));
    }
    if a.chest_fraction > 0.0 && !a.chest_ct.exists() {
        anyhow::bail!(
            "{}: base chest CT not found (run from the repository root, pass --chest-ct, or --chest-fraction 0)",
            a.chest_ct.display()
        );
    }
    let opts = SynthOptions {
        count: a.count,
        seed: a.seed,
        output: a.output.clone(),
        chest_ct: Some(a.chest_ct.clone()),
        chest_fraction: a.chest_fraction,
        prevalence_scale: a.prevalence_scale,
        command,
    };
    let pb = ProgressBar::new(a.count as u64);
    pb.set_style(ProgressStyle::with_template("synth [{bar:30}] {pos}/{len} cases {elapsed} eta {eta}").unwrap().progress_chars("=> "));
    let t0 = Instant::now();
    let progress = |done: usize, _total: usize| pb.set_position(done as u64);
    let cancel = CancelToken::default();
    let run = || synth::generate(&opts, &progress, &cancel);
    let summary = match a.threads {
        Some(n) => rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build().context("cannot start worker threads")?.install(run),
        None => run(),
    }
    .with_context(|| format!("{}: synth failed", a.output.display()))?;
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} cases ({} on the real chest CT) to {}: {:.1} MB, {:.1} s ({:.3} s/case)",
        summary.count,
        summary.chest_ct_cases,
        a.output.display(),
        summary.bytes as f64 / 1e6,
        secs,
        secs / summary.count as f64
    );
    let pos: Vec<String> = summary.positives.iter().map(|(l, n)| format!("{l}: {n}")).collect();
    eprintln!("positives per label: {}", pos.join(", "));
    Ok(())
}
