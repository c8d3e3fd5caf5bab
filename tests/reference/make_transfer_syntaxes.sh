#!/usr/bin/env bash
# Regenerates tests/data/generated/: one DICOM file per transfer syntax, derived from
#   tests/data/pydicom/CT_small.dcm      (128x128, signed 16-bit, rescale 1/-1024)
#   tests/data/pydicom-data/693_UNCR.dcm (512x512, signed 14-bit, rescale 1/-1024, padding -2000)
# Tools: dcmtk 3.6.7 (dcmconv, dcmcjpeg, dcmcjpls, dcmcrle) and, where dcmtk has no codec
# (JPEG 2000) or refuses the input (JPEG-LS near-lossless on signed data), pydicom +
# pylibjpeg-openjpeg through tests/reference/dicom_tools.py.
# Also writes tests/data/generated/README.md (file list, UIDs, exact commands, verification).
#
# Usage (from anywhere):  PYTHON=target/refvenv/bin/python tests/reference/make_transfer_syntaxes.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-target/refvenv/bin/python}"
cd "$ROOT"

OUT=tests/data/generated
CT=tests/data/pydicom/CT_small.dcm
U693=tests/data/pydicom-data/693_UNCR.dcm
TOOLS=tests/reference/dicom_tools.py

for t in dcmconv dcmcjpeg dcmcjpls dcmcrle dcmdump; do
  command -v "$t" >/dev/null || { echo "missing dcmtk tool: $t" >&2; exit 1; }
done

rm -rf "$OUT"
mkdir -p "$OUT"
ROWS="$(mktemp)"
trap 'rm -f "$ROWS"' EXIT
: > "$OUT/.sources"

# gen <name> <expected TS UID> <source> <lossless: yes|no|derived> <command...>
# Runs the command, checks the written transfer syntax and records a README row.
gen() {
  local name="$1" uid="$2" src="$3" lossless="$4"; shift 4
  local cmd="$*"
  echo "+ $cmd"
  eval "$cmd"
  local got
  got="$(dcmdump -M +P 0002,0010 "$OUT/$name" | sed -E 's/^.*=([^ ]+).*$/\1/;s/^.*\[([^]]*)\].*$/\1/')"
  local got_uid
  got_uid="$("$PYTHON" -c "import pydicom,sys; print(pydicom.dcmread(sys.argv[1], stop_before_pixels=True).file_meta.TransferSyntaxUID)" "$OUT/$name")"
  if [[ "$got_uid" != "$uid" ]]; then
    echo "ERROR: $name has transfer syntax $got_uid ($got), expected $uid" >&2
    exit 1
  fi
  echo "$name $src" >> "$OUT/.sources"
  printf '| `%s` | %s (%s) | `%s` | `%s` | %s |\n' "$name" "$uid" "$got" "$src" "$cmd" "$lossless" >> "$ROWS"
}

IVR=1.2.840.10008.1.2
EVR_LE=1.2.840.10008.1.2.1
EVR_BE=1.2.840.10008.1.2.2
DEFL=1.2.840.10008.1.2.1.99
JPEG_BASE=1.2.840.10008.1.2.4.50
JPEG_EXT=1.2.840.10008.1.2.4.51
JPEG_LL14=1.2.840.10008.1.2.4.57
JPEG_SV1=1.2.840.10008.1.2.4.70
JLS_LL=1.2.840.10008.1.2.4.80
JLS_NEAR=1.2.840.10008.1.2.4.81
J2K_LL=1.2.840.10008.1.2.4.90
J2K=1.2.840.10008.1.2.4.91
RLE=1.2.840.10008.1.2.5

# ---------------------------------------------------------------- CT_small.dcm
gen ct_small_implicit_le.dcm   $IVR      $CT yes "dcmconv +ti $CT $OUT/ct_small_implicit_le.dcm"
gen ct_small_explicit_be.dcm   $EVR_BE   $CT yes "dcmconv +tb $CT $OUT/ct_small_explicit_be.dcm"
gen ct_small_deflated.dcm      $DEFL     $CT yes "dcmconv +td $CT $OUT/ct_small_deflated.dcm"
# Lossy JPEG: dcmcjpeg itself derives the 8-bit (baseline) / 12-bit (extended) CT: it maps the
# stored-value range onto 8/12 bits and writes a NEW RescaleSlope/RescaleIntercept (for CT it never
# writes an identity rescale). +un keeps the SOP Instance UID so reruns are byte-identical.
gen ct_small_jpeg_baseline.dcm   $JPEG_BASE $CT "no (8-bit, dcmtk rescale)" "dcmcjpeg +eb +un $CT $OUT/ct_small_jpeg_baseline.dcm"
gen ct_small_jpeg_extended12.dcm $JPEG_EXT  $CT "no (12-bit, dcmtk rescale)" "dcmcjpeg +ee +un $CT $OUT/ct_small_jpeg_extended12.dcm"
gen ct_small_jpeg_lossless_p14.dcm $JPEG_LL14 $CT yes "dcmcjpeg +el +sv 6 $CT $OUT/ct_small_jpeg_lossless_p14.dcm"
gen ct_small_jpeg_lossless_sv1.dcm $JPEG_SV1  $CT yes "dcmcjpeg +e1 $CT $OUT/ct_small_jpeg_lossless_sv1.dcm"
gen ct_small_jpegls_lossless.dcm   $JLS_LL    $CT yes "dcmcjpls +el $CT $OUT/ct_small_jpegls_lossless.dcm"
# dcmcjpls refuses near-lossless on signed data ("Unsupported pixel representation"), so first
# derive an unsigned 12-bit copy (CT_small's stored values are 128..2191: offset 0, HU unchanged).
gen ct_small_unsigned12.dcm $EVR_LE $CT "derived, HU identical" "$PYTHON $TOOLS derive-unsigned $CT $OUT/ct_small_unsigned12.dcm --offset 0 --bits-stored 12"
gen ct_small_jpegls_near.dcm $JLS_NEAR $OUT/ct_small_unsigned12.dcm "no (NEAR=2)" "dcmcjpls +en +md 2 +un $OUT/ct_small_unsigned12.dcm $OUT/ct_small_jpegls_near.dcm"
gen ct_small_j2k_lossless.dcm $J2K_LL $CT yes "$PYTHON $TOOLS encode $CT $OUT/ct_small_j2k_lossless.dcm --syntax j2k-lossless"
gen ct_small_j2k_lossy.dcm    $J2K    $CT "no (ratio 10)" "$PYTHON $TOOLS encode $CT $OUT/ct_small_j2k_lossy.dcm --syntax j2k-lossy --cr 10"
gen ct_small_rle.dcm          $RLE    $CT yes "dcmcrle $CT $OUT/ct_small_rle.dcm"

# ---------------------------------------------------------------- 693_UNCR.dcm
# (no implicit / big-endian copies of the 512x512 slice: they would add ~1 MB and CT_small covers them)
gen 693_deflated.dcm           $DEFL      $U693 yes "dcmconv +td $U693 $OUT/693_deflated.dcm"
gen 693_jpeg_baseline.dcm      $JPEG_BASE $U693 "no (8-bit, dcmtk rescale)" "dcmcjpeg +eb +un $U693 $OUT/693_jpeg_baseline.dcm"
gen 693_jpeg_extended12.dcm    $JPEG_EXT  $U693 "no (12-bit, dcmtk rescale)" "dcmcjpeg +ee +un $U693 $OUT/693_jpeg_extended12.dcm"
gen 693_jpeg_lossless_p14.dcm  $JPEG_LL14 $U693 yes "dcmcjpeg +el +sv 6 $U693 $OUT/693_jpeg_lossless_p14.dcm"
gen 693_jpeg_lossless_sv1.dcm  $JPEG_SV1  $U693 yes "dcmcjpeg +e1 $U693 $OUT/693_jpeg_lossless_sv1.dcm"
gen 693_jpegls_lossless.dcm    $JLS_LL    $U693 yes "dcmcjpls +el $U693 $OUT/693_jpegls_lossless.dcm"
# 693 stored values are -2000..2492 (-2000 = PixelPaddingValue): shift by +2048 into unsigned 13-bit,
# RescaleIntercept -1024 -> -3072, PixelPaddingValue -2000 (SS) -> 48 (US).
gen 693_unsigned13.dcm $EVR_LE $U693 "derived, HU identical" "$PYTHON $TOOLS derive-unsigned $U693 $OUT/693_unsigned13.dcm --offset 2048 --bits-stored 13"
gen 693_jpegls_near.dcm $JLS_NEAR $OUT/693_unsigned13.dcm "no (NEAR=2)" "dcmcjpls +en +md 2 +un $OUT/693_unsigned13.dcm $OUT/693_jpegls_near.dcm"
gen 693_j2k_lossless.dcm $J2K_LL $U693 yes "$PYTHON $TOOLS encode $U693 $OUT/693_j2k_lossless.dcm --syntax j2k-lossless"
gen 693_j2k_lossy.dcm    $J2K    $U693 "no (ratio 10)" "$PYTHON $TOOLS encode $U693 $OUT/693_j2k_lossy.dcm --syntax j2k-lossy --cr 10"
gen 693_rle.dcm          $RLE    $U693 yes "dcmcrle $U693 $OUT/693_rle.dcm"

# ---------------------------------------------------------------- README
VERIFY="$("$PYTHON" $TOOLS verify "$OUT")"
TOTAL="$(du -cb "$OUT"/*.dcm | tail -1 | cut -f1)"
{
cat <<EOF
# Generated transfer-syntax test files

**Generated — do not edit by hand.** Rebuild with

    PYTHON=target/refvenv/bin/python tests/reference/make_transfer_syntaxes.sh

(run from anywhere; commands below are relative to the repository root). Tools: $(dcmconv --version | head -1 | sed 's/^\$//;s/\$$//'),
pydicom $("$PYTHON" -c 'import pydicom; print(pydicom.__version__)'), pylibjpeg-openjpeg $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("pylibjpeg-openjpeg"))').
Sources (read-only, see ../SOURCES.md): \`$CT\` (128x128, signed 16-bit, rescale 1/-1024,
PixelPaddingValue -2000 which does not occur in its pixels) and \`$U693\` (512x512, signed 14-bit,
rescale 1/-1024, PixelPaddingValue -2000 which does occur: the area outside the scan circle).
Total size: $TOTAL bytes.

Notes
- **8-bit / 12-bit lossy JPEG (.4.50 / .4.51)**: the sources are 16/14-bit, so the 8-bit and 12-bit CTs are
  derived by \`dcmcjpeg\` itself: it linearly maps the stored-value range onto 8 or 12 bits, writes
  PixelRepresentation 0 and a **new RescaleSlope/RescaleIntercept** (non-integer slope, e.g. 16.05882), and
  drops PixelPaddingValue. Decoding + the new rescale gives HU close to, not equal to, the source.
  \`+un\` keeps the source SOP Instance UID (so reruns are byte-identical).
- **JPEG-LS near-lossless (.4.81)**: dcmcjpls refuses signed input, so an unsigned explicit-LE copy is
  derived first (\`*_unsigned12.dcm\`, \`*_unsigned13.dcm\`, kept here; HU identical to the source; the 693
  copy has stored values shifted by +2048, intercept -3072 and a US PixelPaddingValue 48). NEAR=2.
- **JPEG 2000 (.4.90 / .4.91)**: dcmtk 3.6.7 has no JPEG 2000 codec; these are written by pydicom +
  pylibjpeg-openjpeg (OpenJPEG). The lossy one uses compression ratio 10 and gets LossyImageCompression=01
  and a deterministic new SOP Instance UID.
- JPEG lossless process 14 (.4.57) is written with selection value 6 (dcmtk default); SV1 (.4.70) with 1.
- \`.sources\` (hidden) lists "file source" pairs used by the verification below.
- Every syntax in the brief was produced; none is missing.

## Files

| file | transfer syntax UID | source | exact command | lossless |
|---|---|---|---|---|
EOF
cat "$ROWS"
cat <<EOF

## Verification (pydicom decode + modality LUT, compared with the source's HU)

$VERIFY
EOF
} > "$OUT/README.md"

echo "wrote $(ls "$OUT"/*.dcm | wc -l) files, $TOTAL bytes, to $OUT"
