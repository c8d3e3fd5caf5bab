//! Every fuzz target under `cargo test`: the seed corpus and the regression files (inputs that
//! once crashed a target) replayed, then generated inputs — bolero draws edits (byte writes,
//! runs of 0x00/0xFF, truncations, splices) and applies them to the seed files, so the
//! generated inputs get past the magic numbers into the parsers.
//!
//! Overflow checks are on (the test profile), and the capped allocator makes an allocation
//! over 1 GiB of live heap abort the test binary.

use std::path::{Path, PathBuf};

use bolero::TypeGenerator;
use radbridge_fuzz::{repo_path, target, CappedAllocator, TARGETS};

#[global_allocator]
static ALLOC: CappedAllocator = CappedAllocator;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn seeds(name: &str) -> Vec<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = files(&repo_path(&format!("tests/fuzz/corpus/{name}"))).iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seed corpus for {name} (tests/fuzz/corpus/{name})");
    seeds
}

/// One generated input: which seed, then edits applied in order.
#[derive(Debug, TypeGenerator)]
struct Mutation {
    seed: u16,
    edits: Vec<Edit>,
}

#[derive(Debug, TypeGenerator)]
enum Edit {
    /// Write a byte.
    Byte { at: u32, value: u8 },
    /// Overwrite up to 8 bytes with 0x00 or 0xFF (sizes and counts become 0 or huge).
    Run { at: u32, len: u8, ones: bool },
    /// Write a little-endian u32 (a length field, a dimension).
    Word { at: u32, value: u32 },
    /// Cut the file.
    Truncate { at: u32 },
    /// Copy a slice of the input elsewhere (duplicates tags, headers, parts).
    Splice { from: u32, to: u32, len: u16 },
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits.iter().take(16) {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match *e {
            Edit::Byte { at, value } => b[at as usize % n] = value,
            Edit::Run { at, len, ones } => {
                let at = at as usize % n;
                let end = (at + (len as usize % 8) + 1).min(n);
                b[at..end].fill(if ones { 0xFF } else { 0x00 });
            }
            Edit::Word { at, value } => {
                let at = at as usize % n;
                for (i, byte) in value.to_le_bytes().iter().enumerate() {
                    if at + i < n {
                        b[at + i] = *byte;
                    }
                }
            }
            Edit::Truncate { at } => b.truncate(at as usize % (n + 1)),
            Edit::Splice { from, to, len } => {
                let from = from as usize % n;
                let to = to as usize % n;
                let len = (len as usize).min(n - from).min(4096);
                let chunk = b[from..from + len].to_vec();
                b.splice(to..to, chunk);
            }
        }
    }
    b
}

/// The seeds must be accepted (else the target stops at the first check and fuzzes nothing);
/// the regression files (inputs that once crashed) only have to return.
fn replay(name: &str) {
    let f = target(name).unwrap();
    let seeds = files(&repo_path(&format!("tests/fuzz/corpus/{name}")));
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for p in &seeds {
        assert!(f(&std::fs::read(p).unwrap()), "{name}: the seed {} is not accepted", p.display());
    }
    for p in files(&repo_path(&format!("tests/fuzz/regressions/{name}"))) {
        f(&std::fs::read(&p).unwrap());
    }
}

/// Generated inputs per target under `cargo test` (RADBRIDGE_FUZZ_ITERATIONS overrides).
fn iterations(default: usize) -> usize {
    std::env::var("RADBRIDGE_FUZZ_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn generated(name: &str, default: usize) {
    let f = target(name).unwrap();
    let seeds = seeds(name);
    let n = iterations(default);
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let (runs, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    bolero::check!().with_type::<Mutation>().with_iterations(n).for_each(|m: &Mutation| {
        let seed = &seeds[m.seed as usize % seeds.len()];
        // One to four edits: a file with one thing wrong gets furthest into the reader.
        let k = (1 + (m.seed as usize >> 8) % 4).min(m.edits.len());
        runs.fetch_add(1, Relaxed);
        accepted.fetch_add(f(&apply(seed, &m.edits[..k])) as usize, Relaxed);
    });
    let (runs, accepted) = (runs.into_inner(), accepted.into_inner());
    eprintln!("{name}: {runs} generated inputs, {accepted} accepted");
    assert!(runs >= n, "{name}: bolero ran {runs} inputs, expected {n}");
}

#[test]
fn every_target_has_a_seed_corpus() {
    for (name, _) in TARGETS {
        assert!(!seeds(name).is_empty());
    }
}

macro_rules! fuzz_tests {
    ($($name:ident: $n:expr),* $(,)?) => {
        mod replayed {
            $(#[test] fn $name() { super::replay(stringify!($name)); })*
        }
        mod generated {
            $(#[test] fn $name() { super::generated(stringify!($name), $n); })*
        }
    };
}

// Iterations are sized so all targets together take well under a minute on 2 cores.
fuzz_tests! {
    dicom_file: 5000,
    dicom_folder: 2000,
    jpeg12: 5000,
    nifti: 5000,
    checkpoint: 3000,
    model_dir: 1000,
    report_json: 2000,
    feedback_db: 3000,
}
