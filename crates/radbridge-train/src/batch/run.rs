//! Running one shard of a batch: studies load and preprocess on a loader thread while the
//! engine encodes the previous one; each finished study is written at once (embeddings, then
//! its record), each failure is recorded with its named error and the batch goes on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use radbridge_model::analysis::{self, DiagnoseOptions, Engine, Prepared};
use radbridge_volume::{self as volume, atomic, CancelToken, OpenOptions};
use serde_json::json;

use super::error::chain;
use super::layout::{now, remove_if_present, Layout, Settings, ShardRecord};
use super::{embeddings, BatchError, Shard, Study};

/// How to run a shard.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub settings: Settings,
    pub shard: Shard,
    /// Recompute studies that are already finished.
    pub force: bool,
    /// Knowledge-bank entries listed per image and finding in each record.
    pub top_k: usize,
    /// Studies loaded and preprocessed ahead of the encoder (bounds memory).
    pub prefetch: usize,
    pub cancel: CancelToken,
    /// The folder holding the named PACS servers (`pacs-servers.json`), for manifest paths
    /// `pacs://SERVER/STUDY[/SERIES]`; None: such studies fail with a named error.
    pub pacs_dir: Option<std::path::PathBuf>,
}

/// Progress of a shard, for a progress bar.
#[derive(Debug)]
pub enum Event<'a> {
    /// The shard's studies, and how many of them are already finished.
    Start {
        studies: usize,
        skipped: usize,
    },
    Done(&'a Study),
    Failed(&'a Study, &'a str),
}

/// What a shard did: its record, also written to `parts/shard-<I>-of-<N>.json`.
pub type RunStats = ShardRecord;

/// A study loaded and prepared on the loader thread, or why it could not be.
struct Loaded {
    prepared: Prepared,
    chosen: usize,
    warnings: Vec<String>,
    load_s: f64,
    preprocess_s: f64,
}

fn load(
    study: &Study,
    settings: &Settings,
    cfg: &radbridge_model::preprocess::PreprocessConfig,
    cancel: &CancelToken,
    pacs: (&Path, Option<&Path>),
) -> Result<Loaded, String> {
    let t = Instant::now();
    let (path, series) = match super::pacs::PacsRef::of(&study.path) {
        Some(r) => {
            let r = r.map_err(|e| format!("{}: {e}", study.path.display()))?;
            let dir = super::pacs::fetch(&r, pacs.0, pacs.1, cancel)?;
            (dir, r.series_uid.clone().or(study.series.clone()))
        }
        None => (study.path.clone(), study.series.clone()),
    };
    let opts = OpenOptions { series, any_modality: settings.any_modality, cancel: cancel.clone(), ..Default::default() };
    let loaded = volume::open(&path, &opts).map_err(|e| chain(&e))?;
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let prepared = analysis::prepare(&loaded.volume, cfg).map_err(|e| chain(&e))?;
    Ok(Loaded {
        prepared,
        chosen: loaded.chosen,
        warnings: loaded.volume.warnings.iter().map(|w| w.message.clone()).collect(),
        load_s,
        preprocess_s: t.elapsed().as_secs_f64(),
    })
}

fn write_record(path: &Path, record: &ShardRecord) -> Result<(), BatchError> {
    let text = serde_json::to_string_pretty(record).unwrap_or_default() + "\n";
    atomic::write(path, text).map_err(BatchError::io(path, "write"))
}

/// Run this process's shard of `studies` (the whole [`super::plan`]) into `out`.
pub fn run(engine: &mut Engine, studies: &[Study], out: &Path, opts: &BatchOptions, on: &dyn Fn(Event)) -> Result<RunStats, BatchError> {
    let layout = Layout::new(out);
    layout.create()?;
    let settings = &opts.settings;
    let mine: Vec<&Study> = studies.iter().filter(|s| opts.shard.owns(s.index)).collect();
    let todo: Vec<&Study> = mine.iter().copied().filter(|s| opts.force || layout.finished(s, settings).is_none()).collect();
    let started = Instant::now();
    let mut record = ShardRecord {
        program: "radbridge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        settings: settings.clone(),
        shard: opts.shard,
        studies: mine.len(),
        done: 0,
        failed: 0,
        skipped: mine.len() - todo.len(),
        started: now(),
        finished: None,
        seconds: 0.0,
        stage_seconds: BTreeMap::new(),
        host: hostname(),
        device: radbridge_model::device::name(&engine.device),
    };
    let record_path = layout.shard_record(&opts.shard);
    write_record(&record_path, &record)?;
    on(Event::Start { studies: mine.len(), skipped: record.skipped });

    let cfg = engine.package.manifest.preprocess.clone();
    let diag_opts = DiagnoseOptions {
        labels: settings.labels.clone(),
        findings: settings.findings.clone(),
        top_k: opts.top_k,
        cancel: opts.cancel.clone(),
        ..Default::default()
    };
    let result: Result<(), BatchError> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<(&Study, Result<Loaded, String>)>(opts.prefetch.max(1));
        let cancel = opts.cancel.clone();
        let todo_ref = &todo;
        let cfg_ref = &cfg;
        let pacs = (out, opts.pacs_dir.as_deref());
        scope.spawn(move || {
            for s in todo_ref {
                if cancel.is_cancelled() {
                    break;
                }
                let r = load(s, settings, cfg_ref, &cancel, pacs);
                if tx.send((s, r)).is_err() {
                    break; // the engine side stopped
                }
            }
        });
        for (study, loaded) in rx {
            opts.cancel.check()?;
            let outcome = loaded.and_then(|l| {
                for w in &l.warnings {
                    tracing::warn!("{}: {w}", study.id);
                }
                let mut d = engine.diagnose_prepared(l.prepared, &diag_opts, &|_, _| {}).map_err(|e| {
                    if e.is_cancelled() {
                        String::new()
                    } else {
                        chain(&e)
                    }
                })?;
                if let Some(src) = d.source.as_mut() {
                    src.series_index = Some(l.chosen);
                }
                d.timings.insert(0, ("preprocess".into(), l.preprocess_s));
                d.timings.insert(0, ("load CT".into(), l.load_s));
                let emb = engine.last_image().map(embeddings::of_image).unwrap_or_default();
                Ok((d, emb))
            });
            opts.cancel.check()?;
            match outcome {
                Ok((d, emb)) => {
                    embeddings::write_study(&layout.embedding(study), &emb)?;
                    let p = layout.study_json(study);
                    let text = serde_json::to_string_pretty(&d).unwrap_or_default() + "\n";
                    atomic::write(&p, text).map_err(BatchError::io(&p, "write"))?;
                    remove_if_present(&layout.failure(study))?;
                    for (stage, s) in &d.timings {
                        *record.stage_seconds.entry(stage.clone()).or_default() += s;
                    }
                    record.done += 1;
                    on(Event::Done(study));
                }
                Err(error) => {
                    remove_if_present(&layout.study_json(study))?;
                    let p = layout.failure(study);
                    let text = serde_json::to_string_pretty(&json!({"id": study.id, "path": study.path, "error": error}))
                        .unwrap_or_default()
                        + "\n";
                    atomic::write(&p, text).map_err(BatchError::io(&p, "write"))?;
                    record.failed += 1;
                    on(Event::Failed(study, &error));
                }
            }
        }
        Ok(())
    });
    record.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            record.finished = Some(now());
            write_record(&record_path, &record)?;
            Ok(record)
        }
        Err(e) => {
            // Keep what was done; the record says the shard did not finish.
            let _ = write_record(&record_path, &record);
            Err(e)
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}
