//! `radbridge feedback …`: the feedback store from the command line (record a diagnose run,
//! review findings, show a run, recalibrate thresholds, export de-identified events and the
//! audit log). Contract: the subcommand and flag names below, and the JSON of `show --json` and
//! `recalibrate --json`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use radbridge_store::{self as feedback, audit, export, recalibrate, Reason, ReviewAction, RunRecord, Store};
use serde_json::json;

#[derive(Args)]
pub struct FeedbackArgs {
    /// Feedback database file (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3, else the
    /// platform's app-data folder, e.g. ~/.local/share/radbridge/radbridge.sqlite3)
    #[arg(long, global = true, value_name = "FILE")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    what: FeedbackCommand,
}

#[derive(Subcommand)]
enum FeedbackCommand {
    /// Record a run from `radbridge diagnose --json` output; prints the run id
    Record {
        /// The diagnose JSON file
        #[arg(long, value_name = "FILE")]
        from_json: PathBuf,
        /// The study (DICOM folder/file or NIfTI) the run analysed (default: source.path of the JSON)
        #[arg(long, value_name = "PATH")]
        study: Option<PathBuf>,
        /// The model directory used (for the bank checksum)
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Label-set name to record (e.g. ct-rate)
        #[arg(long)]
        label_set: Option<String>,
        /// StudyInstanceUID (the study key is derived from it instead of the path)
        #[arg(long)]
        study_uid: Option<String>,
    },
    /// Record a review event on one label of a run; prints the event id
    #[command(group(ArgGroup::new("action").required(true).args(["confirm", "false_positive", "missed", "undo"])))]
    Review {
        #[arg(long)]
        run: i64,
        #[arg(long)]
        label: String,
        /// The finding is present
        #[arg(long)]
        confirm: bool,
        /// The finding is absent (flagged wrongly)
        #[arg(long)]
        false_positive: bool,
        /// anatomy_mimic, artefact, device, post_operative or other (with --false-positive)
        #[arg(long)]
        reason: Option<Reason>,
        /// Free-text note (with --false-positive)
        #[arg(long)]
        note: Option<String>,
        /// A finding the model missed, described in words
        #[arg(long, value_name = "TEXT")]
        missed: Option<String>,
        /// Withdraw an earlier event (its id)
        #[arg(long, value_name = "EVENT")]
        undo: Option<i64>,
        #[arg(long, value_name = "NAME")]
        reviewer: Option<String>,
    },
    /// A run: findings with their current verdicts, and its review events
    Show {
        #[arg(long)]
        run: i64,
        #[arg(long)]
        json: bool,
    },
    /// Propose per-label thresholds from the recorded verdicts; --apply writes them, --revert undoes the last apply
    Recalibrate {
        /// Model directory (its thresholds.json is read, and written with --apply / --revert)
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        #[arg(long, conflicts_with = "revert")]
        apply: bool,
        #[arg(long)]
        revert: bool,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "NAME")]
        reviewer: Option<String>,
    },
    /// De-identified review events with scores as JSON lines (study key only: no paths, no names)
    Export {
        #[arg(long, short, value_name = "FILE.jsonl")]
        output: PathBuf,
        #[arg(long, value_name = "NAME")]
        reviewer: Option<String>,
    },
    /// The audit log as JSON lines
    Audit {
        #[arg(long, short, value_name = "FILE.jsonl")]
        output: PathBuf,
        #[arg(long, value_name = "NAME")]
        reviewer: Option<String>,
    },
    /// Durability test: append COUNT confirm events to a run, printing each id once committed
    #[command(hide = true)]
    Stress {
        #[arg(long)]
        run: i64,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value = "stress")]
        label: String,
        /// Pause after each event, as a real writer does (SQLite's lock is not fair: a writer
        /// that commits back to back can starve another past its busy timeout)
        #[arg(long, default_value_t = 1)]
        pause_ms: u64,
    },
}

fn open(db: &Option<PathBuf>) -> Result<Store> {
    super::common::open_store(db.as_deref())
}

fn fmt_opt(x: Option<f32>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

pub fn run(a: &FeedbackArgs) -> Result<()> {
    let mut store = open(&a.db)?;
    match &a.what {
        FeedbackCommand::Record { from_json, study, model, label_set, study_uid } => {
            let text = std::fs::read_to_string(from_json).with_context(|| format!("{}: cannot read", from_json.display()))?;
            let diag: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", from_json.display()))?;
            let mut rec = RunRecord::from_diagnosis_json(diag, study.as_deref(), model.as_deref())
                .with_context(|| from_json.display().to_string())?;
            if label_set.is_some() {
                rec.label_set = label_set.clone();
            }
            if study_uid.is_some() {
                rec.study_uid = study_uid.clone();
            }
            rec.origin = radbridge_store::library::Origin::Cli;
            let id = store.record_run(&rec)?;
            println!("{id}");
        }
        FeedbackCommand::Review { run, label, confirm, false_positive, reason, note, missed, undo, reviewer } => {
            if !*false_positive && (reason.is_some() || note.is_some()) {
                bail!("--reason and --note go with --false-positive");
            }
            let action = if *confirm {
                ReviewAction::Confirm
            } else if *false_positive {
                ReviewAction::FalsePositive { reason: *reason, note: note.clone() }
            } else if let Some(text) = missed {
                ReviewAction::Missed { text: text.clone() }
            } else if let Some(event) = undo {
                ReviewAction::Undo { event: *event }
            } else {
                bail!("give one of --confirm, --false-positive, --missed, --undo");
            };
            let id = store.review(*run, label, &action, reviewer.as_deref())?;
            println!("{id}");
        }
        FeedbackCommand::Show { run, json } => {
            let rec = store.run(*run)?;
            let verdicts = store.verdicts(*run)?;
            let events = store.events(*run)?;
            store.audit(None, feedback::AuditAction::View, &json!({"run_id": run, "via": "cli"}))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&json!({"run": rec, "verdicts": verdicts, "events": events}))?);
            } else {
                println!(
                    "run {}  {}  study {}  ({})",
                    run,
                    rec.created_at.as_deref().unwrap_or(""),
                    rec.study_key.as_deref().unwrap_or(""),
                    rec.study_path
                );
                println!(
                    "model {}  weights {}  bank {}  app {}",
                    rec.model_name,
                    rec.model_checksum,
                    rec.bank_checksum.as_deref().unwrap_or("-"),
                    rec.app_version
                );
                println!("{:<40} {:>8} {:>9} {:>7}  verdict", "label", "score", "threshold", "flagged");
                for f in &rec.findings {
                    let v = verdicts.iter().find(|v| v.label == f.label);
                    let vs = v
                        .map(|v| format!("{:?}{}", v.verdict, v.reason.map(|r| format!(" ({})", r.as_str())).unwrap_or_default()))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<40} {:>8.4} {:>9} {:>7}  {}",
                        f.label,
                        f.score,
                        fmt_opt(f.threshold),
                        f.flagged.map(|b| if b { "yes" } else { "no" }).unwrap_or("-"),
                        vs
                    );
                }
                for v in verdicts.iter().filter(|v| rec.finding(&v.label).is_none()) {
                    println!("{:<40} {:>8} {:>9} {:>7}  {:?}: {}", v.label, "-", "-", "-", v.verdict, v.text.as_deref().unwrap_or(""));
                }
                println!("{} review events", events.len());
                for e in &events {
                    println!(
                        "  #{} {} {} {} {}",
                        e.id,
                        e.at,
                        e.label,
                        serde_json::to_string(&e.action)?,
                        e.reviewer.as_deref().unwrap_or("")
                    );
                }
            }
        }
        FeedbackCommand::Recalibrate { model, apply, revert, json, reviewer } => {
            let actor = reviewer.as_deref();
            let out = if *revert {
                let v = recalibrate::revert(&mut store, model, actor)?;
                if !*json {
                    println!("reverted recalibration {} (version {}): {} restored", v.reverts.unwrap_or(0), v.id, v.file);
                }
                json!({"reverted": v.reverts, "version": v, "proposals": recalibrate::propose(&store, model)?})
            } else {
                let proposals = recalibrate::propose(&store, model)?;
                let applied = if *apply { recalibrate::apply(&mut store, model, actor)? } else { None };
                if !*json {
                    println!(
                        "{:<40} {:>10} {:>10} {:>4} {:>4} {:>9}  note",
                        "label", "current", "proposed", "pos", "neg", "FP before→after"
                    );
                    for p in &proposals {
                        println!(
                            "{:<40} {:>10} {:>10} {:>4} {:>4} {:>6}→{:<3}  {}",
                            p.label,
                            fmt_opt(p.current),
                            if p.changed { fmt_opt(p.proposed) } else { "=".into() },
                            p.positives,
                            p.negatives,
                            p.false_positives_flagged_before,
                            p.false_positives_flagged_after,
                            p.note
                        );
                    }
                    match (&applied, apply) {
                        (Some(v), _) => println!(
                            "applied as version {}: {} written ({} labels changed); undo with --revert",
                            v.id,
                            v.file,
                            v.proposals.len()
                        ),
                        (None, true) => println!("nothing to apply"),
                        (None, false) => println!("(proposal only; --apply writes it)"),
                    }
                }
                json!({"proposals": proposals, "applied": applied})
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
        }
        FeedbackCommand::Export { output, reviewer } => {
            let n = export::export_jsonl(&mut store, output, reviewer.as_deref())?;
            eprintln!("{n} review events written to {}", output.display());
        }
        FeedbackCommand::Audit { output, reviewer } => {
            let n = audit::export_jsonl(&mut store, output, reviewer.as_deref())?;
            eprintln!("{n} audit entries written to {}", output.display());
        }
        FeedbackCommand::Stress { run, count, label, pause_ms } => {
            let stdout = std::io::stdout();
            for _ in 0..*count {
                let id = store.review(*run, label, &ReviewAction::Confirm, Some("stress"))?;
                let mut out = stdout.lock();
                writeln!(out, "{id}")?;
                out.flush()?;
                drop(out);
                std::thread::sleep(std::time::Duration::from_millis(*pause_ms));
            }
        }
    }
    Ok(())
}
