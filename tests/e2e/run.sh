#!/usr/bin/env bash
# End-to-end tests of the REAL app window: tauri-driver + Debian's WebKitWebDriver under Xvfb,
# driven by Selenium (tests/e2e/test_app.py). `make test` runs this after building the dev app.
#
# Environment (all optional):
#   RADBRIDGE_APP        app binary            (default target/debug/radbridge-app)
#   RADBRIDGE_CLI        CLI binary            (default target/debug/radbridge; imports the tiny model)
#   RADBRIDGE_TEST_PYTHON python with selenium (default target/testvenv/bin/python)
#   RADBRIDGE_MODEL      model folder          (default models/demo if present, else the tiny test
#                                               model imported into target/e2e/model)
#   TAURI_DRIVER         tauri-driver binary   (default: on PATH, else ~/.cargo/bin/tauri-driver)
#   RADBRIDGE_E2E_DOCS=1 copy the screenshots into tests/e2e/screenshots/ (the README shows them)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
APP="${RADBRIDGE_APP:-$ROOT/target/debug/radbridge-app}"
CLI="${RADBRIDGE_CLI:-$ROOT/target/debug/radbridge}"
PY="${RADBRIDGE_TEST_PYTHON:-$ROOT/target/testvenv/bin/python}"
DRIVER="${TAURI_DRIVER:-$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")}"
WORK="$ROOT/target/e2e"
SHOTS="$ROOT/target/e2e-screenshots"

for f in "$APP" "$PY" "$DRIVER" /usr/bin/WebKitWebDriver; do
  [ -x "$f" ] || { echo "e2e: $f not found (build the app, install tauri-driver: cargo install tauri-driver --version ^2 --locked)" >&2; exit 1; }
done
command -v xvfb-run >/dev/null || { echo "e2e: xvfb-run not found (apt-get install xvfb xauth)" >&2; exit 1; }

rm -rf "$WORK" "$SHOTS"
mkdir -p "$WORK/data" "$WORK/cache" "$SHOTS"

if [ -z "${RADBRIDGE_MODEL:-}" ]; then
  if [ -f "$ROOT/models/demo/model.json" ]; then
    RADBRIDGE_MODEL="$ROOT/models/demo"
  else
    # The tiny random-weight BrgSA of the model tests, with words for its bank entries.
    "$CLI" import-checkpoint --arch brgsa --checkpoint tests/data/models/brgsa_tiny/best.ckpt \
      --text-dir tests/data/models/brgsa_tiny --output "$WORK/model" --vision-heads 4 --text-max-length 24 >/dev/null
    RADBRIDGE_CACHE_DIR="$WORK/cache" "$CLI" bank describe --model "$WORK/model" --corpus tests/e2e/corpus.jsonl
    RADBRIDGE_MODEL="$WORK/model"
  fi
fi
export RADBRIDGE_MODEL RADBRIDGE_DATA_DIR="$WORK/data" RADBRIDGE_CACHE_DIR="$WORK/cache"
echo "e2e: app $APP, model $RADBRIDGE_MODEL"

xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" tests/e2e/test_app.py \
  --app "$APP" --driver "$DRIVER" --ct "$ROOT/tests/data/totalsegmentator/chest_ct.nii.gz" --shots "$SHOTS" --out "$WORK"

if [ "${RADBRIDGE_E2E_DOCS:-0}" = 1 ]; then
  mkdir -p tests/e2e/screenshots
  cp "$SHOTS"/*.png tests/e2e/screenshots/
  echo "e2e: screenshots copied to tests/e2e/screenshots/"
fi
