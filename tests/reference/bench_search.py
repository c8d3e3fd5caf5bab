#!/usr/bin/env python3
"""Library search benchmark: `radbridge bench search` against NumPy on the same embeddings.

Radbridge ranks N studies by a sentence with BrgSA's rule ½·[cos(v, t) + cos(v̂, t)] (one
matrix–vector product per tensor over embeddings kept in memory, row norms precomputed) and keeps
the top K. The peer does the same in NumPy (float32 BLAS matrix–vector products, row norms
precomputed outside the timing, argpartition for the top K) on the very bytes Radbridge wrote,
in the same run; both report the median of their repeats. The top-K ids must agree.

    python tests/reference/bench_search.py [--studies 100000] [--dim 768] [--repeats 20]
        [--radbridge target/release/radbridge]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--radbridge", default="target/release/radbridge")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        raw = os.path.join(d, "emb.f32")
        cmd = [a.radbridge, "bench", "search", "--studies", str(a.studies), "--dim", str(a.dim),
               "--repeats", str(a.repeats), "--top", str(a.top), "--write", raw, "--json"]
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        x = np.fromfile(raw, dtype="<f4")
    n, dim = a.studies, a.dim
    v = x[: n * dim].reshape(n, dim)
    vh = x[n * dim: 2 * n * dim].reshape(n, dim)
    t = x[2 * n * dim:]
    nv = np.linalg.norm(v.astype(np.float64), axis=1).astype(np.float32)
    nvh = np.linalg.norm(vh.astype(np.float64), axis=1).astype(np.float32)
    tn = np.float32(np.linalg.norm(t))
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        s = 0.5 * ((v @ t) / (nv * tn) + (vh @ t) / (nvh * tn))
        top = np.argpartition(-s, a.top)[: a.top]
        top = top[np.lexsort((top, -s[top]))]
        times.append((time.perf_counter() - t0) * 1e3)
    peer_ms = float(np.median(times))
    ids = [f"s{i:06d}" for i in top]
    ours_ids = [h["id"] for h in ours["top"]]
    same = ids == ours_ids
    max_diff = max(abs(float(s[int(h["id"][1:])]) - h["score"]) for h in ours["top"])
    peer_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "studies": n, "dim": dim, "repeats": a.repeats,
        "radbridge_text_ms": ours["text_ms_median"], "radbridge_like_ms": ours["like_ms_median"],
        "radbridge_peak_rss_mb": ours["peak_rss_mb"], "radbridge_index_mb": ours["index_mb"],
        "numpy_text_ms": peer_ms, "numpy_peak_rss_mb": peer_rss,
        "ratio_text": ours["text_ms_median"] / peer_ms,
        "same_top": same, "max_score_diff": max_diff, "numpy": np.__version__,
    }
    print(json.dumps(out, indent=1))
    if not same:
        print("top-K ids differ:", ids, ours_ids, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
