#!/usr/bin/env python3
"""Small pydicom helpers used by make_transfer_syntaxes.sh.

Sub-commands
------------
derive-unsigned SRC DST --offset N --bits-stored B
    Write an explicit-VR-LE copy of a signed 16-bit CT slice whose stored values
    are shifted by +N into an unsigned range (PixelRepresentation 0, BitsStored B).
    RescaleIntercept is lowered by N*slope so that the rescaled HU are unchanged,
    and PixelPaddingValue (if present) is shifted the same way and re-typed as US.
    Needed because dcmtk's JPEG-LS near-lossless encoder rejects signed pixel data.

encode SRC DST --syntax j2k-lossless|j2k-lossy [--cr RATIO]
    Re-encode with pydicom + pylibjpeg-openjpeg (dcmtk has no JPEG 2000 codec).

verify DIR
    Decode every generated file with pydicom and compare the rescaled values with
    the source named in DIR/.sources (lines "<file> <source>"). Prints a Markdown table.

Every derived/lossy file gets a deterministic new SOP Instance UID (pydicom
generate_uid with entropy from the old UID + a tag), so reruns are byte-stable.
"""
import argparse
import os
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    ExplicitVRLittleEndian,
    generate_uid,
)


def _new_uid(ds, tag):
    old = str(ds.SOPInstanceUID)
    new = generate_uid(entropy_srcs=[old, tag])
    ds.SOPInstanceUID = new
    if hasattr(ds, "file_meta"):
        ds.file_meta.MediaStorageSOPInstanceUID = new


def derive_unsigned(src, dst, offset, bits_stored):
    ds = pydicom.dcmread(src)
    assert ds.BitsAllocated == 16 and ds.SamplesPerPixel == 1
    arr = ds.pixel_array.astype(np.int64) + offset
    if arr.min() < 0 or arr.max() >= (1 << bits_stored):
        sys.exit(f"values {arr.min()}..{arr.max()} do not fit unsigned {bits_stored} bits")
    slope = float(ds.get("RescaleSlope", 1))
    inter = float(ds.get("RescaleIntercept", 0))
    ds.PixelRepresentation = 0
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    dropped_padding = False
    new_inter = inter - offset * slope
    ds.RescaleIntercept = str(int(new_inter)) if new_inter == int(new_inter) else repr(new_inter)
    if "PixelPaddingValue" in ds:
        pad = int(ds.PixelPaddingValue) + offset
        del ds["PixelPaddingValue"]
        if 0 <= pad < (1 << bits_stored):
            ds.add_new(0x00280120, "US", pad)
        else:
            # not representable as unsigned (and then it cannot occur in the shifted pixels): drop it
            dropped_padding = True
    for kw in ("SmallestImagePixelValue", "LargestImagePixelValue",
               "SmallestPixelValueInSeries", "LargestPixelValueInSeries"):
        if kw in ds:
            del ds[kw]
    ds.PixelData = arr.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    desc = (f"Derived from {os.path.basename(src)}: stored+{offset}, unsigned {bits_stored}-bit, "
            f"RescaleIntercept adjusted so HU are unchanged"
            + ("; PixelPaddingValue dropped (not representable)" if dropped_padding else ""))
    ds.DerivationDescription = desc
    _new_uid(ds, f"unsigned{bits_stored}+{offset}")
    ds.save_as(dst, enforce_file_format=True)


def encode(src, dst, syntax, cr):
    ds = pydicom.dcmread(src)
    if syntax == "j2k-lossless":
        ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    elif syntax == "j2k-lossy":
        raw_bytes = ds.Rows * ds.Columns * ds.BitsAllocated // 8 * int(ds.get("NumberOfFrames", 1))
        ds.compress(JPEG2000, j2k_cr=[cr], generate_instance_uid=False)
        ds.LossyImageCompression = "01"
        ratio = raw_bytes / len(ds.PixelData)
        ds.LossyImageCompressionRatio = f"{ratio:.4f}"[:16]
        ds.LossyImageCompressionMethod = "ISO_15444_1"
        ds.DerivationDescription = f"Lossy JPEG 2000 (OpenJPEG via pylibjpeg-openjpeg), j2k_cr=[{cr:g}]"
        _new_uid(ds, f"j2k-lossy-cr{cr:g}")
    else:
        sys.exit("unknown syntax " + syntax)
    ds.save_as(dst, enforce_file_format=True)


def hu(path):
    ds = pydicom.dcmread(path)
    return ds, np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)


def verify(d):
    with open(os.path.join(d, ".sources")) as fh:
        pairs = [ln.split() for ln in fh if ln.strip()]
    print("| file | transfer syntax | bits stored / pixel rep | slope / intercept | max abs HU diff vs source | identical |")
    print("|---|---|---|---|---|---|")
    for f, s in pairs:
        ds, a = hu(os.path.join(d, f))
        _, b = hu(s)
        diff = float(np.abs(a - b).max())
        print(f"| {f} | {ds.file_meta.TransferSyntaxUID} ({ds.file_meta.TransferSyntaxUID.name}) | "
              f"{ds.BitsStored} / {ds.PixelRepresentation} | {ds.get('RescaleSlope', 1)} / "
              f"{ds.get('RescaleIntercept', 0)} | {diff:g} | {'yes' if diff == 0 else 'no'} |")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("derive-unsigned")
    a.add_argument("src"); a.add_argument("dst")
    a.add_argument("--offset", type=int, required=True)
    a.add_argument("--bits-stored", type=int, required=True)
    b = sub.add_parser("encode")
    b.add_argument("src"); b.add_argument("dst")
    b.add_argument("--syntax", required=True, choices=["j2k-lossless", "j2k-lossy"])
    b.add_argument("--cr", type=float, default=10)
    c = sub.add_parser("verify")
    c.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "derive-unsigned":
        derive_unsigned(args.src, args.dst, args.offset, args.bits_stored)
    elif args.cmd == "encode":
        encode(args.src, args.dst, args.syntax, args.cr)
    else:
        verify(args.dir)


if __name__ == "__main__":
    main()
