//! Opening the feedback database safely and migrating its schema.
//!
//! The schema version is `PRAGMA user_version`; [`MIGRATIONS`]`[i]` takes version `i` to `i + 1`
//! and runs in its own transaction together with the version bump, so a crash leaves either the
//! old or the new schema. Our databases carry `PRAGMA application_id` = [`APPLICATION_ID`]; any
//! other SQLite database that already has tables is refused, as is a file that is not SQLite.

use std::io::Read;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{FeedbackError, Result};

/// "RBFB" — marks a Radbridge feedback database.
pub const APPLICATION_ID: i64 = 0x5242_4642;

/// Busy timeout for a concurrent writer (the app and the CLI).
pub const BUSY_TIMEOUT_MS: u64 = 10_000;

const APPEND_ONLY: &[&str] = &[
    "studies",
    "runs",
    "run_findings",
    "review_events",
    "audit_log",
    "thresholds_versions",
    "run_embeddings",
    "batch_imports",
    "pacs_retrievals",
];

/// Migration 0 → 1: the first schema.
const V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('salt', lower(hex(randomblob(32))));
INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ','now'));

CREATE TABLE studies (
    id         INTEGER PRIMARY KEY,
    study_key  TEXT NOT NULL UNIQUE,
    path       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    study_id       INTEGER NOT NULL REFERENCES studies(id),
    study_path     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    model_name     TEXT NOT NULL,
    model_checksum TEXT NOT NULL,
    bank_checksum  TEXT,
    app_version    TEXT NOT NULL,
    label_set      TEXT,
    diagnosis      TEXT NOT NULL CHECK (json_valid(diagnosis))
);
CREATE INDEX runs_study ON runs(study_id);
CREATE INDEX runs_model ON runs(model_checksum);

CREATE TABLE run_findings (
    run_id    INTEGER NOT NULL REFERENCES runs(id),
    ordinal   INTEGER NOT NULL,
    label     TEXT NOT NULL,
    score     REAL NOT NULL,
    threshold REAL,
    flagged   INTEGER CHECK (flagged IN (0, 1)),
    custom    INTEGER NOT NULL DEFAULT 0 CHECK (custom IN (0, 1)),
    PRIMARY KEY (run_id, ordinal)
);

CREATE TABLE review_events (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER NOT NULL REFERENCES runs(id),
    label      TEXT NOT NULL CHECK (length(label) > 0),
    action     TEXT NOT NULL CHECK (action IN ('confirm', 'false_positive', 'missed', 'undo')),
    reason     TEXT CHECK (reason IS NULL OR (action = 'false_positive' AND reason IN ('anatomy_mimic', 'artefact', 'device', 'post_operative', 'other'))),
    note       TEXT CHECK (note IS NULL OR action = 'false_positive'),
    text       TEXT CHECK ((action = 'missed') = (text IS NOT NULL)),
    undo_of    INTEGER REFERENCES review_events(id) CHECK ((action = 'undo') = (undo_of IS NOT NULL)),
    reviewer   TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX review_events_run ON review_events(run_id, label);
CREATE UNIQUE INDEX review_events_undo ON review_events(undo_of) WHERE undo_of IS NOT NULL;

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    actor      TEXT,
    action     TEXT NOT NULL CHECK (action IN ('open_study', 'run', 'view', 'feedback', 'export', 'settings_change')),
    detail     TEXT NOT NULL CHECK (json_valid(detail))
);

CREATE TABLE thresholds_versions (
    id               INTEGER PRIMARY KEY,
    created_at       TEXT NOT NULL,
    actor            TEXT,
    kind             TEXT NOT NULL CHECK (kind IN ('apply', 'revert')),
    model_dir        TEXT NOT NULL,
    model_checksum   TEXT NOT NULL,
    file             TEXT NOT NULL,
    previous_content TEXT,
    new_content      TEXT,
    reverts          INTEGER REFERENCES thresholds_versions(id) CHECK ((kind = 'revert') = (reverts IS NOT NULL)),
    proposals        TEXT NOT NULL CHECK (json_valid(proposals))
);
CREATE UNIQUE INDEX thresholds_versions_reverts ON thresholds_versions(reverts) WHERE reverts IS NOT NULL;
"#;

/// Migration 1 → 2: the study library. What a worklist shows of each study (kept current as
/// runs are recorded, filled here from each study's latest run), the image embeddings of each
/// run (for text-to-study and similar-study search), and which batch results were imported
/// (so an import is idempotent). Nothing of version 1 changes.
const V2: &str = r#"
CREATE TABLE study_info (
    study_id    INTEGER PRIMARY KEY REFERENCES studies(id),
    origin      TEXT NOT NULL CHECK (origin IN ('app', 'cli', 'batch', 'pacs')),
    modality    TEXT,
    study_date  TEXT,
    description TEXT,
    series      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(series)),
    updated_at  TEXT NOT NULL
);

CREATE TABLE run_embeddings (
    run_id         INTEGER NOT NULL REFERENCES runs(id),
    name           TEXT NOT NULL CHECK (length(name) > 0),
    model_checksum TEXT NOT NULL,
    dim            INTEGER NOT NULL CHECK (dim > 0),
    data           BLOB NOT NULL CHECK (length(data) = 4 * dim),
    PRIMARY KEY (run_id, name)
);
CREATE INDEX run_embeddings_model ON run_embeddings(model_checksum);

CREATE TABLE batch_imports (
    run_id         INTEGER PRIMARY KEY REFERENCES runs(id),
    batch_dir      TEXT NOT NULL,
    batch_id       TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    UNIQUE (batch_dir, batch_id, content_sha256)
);

INSERT INTO study_info (study_id, origin, modality, study_date, description, updated_at)
SELECT s.id, 'app',
       json_extract(r.diagnosis, '$.source.modality'),
       json_extract(r.diagnosis, '$.source.study.date'),
       coalesce(json_extract(r.diagnosis, '$.source.study.description'), json_extract(r.diagnosis, '$.source.series_description')),
       strftime('%Y-%m-%dT%H:%M:%fZ','now')
FROM studies s JOIN runs r ON r.id = (SELECT max(id) FROM runs WHERE study_id = s.id);
"#;

/// Migration 2 → 3: the PACS. The audit log accepts pacs_query, pacs_retrieve and pacs_send
/// (SQLite cannot change a CHECK constraint: the table is rebuilt with every entry and id kept,
/// its append-only triggers recreated after the migration), and `pacs_retrievals` records which
/// server each retrieved study came from, with its UIDs.
const V3: &str = r#"
DROP TRIGGER IF EXISTS audit_log_no_update;
DROP TRIGGER IF EXISTS audit_log_no_delete;
CREATE TABLE audit_log_v3 (
    id         INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    actor      TEXT,
    action     TEXT NOT NULL CHECK (action IN ('open_study', 'run', 'view', 'feedback', 'export', 'settings_change',
                                              'pacs_query', 'pacs_retrieve', 'pacs_send')),
    detail     TEXT NOT NULL CHECK (json_valid(detail))
);
INSERT INTO audit_log_v3 (id, created_at, actor, action, detail) SELECT id, created_at, actor, action, detail FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_v3 RENAME TO audit_log;

CREATE TABLE pacs_retrievals (
    id          INTEGER PRIMARY KEY,
    study_id    INTEGER NOT NULL REFERENCES studies(id),
    server      TEXT NOT NULL,
    address     TEXT NOT NULL,
    study_uid   TEXT NOT NULL,
    series_uids TEXT NOT NULL CHECK (json_valid(series_uids)),
    path        TEXT NOT NULL,
    instances   INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX pacs_retrievals_study ON pacs_retrievals(study_id);
"#;

/// Migration 3 → 4: measurements drawn on a study (distances, angles, regions with their HU
/// statistics), kept per study so they survive closing it. Editable and deletable, so not
/// append-only.
const V4: &str = r#"
CREATE TABLE measurements (
    id         INTEGER PRIMARY KEY,
    study_key  TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('distance', 'angle', 'ellipse', 'rectangle')),
    geometry   TEXT NOT NULL CHECK (json_valid(geometry)),
    value      TEXT NOT NULL CHECK (json_valid(value)),
    created_at TEXT NOT NULL
);
CREATE INDEX measurements_study ON measurements(study_key);
"#;

/// Migrations in order; `MIGRATIONS.len()` is the current schema version.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The append-only triggers of the tables `tx` has (a migration adds tables one version at a
/// time).
fn triggers(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<String> {
    let mut existing = Vec::new();
    for t in APPEND_ONLY {
        let n: i64 = tx.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [t], |r| r.get(0))?;
        if n > 0 {
            existing.push(*t);
        }
    }
    Ok(existing
        .iter()
        .map(|t| {
            format!(
                "CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t} BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END;\n\
                 CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END;\n"
            )
        })
        .collect())
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Open `path` (creating it and its folder if absent), check it is ours, configure the
/// connection and migrate. Nothing is written to a file that fails the checks.
pub fn open(path: &Path) -> Result<Connection> {
    let io = |source| FeedbackError::Io { path: path.to_path_buf(), source };
    let sql = |source| FeedbackError::Sqlite { path: path.to_path_buf(), source };
    if path.is_dir() {
        return Err(FeedbackError::NotADatabase { path: path.to_path_buf() });
    }
    match std::fs::File::open(path) {
        Ok(f) => {
            let len = f.metadata().map_err(io)?.len();
            let mut head = Vec::with_capacity(100);
            f.take(100).read_to_end(&mut head).map_err(io)?;
            check_header(path, &head, len)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                radbridge_volume::atomic::create_private_dir_all(dir)
                    .map_err(|source| FeedbackError::Io { path: dir.to_path_buf(), source })?;
            }
            // Created empty and owner-only (0600 on Unix) before SQLite opens it: SQLite gives
            // its -wal and -shm files the database's mode. An empty file is a new database.
            match radbridge_volume::atomic::create_private_file(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        Err(e) => return Err(io(e)),
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(sql)?;

    // Identify before writing anything (reading the header also detects a corrupt file).
    let not_db = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => FeedbackError::NotADatabase { path: path.to_path_buf() },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => FeedbackError::Corrupt { path: path.to_path_buf(), msg: e.to_string() },
        _ => sql(e),
    };
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(not_db)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(not_db)?;
    let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0)).map_err(not_db)?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0 || version != 0) {
        return Err(FeedbackError::ForeignDatabase { path: path.to_path_buf(), application_id: app_id, tables });
    }
    if version < 0 {
        return Err(FeedbackError::InvalidSchemaVersion { path: path.to_path_buf(), found: version });
    }
    if version > latest_version() {
        return Err(FeedbackError::NewerSchema { path: path.to_path_buf(), found: version, supported: latest_version() });
    }
    if app_id == APPLICATION_ID && version > 0 {
        check_tables(&conn, path, version)?;
    }
    if tables > 0 {
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(not_db)?;
        if check != "ok" {
            return Err(FeedbackError::Corrupt {
                path: path.to_path_buf(),
                msg: format!("integrity check: {}", check.replace('\n', "; ")),
            });
        }
    }

    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(file = %path.display(), mode, "WAL mode not available");
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(sql)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// The 100-byte SQLite header: magic, and a declared size the file really has (a truncated
/// file is refused before SQLite could take it for an empty database).
fn check_header(path: &Path, bytes: &[u8], len: u64) -> Result<()> {
    if len == 0 {
        return Ok(()); // SQLite's own view: an empty file is an empty database
    }
    if bytes.len() < 100 || &bytes[..16] != SQLITE_MAGIC {
        return Err(FeedbackError::NotADatabase { path: path.to_path_buf() });
    }
    let be32 = |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as u64;
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => n as u64,
    };
    let pages = be32(28);
    // The header's page count is valid when "version-valid-for" equals the change counter. With
    // a non-empty WAL a checkpoint may have been cut short (SQLite finishes it on open).
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_pending = std::fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false);
    if !wal_pending && be32(92) == be32(24) && pages > 0 && len < pages * page_size {
        return Err(FeedbackError::Corrupt {
            path: path.to_path_buf(),
            msg: format!("truncated: {len} bytes, the header declares {pages} pages of {page_size}"),
        });
    }
    Ok(())
}

/// The tables and columns of each schema version: (first version, table, columns).
const TABLES: &[(i64, &str, &str)] = &[
    (1, "meta", "key, value"),
    (1, "studies", "id, study_key, path, created_at"),
    (1, "runs", "id, study_id, study_path, created_at, model_name, model_checksum, bank_checksum, app_version, label_set, diagnosis"),
    (1, "run_findings", "run_id, ordinal, label, score, threshold, flagged, custom"),
    (1, "review_events", "id, run_id, label, action, reason, note, text, undo_of, reviewer, created_at"),
    (1, "audit_log", "id, created_at, actor, action, detail"),
    (
        1,
        "thresholds_versions",
        "id, created_at, actor, kind, model_dir, model_checksum, file, previous_content, new_content, reverts, proposals",
    ),
    (2, "study_info", "study_id, origin, modality, study_date, description, series, updated_at"),
    (2, "run_embeddings", "run_id, name, model_checksum, dim, data"),
    (2, "batch_imports", "run_id, batch_dir, batch_id, content_sha256, created_at"),
    (3, "pacs_retrievals", "id, study_id, server, address, study_uid, series_uids, path, instances, created_at"),
    (4, "measurements", "id, study_key, kind, geometry, value, created_at"),
];

/// A database that says it is ours at `version` must have that version's tables and columns
/// (a file edited by hand, or another program's, is refused rather than failing later).
fn check_tables(conn: &Connection, path: &Path, version: i64) -> Result<()> {
    for (_, table, cols) in TABLES.iter().filter(|(since, _, _)| *since <= version) {
        if let Err(e) = conn.prepare(&format!("SELECT {cols} FROM {table} LIMIT 0")) {
            return Err(FeedbackError::WrongSchema { path: path.to_path_buf(), version, msg: format!("table {table}: {e}") });
        }
    }
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let sql = |source| FeedbackError::Sqlite { path: path.to_path_buf(), source };
    loop {
        // Read the version inside the write lock: another process may have migrated meanwhile.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql)?;
        if version >= latest_version() {
            tx.commit().map_err(sql)?;
            return Ok(());
        }
        let migration = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
            .ok_or(FeedbackError::InvalidSchemaVersion { path: path.to_path_buf(), found: version })?;
        tx.execute_batch(migration).map_err(sql)?;
        if version == 0 {
            tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};")).map_err(sql)?;
        }
        let triggers = triggers(&tx).map_err(sql)?;
        tx.execute_batch(&triggers).map_err(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {};", version + 1)).map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(file = %path.display(), from = version, to = version + 1, "migrated feedback database");
    }
}
