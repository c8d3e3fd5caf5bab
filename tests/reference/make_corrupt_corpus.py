"""Write the corrupt-input corpus: tests/data/corrupt/ and its manifest.json.

Every file is a real test file (tests/data) with one thing broken the way a hostile or damaged
file breaks it: sizes that overflow or exceed the file, zero or non-finite geometry, pickles
that abuse the protocol, model directories that point outside themselves. manifest.json lists
each case: the file, how it is opened (its `kind`), what is broken, and the words the error
must contain. tests/integration/bad_input.rs opens each one through the library and the CLI
and checks the error, the exit status, the time and the peak memory.

    target/testvenv/bin/python tests/reference/make_corrupt_corpus.py

Byte-reproducible: rerunning gives identical files (no times, no randomness).
"""

import gzip
import io
import json
import os
import pickle
import shutil
import sqlite3
import struct
import sys
import zipfile

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

# The point is to write invalid values: let pydicom store them as given.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(DATA, "corrupt")
CASES = []


def case(path, kind, broken, expect):
    CASES.append({"path": path, "kind": kind, "broken": broken, "expect": expect})


def write(rel, data):
    p = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    return rel


def read(rel):
    with open(os.path.join(DATA, rel), "rb") as f:
        return f.read()


def dcm_bytes(ds):
    b = io.BytesIO()
    ds.save_as(b, enforce_file_format=True)
    return b.getvalue()


def small():
    return pydicom.dcmread(os.path.join(DATA, "pydicom", "CT_small.dcm"))


def patched(rel, kind, broken, expect, **attrs):
    """CT_small.dcm with the given attributes set (in the order given), as a case."""
    ds = small()
    for k, v in attrs.items():
        setattr(ds, k, v)
    case(write(rel, dcm_bytes(ds)), kind, broken, expect)


def dicom_cases():
    # Sizes declared in the header.
    patched("dicom/frames_2_31.dcm", "volume", "NumberOfFrames = 2^31 in a one-frame file", ["frames"], NumberOfFrames="2147483648")
    patched("dicom/frames_zero.dcm", "volume", "NumberOfFrames = 0", ["frames"], NumberOfFrames="0")
    ds = small()
    # IS cannot hold text, so the element is written with VR LO (as a damaged file carries it).
    ds.add(pydicom.DataElement(0x00280008, "LO", "many"))
    case(write("dicom/frames_text.dcm", dcm_bytes(ds)), "volume", "NumberOfFrames is not a number", ["NumberOfFrames"])
    patched("dicom/rows_zero.dcm", "volume", "Rows = 0", ["Rows"], Rows=0)
    patched("dicom/columns_zero.dcm", "volume", "Columns = 0", ["Columns"], Columns=0)
    patched("dicom/rows_columns_max.dcm", "volume", "65535 x 65535 pixels declared, 128 x 128 stored", ["too large"], Rows=65535, Columns=65535)
    patched("dicom/bits_allocated_zero.dcm", "volume", "BitsAllocated = 0", ["BitsAllocated"], BitsAllocated=0)
    patched("dicom/bits_allocated_64.dcm", "volume", "BitsAllocated = 64 (CT is 8 or 16)", ["truncated"], BitsAllocated=64, BitsStored=64, HighBit=63)
    patched("dicom/samples_per_pixel_3.dcm", "volume", "SamplesPerPixel = 3 for a CT", ["truncated"], SamplesPerPixel=3)
    # Geometry.
    patched("dicom/iop_huge.dcm", "volume_warn", "ImageOrientationPatient of 1e300 (finite, overflows): loads without orientation", ["ImageOrientationPatient"], ImageOrientationPatient=["1e300", "0", "0", "0", "1e300", "0"])
    patched("dicom/iop_zero.dcm", "volume_warn", "ImageOrientationPatient all zero: loads without orientation", ["ImageOrientationPatient"], ImageOrientationPatient=["0", "0", "0", "0", "0", "0"])
    patched("dicom/iop_parallel.dcm", "volume_warn", "row and column directions parallel: loads without orientation", ["ImageOrientationPatient"], ImageOrientationPatient=["1", "0", "0", "1", "0", "0"])
    patched("dicom/pixel_spacing_zero.dcm", "volume", "PixelSpacing 0", ["PixelSpacing"], PixelSpacing=["0", "0"])
    patched("dicom/pixel_spacing_1000.dcm", "preprocess", "PixelSpacing 1000 mm: the resampled grid is enormous", ["grid"], PixelSpacing=["1000", "1000"])
    patched("dicom/pixel_spacing_1e300.dcm", "volume", "PixelSpacing 1e300 (positions overflow)", ["PixelSpacing"], PixelSpacing=["1e300", "1e300"])
    # Pixel data.
    b = read("pydicom/CT_small.dcm")
    case(write("dicom/pixel_data_cut.dcm", b[: len(b) - 20000]), "volume", "pixel data cut short", ["truncated"])
    pd = b.rfind(b"\xe0\x7f\x10\x00")
    # Explicit VR LE: tag(4) VR(2) reserved(2) length(4); declare 0xFFFFFFF0 bytes.
    huge = bytearray(b[: pd + 12])
    huge[pd + 8 : pd + 12] = struct.pack("<I", 0xFFFFFFF0)
    huge += b[pd + 12 : pd + 12 + 1024]
    case(write("dicom/pixel_data_length_4gib.dcm", bytes(huge)), "volume", "Pixel Data declares 4 GiB in a 1 KiB remainder", ["length"])
    # A private element declaring 3.7 GiB before the pixel data.
    meta_end = b.find(b"\x08\x00\x08\x00")  # first dataset element (0008,0008)
    priv = b"\x09\x00\x10\x00UN\x00\x00" + struct.pack("<I", 0xF0000000) + b"\x00" * 64
    case(write("dicom/private_length_4gib.dcm", b[:meta_end] + priv + b[meta_end:]), "volume", "a private UN element declaring 3.7 GiB", ["length"])
    ds = small()
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8.9"
    case(write("dicom/unknown_transfer_syntax.dcm", dcm_bytes(ds)), "volume", "an unknown transfer syntax UID", ["transfer syntax"])
    # RLE: segment offsets past the fragment, and a segment that decodes short.
    rle = read("generated/ct_small_rle.dcm")
    i = rle.find(b"\xfe\xff\x00\xe0", rle.rfind(b"\xe0\x7f\x10\x00"))  # basic offset table item
    bot_len = struct.unpack("<I", rle[i + 4 : i + 8])[0]
    frag = i + 8 + bot_len + 8  # first fragment's bytes (after its item header)
    r = bytearray(rle)
    r[frag + 4 : frag + 8] = struct.pack("<I", 0x7FFFFFF0)  # first segment offset
    case(write("dicom/rle_segment_offset.dcm", bytes(r)), "volume", "RLE segment offset past the fragment", ["RLE"])
    r = bytearray(rle)
    # Second segment starts two bytes after the first: the first segment decodes far too short.
    first = struct.unpack("<I", r[frag + 4 : frag + 8])[0]
    r[frag + 8 : frag + 12] = struct.pack("<I", first + 2)
    case(write("dicom/rle_segment_short.dcm", bytes(r)), "volume", "RLE segment that decodes to fewer bytes than the frame needs", ["RLE"])
    # 12-bit JPEG: Huffman table and frame header broken.
    j = bytearray(read("generated/ct_small_jpeg_extended12.dcm"))
    sof = j.find(b"\xff\xc1")
    j[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # lines = 0, samples per line = 0
    case(write("dicom/jpeg12_zero_size.dcm", bytes(j)), "volume", "JPEG frame header with 0 x 0 size", ["JPEG"])
    j = bytearray(read("generated/ct_small_jpeg_extended12.dcm"))
    dht = j.find(b"\xff\xc4")
    j[dht + 5 : dht + 21] = b"\xff" * 16  # code counts: 16 x 255 codes per length
    case(write("dicom/jpeg12_huffman_overfull.dcm", bytes(j)), "volume", "Huffman table with more codes than fit", ["JPEG"])
    # A deflated data set with one byte of its deflate stream changed (found by the dicom_file
    # fuzzer: before the fix it took seconds and 0.8 GB).
    z = bytearray(read("generated/ct_small_deflated.dcm"))
    z[1373] = 0o74
    case(write("dicom/deflate_damaged.dcm", bytes(z)), "volume", "one byte of the deflate stream changed", ["inflate"])
    # JPEG 2000 whose codestream is larger than Rows x Columns (Rows patched down): the
    # decoder would copy past its buffer (found by the dicom_file fuzzer).
    ds = pydicom.dcmread(os.path.join(DATA, "generated", "ct_small_j2k_lossless.dcm"))
    ds.Rows = 107
    case(write("dicom/j2k_larger_than_header.dcm", dcm_bytes(ds)), "volume", "JPEG 2000 image of 128 x 128 under Rows = 107", ["JPEG 2000"])
    # JPEG baseline whose image is wider than Columns (patched down): the decoder would copy
    # past its buffer (found by the dicom_file fuzzer).
    ds = pydicom.dcmread(os.path.join(DATA, "generated", "ct_small_jpeg_baseline.dcm"))
    ds.Columns = 64
    case(write("dicom/jpeg_larger_than_header.dcm", dcm_bytes(ds)), "volume", "JPEG image of 128 x 128 under Columns = 64", ["JPEG image"])
    # Not DICOM at all, and a DICOM file with no image.
    ds = Dataset()
    ds.PatientName = "Nobody"
    ds.Modality = "SR"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    case(write("dicom/no_image.dcm", dcm_bytes(ds)), "volume", "a DICOM file without pixel data (an SR)", ["no"])
    case(write("dicom/text.dcm", b"This is a text file with a .dcm name.\n" * 10), "volume", "a text file named .dcm", ["DICOM"])


def folder_cases():
    series = os.path.join(DATA, "pydicom", "head_ct_series_CT2")
    files = sorted(os.listdir(series))
    # A folder where one slice has a truncated copy: the complete slice is kept and the cut copy
    # is named in the warnings (the load succeeds: kind volume_warn).
    d = "folders/truncated_copy"
    for f in files:
        write(f"{d}/{f}", read(f"pydicom/head_ct_series_CT2/{f}"))
    cut = read(f"pydicom/head_ct_series_CT2/{files[1]}")
    write(f"{d}/{files[1]}_copy", cut[: len(cut) - 600])
    case(d, "volume_warn", "a truncated copy of one slice beside the complete one", [f"{files[1]}_copy"])
    # Every slice at the same position: nothing to stack.
    d = "folders/same_position"
    for f in files:
        ds = pydicom.dcmread(os.path.join(series, f))
        ds.ImagePositionPatient = ["0", "0", "0"]
        write(f"{d}/{f}", dcm_bytes(ds))
    case(d, "volume_warn", "four slices, one position: one kept, the others named", ["17136"])
    # Only junk.
    d = "folders/junk_only"
    write(f"{d}/notes.txt", b"not an image\n")
    write(f"{d}/data.bin", bytes(range(256)) * 4)
    case(d, "volume", "no DICOM file in the folder", ["no DICOM"])


def nifti_cases():
    n1 = bytearray(gzip.decompress(read("nibabel/standard.nii.gz")))  # NIfTI-1, 348-byte header
    n2 = bytearray(gzip.decompress(read("nibabel/example_nifti2.nii.gz")))  # NIfTI-2, 540-byte header

    def n1_with(**kw):
        b = bytearray(n1)
        for off, fmt, val in kw.values():
            struct.pack_into(fmt, b, off, *val)
        return bytes(b)

    # NIfTI-1 fields: dim[8] int16 @40, datatype @70, bitpix @72, pixdim[8] float @76,
    # vox_offset float @108, scl_slope @112, sform srow_x @280.
    case(write("nifti/dims_8gib.nii", n1_with(d=(40, "<8h", (3, 2048, 2048, 1024, 1, 1, 1, 1)))), "volume",
         "a 492-byte file declaring 2048 x 2048 x 1024 int16 (8 GiB)", ["too large"])
    case(write("nifti/dim0_zero.nii", n1_with(d=(40, "<h", (0,)))), "volume", "dim[0] = 0", ["dim"])
    case(write("nifti/dim0_nine.nii", n1_with(d=(40, "<h", (9,)))), "volume", "dim[0] = 9 (at most 7)", ["dim"])
    case(write("nifti/dim_negative.nii", n1_with(d=(42, "<h", (-4,)))), "volume", "dim[1] = -4", ["dim"])
    case(write("nifti/vox_offset_huge.nii", n1_with(v=(108, "<f", (1e30,)))), "volume", "vox_offset = 1e30", ["vox_offset"])
    case(write("nifti/vox_offset_nan.nii", n1_with(v=(108, "<f", (float("nan"),)))), "volume", "vox_offset = NaN", ["vox_offset"])
    case(write("nifti/pixdim_nan.nii", n1_with(p=(80, "<3f", (float("nan"), 1.0, 1.0)), c=(252, "<hh", (1, 0)))), "volume_warn",
         "pixdim[1] = NaN with the qform in use: the qform is not used, said so", ["qform"])
    case(write("nifti/bitpix_mismatch.nii", n1_with(b=(72, "<h", (7,)))), "volume_ok", "bitpix 7 for the datatype (ignored, as nibabel does: the datatype decides)", [])
    case(write("nifti/datatype_unknown.nii", n1_with(t=(70, "<h", (1234,)))), "volume", "datatype 1234", ["datatype"])
    # sform with an infinite row, used (sform_code = 1 @254, qform_code = 0 @252).
    b = bytearray(n1)
    struct.pack_into("<hh", b, 252, 0, 1)
    struct.pack_into("<4f", b, 280, float("inf"), 0, 0, 0)
    struct.pack_into("<4f", b, 296, 0, 1, 0, 0)
    struct.pack_into("<4f", b, 312, 0, 0, 1, 0)
    case(write("nifti/sform_infinite.nii", bytes(b)), "volume_warn", "sform with an infinite entry: not used, said so", ["sform"])
    # NIfTI-2: int64 dims @16 that overflow the voxel count; vox_offset int64 @168.
    b = bytearray(n2)
    struct.pack_into("<8q", b, 16, 3, 1 << 40, 1 << 40, 1 << 40, 1, 1, 1, 1)
    case(write("nifti/nifti2_dims_overflow.nii", bytes(b)), "volume", "NIfTI-2 dims 2^40 each (the product overflows 64 bits)", ["dim"])
    b = bytearray(n2)
    struct.pack_into("<q", b, 168, (1 << 63) - 1)
    case(write("nifti/nifti2_vox_offset_max.nii", bytes(b)), "volume", "NIfTI-2 vox_offset = 2^63 - 1", ["vox_offset"])
    b = bytearray(n2)
    struct.pack_into("<q", b, 168, -8)
    case(write("nifti/nifti2_vox_offset_negative.nii", bytes(b)), "volume", "NIfTI-2 vox_offset = -8", ["vox_offset"])
    # gzip: a small stream whose header declares 8 GiB (the read must stop at what is declared
    # and the limits, not inflate without bound).
    b = bytearray(n1_with(d=(40, "<8h", (3, 2048, 2048, 1024, 1, 1, 1, 1))))
    case(write("nifti/gz_dims_8gib.nii.gz", gzip.compress(bytes(b) + b"\x00" * (1 << 20), mtime=0)), "volume",
         "gzip NIfTI declaring 8 GiB holding 1 MiB of zeros", ["too large"])
    case(write("nifti/gz_cut.nii.gz", gzip.compress(bytes(n1), mtime=0)[:60]), "volume", "gzip stream cut inside the header", ["gzip"])
    case(write("nifti/gz_trailing_garbage.nii.gz", read("nibabel/standard.nii.gz")[:-8] + b"\xde\xad\xbe\xef" * 2), "volume",
         "gzip with a wrong CRC trailer", ["gzip"])


def pt_zip(pkl, storages):
    """A PyTorch zip checkpoint from raw pickle bytes and {key: bytes} storages."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("archive/data.pkl", pkl)] + [(f"archive/data/{k}", v) for k, v in storages.items()]:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, data)
        z.writestr(zipfile.ZipInfo("archive/version", date_time=(1980, 1, 1, 0, 0, 0)), b"3\n")
    return b.getvalue()


def tensor_pickle(entries):
    """Pickle of an OrderedDict {name: _rebuild_tensor_v2(storage, offset, shape, stride)}, written
    opcode by opcode (protocol 2) so that shapes and storages can disagree."""
    p = bytearray(b"\x80\x02")
    p += b"ccollections\nOrderedDict\n)R"  # GLOBAL, EMPTY_TUPLE, REDUCE
    p += b"("  # MARK
    for name, key, numel, shape, stride in entries:
        n = name.encode()
        p += b"X" + struct.pack("<I", len(n)) + n
        p += b"ctorch._utils\n_rebuild_tensor_v2\n("
        # persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
        p += b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX" + struct.pack("<I", len(key)) + key.encode()
        p += b"X\x03\x00\x00\x00cpuJ" + struct.pack("<i", numel) + b"tQ"
        p += b"K\x00"  # offset
        p += b"(" + b"".join(b"J" + struct.pack("<i", s) for s in shape) + b"t"
        p += b"(" + b"".join(b"J" + struct.pack("<i", s) for s in stride) + b"t"
        p += b"\x89ccollections\nOrderedDict\n)Rt"  # requires_grad False, backward hooks; close args
        p += b"R"  # REDUCE
    p += b"u."  # SETITEMS, STOP
    return bytes(p)


def checkpoint_cases():
    good = tensor_pickle([("w", "0", 4, [2, 2], [2, 1])])
    four = struct.pack("<4f", 1, 2, 3, 4)
    case(write("checkpoint/shape_larger_than_storage.pt", pt_zip(tensor_pickle([("w", "0", 4, [65536, 65536], [65536, 1])]), {"0": four})),
         "checkpoint", "a tensor declaring 65536 x 65536 over a 4-float storage", ["w"])
    case(write("checkpoint/numel_larger_than_bytes.pt", pt_zip(tensor_pickle([("w", "0", 1 << 30, [1 << 15, 1 << 15], [1 << 15, 1])]), {"0": four})),
         "checkpoint", "a storage declaring 2^30 floats holding 16 bytes", ["w"])
    # REDUCE on a one-element stack (no argument tuple).
    case(write("checkpoint/short_reduce.pt", pt_zip(b"\x80\x02ccollections\nOrderedDict\nR.", {})), "checkpoint",
         "REDUCE with no argument tuple", ["pickle"])
    # Memo bomb: a list put in the memo, then fetched 100000 times into a list.
    bomb = bytearray(b"\x80\x02]q\x00(" + b"K\x01" * 1000 + b"e")  # memo 0 = [1]*1000
    bomb += b"]q\x01(" + b"h\x00" * 100000 + b"e."
    case(write("checkpoint/memo_bomb.pt", pt_zip(bytes(bomb), {})), "checkpoint", "a memoised 1000-list referenced 100000 times", ["no tensors"])
    case(write("checkpoint/missing_storage.pt", pt_zip(good, {})), "checkpoint", "the pickle names a storage the zip lacks", ["storage"])
    case(write("checkpoint/no_pickle.pt", _zip_without_pickle()), "checkpoint", "a zip without data.pkl", ["data.pkl"])
    case(write("checkpoint/not_a_dict.pt", pt_zip(b"\x80\x02K\x07.", {})), "checkpoint", "the pickle is the integer 7", ["no tensors"])
    # Rank too low for the keys we index: CT-CLIP's to_patch_emb weight as a 1-D tensor.
    st = _safetensors({"visual_transformer.to_patch_emb.1.weight": ("F32", [4], four)})
    case(write("checkpoint/rank_too_low.safetensors", st), "checkpoint", "a key we index by dimension is 1-D", ["to_patch_emb"])
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}).encode()
    case(write("checkpoint/safetensors_shape_vs_offsets.safetensors", struct.pack("<Q", len(hdr)) + hdr + four), "checkpoint",
         "safetensors shape 2^20 x 2^20 over 16 bytes", ["safetensors"])
    case(write("checkpoint/safetensors_header_huge.safetensors", struct.pack("<Q", 1 << 40) + b"{}"), "checkpoint",
         "safetensors header length 2^40 in a 10-byte file", ["safetensors"])
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}).encode()
    case(write("checkpoint/safetensors_offsets_out.safetensors", struct.pack("<Q", len(hdr)) + hdr + four), "checkpoint",
         "safetensors data offsets past the file", ["safetensors"])


def _zip_without_pickle():
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr(zipfile.ZipInfo("archive/data/0", date_time=(1980, 1, 1, 0, 0, 0)), b"\x00" * 16)
    return b.getvalue()


def _safetensors(tensors):
    hdr, off, blob = {}, 0, b""
    for k, (dt, shape, data) in tensors.items():
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blob += data
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + blob


def model_cases(template):
    """Model directories: model.json (+ a cache file) over the tiny CT-CLIP package in
    `template` (made by `radbridge import-checkpoint`); the weights are copied in by the test
    from tests/data/models (not duplicated here)."""
    m0 = json.load(open(os.path.join(template, "model.json")))
    # The tiny model sees 8 x 16 x 16 voxels: a grid that size keeps a full analysis quick.
    m0["preprocess"]["target_shape"] = [16, 16, 8]
    m0["preprocess"]["target_spacing"] = [12.0, 12.0, 12.0]
    cfg = open(os.path.join(template, "config.json"), "rb").read()
    vocab = open(os.path.join(template, "vocab.txt"), "rb").read()

    def model(name, broken, expect, edit, extra=None, kind="model"):
        m = json.loads(json.dumps(m0))
        edit(m)
        d = f"models/{name}"
        write(f"{d}/model.json", json.dumps(m, indent=1).encode())
        write(f"{d}/config.json", cfg)
        write(f"{d}/vocab.txt", vocab)
        for rel, data in (extra or {}).items():
            write(f"{d}/{rel}", data)
        case(d, kind, broken, expect)

    model("weights_absolute", "weights = /etc/passwd", ["weights"], lambda m: m.update(weights="/etc/passwd"))
    model("weights_parent", "weights = ../model.safetensors", ["weights"], lambda m: m.update(weights="../model.safetensors"))
    model("vocab_parent", "text.vocab = ../../vocab.txt", ["vocab"], lambda m: m["text"].update(vocab="../../vocab.txt"))
    model("thresholds_escape", "thresholds = ../../thresholds.json (recalibration would write there)", ["thresholds"],
          lambda m: m.update(thresholds="../../thresholds.json"))
    model("output_axes_3", "preprocess.output_axes = [3, 0, 1]", ["output_axes"], lambda m: m["preprocess"].update(output_axes=[3, 0, 1]))
    model("output_axes_repeat", "preprocess.output_axes = [0, 0, 1]", ["output_axes"], lambda m: m["preprocess"].update(output_axes=[0, 0, 1]))
    model("hu_window_inverted", "preprocess.hu_window = [1000, -1000]", ["hu_window"], lambda m: m["preprocess"].update(hu_window=[1000.0, -1000.0]))
    model("spacing_zero", "preprocess.target_spacing = [0, 0.75, 1.5]", ["target_spacing"],
          lambda m: m["preprocess"].update(target_spacing=[0.0, 0.75, 1.5]))
    model("target_shape_huge", "preprocess.target_shape = [100000, 100000, 100000]", ["target_shape"],
          lambda m: m["preprocess"].update(target_shape=[100000, 100000, 100000]))
    model("std_zero", "preprocess.std = 0", ["std"], lambda m: m["preprocess"].update(std=0.0))
    cache = json.dumps({"model_checksum": m0["weights_sha256"], "entries": {"a small pleural effusion": [[]]}}).encode()
    # A cache is never worth an error: the bad entry is dropped and the text encoded again.
    model("empty_text_embedding", "a cached text embedding of length 0", [], lambda m: None,
          {"text-embeddings.json": cache}, kind="model_ok")


def feedback_cases():
    def db(name, broken, expect, build):
        p = os.path.join(OUT, "feedback", name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if os.path.exists(p):
            os.remove(p)
        c = sqlite3.connect(p)
        build(c)
        c.commit()
        c.close()
        case(f"feedback/{name}", "feedback", broken, expect)

    db("user_version_negative.sqlite3", "PRAGMA user_version = -5", ["version"], lambda c: c.execute("PRAGMA user_version = -5"))
    db("user_version_future.sqlite3", "PRAGMA user_version = 999 (a newer Radbridge)", ["version"], lambda c: c.execute("PRAGMA user_version = 999"))
    db("wrong_schema.sqlite3", "user_version 1 but no Radbridge tables", ["another application"],
       lambda c: (c.execute("CREATE TABLE other (x)"), c.execute("PRAGMA user_version = 1")))
    case(write("feedback/not_sqlite.sqlite3", b"SQLite format 2\x00" + b"\x00" * 200), "feedback", "not an SQLite database", ["database"])


def report_cases():
    case(write("report/deep_nesting.json", b"[" * 100000 + b"]" * 100000), "report", "JSON nested 100000 deep", ["diagnose"])
    case(write("report/number_huge.json", b'{"findings": [{"label": "x", "score": 1e400}]}'), "report", "a score of 1e400", ["diagnose"])
    case(write("report/wrong_types.json", b'{"model": 7, "findings": "none"}'), "report", "fields of the wrong type", ["diagnose"])
    case(write("report/not_utf8.json", b"\xff\xfe{\x00}\x00"), "report", "UTF-16 bytes", ["read"])


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    template = sys.argv[1] if len(sys.argv) > 1 else None
    dicom_cases()
    folder_cases()
    nifti_cases()
    checkpoint_cases()
    if template is None:
        sys.exit("usage: make_corrupt_corpus.py <tiny CT-CLIP model dir from `radbridge import-checkpoint`>")
    model_cases(template)
    feedback_cases()
    report_cases()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"about": "cases of tests/reference/make_corrupt_corpus.py; checked by tests/integration/bad_input.rs",
                   "cases": CASES}, f, indent=1)
        f.write("\n")
    print(f"{len(CASES)} cases in {OUT}")


if __name__ == "__main__":
    main()
