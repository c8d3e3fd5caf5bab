#!/usr/bin/env python3
"""Full-size BrgSA and CT-CLIP v2 on the CPU: radbridge (candle) against PyTorch, same weights, same input.

Usage (from the repository root):
    cargo build --release -p radbridge-cli
    target/refvenv/bin/python tests/reference/bench_models.py [--models brgsa ctclip] [-n 3] [--threads 2]
        [--radbridge target/release/radbridge] [--warmup] [--attention sdpa|eager] [--workdir DIR] [--keep]
        [--json OUT.json]

For each model: build the official full-size configuration with random (seeded) weights from the modules of
model_reference.py, save it in the official checkpoint layout (BrgSA: a Lightning-style `best.ckpt`, keys
prefixed `gloria.`; CT-CLIP: a plain state dict `CT-CLIP_v2.pt`) with a BERT-base `config.json` and a
30522-line synthetic `vocab.txt`, import it with `radbridge import-checkpoint`, write a random model input
(.npy) and the zero-shot prompts, then time, each in its own subprocess (so peak RSS is per process):

  * PyTorch: load (torch.load + build + load_state_dict), image forward, text forward (padded as the
    official code pads: BrgSA 97, CT-CLIP 512; and padded to the longest prompt only), median of N;
  * radbridge: `radbridge bench model --json` (Engine::load, encode_image, embed_prompts; median of N).

The image and text embeddings of both sides are compared (cosine, max |diff|) so the two time the same
computation. Prints a table with seconds, peak RSS and the ratio radbridge / PyTorch. Generated files live in
a temporary folder (never in the repository) that is removed at the end unless --keep.
"""

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# The 18 CT-RATE and 15 CT-RATE-LT labels (crates/radbridge-model/src/zeroshot.rs, spec section 5), official order.
CT_RATE = ["Medical material", "Arterial wall calcification", "Cardiomegaly", "Pericardial effusion",
           "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy", "Emphysema", "Atelectasis",
           "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela", "Pleural effusion",
           "Mosaic attenuation pattern", "Peribronchial thickening", "Consolidation", "Bronchiectasis",
           "Interlobular septal thickening"]
CT_RATE_LT = ["Pneumonia", "Pneumothorax", "Empyema", "Tuberculosis", "Pulmonary fibrosis", "Lung cyst",
              "Bronchial thickening", "Lung mass", "Osteophyte", "Rib fracture", "Atherosclerosis",
              "Pericardial calcification", "Spondylosis", "Pleural calcification", "Pneumomediastinum"]

VOCAB_SIZE = 30522
SEED = {"brgsa": 20250301, "ctclip": 20250302}

# Official full-size configurations (spec sections 1, 2 and 7).
BRGSA_ARCH = {
    "vision": {"hidden_size": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072, "patch_size": [16, 16, 8],
               "img_size": [224, 224, 112], "in_channels": 1, "qkv_bias": True, "block_eps": 1e-6,
               "final_eps": 1e-5},
    "embed_dim": 768, "bank_size": 2048, "text_max_length": 97, "text_pool_layers": 4,
}
BRGSA_INPUT = (1, 1, 256, 256, 128)
CTCLIP_ARCH = {"dim": 512, "patch_size": 20, "temporal_patch_size": 10, "spatial_depth": 4, "temporal_depth": 4,
               "heads": 8, "dim_head": 32, "channels": 1, "image_size": [480, 480], "frames": 240,
               "codebook_size": 8192, "dim_image": 24 * 24 * 512, "text_hidden": 768, "latent_dim": 512,
               "text_max_length": 512, "temperature": 4.6052}
CTCLIP_INPUT = (1, 1, 240, 480, 480)
BERT_BASE = dict(vocab_size=VOCAB_SIZE, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                 initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, position_embedding_type="absolute",
                 use_cache=True, classifier_dropout=None, architectures=["BertModel"])


def prompts_for(arch):
    if arch == "brgsa":
        return [f"There is {label}" for label in CT_RATE + CT_RATE_LT]
    out = []
    for label in CT_RATE:  # official zero_shot.py: one (present, not present) pair per label
        out += [f"{label} is present.", f"{label} is not present."]
    return out


def make_vocab():
    """[PAD] [UNK] [CLS] [SEP] [MASK] (CXR-BERT layout), punctuation, every word of the prompts, letters and
    digits (as words and as ## pieces), then synthetic filler words up to 30522 entries."""
    words = set()
    for a in ("brgsa", "ctclip"):
        for p in prompts_for(a):
            words.update(p.lower().replace(".", " ").split())
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,;:!?()-/'\"")
             + sorted(words) + letters + ["##" + c for c in letters])
    i = 0
    while len(vocab) < VOCAB_SIZE:
        vocab.append(f"zz{i:05d}")
        i += 1
    assert len(set(vocab)) == len(vocab) == VOCAB_SIZE
    return vocab


def max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def current_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def median(xs):
    return statistics.median(xs)


# ==================================================================================================
# Worker: build a full-size model with random weights and write the official files
# ==================================================================================================

def prepare(arch, d):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import BertTokenizer
    sys.path.insert(0, str(HERE))
    import model_reference as mr

    torch.set_num_threads(os.cpu_count() or 1)
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.txt").write_text("\n".join(make_vocab()) + "\n")
    (d / "prompts.txt").write_text("\n".join(prompts_for(arch)) + "\n")
    g = mr.gen(SEED[arch])
    kwargs = dict(BERT_BASE, output_hidden_states=True) if arch == "brgsa" else dict(BERT_BASE)
    config, bert = mr.make_bert(kwargs, g)
    mr.write_bert_config(d / "config.json", config)
    t0 = time.perf_counter()
    with torch.no_grad():
        if arch == "brgsa":
            tok = BertTokenizer(str(d / "vocab.txt"), do_lower_case=True)
            idxtoword = {v: k for k, v in tok.get_vocab().items()}
            model = mr.CLIPProjDict(BRGSA_ARCH, bert, 768, idxtoword).eval()
            v = model.img_encoder.model
            w = v.patch_embed.proj.weight
            w.copy_(mr.randn(g, *w.shape, std=1.0 / math.sqrt(w[0].numel())))
            v.patch_embed.proj.bias.copy_(mr.randn(g, *v.patch_embed.proj.bias.shape, std=0.1))
            v.cls_token.copy_(mr.randn(g, *v.cls_token.shape))
            v.pos_embed.copy_(mr.randn(g, *v.pos_embed.shape, std=0.5))
            for blk in v.blocks:
                mr.randomise_layernorm(blk.norm1.weight, blk.norm1.bias, g)
                mr.randomise_linear(blk.attn.qkv, g)
                mr.randomise_linear(blk.attn.proj, g)
                mr.randomise_layernorm(blk.norm2.weight, blk.norm2.bias, g)
                mr.randomise_linear(blk.mlp.fc1, g)
                mr.randomise_linear(blk.mlp.fc2, g)
            mr.randomise_layernorm(v.norm.weight, v.norm.bias, g)
            for lin in (model.img_encoder.global_embedder, model.img_encoder.local_embedder,
                        model.text_encoder.emb_global, model.text_encoder.emb_local):
                mr.randomise_linear(lin, g)
            # CMKB (2048, 768): orthonormal columns (the official nn.init.orthogonal_), gain 2
            q, r = torch.linalg.qr(mr.randn(g, BRGSA_ARCH["bank_size"], BRGSA_ARCH["embed_dim"]))
            model.dictionarylearning.dictionary.weight.copy_(2.0 * q * torch.sign(torch.diagonal(r)))
            sd = {"gloria." + k: t.detach().contiguous() for k, t in model.state_dict().items()}
            assert not any(k.endswith("position_ids") for k in sd)
            ckpt = {"epoch": 38, "global_step": 100000, "pytorch-lightning_version": "1.1.4", "state_dict": sd,
                    "hparams_name": "cfg",
                    "hyper_parameters": {"experiment_name": "BrgSA_bench_random", "phase": "clip3d_proj_dict",
                                         "data": {"text": {"word_num": 97}}}}
            torch.save(ckpt, str(d / "best.ckpt"))
            x = mr.randn(g, *BRGSA_INPUT)
        else:
            a = CTCLIP_ARCH
            model = mr.CTCLIP(a, bert).eval()
            vt = model.visual_transformer
            for lin in (vt.spatial_rel_pos_bias.net[0][0], vt.spatial_rel_pos_bias.net[1][0],
                        vt.spatial_rel_pos_bias.net[2]):
                mr.randomise_linear(lin, g)
            for seq in (vt.to_patch_emb_first_frame, vt.to_patch_emb):
                mr.randomise_layernorm(seq[1].weight, seq[1].bias, g)
                mr.randomise_linear(seq[2], g)
                mr.randomise_layernorm(seq[3].weight, seq[3].bias, g)
            for tr in (vt.enc_spatial_transformer, vt.enc_temporal_transformer):
                for peg, attn, _, ff in tr.layers:
                    peg.dsconv.weight.copy_(mr.randn(g, *peg.dsconv.weight.shape, std=1.0 / math.sqrt(27)))
                    peg.dsconv.bias.copy_(mr.randn(g, *peg.dsconv.bias.shape, std=0.1))
                    attn.q_scale.copy_(mr.randn(g, *attn.q_scale.shape, std=0.2, mean=1.0))
                    attn.k_scale.copy_(mr.randn(g, *attn.k_scale.shape, std=0.2, mean=1.0))
                    # official checkpoints: LayerNorm beta buffers are zeros
                    mr.randomise_layernorm(attn.norm.gamma, None, g)
                    mr.randomise_layernorm(attn.context_norm.gamma, None, g)
                    mr.randomise_linear(attn.to_q, g)
                    mr.randomise_linear(attn.to_kv, g)
                    mr.randomise_linear(attn.to_out, g)
                    mr.randomise_layernorm(ff[0].weight, ff[0].bias, g)
                    mr.randomise_linear(ff[1], g)
                    mr.randomise_linear(ff[4], g)
                mr.randomise_layernorm(tr.norm_out.gamma, None, g)
            mr.randomise_linear(vt.to_pixels_first_frame[0], g)
            mr.randomise_linear(vt.to_pixels[0], g)
            vt.vq._codebook.cluster_size.copy_(mr.randn(g, 1, a["codebook_size"]).abs() * 3)
            e = F.normalize(mr.randn(g, a["codebook_size"], a["dim"]), dim=-1)
            e = e * (0.5 + 1.5 * torch.rand(a["codebook_size"], 1, generator=g))
            vt.vq._codebook.embed.copy_(e[None])
            for lin in (model.to_text_latent, model.to_visual_latent, model.to_text_latent_extra,
                        model.to_visual_latent_extra):
                mr.randomise_linear(lin, g)
            model.temperature.fill_(a["temperature"])
            sd = {}
            for k, t in model.state_dict().items():
                if k == "text_transformer.embeddings.word_embeddings.weight":
                    # CT-CLIP_v2.pt (saved with transformers <= 4.30) carries this buffer
                    sd["text_transformer.embeddings.position_ids"] = torch.arange(512, dtype=torch.int64)[None]
                sd[k] = t.detach().contiguous()
            torch.save(sd, str(d / "CT-CLIP_v2.pt"))
            x = torch.rand(*CTCLIP_INPUT, generator=g) * 2 - 1  # CT-CLIP inputs lie in [-1, 1]
    np.save(d / "input.npy", x.numpy())
    n_params = sum(t.numel() for t in sd.values())
    print(json.dumps({"arch": arch, "stored_params": n_params, "seconds": time.perf_counter() - t0}))


# ==================================================================================================
# Worker: time PyTorch
# ==================================================================================================

class _NoTrace(dict):
    """A trace dict that keeps nothing (model_reference's CTViT writes intermediates into it)."""

    def __setitem__(self, key, value):
        pass


def _sdpa_timm_attention(self, x):
    import torch.nn.functional as F
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


def torch_bench(arch, d, repeats, threads, warmup, attention, unpadded):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertModel, BertTokenizer
    sys.path.insert(0, str(HERE))
    import model_reference as mr

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    if attention == "sdpa":
        # timm 0.9.2 Block (the official ViT3D blocks) uses fused scaled_dot_product_attention
        mr.TimmAttention.forward = _sdpa_timm_attention
    d = Path(d)
    prompts = prompts_for(arch)

    t0 = time.perf_counter()
    x = torch.from_numpy(np.load(d / "input.npy"))
    config = BertConfig.from_json_file(str(d / "config.json"))
    config._attn_implementation = attention
    tok = BertTokenizer(str(d / "vocab.txt"), do_lower_case=True)
    if arch == "brgsa":
        ckpt = torch.load(str(d / "best.ckpt"), map_location="cpu", weights_only=True)
        sd = {k[len("gloria."):]: v for k, v in ckpt["state_dict"].items()}
        del ckpt
        idxtoword = {v: k for k, v in tok.get_vocab().items()}
        model = mr.CLIPProjDict(BRGSA_ARCH, BertModel(config, add_pooling_layer=True), 768, idxtoword)
    else:
        sd = torch.load(str(d / "CT-CLIP_v2.pt"), map_location="cpu", weights_only=True)
        sd.pop("text_transformer.embeddings.position_ids", None)  # not a buffer in transformers 4.46
        model = mr.CTCLIP(CTCLIP_ARCH, BertModel(config, add_pooling_layer=True))
    model.load_state_dict(sd, strict=True)
    del sd
    model.eval()
    load_seconds = time.perf_counter() - t0
    rss_after_load = max_rss_bytes()
    rss_now_after_load = current_rss_bytes()
    bert = model.text_encoder.model if arch == "brgsa" else model.text_transformer
    attn_impl = type(bert.encoder.layer[0].attention.self).__name__

    if arch == "brgsa":
        def image():
            cls, patches = model.img_encoder.model(x)
            v = model.img_encoder.global_embedder(cls)
            model.img_encoder.global_embedder(patches)  # patch_proj (heat maps), as radbridge computes it
            v_hat, z = model.dictionarylearning(v)
            return {"v": v[0], "v_hat": v_hat[0]}

        def text(padding):
            cleaned = [mr.brgsa_process_text(p) for p in prompts]
            enc = tok(cleaned, return_tensors="pt", truncation=True, padding=padding,
                      max_length=BRGSA_ARCH["text_max_length"])
            _, t, _ = model.text_encoder(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            t_hat, z = model.dictionarylearning(t)
            return {"t": t, "tokens": int(enc["input_ids"].numel())}
    else:
        def image():
            q = model.visual_transformer(x, _NoTrace())
            enc = q.mean(dim=1).reshape(q.shape[0], -1)
            return {"latent": F.normalize(model.to_visual_latent(enc), dim=-1)[0]}

        def text(padding):
            enc = tok(prompts, return_tensors="pt", truncation=True, padding=padding,
                      max_length=CTCLIP_ARCH["text_max_length"])
            out = model.text_transformer(enc["input_ids"], attention_mask=enc["attention_mask"])
            return {"latent": F.normalize(model.to_text_latent(out[0][:, 0, :]), dim=-1),
                    "tokens": int(enc["input_ids"].numel())}

    def timed(fn, *args):
        if warmup:
            fn(*args)
        secs, out = [], None
        for _ in range(repeats):
            out = None
            t = time.perf_counter()
            out = fn(*args)
            secs.append(time.perf_counter() - t)
        return secs, out

    img_secs, img = timed(image)
    txt_secs, txt = timed(text, "max_length")
    res = {"load_seconds": load_seconds, "image_seconds_all": img_secs, "text_seconds_all": txt_secs,
           "text_tokens_padded": txt["tokens"]}
    if unpadded:
        txt_u_secs, txt_u = timed(text, "longest")
        res.update(text_unpadded_seconds_all=txt_u_secs, text_tokens_unpadded=txt_u["tokens"])
        if arch == "ctclip":  # the CLS does not depend on padding: check
            res["text_padding_max_abs_diff"] = float((txt_u["latent"] - txt["latent"]).abs().max())
    arrays = {k: v.numpy() for k, v in img.items()}
    arrays.update({"text_" + k: v.numpy() for k, v in txt.items() if k != "tokens"})
    np.savez(d / "torch_out.npz", **arrays)
    res.update(peak_rss_bytes=max_rss_bytes(), peak_rss_after_load_bytes=rss_after_load,
               rss_after_load_bytes=rss_now_after_load, threads=threads,
               bert_attention=attn_impl, vit_attention=attention if arch == "brgsa" else "manual (official)",
               torch=torch.__version__, prompts=len(prompts), repeats=repeats, warmup=warmup)
    print(json.dumps(res))


# ==================================================================================================
# Orchestrator
# ==================================================================================================

def run_json(cmd, env=None, label=""):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"{label} failed (exit {p.returncode}): {' '.join(map(str, cmd))}")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), wall, p.stderr


def cos_diff(a, b):
    import numpy as np
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return cos, float(np.abs(a - b).max()), float(np.abs(b).max())


def compare(arch, d, rb_out):
    import numpy as np
    pt = np.load(d / "torch_out.npz")
    rows = []
    if arch == "brgsa":
        img = rb_out["image"]["Brgsa"]
        rows.append(("image v", *cos_diff(img["v"], pt["v"])))
        rows.append(("image v_hat", *cos_diff(img["v_hat"], pt["v_hat"])))
        t = np.array([c["Brgsa"]["t"] for c in rb_out["text"]])
        rows.append(("text t (all prompts)", *cos_diff(t, pt["text_t"])))
        per = [cos_diff(t[i], pt["text_t"][i])[0] for i in range(len(t))]
        rows.append(("text t (worst prompt)", min(per), float("nan"), float("nan")))
    else:
        rows.append(("image latent", *cos_diff(rb_out["image"]["Ctclip"]["latent"], pt["latent"])))
        t = np.array([c["Ctclip"]["latent"] for c in rb_out["text"]])
        rows.append(("text latent (all)", *cos_diff(t, pt["text_latent"])))
        per = [cos_diff(t[i], pt["text_latent"][i])[0] for i in range(len(t))]
        rows.append(("text latent (worst prompt)", min(per), float("nan"), float("nan")))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["brgsa", "ctclip"], choices=["brgsa", "ctclip"])
    ap.add_argument("-n", "--repeats", type=int, default=3, help="timed runs per stage (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and RAYON_NUM_THREADS")
    ap.add_argument("--radbridge", default=str(ROOT / "target" / "release" / "radbridge"))
    ap.add_argument("--warmup", action="store_true", help="one untimed pass before the timed ones (both sides)")
    ap.add_argument("--attention", choices=["sdpa", "eager"], default="sdpa",
                    help="PyTorch attention of the BERTs and the BrgSA ViT (official: timm fused SDPA; HF "
                         "4.46 default SDPA). CT-CLIP's CTViT attention is always the official manual one.")
    ap.add_argument("--no-unpadded", action="store_true", help="skip the PyTorch unpadded text timings")
    ap.add_argument("--workdir", help="parent of the temporary folder (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--_worker", choices=["prepare", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--_arch", help=argparse.SUPPRESS)
    ap.add_argument("--_dir", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._worker == "prepare":
        return prepare(args._arch, args._dir)
    if args._worker == "torch":
        return torch_bench(args._arch, args._dir, args.repeats, args.threads, args.warmup, args.attention,
                           not args.no_unpadded)

    rb = Path(args.radbridge)
    if not rb.exists():
        raise SystemExit(f"{rb}: missing; build it with `cargo build --release -p radbridge-cli`")
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        print(f"warning: load average {load_start[0]:.2f} before starting: other processes compete for the "
              f"CPUs, timings will be noisy", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="radbridge-bench-models-", dir=args.workdir))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), RADBRIDGE_CACHE_DIR=str(tmp / "cache"),
               OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["-n", str(args.repeats), "--threads", str(args.threads), "--attention", args.attention] + \
        (["--warmup"] if args.warmup else []) + (["--no-unpadded"] if args.no_unpadded else [])
    results = {}
    try:
        for arch in args.models:
            d = tmp / arch
            r = {}
            print(f"[{arch}] building random full-size weights ...", file=sys.stderr, flush=True)
            r["prepare"], r["prepare_wall"], _ = run_json(me + ["--_worker", "prepare", "--_arch", arch,
                                                              "--_dir", str(d)], env, "prepare")
            ckpt = d / ("best.ckpt" if arch == "brgsa" else "CT-CLIP_v2.pt")
            print(f"[{arch}] radbridge import-checkpoint ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            p = subprocess.run([str(rb), "import-checkpoint", "--arch", arch, "--checkpoint", str(ckpt),
                                "--text-dir", str(d), "-o", str(d / "model"), "--name", f"{arch}-random-fullsize"], capture_output=True, text=True,
                               env=env)
            if p.returncode != 0:
                sys.stderr.write(p.stderr)
                raise SystemExit(f"[{arch}] import-checkpoint failed")
            r["import_wall"] = time.perf_counter() - t
            print(f"[{arch}] PyTorch ...", file=sys.stderr, flush=True)
            r["torch"], r["torch_wall"], _ = run_json(me + ["--_worker", "torch", "--_arch", arch, "--_dir", str(d)]
                                                      + common, env, "PyTorch")
            print(f"[{arch}] radbridge bench model ...", file=sys.stderr, flush=True)
            cmd = [str(rb), "bench", "model", "--model", str(d / "model"), "--volume", str(d / "input.npy"),
                   "--prompts", str(d / "prompts.txt"), "--repeats", str(args.repeats), "--json",
                   "--embeddings", str(d / "radbridge_out.json")] + (["--warmup"] if args.warmup else [])
            r["radbridge_command"] = " ".join(cmd)
            r["radbridge"], r["radbridge_wall"], _ = run_json(cmd, env, "radbridge bench model")
            rb_out = json.loads((d / "radbridge_out.json").read_text())
            r["agreement"] = compare(arch, d, rb_out)
            results[arch] = r
            if not args.keep:
                shutil.rmtree(d)
    finally:
        if args.keep:
            print(f"generated files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - t_start
    load_end = os.getloadavg()

    # ---- report --------------------------------------------------------------------------------
    mb = 1e6
    print(f"Full-size models on CPU, {args.threads} threads, median of {args.repeats} "
          f"({'after one warm-up' if args.warmup else 'no warm-up'}); ratio = radbridge / PyTorch (< 1: radbridge "
          f"faster or smaller)")
    hdr = f"{'model':<7} {'measure':<37} {'PyTorch':>11} {'radbridge':>11} {'ratio':>7}"
    print(hdr)
    print("-" * len(hdr))
    for arch, r in results.items():
        pt, rbj = r["torch"], r["radbridge"]

        def row(name, a, b, unit="s", fmt="{:.2f}"):
            ratio = b / a if a else float("nan")
            print(f"{arch:<7} {name:<37} {fmt.format(a) + ' ' + unit:>11} {fmt.format(b) + ' ' + unit:>11} "
                  f"{ratio:>7.2f}")

        pad = BRGSA_ARCH["text_max_length"] if arch == "brgsa" else CTCLIP_ARCH["text_max_length"]
        n = rbj["prompts"]
        row("load", pt["load_seconds"], rbj["load_seconds"])
        row("image encoder", median(pt["image_seconds_all"]), rbj["image_seconds"])
        row(f"text, {n} prompts (PT padded to {pad})", median(pt["text_seconds_all"]), rbj["text_seconds"])
        if "text_unpadded_seconds_all" in pt:
            row(f"text, {n} prompts (PT pad to longest)", median(pt["text_unpadded_seconds_all"]),
                rbj["text_seconds"])
        row("RSS after load (current)", pt["rss_after_load_bytes"] / mb, rbj["rss_after_load_bytes"] / mb,
            "MB", "{:.0f}")
        row("peak RSS after load", pt["peak_rss_after_load_bytes"] / mb, rbj["peak_rss_after_load_bytes"] / mb,
            "MB", "{:.0f}")
        row("peak RSS", pt["peak_rss_bytes"] / mb, rbj["peak_rss_bytes"] / mb, "MB", "{:.0f}")
    print()
    print("Agreement radbridge vs PyTorch (PyTorch text padded as official):")
    print(f"{'model':<7} {'output':<28} {'1 - cosine':>11} {'max|diff|':>11} {'max|PT|':>9}")
    for arch, r in results.items():
        for name, cos, diff, ref in r["agreement"]:
            diff_s, ref_s = ("-", "-") if math.isnan(diff) else (f"{diff:.3g}", f"{ref:.3g}")
            print(f"{arch:<7} {name:<28} {1 - cos:>11.2g} {diff_s:>11} {ref_s:>9}")
    print()
    for arch, r in results.items():
        pt, rbj = r["torch"], r["radbridge"]
        print(f"{arch}: input {rbj['input_shape']}, {r['prepare']['stored_params'] / 1e6:.1f} M stored params; "
              f"PyTorch {pt['torch']} BERT {pt['bert_attention']}, ViT attention {pt['vit_attention']}; text tokens "
              f"padded {pt['text_tokens_padded']}" + (f", to longest {pt['text_tokens_unpadded']}"
                                                      if 'text_tokens_unpadded' in pt else "")
              + (f", CLS padded vs unpadded max|diff| {pt['text_padding_max_abs_diff']:.2g}"
                 if 'text_padding_max_abs_diff' in pt else ""))
        print(f"  runs (s): PyTorch image {[round(s, 2) for s in pt['image_seconds_all']]}, text "
              f"{[round(s, 2) for s in pt['text_seconds_all']]}"
              + (f", text to longest {[round(s, 3) for s in pt['text_unpadded_seconds_all']]}"
                 if 'text_unpadded_seconds_all' in pt else "")
              + f"; radbridge image {[round(s, 2) for s in rbj['image_seconds_all']]}, text "
              f"{[round(s, 3) for s in rbj['text_seconds_all']]} ({rbj['threads']} threads)")
        print(f"  wall (s): build weights {r['prepare_wall']:.0f}, import-checkpoint {r['import_wall']:.0f}, "
              f"PyTorch process {r['torch_wall']:.0f}, radbridge process {r['radbridge_wall']:.0f}")
    print(f"total wall time {total:.0f} s; load average (1, 5, 15 min) at start "
          f"{', '.join(f'{x:.2f}' for x in load_start)}, at end {', '.join(f'{x:.2f}' for x in load_end)} "
          f"({os.cpu_count()} CPUs; the run itself adds ~{args.threads})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "total_seconds": total,
                       "loadavg_start": load_start, "loadavg_end": load_end}, f, indent=1)


if __name__ == "__main__":
    main()
