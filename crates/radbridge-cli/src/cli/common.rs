//! Pieces shared by the subcommands: the series-loading flags, the progress bar, the
//! prompt-file reader and file writing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use radbridge_volume::{self as volume, CancelToken, Loaded, OpenOptions, Progress};

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Series to load when the folder holds several: 0-based index or SeriesInstanceUID
    #[arg(long)]
    pub series: Option<String>,
    /// Load non-CT modalities too (values are then not Hounsfield units)
    #[arg(long)]
    pub any_modality: bool,
}

/// Progress bar on stderr (hidden when stderr is not a terminal).
struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Open options from the loading flags, with a progress bar when `progress`.
pub fn open_options(load: &LoadArgs, progress: bool) -> OpenOptions {
    let mut o = OpenOptions { series: load.series.clone(), any_modality: load.any_modality, ..Default::default() };
    if progress {
        let pb = ProgressBar::new(0);
        pb.set_style(ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "));
        o.progress = Arc::new(Bar(pb));
    }
    o
}

/// Open a CT with the loading flags and a progress bar.
pub fn open(path: &Path, load: &LoadArgs) -> Result<Loaded> {
    Ok(volume::open(path, &open_options(load, true))?)
}

/// Prompts, one per line (blank lines skipped); at least one.
pub fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read prompts", path.display()))?;
    let p: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    anyhow::ensure!(!p.is_empty(), "{}: no prompts (one per line)", path.display());
    Ok(p)
}

/// Write an output file atomically; the error names it ("<file>: cannot write: …").
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    radbridge_volume::atomic::write(path, contents).with_context(|| format!("{}: cannot write", path.display()))
}

/// A counting progress bar on stderr with `template`, hidden when stderr is not a terminal.
pub fn counter_bar(len: u64, template: &str) -> ProgressBar {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pb = ProgressBar::with_draw_target(Some(len), if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() });
    pb.set_style(ProgressStyle::with_template(template).expect("template").progress_chars("=> "));
    pb
}

/// The labels of a model's label set (`set`, else the model's default set), with the set's
/// name; an unknown set is an error naming the sets the model has.
pub fn label_set(m: &radbridge_model::package::Manifest, set: Option<&str>) -> Result<(String, Vec<String>)> {
    let set = set.map_or_else(|| m.default_label_set.clone(), String::from);
    let labels = m.labels(&set).with_context(|| {
        format!("unknown label set '{set}' (this model has: all, {})", m.label_sets.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
    Ok((set, labels))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // Second signal: leave now.
        unsafe { libc::_exit(130) };
    }
}

/// Ctrl-C / SIGTERM → cancel `token` (the long work stops at its next check, keeping what it
/// finished), printing `message` when given; a second signal exits at once with status 130.
pub fn cancel_on_interrupt(token: CancelToken, message: Option<&'static str>) {
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    std::thread::spawn(move || loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            if let Some(m) = message {
                eprintln!("\n{m}");
            }
            token.cancel();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    });
}

/// The feedback database: `db`, else the default one ($RADBRIDGE_DATA_DIR/radbridge.sqlite3,
/// else the platform's app-data folder).
pub fn open_store(db: Option<&Path>) -> Result<radbridge_store::Store> {
    Ok(match db {
        Some(p) => radbridge_store::Store::open(p)?,
        None => radbridge_store::Store::open_default()?,
    })
}

/// Open the device named by `--device` (cpu, cuda[:N], metal[:N]).
pub fn device(spec: &str) -> Result<candle_core::Device> {
    Ok(spec.parse::<radbridge_model::device::DeviceSpec>()?.open()?)
}
