//! Recalibration: per-label thresholds proposed from the recorded verdicts; applying is
//! explicit, versioned, recorded and reversible.
//!
//! The rule ([`propose_label`]) keeps the sensitivity measured on the reviewed findings and
//! removes the confirmed false positives it can: a finding is flagged when `score > threshold`;
//! positives are findings confirmed present (confirm or missed verdicts), negatives those marked
//! false positive. With `m` the lowest positive score flagged at the current threshold, the
//! threshold is raised just above (next `f32`) the highest negative score that is flagged and
//! below `m` — never to or above `m`, so every flagged positive stays flagged. It is never
//! lowered. Without a flagged positive (sensitivity cannot be checked) or without a removable
//! false positive nothing changes.
//!
//! Evidence is taken from the runs of the same model weights (`weights_sha256` of the model
//! directory). [`apply`] rewrites the model directory's thresholds file (only the changed
//! labels' values, plus a `recalibration` note) and stores the previous file content in
//! `thresholds_versions`; [`revert`] restores the content of the latest applied version that
//! is not yet reverted (refusing if the file was changed meanwhile). Both are audited as
//! `settings_change`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{audit, derive_verdicts, FeedbackError, Result, Store, VerdictKind, NOW};
use radbridge_model::package::ModelPackage;

/// A proposed threshold for one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Proposal {
    pub label: String,
    /// The threshold in the model's thresholds file now.
    pub current: Option<f32>,
    /// The proposed threshold (equal to `current` when nothing changes).
    pub proposed: Option<f32>,
    pub changed: bool,
    /// Reviewed findings with a score: confirmed present (confirm or missed) / false positive.
    pub positives: usize,
    pub negatives: usize,
    /// Confirmed false positives flagged at the current / proposed threshold.
    pub false_positives_flagged_before: usize,
    pub false_positives_flagged_after: usize,
    /// Positives flagged / positives, at the current and at the proposed threshold.
    pub sensitivity_before: Option<f64>,
    pub sensitivity_after: Option<f64>,
    /// The lowest flagged positive score (the bound the threshold stays below).
    pub lowest_flagged_positive: Option<f32>,
    /// Why (or why not).
    pub note: String,
}

/// The next representable `f32` above `x` (`f32::next_up`, which needs Rust 1.86).
pub fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

fn flagged(s: f32, t: f32) -> bool {
    s > t
}

fn sensitivity(pos: &[f32], t: f32) -> Option<f64> {
    (!pos.is_empty()).then(|| pos.iter().filter(|&&s| flagged(s, t)).count() as f64 / pos.len() as f64)
}

/// The rule of this module on one label's evidence (pure; see the module docs).
pub fn propose_label(label: &str, current: Option<f32>, positives: &[f32], negatives: &[f32]) -> Proposal {
    let mut p = Proposal {
        label: label.to_string(),
        current,
        proposed: current,
        changed: false,
        positives: positives.len(),
        negatives: negatives.len(),
        false_positives_flagged_before: 0,
        false_positives_flagged_after: 0,
        sensitivity_before: None,
        sensitivity_after: None,
        lowest_flagged_positive: None,
        note: String::new(),
    };
    let Some(t0) = current.filter(|t| t.is_finite()) else {
        p.note = "no current threshold for this label".into();
        return p;
    };
    let fp_at = |t: f32| negatives.iter().filter(|&&s| flagged(s, t)).count();
    p.false_positives_flagged_before = fp_at(t0);
    p.false_positives_flagged_after = p.false_positives_flagged_before;
    p.sensitivity_before = sensitivity(positives, t0);
    p.sensitivity_after = p.sensitivity_before;
    let m = positives.iter().copied().filter(|&s| flagged(s, t0)).fold(f32::INFINITY, f32::min);
    if !m.is_finite() {
        p.note = "no confirmed finding flagged at the current threshold: sensitivity cannot be checked, unchanged".into();
        return p;
    }
    p.lowest_flagged_positive = Some(m);
    let removable = negatives.iter().copied().filter(|&s| flagged(s, t0) && s < m).fold(f32::NEG_INFINITY, f32::max);
    if !removable.is_finite() {
        p.note = if p.false_positives_flagged_before > 0 {
            "every flagged false positive scores at or above the lowest confirmed finding: unchanged".into()
        } else {
            "no flagged false positives: unchanged".into()
        };
        return p;
    }
    let mut t1 = next_up(removable);
    if !flagged(m, t1) {
        // `removable` and `m` are adjacent floats: the threshold at `removable` itself already
        // unflags it (score > threshold) and keeps `m` flagged.
        t1 = removable;
    }
    p.proposed = Some(t1);
    p.changed = true;
    p.false_positives_flagged_after = fp_at(t1);
    p.sensitivity_after = sensitivity(positives, t1);
    p.note = format!(
        "raised above the highest false positive below the lowest confirmed finding ({m}): {} of {} flagged false positives removed",
        p.false_positives_flagged_before - p.false_positives_flagged_after,
        p.false_positives_flagged_before
    );
    p
}

/// Reviewed scores of one label: (positives, negatives).
pub type Evidence = (Vec<f32>, Vec<f32>);

/// Reviewed scores per label for one model's weights.
pub fn evidence(store: &Store, model_checksum: &str) -> Result<BTreeMap<String, Evidence>> {
    let conn = store.connection();
    let mut st = store.sql(
        conn.prepare("SELECT DISTINCT r.id FROM runs r JOIN review_events e ON e.run_id = r.id WHERE r.model_checksum = ?1 ORDER BY r.id"),
    )?;
    let ids = store.sql(st.query_map([model_checksum], |r| r.get::<_, i64>(0)).and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>()))?;
    let mut out: BTreeMap<String, Evidence> = BTreeMap::new();
    for id in ids {
        let run = store.run(id)?;
        let events = store.events(id)?;
        for v in derive_verdicts(&events, &run.findings) {
            let Some(score) = v.score.filter(|s| s.is_finite()) else { continue };
            let e = out.entry(v.label).or_default();
            match v.verdict {
                VerdictKind::Confirmed | VerdictKind::Missed => e.0.push(score),
                VerdictKind::FalsePositive => e.1.push(score),
            }
        }
    }
    Ok(out)
}

/// A model directory's identity and thresholds file.
struct ModelThresholds {
    dir: String,
    checksum: String,
    file: PathBuf,
    /// Raw file content (None when the file does not exist).
    content: Option<String>,
    current: BTreeMap<String, f32>,
}

fn model_thresholds(model_dir: &Path) -> Result<ModelThresholds> {
    let pkg = ModelPackage::open(model_dir).map_err(|e| FeedbackError::Model { path: model_dir.to_path_buf(), msg: e.to_string() })?;
    let file = pkg.path(pkg.manifest.thresholds.as_deref().unwrap_or("thresholds.json"));
    let content = match std::fs::read_to_string(&file) {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(FeedbackError::Io { path: file, source }),
    };
    let mut current = BTreeMap::new();
    if let Some(c) = &content {
        let v: Value =
            serde_json::from_str(c).map_err(|e| FeedbackError::Thresholds { path: file.clone(), msg: format!("invalid JSON: {e}") })?;
        let Some(map) = v["thresholds"].as_object() else {
            return Err(FeedbackError::Thresholds { path: file, msg: "no \"thresholds\" object".into() });
        };
        for (k, x) in map {
            if let Some(x) = x.as_f64() {
                current.insert(k.clone(), x as f32);
            }
        }
    }
    let dir = std::fs::canonicalize(model_dir).unwrap_or_else(|_| model_dir.to_path_buf()).to_string_lossy().into_owned();
    Ok(ModelThresholds { dir, checksum: pkg.manifest.weights_sha256.clone(), file, content, current })
}

/// Proposals for every label that has a current threshold or reviewed evidence, in label order.
pub fn propose(store: &Store, model_dir: &Path) -> Result<Vec<Proposal>> {
    let m = model_thresholds(model_dir)?;
    proposals_for(store, &m)
}

fn proposals_for(store: &Store, m: &ModelThresholds) -> Result<Vec<Proposal>> {
    let ev = evidence(store, &m.checksum)?;
    let mut labels: Vec<&String> = m.current.keys().chain(ev.keys()).collect();
    labels.sort();
    labels.dedup();
    let empty = (Vec::new(), Vec::new());
    Ok(labels
        .into_iter()
        .map(|l| {
            let (p, n) = ev.get(l).unwrap_or(&empty);
            propose_label(l, m.current.get(l).copied(), p, n)
        })
        .collect())
}

/// One row of `thresholds_versions`.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct ThresholdsVersion {
    pub id: i64,
    pub at: String,
    pub actor: Option<String>,
    /// "apply" or "revert".
    pub kind: String,
    pub model_dir: String,
    pub model_checksum: String,
    /// The thresholds file written.
    pub file: String,
    /// File content before / after (None: no file).
    pub previous_content: Option<String>,
    pub new_content: Option<String>,
    /// For a revert: the apply it undid.
    pub reverts: Option<i64>,
    /// For an apply: the proposals applied (changed labels).
    pub proposals: Vec<Proposal>,
}

/// Shortest decimal that reads back as the same `f32`, as a JSON number.
fn f32_json(x: f32) -> Value {
    format!("{x}").parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
}

fn new_content(m: &ModelThresholds, changed: &[Proposal], version_id: i64) -> Result<String> {
    let mut v: Value = match &m.content {
        Some(c) => {
            serde_json::from_str(c).map_err(|e| FeedbackError::Thresholds { path: m.file.clone(), msg: format!("invalid JSON: {e}") })?
        }
        None => json!({"version": 1, "source": "radbridge feedback recalibrate", "thresholds": {}}),
    };
    for p in changed {
        if let Some(t) = p.proposed {
            v["thresholds"][&p.label] = f32_json(t);
        }
    }
    v["recalibration"] = json!({
        "thresholds_version": version_id,
        "rule": "raised above confirmed false positives below the lowest confirmed finding (radbridge feedback recalibrate)",
        "labels": changed.iter().map(|p| json!({"label": p.label, "from": p.current.map(f32_json), "to": p.proposed.map(f32_json), "positives": p.positives, "negatives": p.negatives})).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    Ok(s)
}

fn restore(file: &Path, content: Option<&str>) -> Result<()> {
    match content {
        Some(c) => crate::files::write_file(file, c.as_bytes()),
        None => match std::fs::remove_file(file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FeedbackError::Io { path: file.to_path_buf(), source }),
        },
    }
}

/// Apply the current proposals that change a threshold: write the thresholds file and record the
/// version (with the previous content). `Ok(None)` when nothing would change.
pub fn apply(store: &mut Store, model_dir: &Path, actor: Option<&str>) -> Result<Option<ThresholdsVersion>> {
    let m = model_thresholds(model_dir)?;
    let changed: Vec<Proposal> = proposals_for(store, &m)?.into_iter().filter(|p| p.changed).collect();
    if changed.is_empty() {
        return Ok(None);
    }
    let db = store.path().to_path_buf();
    let e = |source| FeedbackError::Sqlite { path: db.clone(), source };
    let tx = store.tx()?;
    let next_id: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM thresholds_versions", [], |r| r.get(0)).map_err(e)?;
    let content = new_content(&m, &changed, next_id)?;
    let props = serde_json::to_string(&changed).unwrap_or_else(|_| "[]".into());
    tx.execute(
        &format!("INSERT INTO thresholds_versions (id, created_at, actor, kind, model_dir, model_checksum, file, previous_content, new_content, reverts, proposals) VALUES (?1, {NOW}, ?2, 'apply', ?3, ?4, ?5, ?6, ?7, NULL, ?8)"),
        params![next_id, actor.map(str::to_string).or_else(audit::os_user), m.dir, m.checksum, m.file.to_string_lossy(), m.content, content, props],
    )
    .map_err(e)?;
    audit::insert(&tx, actor, audit::AuditAction::SettingsChange, &json!({"what": "thresholds", "kind": "apply", "thresholds_version": next_id, "model_checksum": m.checksum, "labels": changed.iter().map(|p| json!({"label": p.label, "from": p.current, "to": p.proposed})).collect::<Vec<_>>()})).map_err(e)?;
    crate::files::write_file(&m.file, content.as_bytes())?;
    if let Err(err) = tx.commit() {
        // Not recorded: put the file back as it was.
        restore(&m.file, m.content.as_deref())?;
        return Err(e(err));
    }
    tracing::info!(version = next_id, file = %m.file.display(), labels = changed.len(), "applied recalibrated thresholds");
    Ok(Some(version(store, next_id)?))
}

/// Restore the thresholds file as it was before the latest applied, not yet reverted version
/// for this model directory. Errors when there is none or when the file no longer holds what
/// that version wrote.
pub fn revert(store: &mut Store, model_dir: &Path, actor: Option<&str>) -> Result<ThresholdsVersion> {
    let m = model_thresholds(model_dir)?;
    let db = store.path().to_path_buf();
    let e = |source| FeedbackError::Sqlite { path: db.clone(), source };
    let tx = store.tx()?;
    let last: Option<(i64, Option<String>, Option<String>)> = tx
        .query_row(
            "SELECT v.id, v.previous_content, v.new_content FROM thresholds_versions v
             WHERE v.kind = 'apply' AND v.model_dir = ?1 AND NOT EXISTS (SELECT 1 FROM thresholds_versions r WHERE r.reverts = v.id)
             ORDER BY v.id DESC LIMIT 1",
            [&m.dir],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(e)?;
    let Some((id, previous, written)) = last else {
        return Err(FeedbackError::Thresholds { path: m.file, msg: "no applied recalibration to revert for this model directory".into() });
    };
    if written != m.content {
        return Err(FeedbackError::Thresholds {
            path: m.file,
            msg: format!("changed since recalibration {id} was applied; not reverting (edit it by hand)"),
        });
    }
    tx.execute(
        &format!("INSERT INTO thresholds_versions (created_at, actor, kind, model_dir, model_checksum, file, previous_content, new_content, reverts, proposals) VALUES ({NOW}, ?1, 'revert', ?2, ?3, ?4, ?5, ?6, ?7, '[]')"),
        params![actor.map(str::to_string).or_else(audit::os_user), m.dir, m.checksum, m.file.to_string_lossy(), m.content, previous, id],
    )
    .map_err(e)?;
    let rid = tx.last_insert_rowid();
    audit::insert(
        &tx,
        actor,
        audit::AuditAction::SettingsChange,
        &json!({"what": "thresholds", "kind": "revert", "thresholds_version": rid, "reverts": id, "model_checksum": m.checksum}),
    )
    .map_err(e)?;
    restore(&m.file, previous.as_deref())?;
    if let Err(err) = tx.commit() {
        restore(&m.file, m.content.as_deref())?;
        return Err(e(err));
    }
    tracing::info!(version = rid, reverts = id, file = %m.file.display(), "reverted recalibrated thresholds");
    version(store, rid)
}

fn row_to_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<ThresholdsVersion> {
    let props: String = r.get(10)?;
    Ok(ThresholdsVersion {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        kind: r.get(3)?,
        model_dir: r.get(4)?,
        model_checksum: r.get(5)?,
        file: r.get(6)?,
        previous_content: r.get(7)?,
        new_content: r.get(8)?,
        reverts: r.get(9)?,
        proposals: serde_json::from_str(&props).unwrap_or_default(),
    })
}

const VERSION_COLS: &str =
    "id, created_at, actor, kind, model_dir, model_checksum, file, previous_content, new_content, reverts, proposals";

fn version(store: &Store, id: i64) -> Result<ThresholdsVersion> {
    store.sql(store.connection().query_row(&format!("SELECT {VERSION_COLS} FROM thresholds_versions WHERE id = ?1"), [id], row_to_version))
}

/// Every recorded version (for one model directory when given), oldest first.
pub fn versions(store: &Store, model_dir: Option<&Path>) -> Result<Vec<ThresholdsVersion>> {
    let dir = model_dir.map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()).to_string_lossy().into_owned());
    let mut st = store.sql(
        store
            .connection()
            .prepare(&format!("SELECT {VERSION_COLS} FROM thresholds_versions WHERE ?1 IS NULL OR model_dir = ?1 ORDER BY id")),
    )?;
    let rows = st.query_map([dir], row_to_version).and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>());
    store.sql(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_invariants(p: &Proposal, pos: &[f32], neg: &[f32]) {
        let (t0, t1) = (p.current.unwrap(), p.proposed.unwrap());
        assert!(t1 >= t0, "never lowered");
        for &s in pos {
            if s > t0 {
                assert!(s > t1, "positive {s} flagged before stays flagged ({t0} → {t1})");
            }
        }
        assert!(p.false_positives_flagged_after <= p.false_positives_flagged_before);
        assert_eq!(p.false_positives_flagged_after, neg.iter().filter(|&&s| s > t1).count());
        assert_eq!(p.sensitivity_before, p.sensitivity_after);
    }

    #[test]
    fn raises_just_above_highest_false_positive_below_lowest_true() {
        let (pos, neg) = ([0.7f32, 0.9, 0.3], [0.55f32, 0.6, 0.95, 0.2]);
        let p = propose_label("Emphysema", Some(0.5), &pos, &neg);
        assert!(p.changed);
        assert_eq!(p.proposed, Some(next_up(0.6)));
        assert!(0.6 < p.proposed.unwrap() && p.proposed.unwrap() < 0.6 + 1e-6);
        assert_eq!(p.lowest_flagged_positive, Some(0.7));
        assert_eq!((p.false_positives_flagged_before, p.false_positives_flagged_after), (3, 1));
        assert_eq!(p.sensitivity_before, Some(2.0 / 3.0));
        assert_eq!((p.positives, p.negatives), (3, 4));
        check_invariants(&p, &pos, &neg);
    }

    #[test]
    fn never_above_a_confirmed_true_positive() {
        // The only flagged false positive scores above the lowest confirmed finding.
        let p = propose_label("A", Some(0.5), &[0.7], &[0.8]);
        assert!(!p.changed);
        assert_eq!(p.proposed, Some(0.5));
        assert_eq!(p.false_positives_flagged_before, 1);
        // A tie with the lowest confirmed finding cannot be separated either.
        let p = propose_label("A", Some(0.5), &[0.7, 0.9], &[0.7]);
        assert!(!p.changed);
    }

    #[test]
    fn unchanged_without_evidence_of_sensitivity_or_false_positives() {
        assert!(!propose_label("A", Some(0.5), &[], &[0.6, 0.7]).changed, "no confirmed finding");
        assert!(!propose_label("A", Some(0.5), &[0.4], &[0.6]).changed, "no flagged confirmed finding");
        assert!(!propose_label("A", Some(0.5), &[0.9], &[0.1, 0.5]).changed, "false positives not flagged (0.5 is not > 0.5)");
        let p = propose_label("A", None, &[0.9], &[0.6]);
        assert!(!p.changed);
        assert_eq!(p.proposed, None);
    }

    #[test]
    fn adjacent_floats_keep_the_positive_flagged() {
        let m = 0.75f32;
        let fp = f32::from_bits(m.to_bits() - 1);
        let p = propose_label("A", Some(0.5), &[m], &[fp]);
        assert!(p.changed);
        assert_eq!(p.proposed, Some(fp));
        assert!(m > p.proposed.unwrap() && fp <= p.proposed.unwrap());
        assert_eq!(p.false_positives_flagged_after, 0);
    }

    #[test]
    fn negative_scores_and_next_up() {
        assert_eq!(next_up(-1.0), f32::from_bits((-1.0f32).to_bits() - 1));
        assert!(next_up(-1.0) > -1.0);
        assert!(next_up(0.0) > 0.0 && next_up(-0.0) > 0.0);
        assert!(next_up(1.0) > 1.0);
        let (pos, neg) = ([-0.1f32, 0.2], [-0.15f32, -0.3]);
        let p = propose_label("A", Some(-0.2), &pos, &neg);
        assert_eq!(p.proposed, Some(next_up(-0.15)));
        check_invariants(&p, &pos, &neg);
    }

    #[test]
    fn fixed_table_of_cases() {
        // (current, positives, negatives) → proposed
        let cases: &[(f32, &[f32], &[f32], f32)] = &[
            (0.3, &[0.35, 0.8], &[0.31, 0.34, 0.9], next_up(0.34)),
            (0.3, &[0.5], &[0.45, 0.49, 0.2], next_up(0.49)),
            (0.3, &[0.5, 0.31], &[0.45], 0.3),
            (0.0, &[0.01], &[0.005], next_up(0.005)),
        ];
        for &(t0, pos, neg, want) in cases {
            let p = propose_label("L", Some(t0), pos, neg);
            assert_eq!(p.proposed, Some(want), "{t0} {pos:?} {neg:?}: {}", p.note);
            check_invariants(&p, pos, neg);
        }
    }

    #[test]
    fn f32_written_reads_back_exactly() {
        for x in [next_up(0.6f32), 0.1, 1.0 / 3.0, next_up(-0.15)] {
            let v = f32_json(x);
            assert_eq!(v.as_f64().unwrap() as f32, x);
        }
    }

    #[test]
    fn a_thresholds_file_outside_the_model_folder_is_never_written() {
        use radbridge_model::checkpoint::Arch;
        use radbridge_model::package::{Manifest, TextFiles};
        let root = std::env::temp_dir().join(format!("radbridge-recal-escape-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("model");
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.safetensors", "config.json", "vocab.txt"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let text = TextFiles { config: "config.json".into(), vocab: Some("vocab.txt".into()), tokenizer: None };
        let mut m = Manifest::official(Arch::Brgsa, "t", json!({}), "0".repeat(64), text);
        m.thresholds = Some("../escaped.json".into());
        std::fs::write(dir.join("model.json"), serde_json::to_string(&m).unwrap()).unwrap();
        let mut store = Store::open(root.join("db.sqlite3")).unwrap();
        let e = apply(&mut store, &dir, None).unwrap_err();
        assert!(matches!(e, FeedbackError::Model { .. }), "{e:?}");
        assert!(e.to_string().contains("thresholds") && e.to_string().contains("'..'"), "{e}");
        assert!(revert(&mut store, &dir, None).is_err());
        assert!(!root.join("escaped.json").exists());
        drop(store);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
