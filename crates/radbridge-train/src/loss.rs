//! BrgSA's training objective (spec §4, `CLIPProjDict.calc_loss` with GLoRIA's `global_loss`):
//!
//! L = β·(CE_i2t + CE_t2i)(T·cos(vᵢ, tⱼ)) + γ·(CE_i2t + CE_t2i)(T·cos(v̂ᵢ, t̂ⱼ))
//!   + α·(MSE(v̂, v) + MSE(t̂, t))
//!
//! with the B×B cosine matrix cos(aᵢ, bⱼ) = aᵢ·bⱼ / max(|aᵢ|·|bⱼ|, eps), cross-entropy against
//! the diagonal (mean over the batch) along rows (image → text) and columns (text → image), and
//! MSE the mean over all B×E elements. Nothing is detached: the bank receives gradients from
//! the MSE and the reconstruction InfoNCE. Checked against PyTorch by
//! `tests/reference/loss_reference.py`.

use candle_core::{DType, Result, Tensor, D};

use super::config::LossConfig;

/// The objective and its parts (scalars; `total` carries the autograd graph).
#[derive(Debug, Clone)]
pub struct LossParts {
    pub total: Tensor,
    /// CE over rows of T·cos(v, t) (image → text).
    pub i2t: Tensor,
    /// CE over columns (text → image).
    pub t2i: Tensor,
    pub i2t_recon: Tensor,
    pub t2i_recon: Tensor,
    pub mse_v: Tensor,
    pub mse_t: Tensor,
}

impl LossParts {
    /// All parts as f64, in the order total, i2t, t2i, i2t_recon, t2i_recon, mse_v, mse_t.
    pub fn values(&self) -> Result<[f64; 7]> {
        let f = |t: &Tensor| -> Result<f64> { t.to_dtype(DType::F64)?.to_scalar::<f64>() };
        Ok([f(&self.total)?, f(&self.i2t)?, f(&self.t2i)?, f(&self.i2t_recon)?, f(&self.t2i_recon)?, f(&self.mse_v)?, f(&self.mse_t)?])
    }
}

/// T·cos(aᵢ, bⱼ) for (B, E) inputs → (B, B), with GLoRIA's clamp of the norm product.
pub fn cosine_logits(a: &Tensor, b: &Tensor, temperature: f64, eps: f64) -> Result<Tensor> {
    let dots = a.matmul(&b.t()?)?;
    let na = a.sqr()?.sum_keepdim(1)?.sqrt()?;
    let nb = b.sqr()?.sum_keepdim(1)?.sqrt()?;
    let norm = na.matmul(&nb.t()?)?.maximum(eps)?;
    (dots / norm)? * temperature
}

/// Mean cross-entropy of each row of `logits` (B, B) against the diagonal.
pub fn diagonal_cross_entropy(logits: &Tensor) -> Result<Tensor> {
    let (b, b2) = logits.dims2()?;
    if b != b2 {
        candle_core::bail!("diagonal_cross_entropy: logits {:?} are not square", logits.dims());
    }
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let eye = Tensor::eye(b, logits.dtype(), logits.device())?;
    (logp * eye)?.sum_all()?.affine(-1.0 / b as f64, 0.0)
}

/// (CE_i2t, CE_t2i) of GLoRIA's `global_loss` for image codes `a` and text codes `b`.
pub fn info_nce(a: &Tensor, b: &Tensor, cfg: &LossConfig) -> Result<(Tensor, Tensor)> {
    let logits = cosine_logits(a, b, cfg.temperature, cfg.eps)?;
    let i2t = diagonal_cross_entropy(&logits)?;
    let t2i = diagonal_cross_entropy(&logits.t()?)?;
    Ok((i2t, t2i))
}

/// `F.mse_loss(x_hat, x)`: the mean of the squared differences.
pub fn mse(x_hat: &Tensor, x: &Tensor) -> Result<Tensor> {
    (x_hat - x)?.sqr()?.mean_all()
}

/// The full BrgSA objective from v, t (B, E) and their bank reconstructions v̂, t̂ (B, E).
pub fn brgsa_loss(v: &Tensor, t: &Tensor, v_hat: &Tensor, t_hat: &Tensor, cfg: &LossConfig) -> Result<LossParts> {
    if v.dims() != t.dims() || v.dims() != v_hat.dims() || t.dims() != t_hat.dims() || v.rank() != 2 {
        candle_core::bail!("brgsa_loss: v {:?}, t {:?}, v̂ {:?}, t̂ {:?} must all be (B, E)", v.dims(), t.dims(), v_hat.dims(), t_hat.dims());
    }
    let (i2t, t2i) = info_nce(v, t, cfg)?;
    let (i2t_recon, t2i_recon) = info_nce(v_hat, t_hat, cfg)?;
    let mse_v = mse(v_hat, v)?;
    let mse_t = mse(t_hat, t)?;
    let total = (((&i2t + &t2i)? * cfg.global_weight)? + ((&i2t_recon + &t2i_recon)? * cfg.recon_weight)?)?
        .add(&((&mse_v + &mse_t)? * cfg.mse_weight)?)?;
    Ok(LossParts { total, i2t, t2i, i2t_recon, t2i_recon, mse_v, mse_t })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn perfectly_aligned_pairs_have_low_contrastive_loss() {
        let dev = Device::Cpu;
        let eye = Tensor::eye(4, DType::F32, &dev).unwrap();
        let cfg = LossConfig::default();
        let (a, b) = info_nce(&eye, &eye, &cfg).unwrap();
        // logits: 10 on the diagonal, 0 elsewhere → CE = ln(1 + 3e-10) ≈ 1.36e-4.
        let want = (1.0f64 + 3.0 * (-10f64).exp()).ln();
        for x in [a, b] {
            assert!((x.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-6);
        }
        // Swapped pairs are penalised.
        let perm = Tensor::new(&[[0f32, 1., 0., 0.], [1., 0., 0., 0.], [0., 0., 1., 0.], [0., 0., 0., 1.]], &dev).unwrap();
        let (a, _) = info_nce(&eye, &perm, &cfg).unwrap();
        assert!(a.to_scalar::<f32>().unwrap() > 4.0);
    }
}
