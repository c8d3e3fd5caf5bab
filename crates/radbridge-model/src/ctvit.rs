//! CTViT, CT-CLIP's image encoder (`transformer_maskgit/ctvit.py` + `attention.py` of the
//! official CT-CLIP repository), encoder half only, with its vector quantiser
//! (`vector-quantize-pytorch` 1.1.2, cosine-similarity codebook, eval mode).
//!
//! Forward (`CTViT(video, return_encoded_tokens=True)`, spec §7.2):
//! 1. `to_patch_emb`: `b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)`, LayerNorm, Linear,
//!    LayerNorm.
//! 2. spatial transformer over `(b t) (h w) d`, with a continuous position bias (an MLP over
//!    log-distances on the `h × w` grid; it does not depend on the input and is cached per grid);
//! 3. temporal transformer over `(b h w) t d`, without bias;
//! 4. vector quantisation: nearest codebook entry by cosine similarity, output = the raw stored
//!    codebook vector.
//!
//! Each transformer layer is `[PEG, Attention, FeedForward]` with residuals, then `norm_out`.
//! Quirks of the official code kept on purpose:
//! - the PEG (depthwise 3×3×3 conv, causal along its first axis) reshapes the *raw* buffer to
//!   `video_shape = (b, t, h, w)`. In the temporal stage that buffer is ordered `(b h w) t`, so
//!   the convolution's axes there are really (h, w, t) read as (t, h, w);
//! - in `Attention` only the queries see the LayerNorm; keys and values come from the
//!   un-normalised input.
//!
//! Memory: attention runs in batch chunks so that the `(heads, n, n)` score tensors stay under
//! [`ATTN_CHUNK_BYTES`]; the patch embedding runs one temporal slab at a time; the VQ search
//! runs in row chunks. On the CPU with f32, the PEG, the LayerNorms and the bias-add + softmax
//! use plain loops (rayon); elsewhere the same arithmetic is expressed in candle ops (unit tests
//! check the two paths against each other).

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{CpuStorage, DType, Module, Result, Storage, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Upper bound for one attention chunk's score tensor (bytes).
pub const ATTN_CHUNK_BYTES: usize = 64 << 20;
/// Rows per chunk of the codebook search.
const VQ_CHUNK_ROWS: usize = 1024;

/// CTViT hyper-parameters. Field names follow the official constructor; every field defaults
/// to the CT-CLIP v2 value, so a partial JSON (e.g. a test fixture's `arch.json`) is enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CtVitConfig {
    pub dim: usize,
    pub codebook_size: usize,
    /// (height, width) of the input frames; the grid is `image_size / patch_size`.
    pub image_size: [usize; 2],
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_depth: usize,
    pub temporal_depth: usize,
    pub heads: usize,
    pub dim_head: usize,
    pub channels: usize,
    /// FeedForward width factor: inner = int(ff_mult · 2/3 · dim) (GEGLU halves 2·inner).
    pub ff_mult: f64,
    /// Explicit FeedForward inner width (overrides `ff_mult` when set; checkpoints know it).
    #[serde(skip_serializing_if = "Option::is_none", alias = "ff_inner_dim")]
    pub ff_inner: Option<usize>,
    /// Causal PEG padding along the (nominal) time axis: (2, 0) instead of (1, 1).
    pub peg_causal: bool,
    /// Attention logit scale (the official `scale = 8`, applied after q/k l2-normalisation).
    pub attn_scale: f64,
    /// Learned null key/values per self-attention (0 in CTViT; `null_kv` is then (heads, 0, dim_head)).
    pub num_null_kv: usize,
    /// Hidden layers of the continuous position bias MLP (`ContinuousPositionBias(layers=2)`).
    pub rel_pos_layers: usize,
    /// LayerNorm epsilon (PyTorch's default everywhere in CTViT).
    pub layer_norm_eps: f64,
}

impl Default for CtVitConfig {
    fn default() -> Self {
        Self::ct_clip_v2()
    }
}

impl CtVitConfig {
    /// Every dimension in range (`prefix` names the section, e.g. "model.vision").
    pub fn validate(&self, prefix: &str) -> std::result::Result<(), crate::error::SettingError> {
        use crate::error::{check_at_most, check_positive, check_size, SettingError, MAX_DEPTH, MAX_SIDE, MAX_WIDTH};
        let f = |n: &str| format!("{prefix}.{n}");
        check_size(&f("dim"), self.dim, MAX_WIDTH)?;
        check_size(&f("codebook_size"), self.codebook_size, MAX_WIDTH)?;
        check_size(&f("patch_size"), self.patch_size, MAX_SIDE)?;
        check_size(&f("temporal_patch_size"), self.temporal_patch_size, MAX_SIDE)?;
        for s in self.image_size {
            check_size(&f("image_size"), s, MAX_SIDE)?;
            if s < self.patch_size {
                return Err(SettingError::new(
                    f("image_size"),
                    format!("{:?} is smaller than patch_size {}", self.image_size, self.patch_size),
                ));
            }
        }
        check_at_most(&f("spatial_depth"), self.spatial_depth, MAX_DEPTH)?;
        check_at_most(&f("temporal_depth"), self.temporal_depth, MAX_DEPTH)?;
        check_size(&f("heads"), self.heads, MAX_DEPTH)?;
        check_size(&f("dim_head"), self.dim_head, MAX_WIDTH)?;
        check_size(&f("channels"), self.channels, MAX_DEPTH)?;
        if !(self.ff_mult.is_finite() && self.ff_mult >= 0.0) {
            return Err(SettingError::new(f("ff_mult"), format!("{} must be finite and not negative", self.ff_mult)));
        }
        check_size(&f("ff_inner"), self.ff_inner(), MAX_WIDTH)?;
        if !self.attn_scale.is_finite() {
            return Err(SettingError::new(f("attn_scale"), format!("{} must be finite", self.attn_scale)));
        }
        check_at_most(&f("num_null_kv"), self.num_null_kv, MAX_DEPTH)?;
        check_at_most(&f("rel_pos_layers"), self.rel_pos_layers, MAX_DEPTH)?;
        check_positive(&f("layer_norm_eps"), self.layer_norm_eps)
    }

    /// The configuration of `CT-CLIP_v2.pt` (input 240 × 480 × 480).
    pub fn ct_clip_v2() -> Self {
        Self {
            dim: 512,
            codebook_size: 8192,
            image_size: [480, 480],
            patch_size: 20,
            temporal_patch_size: 10,
            spatial_depth: 4,
            temporal_depth: 4,
            heads: 8,
            dim_head: 32,
            channels: 1,
            ff_mult: 4.0,
            ff_inner: None,
            peg_causal: true,
            attn_scale: 8.0,
            num_null_kv: 0,
            rel_pos_layers: 2,
            layer_norm_eps: 1e-5,
        }
    }

    /// Spatial token grid (h, w).
    pub fn grid(&self) -> (usize, usize) {
        (self.image_size[0] / self.patch_size, self.image_size[1] / self.patch_size)
    }

    /// Features of one patch: c · pt · p · p.
    pub fn patch_features(&self) -> usize {
        self.channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// FeedForward inner width: `ff_inner` if set, else Python's `int(mult * (2 / 3) * dim)`.
    pub fn ff_inner(&self) -> usize {
        self.ff_inner.unwrap_or((self.ff_mult * (2.0 / 3.0) * self.dim as f64) as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// small numerical helpers

/// Run `f` on the tensor's f32 buffer when it lives on the CPU and is contiguous.
fn with_cpu_f32<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => {
            let (start, end) = layout.contiguous_offsets()?;
            Some(f(&data[start..end]))
        }
        _ => None,
    }
}

fn cpu_f32_vec(x: &Tensor) -> Option<Vec<f32>> {
    with_cpu_f32(x, |s| s.to_vec())
}

/// LayerNorm over the last dimension, two-pass (mean, then centred variance), as PyTorch.
/// candle-nn's fused CPU kernel uses E[x²] − E[x]² in f32, which loses precision on
/// low-variance rows (flat CT regions in the patch embedding), hence this version.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    if x.dtype() == DType::F32 && x.device().is_cpu() {
        let x = x.contiguous()?;
        if let (Some(w), Some(b)) = (cpu_f32_vec(weight), cpu_f32_vec(bias)) {
            if let Some(out) = with_cpu_f32(&x, |src| {
                let mut out = vec![0f32; src.len()];
                out.par_chunks_mut(d).zip(src.par_chunks(d)).for_each(|(o, s)| {
                    let mean = s.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                    let var = s
                        .iter()
                        .map(|&v| {
                            let c = v as f64 - mean;
                            c * c
                        })
                        .sum::<f64>()
                        / d as f64;
                    let inv = 1.0 / (var + eps).sqrt();
                    for i in 0..d {
                        o[i] = ((s[i] as f64 - mean) * inv) as f32 * w[i] + b[i];
                    }
                });
                out
            }) {
                return Tensor::from_vec(out, x.shape(), x.device());
            }
        }
    }
    layer_norm_generic(x, weight, bias, eps)
}

fn layer_norm_generic(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let mean = xf.mean_keepdim(D::Minus1)?;
    let xc = xf.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xc.broadcast_div(&(var + eps)?.sqrt()?)?.to_dtype(dtype)?;
    y.broadcast_mul(weight)?.broadcast_add(bias)
}

/// `F.normalize(x, dim=-1)`: x / max(‖x‖₂, 1e-12).
pub fn l2norm(x: &Tensor) -> Result<Tensor> {
    let n = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&n)
}

/// LayerNorm with weight and bias (`nn.LayerNorm`: `weight`/`bias`; attention.py's bias-free
/// `LayerNorm`: `gamma` + a zero `beta` buffer, which checkpoints carry).
#[derive(Debug, Clone)]
pub struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    /// `nn.LayerNorm(dim)`: `weight`, `bias`.
    pub fn load_torch(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.get(dim, "weight")?, bias: vb.get(dim, "bias")?, eps })
    }

    /// attention.py `LayerNorm(dim)`: `gamma` parameter and `beta` buffer (zeros if absent).
    pub fn load_gamma_beta(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        let weight = vb.get(dim, "gamma")?;
        let bias = if vb.contains_tensor("beta") { vb.get(dim, "beta")? } else { Tensor::zeros(dim, weight.dtype(), weight.device())? };
        Ok(Self { weight, bias, eps })
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

// ---------------------------------------------------------------------------------------------
// continuous position bias

/// `ContinuousPositionBias(dim, heads, num_dims=2, layers=2, log_dist=True)`: an MLP over the
/// relative positions (sign(r)·log(|r|+1)) of every pair of grid cells → one bias per head.
///
/// The MLP is evaluated once per distinct offset ((2h−1)(2w−1) rows instead of (hw)²) and
/// gathered; the result depends only on the grid and is cached per (h, w).
pub struct ContinuousPositionBias {
    net: Vec<Linear>,
    heads: usize,
    cache: Mutex<HashMap<(usize, usize), Tensor>>,
}

impl ContinuousPositionBias {
    pub fn load(vb: VarBuilder, dim: usize, heads: usize, layers: usize) -> Result<Self> {
        let mut net = Vec::with_capacity(layers + 1);
        net.push(candle_nn::linear(2, dim, vb.pp("net.0.0"))?);
        for i in 1..layers {
            net.push(candle_nn::linear(dim, dim, vb.pp(format!("net.{i}.0")))?);
        }
        net.push(candle_nn::linear(dim, heads, vb.pp(format!("net.{layers}")))?);
        Ok(Self { net, heads, cache: Mutex::new(HashMap::new()) })
    }

    /// The bias for an `h × w` grid, shape (heads, h·w, h·w), cached.
    pub fn forward(&self, h: usize, w: usize) -> Result<Tensor> {
        if let Some(t) = self.cache.lock().unwrap().get(&(h, w)) {
            return Ok(t.clone());
        }
        let t = self.compute(h, w)?;
        self.cache.lock().unwrap().insert((h, w), t.clone());
        Ok(t)
    }

    fn compute(&self, h: usize, w: usize) -> Result<Tensor> {
        let first = &self.net[0];
        let (device, dtype) = (first.weight().device().clone(), first.weight().dtype());
        let log_dist = |r: i64| -> f32 {
            let a = (r.unsigned_abs() as f32 + 1.0).ln();
            (r.signum() as f32) * a
        };
        let (uh, uw) = (2 * h - 1, 2 * w - 1);
        // distinct offsets (dh, dw), dh = i_h − j_h ∈ [−(h−1), h−1], row = (dh+h−1)·uw + (dw+w−1)
        let mut feats = Vec::with_capacity(uh * uw * 2);
        for dh in -(h as i64 - 1)..=(h as i64 - 1) {
            for dw in -(w as i64 - 1)..=(w as i64 - 1) {
                feats.push(log_dist(dh));
                feats.push(log_dist(dw));
            }
        }
        let mut x = Tensor::from_vec(feats, (uh * uw, 2), &device)?.to_dtype(dtype)?;
        let last = self.net.len() - 1;
        for (i, layer) in self.net.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = candle_nn::ops::leaky_relu(&x, 0.1)?;
            }
        }
        // (offsets, heads) → (heads, offsets), gather every (i, j) pair of the row-major grid
        let table = x.t()?.contiguous()?;
        let n = h * w;
        let mut idx = Vec::with_capacity(n * n);
        for i in 0..n {
            let (ih, iw) = (i / w, i % w);
            for j in 0..n {
                let (jh, jw) = (j / w, j % w);
                idx.push(((ih + h - 1 - jh) * uw + (iw + w - 1 - jw)) as u32);
            }
        }
        let idx = Tensor::from_vec(idx, n * n, &device)?;
        table.index_select(&idx, 1)?.reshape((self.heads, n, n))
    }
}

// ---------------------------------------------------------------------------------------------
// PEG

/// Position-generating module: x + DepthwiseConv3d(k=3)(x) over the raw `video_shape` view,
/// zero padding (1,1) on the last two axes and (2,0) (causal) or (1,1) on the first.
pub struct Peg {
    /// (27, dim): tap k = kt·9 + kh·3 + kw.
    taps: Tensor,
    bias: Tensor,
    causal: bool,
}

impl Peg {
    pub fn load(vb: VarBuilder, dim: usize, causal: bool) -> Result<Self> {
        let w = vb.get((dim, 1, 3, 3, 3), "dsconv.weight")?;
        let taps = w.reshape((dim, 27))?.t()?.contiguous()?;
        let bias = vb.get(dim, "dsconv.bias")?;
        Ok(Self { taps, bias, causal })
    }

    /// The convolution only (no residual). `x` holds b·t·h·w·d elements in any shape; it is
    /// viewed as (b, t, h, w, d) in its logical (row-major) order, convolved, and returned in
    /// `x`'s shape, exactly like the official `x.reshape(*shape, -1)` … `.reshape(orig_shape)`.
    pub fn conv(&self, x: &Tensor, video_shape: (usize, usize, usize, usize)) -> Result<Tensor> {
        let (b, t, h, w) = video_shape;
        let d = x.dim(D::Minus1)?;
        let orig = x.shape().clone();
        let x5 = x.contiguous()?.reshape((b, t, h, w, d))?;
        if x.dtype() == DType::F32 && x.device().is_cpu() {
            if let (Some(taps), Some(bias)) = (cpu_f32_vec(&self.taps), cpu_f32_vec(&self.bias)) {
                if let Some(out) = with_cpu_f32(&x5, |src| peg_cpu(src, (b, t, h, w, d), &taps, &bias, self.causal)) {
                    return Tensor::from_vec(out, orig, x.device());
                }
            }
        }
        self.conv_generic(&x5)?.reshape(orig)
    }

    /// Device-independent version: pad, then for every tap add a contiguous shifted slice of the
    /// flattened padded volume (computed over padded coordinates, then cropped).
    fn conv_generic(&self, x5: &Tensor) -> Result<Tensor> {
        let (b, t, h, w, d) = x5.dims5()?;
        let (tl, tr) = if self.causal { (2, 0) } else { (1, 1) };
        let xp = x5.pad_with_zeros(1, tl, tr)?.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        let (tp, hp, wp) = (t + 2, h + 2, w + 2);
        let np = tp * hp * wp;
        let flat = xp.reshape((b, np, d))?;
        let max_off = 2 * hp * wp + 2 * wp + 2;
        let nvalid = np - max_off;
        let mut acc: Option<Tensor> = None;
        for kt in 0..3 {
            for kh in 0..3 {
                for kw in 0..3 {
                    let off = kt * hp * wp + kh * wp + kw;
                    let tap = self.taps.get(kt * 9 + kh * 3 + kw)?;
                    let term = flat.narrow(1, off, nvalid)?.broadcast_mul(&tap)?;
                    acc = Some(match acc {
                        None => term,
                        Some(a) => (a + term)?,
                    });
                }
            }
        }
        let acc = acc.expect("27 taps").pad_with_zeros(1, 0, max_off)?.reshape((b, tp, hp, wp, d))?;
        acc.narrow(1, 0, t)?.narrow(2, 0, h)?.narrow(3, 0, w)?.broadcast_add(&self.bias)?.contiguous()
    }
}

/// CPU kernel of the depthwise 3×3×3 convolution, channel-last (b, t, h, w, d).
fn peg_cpu(x: &[f32], (b, t, h, w, d): (usize, usize, usize, usize, usize), taps: &[f32], bias: &[f32], causal: bool) -> Vec<f32> {
    let t0: isize = if causal { -2 } else { -1 };
    let mut out = vec![0f32; x.len()];
    debug_assert_eq!(x.len(), b * t * h * w * d);
    out.par_chunks_mut(w * d).enumerate().for_each(|(row, o)| {
        let hi = (row % h) as isize;
        let ti = ((row / h) % t) as isize;
        let bi = row / (h * t);
        for wi in 0..w {
            let o = &mut o[wi * d..(wi + 1) * d];
            o.copy_from_slice(bias);
            for kt in 0..3 {
                let ts = ti + t0 + kt as isize;
                if ts < 0 || ts >= t as isize {
                    continue;
                }
                for kh in 0..3 {
                    let hs = hi + kh as isize - 1;
                    if hs < 0 || hs >= h as isize {
                        continue;
                    }
                    for kw in 0..3 {
                        let ws = wi as isize + kw as isize - 1;
                        if ws < 0 || ws >= w as isize {
                            continue;
                        }
                        let base = (((bi * t + ts as usize) * h + hs as usize) * w + ws as usize) * d;
                        let src = &x[base..base + d];
                        let k = (kt * 9 + kh * 3 + kw) * d;
                        let tap = &taps[k..k + d];
                        for ((o, &s), &c) in o.iter_mut().zip(src).zip(tap) {
                            *o += c * s;
                        }
                    }
                }
            }
        }
    });
    out
}

// ---------------------------------------------------------------------------------------------
// attention

/// attention.py `Attention` (self-attention, non-causal): q = to_q(LN(x)), (k, v) = to_kv(x),
/// q and k l2-normalised and scaled by the learned `q_scale` / `k_scale`, logits × `scale`,
/// optional additive bias (heads, n, n), optional learned null key/values.
pub struct Attention {
    norm: Norm,
    to_q: Linear,
    to_kv: Linear,
    to_out: Linear,
    q_scale: Tensor,
    k_scale: Tensor,
    /// (null keys, null values), each (heads, num_null_kv, dim_head).
    null_kv: Option<(Tensor, Tensor)>,
    heads: usize,
    dim_head: usize,
    scale: f64,
}

impl Attention {
    pub fn load(vb: VarBuilder, cfg: &CtVitConfig) -> Result<Self> {
        let (dim, heads, dh) = (cfg.dim, cfg.heads, cfg.dim_head);
        let inner = heads * dh;
        let null_kv = if cfg.num_null_kv > 0 {
            let nkv = vb.get((heads, 2 * cfg.num_null_kv, dh), "null_kv")?;
            // 'h (n r) d', r = 2 innermost: keys at even rows, values at odd rows
            let nkv = nkv.reshape((heads, cfg.num_null_kv, 2, dh))?;
            Some((nkv.narrow(2, 0, 1)?.squeeze(2)?, nkv.narrow(2, 1, 1)?.squeeze(2)?))
        } else {
            None
        };
        Ok(Self {
            norm: Norm::load_gamma_beta(vb.pp("norm"), dim, cfg.layer_norm_eps)?,
            to_q: candle_nn::linear_no_bias(dim, inner, vb.pp("to_q"))?,
            to_kv: candle_nn::linear_no_bias(dim, 2 * inner, vb.pp("to_kv"))?,
            to_out: candle_nn::linear_no_bias(inner, dim, vb.pp("to_out"))?,
            q_scale: vb.get(dh, "q_scale")?,
            k_scale: vb.get(dh, "k_scale")?,
            null_kv,
            heads,
            dim_head: dh,
            scale: cfg.attn_scale,
        })
    }

    /// x: (batch, n, dim); bias: (heads, n, n). Returns (batch, n, dim) (no residual).
    pub fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        let (h, dh) = (self.heads, self.dim_head);
        let inner = h * dh;
        let split = |t: Tensor| -> Result<Tensor> { t.reshape((b, n, h, dh))?.transpose(1, 2)?.contiguous() };
        let q = self.to_q.forward(&self.norm.forward(x)?)?;
        let kv = self.to_kv.forward(x)?;
        let k = split(kv.narrow(D::Minus1, 0, inner)?)?;
        let v = split(kv.narrow(D::Minus1, inner, inner)?)?;
        let (k, v, bias) = match &self.null_kv {
            Some((nk, nv)) => {
                let nn = nk.dim(1)?;
                let nk = nk.unsqueeze(0)?.broadcast_as((b, h, nn, dh))?;
                let nv = nv.unsqueeze(0)?.broadcast_as((b, h, nn, dh))?;
                let bias = match bias {
                    Some(t) => Some(t.pad_with_zeros(D::Minus1, nn, 0)?),
                    None => None,
                };
                (Tensor::cat(&[&nk, &k], 2)?, Tensor::cat(&[&nv, &v], 2)?, bias)
            }
            None => (k, v, bias.cloned()),
        };
        // the logit scale is folded into q (a multiplication by 8 is exact)
        let q = l2norm(&split(q)?)?.broadcast_mul(&(&self.q_scale * self.scale)?)?;
        let k = l2norm(&k)?.broadcast_mul(&self.k_scale)?;
        let kt = k.transpose(2, 3)?;
        let nk = k.dim(2)?;
        let per_item = h * n * nk * x.dtype().size_in_bytes();
        let chunk = (ATTN_CHUNK_BYTES / per_item.max(1)).clamp(1, b);
        let mut outs = Vec::with_capacity(b.div_ceil(chunk));
        let mut start = 0;
        while start < b {
            let len = chunk.min(b - start);
            let qs = q.narrow(0, start, len)?;
            let sim = qs.matmul(&kt.narrow(0, start, len)?)?;
            let attn = softmax_with_bias(&sim, bias.as_ref())?;
            outs.push(attn.matmul(&v.narrow(0, start, len)?)?);
            start += len;
        }
        let out = if outs.len() == 1 { outs.pop().unwrap() } else { Tensor::cat(&outs, 0)? };
        let out = out.transpose(1, 2)?.reshape((b, n, inner))?;
        self.to_out.forward(&out)
    }
}

/// softmax(sim + bias) over the last axis; `bias` (heads, n, nk) broadcasts over sim's leading
/// batch axis. On the CPU (f32) one fused pass with a vectorisable exp; elsewhere candle ops.
pub fn softmax_with_bias(sim: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let nk = sim.dim(D::Minus1)?;
    if sim.dtype() == DType::F32 && sim.device().is_cpu() {
        let bias_vec = match bias {
            Some(b) => match cpu_f32_vec(&b.contiguous()?) {
                Some(v) => Some(v),
                None => return softmax_with_bias_generic(sim, bias),
            },
            None => None,
        };
        if bias_vec.as_ref().is_none_or(|b| sim.elem_count().is_multiple_of(b.len())) {
            let sim_c = sim.contiguous()?;
            if let Some(out) = with_cpu_f32(&sim_c, |src| softmax_rows_cpu(src, nk, bias_vec.as_deref())) {
                return Tensor::from_vec(out, sim.shape(), sim.device());
            }
        }
    }
    softmax_with_bias_generic(sim, bias)
}

fn softmax_with_bias_generic(sim: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => candle_nn::ops::softmax_last_dim(&sim.broadcast_add(b)?),
        None => candle_nn::ops::softmax_last_dim(sim),
    }
}

fn softmax_rows_cpu(src: &[f32], nk: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    let bias_rows = bias.map(|b| b.len() / nk).unwrap_or(1);
    out.par_chunks_mut(nk).zip(src.par_chunks(nk)).enumerate().for_each(|(r, (o, s))| {
        match bias {
            Some(b) => {
                let br = &b[(r % bias_rows) * nk..][..nk];
                for ((o, &s), &b) in o.iter_mut().zip(s).zip(br) {
                    *o = s + b;
                }
            }
            None => o.copy_from_slice(s),
        }
        let m = o.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in o.iter_mut() {
            *v = exp_f32(*v - m);
        }
        // 8 partial sums (vectorisable), then the total
        let mut acc = [0f32; 8];
        let mut chunks = o.chunks_exact(8);
        for c in &mut chunks {
            for i in 0..8 {
                acc[i] += c[i];
            }
        }
        let total = acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let inv = 1.0 / total;
        for v in o.iter_mut() {
            *v *= inv;
        }
    });
    out
}

/// exp(x) for x ≤ 0 (softmax after max subtraction), relative error ≈ 1e-7; branch-free so
/// that loops over it vectorise. x is clamped at −87 (results below ~1.6e-38 are irrelevant
/// next to the row maximum's exp(0) = 1).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting rounds to an integer
    let x = x.max(-87.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series to r^7 on |r| ≤ ln2/2 (truncation < 6e-9 relative)
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    p * scale
}

/// `FeedForward`: LayerNorm → Linear(dim, 2·inner) → GEGLU (x·GELU(gate)) → Linear(inner, dim).
pub struct FeedForward {
    norm: Norm,
    proj_in: Linear,
    proj_out: Linear,
    inner: usize,
}

impl FeedForward {
    pub fn load(vb: VarBuilder, cfg: &CtVitConfig) -> Result<Self> {
        let inner = cfg.ff_inner();
        Ok(Self {
            norm: Norm::load_torch(vb.pp("0"), cfg.dim, cfg.layer_norm_eps)?,
            proj_in: candle_nn::linear_no_bias(cfg.dim, 2 * inner, vb.pp("1"))?,
            proj_out: candle_nn::linear_no_bias(inner, cfg.dim, vb.pp("4"))?,
            inner,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.proj_in.forward(&self.norm.forward(x)?)?;
        let a = y.narrow(D::Minus1, 0, self.inner)?;
        let gate = y.narrow(D::Minus1, self.inner, self.inner)?;
        let y = (gate.gelu_erf()? * a)?;
        self.proj_out.forward(&y)
    }
}

/// attention.py `Transformer(peg=True, peg_causal, has_cross_attn=False)`:
/// layers `{i}.0` PEG, `{i}.1` Attention, `{i}.3` FeedForward (`{i}.2` is the absent cross-attn),
/// then `norm_out`.
pub struct Transformer {
    layers: Vec<(Peg, Attention, FeedForward)>,
    norm_out: Norm,
}

impl Transformer {
    pub fn load(vb: VarBuilder, cfg: &CtVitConfig, depth: usize) -> Result<Self> {
        let mut layers = Vec::with_capacity(depth);
        for i in 0..depth {
            let l = vb.pp(format!("layers.{i}"));
            layers.push((
                Peg::load(l.pp("0"), cfg.dim, cfg.peg_causal)?,
                Attention::load(l.pp("1"), cfg)?,
                FeedForward::load(l.pp("3"), cfg)?,
            ));
        }
        Ok(Self { layers, norm_out: Norm::load_gamma_beta(vb.pp("norm_out"), cfg.dim, cfg.layer_norm_eps)? })
    }

    /// x: (batch, n, dim) contiguous; `video_shape` = (b, t, h, w) of the token volume (for PEG).
    pub fn forward(&self, x: &Tensor, video_shape: (usize, usize, usize, usize), attn_bias: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.contiguous()?;
        for (peg, attn, ff) in &self.layers {
            x = (peg.conv(&x, video_shape)? + &x)?;
            x = (attn.forward(&x, attn_bias)? + &x)?;
            x = (ff.forward(&x)? + &x)?;
        }
        self.norm_out.forward(&x)
    }
}

// ---------------------------------------------------------------------------------------------
// vector quantiser

/// `VectorQuantize(dim, codebook_size, use_cosine_sim=True)` in eval mode (v1.1.2): index =
/// argmax over codes of ⟨l2norm(x), l2norm(embed)⟩; output = the stored `embed[index]`.
pub struct VectorQuantize {
    embed: Tensor,
    embed_normed: Tensor,
}

impl VectorQuantize {
    pub fn load(vb: VarBuilder, dim: usize, codebook_size: usize) -> Result<Self> {
        let embed = vb.get((1, codebook_size, dim), "_codebook.embed")?.squeeze(0)?;
        let embed_normed = l2norm(&embed)?;
        Ok(Self { embed, embed_normed })
    }

    /// The raw codebook (codebook_size, dim).
    pub fn codebook(&self) -> &Tensor {
        &self.embed
    }

    /// x: (..., dim) → (quantised (..., dim), indices (...) u32).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let dims = x.dims().to_vec();
        let d = *dims.last().expect("rank ≥ 1");
        let rows = x.elem_count() / d;
        let flat = l2norm(&x.reshape((rows, d))?)?;
        let et = self.embed_normed.t()?;
        let mut idx = Vec::with_capacity(rows.div_ceil(VQ_CHUNK_ROWS));
        let mut start = 0;
        while start < rows {
            let len = VQ_CHUNK_ROWS.min(rows - start);
            let sim = flat.narrow(0, start, len)?.matmul(&et)?;
            idx.push(sim.argmax(D::Minus1)?);
            start += len;
        }
        let idx = Tensor::cat(&idx, 0)?.to_dtype(DType::U32)?;
        let q = self.embed.index_select(&idx, 0)?.reshape(dims.clone())?;
        Ok((q, idx.reshape(&dims[..dims.len() - 1])?))
    }
}

// ---------------------------------------------------------------------------------------------
// CTViT

/// Every stage of one encoder pass (all (b, t, h, w, dim) except `indices` (b, t, h, w)).
pub struct CtVitOutput {
    pub patch_emb: Tensor,
    pub spatial: Tensor,
    pub temporal: Tensor,
    pub quantized: Tensor,
    pub indices: Tensor,
}

/// CTViT encoder + VQ (the decoder, `to_pixels*` and `to_patch_emb_first_frame` are not loaded).
pub struct CtVit {
    cfg: CtVitConfig,
    patch_norm_in: Norm,
    patch_proj: Linear,
    patch_norm_out: Norm,
    spatial_rel_pos_bias: ContinuousPositionBias,
    enc_spatial_transformer: Transformer,
    enc_temporal_transformer: Transformer,
    vq: VectorQuantize,
}

impl CtVit {
    /// `vb` at the CTViT root (`visual_transformer` inside a CT-CLIP checkpoint).
    pub fn load(vb: VarBuilder, cfg: &CtVitConfig) -> Result<Self> {
        let pf = cfg.patch_features();
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            cfg: cfg.clone(),
            patch_norm_in: Norm::load_torch(vb.pp("to_patch_emb.1"), pf, eps)?,
            patch_proj: candle_nn::linear(pf, cfg.dim, vb.pp("to_patch_emb.2"))?,
            patch_norm_out: Norm::load_torch(vb.pp("to_patch_emb.3"), cfg.dim, eps)?,
            spatial_rel_pos_bias: ContinuousPositionBias::load(vb.pp("spatial_rel_pos_bias"), cfg.dim, cfg.heads, cfg.rel_pos_layers)?,
            enc_spatial_transformer: Transformer::load(vb.pp("enc_spatial_transformer"), cfg, cfg.spatial_depth)?,
            enc_temporal_transformer: Transformer::load(vb.pp("enc_temporal_transformer"), cfg, cfg.temporal_depth)?,
            vq: VectorQuantize::load(vb.pp("vq"), cfg.dim, cfg.codebook_size)?,
        })
    }

    pub fn config(&self) -> &CtVitConfig {
        &self.cfg
    }

    pub fn vq(&self) -> &VectorQuantize {
        &self.vq
    }

    /// The spatial attention bias for an h × w grid, (heads, h·w, h·w) (cached).
    pub fn rel_pos_bias(&self, h: usize, w: usize) -> Result<Tensor> {
        self.spatial_rel_pos_bias.forward(h, w)
    }

    /// `to_patch_emb`: video (b, c, frames, H, W) → tokens (b, t, h, w, dim), one temporal slab
    /// of `temporal_patch_size` frames at a time.
    pub fn patch_embed(&self, video: &Tensor) -> Result<Tensor> {
        let (b, c, f, hh, ww) = video.dims5()?;
        let (pt, p) = (self.cfg.temporal_patch_size, self.cfg.patch_size);
        if c != self.cfg.channels || f % pt != 0 || hh % p != 0 || ww % p != 0 {
            candle_core::bail!(
                "CTViT input {:?}: expected {} channel(s), frames divisible by {pt}, height/width divisible by {p}",
                video.dims(),
                self.cfg.channels
            );
        }
        let (t, h, w) = (f / pt, hh / p, ww / p);
        let mut slabs = Vec::with_capacity(t);
        for ti in 0..t {
            let slab = video
                .narrow(2, ti * pt, pt)?
                .reshape(vec![b, c, pt, h, p, w, p])?
                .permute([0, 3, 5, 1, 2, 4, 6])?
                .contiguous()?
                .reshape((b * h * w, c * pt * p * p))?;
            let y = self.patch_norm_in.forward(&slab)?;
            let y = self.patch_norm_out.forward(&self.patch_proj.forward(&y)?)?;
            slabs.push(y.reshape((b, 1, h, w, self.cfg.dim))?);
        }
        Tensor::cat(&slabs, 1)
    }

    /// Spatial stage: (b, t, h, w, d) → (b, t, h, w, d).
    pub fn encode_spatial(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t, h, w, d) = tokens.dims5()?;
        let bias = self.rel_pos_bias(h, w)?;
        let x = tokens.reshape((b * t, h * w, d))?;
        let x = self.enc_spatial_transformer.forward(&x, (b, t, h, w), Some(&bias))?;
        x.reshape((b, t, h, w, d))
    }

    /// Temporal stage: (b, t, h, w, d) → (b, t, h, w, d), attention along t per grid cell.
    pub fn encode_temporal(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t, h, w, d) = tokens.dims5()?;
        let x = tokens.permute((0, 2, 3, 1, 4))?.contiguous()?.reshape((b * h * w, t, d))?;
        let x = self.enc_temporal_transformer.forward(&x, (b, t, h, w), None)?;
        x.reshape((b, h, w, t, d))?.permute((0, 3, 1, 2, 4))?.contiguous()
    }

    /// The whole encoder with every intermediate.
    pub fn forward_with_intermediates(&self, video: &Tensor) -> Result<CtVitOutput> {
        let patch_emb = self.patch_embed(video)?;
        let spatial = self.encode_spatial(&patch_emb)?;
        let temporal = self.encode_temporal(&spatial)?;
        let (quantized, indices) = self.vq.forward(&temporal)?;
        Ok(CtVitOutput { patch_emb, spatial, temporal, quantized, indices })
    }

    /// `CTViT(video, return_encoded_tokens=True)`: the quantised tokens (b, t, h, w, dim).
    pub fn forward(&self, video: &Tensor) -> Result<Tensor> {
        let tokens = self.patch_embed(video)?;
        let tokens = self.encode_spatial(&tokens)?;
        let tokens = self.encode_temporal(&tokens)?;
        Ok(self.vq.forward(&tokens)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        // deterministic pseudo-random values in [−1, 1)
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape.to_vec(), &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn model_is_send_and_sync() {
        fn f<T: Send + Sync>() {}
        f::<CtVit>();
    }

    #[test]
    fn peg_cpu_matches_generic_and_naive() {
        let (b, t, h, w, d) = (2, 3, 4, 5, 6);
        let x = randn(&[b, t, h, w, d], 1);
        let taps = randn(&[27, d], 2);
        let bias = randn(&[d], 3);
        for causal in [true, false] {
            let peg = Peg { taps: taps.clone(), bias: bias.clone(), causal };
            let fast = peg.conv(&x, (b, t, h, w)).unwrap();
            let generic = peg.conv_generic(&x).unwrap();
            assert!(max_diff(&fast, &generic) < 1e-5, "causal={causal}");
            // naive reference at a few points
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let tv = taps.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bv = bias.to_vec1::<f32>().unwrap();
            let fv = fast.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let t0 = if causal { 2 } else { 1 };
            for &(bi, ti, hi, wi, di) in &[(0, 0, 0, 0, 0), (1, 2, 3, 4, 5), (0, 1, 2, 0, 3), (1, 0, 3, 2, 1)] {
                let mut acc = bv[di];
                for kt in 0..3 {
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (ts, hs, ws) = (ti as i64 + kt - t0, hi as i64 + kh - 1, wi as i64 + kw - 1);
                            if ts < 0 || hs < 0 || ws < 0 || ts >= t as i64 || hs >= h as i64 || ws >= w as i64 {
                                continue;
                            }
                            let xi = ((((bi * t + ts as usize) * h + hs as usize) * w + ws as usize) * d) + di;
                            acc += xv[xi] * tv[((kt * 9 + kh * 3 + kw) as usize) * d + di];
                        }
                    }
                }
                let oi = (((bi * t + ti) * h + hi) * w + wi) * d + di;
                assert!((acc - fv[oi]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn fast_exp_and_fused_softmax() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let e = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - e).abs() / e);
            x += 0.00137;
        }
        assert!(worst < 3e-7, "exp relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        let sim = (randn(&[3, 2, 5, 7], 11) * 20.0).unwrap();
        let bias = randn(&[2, 5, 7], 12);
        let fused = softmax_with_bias(&sim, Some(&bias)).unwrap();
        let generic = softmax_with_bias_generic(&sim, Some(&bias)).unwrap();
        assert!(max_diff(&fused, &generic) < 1e-6);
        let fused = softmax_with_bias(&sim, None).unwrap();
        let generic = softmax_with_bias_generic(&sim, None).unwrap();
        assert!(max_diff(&fused, &generic) < 1e-6);
    }

    #[test]
    fn layer_norm_paths_agree() {
        let x = (randn(&[7, 300], 4) * 1e-3).unwrap().broadcast_add(&Tensor::new(-1f32, &Device::Cpu).unwrap()).unwrap();
        let w = randn(&[300], 5);
        let b = randn(&[300], 6);
        let fast = layer_norm(&x, &w, &b, 1e-5).unwrap();
        // both against an f64 reference
        let xv = x.to_vec2::<f32>().unwrap();
        let (wv, bv) = (w.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
        let generic = layer_norm_generic(&x, &w, &b, 1e-5).unwrap();
        assert!(max_diff(&fast, &generic) < 1e-4, "{}", max_diff(&fast, &generic));
        let fv = fast.to_vec2::<f32>().unwrap();
        for (r, row) in xv.iter().enumerate() {
            let m = row.iter().map(|&v| v as f64).sum::<f64>() / 300.0;
            let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / 300.0;
            for i in 0..300 {
                let e = (row[i] as f64 - m) / (var + 1e-5).sqrt() * wv[i] as f64 + bv[i] as f64;
                assert!((e - fv[r][i] as f64).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn tiny_model_runs_and_bias_matches_naive() {
        let cfg = CtVitConfig {
            dim: 16,
            codebook_size: 32,
            image_size: [8, 12],
            patch_size: 4,
            temporal_patch_size: 2,
            spatial_depth: 1,
            temporal_depth: 1,
            heads: 2,
            dim_head: 4,
            ..CtVitConfig::ct_clip_v2()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // the null_kv / beta buffers are optional; everything else is created randomly
        let model = CtVit::load(vb, &cfg).unwrap();
        let video = randn(&[1, 1, 6, 8, 12], 7);
        let out = model.forward_with_intermediates(&video).unwrap();
        assert_eq!(out.quantized.dims(), &[1, 3, 2, 3, 16]);
        assert_eq!(out.indices.dims(), &[1, 3, 2, 3]);
        // bias: naive MLP over every (i, j) pair
        let bias = model.rel_pos_bias(2, 3).unwrap();
        assert_eq!(bias.dims(), &[2, 6, 6]);
        let mut feats = Vec::new();
        for i in 0..6i64 {
            for j in 0..6i64 {
                for r in [i / 3 - j / 3, i % 3 - j % 3] {
                    feats.push((r.signum() as f32) * ((r.abs() as f32) + 1.0).ln());
                }
            }
        }
        let mut x = Tensor::from_vec(feats, (36, 2), &Device::Cpu).unwrap();
        let net = &model.spatial_rel_pos_bias.net;
        for (i, l) in net.iter().enumerate() {
            x = l.forward(&x).unwrap();
            if i + 1 < net.len() {
                x = candle_nn::ops::leaky_relu(&x, 0.1).unwrap();
            }
        }
        let naive = x.t().unwrap().reshape((2, 6, 6)).unwrap();
        assert!(max_diff(&naive, &bias) < 1e-6);
        // chunked attention == one chunk
        let attn = &model.enc_spatial_transformer.layers[0].1;
        let xs = randn(&[5, 6, 16], 8);
        let full = attn.forward(&xs, Some(&bias)).unwrap();
        let mut parts = Vec::new();
        for i in 0..5 {
            parts.push(attn.forward(&xs.narrow(0, i, 1).unwrap(), Some(&bias)).unwrap());
        }
        assert!(max_diff(&full, &Tensor::cat(&parts, 0).unwrap()) < 1e-6);
    }
}
