#!/usr/bin/env python3
"""Reference values for the measurement code (crates/radbridge-volume/src/measure.rs), computed
with nibabel and numpy on the shared chest CT, independently of Radbridge.

The positions are voxel indices of the CT in canonical LPS order (axis 0 → patient left,
1 → posterior, 2 → superior: the grid the app shows and measures on). Here that grid comes
from nibabel's RAS+ canonical image with axes 0 and 1 reversed, and patient positions from its
affine (RAS → LPS: x and y negated).
Regions hold the voxels whose centres are inside; SD is numpy's default (ddof = 0).

    target/testvenv/bin/python tests/reference/measure_reference.py > tests/data/reference/measurements.json
"""
import json
import os
import sys

import nibabel as nib
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CT = os.path.join(ROOT, "tests/data/totalsegmentator/chest_ct.nii.gz")

img = nib.as_closest_canonical(nib.load(CT))
ras = np.asarray(img.dataobj, dtype=np.float64)
arr = ras[::-1, ::-1, :]  # LPS index order
nx, ny, nz = arr.shape


def world(p):
    """LPS mm of a (continuous) LPS voxel position."""
    r = img.affine @ np.array([nx - 1 - p[0], ny - 1 - p[1], p[2], 1.0])
    return np.array([-r[0], -r[1], r[2]])


AXES = {"axial": (0, 1, 2), "coronal": (0, 2, 1), "sagittal": (1, 2, 0)}


def plane_view(plane, s):
    ua, va, fa = AXES[plane]
    sl = np.take(arr, s, axis=fa)  # remaining axes in increasing order: (ua, va)
    return sl


def pixel_area(plane, s):
    ua, va, fa = AXES[plane]
    def p(u, v):
        q = [0.0, 0.0, 0.0]
        q[ua], q[va], q[fa] = u, v, s
        return world(q)
    return float(np.linalg.norm(np.cross(p(1, 0) - p(0, 0), p(0, 1) - p(0, 0))))


def stats(plane, s, mask):
    vals = plane_view(plane, s)[mask]
    return {"mean": float(vals.mean()), "sd": float(vals.std()), "min": float(vals.min()), "max": float(vals.max()),
            "area_mm2": float(mask.sum() * pixel_area(plane, s)), "voxels": int(mask.sum())}


def ellipse(plane, s, c, r):
    sl = plane_view(plane, s)
    u, v = np.meshgrid(np.arange(sl.shape[0]), np.arange(sl.shape[1]), indexing="ij")
    return stats(plane, s, ((u - c[0]) / r[0]) ** 2 + ((v - c[1]) / r[1]) ** 2 <= 1.0)


def rectangle(plane, s, a, b):
    sl = plane_view(plane, s)
    u, v = np.meshgrid(np.arange(sl.shape[0]), np.arange(sl.shape[1]), indexing="ij")
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return stats(plane, s, (u >= lo[0]) & (u <= hi[0]) & (v >= lo[1]) & (v <= hi[1]))


cases = {"dims": [nx, ny, nz], "distances": [], "angles": [], "regions": []}
for a, b in [((10, 20, 30), (200, 150, 170)), ((116.5, 83.25, 95.0), (117.0, 40.0, 95.0)), ((0, 0, 0), (232, 166, 190))]:
    cases["distances"].append({"a": list(map(float, a)), "b": list(map(float, b)), "mm": float(np.linalg.norm(world(a) - world(b)))})
for a, o, b in [((50, 60, 70), (100, 80, 90), (120, 30, 150)), ((10, 10, 10), (20, 10, 10), (20, 25.5, 40))]:
    u, v = world(a) - world(o), world(b) - world(o)
    ang = float(np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1))))
    cases["angles"].append({"a": list(map(float, a)), "vertex": list(map(float, o)), "b": list(map(float, b)), "deg": ang})
for plane, s, c, r in [("axial", 95, (116.0, 83.0), (12.0, 7.5)), ("coronal", 80, (110.3, 100.7), (20.0, 9.0)), ("sagittal", 120, (60.0, 150.0), (5.5, 5.5))]:
    cases["regions"].append({"plane": plane, "slice": s, "region": {"shape": "ellipse", "center": list(c), "radii": list(r)}, **ellipse(plane, s, c, r)})
for plane, s, a, b in [("axial", 100, (30.2, 40.0), (60.0, 70.7)), ("sagittal", 50, (0.0, 0.0), (10.0, 20.0))]:
    cases["regions"].append({"plane": plane, "slice": s, "region": {"shape": "rectangle", "a": list(a), "b": list(b)}, **rectangle(plane, s, a, b)})
json.dump(cases, sys.stdout, indent=1)
print()
