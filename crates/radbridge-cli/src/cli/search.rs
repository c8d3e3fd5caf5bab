//! `radbridge search`: rank stored studies by a sentence or by another study. Contract:
//!
//! ```text
//! radbridge search --model <DIR> (--text "<sentence>" | --like <ID>) [--top K]
//!                  [--db <FILE> | --batch <BATCH_OUT>] [--json]
//! ```
//!
//! `--text` ranks by the model's own zero-shot score for the sentence (BrgSA:
//! ½·[cos(v,t) + cos(v̂,t)]; CT-CLIP: P(present) of its prompt pair), the number the app shows
//! for the same typed finding. `--like ID` ranks the other studies by the cosine of their image
//! embedding (BrgSA v, CT-CLIP latent) with that study's. `--json` prints `[{"id", "score",
//! "path"}]`, best first, ties broken by id: the batch id with `--batch`, the library's study id
//! (a number) with `--db`. Only embeddings made by the given model (its weights checksum) are
//! searched; library studies analysed with other models are reported as skipped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use radbridge_model::analysis::Engine;
use radbridge_model::package::ModelPackage;
use radbridge_model::retrieval::{tensors_for, EmbeddingIndex, EmbeddingMatrix, Hit};

#[derive(Args)]
#[command(group(ArgGroup::new("query").required(true).args(["text", "like"])))]
#[command(group(ArgGroup::new("from").args(["db", "batch"])))]
pub struct SearchArgs {
    /// The model directory whose embeddings are searched
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Rank studies by this sentence (as a typed finding is scored)
    #[arg(long, value_name = "SENTENCE")]
    text: Option<String>,
    /// Rank the other studies by similarity to this one (library study id, or batch id)
    #[arg(long, value_name = "ID")]
    like: Option<String>,
    /// How many studies to print
    #[arg(long, default_value_t = 10, value_name = "K")]
    top: usize,
    /// With --like: keep the query study in the ranking (it is its own best match)
    #[arg(long, requires = "like")]
    include_self: bool,
    /// The library to search (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3, else the
    /// platform's app-data folder)
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// Search a merged batch output's embeddings instead of the library
    #[arg(long, value_name = "BATCH_OUT")]
    batch: Option<PathBuf>,
    /// JSON: [{"id", "score", "path"}], best first
    #[arg(long)]
    json: bool,
}

/// The searched embeddings: the index, each row's path, and the ids as printed.
struct Searched {
    index: EmbeddingIndex,
    paths: Vec<String>,
    where_: String,
}

fn from_batch(out: &Path, checksum: &str, names: &[&str]) -> Result<Searched> {
    use radbridge_train::batch::{read_cohort, study_results};
    let cohort = read_cohort(out)?;
    if cohort.model.weights_sha256 != checksum {
        bail!(
            "{}: its embeddings were made by model '{}' (weights {}), not by the given model (weights {}); nothing was searched",
            out.display(),
            cohort.model.name,
            short(&cohort.model.weights_sha256),
            short(checksum)
        );
    }
    let paths = study_results(out, &cohort)
        .map(|r| r.into_iter().map(|s| s.diagnosis.source.map(|src| src.path).unwrap_or_default()).collect())
        .unwrap_or_else(|e| {
            tracing::warn!("{}: study records unreadable, paths left empty: {e}", out.display());
            vec![String::new(); cohort.ids.len()]
        });
    let mut index = EmbeddingIndex { ids: cohort.ids.clone(), ..Default::default() };
    for name in names {
        let (dim, values) = cohort.tensors.get(*name).with_context(|| {
            format!("{}: no '{name}' embeddings (made by another kind of model)", out.join("embeddings.safetensors").display())
        })?;
        let mut m = EmbeddingMatrix::with_capacity(*dim, cohort.ids.len());
        for row in values.chunks_exact(*dim) {
            m.push(row);
        }
        index.tensors.insert(name.to_string(), m);
    }
    Ok(Searched { index, paths, where_: out.display().to_string() })
}

fn from_db(db: Option<&Path>, checksum: &str, names: &[&str]) -> Result<Searched> {
    let store = super::common::open_store(db)?;
    let lib = store.embedding_index(checksum, names)?;
    let where_ = store.path().display().to_string();
    if lib.skipped > 0 {
        eprintln!("note: {} studies of {where_} analysed only with other models were skipped", lib.skipped);
    }
    if lib.index.is_empty() {
        bail!("{where_}: no study has image embeddings from this model (weights {}); analyse or import some first", short(checksum));
    }
    Ok(Searched { index: lib.index, paths: lib.paths, where_ })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

pub fn run(a: &SearchArgs) -> Result<()> {
    if let Some(t) = &a.text {
        if t.trim().is_empty() {
            bail!("search: the sentence is empty");
        }
    }
    let pkg = ModelPackage::open(&a.model)?;
    let checksum = pkg.manifest.weights_sha256.clone();
    let (names, like_tensor) = tensors_for(pkg.manifest.scoring);
    let t0 = Instant::now();
    let searched = match &a.batch {
        Some(b) => from_batch(b, &checksum, names)?,
        None => from_db(a.db.as_deref(), &checksum, names)?,
    };
    let loaded = t0.elapsed();
    let (hits, took): (Vec<Hit>, _) = match (&a.text, &a.like) {
        (Some(text), _) => {
            let mut engine = Engine::load(&a.model)?;
            let q = engine.text_query(text.trim())?;
            let t = Instant::now();
            let scores = searched.index.text_scores(&q).with_context(|| searched.where_.clone())?;
            (searched.index.rank(&scores, Some(a.top), None), t.elapsed())
        }
        (None, Some(id)) => {
            let t = Instant::now();
            let scores = searched.index.like_scores(id, like_tensor).with_context(|| searched.where_.clone())?;
            let exclude = (!a.include_self).then_some(id.as_str());
            (searched.index.rank(&scores, Some(a.top), exclude), t.elapsed())
        }
        (None, None) => unreachable!("clap requires --text or --like"),
    };
    tracing::info!(studies = searched.index.len(), load_ms = loaded.as_secs_f64() * 1e3, search_ms = took.as_secs_f64() * 1e3, "searched");
    let path_of = |h: &Hit| searched.paths.get(h.row).cloned().unwrap_or_default();
    if a.json {
        let rows: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| {
                let id = if searched.index.numeric_ids {
                    h.id.parse::<i64>().map(serde_json::Value::from).unwrap_or_else(|_| h.id.clone().into())
                } else {
                    h.id.clone().into()
                };
                serde_json::json!({"id": id, "score": h.score, "path": path_of(h)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:>4}  {:>8}  {:<24}  path", "rank", "score", "id");
        for (i, h) in hits.iter().enumerate() {
            println!("{:>4}  {:>8.4}  {:<24}  {}", i + 1, h.score, h.id, path_of(h));
        }
        eprintln!("{} of {} studies in {} ({:.1} ms)", hits.len(), searched.index.len(), searched.where_, took.as_secs_f64() * 1e3);
    }
    Ok(())
}
