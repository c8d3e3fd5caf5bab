#!/usr/bin/env python3
"""Reference values for the BrgSA training objective and optimiser (radbridge::train::loss, ::optim).

Writes tests/data/reference/brgsa_loss.json. Independent PyTorch implementation of spec §4:

  L = 1.0 * (CE_i2t + CE_t2i)(10 * cos(v_i, t_j))          # GLoRIA global_loss, eps 1e-8
    + 1.0 * (CE_i2t + CE_t2i)(10 * cos(v^_i, t^_j))        # same on the bank reconstructions
    + 0.5 * (MSE(v^, v) + MSE(t^, t))                      # F.mse_loss (mean)
  v^ = softmax(v D^T) D,  t^ = softmax(t D^T) D            # shared bank, no temperature

on a toy "model" (v = x_img W_v^T + b_v, t = x_txt W_t^T, bank D), followed by three steps of
torch.nn.utils.clip_grad_norm_(params, 0.25) + torch.optim.Adam(lr, betas=(0.5, 0.999),
weight_decay) — the official settings except a larger lr and weight decay so one step moves
the parameters visibly. Everything in float64. Inputs are stored in the JSON, so the Rust test
needs no random generator.

    target/refvenv/bin/python tests/reference/loss_reference.py
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)

B, DIN, E, K = 4, 5, 6, 8
TEMP, EPS = 10.0, 1e-8
LR, BETAS, WD, CLIP = 1e-2, (0.5, 0.999), 1e-2, 0.25


def global_loss(cnn_code, rnn_code, eps=EPS, temp3=TEMP):
    """GLoRIA's global_loss (both directions)."""
    labels = torch.arange(cnn_code.shape[0])
    a = cnn_code.unsqueeze(0)
    b = rnn_code.unsqueeze(0)
    an = torch.norm(a, 2, dim=2, keepdim=True)
    bn = torch.norm(b, 2, dim=2, keepdim=True)
    scores0 = torch.bmm(a, b.transpose(1, 2))
    norm0 = torch.bmm(an, bn.transpose(1, 2))
    scores0 = (scores0 / norm0.clamp(min=eps) * temp3).squeeze(0)
    scores1 = scores0.transpose(0, 1)
    return F.cross_entropy(scores0, labels), F.cross_entropy(scores1, labels)


def recon(x, d):
    return torch.softmax(x @ d.t(), dim=-1) @ d


def objective(x_img, x_txt, w_v, b_v, w_t, d):
    v = x_img @ w_v.t() + b_v
    t = x_txt @ w_t.t()
    v_hat, t_hat = recon(v, d), recon(t, d)
    i2t, t2i = global_loss(v, t)
    i2t_r, t2i_r = global_loss(v_hat, t_hat)
    mse_v = F.mse_loss(v_hat, v)
    mse_t = F.mse_loss(t_hat, t)
    total = 1.0 * (i2t + t2i) + 1.0 * (i2t_r + t2i_r) + 0.5 * (mse_v + mse_t)
    return total, [i2t, t2i, i2t_r, t2i_r, mse_v, mse_t]


def main():
    x_img = torch.randn(B, DIN) * 2.0
    x_txt = torch.randn(B, DIN) * 2.0
    w_v = torch.randn(E, DIN) * 0.7
    b_v = torch.randn(E) * 0.1
    w_t = torch.randn(E, DIN) * 0.7
    d = torch.empty(K, E)
    torch.nn.init.orthogonal_(d)
    d = d * 3.0  # sharper bank softmax than the orthonormal init gives
    init = {"x_img": x_img, "x_txt": x_txt, "w_v": w_v, "b_v": b_v, "w_t": w_t, "dictionary": d}
    params = {k: torch.nn.Parameter(init[k].clone()) for k in ["w_v", "b_v", "w_t", "dictionary"]}
    order = ["b_v", "dictionary", "w_t", "w_v"]
    opt = torch.optim.Adam([params[k] for k in order], lr=LR, betas=BETAS, weight_decay=WD, eps=1e-8)
    steps = []
    for _ in range(3):
        opt.zero_grad()
        total, parts = objective(x_img, x_txt, params["w_v"], params["b_v"], params["w_t"], params["dictionary"])
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_([params[k] for k in order], CLIP)
        steps.append({"loss": total.item(), "parts": [p.item() for p in parts], "grad_norm": norm.item()})
        opt.step()
    total, parts = objective(x_img, x_txt, params["w_v"], params["b_v"], params["w_t"], params["dictionary"])
    out = {
        "description": "BrgSA objective + clip_grad_norm_(0.25) + torch Adam, float64 (tests/reference/loss_reference.py)",
        "torch": torch.__version__,
        "settings": {"temperature": TEMP, "eps": EPS, "lr": LR, "betas": list(BETAS), "weight_decay": WD, "clip_norm": CLIP,
                     "weights": {"global": 1.0, "recon": 1.0, "mse": 0.5}},
        "inputs": {k: v.tolist() for k, v in init.items()},
        "steps": steps,
        "after": {"loss": total.item(), "parts": [p.item() for p in parts],
                  "params": {k: params[k].detach().tolist() for k in order}},
    }
    path = os.path.join(os.path.dirname(__file__), "..", "data", "reference", "brgsa_loss.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(path), "losses", [round(s["loss"], 6) for s in steps], "->", round(total.item(), 6))


if __name__ == "__main__":
    main()
