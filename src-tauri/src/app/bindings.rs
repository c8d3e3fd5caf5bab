//! The TypeScript side of the IPC seam: every type a command takes or returns, and the
//! `analysis-progress` payload, rendered by ts-rs into `ui/src/bindings/` (checked in).
//! `cargo test --workspace bindings` fails when a checked-in file differs from what the Rust
//! types render; `make bindings` (RADBRIDGE_UPDATE_BINDINGS=1) rewrites them.

use std::any::TypeId;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use ts_rs::{Config, TypeVisitor, TS};

/// `ui/src/bindings`, from this crate's folder.
pub fn bindings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings")
}

/// How the bindings are rendered: 64-bit ids (run and event ids) are JSON numbers, as
/// `serde_json` writes them, not `bigint`.
fn config() -> Config {
    Config::new().with_large_int("number").with_out_dir(bindings_dir())
}

struct Collect<'a> {
    cfg: &'a Config,
    seen: HashSet<TypeId>,
    files: BTreeMap<PathBuf, String>,
    errors: Vec<String>,
}

impl TypeVisitor for Collect<'_> {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        let Some(path) = T::output_path() else { return };
        if !self.seen.insert(TypeId::of::<T>()) {
            return;
        }
        match T::export_to_string(self.cfg) {
            Ok(text) => {
                self.files.insert(path, text);
            }
            Err(e) => self.errors.push(format!("{}: {e}", std::any::type_name::<T>())),
        }
        T::visit_dependencies(self);
    }
}

/// Every binding file (relative path → content): the IPC types and what they contain.
pub fn render() -> Result<BTreeMap<PathBuf, String>, String> {
    use super::analysis::{AnalysisResult, HeatmapRef, Progress, Stage, Task};
    use super::commands::SettingsView;
    use super::error::{AppError, ErrorCode};
    use super::feedback::{Recalibration, RecalibrationAction, ReviewResult};
    use super::library::{OpenedStudy, SearchHit, SearchResult};
    use super::measure::{MeasureInput, Measurement};
    use super::pacs::{PacsRetrieved, SendPreview, SendResult};
    use super::report::ExportResult;
    use super::state::{Settings, VolumeSummary};
    use radbridge_pacs::servers::ServerEntry;
    use radbridge_pacs::{Progress as PacsProgress, StudyMatch, StudyQuery};

    let cfg = config();
    let mut c = Collect { cfg: &cfg, seen: HashSet::new(), files: BTreeMap::new(), errors: Vec::new() };
    c.visit::<VolumeSummary>();
    c.visit::<Settings>();
    c.visit::<SettingsView>();
    c.visit::<AnalysisResult>();
    c.visit::<HeatmapRef>();
    c.visit::<Progress>();
    c.visit::<Stage>();
    c.visit::<Task>();
    c.visit::<radbridge_store::ReviewAction>();
    c.visit::<radbridge_store::Reason>();
    c.visit::<radbridge_store::Verdict>();
    c.visit::<radbridge_store::VerdictKind>();
    c.visit::<ReviewResult>();
    c.visit::<Recalibration>();
    c.visit::<RecalibrationAction>();
    c.visit::<radbridge_report::Format>();
    c.visit::<ExportResult>();
    c.visit::<radbridge_store::library::LibraryStudy>();
    c.visit::<OpenedStudy>();
    c.visit::<SearchHit>();
    c.visit::<SearchResult>();
    c.visit::<MeasureInput>();
    c.visit::<Measurement>();
    c.visit::<ServerEntry>();
    c.visit::<StudyQuery>();
    c.visit::<StudyMatch>();
    c.visit::<PacsProgress>();
    c.visit::<PacsRetrieved>();
    c.visit::<SendPreview>();
    c.visit::<SendResult>();
    c.visit::<AppError>();
    c.visit::<ErrorCode>();
    if c.errors.is_empty() {
        Ok(c.files)
    } else {
        Err(c.errors.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOW: &str = "regenerate them with `make bindings` (or RADBRIDGE_UPDATE_BINDINGS=1 cargo test --workspace --exclude radbridge-tests bindings) and commit ui/src/bindings";

    #[test]
    fn bindings_are_up_to_date() {
        let files = render().expect("every IPC type renders");
        let dir = bindings_dir();
        let stale: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| PathBuf::from(e.file_name()))
                    .filter(|p| p.extension().is_some_and(|x| x == "ts") && !files.contains_key(p))
                    .collect()
            })
            .unwrap_or_default();
        if std::env::var_os("RADBRIDGE_UPDATE_BINDINGS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: cannot create: {e}", dir.display()));
            for p in &stale {
                std::fs::remove_file(dir.join(p)).unwrap_or_else(|e| panic!("{}: cannot remove: {e}", dir.join(p).display()));
            }
            for (p, text) in &files {
                radbridge_volume::atomic::write(&dir.join(p), text)
                    .unwrap_or_else(|e| panic!("{}: cannot write: {e}", dir.join(p).display()));
            }
            return;
        }
        let mut problems = Vec::new();
        for (p, text) in &files {
            let f = dir.join(p);
            match std::fs::read_to_string(&f) {
                Ok(on_disk) if &on_disk == text => {}
                Ok(_) => problems.push(format!("{}: differs from the Rust types", f.display())),
                Err(e) => problems.push(format!("{}: missing ({e})", f.display())),
            }
        }
        for p in &stale {
            problems.push(format!("{}: no Rust type renders it any more", dir.join(p).display()));
        }
        assert!(problems.is_empty(), "the TypeScript bindings are out of date:\n  {}\n{HOW}", problems.join("\n  "));
    }

    #[test]
    fn bindings_cover_the_ipc_types_and_keep_the_wire_names() {
        let files = render().unwrap();
        for name in ["AppError", "ErrorCode", "Diagnosis", "ScoredFinding", "Described", "Peak", "Progress", "Stage", "VolumeSummary"] {
            assert!(files.contains_key(&PathBuf::from(format!("{name}.ts"))), "{name}.ts is not rendered: {:?}", files.keys());
        }
        let stage = &files[&PathBuf::from("Stage.ts")];
        for s in ["load model", "preprocess", "encode image", "encode text", "score", "heat maps", "done"] {
            assert!(stage.contains(&format!("\"{s}\"")), "Stage.ts lacks \"{s}\":\n{stage}");
        }
        assert!(files[&PathBuf::from("ErrorCode.ts")].contains("\"bad_input\""));
        // `Finding` is flattened into `ScoredFinding`: its fields are inlined there.
        assert!(files[&PathBuf::from("ScoredFinding.ts")].contains("label: string, prompt: string, score: number"));
    }
}
