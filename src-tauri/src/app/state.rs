//! What the window holds: the loaded volume (canonical LPS), the path given at start, the
//! model settings, the loaded model, and the current analysis run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::error::{AppError, AppResult, ErrorCode};
use radbridge_model::analysis::Engine;
use radbridge_volume::{CancelToken, SeriesInfo, Volume, Warning};

/// The loaded volume, reoriented to canonical LPS (the grid the models and heat maps use).
pub struct Displayed {
    pub summary: VolumeSummary,
    pub volume: Arc<Volume>,
}

/// What the UI needs to draw and label a volume (the voxels come separately, as binary).
#[derive(Debug, Clone, Serialize, TS)]
pub struct VolumeSummary {
    pub path: String,
    pub format: radbridge_volume::SourceFormat,
    pub format_detail: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    /// Display grid (canonical LPS: axis 0 → patient left, 1 → posterior, 2 → superior).
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub orientation: String,
    /// Orientation letters of the file as stored, before reorientation.
    pub source_orientation: String,
    pub affine_lps: [[f64; 4]; 4],
    pub hu_min: f32,
    pub hu_max: f32,
    pub series: Vec<SeriesInfo>,
    pub chosen: usize,
    pub files_scanned: usize,
    pub non_dicom_skipped: usize,
    pub warnings: Vec<Warning>,
    /// Bumped on every load so the UI never mixes a new summary with old voxels.
    pub generation: u64,
}

/// Settings the user can change (kept in `<data dir>/settings.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, TS)]
pub struct Settings {
    /// Model directory chosen in the settings panel (None: the default model).
    #[serde(default)]
    pub model_dir: Option<String>,
    /// Label set to score ("all", "ct-rate", "ct-rate-lt"; None: the model's default).
    #[serde(default)]
    pub label_set: Option<String>,
}

/// The current analysis: its cancel token, where its heat maps go, and the heat maps written.
#[derive(Default)]
pub struct Run {
    pub cancel: CancelToken,
    pub generation: u64,
    pub dir: Option<PathBuf>,
    /// Heat map files by id (the id is what the UI asks `volume://localhost/heatmap/<id>` for).
    pub heatmaps: Vec<PathBuf>,
    /// The last full analysis of this study (what a report exports).
    pub last: Option<radbridge_model::analysis::Diagnosis>,
    /// Heat maps already encoded for the UI, by id.
    pub served: std::collections::HashMap<usize, Arc<Vec<u8>>>,
}

/// The loaded model and the directory it came from (kept between runs).
pub type EngineSlot = Option<(PathBuf, Engine)>;

/// Lock `m`; when a thread panicked while holding it, take the lock anyway (the values these
/// mutexes guard stay consistent between statements) and clear the poison, so one panic does
/// not fail every later command until the app restarts.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| {
        tracing::warn!("recovering a lock poisoned by a panic");
        m.clear_poison();
        poisoned.into_inner()
    })
}

/// Lock `m`; when a thread panicked while holding it (mid-analysis), reset the value to its
/// default (for the engine: none cached, so the next analysis loads the model afresh) and
/// clear the poison.
pub fn lock_or_reset<T: Default>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            tracing::warn!("a panic interrupted the work holding this lock; starting afresh");
            m.clear_poison();
            let mut g = poisoned.into_inner();
            *g = T::default();
            g
        }
    }
}

pub struct AppState {
    pub initial: Option<PathBuf>,
    pub displayed: Mutex<Option<Displayed>>,
    pub generation: Mutex<u64>,
    pub settings: Mutex<Settings>,
    /// The loaded model (lock it with [`AppState::engine`]).
    engine: Mutex<EngineSlot>,
    pub run: Mutex<Run>,
    /// The feedback store, opened on first use.
    pub store: Mutex<Option<radbridge_store::Store>>,
    /// Paths the user chose outside the page: the command line, the native dialogs, a drop on
    /// the window. The page can only ask to open (or use as the model folder) one of these.
    granted: Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Cancels the PACS retrieve in progress.
    pub pacs_cancel: Mutex<Option<radbridge_volume::CancelToken>>,
}

/// Paths compare by their canonical form (so `a/../b` and a symlink name the same place).
fn grant_key(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl AppState {
    /// Let the page use `p` (it came from the user, not from the page).
    pub fn grant(&self, p: &std::path::Path) {
        lock(&self.granted).insert(grant_key(p));
    }

    /// Did the user choose `p` outside the page?
    pub fn is_granted(&self, p: &std::path::Path) -> bool {
        lock(&self.granted).contains(&grant_key(p))
    }

    pub fn new(initial: Option<PathBuf>) -> Self {
        let granted = initial.iter().map(|p| grant_key(p)).collect();
        AppState {
            granted: Mutex::new(granted),
            initial,
            displayed: Mutex::new(None),
            generation: Mutex::new(0),
            settings: Mutex::new(load_settings()),
            engine: Mutex::new(None),
            run: Mutex::new(Run::default()),
            store: Mutex::new(None),
            pacs_cancel: Mutex::new(None),
        }
    }

    /// The cached engine, held for a whole analysis. A panic during an analysis drops the
    /// engine it was using: the next analysis reloads the model.
    pub fn engine(&self) -> MutexGuard<'_, EngineSlot> {
        lock_or_reset(&self.engine)
    }
}

/// Run blocking work (the store, the model, the network) off the async runtime; `what` names
/// it in the error if the worker stops unexpectedly.
pub async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> super::error::AppResult<T> + Send + 'static,
) -> super::error::AppResult<T> {
    tauri::async_runtime::spawn_blocking(f).await.map_err(|e| super::error::AppError::internal(what, e))?
}

/// The app's data folder: $RADBRIDGE_DATA_DIR, else `<platform data dir>/radbridge`.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RADBRIDGE_DATA_DIR") {
        return Some(PathBuf::from(d));
    }
    dirs::data_dir().map(|d| d.join("radbridge"))
}

fn settings_file() -> Option<PathBuf> {
    data_dir().map(|d| d.join("settings.json"))
}

fn load_settings() -> Settings {
    let Some(f) = settings_file() else { return Settings::default() };
    match std::fs::read_to_string(&f) {
        Ok(t) => serde_json::from_str(&t).unwrap_or_else(|e| {
            tracing::warn!("{}: ignoring unreadable settings: {e}", f.display());
            Settings::default()
        }),
        Err(_) => Settings::default(),
    }
}

pub fn save_settings(s: &Settings) -> AppResult<()> {
    let f = settings_file().ok_or_else(|| AppError::new(ErrorCode::Io, "no data folder on this system"))?;
    if let Some(dir) = f.parent() {
        radbridge_volume::atomic::create_private_dir_all(dir)
            .map_err(|e| AppError::new(ErrorCode::Io, format!("{}: cannot create: {e}", f.display())))?;
    }
    let text = serde_json::to_string_pretty(s).map_err(|e| AppError::internal("writing the settings", e))? + "\n";
    // Owner-only (0600 on Unix): the settings name the user's folders.
    radbridge_volume::atomic::write_private(&f, text)
        .map_err(|e| AppError::new(ErrorCode::Io, format!("{}: cannot write: {e}", f.display())))
}

/// Which model directory to use and why: $RADBRIDGE_MODEL, else the settings' choice, else
/// `models/demo`, else the tiny test model (`tests/data/models/brgsa_tiny` once it holds a
/// model.json), looked up from the executable's folder upwards and from the working folder.
pub fn resolve_model(setting: Option<&str>) -> (Option<PathBuf>, &'static str) {
    if let Some(p) = std::env::var_os("RADBRIDGE_MODEL").filter(|p| !p.is_empty()) {
        return (Some(PathBuf::from(p)), "RADBRIDGE_MODEL");
    }
    if let Some(p) = setting.filter(|p| !p.is_empty()) {
        return (Some(PathBuf::from(p)), "settings");
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    for (rel, why) in [("models/demo", "demo model"), ("tests/data/models/brgsa_tiny", "tiny test model")] {
        if let Some(r) = roots.iter().find(|r| r.join(rel).join("model.json").is_file()) {
            return (Some(r.join(rel)), why);
        }
    }
    (None, "none found")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panic in another thread while holding `m` (as a panicking analysis would).
    fn poison<T: Send>(m: &Mutex<T>, change: impl FnOnce(&mut T) + Send) {
        std::thread::scope(|s| {
            let joined = s
                .spawn(|| {
                    let mut g = m.lock().unwrap();
                    change(&mut g);
                    panic!("a bug in the middle of an analysis");
                })
                .join();
            assert!(joined.is_err(), "the thread panicked");
        });
        assert!(m.is_poisoned());
    }

    #[test]
    fn a_panic_mid_analysis_resets_the_cached_engine() {
        let m: Mutex<Option<(PathBuf, u32)>> = Mutex::new(Some((PathBuf::from("models/a"), 1)));
        poison(&m, |slot| *slot = Some((PathBuf::from("models/half-loaded"), 2)));
        // The next analysis finds no engine (it reloads the model) instead of failing.
        assert_eq!(*lock_or_reset(&m), None);
        assert!(!m.is_poisoned(), "the poison is cleared");
        *lock_or_reset(&m) = Some((PathBuf::from("models/b"), 3));
        assert_eq!(*lock_or_reset(&m), Some((PathBuf::from("models/b"), 3)), "a healthy lock keeps its value");
    }

    #[test]
    fn a_poisoned_lock_is_recovered_with_its_value() {
        let m = Mutex::new(5u64);
        poison(&m, |g| *g += 1);
        assert_eq!(*lock(&m), 6);
        assert!(!m.is_poisoned());
    }

    #[test]
    fn the_app_state_survives_a_panic_holding_the_engine_or_the_run() {
        let state = AppState::new(None);
        std::thread::scope(|s| {
            let r = s
                .spawn(|| {
                    let _engine = state.engine();
                    let _run = lock(&state.run);
                    panic!("a bug while analysing");
                })
                .join();
            assert!(r.is_err());
        });
        assert!(state.engine().is_none(), "the next analysis starts without a cached engine");
        lock(&state.run).generation = 4;
        assert_eq!(lock(&state.run).generation, 4, "the run state is usable again");
    }
}
