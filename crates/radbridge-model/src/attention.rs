//! Memory-bounded scaled-dot-product attention, shared by the 3-D ViT, BERT and CT-CLIP.
//!
//! Numerically this is the textbook `softmax(Q·Kᵀ·scale + bias)·V`, but the score matrix is
//! never materialised for all heads at once: the (batch × head) pairs are processed in groups,
//! and a single head whose (query × key) matrix is too large is processed in blocks of query
//! rows. At the BrgSA image size (sequence 4097, 12 heads) this keeps the transient score
//! memory at a few tens of MB instead of 12 × 4097² × 4 B ≈ 0.8 GB, and the smaller blocks
//! stay in the CPU caches between the score product, the softmax and the value product.
//!
//! Layout: `q` (B, H, Lq, D), `k` (B, H, Lk, D), `v` (B, H, Lk, Dv) → output (B, H, Lq, Dv).
//! The optional `bias` is added to the scaled scores before the softmax; it may have any shape
//! that broadcasts to (B, H, Lq, Lk) under the usual right-aligned rules, e.g. a key-padding
//! mask (B, 1, 1, Lk) holding 0 / a large negative number, or a relative-position bias
//! (H, Lq, Lk). It is sliced as a broadcast view, so it is never expanded in memory either.

use candle_core::{CpuStorage, DType, IndexOp, InplaceOp1, InplaceOp2, Layout, Result, Tensor, D};
use rayon::prelude::*;

/// Default upper bound on the number of score elements held at once on the CPU (per group of
/// heads or block of query rows): 2 Mi elements = 8 MB in f32, i.e. 511 query rows × 4097 keys.
/// Measured on a 2-core Zen 4, blocks of 1–4 Mi elements run the attention of a 4097-token
/// layer about 1.7× faster than whole 16.8 Mi-element heads (they stay in cache).
pub const DEFAULT_MAX_SCORE_ELEMS: usize = 2 << 20;

/// The bound used on accelerators, where fewer, larger kernels are better: 64 Mi elements.
pub const DEFAULT_MAX_SCORE_ELEMS_GPU: usize = 64 << 20;

/// `softmax(q·kᵀ·scale + bias)·v`, processed in bounded blocks (see the module docs).
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    let budget = if q.device().is_cpu() { DEFAULT_MAX_SCORE_ELEMS } else { DEFAULT_MAX_SCORE_ELEMS_GPU };
    scaled_dot_product_attention_chunked(q, k, v, scale, bias, budget)
}

/// As [`scaled_dot_product_attention`], with an explicit bound on the number of score elements
/// computed at once (at least one query row of one head is always processed).
pub fn scaled_dot_product_attention_chunked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: Option<&Tensor>,
    max_score_elems: usize,
) -> Result<Tensor> {
    let (b, h, lq, d) = q.dims4()?;
    let (kb, kh, lk, kd) = k.dims4()?;
    let (vb, vh, vl, _dv) = v.dims4()?;
    if (kb, kh, kd) != (b, h, d) || (vb, vh, vl) != (b, h, lk) {
        candle_core::bail!("attention: incompatible shapes q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims());
    }
    // Fold the scale into q (Lq × D multiplications instead of Lq × Lk).
    let q = (q * scale)?.contiguous()?;
    let k = k.contiguous()?;
    let v = v.contiguous()?;
    let bias = match bias {
        Some(t) => Some(t.to_dtype(q.dtype())?.broadcast_as((b, h, lq, lk))?),
        None => None,
    };

    let per_head = lq.saturating_mul(lk).max(1);
    let (heads_per_group, rows_per_block) = if per_head <= max_score_elems {
        ((max_score_elems / per_head).clamp(1, h), lq)
    } else {
        (1, (max_score_elems / lk.max(1)).clamp(1, lq))
    };

    let mut per_batch = Vec::with_capacity(b);
    for bi in 0..b {
        let mut groups = Vec::new();
        let mut h0 = 0;
        while h0 < h {
            let g = heads_per_group.min(h - h0);
            let kg = k.i((bi, h0..h0 + g))?; // (g, Lk, D)
            let kt = kg.t()?; // (g, D, Lk)
            let vg = v.i((bi, h0..h0 + g))?; // (g, Lk, Dv)
            let mut blocks = Vec::new();
            let mut r0 = 0;
            while r0 < lq {
                let rows = rows_per_block.min(lq - r0);
                let qb = q.i((bi, h0..h0 + g, r0..r0 + rows))?; // (g, rows, D)
                let s = qb.matmul(&kt)?; // (g, rows, Lk)
                let bb = match &bias {
                    Some(bias) => Some(bias.i((bi, h0..h0 + g, r0..r0 + rows))?),
                    None => None,
                };
                let p = softmax_scores(s, bb.as_ref())?;
                blocks.push(p.matmul(&vg)?); // (g, rows, Dv)
                r0 += rows;
            }
            groups.push(if blocks.len() == 1 { blocks.pop().unwrap() } else { Tensor::cat(&blocks, 1)? });
            h0 += g;
        }
        let out = if groups.len() == 1 { groups.pop().unwrap() } else { Tensor::cat(&groups, 0)? };
        per_batch.push(out.unsqueeze(0)?);
    }
    if per_batch.len() == 1 {
        Ok(per_batch.pop().unwrap())
    } else {
        Tensor::cat(&per_batch, 0)
    }
}

/// Softmax over the last dimension. On the CPU in f32 this is our own kernel (row-parallel,
/// vectorised exponential, see [`exp_f32`]), several times faster than the generic one whose
/// scalar `exp` dominated the attention time; elsewhere it is candle's `softmax_last_dim`.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        // Training: candle's fused kernels and ours have no backward pass.
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        // A fresh contiguous buffer of exactly x's elements (`copy` would clone all of a
        // view's underlying storage).
        let y = x.affine(1.0, 0.0)?;
        y.inplace_op1(&CpuSoftmax)?;
        Ok(y)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// softmax(s + bias) over the last dimension, reusing `s`'s storage on the CPU (s is a fresh
/// score block owned by the caller). `bias` has s's shape, possibly as a broadcast view.
fn softmax_scores(s: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if s.track_op() {
        // Training: the in-place kernels are invisible to autograd; use differentiable ops.
        let s = match bias {
            Some(b) => (s + b)?,
            None => s,
        };
        return candle_nn::ops::softmax(&s, D::Minus1);
    }
    if s.device().is_cpu() && s.dtype() == DType::F32 && s.is_contiguous() {
        match bias {
            None => {
                s.inplace_op1(&CpuSoftmax)?;
                return Ok(s);
            }
            Some(b) if b.dtype() == DType::F32 && b.dims() == s.dims() && b.stride().last() == Some(&1) => {
                s.inplace_op2(b, &CpuSoftmax)?;
                return Ok(s);
            }
            Some(_) => {}
        }
    }
    let s = match bias {
        Some(b) => (s + b)?,
        None => s,
    };
    softmax_last_dim(&s)
}

/// In-place row softmax on contiguous f32 CPU storage; as a binary op it first adds a bias
/// whose rows are contiguous (any strides for the leading dimensions, zero included).
struct CpuSoftmax;

fn contiguous_f32<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    let v = match storage {
        CpuStorage::F32(v) => v,
        _ => candle_core::bail!("softmax: f32 only"),
    };
    match layout.contiguous_offsets() {
        Some((o1, o2)) => Ok(&mut v[o1..o2]),
        None => candle_core::bail!("softmax: scores must be contiguous"),
    }
}

impl InplaceOp1 for CpuSoftmax {
    fn name(&self) -> &'static str {
        "radbridge-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let data = contiguous_f32(storage, layout)?;
        let n = layout.dims().last().copied().unwrap_or(1).max(1);
        let row = softmax_row_fn();
        data.par_chunks_mut(n).with_min_len(4).for_each(|r| row(r, None));
        Ok(())
    }
}

impl InplaceOp2 for CpuSoftmax {
    fn name(&self) -> &'static str {
        "radbridge-bias-softmax"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let data = contiguous_f32(s1, l1)?;
        let bias = match s2 {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("softmax bias: f32 only"),
        };
        let dims = l1.dims();
        if l2.dims() != dims || l2.stride().last() != Some(&1) {
            candle_core::bail!("softmax bias: shape {:?} / strides {:?} unsupported", l2.dims(), l2.stride());
        }
        let n = dims.last().copied().unwrap_or(1).max(1);
        // Offset of each bias row: walk the leading dimensions with the bias strides.
        let lead = &dims[..dims.len().saturating_sub(1)];
        let lead_strides = &l2.stride()[..lead.len()];
        let rows: usize = lead.iter().product();
        let mut offsets = Vec::with_capacity(rows);
        let mut idx = vec![0usize; lead.len()];
        for _ in 0..rows {
            offsets.push(l2.start_offset() + idx.iter().zip(lead_strides).map(|(i, s)| i * s).sum::<usize>());
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < lead[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        if let Some(&last) = offsets.iter().max() {
            if last + n > bias.len() {
                candle_core::bail!("softmax bias: layout out of bounds");
            }
        }
        let row = softmax_row_fn();
        data.par_chunks_mut(n).zip(offsets.par_iter()).with_min_len(4).for_each(|(r, &o)| row(r, Some(&bias[o..o + n])));
        Ok(())
    }
}

/// e^x in f32 for the softmax: x = n·ln2 + r with |r| ≤ ln2/2, e^r from the Cephes `expf`
/// minimax polynomial (about 1 ulp), 2^n through the exponent bits. Returns exactly 0 below
/// −87.3 (where f32 results would be denormal), so masked keys get zero weight. Branch-free,
/// so the compiler vectorises the loops that call it.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LO: f32 = -87.336_55;
    // Comparisons written as selects (and no saturating float→int `as` casts) so that the
    // loops calling this vectorise.
    let xc = if x < LO { LO } else { x };
    let xc = if xc > 88.0 { 88.0 } else { xc };
    // Round to nearest with the 1.5·2²³ trick: n is then also in the low mantissa bits of t.
    let t = xc * LOG2E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5.000_000_1e-1)
        * r2
        + r
        + 1.0;
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    if x < LO {
        0.0
    } else {
        p * scale
    }
}

#[inline(always)]
fn softmax_row_generic(x: &mut [f32], bias: Option<&[f32]>) {
    const W: usize = 16;
    if let Some(b) = bias {
        for (x, b) in x.iter_mut().zip(b) {
            *x += *b;
        }
    }
    let split = x.len() - x.len() % W;
    let mut lanes = [f32::NEG_INFINITY; W];
    for c in x[..split].chunks_exact(W) {
        for i in 0..W {
            lanes[i] = if c[i] > lanes[i] { c[i] } else { lanes[i] };
        }
    }
    let mut max = x[split..].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for l in lanes {
        max = max.max(l);
    }
    let mut acc = [0f32; W];
    for c in x[..split].chunks_exact_mut(W) {
        for i in 0..W {
            let e = exp_f32(c[i] - max);
            c[i] = e;
            acc[i] += e;
        }
    }
    let mut sum = 0f32;
    for v in x[split..].iter_mut() {
        let e = exp_f32(*v - max);
        *v = e;
        sum += e;
    }
    sum += acc.iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

type RowFn = fn(&mut [f32], Option<&[f32]>);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_row_avx512(x: &mut [f32], bias: Option<&[f32]>) {
    softmax_row_generic(x, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row_avx2(x: &mut [f32], bias: Option<&[f32]>) {
    softmax_row_generic(x, bias)
}

/// The widest row kernel this CPU supports.
fn softmax_row_fn() -> RowFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return |x, b| unsafe { softmax_row_avx512(x, b) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return |x, b| unsafe { softmax_row_avx2(x, b) };
        }
    }
    softmax_row_generic
}

/// Reference implementation that materialises the full (B, H, Lq, Lk) score tensor; for tests
/// and small inputs only.
pub fn naive_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, bias: Option<&Tensor>) -> Result<Tensor> {
    let s = (q.contiguous()?.matmul(&k.contiguous()?.t()?)? * scale)?;
    let s = match bias {
        Some(b) => s.broadcast_add(&b.to_dtype(s.dtype())?)?,
        None => s,
    };
    let p = candle_nn::ops::softmax(&s, D::Minus1)?;
    p.matmul(&v.contiguous()?)
}

/// A LayerNorm forward that stays differentiable while gradients are tracked: candle's fused
/// kernel (`LayerNorm::forward` on contiguous input) has no backward pass, so when `x` is part
/// of an autograd graph (training) the norm is written with basic ops; otherwise (inference)
/// the fused kernel runs as before.
pub fn layer_norm(norm: &candle_nn::LayerNorm, x: &Tensor) -> Result<Tensor> {
    use candle_core::Module;
    if !(x.track_op() || norm.weight().track_op()) {
        return norm.forward(x);
    }
    let h = x.dim(D::Minus1)?;
    let mean = (x.sum_keepdim(D::Minus1)? / h as f64)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / h as f64)?;
    let y = xc.broadcast_div(&(var + norm.eps())?.sqrt()?)?.broadcast_mul(norm.weight())?;
    match norm.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// (B, L, H·D) → (B, H, L, D), contiguous.
pub fn split_heads(x: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (b, l, hd) = x.dims3()?;
    if hd % num_heads != 0 {
        candle_core::bail!("split_heads: width {hd} is not a multiple of {num_heads} heads");
    }
    x.reshape((b, l, num_heads, hd / num_heads))?.transpose(1, 2)?.contiguous()
}

/// (B, H, L, D) → (B, L, H·D), contiguous.
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, l, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, l, h * d))
}

/// The additive attention bias for a key-padding mask, as Hugging Face builds it: `mask`
/// (B, L) with 1 for real tokens and 0 for padding → (B, 1, 1, L) holding 0 for real keys and
/// the most negative finite value of `dtype` for masked keys.
pub fn key_padding_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    let min = match dtype {
        DType::F16 => f64::from(half::f16::MIN),
        DType::BF16 => f64::from(half::bf16::MIN),
        DType::F64 => f64::MIN,
        _ => f64::from(f32::MIN),
    };
    // (1 − mask) · min, computed in f32 (exact: the factor is 0 or 1), then cast.
    let inv = (1.0 - mask.to_dtype(DType::F32)?)?;
    let bias = if dtype == DType::F64 { (inv.to_dtype(DType::F64)? * min)? } else { (inv * min)?.to_dtype(dtype)? };
    bias.reshape((b, 1, 1, l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn chunked_matches_naive_without_bias() {
        let dev = Device::Cpu;
        let (b, h, l, d) = (2, 3, 37, 8);
        let q = Tensor::randn(0f32, 1., (b, h, l, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (b, h, l, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (b, h, l, 5), &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let reference = naive_attention(&q, &k, &v, scale, None).unwrap();
        // Whole heads grouped, one head at a time, and blocks of query rows (incl. one row).
        for budget in [1 << 20, l * l, l * l - 1, 10 * l, l, 1] {
            let out = scaled_dot_product_attention_chunked(&q, &k, &v, scale, None, budget).unwrap();
            assert_eq!(out.dims(), &[b, h, l, 5]);
            let diff = max_abs_diff(&out, &reference);
            assert!(diff < 1e-5, "budget {budget}: {diff}");
        }
    }

    #[test]
    fn chunked_matches_naive_with_biases() {
        let dev = Device::Cpu;
        let (b, h, lq, lk, d) = (2, 4, 19, 23, 16);
        let q = Tensor::randn(0f32, 1., (b, h, lq, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (b, h, lk, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (b, h, lk, d), &dev).unwrap();
        let scale = 0.25;
        // A per-head relative bias (H, Lq, Lk) and a key-padding mask (B, 1, 1, Lk).
        let rel = Tensor::randn(0f32, 1., (h, lq, lk), &dev).unwrap();
        let mut m = vec![1u32; b * lk];
        m[15..lk].fill(0); // first sequence: last 8 keys are padding
        let mask = Tensor::from_vec(m, (b, lk), &dev).unwrap();
        let pad = key_padding_bias(&mask, DType::F32).unwrap();
        for bias in [&rel, &pad] {
            let reference = naive_attention(&q, &k, &v, scale, Some(bias)).unwrap();
            for budget in [1 << 20, lq * lk, 7 * lk, 1] {
                let out = scaled_dot_product_attention_chunked(&q, &k, &v, scale, Some(bias), budget).unwrap();
                let diff = max_abs_diff(&out, &reference);
                assert!(diff < 1e-5, "budget {budget}: {diff}");
            }
        }
        // Masked keys get exactly zero weight: the result equals attention over the real keys.
        let out = scaled_dot_product_attention(&q, &k, &v, scale, Some(&pad)).unwrap();
        let first = out.i(0).unwrap().unsqueeze(0).unwrap();
        let short =
            naive_attention(&q.i(0..1).unwrap(), &k.i((0..1, .., 0..15)).unwrap(), &v.i((0..1, .., 0..15)).unwrap(), scale, None).unwrap();
        assert!(max_abs_diff(&first, &short) < 1e-5);
    }

    #[test]
    fn fast_exp_and_softmax_are_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let rel = ((exp_f32(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "exp relative error {worst}");
        assert_eq!(exp_f32(-1e30), 0.0);
        assert_eq!(exp_f32(f32::MIN), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        let dev = Device::Cpu;
        for n in [1, 5, 16, 37, 4097] {
            let x = Tensor::randn(0f32, 4., (7, n), &dev).unwrap();
            let a = softmax_last_dim(&x).unwrap();
            let b = candle_nn::ops::softmax_last_dim(&x).unwrap();
            assert!(max_abs_diff(&a, &b) < 1e-6, "n {n}");
        }
    }

    #[test]
    fn head_split_round_trip() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 7, 12), &dev).unwrap();
        let s = split_heads(&x, 3).unwrap();
        assert_eq!(s.dims(), &[2, 3, 7, 4]);
        assert_eq!(max_abs_diff(&merge_heads(&s).unwrap(), &x), 0.0);
    }
}
