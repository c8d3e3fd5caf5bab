//! The committed corrupt-input corpus (`tests/data/corrupt`, made by
//! `tests/reference/make_corrupt_corpus.py`; `manifest.json` lists each case and the words its
//! error must contain). Each case is opened through the library and through the CLI:
//! - the library returns an error (never a panic) whose message names the file and the problem;
//! - the CLI exits with status 1 and prints exactly one line, `error: <file>: <problem>`;
//! - the CLI child uses under 2 s of CPU and under 300 MB peak resident memory (`ru_maxrss` from
//!   `wait4`, through `radbridge-measure`), so a header that declares gigabytes is refused
//!   before anything is allocated.
//!
//! `volume_warn` cases load, and their warnings (and `inspect`'s output) must name the file
//! that was left out; `model_ok` cases (a damaged cache) load and recover.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use radbridge_tests::*;
use radbridge_volume::{self as volume, OpenOptions};

const CPU_LIMIT_S: f64 = 2.0;
const RSS_LIMIT_MB: f64 = 300.0;

struct Case {
    path: String,
    kind: String,
    broken: String,
    expect: Vec<String>,
}

fn cases() -> Vec<Case> {
    let m = json_file("corrupt/manifest.json");
    m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            path: c["path"].as_str().unwrap().into(),
            kind: c["kind"].as_str().unwrap().into(),
            broken: c["broken"].as_str().unwrap().into(),
            expect: c["expect"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        })
        .collect()
}

/// The case's name as it must appear in a message (a file name, or a model folder's name).
fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn mentions(msg: &str, c: &Case, name: &str) -> Result<(), String> {
    let low = msg.to_lowercase();
    if !msg.contains(name) {
        return Err(format!("does not name {name}"));
    }
    for w in &c.expect {
        if !low.contains(&w.to_lowercase()) {
            return Err(format!("does not say '{w}'"));
        }
    }
    Ok(())
}

/// A finished CLI child: exit status, stderr, stdout, CPU seconds, peak RSS in MB, wall seconds.
struct Child {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    cpu_s: f64,
    rss_mb: f64,
    wall_s: f64,
}

/// Run the CLI under `radbridge-measure` (tests/src/bin/measure.rs), which reports the child's
/// own CPU time and peak resident memory from wait4 and kills it after 60 s.
fn run_measured(args: &[&std::ffi::OsStr], env: &[(&str, &Path)], scratch: &Path) -> Child {
    let report = scratch.join("measure.txt");
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_radbridge-measure"));
    cmd.arg(&report).arg(bin()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = cmd.output().expect("run radbridge-measure");
    let wall_s = t0.elapsed().as_secs_f64();
    let text =
        std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no measurement ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let f: Vec<f64> = text.split_whitespace().map(|v| v.parse().unwrap()).collect();
    Child {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cpu_s: f[0],
        rss_mb: f[1] / 1024.0,
        wall_s,
    }
}

/// Everything a case needs on disk: the input path, the model folder (for `model` cases, a copy
/// with the tiny weights), and the cache folder.
struct Setup {
    _tmp: tempfile::TempDir,
    tmp: PathBuf,
    tiny_weights: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let model = import_tiny("ctclip", tmp.path());
    let tiny_weights = model.join("model.safetensors");
    Setup { tmp: tmp.path().to_path_buf(), _tmp: tmp, tiny_weights }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A model case as a model folder: the committed files, the tiny weights, and the cached text
/// embeddings moved to where the engine's cache looks (RADBRIDGE_CACHE_DIR).
fn model_dir(s: &Setup, c: &Case) -> (PathBuf, PathBuf) {
    let src = data(&format!("corrupt/{}", c.path));
    let dir = s.tmp.join("models").join(name_of(&src));
    copy_dir(&src, &dir);
    std::fs::copy(&s.tiny_weights, dir.join("model.safetensors")).unwrap();
    let cache = s.tmp.join("cache").join(name_of(&src));
    let emb = dir.join("text-embeddings.json");
    if emb.exists() {
        let sha = radbridge_model::package::sha256_file(&dir.join("model.safetensors")).unwrap();
        let d = cache.join("text-embeddings");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::rename(&emb, d.join(format!("{sha}.json"))).unwrap();
    }
    (dir, cache)
}

/// The library's answer for a case: Err(message) or Ok(warnings joined).
fn library(s: &Setup, c: &Case, p: &Path) -> Result<String, String> {
    use radbridge_model::checkpoint::{self, Arch, Overrides};
    match c.kind.as_str() {
        "volume" | "volume_warn" | "volume_ok" => volume::open(p, &OpenOptions::default())
            .map(|l| l.volume.warnings.iter().map(|w| w.message.clone()).collect::<Vec<_>>().join("\n"))
            .map_err(|e| e.to_string()),
        "preprocess" => {
            let v = volume::open(p, &OpenOptions::default()).map_err(|e| format!("open failed instead: {e}"))?.volume;
            radbridge_model::preprocess::preprocess(&v, &radbridge_model::preprocess::PreprocessConfig::brgsa())
                .map(|_| String::new())
                .map_err(|e| e.to_string())
        }
        "checkpoint" => checkpoint::import(p, Arch::Ctclip, &serde_json::json!({}), &Overrides::default())
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
        "model" | "model_ok" => {
            let (dir, cache) = model_dir(s, c);
            let mut engine = radbridge_model::analysis::Engine::load_with_cache(&dir, &candle_core::Device::Cpu, Some(&cache))
                .map_err(|e| e.to_string())?;
            engine.embed_prompts(&["a small pleural effusion".to_string()]).map(|_| String::new()).map_err(|e| e.to_string())
        }
        "feedback" => {
            let store = radbridge_store::Store::open(p).map_err(|e| e.to_string())?;
            store.list_runs(None).map(|_| String::new()).map_err(|e| e.to_string())
        }
        "report" => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            serde_json::from_str::<radbridge_model::analysis::Diagnosis>(&text)
                .map(|_| String::new())
                .map_err(|e| format!("{}: not a `radbridge diagnose --json` file: {e}", p.display()))
        }
        k => panic!("unknown kind {k}"),
    }
}

fn cli(s: &Setup, c: &Case, p: &Path) -> Child {
    let out = s.tmp.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let study = data("nibabel/standard.nii.gz");
    let tiny_text = data("models/ctclip_tiny");
    let o = |s: &str| std::ffi::OsString::from(s);
    let (args, env): (Vec<std::ffi::OsString>, Vec<(&str, PathBuf)>) = match c.kind.as_str() {
        "volume" | "volume_warn" | "volume_ok" => (vec![o("inspect"), p.into()], vec![]),
        "preprocess" => (vec![o("preprocess"), p.into(), o("--model"), o("brgsa"), o("--output"), out.join("x.npy").into()], vec![]),
        "checkpoint" => (
            vec![
                o("import-checkpoint"),
                o("--arch"),
                o("ctclip"),
                o("--checkpoint"),
                p.into(),
                o("--text-dir"),
                tiny_text.into(),
                o("--output"),
                out.join("model").into(),
            ],
            vec![],
        ),
        "model" | "model_ok" => {
            let (dir, cache) = model_dir(s, c);
            (
                vec![
                    o("diagnose"),
                    o("--model"),
                    dir.into(),
                    o("--finding"),
                    o("a small pleural effusion"),
                    o("--labels"),
                    o("ct-rate"),
                    study.into(),
                ],
                vec![("RADBRIDGE_CACHE_DIR", cache)],
            )
        }
        "feedback" => (vec![o("feedback"), o("--db"), p.into(), o("show"), o("--run"), o("1")], vec![]),
        "report" => (
            vec![o("report"), o("--from-json"), p.into(), o("--format"), o("json"), o("--output"), out.join("r.json").into()],
            vec![("RADBRIDGE_DATA_DIR", s.tmp.join("data"))],
        ),
        k => panic!("unknown kind {k}"),
    };
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
    run_measured(&args, &env, &s.tmp)
}

#[test]
fn every_corrupt_file_gets_its_named_error_fast_and_in_bounded_memory() {
    let all = cases();
    assert!(all.len() >= 40, "the corpus must hold at least 40 cases, has {}", all.len());
    let s = setup();
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for c in &all {
        let p = data(&format!("corrupt/{}", c.path));
        assert!(p.exists(), "{} is missing", p.display());
        let name = name_of(&p);
        let lib = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| library(&s, c, &p)));
        let mut fail = |what: String| failures.push(format!("{} ({}): {what}", c.path, c.broken));
        let loads = matches!(c.kind.as_str(), "volume_warn" | "volume_ok" | "model_ok");
        let named = c.expect.first().cloned().unwrap_or_default();
        match (&lib, loads) {
            (Err(_), _) => fail("the library panicked".into()),
            (Ok(Ok(w)), true) => {
                if let Err(why) = mentions(w, c, &named) {
                    fail(format!("library warnings {why}: {w}"));
                }
            }
            (Ok(Ok(_)), false) => fail("the library accepted it".into()),
            (Ok(Err(m)), true) => fail(format!("the library refused it: {m}")),
            (Ok(Err(m)), false) => {
                // Preprocessing takes a volume, not a file: its message names the problem only
                // (the CLI adds the file).
                let name = if c.kind == "preprocess" { String::new() } else { name.clone() };
                if let Err(why) = mentions(m, c, &name) {
                    fail(format!("library error {why}: {m}"));
                }
            }
        }
        let r = cli(&s, c, &p);
        table.push(format!("{:<52} {:>6.3} s CPU {:>6.3} s wall {:>6.1} MB  exit {:?}", c.path, r.cpu_s, r.wall_s, r.rss_mb, r.code));
        if r.stderr.contains("panicked") {
            fail(format!("the CLI panicked: {}", r.stderr));
        }
        if loads {
            let all_out = format!("{}{}", r.stdout, r.stderr);
            if r.code != Some(0) || !all_out.contains(&named) {
                fail(format!("the CLI should load it (and name '{named}'): exit {:?}\n{all_out}", r.code));
            }
        } else {
            // One `error: <file>: <problem>` line, last; before it at most `warning: ` lines
            // (what loaded before the failure said).
            let lines: Vec<&str> = r.stderr.lines().collect();
            let errors = lines.iter().filter(|l| !l.starts_with("warning: ")).count();
            if r.code != Some(1) {
                fail(format!("CLI exit {:?} (expected 1): {}", r.code, r.stderr));
            } else if errors != 1 || !lines.last().is_some_and(|l| l.starts_with("error: ")) {
                fail(format!("CLI should print one `error: ` line, printed:\n{}", r.stderr));
            } else if let Err(why) = mentions(lines[lines.len() - 1], c, &name) {
                fail(format!("CLI error {why}: {}", lines[lines.len() - 1]));
            }
        }
        if r.cpu_s > CPU_LIMIT_S {
            fail(format!("CLI used {:.2} s of CPU (limit {CPU_LIMIT_S} s)", r.cpu_s));
        }
        if r.rss_mb > RSS_LIMIT_MB {
            fail(format!("CLI peak memory {:.0} MB (limit {RSS_LIMIT_MB} MB)", r.rss_mb));
        }
    }
    eprintln!("corrupt corpus, CLI children:\n{}", table.join("\n"));
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n\n"));
}

/// A folder whose subfolder links back to the folder: the scan names the cycle and finishes.
#[test]
fn a_symlink_cycle_in_a_folder_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(data("pydicom/head_ct_series_CT2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
    let t = Instant::now();
    let l = volume::open(dir.path(), &OpenOptions::default()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(l.volume.dims[2], 4, "each slice once");
    let w: Vec<&str> = l.volume.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("loop") && m.to_lowercase().contains("cycle")), "{w:?}");
}
