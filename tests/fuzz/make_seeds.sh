#!/usr/bin/env bash
# Rebuild the seed corpora in tests/fuzz/corpus from the repository's real test files.
# Needs the debug CLI (`cargo build --bin radbridge`) and the test Python (`make setup-test`:
# pydicom, nibabel). Deterministic except the model-dir and report seeds, which carry
# checksums and times of the run that made them.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${RADBRIDGE_TEST_PYTHON:-target/testvenv/bin/python}
CLI=${RADBRIDGE_CLI:-target/debug/radbridge}
C=tests/fuzz/corpus
D=tests/data
rm -rf "$C"
mkdir -p $C/{dicom_file,dicom_folder,jpeg12,nifti,checkpoint,model_dir,report_json,feedback_db}
SEP=$'\n--radbridge-fuzz-part--\n'

# DICOM files: one per transfer syntax family, the smallest real CT files we have.
for f in pydicom/CT_small.dcm pydicom/head_ct_series_CT2/17106 generated/ct_small_jpeg_baseline.dcm \
         generated/ct_small_jpeg_extended12.dcm generated/ct_small_rle.dcm generated/ct_small_deflated.dcm \
         generated/ct_small_explicit_be.dcm generated/ct_small_implicit_le.dcm generated/ct_small_jpegls_near.dcm \
         generated/ct_small_j2k_lossy.dcm; do
  cp "$D/$f" "$C/dicom_file/$(echo "$f" | tr / _)"
done
# A DICOM folder: the four-slice head series, as parts of one input.
"$PY" - "$D/pydicom/head_ct_series_CT2" "$C/dicom_folder/head_ct2" <<'PY'
import sys, os
d, out = sys.argv[1], sys.argv[2]
sep = b"\n--radbridge-fuzz-part--\n"
files = sorted(os.listdir(d))
open(out, "wb").write(sep.join(open(os.path.join(d, f), "rb").read() for f in files))
PY
# 12-bit JPEG streams: the first fragment of the two extended-12 files.
"$PY" - "$C/jpeg12" "$D/generated/ct_small_jpeg_extended12.dcm" "$D/generated/693_jpeg_extended12.dcm" <<'PY'
import sys, os, pydicom
from pydicom.encaps import generate_frames
out = sys.argv[1]
for f in sys.argv[2:]:
    ds = pydicom.dcmread(f)
    frame = next(generate_frames(ds.PixelData, number_of_frames=int(getattr(ds, "NumberOfFrames", 1))))
    open(os.path.join(out, os.path.basename(f).replace(".dcm", ".jpg")), "wb").write(frame)
PY
# NIfTI: NIfTI-1 and NIfTI-2, plain and gzip.
cp $D/nibabel/standard.nii.gz $D/nibabel/example_nifti2.nii.gz $D/nibabel/anatomical.nii $C/nifti/
"$PY" -c "import gzip,sys; open(sys.argv[2],'wb').write(gzip.open(sys.argv[1]).read())" $D/nibabel/example_nifti2.nii.gz $C/nifti/example_nifti2.nii
"$PY" -c "import gzip,sys; open(sys.argv[2],'wb').write(gzip.open(sys.argv[1]).read())" $D/nibabel/standard.nii.gz $C/nifti/standard.nii
# Checkpoints: the tiny CT-CLIP PyTorch zip and a safetensors file.
cp $D/models/ctclip_tiny/CT-CLIP_v2.pt $C/checkpoint/ctclip_tiny.pt
cp $D/models/ctclip_tiny/expected.safetensors $C/checkpoint/expected.safetensors
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
"$CLI" import-checkpoint --arch ctclip --checkpoint $D/models/ctclip_tiny/CT-CLIP_v2.pt --text-dir $D/models/ctclip_tiny \
  --output "$TMP/ctclip" --patch-size 4 --temporal-patch-size 2 --heads 2 --dim-head 8 --text-max-length 64 2>/dev/null
cp "$TMP/ctclip/model.safetensors" $C/checkpoint/imported.safetensors
# A model directory: the imported tiny model's files, preprocessing shrunk to a 16x16x8 grid.
"$PY" - "$TMP/ctclip" "$C/model_dir/ctclip_tiny" <<'PY'
import sys, json, os
d, out = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "model.json")))
m["preprocess"]["target_shape"] = [16, 16, 8]
m["preprocess"]["target_spacing"] = [12.0, 12.0, 12.0]
m["bank"] = "bank.json"; m["thresholds"] = "thresholds.json"
cfg = open(os.path.join(d, "config.json"), "rb").read()
full = json.load(open("models/demo/bank.json"))
full["entries"] = full["entries"][:2]
bank = json.dumps(full).encode()
thr = json.dumps({"version": 1, "source": "seed", "thresholds": {"Pleural effusion": 0.5}}).encode()
cache = json.dumps({"model_checksum": m["weights_sha256"], "entries": {"a small pleural effusion": [[0.1] * 16]}}).encode()
sep = b"\n--radbridge-fuzz-part--\n"
open(out, "wb").write(sep.join([json.dumps(m, indent=1).encode(), cfg, bank, thr, cache]))
PY
# A diagnosis (report --from-json) and a verdicts file, from the demo model on the small NIfTI.
"$CLI" diagnose --model models/demo --finding "pleural effusion" --top-k 2 --json "$TMP/d.json" $D/nibabel/anatomical.nii >/dev/null 2>&1
printf '[{"label": "Pleural effusion", "verdict": "confirmed", "reviewer": "r1", "at": "2026-01-02T03:04:05Z"}]' > "$TMP/v.json"
"$PY" - "$TMP/d.json" "$TMP/v.json" "$C/report_json" <<'PY'
import sys, os
d, v, out = sys.argv[1:]
sep = b"\n--radbridge-fuzz-part--\n"
open(os.path.join(out, "diagnosis"), "wb").write(open(d, "rb").read())
open(os.path.join(out, "diagnosis_verdicts"), "wb").write(open(d, "rb").read() + sep + open(v, "rb").read())
PY
# A feedback database with one recorded run and one review.
"$CLI" feedback record --db "$TMP/f.sqlite3" --from-json "$TMP/d.json" >/dev/null 2>&1
cp "$TMP/f.sqlite3" $C/feedback_db/one_run.sqlite3
ls -la $C/*
