#!/usr/bin/env bash
# Fuzz every target at once under AFL++ for SECONDS, then print one line of figures per target
# (the table in tests/fuzz/README.md comes from this).
#
#   tests/fuzz/campaign.sh SECONDS [target ...]
#
# OUT=<dir> (default target/afl-out) holds the runs; SEEDS_FROM=<dir> starts each target afresh
# from <dir>/<target>/default/queue (an earlier campaign's corpus).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:?seconds}; shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dicom_file dicom_folder jpeg12 nifti checkpoint model_dir report_json feedback_db)
cargo afl build --release --features afl -p radbridge-fuzz --target-dir target/afl >&2
# More fuzzers than cores: let them share the cores rather than each claiming one.
export AFL_NO_AFFINITY=1
out=${OUT:-target/afl-out}
mkdir -p "$out"
for t in "${targets[@]}"; do
  seeds=()
  [ -n "${SEEDS_FROM:-}" ] && seeds=(env "SEEDS=$SEEDS_FROM/$t/default/queue")
  "${seeds[@]}" tests/fuzz/run-afl.sh "$t" "$secs" "$out/$t" > "$out/$t.summary" 2>&1 &
done
wait
cat "$out"/*.summary | grep -v '^ *\(Compiling\|Finished\)'
