//! `radbridge library …`: the study library in the feedback database. Contract:
//!
//! ```text
//! radbridge library import <BATCH_OUT> [--db <FILE>]   (every study of a batch output; idempotent)
//! radbridge library list [--db <FILE>] [--json]
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use radbridge_store::library::BatchResult;
use radbridge_store::RunRecord;

#[derive(Args)]
pub struct LibraryArgs {
    /// Feedback database file (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3, else the
    /// platform's app-data folder)
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    what: LibraryCommand,
}

#[derive(Subcommand)]
enum LibraryCommand {
    /// Add every study of a merged batch output (its records and embeddings); importing the
    /// same results again adds nothing
    Import {
        /// The batch output folder (`radbridge batch --output`)
        #[arg(value_name = "BATCH_OUT")]
        batch: PathBuf,
    },
    /// The studies of the library with their latest analysis and review status
    List {
        /// JSON (an array of studies; no patient names or IDs)
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: &LibraryArgs) -> Result<()> {
    match &a.what {
        LibraryCommand::Import { batch } => import(batch, a.db.as_deref()),
        LibraryCommand::List { json } => list(*json, a.db.as_deref()),
    }
}

fn import(batch: &std::path::Path, db: Option<&std::path::Path>) -> Result<()> {
    use radbridge_train::batch::{read_cohort, study_results};
    let cohort = read_cohort(batch)?;
    let results = study_results(batch, &cohort)?;
    let mut items = Vec::with_capacity(results.len());
    for r in results {
        let mut run =
            RunRecord::from_diagnosis(&r.diagnosis, None, None).with_context(|| format!("{}: study '{}'", batch.display(), r.id))?;
        run.embeddings = r.embeddings;
        items.push(BatchResult { id: r.id, run });
    }
    let mut store = super::common::open_store(db)?;
    let s = store.import_batch(batch, &items)?;
    eprintln!(
        "{}: {} result(s) of {} studies: {} added, {} already in the library ({})",
        batch.display(),
        items.len(),
        s.studies,
        s.added,
        s.unchanged,
        store.path().display()
    );
    Ok(())
}

fn list(json: bool, db: Option<&std::path::Path>) -> Result<()> {
    let store = super::common::open_store(db)?;
    let studies = store.library()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&studies)?);
        return Ok(());
    }
    println!("{:>6}  {:<10}  {:<4}  {:<28}  {:<16}  {:>7}  {:<10}  path", "id", "date", "mod", "description", "model", "flagged", "status");
    for s in &studies {
        let status = serde_json::to_value(s.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let cut = |t: &Option<String>, n: usize| t.as_deref().unwrap_or("-").chars().take(n).collect::<String>();
        println!(
            "{:>6}  {:<10}  {:<4}  {:<28}  {:<16}  {:>7}  {:<10}  {}",
            s.id,
            cut(&s.study_date, 10),
            cut(&s.modality, 4),
            cut(&s.description, 28),
            cut(&s.model_name, 16),
            if s.last_run.is_some() { format!("{}/{}", s.decided, s.flagged) } else { "-".into() },
            status,
            s.path
        );
    }
    eprintln!("{} studies in {}", studies.len(), store.path().display());
    Ok(())
}
