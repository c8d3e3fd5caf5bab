#!/usr/bin/env python3
"""Benchmark volume loading: radbridge (Rust) vs SimpleITK / pydicom / nibabel, in one run.

Usage:
    target/refvenv/bin/python tests/reference/bench_readers.py [PATH ...] [--repeats N]
        [--warmup W] [--radbridge target/release/radbridge] [--json OUT]

Default PATHs: tests/data/totalsegmentator/example_ct_dicom (20-file series) and
tests/data/totalsegmentator/chest_ct.nii.gz.

Per PATH, each reader is run W untimed warm-up times (fills the page cache) and then N timed times;
the median wall time is reported.
  SimpleITK : directory -> ImageSeriesReader(GetGDCMSeriesFileNames) ; file -> ReadImage
  pydicom   : directory only -> dcmread every file, pixel_array, sort by IPP along the slice normal,
              rescale to float32 (stored*slope+intercept), stack into (z,y,x)
  nibabel   : NIfTI only -> nib.load(...).get_fdata() (float64, nibabel's default)
  radbridge : `radbridge bench load PATH --json --repeats N` (subprocess); its JSON fields
              {path, files, slices, file_bytes, voxel_bytes, seconds_median, mb_per_s, slices_per_s, repeats}
MB/s = file bytes on disk / 1e6 / seconds (compressed size for .nii.gz / JPEG 2000), the same definition
for every reader; radbridge's self-reported mb_per_s is shown too. ratio = radbridge seconds / peer
seconds (< 1: radbridge faster). A missing radbridge binary is reported and the Python side still runs.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DATA = HERE.parent / "data"

warnings.filterwarnings("ignore")
sitk.ProcessObject_SetGlobalWarningDisplay(False)


def is_nifti(p):
    return p.endswith(".nii") or p.endswith(".nii.gz")


def files_of(p):
    if os.path.isdir(p):
        return sorted(f for f in glob.glob(os.path.join(p, "*")) if os.path.isfile(f))
    return [p]


# ---------------------------------------------------------------- readers (return n_slices)
def load_sitk(p):
    if os.path.isdir(p):
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames(p))
        im = r.Execute()
    else:
        im = sitk.ReadImage(p)
    arr = sitk.GetArrayViewFromImage(im)
    return int(arr.shape[0]) if arr.ndim >= 3 else 1


def load_pydicom(p):
    dss = [pydicom.dcmread(f) for f in files_of(p)]
    iop = np.array([float(x) for x in dss[0].ImageOrientationPatient])
    n = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(n, [float(x) for x in d.ImagePositionPatient])))
    vol = np.empty((len(dss), int(dss[0].Rows), int(dss[0].Columns)), dtype=np.float32)
    for k, d in enumerate(dss):
        slope = np.float32(float(d.get("RescaleSlope", 1) or 1))
        inter = np.float32(float(d.get("RescaleIntercept", 0) or 0))
        vol[k] = d.pixel_array.astype(np.float32) * slope + inter
    return vol.shape[0]


def load_nibabel(p):
    data = nib.load(p).get_fdata()
    return int(data.shape[2]) if data.ndim >= 3 else 1


def time_reader(fn, p, repeats, warmup):
    for _ in range(warmup):
        fn(p)
    ts = []
    slices = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        slices = fn(p)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), slices


def run_radbridge(binary, p, repeats):
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        return None, f"radbridge binary missing: {binary} (build it with `cargo build --release`)"
    cmd = [binary, "bench", "load", p, "--json", "--repeats", str(repeats)]
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except Exception as e:  # noqa: BLE001
        return None, f"radbridge failed to run: {e}"
    if cp.returncode != 0:
        return None, f"radbridge exited {cp.returncode}: {cp.stderr.strip()[-500:]}"
    out = cp.stdout.strip()
    # tolerate log lines before the JSON object: take the last line that parses
    for line in reversed(out.splitlines() or [out]):
        try:
            return json.loads(line), None
        except json.JSONDecodeError:
            continue
    try:
        return json.loads(out), None
    except json.JSONDecodeError:
        return None, f"radbridge printed no JSON: {out[-300:]!r}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", default=[str(DATA / "totalsegmentator" / "example_ct_dicom"),
                                                 str(DATA / "totalsegmentator" / "chest_ct.nii.gz")])
    ap.add_argument("--repeats", "-n", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--radbridge", default=str(ROOT / "target" / "release" / "radbridge"))
    ap.add_argument("--json", help="also write all results to this JSON file")
    args = ap.parse_args()

    print(f"repeats={args.repeats} warmup={args.warmup} (median wall time); python {sys.version.split()[0]}, "
          f"SimpleITK {sitk.Version_VersionString()}, pydicom {pydicom.__version__}, nibabel {nib.__version__}, "
          f"numpy {np.__version__}")
    results = []
    for p in args.paths:
        p = str(p)
        files = files_of(p)
        file_bytes = sum(os.path.getsize(f) for f in files)
        readers = [("SimpleITK", load_sitk)]
        if os.path.isdir(p):
            readers.append(("pydicom", load_pydicom))
        if is_nifti(p):
            readers.append(("nibabel", load_nibabel))
        rows = []
        for name, fn in readers:
            try:
                sec, slices = time_reader(fn, p, args.repeats, args.warmup)
                rows.append({"reader": name, "seconds": sec, "slices": slices})
            except Exception as e:  # noqa: BLE001
                rows.append({"reader": name, "error": f"{type(e).__name__}: {e}"})
        rb, rb_err = run_radbridge(args.radbridge, p, args.repeats)
        rb_row = None
        if rb is not None:
            rb_row = {"reader": "radbridge", "seconds": float(rb["seconds_median"]),
                      "slices": int(rb.get("slices", 0)), "reported": rb}
            rows.insert(0, rb_row)

        try:
            shown = os.path.relpath(p, ROOT)
        except ValueError:
            shown = p
        print(f"\n{shown}: {len(files)} file(s), {file_bytes / 1e6:.2f} MB on disk")
        hdr = f"  {'reader':<10} {'seconds':>10} {'MB/s':>9} {'slices/s':>10} {'rb/peer':>8} {'speedup':>8}"
        print(hdr)
        print("  " + "-" * (len(hdr) - 2))
        for r in rows:
            if "error" in r:
                print(f"  {r['reader']:<10} ERROR {r['error']}")
                continue
            sec = r["seconds"]
            r["mb_per_s"] = file_bytes / 1e6 / sec if sec > 0 else float("inf")
            r["slices_per_s"] = r["slices"] / sec if sec > 0 else float("inf")
            if rb_row is not None and r is not rb_row:
                r["ratio_radbridge_over_peer"] = rb_row["seconds"] / sec
                ratio = f"{r['ratio_radbridge_over_peer']:8.3f} {1 / r['ratio_radbridge_over_peer']:7.2f}x"
            else:
                ratio = f"{'-':>8} {'-':>8}"
            print(f"  {r['reader']:<10} {sec:10.4f} {r['mb_per_s']:9.1f} {r['slices_per_s']:10.1f} {ratio}")
        if rb_row is not None:
            rep = rb_row["reported"]
            print(f"  radbridge reported: files={rep.get('files')} slices={rep.get('slices')} "
                  f"file_bytes={rep.get('file_bytes')} voxel_bytes={rep.get('voxel_bytes')} "
                  f"mb_per_s={rep.get('mb_per_s')} slices_per_s={rep.get('slices_per_s')} repeats={rep.get('repeats')}")
            if rep.get("file_bytes") not in (None, file_bytes):
                print(f"  note: radbridge file_bytes {rep.get('file_bytes')} != {file_bytes} counted here")
        else:
            print(f"  radbridge: {rb_err}")
        results.append({"path": shown, "files": len(files), "file_bytes": file_bytes, "rows": rows,
                        "radbridge_error": rb_err})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"repeats": args.repeats, "warmup": args.warmup, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
