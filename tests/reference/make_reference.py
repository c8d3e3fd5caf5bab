#!/usr/bin/env python3
"""Reference volumes for the Rust loader tests -> tests/data/reference/volumes.json.

Usage:  target/refvenv/bin/python tests/reference/make_reference.py [--out PATH]

Conventions (shared with the Rust side, see tests/reference/README.md):
  * voxel axes (i, j, k), dims [nx, ny, nz], flat index = i + nx*(j + ny*k) (i fastest).
    NIfTI: (i, j, k) = nibabel get_fdata() axes 0, 1, 2  -> flat = data.ravel(order="F").
    DICOM: i = column (along the IOP row cosines), j = row (along the IOP column cosines),
           k = slice/frame index                        -> flat = vol[k, j, i].ravel(order="C").
  * affine_lps: 4x4 row-major, (i, j, k, 1) -> patient LPS mm.
    NIfTI: nibabel img.affine (sform if sform_code>0, else qform if qform_code>0, else nibabel's
           fallback) with the first two rows negated.
    DICOM: column 0 = row_cos * PixelSpacing[1] (column spacing), column 1 = col_cos *
           PixelSpacing[0] (row spacing), column 3 = IPP of slice/frame k=0, and column 2:
             - series (slices sorted ascending by IPP . (row_cos x col_cos)) and multi-frame files
               (frames in STORED order): (IPP[last] - IPP[first]) / (n - 1). For the uneven
               head_ct_series_CT2 this is only the mean step; the true sorted positions along the
               normal are recorded in "positions".
             - single-frame files: normal * SpacingBetweenSlices, else normal * SliceThickness,
               else normal * 1.0 (this is also what SimpleITK/GDCM report); see "z_spacing_source".
    A file without IPP/IOP/PixelSpacing (top level or functional groups) gets no affine/axcodes/spacing.
  * axcodes: "".join(nibabel.aff2axcodes(RAS affine)), e.g. "LPS".
  * values: float64 stored value * slope + intercept (DICOM: per slice / per frame, functional groups
    honoured; NIfTI: nibabel get_fdata(), first volume of 4-D files). Padding is NOT substituted;
    "padding_count" counts stored values equal to PixelPaddingValue.
  * stats: min, max, mean, population std (ddof=0), sum; sum/mean/std computed with math.fsum.
  * sample: 2000 flat indices (sorted ascending) drawn by numpy.random.default_rng(12345)
    .choice(N, 2000, replace=False), or all voxels when N <= 2000; values at full float64 precision.
  * slice_mean: mean over each k-slice, k = 0..nz-1.
"""
import argparse
import glob
import json
import math
import os
import sys
import traceback
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import SimpleITK as sitk
from nibabel.openers import ImageOpener

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
N_SAMPLE = 2000
SEED = 12345
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

warnings.filterwarnings("ignore")
sitk.ProcessObject_SetGlobalWarningDisplay(False)


# ------------------------------------------------------------------ helpers
def rel(p):
    return os.path.relpath(p, DATA).replace(os.sep, "/")


def case_name(p):
    r = rel(p)
    for ext in (".nii.gz", ".nii", ".dcm"):
        if r.endswith(ext):
            return r[: -len(ext)]
    return r


def fnum(x):
    """JSON-safe float (NaN/inf -> None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def summarize(flat, shape):
    """flat: float64 1-D in (i fastest, k slowest) order; shape [nx, ny, nz]."""
    flat = np.ascontiguousarray(flat, dtype=np.float64)
    nx, ny, nz = shape
    n = flat.size
    assert n == nx * ny * nz
    s = math.fsum(flat)
    mean = s / n
    std = math.sqrt(math.fsum((flat - mean) ** 2) / n)
    rng = np.random.default_rng(SEED)
    idx = np.arange(n) if n <= N_SAMPLE else np.sort(rng.choice(n, size=N_SAMPLE, replace=False))
    per_slice = flat.reshape(nz, ny * nx)
    return {
        "stats": {"min": float(flat.min()), "max": float(flat.max()), "mean": mean, "std": std, "sum": s},
        "sample": {"index": [int(v) for v in idx], "value": [float(v) for v in flat[idx]]},
        "slice_mean": [math.fsum(row) / row.size for row in per_slice],
    }


def geometry_fields(aff_lps):
    aff_lps = np.asarray(aff_lps, dtype=np.float64)
    ras = LPS_FROM_RAS @ aff_lps
    return {
        "affine_lps": [[float(v) for v in row] for row in aff_lps],
        "axcodes": "".join(nib.aff2axcodes(ras)),
        "spacing": [float(np.linalg.norm(aff_lps[:3, c])) for c in range(3)],
    }


# ------------------------------------------------------------------ NIfTI
def nifti_case(path):
    img = nib.load(path)
    with ImageOpener(path) as fh:  # raw header: nibabel's in-memory header resets scl_* on load
        raw = type(img.header).from_fileobj(fh)
    data = img.get_fdata(dtype=np.float64)
    ndim = data.ndim
    while data.ndim > 3:
        data = data[..., 0]
    shape = [int(s) for s in data.shape]
    case = {
        "path": rel(path),
        "kind": "nifti",
        "nifti_version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "ndim_original": ndim,
        "shape_original": [int(s) for s in img.shape],
        "shape": shape,
        "datatype": int(raw["datatype"]),
        "dtype": str(img.get_data_dtype()),
        "endianness": "big" if raw.endianness == ">" else "little",
        "vox_offset": float(raw["vox_offset"]),
        "scl_slope": fnum(raw["scl_slope"]),
        "scl_inter": fnum(raw["scl_inter"]),
        "scl_applied": [float(img.dataobj.slope), float(img.dataobj.inter)],
        "sform_code": int(raw["sform_code"]),
        "qform_code": int(raw["qform_code"]),
        "zooms": [float(z) for z in raw.get_zooms()],
    }
    case.update(geometry_fields(LPS_FROM_RAS @ img.affine))
    case.update(summarize(data.ravel(order="F"), shape))
    return case


# ------------------------------------------------------------------ DICOM
def _fg(item, seq, kw):
    if item is not None and seq in item and len(item[seq].value) and kw in item[seq][0]:
        return item[seq][0][kw].value
    return None


def frame_info(ds, f):
    """(ipp, iop, pixel_spacing, slope, intercept) for frame f, per-frame FG > shared FG > top level."""
    per = ds.PerFrameFunctionalGroupsSequence[f] if "PerFrameFunctionalGroupsSequence" in ds else None
    sh = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None

    def get(seq, kw):
        for item in (per, sh):
            v = _fg(item, seq, kw)
            if v is not None:
                return v
        return ds.get(kw)

    ipp = get("PlanePositionSequence", "ImagePositionPatient")
    iop = get("PlaneOrientationSequence", "ImageOrientationPatient")
    ps = get("PixelMeasuresSequence", "PixelSpacing")
    slope = get("PixelValueTransformationSequence", "RescaleSlope")
    inter = get("PixelValueTransformationSequence", "RescaleIntercept")
    conv = lambda v: None if v is None else [float(x) for x in v]
    return (conv(ipp), conv(iop), conv(ps),
            1.0 if slope is None else float(slope), 0.0 if inter is None else float(inter))


def dicom_affine(ipp0, iop, ps, col2):
    r, c = np.array(iop[:3]), np.array(iop[3:])
    a = np.eye(4)
    a[:3, 0] = r * ps[1]
    a[:3, 1] = c * ps[0]
    a[:3, 2] = col2
    a[:3, 3] = ipp0
    return a


def normal_of(iop):
    return np.cross(np.array(iop[:3]), np.array(iop[3:]))


def dicom_common(ds):
    out = {
        "modality": str(ds.get("Modality", "")),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
        "rows": int(ds.Rows), "columns": int(ds.Columns),
        "bits_allocated": int(ds.BitsAllocated), "bits_stored": int(ds.BitsStored),
        "pixel_representation": int(ds.PixelRepresentation),
        "photometric": str(ds.get("PhotometricInterpretation", "")),
        "lossy": str(ds.get("LossyImageCompression", "00")) == "01",
    }
    if "PixelPaddingValue" in ds:
        out["pixel_padding_value"] = int(ds.PixelPaddingValue)
    return out


def sitk_affine(im):
    d = np.array(im.GetDirection()).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d @ np.diag(im.GetSpacing())
    a[:3, 3] = im.GetOrigin()
    return a


def dicom_file_case(path):
    case = {"path": rel(path), "kind": "dicom_file"}
    try:
        ds = pydicom.dcmread(path)
        case.update(dicom_common(ds))
        nf = int(ds.get("NumberOfFrames", 1) or 1)
        case["number_of_frames"] = nf
        arr = ds.pixel_array
        if ds.get("SamplesPerPixel", 1) != 1:
            raise ValueError("not a single-sample (grey) image")
        stored = arr.reshape(nf, ds.Rows, ds.Columns)
        infos = [frame_info(ds, f) for f in range(nf)]
        vol = np.empty(stored.shape, dtype=np.float64)
        for f, (_, _, _, slope, inter) in enumerate(infos):
            vol[f] = stored[f].astype(np.float64) * slope + inter
        if nf == 1:
            case["rescale"] = [infos[0][3], infos[0][4]]
        else:
            case["frame_rescale"] = [[i[3], i[4]] for i in infos]
        if "pixel_padding_value" in case:
            case["padding_count"] = int(np.count_nonzero(stored == case["pixel_padding_value"]))
        shape = [int(ds.Columns), int(ds.Rows), nf]
        case["shape"] = shape
        ipp0, iop, ps = infos[0][0], infos[0][1], infos[0][2]
        if ipp0 is not None and iop is not None and ps is not None:
            if nf > 1:
                poss = [i[0] for i in infos]
                case["frame_positions"] = poss
                col2 = (np.array(poss[-1]) - np.array(poss[0])) / (nf - 1)
                case["z_spacing_source"] = "frame IPP (last-first)/(n-1), stored order"
            else:
                n = normal_of(iop)
                if ds.get("SpacingBetweenSlices") is not None:
                    dz, src = float(ds.SpacingBetweenSlices), "SpacingBetweenSlices"
                elif ds.get("SliceThickness") is not None:
                    dz, src = float(ds.SliceThickness), "SliceThickness"
                else:
                    dz, src = 1.0, "default 1.0"
                col2 = n * dz
                case["z_spacing_source"] = src
            aff = dicom_affine(ipp0, iop, ps, col2)
            case.update(geometry_fields(aff))
            # cross-check with SimpleITK (GDCM): geometry and decoded values
            try:
                im = sitk.ReadImage(str(path))
                case["sitk_geometry_match"] = bool(np.allclose(sitk_affine(im), aff, atol=1e-3))
                sv = sitk.GetArrayFromImage(im).astype(np.float64)
                if sv.shape == vol.shape:
                    case["sitk_max_abs_diff"] = float(np.abs(sv - vol).max())
            except Exception as e:  # noqa: BLE001
                case["sitk_error"] = str(e).strip().splitlines()[0][:200]
        case.update(summarize(vol.ravel(order="C"), shape))
    except Exception as e:  # noqa: BLE001
        case["error"] = f"{type(e).__name__}: {e}"
        print(f"  ! {rel(path)}: {case['error']}", file=sys.stderr)
    return case


def dicom_series_case(dirpath, mean_step=False, check_sitk=True):
    files = sorted(p for p in glob.glob(os.path.join(dirpath, "*")) if os.path.isfile(p))
    dss = [pydicom.dcmread(p) for p in files]
    iop = [float(x) for x in dss[0].ImageOrientationPatient]
    for d in dss:
        assert np.allclose([float(x) for x in d.ImageOrientationPatient], iop, atol=1e-4), "IOP differs"
    n = normal_of(iop)
    order = sorted(range(len(dss)), key=lambda t: float(np.dot(n, [float(x) for x in dss[t].ImagePositionPatient])))
    dss = [dss[t] for t in order]
    files = [files[t] for t in order]
    ipps = [np.array([float(x) for x in d.ImagePositionPatient]) for d in dss]
    ps = [float(x) for x in dss[0].PixelSpacing]
    nz = len(dss)
    vol = np.empty((nz, int(dss[0].Rows), int(dss[0].Columns)), dtype=np.float64)
    stored_all = []
    rescale = []
    for k, d in enumerate(dss):
        a = d.pixel_array
        slope = float(d.get("RescaleSlope", 1) or 1)
        inter = float(d.get("RescaleIntercept", 0) or 0)
        vol[k] = a.astype(np.float64) * slope + inter
        stored_all.append(a)
        rescale.append([slope, inter])
    col2 = (ipps[-1] - ipps[0]) / (nz - 1)
    aff = dicom_affine(ipps[0], iop, ps, col2)
    case = {"path": rel(dirpath), "kind": "dicom_series", "files": nz}
    case.update(dicom_common(dss[0]))
    tss = sorted({str(d.file_meta.TransferSyntaxUID) for d in dss})
    assert len(tss) == 1, tss
    case["sorted_files"] = [os.path.basename(f) for f in files]
    case["positions"] = [float(np.dot(n, p)) for p in ipps]
    case["slice_rescale"] = rescale
    if "pixel_padding_value" in case:
        case["padding_count"] = int(sum(np.count_nonzero(s == case["pixel_padding_value"]) for s in stored_all))
    shape = [int(dss[0].Columns), int(dss[0].Rows), nz]
    case["shape"] = shape
    if check_sitk:
        # geometry from SimpleITK's ImageSeriesReader; assert pydicom-derived geometry agrees.
        r = sitk.ImageSeriesReader()
        names = r.GetGDCMSeriesFileNames(str(dirpath))
        assert len(names) == nz, (len(names), nz)
        r.SetFileNames(names)
        im = r.Execute()
        saff = sitk_affine(im)
        diff = float(np.abs(saff - aff).max())
        assert diff < 1e-3, f"pydicom vs SimpleITK geometry differ by {diff} mm\n{aff}\n{saff}"
        sv = sitk.GetArrayFromImage(im).astype(np.float64)
        assert sv.shape == vol.shape and np.array_equal(sv, vol), "pydicom vs SimpleITK voxel values differ"
        case["geometry_source"] = "SimpleITK ImageSeriesReader (pydicom-derived geometry asserted equal within 1e-3 mm; voxel values asserted identical)"
        case["pydicom_vs_sitk_max_abs_mm"] = diff
        case.update(geometry_fields(saff))
    else:
        case["geometry_source"] = ("pydicom: origin = first sorted IPP; column 2 = (last IPP - first IPP)/(n-1) "
                                   "(a MEAN step: slices are unevenly spaced, see positions)")
        case.update(geometry_fields(aff))
    case.update(summarize(vol.ravel(order="C"), shape))
    return case


# ------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DATA / "reference" / "volumes.json"))
    args = ap.parse_args()

    cases = {}

    def add(name, fn, *a, **kw):
        print(f"- {name}", file=sys.stderr)
        try:
            cases[name] = fn(*a, **kw)
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            cases[name] = {"path": rel(a[0]), "error": f"{type(e).__name__}: {e}"}

    for p in sorted(glob.glob(str(DATA / "nibabel" / "*"))):
        add(case_name(p), nifti_case, p)
    for p in ("chest_ct.nii.gz", "abdomen_ct_int32.nii.gz"):
        add(case_name(DATA / "totalsegmentator" / p), nifti_case, DATA / "totalsegmentator" / p)
    add("totalsegmentator/example_ct_dicom", dicom_series_case, DATA / "totalsegmentator" / "example_ct_dicom")
    add("pydicom/head_ct_series_CT2", dicom_series_case, DATA / "pydicom" / "head_ct_series_CT2",
        check_sitk=False)
    singles = sorted(glob.glob(str(DATA / "pydicom" / "*.dcm")) + glob.glob(str(DATA / "pydicom-data" / "*.dcm"))
                     + glob.glob(str(DATA / "generated" / "*.dcm")))
    for p in singles:
        add(case_name(p), dicom_file_case, p)

    meta = {
        "generator": "tests/reference/make_reference.py",
        "versions": {"numpy": np.__version__, "pydicom": pydicom.__version__, "nibabel": nib.__version__,
                     "SimpleITK": sitk.Version_VersionString()},
        "conventions": ("flat index = i + nx*(j + ny*k); affine_lps maps (i,j,k,1) to LPS mm; values float64 "
                        "stored*slope+intercept; std is population (ddof=0); sample indices from "
                        f"numpy.random.default_rng({SEED}).choice(N, {N_SAMPLE}, replace=False), sorted"),
    }
    out = {"_meta": meta}
    out.update(cases)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write("{\n")
        items = list(out.items())
        for t, (k, v) in enumerate(items):
            fh.write(f"{json.dumps(k)}: {{\n")
            sub = list(v.items())
            for u, (kk, vv) in enumerate(sub):
                fh.write(f"  {json.dumps(kk)}: {json.dumps(vv, allow_nan=False, separators=(',', ':'))}")
                fh.write(",\n" if u < len(sub) - 1 else "\n")
            fh.write("}" + (",\n" if t < len(items) - 1 else "\n"))
        fh.write("}\n")
    n_err = sum(1 for v in cases.values() if "error" in v)
    print(f"wrote {args.out}: {len(cases)} cases ({n_err} with error), {os.path.getsize(args.out)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
