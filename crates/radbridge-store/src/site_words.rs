//! The site's words: the sentences this site's readers confirmed, for `radbridge bank describe
//! --feedback` to name knowledge-bank entries in the site's own words.
//!
//! A site sentence is the label of a current confirmed verdict (for a typed custom finding the
//! label is the reviewer's own sentence) or the text of a current missed verdict. Undone events
//! do not count (the verdicts are derived with [`derive_verdicts`]). Only the text and how many
//! runs it came from leave this module: no run ids, study keys, paths or reviewers.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{derive_verdicts, Result, Store, VerdictKind};

/// One sentence the site confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSentence {
    /// Trimmed; the first spelling seen (runs oldest first) of a case-insensitive duplicate.
    pub text: String,
    /// How many runs confirmed it (as a confirmed label or a missed finding's text).
    pub runs: usize,
}

impl Store {
    /// The distinct sentences the site confirmed (see the module docs), in the order first seen
    /// (runs oldest first, verdicts in run order). With `model_checksum`, only runs of those
    /// model weights (`weights_sha256`) count. Texts are trimmed, empty ones dropped and
    /// duplicates merged case-insensitively, keeping the first spelling.
    pub fn site_sentences(&self, model_checksum: Option<&str>) -> Result<Vec<SiteSentence>> {
        let mut st = self.sql(self.connection().prepare(
            "SELECT DISTINCT r.id FROM runs r JOIN review_events e ON e.run_id = r.id
             WHERE ?1 IS NULL OR r.model_checksum = ?1 ORDER BY r.id",
        ))?;
        let ids =
            self.sql(st.query_map([model_checksum], |r| r.get::<_, i64>(0)).and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>()))?;
        let mut out: Vec<SiteSentence> = Vec::new();
        // lower-cased text → index in `out`, and the last run counted for it.
        let mut seen: HashMap<String, (usize, i64)> = HashMap::new();
        for id in ids {
            let events = self.events(id)?;
            let findings = self.findings(id)?;
            let pos = |l: &str| findings.iter().position(|f| f.label == l).unwrap_or(usize::MAX);
            let mut verdicts = derive_verdicts(&events, &findings);
            verdicts.sort_by_key(|v| (pos(&v.label), v.event));
            for v in verdicts {
                let text = match v.verdict {
                    VerdictKind::Confirmed => Some(v.label),
                    VerdictKind::Missed => v.text,
                    VerdictKind::FalsePositive => None,
                };
                let Some(text) = text else { continue };
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let key = text.to_lowercase();
                match seen.get_mut(&key) {
                    Some((i, last_run)) => {
                        if *last_run != id {
                            *last_run = id;
                            if let Some(s) = out.get_mut(*i) {
                                s.runs = s.runs.saturating_add(1);
                            }
                        }
                    }
                    None => {
                        seen.insert(key, (out.len(), id));
                        out.push(SiteSentence { text: text.to_string(), runs: 1 });
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::{ReviewAction, RunId, RunRecord};

    use crate::testing::TempDir;

    fn record(store: &mut Store, path: &str, checksum: &str) -> RunId {
        let doc = json!({
            "disclaimer": "x",
            "model": {"name": "tiny", "weights_sha256": checksum},
            "findings": [
                {"label": "Emphysema", "prompt": "There is emphysema", "score": 0.7, "threshold": 0.5, "flagged": true, "custom": false},
                {"label": "Pleural effusion", "prompt": "p", "score": 0.2, "threshold": 0.5, "flagged": false, "custom": false},
                {"label": "ground glass in the left lower lobe", "prompt": "ground glass in the left lower lobe", "score": 0.4, "threshold": null, "flagged": null, "custom": true}
            ]
        });
        let r = RunRecord::from_diagnosis_json(doc, Some(Path::new(path)), None).unwrap();
        store.record_run(&r).unwrap()
    }

    fn texts(v: &[SiteSentence]) -> Vec<(&str, usize)> {
        v.iter().map(|s| (s.text.as_str(), s.runs)).collect()
    }

    #[test]
    fn confirmed_labels_and_missed_texts_without_undone_or_false_positives() {
        let t = TempDir::new("basic");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        assert!(s.site_sentences(None).unwrap().is_empty(), "an empty database has no site sentences");
        let a = record(&mut s, "/data/ct1", "abc");
        let b = record(&mut s, "/data/ct2", "abc");
        let _unreviewed = record(&mut s, "/data/ct3", "abc");
        s.review(a, "Emphysema", &ReviewAction::Confirm, Some("dr_a")).unwrap();
        s.review(a, "ground glass in the left lower lobe", &ReviewAction::Confirm, Some("dr_a")).unwrap();
        s.review(a, "Rib fracture", &ReviewAction::Missed { text: "  old fracture of the left 7th rib ".into() }, None).unwrap();
        s.review(a, "Pleural effusion", &ReviewAction::FalsePositive { reason: None, note: Some("not this".into()) }, None).unwrap();
        // Undone: must not count.
        let u = s.review(b, "Nodule", &ReviewAction::Missed { text: "spiculated nodule".into() }, None).unwrap();
        s.review(b, "Nodule", &ReviewAction::Undo { event: u }, None).unwrap();
        let c = s.review(b, "Pleural effusion", &ReviewAction::Confirm, None).unwrap();
        s.review(b, "Pleural effusion", &ReviewAction::Undo { event: c }, None).unwrap();
        // The same sentence in another spelling, in a second run: one entry, two runs.
        s.review(b, "EMPHYSEMA", &ReviewAction::Missed { text: "emphysema".into() }, None).unwrap();
        s.review(b, "Emphysema", &ReviewAction::Confirm, None).unwrap();

        let got = s.site_sentences(None).unwrap();
        assert_eq!(
            texts(&got),
            vec![("Emphysema", 2), ("ground glass in the left lower lobe", 1), ("old fracture of the left 7th rib", 1)]
        );
        assert!(got.iter().all(|x| !x.text.contains("spiculated") && x.text != "Pleural effusion"), "undone and false positive excluded");
    }

    #[test]
    fn model_checksum_filters_runs_and_undo_of_the_latest_restores_the_earlier_verdict() {
        let t = TempDir::new("filter");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        let a = record(&mut s, "/data/ct1", "abc");
        let other = record(&mut s, "/data/ct2", "other");
        s.review(a, "Emphysema", &ReviewAction::Confirm, None).unwrap();
        let fp = s.review(a, "Emphysema", &ReviewAction::FalsePositive { reason: None, note: None }, None).unwrap();
        s.review(other, "Pleural effusion", &ReviewAction::Confirm, None).unwrap();
        // The false positive is current: Emphysema is not a site sentence.
        assert_eq!(texts(&s.site_sentences(Some("abc")).unwrap()), Vec::<(&str, usize)>::new());
        // Undoing it makes the confirm current again.
        s.review(a, "Emphysema", &ReviewAction::Undo { event: fp }, None).unwrap();
        assert_eq!(texts(&s.site_sentences(Some("abc")).unwrap()), vec![("Emphysema", 1)]);
        assert_eq!(texts(&s.site_sentences(Some("other")).unwrap()), vec![("Pleural effusion", 1)]);
        assert_eq!(texts(&s.site_sentences(Some("none")).unwrap()), Vec::<(&str, usize)>::new());
        assert_eq!(texts(&s.site_sentences(None).unwrap()), vec![("Emphysema", 1), ("Pleural effusion", 1)]);
    }

    #[test]
    fn only_text_and_counts_are_serialised() {
        let v = serde_json::to_value(SiteSentence { text: "x".into(), runs: 3 }).unwrap();
        assert_eq!(v, json!({"text": "x", "runs": 3}));
    }
}
