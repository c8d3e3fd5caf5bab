//! Seeded randomness and parameter initialisation shared by the trainer and the pre-training
//! stage: one portable ChaCha stream per (seed, a, b), uniform and normal draws, shuffles, crop
//! origins, the 3-D sin-cos position embedding, orthogonal matrices, and the default
//! initialisation of a `VarMap`.

use candle_core::Tensor;
use candle_nn::VarMap;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded stream for (seed, a, b).
pub fn rng_for(seed: u64, a: u64, b: u64) -> ChaCha8Rng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&a.to_le_bytes());
    s[16..24].copy_from_slice(&b.to_le_bytes());
    s[24..].copy_from_slice(b"brgsa-tr");
    ChaCha8Rng::from_seed(s)
}

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

pub fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (uniform(rng) * n as f64).floor().min((n - 1) as f64) as usize
}

/// A uniformly random origin for a `crop`-sized block inside `shape` (one draw per axis, in
/// axis order: the official RandSpatialCrop).
pub fn random_origin(rng: &mut ChaCha8Rng, shape: [usize; 3], crop: [usize; 3]) -> [usize; 3] {
    [0, 1, 2].map(|a| below(rng, shape[a] - crop[a] + 1))
}

pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u1 = uniform(rng).max(1e-300);
    let u2 = uniform(rng);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Fisher–Yates shuffle of 0..n.
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(rng, i + 1);
        p.swap(i, j);
    }
    p
}

/// `k` of `items` sampled without replacement (all of them, shuffled, when there are fewer).
pub fn sample_without_replacement<'a>(rng: &mut ChaCha8Rng, items: &'a [String], k: usize) -> Vec<&'a str> {
    let p = permutation(rng, items.len());
    p.into_iter().take(k).map(|i| items[i].as_str()).collect()
}

/// 3-D sin-cos position embedding (1, 1+N, H) on `grid` (row-major, A0 slowest): a sixth of
/// the width per axis and function (sin, cos), frequencies 1/10000^(k/d); the cls slot and any
/// remainder of the width are zero.
pub fn sincos_pos_embed(grid: [usize; 3], h: usize) -> Vec<f32> {
    let d = h / 6;
    let n = grid[0] * grid[1] * grid[2];
    let mut out = vec![0f32; (1 + n) * h];
    if d == 0 {
        return out;
    }
    for i0 in 0..grid[0] {
        for i1 in 0..grid[1] {
            for i2 in 0..grid[2] {
                let tok = 1 + (i0 * grid[1] + i1) * grid[2] + i2;
                for (a, pos) in [i0, i1, i2].into_iter().enumerate() {
                    for k in 0..d {
                        let omega = 1.0 / 10000f64.powf(k as f64 / d as f64);
                        let x = pos as f64 * omega;
                        out[tok * h + a * 2 * d + k] = x.sin() as f32;
                        out[tok * h + a * 2 * d + d + k] = x.cos() as f32;
                    }
                }
            }
        }
    }
    out
}

/// A (rows, cols) matrix with orthonormal columns (rows ≥ cols) or rows (rows < cols), from a
/// normal matrix by modified Gram–Schmidt — the distribution of torch's `orthogonal_`.
pub fn orthogonal(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Vec<f32> {
    let (n, m) = if rows >= cols { (rows, cols) } else { (cols, rows) };
    // m vectors of length n.
    let mut q: Vec<Vec<f64>> = (0..m).map(|_| (0..n).map(|_| normal(rng)).collect()).collect();
    for i in 0..m {
        for j in 0..i {
            let (head, tail) = q.split_at_mut(i);
            let dot: f64 = head[j].iter().zip(tail[0].iter()).map(|(a, b)| a * b).sum();
            for (x, y) in tail[0].iter_mut().zip(head[j].iter()) {
                *x -= dot * y;
            }
        }
        let norm = q[i].iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        q[i].iter_mut().for_each(|x| *x /= norm);
    }
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[r * cols + c] = if rows >= cols { q[c][r] } else { q[r][c] } as f32;
        }
    }
    out
}

/// Values for a variable that the default initialisation does not cover: (name, dims, rng).
pub type SpecialInit<'a> = dyn FnMut(&str, &[usize], &mut ChaCha8Rng) -> Option<Vec<f32>> + 'a;

/// Initialise the variables of `varmap` in name order from `rng`: `special(name, dims, rng)`
/// where it returns values, otherwise zero biases, LayerNorms at (1, 0), and normal weights
/// (std 0.02 for tables, tokens and vectors; 1/√fan_in for matrices when `fan_in_init`).
pub fn init_vars(varmap: &VarMap, rng: &mut ChaCha8Rng, fan_in_init: bool, special: &mut SpecialInit) -> candle_core::Result<()> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let dev = var.device();
        let lower = name.to_lowercase();
        let values: Vec<f32> = if let Some(v) = special(name, &dims, rng) {
            v
        } else if lower.ends_with(".bias") {
            vec![0.0; n]
        } else if lower.contains("norm") {
            vec![1.0; n]
        } else {
            let table = lower.contains("embeddings") || lower.contains("token") || dims.len() < 2;
            let std = if fan_in_init && !table { 1.0 / ((n / dims[0]) as f64).sqrt() } else { 0.02 };
            (0..n).map(|_| (std * normal(rng)) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, dims, dev)?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}
