#!/usr/bin/env python3
"""Cohort throughput: `radbridge batch` against a loop of `radbridge diagnose` calls and against the
official BrgSA PyTorch pipeline, on the same studies, same machine, same run (issue 16).

Usage (from the repository root):
    cargo build --release --bin radbridge
    target/refvenv/bin/python tests/reference/bench_batch.py [--studies 10] [--threads 2] [--json OUT.json]
        [--radbridge target/release/radbridge] [--workdir DIR] [--keep]

The model is BrgSA at full size with random (seeded) weights, built and saved in the official checkpoint
layout by bench_models.py's `prepare` worker and imported with `radbridge import-checkpoint`. The studies
are a synthetic cohort from `radbridge synth` (NIfTI, int16 HU; a share built on the real chest CT).
Each contender runs in its own process (peak RSS = that process's ru_maxrss, from wait4):

  * PyTorch: the official pipeline per study - SimpleITK read, the official BrgSA preprocessing
    (preprocess_reference.brgsa_pipeline: ITK linear resample to 1.5x1.5x3 mm, crop/pad, clip, normalise),
    the image encoder (ViT + global embedder + knowledge bank), scores against the 18 CT-RATE prompts
    (embedded once per run, as the official zero-shot evaluation does);
  * radbridge batch: `batch --manifest --labels ct-rate --threads T` (load and preprocessing overlap the
    encoder; the model is loaded once);
  * radbridge diagnose loop: one `diagnose --labels ct-rate --json` process per study (the text-embedding
    cache on disk is shared, as a user's would be).

The PyTorch scores are compared with `batch`'s scores.csv (same weights, same input up to the 1 HU ITK
truncation noted in tests/reference/README.md) so that both time the same computation. Prints studies per
hour, wall seconds and peak RSS per contender, and the ratios.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def measured(cmd, env=None, stdout_path=None):
    """Run cmd; return (wall seconds, peak RSS bytes, returncode, stderr tail)."""
    t = time.perf_counter()
    out = open(stdout_path, "w") if stdout_path else subprocess.DEVNULL
    err_path = Path(tempfile.mktemp(prefix="bench-batch-err-"))
    with open(err_path, "w") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if stdout_path:
        out.close()
    tail = err_path.read_text()[-2000:]
    err_path.unlink()
    return wall, ru.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), tail


def torch_worker(args):
    import numpy as np
    import SimpleITK as sitk
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertModel, BertTokenizer
    import bench_models as bm
    import model_reference as mr
    from preprocess_reference import brgsa_pipeline

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    d = Path(args._dir)
    t0 = time.perf_counter()
    config = BertConfig.from_json_file(str(d / "config.json"))
    tok = BertTokenizer(str(d / "vocab.txt"), do_lower_case=True)
    ckpt = torch.load(str(d / "best.ckpt"), map_location="cpu", weights_only=True)
    sd = {k[len("gloria."):]: v for k, v in ckpt["state_dict"].items()}
    del ckpt
    idxtoword = {v: k for k, v in tok.get_vocab().items()}
    model = mr.CLIPProjDict(bm.BRGSA_ARCH, BertModel(config, add_pooling_layer=True), 768, idxtoword)
    model.load_state_dict(sd, strict=True)
    del sd
    model.eval()
    load = time.perf_counter() - t0
    # Text once per run: the 18 CT-RATE prompts, padded as the official code pads (97 tokens).
    t = time.perf_counter()
    prompts = [f"There is {label}" for label in bm.CT_RATE]
    cleaned = [mr.brgsa_process_text(p) for p in prompts]
    enc = tok(cleaned, return_tensors="pt", truncation=True, padding="max_length",
              max_length=bm.BRGSA_ARCH["text_max_length"])
    _, text, _ = model.text_encoder(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    text_s = time.perf_counter() - t
    stages = {"read": 0.0, "preprocess": 0.0, "encode image": 0.0, "score": 0.0}
    scores = []
    for path in json.loads(Path(args._studies).read_text()):
        t = time.perf_counter()
        img = sitk.DICOMOrient(sitk.ReadImage(path), "LPS")
        if img.GetPixelID() != sitk.sitkInt16:
            img = sitk.Cast(img, sitk.sitkInt16)
        stages["read"] += time.perf_counter() - t
        t = time.perf_counter()
        arr, _, _ = brgsa_pipeline(img, "bench")
        x = torch.from_numpy(np.ascontiguousarray(arr))
        stages["preprocess"] += time.perf_counter() - t
        t = time.perf_counter()
        cls, patches = model.img_encoder.model(x)
        v = model.img_encoder.global_embedder(cls)
        v_hat, _ = model.dictionarylearning(v)
        stages["encode image"] += time.perf_counter() - t
        t = time.perf_counter()
        # BrgSA's zero-shot score (spec §5): mean of cos(v, t) and cos(v_hat, t).
        s = 0.5 * (F.cosine_similarity(v, text) + F.cosine_similarity(v_hat, text))
        scores.append([float(a) for a in s])
        stages["score"] += time.perf_counter() - t
    print(json.dumps({"load_seconds": load, "text_seconds": text_s, "stages": stages, "scores": scores,
                      "torch": torch.__version__, "threads": args.threads}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--radbridge", default=str(ROOT / "target" / "release" / "radbridge"))
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--_worker")
    ap.add_argument("--_dir")
    ap.add_argument("--_studies")
    args = ap.parse_args()
    if args._worker == "torch":
        return torch_worker(args)

    rb = Path(args.radbridge)
    if not rb.exists():
        raise SystemExit(f"{rb}: missing; build it with `cargo build --release --bin radbridge`")
    tmp = Path(tempfile.mkdtemp(prefix="radbridge-bench-batch-", dir=args.workdir))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        d = tmp / "brgsa"
        print("building random full-size BrgSA weights ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, str(HERE / "bench_models.py"), "--_worker", "prepare", "--_arch", "brgsa",
                        "--_dir", str(d)], check=True, env=env, stdout=subprocess.DEVNULL)
        model = d / "model"
        subprocess.run([str(rb), "import-checkpoint", "--arch", "brgsa", "--checkpoint", str(d / "best.ckpt"),
                        "--text-dir", str(d), "-o", str(model), "--name", "brgsa-random-fullsize"],
                       check=True, env=env, capture_output=True)
        corpus = tmp / "corpus"
        subprocess.run([str(rb), "synth", "--count", str(args.studies), "--seed", "16", "--chest-fraction", "0.3",
                        "--output", str(corpus)], check=True, env=env, capture_output=True)
        studies = [str(corpus / f"case_{i:04d}" / "ct.nii.gz") for i in range(1, args.studies + 1)]
        (tmp / "studies.json").write_text(json.dumps(studies))
        manifest = tmp / "manifest.csv"
        manifest.write_text("id,path\n" + "".join(f"case_{i:04d},{p}\n" for i, p in enumerate(studies, 1)))
        res = {"studies": args.studies, "threads": args.threads, "cpu_count": os.cpu_count()}

        print("PyTorch (official pipeline) ...", file=sys.stderr, flush=True)
        wall, rss, rc, err = measured(me + ["--_worker", "torch", "--_dir", str(d), "--_studies", str(tmp / "studies.json"),
                                            "--threads", str(args.threads)], env, tmp / "torch.json")
        if rc != 0:
            raise SystemExit(f"PyTorch worker failed: {err}")
        torch_out = json.loads((tmp / "torch.json").read_text())
        res["pytorch"] = {"wall_seconds": wall, "peak_rss_bytes": rss, **{k: v for k, v in torch_out.items() if k != "scores"}}

        print("radbridge batch ...", file=sys.stderr, flush=True)
        out = tmp / "batch"
        cmd = [str(rb), "batch", "--model", str(model), "--manifest", str(manifest), "--output", str(out),
               "--labels", "ct-rate", "--threads", str(args.threads)]
        wall, rss, rc, err = measured(cmd, dict(env, RADBRIDGE_CACHE_DIR=str(tmp / "cache-batch")))
        if rc != 0:
            raise SystemExit(f"batch failed ({rc}): {err}")
        run = json.loads((out / "run.json").read_text())
        res["batch"] = {"wall_seconds": wall, "peak_rss_bytes": rss, "command": " ".join(cmd),
                        "stages": run["seconds"]["stages"], "studies_per_hour_run_json": run["studies_per_hour"]}

        print("radbridge diagnose loop ...", file=sys.stderr, flush=True)
        loop_wall, loop_rss = 0.0, 0
        for i, p in enumerate(studies):
            cmd = [str(rb), "diagnose", p, "--model", str(model), "--labels", "ct-rate", "--json", str(tmp / f"d{i}.json")]
            wall, rss, rc, err = measured(cmd, dict(env, RADBRIDGE_CACHE_DIR=str(tmp / "cache-loop")))
            if rc != 0:
                raise SystemExit(f"diagnose failed: {err}")
            loop_wall += wall
            loop_rss = max(loop_rss, rss)
        res["diagnose_loop"] = {"wall_seconds": loop_wall, "peak_rss_bytes": loop_rss}

        # Same computation: PyTorch's scores against batch's.
        lines = (out / "scores.csv").read_text().splitlines()
        rb_scores = [[float(v) for v in line.split(",")[1:]] for line in lines[1:]]
        diff = max(abs(a - b) for ra, rb_ in zip(torch_out["scores"], rb_scores) for a, b in zip(ra, rb_))
        res["max_abs_score_diff_pytorch_vs_batch"] = diff
        for k in ("pytorch", "batch", "diagnose_loop"):
            res[k]["studies_per_hour"] = args.studies / res[k]["wall_seconds"] * 3600
        res["speedup_batch_vs_diagnose_loop"] = res["diagnose_loop"]["wall_seconds"] / res["batch"]["wall_seconds"]
        res["speedup_batch_vs_pytorch"] = res["pytorch"]["wall_seconds"] / res["batch"]["wall_seconds"]

        print(f"\n{args.studies} studies, full-size BrgSA (random weights), {args.threads} threads, "
              f"{os.cpu_count()} CPUs; wall time of the whole process (model load included)")
        print(f"{'contender':<26} {'wall s':>8} {'studies/h':>10} {'peak RSS MB':>12}")
        for k, name in (("batch", "radbridge batch"), ("diagnose_loop", "radbridge diagnose loop"),
                        ("pytorch", "PyTorch official pipeline")):
            r = res[k]
            print(f"{name:<26} {r['wall_seconds']:>8.1f} {r['studies_per_hour']:>10.1f} {r['peak_rss_bytes'] / 1e6:>12.0f}")
        print(f"batch vs diagnose loop: {res['speedup_batch_vs_diagnose_loop']:.2f}x; batch vs PyTorch: "
              f"{res['speedup_batch_vs_pytorch']:.2f}x; max |score diff| PyTorch vs batch {diff:.2e}")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
