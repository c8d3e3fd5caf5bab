//! `radbridge`: the command-line face of the Radbridge core, for batch and headless use.
//!
//! Contract (relied on by checks outside the repo): subcommands `inspect`, `convert`,
//! `preprocess`, `bench load`, their flags, and the JSON field names of `inspect --json` and
//! `bench load --json`. Bad input exits non-zero with one line naming the file and the problem.
//! (`bench model --json` is read by `tests/reference/bench_models.py`.)

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "radbridge",
    version,
    about = "Radbridge: CT volumes and model inputs for zero-shot CT review (research use only, not for diagnosis)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Series found, chosen series geometry, HU range, warnings
    Inspect(cli::inspect::InspectArgs),
    /// Write the volume in HU as NIfTI (int16 where lossless, else float32) with its affine
    Convert(cli::convert::ConvertArgs),
    /// Write the exact model input tensor as .npy (float32, C order)
    Preprocess(cli::preprocess::PreprocessArgs),
    /// Embeddings of an image and prompts (JSON), from a model input tensor or a CT
    Embed(cli::embed::EmbedArgs),
    /// Zero-shot findings for a CT: scores, thresholds, knowledge-bank matches, heat maps
    Diagnose(cli::diagnose::DiagnoseArgs),
    /// Report summaries: short finding sentences and a status per label (built-in, or a configured chat endpoint)
    Summarize(cli::summarize::SummarizeArgs),
    /// The feedback store: record runs, review findings, recalibrate thresholds, export, audit log
    Feedback(cli::feedback::FeedbackArgs),
    /// Findings report (pdf, json, DICOM SR) from a feedback run or a diagnose JSON; de-identified by default
    Report(cli::report::ReportArgs),
    /// Write a synthetic chest-CT corpus (volumes, masks, labels.csv, reports) for training the demo model
    Synth(cli::synth::SynthArgs),
    /// Train BrgSA on a synthetic corpus and write a model directory (checkpoints, --resume)
    Train(cli::train::TrainArgs),
    /// Run a model over a cohort (manifest or folder): scores.csv, embeddings, a record per
    /// study, failures; resumable, sharded over Slurm job arrays or Kubernetes Indexed Jobs
    Batch(cli::batch::BatchArgs),
    /// Evaluate a model on a labelled corpus: AUROC, weighted F1, accuracy, precision, recall, AUPRC with bootstrap intervals
    Eval(cli::eval::EvalArgs),
    /// Knowledge-bank tools
    Bank(cli::bank::BankArgs),
    /// The study library: import a batch output, list the studies with their review status
    Library(cli::library::LibraryArgs),
    /// Rank stored studies by a sentence (the model's zero-shot score) or by similarity to a study
    Search(cli::search::SearchArgs),
    /// PACS: search, retrieve studies and send reports over DICOMweb or DIMSE; named servers
    Pacs(cli::pacs::PacsArgs),
    /// Import official weights (BrgSA best.ckpt, CT-CLIP_v2.pt, or safetensors) into a model directory
    ImportCheckpoint(cli::import_checkpoint::ImportArgs),
    /// Benchmarks
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    // Printing into a closed pipe (`radbridge diagnose … | head`) ends the process quietly, as
    // Unix tools do, instead of panicking in println!.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RADBRIDGE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Cli::parse();
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match &args.command {
        Command::Batch(a) => cli::batch::run(a),
        Command::Inspect(a) => ok(cli::inspect::run(a)),
        Command::Convert(a) => ok(cli::convert::run(a)),
        Command::Preprocess(a) => ok(cli::preprocess::run(a)),
        Command::Bench(a) => ok(cli::bench::run(a)),
        Command::ImportCheckpoint(a) => ok(cli::import_checkpoint::run(a)),
        Command::Embed(a) => ok(cli::embed::run(a)),
        Command::Diagnose(a) => ok(cli::diagnose::run(a)),
        Command::Summarize(a) => ok(cli::summarize::run(a)),
        Command::Feedback(a) => ok(cli::feedback::run(a)),
        Command::Report(a) => ok(cli::report::run(a)),
        Command::Synth(a) => ok(cli::synth::run(a)),
        Command::Train(a) => ok(cli::train::run(a)),
        Command::Eval(a) => ok(cli::eval::run(a)),
        Command::Bank(a) => ok(cli::bank::run(a)),
        Command::Library(a) => ok(cli::library::run(a)),
        Command::Search(a) => ok(cli::search::run(a)),
        Command::Pacs(a) => ok(cli::pacs::run(a)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the error chain joined.
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
