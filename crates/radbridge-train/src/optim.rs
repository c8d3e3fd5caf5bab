//! torch's `Adam` (weight decay added to the gradient, as L2, not AdamW's decoupled decay) and
//! `clip_grad_norm_`, for named candle variables, with a state that can be saved and restored
//! (`radbridge train --resume`).
//!
//! Per step t (torch 2.x, `foreach=False` arithmetic):
//! g ← g·c (clip: c = max_norm / (‖g‖₂ + 1e-6) when that is < 1, over all parameters at once);
//! g ← g + wd·p; m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
//! p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};

use super::config::OptimConfig;

/// Adam over a fixed, named list of variables.
pub struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken so far.
    pub step: usize,
    pub cfg: OptimConfig,
}

/// The global L2 norm of the gradients of `vars` (missing gradients count as zero).
pub fn grad_norm(grads: &GradStore, vars: &[(String, Var)]) -> Result<f64> {
    let mut sq = 0f64;
    for (_, var) in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            sq += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// torch `clip_grad_norm_`'s factor for a total norm: max_norm / (norm + 1e-6), at most 1.
pub fn clip_factor(total_norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    let c = max_norm / (total_norm + 1e-6);
    c.min(1.0)
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, cfg: OptimConfig) -> Result<Adam> {
        let m = vars.iter().map(|(_, v)| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = vars.iter().map(|(_, v)| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        Ok(Adam { vars, m, v, step: 0, cfg })
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Learning rate of the next step (with the optional linear warm-up).
    pub fn current_lr(&self) -> f64 {
        let w = self.cfg.warmup_steps;
        if w > 0 && self.step < w {
            self.cfg.lr * (self.step + 1) as f64 / w as f64
        } else {
            self.cfg.lr
        }
    }

    /// Clip (when configured) and apply one Adam step. Returns the gradient norm before
    /// clipping.
    pub fn step(&mut self, grads: &GradStore) -> Result<f64> {
        let norm = grad_norm(grads, &self.vars)?;
        let clip = clip_factor(norm, self.cfg.clip_norm);
        let lr = self.current_lr();
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let step_size = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let p = var.as_tensor().detach();
            let mut g = g.detach();
            if clip < 1.0 {
                g = (g * clip)?;
            }
            if self.cfg.weight_decay != 0.0 {
                g = (g + (&p * self.cfg.weight_decay)?)?;
            }
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let denom = ((v.sqrt()? / bc2_sqrt)? + self.cfg.eps)?;
            let upd = ((&m / &denom)? * step_size)?;
            var.set(&(p - upd)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(norm)
    }

    /// Save the moments (safetensors, `m.<name>` / `v.<name>`); the step count is kept by the
    /// caller.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        radbridge_volume::atomic::write_via(path, |tmp| candle_core::safetensors::save(&map, tmp))
    }

    /// Restore the moments written by [`Adam::save`] and the step count.
    pub fn load(&mut self, path: &Path, step: usize, device: &Device) -> Result<()> {
        let map = candle_core::safetensors::load(path, device)?;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (key, slot) in [(format!("m.{name}"), &mut self.m[i]), (format!("v.{name}"), &mut self.v[i])] {
                let t = map.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("{}: no {key}", path.display())))?;
                if t.dims() != var.dims() {
                    candle_core::bail!("{}: {key} has shape {:?}, the parameter {:?}", path.display(), t.dims(), var.dims());
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_factor_matches_torch() {
        assert_eq!(clip_factor(0.1, 0.25), 1.0);
        assert!((clip_factor(1.0, 0.25) - 0.25 / (1.0 + 1e-6)).abs() < 1e-15);
        assert_eq!(clip_factor(5.0, 0.0), 1.0);
    }

    #[test]
    fn first_adam_step_moves_by_lr_in_the_gradient_sign() {
        // With bias correction, the first step is −lr·g/(|g| + ε·…) ≈ −lr·sign(g).
        let dev = Device::Cpu;
        let var = Var::new(&[1.0f32, -2.0, 3.0], &dev).unwrap();
        let loss = (var.as_tensor() * Tensor::new(&[2.0f32, -1.0, 0.5], &dev).unwrap()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let cfg = OptimConfig { lr: 0.1, weight_decay: 0.0, clip_norm: 0.0, ..Default::default() };
        let mut adam = Adam::new(vec![("w".into(), var.clone())], cfg).unwrap();
        adam.step(&grads).unwrap();
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }
}
