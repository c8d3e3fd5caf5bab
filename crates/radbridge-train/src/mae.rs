//! Masked-image pre-training of the ViT: the warm start of the image encoder.
//!
//! The official BrgSA run does not train its image encoder from scratch: it starts from
//! `vit_b16_3D_m3ae_epoch_2.pth`, a 3-D ViT pre-trained by masked autoencoding (M3AE), and its
//! BERT from M3AE's text encoder (spec §4, "Init"). Neither checkpoint can be downloaded here,
//! so the trainer can pre-train the ViT itself the same way, on the training volumes only (no
//! reports, no labels), before the BrgSA objective starts (`pretrain` in the training config):
//!
//! 1. a random crop per case; its patch tokens (with the position embedding) are shuffled per
//!    case and only the first `(1 − mask_ratio)·N` are kept, with the cls token;
//! 2. the BrgSA ViT encodes the kept tokens (its blocks and final norm, unchanged);
//! 3. a small decoder (a linear map to `decoder_dim`, a learned mask token in every dropped
//!    place, fixed 3-D sin-cos positions, `decoder_depth` ViT blocks, a norm, a linear map to
//!    the patch voxels) predicts every patch;
//! 4. the loss is the mean squared error on the dropped patches only, against the voxels
//!    normalised per patch (`norm_pix`, as MAE's `norm_pix_loss`) or raw.
//!
//! The decoder is thrown away; the encoder's weights carry on into BrgSA training. This is
//! He et al.'s MAE on the image side only: M3AE also masks and reconstructs report text
//! jointly, which is not done here.

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{LayerNorm, Linear, VarBuilder, VarMap};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::config::MaeConfig;
use super::data::InputCache;
use super::init::{below, init_vars, permutation, random_origin, rng_for, sincos_pos_embed};
use super::optim::Adam;
use radbridge_model::attention;
use radbridge_model::vit3d::{Block, Vit3d, Vit3dConfig};

/// The MAE decoder; VarBuilder paths `decoder_embed`, `mask_token`, `decoder_blocks.{i}`,
/// `decoder_norm`, `decoder_pred` (the names of the MAE reference implementation).
pub struct Decoder {
    embed: Linear,
    mask_token: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pred: Linear,
    pos: Tensor,
}

impl Decoder {
    /// A decoder for `vision` on token grid `grid`.
    pub fn load(vb: VarBuilder, cfg: &MaeConfig, vision: &Vit3dConfig, grid: [usize; 3]) -> candle_core::Result<Decoder> {
        let d = cfg.decoder_dim;
        let dcfg = cfg.decoder_vit(vision);
        let patch_voxels = vision.in_channels * vision.patch_size.iter().product::<usize>();
        let n: usize = grid.iter().product();
        let pos = sincos_pos_embed(grid, d)[d..].to_vec();
        Ok(Decoder {
            embed: candle_nn::linear(vision.hidden_size, d, vb.pp("decoder_embed"))?,
            mask_token: vb.get_with_hints((1, 1, d), "mask_token", candle_nn::Init::Randn { mean: 0.0, stdev: 0.02 })?,
            blocks: (0..cfg.decoder_depth)
                .map(|i| Block::load(vb.pp("decoder_blocks").pp(i), &dcfg))
                .collect::<candle_core::Result<_>>()?,
            norm: candle_nn::layer_norm(d, vision.block_eps, vb.pp("decoder_norm"))?,
            pred: candle_nn::linear(d, patch_voxels, vb.pp("decoder_pred"))?,
            pos: Tensor::from_vec(pos, (1, n, d), vb.device())?,
        })
    }

    /// Encoded kept tokens (B, K, H) and the order that puts the shuffled sequence [kept…,
    /// masked…] back into patch order (B·N indices into the flattened shuffled sequence) →
    /// predicted patches (B, N, C·p0·p1·p2).
    pub fn forward(&self, kept: &Tensor, restore: &Tensor) -> candle_core::Result<Tensor> {
        let (b, k, _) = kept.dims3()?;
        let (_, n, d) = self.pos.dims3()?;
        let x = self.embed.forward(kept)?;
        let masks = self.mask_token.broadcast_as((b, n - k, d))?;
        let shuffled = Tensor::cat(&[&x, &masks], 1)?.reshape((b * n, d))?;
        let mut h = shuffled.index_select(restore, 0)?.reshape((b, n, d))?.broadcast_add(&self.pos)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        self.pred.forward(&attention::layer_norm(&self.norm, &h)?)
    }
}

/// One masking of a batch: which tokens the encoder sees and where each goes back.
pub struct Masking {
    /// Indices into the flattened (B·(1+N)) embedded tokens: per case the cls token, then the
    /// kept patches (B·(1+K)).
    pub keep: Vec<u32>,
    /// Per patch position (case-major), its index in the flattened shuffled decoder sequence
    /// (B·N).
    pub restore: Vec<u32>,
    /// 1 where the patch was dropped (the loss is taken there), case-major (B·N).
    pub masked: Vec<f32>,
}

impl Masking {
    /// An independent random masking of `n` patches for each of `b` cases, keeping `k`.
    pub fn random(rng: &mut ChaCha8Rng, b: usize, n: usize, k: usize) -> Masking {
        let mut keep = Vec::with_capacity(b * (1 + k));
        let mut restore = vec![0u32; b * n];
        let mut masked = vec![0f32; b * n];
        for c in 0..b {
            let perm = permutation(rng, n);
            keep.push((c * (1 + n)) as u32);
            for (rank, &p) in perm.iter().enumerate() {
                if rank < k {
                    keep.push((c * (1 + n) + 1 + p) as u32);
                } else {
                    masked[c * n + p] = 1.0;
                }
                restore[c * n + p] = (c * n + rank) as u32;
            }
        }
        Masking { keep, restore, masked }
    }
}

/// The masked-patch loss of a batch `x` (B, C, A0, A1, A2) under `masking`.
pub fn mae_loss(vit: &Vit3d, decoder: &Decoder, x: &Tensor, masking: &Masking, norm_pix: bool) -> candle_core::Result<Tensor> {
    let dev = x.device();
    let (tokens, grid) = vit.embed(x)?;
    let (b, n1, h) = tokens.dims3()?;
    let n = n1 - 1;
    let k = masking.keep.len() / b - 1;
    let keep = Tensor::from_slice(&masking.keep, masking.keep.len(), dev)?;
    let visible = tokens.reshape((b * n1, h))?.index_select(&keep, 0)?.reshape((b, 1 + k, h))?;
    let (_, kept) = vit.forward_from(&visible, 0)?;
    let restore = Tensor::from_slice(&masking.restore, masking.restore.len(), dev)?;
    let pred = decoder.forward(&kept, &restore)?;
    let (target, g) = vit.patchify(x)?;
    debug_assert_eq!(g, grid);
    let target = if norm_pix {
        let mean = target.mean_keepdim(D::Minus1)?;
        let c = target.broadcast_sub(&mean)?;
        let var = c.sqr()?.mean_keepdim(D::Minus1)?;
        c.broadcast_div(&(var + 1e-6)?.sqrt()?)?
    } else {
        target
    };
    let per_patch = (pred - target)?.sqr()?.mean(D::Minus1)?; // (B, N)
    let mask = Tensor::from_slice(&masking.masked, (b, n), dev)?;
    let total: f32 = masking.masked.iter().sum();
    (per_patch * mask)?.sum_all()? / total.max(1.0) as f64
}

/// One pre-training step, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaeStep {
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// Pre-train `vit` (whose trainable variables are `encoder_vars`) on random crops of the
/// cached inputs. `on_step` sees every step and returns false to stop early (cancellation).
/// Returns the steps run, or `None` when stopped.
pub fn pretrain(
    vit: &Vit3d,
    encoder_vars: Vec<(String, Var)>,
    cache: &InputCache,
    cfg: &MaeConfig,
    crop: [usize; 3],
    seed: u64,
    on_step: &mut dyn FnMut(&MaeStep) -> bool,
) -> candle_core::Result<Option<Vec<MaeStep>>> {
    let dev = Device::Cpu;
    let vcfg = vit.config();
    let grid = vcfg.grid_for(crop);
    let n: usize = grid.iter().product();
    let k = cfg.kept(n);
    let varmap = VarMap::new();
    let decoder = Decoder::load(VarBuilder::from_varmap(&varmap, DType::F32, &dev), cfg, vcfg, grid)?;
    let mut init_rng = rng_for(seed, u64::MAX - 1, 0);
    init_vars(&varmap, &mut init_rng, true, &mut |_, _, _| None)?;
    let mut vars = encoder_vars;
    {
        let data = varmap.data().lock().expect("varmap lock");
        let mut dec: Vec<(String, Var)> = data.iter().map(|(k, v)| (format!("mae.{k}"), v.clone())).collect();
        dec.sort_by(|a, b| a.0.cmp(&b.0));
        vars.extend(dec);
    }
    let mut adam = Adam::new(vars, cfg.optim.clone())?;
    let [c0, c1, c2] = crop;
    let crop_vox = c0 * c1 * c2;
    let mut log = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        let t0 = std::time::Instant::now();
        let mut rng = rng_for(seed, u64::MAX - 2, step as u64);
        let mut xs = vec![0f32; cfg.batch_size * crop_vox];
        for b in 0..cfg.batch_size {
            let ci = below(&mut rng, cache.len());
            let o = random_origin(&mut rng, cache.shape, crop);
            cache.crop_into(ci, o, crop, &mut xs[b * crop_vox..(b + 1) * crop_vox]);
        }
        let x = Tensor::from_vec(xs, (cfg.batch_size, 1, c0, c1, c2), &dev)?;
        let masking = Masking::random(&mut rng, cfg.batch_size, n, k);
        let loss = mae_loss(vit, &decoder, &x, &masking, cfg.norm_pix)?;
        let value = loss.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            candle_core::bail!("pre-training loss is {value} at step {step}");
        }
        let grads = loss.backward()?;
        let lr = adam.current_lr();
        let grad_norm = adam.step(&grads)?;
        let s = MaeStep { step, loss: value, grad_norm, lr, seconds: t0.elapsed().as_secs_f64() };
        let go_on = on_step(&s);
        log.push(s);
        if !go_on {
            return Ok(None);
        }
    }
    Ok(Some(log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_k_per_case_and_restores_patch_order() {
        let mut rng = rng_for(7, 0, 0);
        let (b, n, k) = (3, 10, 4);
        let m = Masking::random(&mut rng, b, n, k);
        assert_eq!(m.keep.len(), b * (1 + k));
        assert_eq!(m.masked.iter().filter(|&&x| x == 1.0).count(), b * (n - k));
        for c in 0..b {
            // The cls token first, then kept patches of this case only.
            assert_eq!(m.keep[c * (1 + k)], (c * (1 + n)) as u32);
            let kept: Vec<usize> = m.keep[c * (1 + k) + 1..(c + 1) * (1 + k)].iter().map(|&i| i as usize - c * (1 + n) - 1).collect();
            for (rank, &p) in kept.iter().enumerate() {
                assert_eq!(m.masked[c * n + p], 0.0);
                assert_eq!(m.restore[c * n + p] as usize, c * n + rank);
            }
            // restore is a permutation of this case's block of the shuffled sequence.
            let mut r: Vec<u32> = m.restore[c * n..(c + 1) * n].to_vec();
            r.sort();
            assert_eq!(r, ((c * n) as u32..((c + 1) * n) as u32).collect::<Vec<_>>());
        }
    }

    fn tiny() -> (Vit3dConfig, MaeConfig, [usize; 3]) {
        let v = Vit3dConfig {
            hidden_size: 12,
            depth: 2,
            num_heads: 2,
            mlp_dim: 24,
            patch_size: [2, 2, 2],
            img_size: [6, 6, 4],
            ..Default::default()
        };
        let m = MaeConfig { decoder_dim: 12, decoder_heads: 2, mask_ratio: 0.5, ..Default::default() };
        (v, m, [6, 6, 4])
    }

    #[test]
    fn the_loss_is_taken_on_masked_patches_only() {
        // The loss equals the mean squared error over the masked rows only, summed by hand
        // from the decoder's output and the patch voxels.
        let (vcfg, mcfg, crop) = tiny();
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vit = Vit3d::load(VarBuilder::from_varmap(&vm, DType::F32, &dev).pp("img_encoder"), &vcfg).unwrap();
        let grid = vcfg.grid_for(crop);
        let n: usize = grid.iter().product();
        let dm = VarMap::new();
        let dec = Decoder::load(VarBuilder::from_varmap(&dm, DType::F32, &dev), &mcfg, &vcfg, grid).unwrap();
        let mut rng = rng_for(3, 0, 0);
        let x = Tensor::randn(0f32, 1.0, (2, 1, crop[0], crop[1], crop[2]), &dev).unwrap();
        let m = Masking::random(&mut rng, 2, n, mcfg.kept(n));
        let loss = mae_loss(&vit, &dec, &x, &m, false).unwrap().to_scalar::<f32>().unwrap();

        // Reference: the same pieces, the loss summed by hand.
        let (tokens, _) = vit.embed(&x).unwrap();
        let (b, n1, h) = tokens.dims3().unwrap();
        let keep = Tensor::from_slice(&m.keep, m.keep.len(), &dev).unwrap();
        let vis = tokens.reshape((b * n1, h)).unwrap().index_select(&keep, 0).unwrap().reshape((b, m.keep.len() / b, h)).unwrap();
        let (_, kept) = vit.forward_from(&vis, 0).unwrap();
        let restore = Tensor::from_slice(&m.restore, m.restore.len(), &dev).unwrap();
        let pred: Vec<Vec<Vec<f32>>> = dec.forward(&kept, &restore).unwrap().to_vec3().unwrap();
        let (target, _) = vit.patchify(&x).unwrap();
        let target: Vec<Vec<Vec<f32>>> = target.to_vec3().unwrap();
        let mut sum = 0f64;
        let mut count = 0;
        for c in 0..b {
            for p in 0..n {
                if m.masked[c * n + p] == 1.0 {
                    let row: f64 = pred[c][p].iter().zip(&target[c][p]).map(|(a, t)| ((a - t) as f64).powi(2)).sum();
                    sum += row / pred[c][p].len() as f64;
                    count += 1;
                }
            }
        }
        let want = sum / count as f64;
        assert!((loss as f64 - want).abs() < 1e-5 * want.max(1.0), "loss {loss} vs {want}");
    }

    #[test]
    fn validate_rejects_a_ratio_that_keeps_nothing() {
        let (vcfg, mut mcfg, crop) = tiny();
        assert!(mcfg.validate(&vcfg, crop).is_ok());
        mcfg.mask_ratio = 0.99;
        assert!(mcfg.validate(&vcfg, crop).unwrap_err().to_string().contains("keeps none"));
        mcfg.mask_ratio = 0.5;
        mcfg.decoder_heads = 5;
        assert!(mcfg.validate(&vcfg, crop).is_err());
    }
}
