#!/usr/bin/env python3
"""Tiny BrgSA and CT-CLIP models with random weights, and their PyTorch reference outputs.

Usage (from the repository root):
    target/refvenv/bin/python tests/reference/model_reference.py [--out tests/data/models] [--check]

Writes tests/data/models/brgsa_tiny/ and tests/data/models/ctclip_tiny/ (see tests/reference/README.md,
section "model_reference.py", for every file). Rerunning reproduces every file byte for byte (fixed seeds,
one CPU thread, deterministic serialisation). `--check` regenerates into a temporary folder and compares
it byte for byte with the committed files instead of overwriting them.

This is an independent re-implementation of the inference math of
  * BrgSA (laihaoran/BrgSA: gloria/models/stander_3D_vit_relate_pe.py ViT3D, vision_model.py ImageEncoder,
    text_model.py BertEncoderWithProj, dictionarylearning.py SharedDictionaryLearning,
    gloria_model_clip_proj_dict.py CLIPProjDict.process_text, gloria.py get_similarities), and
  * CT-CLIP v2 (ibrahimethemhamamci/CT-CLIP HEAD: transformer_maskgit/ctvit.py CTViT, attention.py
    Attention/PEG/FeedForward/ContinuousPositionBias/Transformer, CT_CLIP/ct_clip/ct_clip.py CTCLIP,
    scripts/zero_shot.py; vector-quantize-pytorch 1.1.2 CosineSimCodebook),
following /work/shared/spec/model.md sections 1, 2, 5 and 7. The text encoders are HF transformers
`BertModel` itself (eager attention) and the tokeniser is HF `BertTokenizer` (the slow Python one, as in
both official repositories). Module/parameter names reproduce the official state-dict keys exactly.
"""

import argparse
import collections
import copy
import filecmp
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import safetensors
import transformers
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, BertTokenizer

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "data" / "models"

# --------------------------------------------------------------------------------------------------
# Shared vocabulary (both tiny BERTs). Layout follows the CXR-BERT vocab: [PAD]=0 [UNK]=1 [CLS]=2
# [SEP]=3 [MASK]=4. No single letters, so a word whose WordPiece split fails anywhere is [UNK] as a
# whole (e.g. "cardiox": "cardio" matches, "##x" does not -> [UNK]). Several label words exist only as
# pieces, so WordPiece splitting and BrgSA's "##" merging are exercised:
#   cardiomegaly -> cardio ##mega ##ly, atelectasis -> atel ##ectasis, bronchiectasis -> bronchi ##ectasis,
#   lymphadenopathy -> lymph ##aden ##opathy, calcification -> calc ##ification, opacity -> opac ##ity,
#   nodules -> nodule ##s, effusions -> effusion ##s, lungs -> lung ##s, lobes -> lobe ##s.
# --------------------------------------------------------------------------------------------------
VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + [".", ",", ";", ":", "!", "?", "(", ")", "-", "/"]
    + """there is are was were a an the no not present absent of in and with without or to on at as
    by for from be it this that which also both each other any some all
    small large mild moderate severe minimal diffuse focal bilateral right left upper lower middle
    lobe segment base apex anterior posterior lateral medial central peripheral
    lung pleural pericardial effusion heart size normal chest ct findings seen noted evidence
    suggestive consistent stable compared prior study within limits trachea mediastinum
    medical material arterial wall coronary artery hiatal hernia emphysema nodule pulmonary fibrotic
    sequela mosaic attenuation pattern peribronchial thickening consolidation interlobular septal
    pneumonia pneumothorax mass fracture rib cyst calcified mediastinal hilar aortic aorta liver
    thyroid bone ground glass airway scarring changes degenerative surgical clips stent tube
    enlarged increased decreased
    cardio atel bronchi lymph calc opac mm cm""".split()
    + ["##mega", "##ly", "##ectasis", "##aden", "##opathy", "##ification", "##ity", "##s", "##es",
       "##ed", "##ing", "##al", "##ic", "##ous"]
)

# CT-RATE labels used in the prompts (spec section 5: exact strings).
BRGSA_LABELS = ["Cardiomegaly", "Atelectasis", "Lung nodule", "Pleural effusion", "Emphysema",
                "Lymphadenopathy", "Bronchiectasis", "Arterial wall calcification"]
BRGSA_EXTRA_TEXTS = [
    # numbering, newline, punctuation, non-ASCII (cafe with e-acute -> "caf" -> [UNK])
    "1. There is a small nodule.\n2. No pleural effusion; caf\u00e9",
    # out-of-vocabulary words: "xylophone" (nothing matches) and "cardiox" (prefix matches, rest fails)
    "There is cardiox xylophone in the Lung",
    # longer than 24 tokens -> truncated to [CLS] + 22 pieces + [SEP]; the cut falls inside
    # "cardio ##mega | ##ly", so the merged word is "cardiomega"
    "Moderate bilateral pleural effusions with atelectasis in both lower lobes and a small nodule "
    "in upper lobe, cardiomegaly and lymphadenopathy.",
    # every sentence has <= 1 word -> process_text drops everything -> "" -> [CLS] [SEP]
    "Emphysema.",
    # a decimal is split by the "[0-9]+\." numbering regex: "a 3" | "5 cm nodule ..." ("a 3" dropped)
    "A 3.5 cm nodule in the left lower lobe. Mild bronchiectasis!",
]
CTCLIP_LABELS = ["Cardiomegaly", "Atelectasis", "Lung nodule", "Pleural effusion", "Emphysema",
                 "Lymphadenopathy"]

SEED_BRGSA = 20250101
SEED_CTCLIP = 20250202


def gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(g, *shape, std=1.0, mean=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean


def fl(t):
    """Tensor -> list of Python floats (float32 values, exact as doubles)."""
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist()]


def make_bert(cfg_kwargs, g):
    """HF BertModel (eager attention) with every parameter randomised from generator g."""
    config = BertConfig(**cfg_kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(0)  # HF init uses the global RNG; everything is overwritten below anyway
    model = BertModel(config, add_pooling_layer=True)
    model.eval()
    assert type(model.encoder.layer[0].attention.self).__name__ == "BertSelfAttention", \
        type(model.encoder.layer[0].attention.self)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(randn(g, *p.shape, std=0.2, mean=1.0))
            elif name.endswith(".bias"):
                p.copy_(randn(g, *p.shape, std=0.1))
            elif "embeddings" in name:
                p.copy_(randn(g, *p.shape, std=1.0))
            else:  # Linear weight (out, in): std 1/sqrt(fan_in)
                p.copy_(randn(g, *p.shape, std=1.0 / math.sqrt(p.shape[1])))
    return config, model


def randomise_linear(lin, g, bias_std=0.1):
    with torch.no_grad():
        lin.weight.copy_(randn(g, *lin.weight.shape, std=1.0 / math.sqrt(lin.weight.shape[1])))
        if lin.bias is not None:
            lin.bias.copy_(randn(g, *lin.bias.shape, std=bias_std))


def randomise_layernorm(weight, bias, g):
    with torch.no_grad():
        weight.copy_(randn(g, *weight.shape, std=0.2, mean=1.0))
        if bias is not None:
            bias.copy_(randn(g, *bias.shape, std=0.1))


def write_bert_config(path, config, extra=None):
    """config.json as HF save_pretrained writes it (only non-default fields), plus torch_dtype."""
    d = {k: v for k, v in config.to_diff_dict().items()
         if not k.startswith("_") and k != "attn_implementation"}
    d["torch_dtype"] = "float32"
    d.update(extra or {})
    back = BertConfig.from_dict(d)
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
              "position_embedding_type", "output_hidden_states"):
        assert getattr(back, k) == getattr(config, k), k
    with open(path, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=True)
        f.write("\n")


def write_vocab(path):
    assert len(set(VOCAB)) == len(VOCAB), "duplicate vocab entry"
    with open(path, "w") as f:
        f.write("\n".join(VOCAB) + "\n")


def versions():
    return {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
            "transformers": transformers.__version__, "safetensors": safetensors.__version__}


# ==================================================================================================
# BrgSA
# ==================================================================================================

class TimmAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        hd = c // self.heads
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * hd ** -0.5) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class TimmMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class TimmBlock(nn.Module):
    """timm 0.9.2 Block, pre-norm, no layer-scale / drop-path / qk-norm (Identity: no keys)."""

    def __init__(self, dim, heads, mlp_dim, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TimmAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = TimmMlp(dim, mlp_dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed3D(nn.Module):
    def __init__(self, in_ch, dim, patch):
        super().__init__()
        self.proj = nn.Conv3d(in_ch, dim, kernel_size=patch, stride=patch)


class ViT3D(nn.Module):
    """stander_3D_vit_relate_pe.ViT3D (inference path of forward(select_layer=-1))."""

    def __init__(self, a):
        super().__init__()
        self.a = a
        dim = a["hidden_size"]
        self.patch_embed = PatchEmbed3D(a["in_channels"], dim, tuple(a["patch_size"]))
        self.base_grid = tuple(s // p for s, p in zip(a["img_size"], a["patch_size"]))
        n0 = self.base_grid[0] * self.base_grid[1] * self.base_grid[2]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n0 + 1, dim))
        self.blocks = nn.ModuleList([TimmBlock(dim, a["num_heads"], a["mlp_dim"], a["block_eps"])
                                     for _ in range(a["depth"])])
        self.norm = nn.LayerNorm(dim, eps=a["final_eps"])

    def interpolate_pos_encoding(self, grid):
        # Official: D0,H0,W0 = img[2]//p[2], img[1]//p[1], img[0]//p[0]; reshape (1,D0,H0,W0,C) ->
        # (1,C,D0,H0,W0) -> trilinear (align_corners=False) to the conv grid -> flatten; cls slot kept.
        # (Base grid is cubic here and in the official config, so the axis labelling is immaterial.)
        d0, h0, w0 = self.base_grid[2], self.base_grid[1], self.base_grid[0]
        c = self.pos_embed.shape[-1]
        cls_pos = self.pos_embed[:, :1]
        pp = self.pos_embed[:, 1:].reshape(1, d0, h0, w0, c).permute(0, 4, 1, 2, 3)
        pp = F.interpolate(pp, size=tuple(grid), mode="trilinear", align_corners=False)
        pp = pp.permute(0, 2, 3, 4, 1).reshape(1, grid[0] * grid[1] * grid[2], c)
        return torch.cat([cls_pos, pp], dim=1)

    def forward(self, x, trace=None):
        x = self.patch_embed.proj(x)  # (B, C, G0, G1, G2), G0 = A0/16 slowest
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        if trace is not None:
            trace["patch_embed"] = x
        pe = self.interpolate_pos_encoding(grid)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pe
        if trace is not None:
            trace["pos_embed_resized"] = pe
            trace["tokens_in"] = x
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if trace is not None:
                trace[f"block{i}_out"] = x
        x = self.norm(x)
        return x[:, 0], x[:, 1:]


class ImageEncoder(nn.Module):
    def __init__(self, a, embed_dim):
        super().__init__()
        self.model = ViT3D(a)
        self.global_embedder = nn.Linear(a["hidden_size"], embed_dim)
        self.local_embedder = nn.Linear(a["hidden_size"], embed_dim)  # unused at inference


class BertEncoderWithProj(nn.Module):
    def __init__(self, bert, text_hidden, embed_dim, last_n_layers, idxtoword):
        super().__init__()
        self.model = bert
        self.emb_global = nn.Linear(text_hidden, embed_dim)
        self.emb_local = nn.Linear(text_hidden, embed_dim)  # unused at inference
        self.last_n_layers = last_n_layers
        self.idxtoword = idxtoword

    def aggregate_tokens(self, embeddings, caption_ids):
        """Official aggregate_tokens: embeddings (B, L, N, D); merge '##' pieces by summation, stop
        after the first [SEP], zero-pad back to N. Returns (B, L, N, D) and the merged words."""
        _, num_layers, num_words, dim = embeddings.shape
        embeddings = embeddings.permute(0, 2, 1, 3)
        out, sents = [], []
        for embs, ids in zip(embeddings, caption_ids):
            agg, bank, words, wbank = [], [], [], []
            for emb, wid in zip(embs, ids):
                word = self.idxtoword[int(wid)]
                if word == "[SEP]":
                    agg.append(torch.stack(bank).sum(dim=0))
                    words.append("".join(wbank))
                    agg.append(emb)
                    words.append(word)
                    break
                if not word.startswith("##"):
                    if len(wbank) == 0:
                        bank.append(emb)
                        wbank.append(word)
                    else:
                        agg.append(torch.stack(bank).sum(dim=0))
                        words.append("".join(wbank))
                        bank, wbank = [emb], [word]
                else:
                    bank.append(emb)
                    wbank.append(word[2:])
            agg = torch.stack(agg)
            pad = num_words - len(agg)
            out.append(torch.cat([agg, torch.zeros(pad, num_layers, dim, dtype=agg.dtype)]))
            sents.append(words + ["[PAD]"] * pad)
        return torch.stack(out).permute(0, 2, 1, 3), sents

    def forward(self, ids, attn_mask, token_type, trace=None):
        outputs = self.model(ids, attn_mask, token_type)  # positional, as the official code
        hidden_states = outputs[2]
        if trace is not None:
            trace["hidden_states"] = torch.stack(hidden_states, dim=1)  # (B, layers+1, N, D)
        emb = torch.stack(hidden_states[-self.last_n_layers:]).permute(1, 0, 2, 3)  # (B, L, N, D)
        emb, sents = self.aggregate_tokens(emb, ids)
        s = emb.mean(dim=2).sum(dim=1)  # mean over the N word slots (padding included), sum over layers
        return s, self.emb_global(s), sents


class SharedDictionaryLearning(nn.Module):
    def __init__(self, bank_size, dim):
        super().__init__()
        self.dictionary = nn.Embedding(bank_size, dim)

    def forward(self, x):
        z = F.softmax(x @ self.dictionary.weight.T, dim=-1)
        return z @ self.dictionary.weight, z


class CLIPProjDict(nn.Module):
    def __init__(self, a, bert, text_hidden, idxtoword):
        super().__init__()
        # attribute order = official module order (text_encoder, img_encoder, dictionarylearning)
        self.text_encoder = BertEncoderWithProj(bert, text_hidden, a["embed_dim"], a["text_pool_layers"],
                                                idxtoword)
        self.img_encoder = ImageEncoder(a["vision"], a["embed_dim"])
        self.dictionarylearning = SharedDictionaryLearning(a["bank_size"], a["embed_dim"])


def brgsa_process_text(t):
    """CLIPProjDict.process_text cleaning (before the tokenizer)."""
    t = t.replace("\n", " ")
    captions = re.compile(r"[0-9]+\.").split(t)
    captions = [sent for point in captions for sent in point.split(".")]
    all_sents = []
    for c in captions:
        c = c.replace("\ufffd\ufffd", " ")
        # nltk RegexpTokenizer(r"\w+").tokenize == re.findall (flags UNICODE|MULTILINE|DOTALL)
        tokens = re.findall(r"\w+", c.lower(), flags=re.UNICODE | re.MULTILINE | re.DOTALL)
        if len(tokens) <= 1:
            continue
        included = []
        for w in tokens:
            w = w.encode("ascii", "ignore").decode("ascii")
            if len(w) > 0:
                included.append(w)
        all_sents.append(" ".join(included))
    return " ".join(all_sents)


def build_brgsa(out_dir):
    g = gen(SEED_BRGSA)
    arch = {
        "vision": {"hidden_size": 32, "depth": 2, "num_heads": 4, "mlp_dim": 64, "patch_size": [16, 16, 8],
                   "img_size": [32, 32, 16], "in_channels": 1, "qkv_bias": True, "block_eps": 1e-6,
                   "final_eps": 1e-5},
        "embed_dim": 16, "bank_size": 8, "text_max_length": 24, "text_pool_layers": 4,
    }
    bert_kwargs = dict(vocab_size=len(VOCAB), hidden_size=24, num_hidden_layers=5, num_attention_heads=4,
                       intermediate_size=48, hidden_act="gelu", hidden_dropout_prob=0.1,
                       attention_probs_dropout_prob=0.1, max_position_embeddings=128, type_vocab_size=2,
                       initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
                       position_embedding_type="absolute", use_cache=True, classifier_dropout=None,
                       output_hidden_states=True, architectures=["BertModel"])
    config, bert = make_bert(bert_kwargs, g)

    write_vocab(out_dir / "vocab.txt")
    tok = BertTokenizer(str(out_dir / "vocab.txt"), do_lower_case=True)
    idxtoword = {v: k for k, v in tok.get_vocab().items()}

    model = CLIPProjDict(arch, bert, 24, idxtoword).eval()
    v = model.img_encoder.model
    with torch.no_grad():
        w = v.patch_embed.proj.weight
        w.copy_(randn(g, *w.shape, std=1.0 / math.sqrt(w[0].numel())))
        v.patch_embed.proj.bias.copy_(randn(g, *v.patch_embed.proj.bias.shape, std=0.1))
        v.cls_token.copy_(randn(g, *v.cls_token.shape))
        v.pos_embed.copy_(randn(g, *v.pos_embed.shape, std=0.5))
        for blk in v.blocks:
            randomise_layernorm(blk.norm1.weight, blk.norm1.bias, g)
            randomise_linear(blk.attn.qkv, g)
            randomise_linear(blk.attn.proj, g)
            randomise_layernorm(blk.norm2.weight, blk.norm2.bias, g)
            randomise_linear(blk.mlp.fc1, g)
            randomise_linear(blk.mlp.fc2, g)
        randomise_layernorm(v.norm.weight, v.norm.bias, g)
        for lin in (model.img_encoder.global_embedder, model.img_encoder.local_embedder,
                    model.text_encoder.emb_global, model.text_encoder.emb_local):
            randomise_linear(lin, g)
        # CMKB: orthonormal rows (official init is nn.init.orthogonal_), gain 2 so softmax is not flat
        a = randn(g, arch["embed_dim"], arch["bank_size"])
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        model.dictionarylearning.dictionary.weight.copy_(2.0 * q.T)

    x = randn(g, 1, 1, 64, 64, 32)

    texts = [f"There is {lab}" for lab in BRGSA_LABELS] + BRGSA_EXTRA_TEXTS
    cleaned = [brgsa_process_text(t) for t in texts]
    enc = tok(cleaned, return_tensors="pt", truncation=True, padding="max_length",
              max_length=arch["text_max_length"])
    assert enc["input_ids"].shape == (len(texts), arch["text_max_length"])

    def run(m, x, dtype):
        m = m.to(dtype)
        trace_img, trace_txt = {}, {}
        with torch.no_grad():
            cls, patches = m.img_encoder.model(x.to(dtype), trace=trace_img)
            v_emb = m.img_encoder.global_embedder(cls)
            patch_proj = m.img_encoder.global_embedder(patches)
            v_hat, z_v = m.dictionarylearning(v_emb)
            s, t, sents = m.text_encoder(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"],
                                         trace=trace_txt)
            t_hat, z_t = m.dictionarylearning(t)
            vn, vhn, tn = (F.normalize(a, dim=-1) for a in (v_emb, v_hat, t))
            cos_vt = (tn @ vn[0])
            cos_vht = (tn @ vhn[0])
            score = (cos_vt + cos_vht) / 2
        return dict(cls=cls, patches=patches, v=v_emb, patch_proj=patch_proj, v_hat=v_hat, z_v=z_v, s=s,
                    t=t, t_hat=t_hat, z_t=z_t, cos_vt=cos_vt, cos_vht=cos_vht, score=score, sents=sents,
                    trace_img=trace_img, trace_txt=trace_txt)

    r32 = run(model, x, torch.float32)
    r64 = run(copy.deepcopy(model), x, torch.float64)
    f64_diff = {k: float((r32[k].double() - r64[k]).abs().max())
                for k in ("cls", "v", "v_hat", "z_v", "s", "t", "t_hat", "cos_vt", "cos_vht", "score")}

    # ---- files ---------------------------------------------------------------------------------
    write_bert_config(out_dir / "config.json", config)
    write_json(out_dir / "arch.json", arch)
    sd = collections.OrderedDict((k, t.detach().to(torch.float32).contiguous())
                                 for k, t in model.state_dict().items())
    # transformers 4.46: embeddings.position_ids / token_type_ids are non-persistent -> absent
    assert not any(k.endswith("position_ids") for k in sd)
    save_file(dict(sd), str(out_dir / "model.safetensors"))

    hyper = {
        "experiment_name": "brgsa_tiny", "phase": "clip3d_proj_dict",
        "model": {
            "norm": False,
            "vision": {"base": "vitb_3D", "model_name": "make_3d_model", "pretrained": False,
                       "freeze_cnn": False, **arch["vision"]},
            "text": {"bert_type": "./Pretrain_model/tiny_bert", "last_n_layers": arch["text_pool_layers"],
                     "aggregate_method": "sum", "norm": False, "embedding_dim": arch["embed_dim"],
                     "freeze_bert": False, "agg_tokens": True},
            "dict": {"input_dim": arch["embed_dim"], "dict_size": arch["bank_size"],
                     "pretrained_features": None, "init_type": ""},
            "gloria": {"local_loss_weight": 1.0, "global_loss_weight": 1.0, "global_recon_loss_weight": 1.0,
                       "mse_loss_weight": 0.5, "temp1": 4.0, "temp2": 5.0, "temp3": 10.0},
        },
        "data": {"dataset": "pretrain_chestct_ct_rate_unique_m3d",
                 "text": {"word_num": arch["text_max_length"], "merge_num": 5}},
        "train": {"batch_size": 64, "max_epochs": 39,
                  "optimizer": {"name": "Adam", "learning_rate": 5e-5, "weight_decay": 1e-6,
                                "betas": [0.5, 0.999]}},
    }
    ckpt_sd = collections.OrderedDict(("gloria." + k, t) for k, t in sd.items())
    go = gen(SEED_BRGSA + 1)
    opt_state = {i: {"step": 120, "exp_avg": randn(go, *t.shape, std=1e-3),
                     "exp_avg_sq": randn(go, *t.shape, std=1e-6).abs()}
                 for i, t in enumerate(sd.values())}
    ckpt = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "1.1.4",
        "state_dict": ckpt_sd,
        "optimizer_states": [{"state": opt_state, "param_groups": [
            {"lr": 5e-5, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 1e-6, "amsgrad": False,
             "params": list(range(len(sd)))}]}],
        "lr_schedulers": [{"mode": "min", "factor": 0.5, "patience": 5, "verbose": False,
                           "threshold": 1e-4, "threshold_mode": "rel", "cooldown": 0, "min_lrs": [0],
                           "eps": 1e-8, "best": 0.8125, "num_bad_epochs": 1, "cooldown_counter": 0,
                           "last_epoch": 3, "_last_lr": [5e-5]}],
        "native_amp_scaling_state": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                     "growth_interval": 2000, "_growth_tracker": 120},
        "hparams_name": "cfg",
        "hyper_parameters": hyper,
    }
    torch.save(ckpt, str(out_dir / "best.ckpt"))

    np.save(out_dir / "input.npy", x.numpy())

    tr = r32["trace_img"]
    save_file({
        "patch_tokens": r32["patches"].contiguous(),
        "patch_proj": r32["patch_proj"].contiguous(),
        "pos_embed_resized": tr["pos_embed_resized"].contiguous(),
        "patch_embed": tr["patch_embed"].contiguous(),
        "tokens_in": tr["tokens_in"].contiguous(),
        **{f"block{i}_out": tr[f"block{i}_out"].contiguous() for i in range(arch["vision"]["depth"])},
        "text_hidden_states": r32["trace_txt"]["hidden_states"].contiguous(),
    }, str(out_dir / "expected.safetensors"))

    prompts = []
    for i, text in enumerate(texts):
        ids = enc["input_ids"][i].tolist()
        prompts.append({
            "text": text, "cleaned": cleaned[i],
            "tokens": tok.convert_ids_to_tokens(ids),
            "input_ids": ids, "token_type_ids": enc["token_type_ids"][i].tolist(),
            "attention_mask": enc["attention_mask"][i].tolist(),
            "words": [w for w in r32["sents"][i] if w != "[PAD]"],
            "s": fl(r32["s"][i]), "t": fl(r32["t"][i]), "t_hat": fl(r32["t_hat"][i]), "z": fl(r32["z_t"][i]),
            "cos_v_t": float(r32["cos_vt"][i]), "cos_vhat_t": float(r32["cos_vht"][i]),
            "score": float(r32["score"][i]),
        })
    expected = {
        "_meta": {
            "generator": "tests/reference/model_reference.py", "versions": versions(),
            "seed": SEED_BRGSA, "dtype": "float32 (CPU, 1 thread, eager attention)",
            "input": "input.npy (1,1,64,64,32) float32 N(0,1); conv grid 4x4x4, pos_embed resized 2^3 -> 4^3",
            "max_abs_diff_float32_vs_float64": f64_diff,
            "notes": "v = global_embedder(cls); v_hat, z = CMKI(v); t = emb_global(s); "
                     "score = (cos(v,t) + cos(v_hat,t))/2. 'tokens' and 'words' (after ## merging, up to "
                     "the first [SEP]) are informative.",
        },
        "image": {"cls": fl(r32["cls"][0]), "v": fl(r32["v"][0]), "v_hat": fl(r32["v_hat"][0]),
                  "z": fl(r32["z_v"][0])},
        "prompts": prompts,
    }
    write_json(out_dir / "expected.json", expected)
    return expected


# ==================================================================================================
# CT-CLIP
# ==================================================================================================

class BiaslessLayerNorm(nn.Module):
    """attention.py LayerNorm: gamma parameter + beta *buffer* (zeros in real checkpoints; random here)."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)  # eps 1e-5


class PEG(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dsconv = nn.Conv3d(dim, dim, 3, groups=dim)

    def forward(self, x, video_shape):
        orig_shape = x.shape
        x = x.reshape(*video_shape, -1)  # RAW reshape of the buffer (the temporal-stage quirk)
        x = x.permute(0, 4, 1, 2, 3)  # b d t h w
        x = F.pad(x, (1, 1, 1, 1, 2, 0), value=0.0)  # w (1,1), h (1,1), t (2,0): causal
        x = self.dsconv(x)
        x = x.permute(0, 2, 3, 4, 1)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        return x.reshape(orig_shape)


class CTAttention(nn.Module):
    def __init__(self, dim, dim_head, heads, scale=8):
        super().__init__()
        self.heads = heads
        self.scale = scale
        inner = dim_head * heads
        self.norm = BiaslessLayerNorm(dim)
        self.context_norm = BiaslessLayerNorm(dim)  # unused (no cross attention context)
        self.null_kv = nn.Parameter(torch.zeros(heads, 0, dim_head))  # num_null_kv = 0: empty
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.q_scale = nn.Parameter(torch.ones(dim_head))
        self.k_scale = nn.Parameter(torch.ones(dim_head))
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x, attn_bias=None):
        kv_input = x  # captured BEFORE the norm: k, v see the un-normalised input
        x = self.norm(x)
        q = self.to_q(x)
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        b, n, _ = q.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        q = q * self.q_scale
        k = k * self.k_scale
        sim = (q @ k.transpose(-2, -1)) * self.scale
        if attn_bias is not None:
            sim = sim + attn_bias
        attn = sim.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class GEGLU(nn.Module):
    def forward(self, x):
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def feed_forward(dim, mult=4):
    inner = int(mult * (2 / 3) * dim)  # official: int(4 * 2/3 * dim): 512 -> 1365, 32 -> 85
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, inner * 2, bias=False), GEGLU(), nn.Dropout(0.0),
                         nn.Linear(inner, dim, bias=False))


class CTTransformer(nn.Module):
    def __init__(self, dim, depth, dim_head, heads):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([PEG(dim), CTAttention(dim, dim_head, heads), None, feed_forward(dim)])
            for _ in range(depth)])
        self.norm_out = BiaslessLayerNorm(dim)

    def forward(self, x, video_shape, attn_bias=None):
        for peg, attn, _, ff in self.layers:
            x = peg(x, video_shape) + x
            x = attn(x, attn_bias=attn_bias) + x
            x = ff(x) + x
        return self.norm_out(x)


class ContinuousPositionBias(nn.Module):
    def __init__(self, dim, heads, layers=2):
        super().__init__()
        self.net = nn.ModuleList([nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1))])
        for _ in range(layers - 1):
            self.net.append(nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.1)))
        self.net.append(nn.Linear(dim, heads))

    def forward(self, h, w, dtype):
        grid = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"))
        grid = grid.reshape(2, -1).T  # (h*w, 2), h slowest
        rel = grid[:, None, :] - grid[None, :, :]
        rel = torch.sign(rel) * torch.log(rel.abs() + 1)  # log distance (float32)
        rel = rel.to(dtype)
        for layer in self.net:
            rel = layer(rel)
        return rel.permute(2, 0, 1)  # (heads, hw, hw)


class VQCodebook(nn.Module):
    def __init__(self, size, dim):
        super().__init__()
        self.register_buffer("initted", torch.tensor([1.0]))
        self.register_buffer("cluster_size", torch.zeros(1, size))
        self.register_buffer("embed", torch.zeros(1, size, dim))


class VectorQuantize(nn.Module):
    def __init__(self, dim, size):
        super().__init__()
        self._codebook = VQCodebook(size, dim)

    def forward(self, x):
        """vector-quantize-pytorch 1.1.2 CosineSimCodebook, eval: argmax of cosine, output raw embed."""
        embed = self._codebook.embed[0]
        sim = F.normalize(x, dim=-1) @ F.normalize(embed, dim=-1).T
        idx = sim.argmax(dim=-1)
        return embed[idx], idx, sim


class CTViT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        dim, p, pt, c = a["dim"], a["patch_size"], a["temporal_patch_size"], a["channels"]
        self.spatial_rel_pos_bias = ContinuousPositionBias(dim, a["heads"])
        self.to_patch_emb_first_frame = nn.Sequential(nn.Identity(), nn.LayerNorm(c * p * p),
                                                      nn.Linear(c * p * p, dim), nn.LayerNorm(dim))
        self.to_patch_emb = nn.Sequential(nn.Identity(), nn.LayerNorm(c * pt * p * p),
                                          nn.Linear(c * pt * p * p, dim), nn.LayerNorm(dim))
        self.enc_spatial_transformer = CTTransformer(dim, a["spatial_depth"], a["dim_head"], a["heads"])
        self.enc_temporal_transformer = CTTransformer(dim, a["temporal_depth"], a["dim_head"], a["heads"])
        self.vq = VectorQuantize(dim, a["codebook_size"])
        self.to_pixels_first_frame = nn.Sequential(nn.Linear(dim, c * p * p), nn.Identity())
        self.to_pixels = nn.Sequential(nn.Linear(dim, c * pt * p * p), nn.Identity())

    def patchify(self, video):
        # 'b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)'
        b, c, f, hh, ww = video.shape
        p, pt = self.a["patch_size"], self.a["temporal_patch_size"]
        x = video.reshape(b, c, f // pt, pt, hh // p, p, ww // p, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(b, f // pt, hh // p, ww // p, c * pt * p * p)

    def forward(self, video, trace):
        x = self.patchify(video)
        for i in (1, 2, 3):
            x = self.to_patch_emb[i](x)
        trace["patch_emb"] = x
        b, t, h, w, d = x.shape
        video_shape = (b, t, h, w)
        bias = self.spatial_rel_pos_bias(h, w, x.dtype)
        trace["rel_pos_bias"] = bias
        x = x.reshape(b * t, h * w, d)
        x = self.enc_spatial_transformer(x, video_shape, attn_bias=bias)
        x = x.reshape(b, t, h, w, d)
        trace["spatial_out"] = x
        x = x.permute(0, 2, 3, 1, 4).reshape(b * h * w, t, d)  # '(b h w) t d' (a contiguous copy)
        x = self.enc_temporal_transformer(x, video_shape)
        x = x.reshape(b, h, w, t, d).permute(0, 3, 1, 2, 4).contiguous()  # back to b t h w d
        trace["temporal_out"] = x
        q, idx, sim = self.vq(x.reshape(b, t * h * w, d))
        trace["vq_indices"] = idx
        trace["vq_sim"] = sim
        q = q.reshape(b, t, h, w, d)
        trace["quantized"] = q
        return q


class CTCLIP(nn.Module):
    def __init__(self, a, bert):
        super().__init__()
        self.text_transformer = bert
        self.visual_transformer = CTViT(a)
        self.to_text_latent = nn.Linear(a["text_hidden"], a["latent_dim"], bias=False)
        self.to_visual_latent = nn.Linear(a["dim_image"], a["latent_dim"], bias=False)
        self.temperature = nn.Parameter(torch.tensor(1.0))
        self.to_text_latent_extra = nn.Linear(a["text_hidden"], a["latent_dim"], bias=False)
        self.to_visual_latent_extra = nn.Linear(a["dim_image"], a["latent_dim"], bias=False)


def build_ctclip(out_dir, vocab_src):
    arch = {"dim": 32, "patch_size": 4, "temporal_patch_size": 2, "spatial_depth": 2, "temporal_depth": 2,
            "heads": 2, "dim_head": 8, "channels": 1, "image_size": [16, 16], "frames": 8,
            "codebook_size": 16, "ff_inner_dim": int(4 * (2 / 3) * 32), "attn_scale": 8,
            "dim_image": 4 * 4 * 32, "text_hidden": 24, "latent_dim": 16, "text_max_length": 64,
            "temperature": 0.7}
    g = gen(SEED_CTCLIP)
    bert_kwargs = dict(vocab_size=len(VOCAB), hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, hidden_act="gelu", hidden_dropout_prob=0.1,
                       attention_probs_dropout_prob=0.1, max_position_embeddings=128, type_vocab_size=2,
                       initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
                       position_embedding_type="absolute", use_cache=True, classifier_dropout=None,
                       architectures=["BertModel"])
    config, bert = make_bert(bert_kwargs, g)
    shutil.copyfile(vocab_src, out_dir / "vocab.txt")
    tok = BertTokenizer(str(out_dir / "vocab.txt"), do_lower_case=True)

    model = CTCLIP(arch, bert).eval()
    vt = model.visual_transformer
    with torch.no_grad():
        for lin in (vt.spatial_rel_pos_bias.net[0][0], vt.spatial_rel_pos_bias.net[1][0],
                    vt.spatial_rel_pos_bias.net[2]):
            randomise_linear(lin, g)
        for seq in (vt.to_patch_emb_first_frame, vt.to_patch_emb):
            randomise_layernorm(seq[1].weight, seq[1].bias, g)
            randomise_linear(seq[2], g)
            randomise_layernorm(seq[3].weight, seq[3].bias, g)
        for tr in (vt.enc_spatial_transformer, vt.enc_temporal_transformer):
            for peg, attn, _, ff in tr.layers:
                peg.dsconv.weight.copy_(randn(g, *peg.dsconv.weight.shape, std=1.0 / math.sqrt(27)))
                peg.dsconv.bias.copy_(randn(g, *peg.dsconv.bias.shape, std=0.1))
                attn.q_scale.copy_(randn(g, *attn.q_scale.shape, std=0.2, mean=1.0))
                attn.k_scale.copy_(randn(g, *attn.k_scale.shape, std=0.2, mean=1.0))
                randomise_layernorm(attn.norm.gamma, attn.norm.beta, g)
                randomise_layernorm(attn.context_norm.gamma, attn.context_norm.beta, g)
                randomise_linear(attn.to_q, g)
                randomise_linear(attn.to_kv, g)
                randomise_linear(attn.to_out, g)
                randomise_layernorm(ff[0].weight, ff[0].bias, g)
                randomise_linear(ff[1], g)
                randomise_linear(ff[4], g)
            randomise_layernorm(tr.norm_out.gamma, tr.norm_out.beta, g)
        randomise_linear(vt.to_pixels_first_frame[0], g)
        randomise_linear(vt.to_pixels[0], g)
        vt.vq._codebook.cluster_size.copy_(randn(g, 1, arch["codebook_size"]).abs() * 3)
        for lin in (model.to_text_latent, model.to_visual_latent, model.to_text_latent_extra,
                    model.to_visual_latent_extra):
            randomise_linear(lin, g)
        model.temperature.fill_(arch["temperature"])

    x = randn(g, 1, 1, arch["frames"], *arch["image_size"])

    # Codebook: random vectors with norms in [0.5, 2] (so "output = raw stored vector" and "argmax of
    # the cosine, not of the dot product" are both observable). Redrawn (deterministically) until every
    # token's best cosine beats the runner-up by >= 0.005, so float32 noise in a port cannot flip an index.
    gc = gen(SEED_CTCLIP + 1)
    with torch.no_grad():
        trace = {}
        vt(x, trace)  # codebook-independent up to temporal_out
        tokens = trace["temporal_out"].reshape(-1, arch["dim"])
        for attempt in range(1000):
            e = randn(gc, arch["codebook_size"], arch["dim"])
            e = F.normalize(e, dim=-1) * (0.5 + 1.5 * torch.rand(arch["codebook_size"], 1, generator=gc))
            sim = F.normalize(tokens, dim=-1) @ F.normalize(e, dim=-1).T
            top2 = sim.topk(2, dim=-1).values
            margin = float((top2[:, 0] - top2[:, 1]).min())
            dot_idx = (tokens @ e.T).argmax(-1)
            if margin >= 0.005 and bool((dot_idx != sim.argmax(-1)).any()) and \
                    len(set(sim.argmax(-1).tolist())) >= 6:
                break
        else:
            raise RuntimeError("no codebook with a safe margin")
        print(f"CT-CLIP codebook: attempt {attempt}, min cosine margin {margin:.4f}")
        vt.vq._codebook.embed.copy_(e[None])

    def text_forward(m, ids, mask):
        out = m.text_transformer(ids, attention_mask=mask)  # no token_type_ids (zeros), as the official call
        cls = out[0][:, 0, :]
        return cls, F.normalize(m.to_text_latent(cls), dim=-1)

    texts, pairs = [], []
    for lab in CTCLIP_LABELS:
        pairs.append((lab, len(texts)))
        texts += [f"{lab} is present.", f"{lab} is not present."]
    enc = tok(texts, return_tensors="pt", padding="max_length", truncation=True,
              max_length=arch["text_max_length"])

    def run(m, x, dtype):
        m = m.to(dtype)
        trace = {}
        with torch.no_grad():
            q = m.visual_transformer(x.to(dtype), trace)
            tokens_mean = q.mean(dim=1)  # over t
            enc_image = tokens_mean.reshape(q.shape[0], -1)  # (b, h*w*d), d fastest
            img_latent = F.normalize(m.to_visual_latent(enc_image), dim=-1)
            cls, txt_latent = text_forward(m, enc["input_ids"], enc["attention_mask"])
            logits = (txt_latent @ img_latent[0]) * m.temperature.exp()
        return dict(trace=trace, tokens_mean=tokens_mean, latent=img_latent, cls=cls, txt_latent=txt_latent,
                    logits=logits)

    r32 = run(model, x, torch.float32)
    r64 = run(copy.deepcopy(model), x, torch.float64)
    assert torch.equal(r32["trace"]["vq_indices"], r64["trace"]["vq_indices"])
    f64_diff = {k: float((r32[k].double() - r64[k]).abs().max())
                for k in ("tokens_mean", "latent", "cls", "txt_latent", "logits")}
    f64_diff["temporal_out"] = float((r32["trace"]["temporal_out"].double()
                                      - r64["trace"]["temporal_out"]).abs().max())

    # padding must not change the CLS output: rerun every text unpadded
    pad_diff = 0.0
    with torch.no_grad():
        for i, text in enumerate(texts):
            e1 = tok([text], return_tensors="pt")
            cls1, _ = text_forward(model, e1["input_ids"], e1["attention_mask"])
            pad_diff = max(pad_diff, float((cls1[0] - r32["cls"][i]).abs().max()))
    assert pad_diff < 1e-5, pad_diff

    sim = r32["trace"]["vq_sim"][0]
    top2 = sim.topk(2, dim=-1).values

    # ---- files ---------------------------------------------------------------------------------
    write_bert_config(out_dir / "config.json", config)
    write_json(out_dir / "arch.json", arch)
    sd = collections.OrderedDict()
    for k, t in model.state_dict().items():
        if k == "text_transformer.embeddings.word_embeddings.weight":
            # checkpoints written with transformers <= 4.30 (CT-CLIP_v2.pt) carry this persistent buffer
            sd["text_transformer.embeddings.position_ids"] = torch.arange(
                bert_kwargs["max_position_embeddings"], dtype=torch.int64)[None]
        sd[k] = t.detach().contiguous()
    assert all(t.dtype in (torch.float32, torch.int64) for t in sd.values())
    assert sd["visual_transformer.enc_spatial_transformer.layers.0.1.null_kv"].shape == (2, 0, 8)
    save_file(dict(sd), str(out_dir / "model.safetensors"))
    torch.save(sd, str(out_dir / "CT-CLIP_v2.pt"))
    np.save(out_dir / "input.npy", x.numpy())

    tr = r32["trace"]
    save_file({
        "patch_emb": tr["patch_emb"].contiguous(),
        "spatial_out": tr["spatial_out"].contiguous(),
        "temporal_out": tr["temporal_out"].contiguous(),
        "quantized": tr["quantized"].contiguous(),
        "vq_indices": tr["vq_indices"].reshape(1, 4, 4, 4).contiguous(),
        "tokens_mean": r32["tokens_mean"].contiguous(),
        "rel_pos_bias": tr["rel_pos_bias"].contiguous(),
        "text_cls": r32["cls"].contiguous(),
    }, str(out_dir / "expected.safetensors"))

    prompts = []
    for i, text in enumerate(texts):
        ids = enc["input_ids"][i].tolist()
        prompts.append({"text": text, "tokens": [t for t in tok.convert_ids_to_tokens(ids) if t != "[PAD]"],
                        "input_ids": ids, "attention_mask": enc["attention_mask"][i].tolist(),
                        "cls": fl(r32["cls"][i]), "latent": fl(r32["txt_latent"][i]),
                        "logit": float(r32["logits"][i])})
    labels = []
    for lab, i in pairs:
        pair = r32["logits"][i:i + 2]
        p = pair.softmax(dim=0)
        labels.append({"label": lab, "texts": [i, i + 1], "logits": fl(pair), "p_present": float(p[0])})
    expected = {
        "_meta": {
            "generator": "tests/reference/model_reference.py", "versions": versions(),
            "seed": SEED_CTCLIP, "dtype": "float32 (CPU, 1 thread, eager attention)",
            "input": "input.npy (1,1,8,16,16) float32 N(0,1) = (b, c, frames, h, w); tokens (1,4,4,4,32)",
            "max_abs_diff_float32_vs_float64": f64_diff,
            "max_abs_diff_cls_padded_vs_unpadded": pad_diff,
            "vq_min_top1_top2_cosine_margin": float((top2[:, 0] - top2[:, 1]).min()),
            "vq_indices_thw": tr["vq_indices"][0].tolist(),
            "notes": "image latent = l2norm(to_visual_latent(flatten_hwd(mean_t(quantized)))); text latent = "
                     "l2norm(to_text_latent(CLS)); logit = cos * exp(temperature); p_present = softmax over "
                     "[present, not present]. Attention LayerNorm beta buffers are random here (zeros in "
                     "real checkpoints): apply them.",
        },
        "temperature": float(model.temperature.detach()),
        "image": {"latent": fl(r32["latent"][0]), "tokens_mean": fl(r32["tokens_mean"][0])},
        "prompts": prompts,
        "labels": labels,
    }
    write_json(out_dir / "expected.json", expected)
    return expected


def generate(out):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = Path(out)
    b_dir, c_dir = out / "brgsa_tiny", out / "ctclip_tiny"
    for d in (b_dir, c_dir):
        d.mkdir(parents=True, exist_ok=True)
    eb = build_brgsa(b_dir)
    ec = build_ctclip(c_dir, b_dir / "vocab.txt")
    return eb, ec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare byte for byte with --out")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp)
            bad = []
            for sub in ("brgsa_tiny", "ctclip_tiny"):
                names = sorted(os.listdir(Path(tmp) / sub))
                have = sorted(os.listdir(Path(args.out) / sub)) if (Path(args.out) / sub).exists() else []
                if names != have:
                    bad.append(f"{sub}: file list {have} != {names}")
                for n in names:
                    a, b = Path(tmp) / sub / n, Path(args.out) / sub / n
                    if not b.exists() or not filecmp.cmp(a, b, shallow=False):
                        bad.append(f"{sub}/{n} differs")
            if bad:
                print("\n".join(bad))
                sys.exit(1)
            print("all files identical")
        return
    eb, ec = generate(args.out)
    print("BrgSA scores:", [round(p["score"], 6) for p in eb["prompts"]])
    print("CT-CLIP P(present):", {l["label"]: round(l["p_present"], 6) for l in ec["labels"]})
    for sub in ("brgsa_tiny", "ctclip_tiny"):
        for n in sorted(os.listdir(Path(args.out) / sub)):
            print(f"{sub}/{n}: {os.path.getsize(Path(args.out) / sub / n)} bytes")


if __name__ == "__main__":
    main()
