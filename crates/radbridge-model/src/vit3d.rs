//! BrgSA's 3-D Vision Transformer image encoder (`stander_3D_vit_relate_pe.ViT3D`, a timm-style
//! pre-norm ViT over 3-D patches with a learned absolute position embedding that is resized
//! trilinearly to the token grid of each input).
//!
//! VarBuilder paths (relative to the caller's prefix, `img_encoder` in BrgSA):
//! `model.cls_token` (1,1,H), `model.pos_embed` (1,1+N₀,H),
//! `model.patch_embed.proj.{weight (H,C,p0,p1,p2), bias}`,
//! `model.blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `model.norm`.
//!
//! candle has no `conv3d`: the patch embedding (kernel = stride) is a reshape + matmul. The
//! input is (B, C, A0, A1, A2); the token grid is (A0/p0, A1/p1, A2/p2), flattened row-major
//! (A0 slowest, A2 fastest) like PyTorch's `flatten(2)`. Trailing voxels that do not fill a
//! whole patch are dropped, as a strided convolution does.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::attention;

/// Geometry of the 3-D ViT. Defaults are the official BrgSA `vitb_3D` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Vit3dConfig {
    pub hidden_size: usize,
    pub depth: usize,
    pub num_heads: usize,
    /// Nominal MLP width; like timm's `Block(mlp_ratio = mlp_dim // hidden_size)` the layer
    /// width is `hidden_size * (mlp_dim / hidden_size)` (see [`Vit3dConfig::mlp_hidden`]).
    pub mlp_dim: usize,
    pub patch_size: [usize; 3],
    /// The training image size, which fixes the stored position-embedding grid.
    pub img_size: [usize; 3],
    pub in_channels: usize,
    pub qkv_bias: bool,
    /// LayerNorm eps inside the blocks (timm `partial(nn.LayerNorm, eps=1e-6)`).
    pub block_eps: f64,
    /// Eps of the final `norm` (PyTorch's default 1e-5).
    pub final_eps: f64,
}

impl Default for Vit3dConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            depth: 12,
            num_heads: 12,
            mlp_dim: 3072,
            patch_size: [16, 16, 8],
            img_size: [224, 224, 112],
            in_channels: 1,
            qkv_bias: true,
            block_eps: 1e-6,
            final_eps: 1e-5,
        }
    }
}

impl Vit3dConfig {
    /// Every dimension in range (`prefix` names the section, e.g. "model.vision").
    pub fn validate(&self, prefix: &str) -> std::result::Result<(), crate::error::SettingError> {
        use crate::error::{check_positive, check_size, SettingError, MAX_DEPTH, MAX_SIDE, MAX_WIDTH};
        let f = |n: &str| format!("{prefix}.{n}");
        check_size(&f("hidden_size"), self.hidden_size, MAX_WIDTH)?;
        check_size(&f("depth"), self.depth, MAX_DEPTH)?;
        check_size(&f("num_heads"), self.num_heads, MAX_DEPTH)?;
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(SettingError::new(f("num_heads"), format!("{} does not divide hidden_size {}", self.num_heads, self.hidden_size)));
        }
        check_size(&f("mlp_dim"), self.mlp_dim, MAX_WIDTH)?;
        check_size(&f("in_channels"), self.in_channels, MAX_DEPTH)?;
        for a in 0..3 {
            check_size(&f("patch_size"), self.patch_size[a], MAX_SIDE)?;
            check_size(&f("img_size"), self.img_size[a], MAX_SIDE)?;
            if self.img_size[a] < self.patch_size[a] {
                return Err(SettingError::new(
                    f("img_size"),
                    format!("{:?} is smaller than patch_size {:?}", self.img_size, self.patch_size),
                ));
            }
        }
        check_positive(&f("block_eps"), self.block_eps)?;
        check_positive(&f("final_eps"), self.final_eps)
    }

    /// Width of the MLP hidden layer: `hidden_size * (mlp_dim / hidden_size)` (integer
    /// division), which is how the official code turns `mlp_dim` into timm's `mlp_ratio`.
    pub fn mlp_hidden(&self) -> usize {
        self.hidden_size * (self.mlp_dim / self.hidden_size).max(1)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The grid the stored `pos_embed` is laid out on. The official `_interpolate_pos_encoding`
    /// reshapes `pos_embed[:, 1:]` to `(img[2]/p[2], img[1]/p[1], img[0]/p[0])` (its "D0, H0,
    /// W0") and interpolates that to the convolution's grid `(A0/p0, A1/p1, A2/p2)`; we follow
    /// it. For the official geometry both orders give 14 × 14 × 14.
    pub fn pos_embed_grid(&self) -> [usize; 3] {
        [self.img_size[2] / self.patch_size[2], self.img_size[1] / self.patch_size[1], self.img_size[0] / self.patch_size[0]]
    }

    /// The token grid for an input of spatial size `[A0, A1, A2]`.
    pub fn grid_for(&self, spatial: [usize; 3]) -> [usize; 3] {
        [0, 1, 2].map(|i| spatial[i] / self.patch_size[i])
    }
}

/// One timm `Block`: x += proj(MHSA(LN1(x))); x += fc2(GELU(fc1(LN2(x)))). Public so that the
/// masked-image pre-training decoder (`train::mae`) is built from the same blocks.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    num_heads: usize,
}

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    if bias {
        candle_nn::linear(in_dim, out_dim, vb)
    } else {
        candle_nn::linear_no_bias(in_dim, out_dim, vb)
    }
}

impl Block {
    /// Loads `norm1`, `attn.{qkv,proj}`, `norm2`, `mlp.{fc1,fc2}` from `vb` (the geometry is
    /// `cfg.hidden_size`, `cfg.num_heads`, `cfg.mlp_hidden()`).
    pub fn load(vb: VarBuilder, cfg: &Vit3dConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            norm1: candle_nn::layer_norm(h, cfg.block_eps, vb.pp("norm1"))?,
            qkv: linear(h, 3 * h, cfg.qkv_bias, vb.pp("attn").pp("qkv"))?,
            proj: linear(h, h, true, vb.pp("attn").pp("proj"))?,
            norm2: candle_nn::layer_norm(h, cfg.block_eps, vb.pp("norm2"))?,
            fc1: linear(h, cfg.mlp_hidden(), true, vb.pp("mlp").pp("fc1"))?,
            fc2: linear(cfg.mlp_hidden(), h, true, vb.pp("mlp").pp("fc2"))?,
            num_heads: cfg.num_heads,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_normed(x, &attention::layer_norm(&self.norm1, x)?)
    }

    /// The block with its attention input `normed` = norm1(x) given (x stays the residual).
    fn forward_normed(&self, x: &Tensor, normed: &Tensor) -> Result<Tensor> {
        let (b, l, hidden) = x.dims3()?;
        let nh = self.num_heads;
        let hd = hidden / nh;
        let qkv = self.qkv.forward(normed)?;
        let qkv = qkv.reshape((b, l, 3, nh, hd))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
        let (q, k, v) = (qkv.i(0)?, qkv.i(1)?, qkv.i(2)?);
        let a = attention::scaled_dot_product_attention(&q, &k, &v, 1.0 / (hd as f64).sqrt(), None)?;
        drop(qkv);
        let x = (x + self.proj.forward(&attention::merge_heads(&a)?)?)?;
        let m = gelu_erf(self.fc1.forward(&attention::layer_norm(&self.norm2, &x)?)?)?;
        x + self.fc2.forward(&m)?
    }
}

/// Exact (erf) GELU, x·Φ(x). On the CPU in f32 it runs in place, in parallel and vectorised
/// ([`gelu_erf_f32`], relative error about 1e-6 at worst); candle's `gelu_erf`
/// (single-threaded scalar `erff`) took about 10 % of the image encoder's time.
fn gelu_erf(x: Tensor) -> Result<Tensor> {
    // The in-place kernel is invisible to autograd: while training, use candle's op.
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() && !x.track_op() {
        x.inplace_op1(&CpuGeluErf)?;
        Ok(x)
    } else {
        x.gelu_erf()
    }
}

/// x·Φ(x) = x·(1 − ½·erfc(x/√2)), with erfc from the Chebyshev fit of Numerical Recipes'
/// `erfcc` (fractional error < 1.2e-7) and the vectorisable [`attention::exp_f32`]. Computing
/// the negative side from erfc keeps its relative accuracy in the tail.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn gelu_erf_f32(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * attention::exp_f32(poly - z * z);
    let half = 0.5 * x * erfc;
    if x >= 0.0 {
        x - half
    } else {
        half
    }
}

#[inline(always)]
fn gelu_slice(v: &mut [f32]) {
    for x in v {
        *x = gelu_erf_f32(*x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_slice_avx512(v: &mut [f32]) {
    gelu_slice(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_slice_avx2(v: &mut [f32]) {
    gelu_slice(v)
}

fn gelu_slice_fn() -> fn(&mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return |v| unsafe { gelu_slice_avx512(v) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return |v| unsafe { gelu_slice_avx2(v) };
        }
    }
    gelu_slice
}

struct CpuGeluErf;

impl candle_core::InplaceOp1 for CpuGeluErf {
    fn name(&self) -> &'static str {
        "radbridge-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &mut candle_core::CpuStorage, layout: &candle_core::Layout) -> Result<()> {
        use rayon::prelude::*;
        let v = match storage {
            candle_core::CpuStorage::F32(v) => v,
            _ => candle_core::bail!("gelu: f32 only"),
        };
        let (o1, o2) = match layout.contiguous_offsets() {
            Some(o) => o,
            None => candle_core::bail!("gelu: input must be contiguous"),
        };
        let f = gelu_slice_fn();
        v[o1..o2].par_chunks_mut(16384).for_each(f);
        Ok(())
    }
}

/// The 3-D ViT (`img_encoder.model` in BrgSA).
#[derive(Debug, Clone)]
pub struct Vit3d {
    cls_token: Tensor,
    pos_embed: Tensor,
    /// Patch projection flattened to (H, C·p0·p1·p2).
    patch_weight: Tensor,
    patch_bias: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    cfg: Vit3dConfig,
}

impl Vit3d {
    /// Loads from `vb`, which should point at the module holding `model.*` (e.g.
    /// `vb.pp("img_encoder")`).
    pub fn load(vb: VarBuilder, cfg: &Vit3dConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        if cfg.num_heads == 0 || !h.is_multiple_of(cfg.num_heads) {
            candle_core::bail!("vit3d: hidden_size {h} is not a multiple of num_heads {}", cfg.num_heads);
        }
        let vb = vb.pp("model");
        let [p0, p1, p2] = cfg.patch_size;
        let g = cfg.pos_embed_grid();
        let n0 = g[0] * g[1] * g[2];
        let randn = candle_nn::Init::Randn { mean: 0., stdev: 0.02 };
        let cls_token = vb.get_with_hints((1, 1, h), "cls_token", randn)?;
        let pos_embed = vb.get_with_hints((1, 1 + n0, h), "pos_embed", randn)?;
        let pe = vb.pp("patch_embed").pp("proj");
        let fan_in = cfg.in_channels * p0 * p1 * p2;
        let patch_weight =
            pe.get_with_hints((h, cfg.in_channels, p0, p1, p2), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?.reshape((h, fan_in))?;
        let patch_bias = pe.get_with_hints(h, "bias", candle_nn::Init::Const(0.))?;
        let blocks = (0..cfg.depth).map(|i| Block::load(vb.pp("blocks").pp(i), cfg)).collect::<Result<Vec<_>>>()?;
        let norm = candle_nn::layer_norm(h, cfg.final_eps, vb.pp("norm"))?;
        Ok(Self { cls_token, pos_embed, patch_weight, patch_bias, blocks, norm, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &Vit3dConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.cls_token.device()
    }

    pub fn dtype(&self) -> DType {
        self.cls_token.dtype()
    }

    /// The stored position embedding (1, 1+N₀, H).
    pub fn pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// Patch embedding: (B, C, A0, A1, A2) → tokens (B, N, H) and the grid [g0, g1, g2].
    pub fn patch_embed(&self, x: &Tensor) -> Result<(Tensor, [usize; 3])> {
        let (patches, grid) = self.patchify(x)?;
        let (b, n, k) = patches.dims3()?;
        let tokens = patches.reshape((b * n, k))?.matmul(&self.patch_weight.t()?)?.broadcast_add(&self.patch_bias)?;
        Ok((tokens.reshape((b, n, self.cfg.hidden_size))?, grid))
    }

    /// The voxels of each patch: (B, C, A0, A1, A2) → (B, N, C·p0·p1·p2) in token order, each
    /// row laid out as the flattened convolution kernel (C, p0, p1, p2); and the grid.
    pub fn patchify(&self, x: &Tensor) -> Result<(Tensor, [usize; 3])> {
        let (b, c, a0, a1, a2) = x.dims5()?;
        if c != self.cfg.in_channels {
            candle_core::bail!("vit3d: input has {c} channels, the model expects {}", self.cfg.in_channels);
        }
        let [p0, p1, p2] = self.cfg.patch_size;
        let grid = self.cfg.grid_for([a0, a1, a2]);
        let [g0, g1, g2] = grid;
        if g0 == 0 || g1 == 0 || g2 == 0 {
            candle_core::bail!("vit3d: input {:?} is smaller than one patch {:?}", [a0, a1, a2], self.cfg.patch_size);
        }
        let x = x.to_dtype(self.dtype())?;
        let x = if (a0, a1, a2) == (g0 * p0, g1 * p1, g2 * p2) {
            x
        } else {
            x.narrow(2, 0, g0 * p0)?.narrow(3, 0, g1 * p1)?.narrow(4, 0, g2 * p2)?
        };
        let n = g0 * g1 * g2;
        let patches = x.reshape(vec![b, c, g0, p0, g1, p1, g2, p2])?.permute([0, 2, 4, 6, 1, 3, 5, 7])?.contiguous()?.reshape((
            b,
            n,
            c * p0 * p1 * p2,
        ))?;
        Ok((patches, grid))
    }

    /// The position embedding for a token grid (1, 1+N, H): the stored one when the grid is
    /// the stored grid, otherwise its patch part resized trilinearly (cls slot unchanged).
    pub fn pos_embed_for(&self, grid: [usize; 3]) -> Result<Tensor> {
        resize_pos_embed(&self.pos_embed, self.cfg.pos_embed_grid(), grid)
    }

    /// Tokens after the position embedding, before the blocks: (B, 1+N, H).
    pub fn embed(&self, x: &Tensor) -> Result<(Tensor, [usize; 3])> {
        let (tokens, grid) = self.patch_embed(x)?;
        let b = tokens.dim(0)?;
        let h = self.cfg.hidden_size;
        let cls = self.cls_token.broadcast_as((b, 1, h))?;
        let x = Tensor::cat(&[&cls, &tokens], 1)?;
        let x = x.broadcast_add(&self.pos_embed_for(grid)?)?;
        Ok((x, grid))
    }

    /// Full encoder: x (B, C, A0, A1, A2) → (cls (B, H), patch tokens (B, N, H), grid), both
    /// after the final LayerNorm.
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor, [usize; 3])> {
        let (h, grid) = self.hidden_before(x, 0)?;
        let (cls, patches) = self.forward_from(&h, 0)?;
        Ok((cls, patches, grid))
    }

    /// The tokens entering block `layer` (0: straight after the embedding; `depth`: after
    /// the last block, before the final norm): (B, 1+N, H), and the grid.
    pub fn hidden_before(&self, x: &Tensor, layer: usize) -> Result<(Tensor, [usize; 3])> {
        if layer > self.blocks.len() {
            candle_core::bail!("vit3d: layer {layer} is past the last block ({})", self.blocks.len());
        }
        let (mut h, grid) = self.embed(x)?;
        for block in &self.blocks[..layer] {
            h = block.forward(&h)?;
        }
        Ok((h, grid))
    }

    /// The rest of the encoder from the tokens entering block `layer` (see
    /// [`Vit3d::hidden_before`]): (cls (B, H), patch tokens (B, N, H)), after the final norm.
    pub fn forward_from(&self, h: &Tensor, layer: usize) -> Result<(Tensor, Tensor)> {
        if layer > self.blocks.len() {
            candle_core::bail!("vit3d: layer {layer} is past the last block ({})", self.blocks.len());
        }
        self.forward_from_normed(h, None, layer)
    }

    /// norm1 of block `layer` applied to its input tokens `h`: the attention input.
    pub fn attention_input(&self, h: &Tensor, layer: usize) -> Result<Tensor> {
        match self.blocks.get(layer) {
            Some(b) => attention::layer_norm(&b.norm1, h),
            None => candle_core::bail!("vit3d: no block {layer}"),
        }
    }

    /// As [`Vit3d::forward_from`], with block `layer`'s attention input given (`normed`,
    /// see [`Vit3d::attention_input`]) instead of computed from `h`, so that gradients can be
    /// taken with respect to it.
    pub fn forward_from_normed(&self, h: &Tensor, normed: Option<&Tensor>, layer: usize) -> Result<(Tensor, Tensor)> {
        if layer > self.blocks.len() {
            candle_core::bail!("vit3d: layer {layer} is past the last block ({})", self.blocks.len());
        }
        let mut h = h.clone();
        for (i, block) in self.blocks[layer..].iter().enumerate() {
            h = match normed {
                Some(n) if i == 0 => block.forward_normed(&h, n)?,
                _ => block.forward(&h)?,
            };
        }
        let h = attention::layer_norm(&self.norm, &h)?;
        let l = h.dim(1)?;
        let cls = h.i((.., 0))?.contiguous()?;
        let patches = h.narrow(1, 1, l - 1)?.contiguous()?;
        Ok((cls, patches))
    }
}

/// PyTorch `F.interpolate(mode="linear"/"trilinear", align_corners=False, size=out)` along one
/// axis as an (out × in) matrix: source coordinate `(dst + 0.5)·in/out − 0.5`, clamped at 0,
/// computed in f32 as PyTorch's CPU kernel does.
pub fn linear_resize_matrix(input: usize, output: usize) -> Vec<f32> {
    let mut w = vec![0f32; output * input];
    let scale = input as f32 / output as f32;
    for o in 0..output {
        let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (src as usize).min(input - 1);
        let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        w[o * input + i0] += l0;
        w[o * input + i1] += l1;
    }
    w
}

/// Resizes a ViT position embedding (1, 1+N, H) whose patch part lies on grid `from` to grid
/// `to` with separable trilinear interpolation (align_corners=False); the leading cls slot is
/// kept. Returns the input unchanged when the grids are equal.
pub fn resize_pos_embed(pos: &Tensor, from: [usize; 3], to: [usize; 3]) -> Result<Tensor> {
    let (one, n1, h) = pos.dims3()?;
    let [s0, s1, s2] = from;
    if one != 1 || n1 != 1 + s0 * s1 * s2 {
        candle_core::bail!("pos_embed {:?} does not match grid {from:?}", pos.dims());
    }
    if from == to {
        return Ok(pos.clone());
    }
    let [o0, o1, o2] = to;
    let dev = pos.device();
    let dtype = pos.dtype();
    let mat = |i: usize, o: usize| -> Result<Tensor> { Tensor::from_vec(linear_resize_matrix(i, o), (o, i), dev)?.to_dtype(dtype) };
    let cls = pos.narrow(1, 0, 1)?;
    let p = pos.narrow(1, 1, n1 - 1)?.contiguous()?;
    // Axis 0: (s0, s1·s2·H) → (o0, s1·s2·H).
    let p = mat(s0, o0)?.matmul(&p.reshape((s0, s1 * s2 * h))?)?;
    // Axis 1: (o0, s1, s2·H) → (o0, o1, s2·H).
    let p = mat(s1, o1)?.broadcast_left(o0)?.matmul(&p.reshape((o0, s1, s2 * h))?)?;
    // Axis 2: (o0·o1, s2, H) → (o0·o1, o2, H).
    let p = mat(s2, o2)?.broadcast_left(o0 * o1)?.matmul(&p.reshape((o0 * o1, s2, h))?)?;
    let p = p.reshape((1, o0 * o1 * o2, h))?;
    Tensor::cat(&[&cls, &p], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn pos_embed_resize_is_identity_for_equal_grids() {
        let dev = Device::Cpu;
        let pos = Tensor::randn(0f32, 1., (1, 1 + 3 * 4 * 5, 6), &dev).unwrap();
        let same = resize_pos_embed(&pos, [3, 4, 5], [3, 4, 5]).unwrap();
        assert_eq!(max_abs_diff(&same, &pos), 0.0);
        // The interpolation matrices themselves are the identity at equal sizes.
        for n in [1, 2, 7, 14] {
            let m = linear_resize_matrix(n, n);
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(m[i * n + j], if i == j { 1.0 } else { 0.0 });
                }
            }
        }
    }

    #[test]
    fn linear_resize_matches_pytorch_half_pixel_rule() {
        // torch.nn.functional.interpolate(torch.arange(4.).view(1,1,4), size=7,
        //   mode="linear", align_corners=False)
        let m = linear_resize_matrix(4, 7);
        let x = [0f32, 1., 2., 3.];
        let y: Vec<f32> = (0..7).map(|o| (0..4).map(|i| m[o * 4 + i] * x[i]).sum()).collect();
        let expect = [0.0, 0.357143, 0.928571, 1.5, 2.071429, 2.642857, 3.0];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
        // Downsampling 14 → 7 averages neighbour pairs.
        let m = linear_resize_matrix(14, 7);
        assert!((m[0] - 0.5).abs() < 1e-6 && (m[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn separable_resize_matches_direct_trilinear() {
        let dev = Device::Cpu;
        let (from, to, h) = ([2, 3, 4], [4, 2, 5], 3);
        let n0 = 24;
        let pos = Tensor::randn(0f32, 1., (1, 1 + n0, h), &dev).unwrap();
        let out = resize_pos_embed(&pos, from, to).unwrap();
        assert_eq!(out.dims(), &[1, 1 + 40, h]);
        let src = pos.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w: Vec<Vec<f32>> = (0..3).map(|a| linear_resize_matrix(from[a], to[a])).collect();
        assert_eq!(&got[..h], &src[..h], "cls slot kept");
        for o0 in 0..to[0] {
            for o1 in 0..to[1] {
                for o2 in 0..to[2] {
                    for c in 0..h {
                        let mut acc = 0f32;
                        for i0 in 0..from[0] {
                            for i1 in 0..from[1] {
                                for i2 in 0..from[2] {
                                    let wt = w[0][o0 * from[0] + i0] * w[1][o1 * from[1] + i1] * w[2][o2 * from[2] + i2];
                                    acc += wt * src[h * (1 + (i0 * from[1] + i1) * from[2] + i2) + c];
                                }
                            }
                        }
                        let idx = h * (1 + (o0 * to[1] + o1) * to[2] + o2) + c;
                        assert!((got[idx] - acc).abs() < 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn fast_gelu_matches_exact_gelu() {
        // Against the f64 erf GELU over a dense grid.
        let mut worst = 0f64;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let xd = x as f64;
            let exact = 0.5 * xd * (1.0 + candle_core::cpu::erf::erf_f64(xd / 2f64.sqrt()));
            let got = gelu_erf_f32(x) as f64;
            let err = (got - exact).abs() / exact.abs().max(1e-3);
            worst = worst.max(err);
            x += 0.000_731;
        }
        // About 1e-6 at worst (x ≈ −3.4, from the f32 rounding of −z² + poly); PyTorch's own f32
        // 0.5·x·(1 + erf) loses far more there to cancellation.
        assert!(worst < 2e-6, "gelu relative error {worst}");
        assert_eq!(gelu_erf_f32(0.0), 0.0);
        assert_eq!(gelu_erf_f32(-200.0), 0.0);
        assert_eq!(gelu_erf_f32(200.0), 200.0);
        // The tensor path against candle's gelu_erf.
        let t = Tensor::randn(0f32, 3., (33, 1000), &Device::Cpu).unwrap();
        let want = t.gelu_erf().unwrap();
        let got = gelu_erf(t.affine(1.0, 0.0).unwrap()).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-5);
    }

    #[test]
    fn patch_embedding_equals_a_strided_convolution() {
        let dev = Device::Cpu;
        let cfg = Vit3dConfig {
            hidden_size: 8,
            depth: 1,
            num_heads: 2,
            mlp_dim: 16,
            patch_size: [2, 3, 2],
            img_size: [4, 6, 4],
            ..Default::default()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let vit = Vit3d::load(vb, &cfg).unwrap();
        // 5 × 7 × 5 input: the trailing voxels that do not fill a patch are dropped.
        let x = Tensor::randn(0f32, 1., (2, 1, 5, 7, 5), &dev).unwrap();
        let (tok, grid) = vit.patch_embed(&x).unwrap();
        assert_eq!(grid, [2, 2, 2]);
        assert_eq!(tok.dims(), &[2, 8, 8]);
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w = vit.patch_weight.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bias = vit.patch_bias.to_vec1::<f32>().unwrap();
        let tv = tok.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let [p0, p1, p2] = cfg.patch_size;
        for b in 0..2 {
            for (n, (g0, g1, g2)) in (0..2).flat_map(|a| (0..2).flat_map(move |c| (0..2).map(move |d| (a, c, d)))).enumerate() {
                for o in 0..8 {
                    let mut acc = bias[o];
                    for i in 0..p0 {
                        for j in 0..p1 {
                            for k in 0..p2 {
                                let xi = ((b * 5 + g0 * p0 + i) * 7 + g1 * p1 + j) * 5 + g2 * p2 + k;
                                acc += w[o * 12 + (i * p1 + j) * p2 + k] * xv[xi];
                            }
                        }
                    }
                    let got = tv[(b * 8 + n) * 8 + o];
                    assert!((got - acc).abs() < 1e-5, "{got} vs {acc}");
                }
            }
        }
        let (cls, patches, grid) = vit.forward(&x).unwrap();
        assert_eq!((cls.dims(), patches.dims(), grid), (&[2usize, 8][..], &[2usize, 8, 8][..], [2, 2, 2]));
    }
}
