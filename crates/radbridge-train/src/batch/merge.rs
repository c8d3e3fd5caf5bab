//! Building a batch's top-level files from what its shards wrote: `scores.csv`,
//! `embeddings.safetensors`, `failures.csv` and `run.json`, in manifest order, streaming
//! (memory grows with the number of ids, not with the embeddings or the records).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use radbridge_volume::atomic::{self, AtomicFile};
use serde_json::{json, Value};

use super::embeddings::{read_embeddings, EmbeddingsWriter};
use super::layout::{remove_if_present, Layout, Settings, ShardRecord};
use super::{plan, BatchError, Study};

/// What a merge found.
#[derive(Debug)]
pub struct MergeResult {
    pub studies: usize,
    /// Studies with a result.
    pub succeeded: usize,
    /// Studies whose last attempt failed: (id, error).
    pub failed: Vec<(String, String)>,
    /// Studies no shard has finished yet: (id, shard index).
    pub missing: Vec<(String, usize)>,
    /// The `run.json` document.
    pub run: Value,
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> BatchError + '_ {
    move |e| BatchError::Io { path: path.to_path_buf(), what: "write", source: std::io::Error::other(e.to_string()) }
}

/// The newest run in a folder: its settings, its shards' records, and the record files of
/// runs with other settings (left out).
struct CurrentRun {
    settings: Settings,
    records: Vec<(PathBuf, ShardRecord)>,
    ignored: Vec<PathBuf>,
}

/// The records of the newest run in the folder (by start time), and the files of other runs.
fn current_run(layout: &Layout) -> Result<CurrentRun, BatchError> {
    let records = layout.shard_records()?;
    let newest = records
        .iter()
        .max_by(|a, b| a.1.started.total_cmp(&b.1.started))
        .ok_or_else(|| BatchError::NoRun(layout.out.clone()))?
        .1
        .settings
        .clone();
    let (current, other): (Vec<_>, Vec<_>) = records.into_iter().partition(|(_, r)| r.settings == newest);
    Ok(CurrentRun { settings: newest, records: current, ignored: other.into_iter().map(|(p, _)| p).collect() })
}

/// Merge the shards of the newest run in `out` (records of runs with other settings are
/// left out and named in `run.json`).
pub fn merge(out: &Path) -> Result<MergeResult, BatchError> {
    let layout = Layout::new(out);
    let CurrentRun { settings, records, ignored } = current_run(&layout)?;
    let studies = plan(&settings.source)?;
    let shard_count = records.iter().map(|(_, r)| r.shard.count).max().unwrap_or(1);

    // scores.csv, while sorting the studies into succeeded, failed and missing.
    let scores_path = out.join("scores.csv");
    let mut w = csv::Writer::from_writer(AtomicFile::create(&scores_path).map_err(BatchError::io(&scores_path, "write"))?);
    let mut header = vec!["VolumeName".to_string()];
    header.extend(settings.prompts.iter().map(|(l, _)| l.clone()));
    w.write_record(&header).map_err(csv_err(&scores_path))?;
    let mut ok: Vec<&Study> = Vec::new();
    let mut failed = Vec::new();
    let mut missing = Vec::new();
    for s in &studies {
        if let Some(d) = layout.finished(s, &settings) {
            let mut row = vec![s.id.clone()];
            row.extend(d.findings.iter().map(|f| f.finding.score.to_string()));
            w.write_record(&row).map_err(csv_err(&scores_path))?;
            ok.push(s);
        } else if let Ok(text) = std::fs::read_to_string(layout.failure(s)) {
            let error = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
                .unwrap_or_else(|| "failed (its failure record is unreadable)".into());
            failed.push((s, error));
        } else {
            missing.push(s);
        }
    }
    let file = w.into_inner().map_err(|e| BatchError::io(&scores_path, "write")(std::io::Error::other(e.to_string())))?;
    file.commit().map_err(BatchError::io(&scores_path, "write"))?;

    // failures.csv: failed, then missing studies.
    let failures_path = out.join("failures.csv");
    let mut w = csv::Writer::from_writer(AtomicFile::create(&failures_path).map_err(BatchError::io(&failures_path, "write"))?);
    w.write_record(["id", "path", "error"]).map_err(csv_err(&failures_path))?;
    for (s, e) in &failed {
        w.write_record([s.id.as_str(), &s.path.display().to_string(), e]).map_err(csv_err(&failures_path))?;
    }
    for s in &missing {
        let e = format!("no result: shard {} of {shard_count} has not finished this study", s.index % shard_count);
        w.write_record([s.id.as_str(), &s.path.display().to_string(), &e]).map_err(csv_err(&failures_path))?;
    }
    let file = w.into_inner().map_err(|e| BatchError::io(&failures_path, "write")(std::io::Error::other(e.to_string())))?;
    file.commit().map_err(BatchError::io(&failures_path, "write"))?;

    write_embeddings(&layout, &ok)?;

    let run = run_json(&settings, &records, &ignored, studies.len(), ok.len(), failed.len(), missing.len());
    let run_path = out.join("run.json");
    atomic::write(&run_path, serde_json::to_string_pretty(&run).unwrap_or_default() + "\n").map_err(BatchError::io(&run_path, "write"))?;
    Ok(MergeResult {
        studies: studies.len(),
        succeeded: ok.len(),
        failed: failed.into_iter().map(|(s, e)| (s.id.clone(), e)).collect(),
        missing: missing.into_iter().map(|s| (s.id.clone(), s.index % shard_count)).collect(),
        run,
    })
}

/// `embeddings.safetensors`: each tensor's rows in study order, read study by study.
fn write_embeddings(layout: &Layout, ok: &[&Study]) -> Result<(), BatchError> {
    let path = layout.out.join("embeddings.safetensors");
    let Some(first) = ok.first() else {
        // No study succeeded: no file (a stale one from an earlier merge would mislead).
        return remove_if_present(&path);
    };
    let (t, _) = read_embeddings(&layout.embedding(first))?;
    let tensors: Vec<(String, usize)> = t.iter().map(|(n, (_, v))| (n.clone(), v.len())).collect();
    let ids: Vec<String> = ok.iter().map(|s| s.id.clone()).collect();
    let mut w = EmbeddingsWriter::create(&path, &tensors, &ids)?;
    for (name, _) in &tensors {
        for s in ok {
            let p = layout.embedding(s);
            let (mut t, _) = read_embeddings(&p)?;
            let (_, v) = t.remove(name).ok_or_else(|| BatchError::Record { path: p.clone(), reason: format!("no tensor '{name}'") })?;
            w.push(&v)?;
        }
    }
    w.finish()
}

fn run_json(
    settings: &Settings,
    records: &[(PathBuf, ShardRecord)],
    ignored: &[PathBuf],
    studies: usize,
    succeeded: usize,
    failed: usize,
    missing: usize,
) -> Value {
    let done: usize = records.iter().map(|(_, r)| r.done).sum();
    let skipped: usize = records.iter().map(|(_, r)| r.skipped).sum();
    let total: f64 = records.iter().map(|(_, r)| r.seconds).sum();
    let start = records.iter().map(|(_, r)| r.started).fold(f64::INFINITY, f64::min);
    let end = records.iter().map(|(_, r)| r.started + r.seconds).fold(f64::NEG_INFINITY, f64::max);
    let wall = (end - start).max(0.0);
    let mut stages: BTreeMap<String, f64> = BTreeMap::new();
    for (_, r) in records {
        for (k, v) in &r.stage_seconds {
            *stages.entry(k.clone()).or_default() += v;
        }
    }
    let per_hour = if wall > 0.0 { done as f64 / wall * 3600.0 } else { 0.0 };
    json!({
        "program": "radbridge",
        "version": env!("CARGO_PKG_VERSION"),
        "model": settings.model,
        "label_set": settings.label_set,
        "labels": settings.labels,
        "findings": settings.findings,
        "prompts": settings.prompts.iter().map(|(l, p)| json!({"label": l, "prompt": p})).collect::<Vec<_>>(),
        "source": settings.source,
        "counts": {"studies": studies, "succeeded": succeeded, "done": done, "failed": failed, "skipped": skipped, "missing": missing},
        "seconds": {"total": total, "wall": wall, "stages": stages},
        "studies_per_hour": per_hour,
        "devices": records.iter().map(|(_, r)| r.device.clone()).filter(|d| !d.is_empty()).collect::<std::collections::BTreeSet<_>>(),
        "shards": records.iter().map(|(p, r)| json!({
            "file": p.file_name().map(|n| n.to_string_lossy().to_string()),
            "index": r.shard.index, "count": r.shard.count, "studies": r.studies,
            "done": r.done, "failed": r.failed, "skipped": r.skipped,
            "seconds": r.seconds, "finished": r.finished.is_some(), "host": r.host, "device": r.device,
        })).collect::<Vec<_>>(),
        "ignored_shard_records": ignored.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}
