#!/usr/bin/env bash
# Run one fuzz target under AFL++ (cargo-afl) for a fixed time, then print its figures.
#
#   tests/fuzz/run-afl.sh <target> <seconds> [out-dir]
#
# SEEDS=<dir> starts a fresh run in out-dir from that folder instead of tests/fuzz/corpus/<target>
# (e.g. an earlier run's default/queue, so its figures count only the new binary).
#
# Needs `cargo install cargo-afl` (it builds AFL++ itself on first use). The binary is built
# with overflow checks and debug assertions on (cargo-afl's default), in target/afl. Each
# execution may take at most 2000 ms (-t) and the capped allocator aborts any allocation that
# takes the live heap over 1 GiB, so both hangs and memory blow-ups are recorded as crashes.
# New crashes land in <out-dir>/default/crashes; copy them to tests/fuzz/regressions/<target>/
# once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
t=${1:?target}; secs=${2:?seconds}; out=${3:-target/afl-out/$t}
cargo afl build --release --features afl -p radbridge-fuzz --target-dir target/afl >&2
mkdir -p "$out"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
# Resume when the output folder already holds a run.
inp=${SEEDS:-tests/fuzz/corpus/$t}
[ -f "$out/default/fuzzer_stats" ] && inp=-
export AFL_IGNORE_SEED_PROBLEMS=1
cargo afl fuzz -V "$secs" -t 2000 -i "$inp" -o "$out" -- target/afl/release/fuzz-target "$t" >"$out/afl.log" 2>&1 || true
s=$out/default/fuzzer_stats
printf '%s\t%s execs\t%s s\tcoverage %s\tcrashes %s\thangs %s\tcorpus %s\n' "$t" \
  "$(awk -F' : ' '/^execs_done/{print $2}' "$s")" "$(awk -F' : ' '/^run_time/{print $2}' "$s")" \
  "$(awk -F' : ' '/^bitmap_cvg/{print $2}' "$s")" "$(awk -F' : ' '/^saved_crashes/{print $2}' "$s")" \
  "$(awk -F' : ' '/^saved_hangs/{print $2}' "$s")" "$(awk -F' : ' '/^corpus_count/{print $2}' "$s")"
