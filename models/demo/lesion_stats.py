#!/usr/bin/env python3
"""Size and contrast of the synthetic findings, per label, as the demo model sees them.

usage: lesion_stats.py CORPUS_DIR [N_CASES]   (nibabel, numpy, scipy)

For each positive mask of the first N cases (default 250): its volume in model-input voxels
(5.6 x 5.6 x 10 mm), and the mean HU inside it against a 3-voxel shell around it.
"""
import collections
import json
import sys

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

corpus = sys.argv[1]
n_cases = int(sys.argv[2]) if len(sys.argv) > 2 else 250
model_voxel_mm3 = 5.6 * 5.6 * 10.0
rows = [json.loads(line) for line in open(f"{corpus}/cases.jsonl")][:n_cases]
per = collections.defaultdict(list)
for r in rows:
    ct = None
    for label, rel in r["masks"].items():
        if ct is None:
            ct = np.asarray(nib.load(f"{corpus}/{r['volume']}").dataobj).astype(np.float32)
        img = nib.load(f"{corpus}/{rel}")
        mask = np.asarray(img.dataobj) > 0
        if not mask.any():
            continue
        shell = ndi.binary_dilation(mask, iterations=3) & ~mask
        size = mask.sum() * float(np.prod(img.header.get_zooms()[:3])) / model_voxel_mm3
        per[label].append((size, ct[mask].mean(), ct[shell].mean()))
print(f"{'label':36s} {'n':>4s} {'median model voxels':>20s} {'inside HU':>10s} {'shell HU':>9s}")
for label, v in sorted(per.items(), key=lambda kv: np.median([x[0] for x in kv[1]])):
    v = np.array(v)
    print(f"{label:36s} {len(v):4d} {np.median(v[:, 0]):20.1f} {v[:, 1].mean():10.0f} {v[:, 2].mean():9.0f}")
