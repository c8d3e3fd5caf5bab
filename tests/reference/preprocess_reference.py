#!/usr/bin/env python3
"""Reference outputs of the two model preprocessing pipelines (BrgSA, CT-CLIP) on three inputs.

Usage:
    target/refvenv/bin/python tests/reference/preprocess_reference.py [--cases chest dicom abdomen] [--npy-dir /tmp]

Writes tests/data/reference/preprocess_{brgsa,ctclip}_<case>.json for each case and (unless --npy-dir '')
the full float32 model inputs to <npy-dir>/preprocess_{brgsa,ctclip}_<case>.npy (NOT committed; for full
comparisons by hand). Cases (all under tests/data/totalsegmentator/):

  chest    chest_ct.nii.gz, 233x167x191 int16, 1.5 mm isotropic, stored LPS (already canonical). Hits exact
           grid points in both pipelines (interpolation weights 0 / 0.25 / 0.75 only) in exact arithmetic;
           ITK's double index arithmetic misses them by ~1e-13, which the BrgSA integer truncation turns
           into 1 HU on 57544 of the 3735456 resampled voxels (see tests/reference/README.md).
  dicom    example_ct_dicom/ (20-file JPEG 2000 series, 512x512x20, 0.9765625 mm pixels, 2 mm slice step,
           identity direction = already LPS-canonical). Read with SimpleITK ImageSeriesReader
           (GetGDCMSeriesFileNames on the folder; the series UID is empty; GDCM applies the rescale, so
           values are HU). Non-trivial interpolation weights in both pipelines.
  abdomen  abdomen_ct_int32.nii.gz, 122x101x112 int32, 3 mm isotropic, stored RAS. First reoriented to the
           canonical "LPS" voxel order that the Rust code uses (axis 0 -> patient Left, 1 -> Posterior,
           2 -> Superior; an exact flip/permute): nibabel io_orientation -> ornt_transform to ('L','P','S')
           -> apply_orientation (here: flip axes 0 and 1), affine @ inv_ornt_aff; cross-checked against
           SimpleITK DICOMOrient(ReadImage(path), 'LPS') (identical array, spacing, origin, identity
           direction). BrgSA gets a SimpleITK image built from the reoriented *integer* voxel array
           (np.asarray(dataobj), int32; scl_slope 1 / scl_inter 0 asserted, so these are HU) with
           spacing = column norms of the canonical LPS affine, origin = its translation, identity
           direction; CT-CLIP gets the reoriented get_fdata() float64 array and the header zooms permuted alike.

The chest and dicom inputs are asserted to be LPS-canonical already (identity direction), so the
reorientation step is a no-op for them and is not applied.

JSON layout: {"input", "shape", "dtype", "stats": {min,max,mean,std(ddof=0),sum}, "sample": {"index":
flat C-order indices into the full 5-D array (20000, drawn by numpy.random.default_rng(2024).choice(N,
20000, replace=False), then sorted), "value": float32 values}, "axis_means": {"0","1","2"}: mean over the
other two axes of the 3-D array (leading 1,1 dropped), "pipeline": text, "params": numbers, "versions"}.
Sample values are written as the shortest decimal that round-trips the float32 (parse as f64, cast to
f32 to get the exact value). stats/axis_means are float64 reductions (math.fsum) of the float32 values.

BrgSA (SimpleITK, the integer path of the official laihaoran/BrgSA preprocess/data_fix_metadata_valid.py):
  chest: ReadImage (int16) -> img * 1.0 + 0.0 (the official `image * slope + intercept` with slope 1,
  intercept 0; SimpleITK casts a scalar operand to the image's pixel type, so the result stays int16 -
  e.g. img*1.5 == img*1, img+0.7 == img on int16 in SimpleITK 2.5.7); dicom: ImageSeriesReader output
  as SimpleITK gives it (int16, no cast); abdomen: image from the LPS-canonical int32 voxel array (int32)
  -> ResampleImageFilter(sitkLinear, spacing (1.5,1.5,3.0), size = round(size*spacing/target) per axis
  (Python round), same origin/direction, identity transform, default pixel value 0). The output pixel
  type is the input's (int16 / int32): ITK's CastPixelWithBoundsChecking clamps each interpolated value
  to the type's range and then static_casts it, i.e. truncates toward zero (-1.5 -> -1, 2.7 -> 2; the
  clamp never fires for linear interpolation) -> GetArrayFromImage (z,y,x), integer -> centre crop/pad
  to (128,256,256): crop lower = ceil(excess/2); pad lower = pad//2, rest upper, value -1024 -> clamp
  [-1000,1000] (integer) -> transpose to (x,y,z) (256,256,128) -> float32 (exact) ->
  (clip(v/1000,-1,1) - 0.4978)/0.2449 in float32 -> (1,1,256,256,128).

CT-CLIP (nibabel / SimpleITK array + torch, float64 until the final cast to float32):
  (A0,A1,A2) float64 array (chest: get_fdata(); dicom: GetArrayFromImage transposed (z,y,x)->(x,y,z);
  abdomen: get_fdata() reoriented to LPS) -> clip [-1000,1000] -> torch (A2,A0,A1) ->
  F.interpolate(trilinear, align_corners=False) on (1,1,d,h,w) to size floor(n*cur/target), target z 1.5,
  xy 0.75, cur spacing (A2 -> z, A0/A1 -> xy) = header zooms (NIfTI) / GetSpacing() (dicom) -> back to
  (A0,A1,A2) -> /1000 -> centre crop (start=(n-t)//2) / pad (before=(t-n)//2, value -1) to (480,480,240)
  -> (A2,A0,A1) = (240,480,480) -> float32 -> (1,1,240,480,480).
  Note: given an explicit size, torch maps output index o to source (o+0.5)*n_in/n_out - 0.5, i.e. the
  scale is n_in/n_out, not target/cur (they differ when n*cur/target is not an integer, e.g. dicom).
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

import nibabel as nib
import nibabel.orientations as nio
import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
TS = DATA / "totalsegmentator"
N_SAMPLE = 20000
SEED = 2024
CASES = {
    "chest": TS / "chest_ct.nii.gz",
    "dicom": TS / "example_ct_dicom",
    "abdomen": TS / "abdomen_ct_int32.nii.gz",
}


def versions():
    return {"numpy": np.__version__, "SimpleITK": sitk.Version_VersionString(), "torch": torch.__version__,
            "nibabel": nib.__version__}


def is_identity_direction(img):
    return np.allclose(np.array(img.GetDirection()), np.eye(3).ravel(), atol=1e-6, rtol=0)


# ------------------------------------------------------------------ inputs
def read_dicom_series(folder, cast_float32=True):
    """cast_float32=False: the image exactly as ImageSeriesReader returns it (int16 here; BrgSA)."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    assert len(files) > 1, folder
    reader.SetFileNames(files)
    img = reader.Execute()
    assert is_identity_direction(img), ("expected an LPS-canonical series", img.GetDirection())
    if not cast_float32:
        return img, len(files)
    return sitk.Cast(img, sitk.sitkFloat32), len(files)


LPS_CODES = ("L", "P", "S")


def nifti_lps_canonical(path, raw=False):
    """nibabel image -> (float64 array in LPS-canonical voxel order, zooms permuted alike, LPS affine, info).

    raw=True: the stored integer voxel array (np.asarray(dataobj), e.g. int32) instead of get_fdata(); only
    allowed when the header scaling is the identity (so the stored integers are the HU values)."""
    img = nib.load(str(path))
    if raw:
        assert np.issubdtype(img.get_data_dtype(), np.integer), img.get_data_dtype()
        slope, inter = img.dataobj.slope, img.dataobj.inter
        assert (slope == 1 or np.isnan(slope)) and (inter == 0 or np.isnan(inter)), (slope, inter)
        data = np.asarray(img.dataobj)
        assert data.dtype == img.get_data_dtype()
    else:
        data = img.get_fdata()
    assert data.ndim == 3
    src = nio.io_orientation(img.affine)
    xform = nio.ornt_transform(src, nio.axcodes2ornt(LPS_CODES))
    data = nio.apply_orientation(data, xform)
    ras = img.affine @ nio.inv_ornt_aff(xform, img.shape[:3])
    assert nio.aff2axcodes(ras) == LPS_CODES
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    assert np.allclose(direction, np.eye(3), atol=1e-6, rtol=0), ("oblique input", direction)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    zooms = [zooms[int(xform[a, 0])] for a in range(3)]
    codes = "".join(nio.aff2axcodes(img.affine))
    ops = []
    for a in range(3):
        if int(xform[a, 0]) != a:
            ops.append(f"axis {a} <- input axis {int(xform[a, 0])}")
        if xform[a, 1] < 0:
            ops.append(f"flip axis {a}")
    info = {"stored_axcodes": codes, "ornt_transform": [[int(v) for v in r] for r in xform],
            "ops": ops or ["none"]}
    # Cross-check with SimpleITK's own reorientation (letters = direction each axis increases towards).
    simg = sitk.DICOMOrient(sitk.ReadImage(str(path)), "".join(LPS_CODES))
    assert is_identity_direction(simg), simg.GetDirection()
    if raw:
        assert np.array_equal(sitk.GetArrayFromImage(simg).transpose(2, 1, 0), data)
    else:
        assert np.array_equal(sitk.GetArrayFromImage(simg).transpose(2, 1, 0).astype(np.float64), data)
    assert np.allclose(simg.GetSpacing(), spacing, atol=1e-6, rtol=0)
    assert np.allclose(simg.GetOrigin(), lps[:3, 3], atol=1e-4, rtol=0), (simg.GetOrigin(), lps[:3, 3])
    return data, zooms, lps, [float(v) for v in spacing], img.shape[:3], info


# ------------------------------------------------------------------ BrgSA
def centre_crop_pad_brgsa(arr, target, pad_value):
    out = arr
    for ax, t in enumerate(target):
        n = out.shape[ax]
        if n > t:
            lo = math.ceil((n - t) / 2)
            out = np.take(out, np.arange(lo, lo + t), axis=ax)
        elif n < t:
            p = t - n
            widths = [(0, 0)] * out.ndim
            widths[ax] = (p // 2, p - p // 2)
            out = np.pad(out, widths, mode="constant", constant_values=pad_value)
    return out


BRGSA_TAIL = ("ResampleImageFilter sitkLinear, spacing (1.5,1.5,3.0), "
              "size round(size*spacing/target), same origin+direction, identity transform, default 0; output pixel "
              "type = input's ({pt}), so each interpolated value is clamped to the type's range and truncated toward "
              "zero (ITK CastPixelWithBoundsChecking: clamp, then static_cast) -> "
              "GetArrayFromImage (z,y,x) {dt} -> centre crop (lower=ceil(excess/2)) / pad (lower=pad//2, value -1024) "
              "to (128,256,256) -> clamp [-1000,1000] ({dt}) -> transpose (x,y,z) -> float32 (exact) -> "
              "(clip(v/1000,-1,1)-0.4978)/0.2449, float32 arithmetic -> (1,1,256,256,128)")

BRGSA_PIXEL_TYPES = {sitk.sitkInt16: "int16", sitk.sitkInt32: "int32"}


def brgsa_pipeline(img, source_text, extra_params=None):
    """img: SimpleITK int16/int32 image (HU) in LPS-canonical voxel order (identity direction)."""
    assert img.GetPixelID() in BRGSA_PIXEL_TYPES, img.GetPixelIDTypeAsString()
    in_type = BRGSA_PIXEL_TYPES[img.GetPixelID()]
    size, sp = img.GetSize(), img.GetSpacing()
    target = (1.5, 1.5, 3.0)
    new_size = [int(round(size[d] * sp[d] / target[d])) for d in range(3)]
    rs = sitk.ResampleImageFilter()
    rs.SetInterpolator(sitk.sitkLinear)
    rs.SetOutputSpacing(target)
    rs.SetSize(new_size)
    rs.SetOutputOrigin(img.GetOrigin())
    rs.SetOutputDirection(img.GetDirection())
    rs.SetTransform(sitk.Transform())
    rs.SetDefaultPixelValue(0)
    out = rs.Execute(img)
    assert out.GetPixelID() == img.GetPixelID(), out.GetPixelIDTypeAsString()  # resample keeps the pixel type
    arr = sitk.GetArrayFromImage(out)  # (z, y, x), int16 / int32: interpolated values truncated toward zero
    assert arr.dtype == np.dtype(in_type)
    resampled_zyx = list(arr.shape)
    arr = centre_crop_pad_brgsa(arr, (128, 256, 256), arr.dtype.type(-1024))
    arr = np.clip(arr, -1000, 1000)
    assert arr.dtype == np.dtype(in_type)
    arr = np.transpose(arr, (2, 1, 0))  # (x, y, z)
    arr = arr.astype(np.float32)  # exact (|v| <= 1000)
    arr = (np.clip(arr / np.float32(1000), np.float32(-1), np.float32(1)) - np.float32(0.4978)) / np.float32(0.2449)
    assert arr.dtype == np.float32 and arr.shape == (256, 256, 128)
    params = {"input_pixel_type": in_type, "resampled_pixel_type": in_type,
              "resample_cast": "clamp to type range, then truncate toward zero (ITK CastPixelWithBoundsChecking)",
              "input_size_xyz": list(size), "input_spacing_xyz": list(sp), "target_spacing_xyz": list(target),
              "resampled_size_xyz": new_size, "resampled_shape_zyx": resampled_zyx,
              "crop_pad_target_zyx": [128, 256, 256], "pad_value": -1024, "clamp": [-1000, 1000],
              "norm_mean": 0.4978, "norm_std": 0.2449}
    params.update(extra_params or {})
    return arr[None, None], source_text + " -> " + BRGSA_TAIL.format(pt=in_type, dt=in_type), params


def brgsa(case, path):
    if case == "chest":
        img = sitk.ReadImage(str(path))
        assert is_identity_direction(img)  # already LPS-canonical: same as the Rust pipeline
        assert img.GetPixelID() == sitk.sitkInt16, img.GetPixelIDTypeAsString()
        img = img * 1.0 + 0.0  # official `image * slope + intercept` (slope 1, intercept 0): stays int16
        assert img.GetPixelID() == sitk.sitkInt16, img.GetPixelIDTypeAsString()
        return brgsa_pipeline(img, "SimpleITK ReadImage (int16) -> img * 1.0 + 0.0 (official image*slope+intercept; "
                                   "SimpleITK casts the scalar to the pixel type, result stays int16)")
    if case == "dicom":
        img, nfiles = read_dicom_series(path, cast_float32=False)
        assert img.GetPixelID() == sitk.sitkInt16, img.GetPixelIDTypeAsString()
        return brgsa_pipeline(
            img, "SimpleITK ImageSeriesReader (GetGDCMSeriesFileNames on the folder, empty series UID; GDCM "
                 "applies RescaleSlope/Intercept -> HU; identity direction = already LPS-canonical, no "
                 "reorientation); pixel type as returned: int16, no cast",
            {"files": nfiles, "input_origin_lps": list(img.GetOrigin()), "reorientation": "none (identity direction)"})
    if case == "abdomen":
        data, _zooms, lps, spacing, _shape, info = nifti_lps_canonical(path, raw=True)
        assert data.dtype == np.int32, data.dtype
        img = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
        assert img.GetPixelID() == sitk.sitkInt32, img.GetPixelIDTypeAsString()
        img.SetSpacing(spacing)
        img.SetOrigin([float(v) for v in lps[:3, 3]])
        img.SetDirection([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
        return brgsa_pipeline(
            img, "nibabel np.asarray(dataobj) (int32 stored voxels; scl_slope 1, scl_inter 0 = HU; stored "
                 + info["stored_axcodes"] + ") -> reorient to LPS-canonical voxel "
                 "order (nibabel io_orientation/ornt_transform to ('L','P','S')/apply_orientation: "
                 + ", ".join(info["ops"]) + "; exact; cross-checked == SimpleITK DICOMOrient(ReadImage, 'LPS')) -> "
                 "int32 -> SimpleITK GetImageFromArray (int32) with spacing = column norms of the canonical LPS affine, "
                 "origin = its translation, identity direction",
            {"input_origin_lps": list(img.GetOrigin()), "reorientation": info})
    raise ValueError(case)


# ------------------------------------------------------------------ CT-CLIP
CTCLIP_TAIL = ("clip [-1000,1000] -> torch permute (A2,A0,A1) -> "
               "F.interpolate trilinear align_corners=False to floor(n*cur/target) (z 1.5, xy 0.75) -> permute "
               "(A0,A1,A2) -> /1000 -> centre crop (start=(n-t)//2) / pad (before=(t-n)//2, value -1) to "
               "(480,480,240) -> permute (A2,A0,A1) -> float32 (float64 before this cast) -> (1,1,240,480,480)")


def ctclip_pipeline(data, zooms, input_shape, source_text, extra_params=None):
    """data: float64 (A0,A1,A2) in LPS-canonical voxel order; zooms: spacing of A0, A1, A2 in mm."""
    assert data.dtype == np.float64
    data = np.clip(data, -1000, 1000)
    t = torch.from_numpy(np.ascontiguousarray(data)).permute(2, 0, 1)  # (A2, A0, A1)
    cur = (zooms[2], zooms[0], zooms[1])
    tgt = (1.5, 0.75, 0.75)
    size = [int(math.floor(n * c / g)) for n, c, g in zip(t.shape, cur, tgt)]
    t = F.interpolate(t[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]
    t = t.permute(1, 2, 0)  # (A0, A1, A2)
    arr = t.numpy() / 1000.0
    resampled = list(arr.shape)
    target = (480, 480, 240)
    for ax, tt in enumerate(target):
        n = arr.shape[ax]
        if n > tt:
            s = (n - tt) // 2
            arr = np.take(arr, np.arange(s, s + tt), axis=ax)
        elif n < tt:
            before = (tt - n) // 2
            widths = [(0, 0)] * 3
            widths[ax] = (before, tt - n - before)
            arr = np.pad(arr, widths, mode="constant", constant_values=-1.0)
    arr = np.transpose(arr, (2, 0, 1)).astype(np.float32)  # (A2, A0, A1)
    assert arr.shape == (240, 480, 480)
    params = {"input_shape_A012": list(input_shape), "zooms_A012": list(zooms), "clip": [-1000, 1000],
              "target_spacing_zxy": list(tgt), "interp_size_A2A0A1": size, "resampled_shape_A012": resampled,
              "crop_pad_target_A012": list(target), "pad_value": -1.0}
    params.update(extra_params or {})
    return arr[None, None], source_text + " -> " + CTCLIP_TAIL, params


def ctclip(case, path):
    if case == "chest":
        img = nib.load(str(path))
        assert nio.aff2axcodes(img.affine) == LPS_CODES  # already LPS-canonical
        data = img.get_fdata()  # float64 (A0, A1, A2)
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        return ctclip_pipeline(data, zooms, img.shape[:3], "nibabel get_fdata (float64, A0,A1,A2)")
    if case == "dicom":
        img, nfiles = read_dicom_series(path)
        data = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float64)  # (x, y, z) = (A0, A1, A2)
        zooms = [float(v) for v in img.GetSpacing()]
        return ctclip_pipeline(
            data, zooms, data.shape,
            "SimpleITK ImageSeriesReader (GetGDCMSeriesFileNames on the folder, empty series UID; GDCM applies "
            "RescaleSlope/Intercept -> HU; identity direction = already LPS-canonical, no reorientation) -> Cast "
            "sitkFloat32 -> GetArrayFromImage (z,y,x) -> transpose (x,y,z) = (A0,A1,A2) -> float64 (exact); "
            "cur spacing = GetSpacing() (x,y,z)",
            {"files": nfiles, "reorientation": "none (identity direction)"})
    if case == "abdomen":
        data, zooms, _lps, _spacing, shape, info = nifti_lps_canonical(path)
        return ctclip_pipeline(
            data, zooms, data.shape,
            "nibabel get_fdata (float64, stored " + info["stored_axcodes"] + ") -> reorient to LPS-canonical voxel "
            "order (nibabel io_orientation/ornt_transform to ('L','P','S')/apply_orientation: "
            + ", ".join(info["ops"]) + "; exact; cross-checked == SimpleITK DICOMOrient(ReadImage, 'LPS')) -> "
            "(A0,A1,A2); cur spacing = header zooms permuted alike",
            {"input_shape_stored": list(shape), "reorientation": info})
    raise ValueError(case)


# ------------------------------------------------------------------ output
def f32s(v):
    """float32 -> Python float of its shortest round-trip decimal (json prints it compactly)."""
    return float(str(np.float32(v)))


def describe(x5, text, params, input_rel):
    flat = x5.reshape(-1)
    n = flat.size
    f64 = flat.astype(np.float64)
    s = math.fsum(f64)
    mean = s / n
    std = math.sqrt(math.fsum((f64 - mean) ** 2) / n)
    rng = np.random.default_rng(SEED)
    idx = np.sort(rng.choice(n, size=N_SAMPLE, replace=False))
    v3 = x5[0, 0].astype(np.float64)
    axis_means = {
        "0": [float(v) for v in v3.mean(axis=(1, 2))],
        "1": [float(v) for v in v3.mean(axis=(0, 2))],
        "2": [float(v) for v in v3.mean(axis=(0, 1))],
    }
    for vv in flat[idx]:
        assert np.float32(f32s(vv)) == vv
    return {
        "input": input_rel,
        "shape": [int(d) for d in x5.shape],
        "dtype": "float32",
        "stats": {"min": float(flat.min()), "max": float(flat.max()), "mean": mean, "std": std, "sum": s},
        "sample": {"index": [int(i) for i in idx], "value": [f32s(v) for v in flat[idx]]},
        "axis_means": axis_means,
        "pipeline": text,
        "params": params,
        "versions": versions(),
        "sampling": f"numpy.random.default_rng({SEED}).choice(N, {N_SAMPLE}, replace=False), sorted; "
                    "flat C-order index into the 5-D array",
    }


def write_json(obj, path):
    with open(path, "w") as fh:
        fh.write("{\n")
        items = list(obj.items())
        for u, (k, v) in enumerate(items):
            fh.write(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False, separators=(',', ':'))}")
            fh.write(",\n" if u < len(items) - 1 else "\n")
        fh.write("}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--out-dir", default=str(DATA / "reference"))
    ap.add_argument("--npy-dir", default="/tmp", help="where to write full .npy outputs ('' = skip)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out_dir, exist_ok=True)
    for case in args.cases:
        path = CASES[case]
        input_rel = os.path.relpath(path, DATA).replace(os.sep, "/")
        for key, fn in (("brgsa", brgsa), ("ctclip", ctclip)):
            x5, text, params = fn(case, path)
            d = describe(x5, text, params, input_rel)
            out = os.path.join(args.out_dir, f"preprocess_{key}_{case}.json")
            write_json(d, out)
            print(f"{case}/{key}: shape {d['shape']} stats {d['stats']} -> {out} ({os.path.getsize(out)} bytes)")
            if args.npy_dir:
                npy = os.path.join(args.npy_dir, f"preprocess_{key}_{case}.npy")
                np.save(npy, x5)
                print(f"  full output: {npy}")


if __name__ == "__main__":
    main()
