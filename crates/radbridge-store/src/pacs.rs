//! Studies retrieved from a PACS: each retrieve adds the study to the library (origin `pacs`)
//! and records which server it came from and its UIDs, with a `pacs_retrieve` audit entry, in
//! one transaction.

use rusqlite::params;
use serde_json::json;

use super::{audit, AuditAction, FeedbackError, Result, Store, NOW};

/// One retrieve, as the store records it.
#[derive(Debug, Clone, Default)]
pub struct PacsRetrieval {
    /// The server's name (or address when it has none).
    pub server: String,
    /// Its address without credentials.
    pub address: String,
    pub study_uid: String,
    pub series_uids: Vec<String>,
    /// Where the instances are (the retrieve's output folder).
    pub path: String,
    pub instances: u64,
    pub modality: Option<String>,
    pub study_date: Option<String>,
    pub description: Option<String>,
}

/// One recorded retrieve of a study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievalRecord {
    pub server: String,
    pub study_uid: String,
    pub series_uids: Vec<String>,
    /// When (UTC, RFC 3339).
    pub at: String,
}

impl Store {
    /// Add a retrieved study to the library (or find it) and record the retrieve; returns the
    /// library's study id.
    pub fn record_pacs_retrieval(&mut self, r: &PacsRetrieval, actor: Option<&str>) -> Result<i64> {
        if r.study_uid.is_empty() {
            return Err(FeedbackError::InvalidReview("a retrieve without a StudyInstanceUID".into()));
        }
        let key = self.study_key(Some(&r.study_uid), &r.path)?;
        let path = self.path().to_path_buf();
        let e = |source| FeedbackError::Sqlite { path: path.clone(), source };
        let tx = self.tx()?;
        tx.execute(&format!("INSERT OR IGNORE INTO studies (study_key, path, created_at) VALUES (?1, ?2, {NOW})"), params![key, r.path])
            .map_err(e)?;
        let study_id: i64 = tx.query_row("SELECT id FROM studies WHERE study_key = ?1", [&key], |row| row.get(0)).map_err(e)?;
        tx.execute(
            &format!(
                "INSERT INTO study_info (study_id, origin, modality, study_date, description, updated_at)
                 VALUES (?1, 'pacs', ?2, ?3, ?4, {NOW})
                 ON CONFLICT(study_id) DO UPDATE SET
                    modality = coalesce(modality, excluded.modality),
                    study_date = coalesce(study_date, excluded.study_date),
                    description = coalesce(description, excluded.description),
                    updated_at = excluded.updated_at"
            ),
            params![study_id, r.modality, r.study_date, r.description],
        )
        .map_err(e)?;
        let series = serde_json::to_string(&r.series_uids).unwrap_or_else(|_| "[]".into());
        tx.execute(
            &format!(
                "INSERT INTO pacs_retrievals (study_id, server, address, study_uid, series_uids, path, instances, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {NOW})"
            ),
            params![study_id, r.server, r.address, r.study_uid, series, r.path, r.instances as i64],
        )
        .map_err(e)?;
        let detail = json!({
            "server": r.server, "address": r.address, "study_uid": r.study_uid, "series_uids": r.series_uids,
            "path": r.path, "instances": r.instances, "study_id": study_id,
        });
        audit::insert(&tx, actor, AuditAction::PacsRetrieve, &detail).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(study_id)
    }

    /// The retrieves of a library study, oldest first.
    pub fn pacs_retrievals(&self, study_id: i64) -> Result<Vec<RetrievalRecord>> {
        let e = |source| FeedbackError::Sqlite { path: self.path().to_path_buf(), source };
        let mut st = self
            .connection()
            .prepare("SELECT server, study_uid, series_uids, created_at FROM pacs_retrievals WHERE study_id = ?1 ORDER BY id")
            .map_err(e)?;
        let rows = st
            .query_map([study_id], |r| {
                let series: String = r.get(2)?;
                Ok(RetrievalRecord {
                    server: r.get(0)?,
                    study_uid: r.get(1)?,
                    series_uids: serde_json::from_str(&series).unwrap_or_default(),
                    at: r.get(3)?,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::library::{Origin, ReviewStatus};
    use crate::testing::TempDir;
    use crate::Store;

    use super::*;

    #[test]
    fn a_retrieved_study_joins_the_library_once_with_its_server() {
        let t = TempDir::new("pacs-retrieve");
        let mut s = Store::open(t.0.join("db.sqlite3")).unwrap();
        let r = PacsRetrieval {
            server: "main".into(),
            address: "http://127.0.0.1:8042/dicom-web".into(),
            study_uid: "1.2.3".into(),
            series_uids: vec!["1.2.3.4".into()],
            path: "/data/pacs/1.2.3".into(),
            instances: 20,
            modality: Some("CT".into()),
            study_date: Some("20240101".into()),
            description: Some("CHEST".into()),
        };
        let id = s.record_pacs_retrieval(&r, Some("dr")).unwrap();
        assert_eq!(s.record_pacs_retrieval(&r, Some("dr")).unwrap(), id, "the same study");
        let lib = s.library().unwrap();
        assert_eq!(lib.len(), 1);
        assert_eq!((lib[0].origin, lib[0].status, lib[0].modality.as_deref()), (Origin::Pacs, ReviewStatus::New, Some("CT")));
        let rs = s.pacs_retrievals(id).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(
            (rs[0].server.as_str(), rs[0].study_uid.as_str(), rs[0].series_uids.as_slice()),
            ("main", "1.2.3", &["1.2.3.4".to_string()][..])
        );
        let audit = s.audit_entries().unwrap();
        assert_eq!(audit.iter().filter(|a| a.action == AuditAction::PacsRetrieve).count(), 2);
        assert!(s.connection().execute("DELETE FROM pacs_retrievals", []).is_err(), "append-only");
        assert!(s.record_pacs_retrieval(&PacsRetrieval::default(), None).is_err());
    }

    #[test]
    fn a_version_2_audit_log_keeps_every_entry_and_stays_append_only() {
        let t = TempDir::new("pacs-migrate");
        let db = t.0.join("db.sqlite3");
        {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute_batch(crate::schema::MIGRATIONS[0]).unwrap();
            c.execute_batch(crate::schema::MIGRATIONS[1]).unwrap();
            c.execute_batch(&format!("PRAGMA application_id = {}; PRAGMA user_version = 2;", crate::schema::APPLICATION_ID)).unwrap();
            c.execute_batch(
                r#"INSERT INTO audit_log (id, created_at, actor, action, detail) VALUES (7, '2026-01-01T00:00:00.000Z', 'a', 'export', '{"x": 1}');
                   INSERT INTO audit_log (id, created_at, actor, action, detail) VALUES (9, '2026-01-02T00:00:00.000Z', NULL, 'view', '{}');"#,
            )
            .unwrap();
        }
        let mut s = Store::open(&db).unwrap();
        let e = s.audit_entries().unwrap();
        assert_eq!(e.iter().map(|a| (a.id, a.action)).collect::<Vec<_>>(), [(7, AuditAction::Export), (9, AuditAction::View)]);
        assert_eq!(e[0].detail["x"], 1);
        s.audit(None, AuditAction::PacsQuery, &json!({"server": "main"})).unwrap();
        assert!(s.connection().execute("UPDATE audit_log SET actor = 'b'", []).is_err());
        assert!(s.connection().execute("DELETE FROM audit_log", []).is_err());
        assert!(s.connection().execute("INSERT INTO audit_log (created_at, action, detail) VALUES ('x', 'nonsense', '{}')", []).is_err());
    }
}
