//! Measurements drawn on a study, kept under the study's salted key so they come back when the
//! study is opened again. The geometry and the values are JSON the app computed (in patient
//! space, by `radbridge_volume::measure`); the store keeps them as given.

use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FeedbackError, Result, Store, NOW};

/// One stored measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMeasurement {
    pub id: i64,
    /// distance, angle, ellipse or rectangle.
    pub kind: String,
    pub geometry: Value,
    pub value: Value,
    pub created_at: String,
}

const KINDS: [&str; 4] = ["distance", "angle", "ellipse", "rectangle"];

impl Store {
    /// Keep a measurement of the study `study_key`; returns it with its id.
    pub fn add_measurement(&mut self, study_key: &str, kind: &str, geometry: &Value, value: &Value) -> Result<StoredMeasurement> {
        if !KINDS.contains(&kind) {
            return Err(FeedbackError::InvalidReview(format!("unknown measurement kind {kind:?}")));
        }
        let e = |source| FeedbackError::Sqlite { path: self.path().to_path_buf(), source };
        self.connection()
            .execute(
                &format!("INSERT INTO measurements (study_key, kind, geometry, value, created_at) VALUES (?1, ?2, ?3, ?4, {NOW})"),
                params![study_key, kind, geometry.to_string(), value.to_string()],
            )
            .map_err(e)?;
        let id = self.connection().last_insert_rowid();
        self.measurements(study_key)?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| FeedbackError::InvalidReview(format!("measurement {id} vanished")))
    }

    /// The measurements of a study, oldest first.
    pub fn measurements(&self, study_key: &str) -> Result<Vec<StoredMeasurement>> {
        let e = |source| FeedbackError::Sqlite { path: self.path().to_path_buf(), source };
        let mut st = self
            .connection()
            .prepare("SELECT id, kind, geometry, value, created_at FROM measurements WHERE study_key = ?1 ORDER BY id")
            .map_err(e)?;
        let rows = st
            .query_map([study_key], |r| {
                let g: String = r.get(2)?;
                let v: String = r.get(3)?;
                Ok(StoredMeasurement {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    geometry: serde_json::from_str(&g).unwrap_or(Value::Null),
                    value: serde_json::from_str(&v).unwrap_or(Value::Null),
                    created_at: r.get(4)?,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(e)?;
        Ok(rows)
    }

    /// Delete a measurement of the study; false if it has none with that id.
    pub fn delete_measurement(&mut self, study_key: &str, id: i64) -> Result<bool> {
        let e = |source| FeedbackError::Sqlite { path: self.path().to_path_buf(), source };
        let n =
            self.connection().execute("DELETE FROM measurements WHERE id = ?1 AND study_key = ?2", params![id, study_key]).map_err(e)?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::testing::TempDir;
    use crate::Store;

    #[test]
    fn measurements_are_kept_per_study_and_deletable() {
        let t = TempDir::new("measurements");
        let db = t.0.join("db.sqlite3");
        let mut s = Store::open(&db).unwrap();
        let a = s.add_measurement("k1", "distance", &json!({"a": [1, 2, 3], "b": [4, 5, 6]}), &json!({"mm": 12.5})).unwrap();
        s.add_measurement("k2", "ellipse", &json!({}), &json!({"mean": 40.0})).unwrap();
        assert!(s.add_measurement("k1", "freehand", &json!({}), &json!({})).is_err());
        drop(s);
        let mut s = Store::open(&db).unwrap();
        let m = s.measurements("k1").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].id, m[0].kind.as_str(), m[0].value["mm"].as_f64()), (a.id, "distance", Some(12.5)));
        assert!(!s.delete_measurement("k2", a.id).unwrap(), "another study's id");
        assert!(s.delete_measurement("k1", a.id).unwrap());
        assert!(s.measurements("k1").unwrap().is_empty());
        assert_eq!(s.measurements("k2").unwrap().len(), 1);
    }
}
