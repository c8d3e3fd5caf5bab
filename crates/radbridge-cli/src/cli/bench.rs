//! `radbridge bench load|model`: loading and model timings. Contract: the JSON field names of
//! `bench load --json` (and `bench model --json`, read by `tests/reference/bench_models.py`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
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
    /// Time the library's text search (BrgSA rule over v and v̂) and similar-study search over
    /// synthetic embeddings held in memory; peak RSS
    Search {
        /// Number of studies
        #[arg(long, default_value_t = 100_000)]
        studies: usize,
        /// Embedding width (full-size BrgSA: 768)
        #[arg(long, default_value_t = 768)]
        dim: usize,
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Write the embeddings and the query (raw little-endian float32: v rows, v̂ rows, t) for a
        /// peer to search the same data (tests/reference/bench_search.py)
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: &BenchArgs) -> Result<()> {
    match &a.what {
        BenchCommand::Search { studies, dim, repeats, top, write, json } => {
            bench_search(*studies, *dim, *repeats, *top, write.as_deref(), *json)
        }
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

/// Synthetic embedding values from a fixed seed (a sum of three uniforms, roughly Gaussian).
fn synthetic(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    move || uniform() + uniform() + uniform() - 1.5
}

fn bench_search(studies: usize, dim: usize, repeats: usize, top: usize, write: Option<&Path>, as_json: bool) -> Result<()> {
    use radbridge_model::retrieval::{EmbeddingIndex, EmbeddingMatrix, TextQuery};
    use std::io::Write;
    use std::time::Instant;
    anyhow::ensure!(studies > 1 && dim > 0 && repeats > 0, "bench search: --studies > 1, --dim > 0 and --repeats > 0");
    let t0 = Instant::now();
    // Rows go straight into the index (and the file), so memory holds the index only.
    let mut file = match write {
        Some(p) => Some((p, radbridge_volume::atomic::AtomicFile::create(p).with_context(|| format!("{}: cannot write", p.display()))?)),
        None => None,
    };
    let mut index = EmbeddingIndex { ids: (0..studies).map(|i| format!("s{i:06}")).collect(), ..Default::default() };
    let mut row = vec![0f32; dim];
    let mut bytes = Vec::with_capacity(dim * 4);
    for (name, seed) in [("v", 1), ("v_hat", 2)] {
        let mut gen = synthetic(seed);
        let mut m = EmbeddingMatrix::with_capacity(dim, studies);
        for _ in 0..studies {
            row.iter_mut().for_each(|x| *x = gen());
            m.push(&row);
            if let Some((p, f)) = file.as_mut() {
                bytes.clear();
                row.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
                f.write_all(&bytes).with_context(|| format!("{}: cannot write", p.display()))?;
            }
        }
        index.tensors.insert(name.to_string(), m);
    }
    let mut gen = synthetic(3);
    let t: Vec<f32> = (0..dim).map(|_| gen()).collect();
    if let Some((p, mut f)) = file {
        bytes.clear();
        t.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        f.write_all(&bytes).with_context(|| format!("{}: cannot write", p.display()))?;
        f.commit().with_context(|| format!("{}: cannot write", p.display()))?;
    }
    let build_s = t0.elapsed().as_secs_f64();
    let q = TextQuery::Brgsa { t };
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let mut text_ms = Vec::new();
    let mut hits = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let scores = index.text_scores(&q)?;
        hits = index.rank(&scores, Some(top), None);
        text_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut like_ms = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let scores = index.like_scores("s000007", "v")?;
        let _ = index.rank(&scores, Some(top), Some("s000007"));
        like_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let r = serde_json::json!({
        "studies": studies,
        "dim": dim,
        "repeats": repeats,
        "threads": rayon::current_num_threads(),
        "index_mb": index.bytes() as f64 / 1e6,
        "build_s": build_s,
        "text_ms_median": median(text_ms),
        "like_ms_median": median(like_ms),
        "peak_rss_mb": radbridge_model::bench::peak_rss_bytes() as f64 / 1e6,
        "top": hits.iter().map(|h| serde_json::json!({"id": h.id, "score": h.score})).collect::<Vec<_>>(),
    });
    if as_json {
        println!("{r}");
    } else {
        println!(
            "{studies} studies × {dim}: text search {:.1} ms, similar-study search {:.1} ms (median of {repeats}); index {:.0} MB, peak RSS {:.0} MB",
            r["text_ms_median"].as_f64().unwrap_or(0.0),
            r["like_ms_median"].as_f64().unwrap_or(0.0),
            r["index_mb"].as_f64().unwrap_or(0.0),
            r["peak_rss_mb"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
