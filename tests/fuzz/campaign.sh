#!/usr/bin/env bash
# Fuzz every target at once under AFL++ for SECONDS, then print one line of figures per target
# (the table in tests/fuzz/README.md comes from this).
#
#   tests/fuzz/campaign.sh SECONDS [target ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:?seconds}; shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dicom_file dicom_folder jpeg12 nifti checkpoint model_dir report_json feedback_db)
cargo afl build --release --features afl -p radbridge-fuzz --target-dir target/afl >&2
# More fuzzers than cores: let them share the cores rather than each claiming one.
export AFL_NO_AFFINITY=1
mkdir -p target/afl-out
for t in "${targets[@]}"; do
  tests/fuzz/run-afl.sh "$t" "$secs" > "target/afl-out/$t.summary" 2>&1 &
done
wait
cat target/afl-out/*.summary | grep -v '^ *\(Compiling\|Finished\)'
