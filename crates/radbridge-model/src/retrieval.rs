//! Cross-modal retrieval over stored image embeddings: rank studies by a sentence (the model's
//! own zero-shot score, so a search hit and the finding score in the app are the same number)
//! or by another study (cosine of the image embeddings).
//!
//! The embeddings of a cohort are kept as one row-major f32 matrix per tensor (BrgSA `v` and
//! `v_hat`, CT-CLIP `latent`) with each row's squared norm precomputed, so ranking N studies is
//! one matrix–vector product: N × D multiply-adds in f32 (vectorised for the CPU at run time),
//! in parallel over rows, divided by norms computed in f64 like [`zeroshot::cosine`] (results
//! agree with it to ~1e-6).

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::zeroshot::{self, ScoringRule};

/// Rows of equal-length f32 vectors and their squared norms.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingMatrix {
    dim: usize,
    data: Vec<f32>,
    sq_norms: Vec<f64>,
}

fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    // Eight independent accumulators: vectorises, and stays within f64 rounding of the
    // sequential sum.
    let mut acc = [0f64; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += x[j] as f64 * y[j] as f64;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += *x as f64 * *y as f64;
    }
    s
}

/// f32 dot product with sixteen independent accumulators (one AVX-512 register, two AVX2
/// ones), compiled for the CPU's vector width at run time ([`dot_f32_fn`]); `FMA` fuses each
/// multiply-add (without FMA in hardware `mul_add` is a slow library call). Over the 512–768
/// values of an embedding its relative error stays around 1e-6, far below the spread of scores.
#[inline(always)]
fn dot_f32<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = a.len().min(b.len());
    let (ac, ar) = a[..n].split_at(n - n % 16);
    let (bc, br) = b[..n].split_at(ac.len());
    for (x, y) in ac.chunks_exact(16).zip(bc.chunks_exact(16)) {
        for j in 0..16 {
            acc[j] = if FMA { x[j].mul_add(y[j], acc[j]) } else { acc[j] + x[j] * y[j] };
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_f32::<true>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_f32::<true>(a, b)
}

fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    dot_f32::<false>(a, b)
}

/// The fastest [`dot_f32`] this CPU runs.
fn dot_f32_fn() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return |a, b| unsafe { dot_f32_avx512(a, b) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return |a, b| unsafe { dot_f32_avx2(a, b) };
        }
    }
    dot_f32_portable
}

impl EmbeddingMatrix {
    pub fn new(dim: usize) -> EmbeddingMatrix {
        EmbeddingMatrix { dim, data: Vec::new(), sq_norms: Vec::new() }
    }

    /// With room for `rows` rows.
    pub fn with_capacity(dim: usize, rows: usize) -> EmbeddingMatrix {
        EmbeddingMatrix { dim, data: Vec::with_capacity(rows.saturating_mul(dim)), sq_norms: Vec::with_capacity(rows) }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn rows(&self) -> usize {
        self.sq_norms.len()
    }

    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.data.get(i * self.dim..(i + 1) * self.dim)
    }

    /// Append a row; false (and nothing appended) when its length is not `dim`.
    pub fn push(&mut self, row: &[f32]) -> bool {
        if row.len() != self.dim {
            return false;
        }
        self.data.extend_from_slice(row);
        self.sq_norms.push(dot_f64(row, row));
        true
    }

    /// cos(row i, q) for every row, as [`zeroshot::cosine`] computes it.
    pub fn cosines(&self, q: &[f32]) -> Vec<f32> {
        if q.len() != self.dim || self.dim == 0 {
            return vec![0.0; self.rows()];
        }
        let qn = dot_f64(q, q).sqrt();
        let dot = dot_f32_fn();
        let mut out = vec![0f32; self.rows()];
        out.par_chunks_mut(1024).enumerate().for_each(|(c, chunk)| {
            for (k, o) in chunk.iter_mut().enumerate() {
                let i = c * 1024 + k;
                let row = &self.data[i * self.dim..(i + 1) * self.dim];
                let d = (self.sq_norms[i].sqrt() * qn).max(1e-12);
                *o = (dot(row, q) as f64 / d) as f32;
            }
        });
        out
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4 + self.sq_norms.len() * 8
    }
}

/// A sentence as a query: the text side of the model's zero-shot rule for a typed finding.
#[derive(Debug, Clone)]
pub enum TextQuery {
    /// ½·[cos(v, t) + cos(v̂, t)].
    Brgsa { t: Vec<f32> },
    /// softmax(scale·cos(latent, present), scale·cos(latent, absent)) → P(present).
    Ctclip { present: Vec<f32>, absent: Vec<f32>, scale: f32 },
}

impl TextQuery {
    pub fn rule(&self) -> ScoringRule {
        match self {
            TextQuery::Brgsa { .. } => ScoringRule::BrgsaMeanCosine,
            TextQuery::Ctclip { .. } => ScoringRule::CtclipSoftmaxPair,
        }
    }
}

/// The image tensors each rule needs, and the one compared for "similar studies".
pub fn tensors_for(rule: ScoringRule) -> (&'static [&'static str], &'static str) {
    match rule {
        ScoringRule::BrgsaMeanCosine => (&["v", "v_hat"], "v"),
        ScoringRule::CtclipSoftmaxPair => (&["latent"], "latent"),
    }
}

/// Why a query cannot run on an index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetrievalError {
    #[error("the embeddings have no '{0}' tensor (they come from another kind of model)")]
    MissingTensor(String),
    #[error("'{name}' has {got} values per study, the model's text side has {want}")]
    Dimension { name: String, got: usize, want: usize },
    #[error("no study '{0}' among the searched embeddings")]
    UnknownId(String),
}

/// The embeddings of a set of studies, by tensor name, with each study's id.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingIndex {
    pub ids: Vec<String>,
    pub tensors: BTreeMap<String, EmbeddingMatrix>,
    /// Ids are integers (a library's study ids): ties are broken numerically.
    pub numeric_ids: bool,
}

/// One ranked study.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Row in the index.
    #[serde(skip)]
    pub row: usize,
    pub id: String,
    pub score: f32,
}

impl EmbeddingIndex {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn tensor(&self, name: &str) -> Result<&EmbeddingMatrix, RetrievalError> {
        self.tensors.get(name).ok_or_else(|| RetrievalError::MissingTensor(name.to_string()))
    }

    fn checked(&self, name: &str, len: usize) -> Result<&EmbeddingMatrix, RetrievalError> {
        let m = self.tensor(name)?;
        if m.dim() != len {
            return Err(RetrievalError::Dimension { name: name.to_string(), got: m.dim(), want: len });
        }
        Ok(m)
    }

    /// Every study's zero-shot score for the sentence, in index order.
    pub fn text_scores(&self, q: &TextQuery) -> Result<Vec<f32>, RetrievalError> {
        match q {
            TextQuery::Brgsa { t } => {
                let a = self.checked("v", t.len())?.cosines(t);
                let b = self.checked("v_hat", t.len())?.cosines(t);
                Ok(a.iter().zip(&b).map(|(a, b)| 0.5 * (a + b)).collect())
            }
            TextQuery::Ctclip { present, absent, scale } => {
                let m = self.checked("latent", present.len())?;
                let p = m.cosines(present);
                let n = m.cosines(absent);
                Ok(p.iter().zip(&n).map(|(p, n)| zeroshot::ctclip_p_present(p * scale, n * scale)).collect())
            }
        }
    }

    /// Cosine of every study's image embedding (`tensor`) with study `id`'s.
    pub fn like_scores(&self, id: &str, tensor: &str) -> Result<Vec<f32>, RetrievalError> {
        let row = self.ids.iter().position(|i| i == id).ok_or_else(|| RetrievalError::UnknownId(id.to_string()))?;
        let m = self.tensor(tensor)?;
        let q = m.row(row).ok_or_else(|| RetrievalError::UnknownId(id.to_string()))?.to_vec();
        Ok(m.cosines(&q))
    }

    /// The `top` best rows (all when None), best first, ties broken by id; `exclude` is left
    /// out (the query study of a "similar studies" search).
    pub fn rank(&self, scores: &[f32], top: Option<usize>, exclude: Option<&str>) -> Vec<Hit> {
        let mut rows: Vec<usize> = (0..scores.len().min(self.ids.len())).filter(|&i| Some(self.ids[i].as_str()) != exclude).collect();
        let by_id = |a: usize, b: usize| match (self.numeric_ids, self.ids[a].parse::<i64>(), self.ids[b].parse::<i64>()) {
            (true, Ok(x), Ok(y)) => x.cmp(&y),
            _ => self.ids[a].cmp(&self.ids[b]),
        };
        let cmp = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then_with(|| by_id(*a, *b));
        if let Some(k) = top {
            if k < rows.len() {
                if k == 0 {
                    return Vec::new();
                }
                rows.select_nth_unstable_by(k - 1, cmp);
                rows.truncate(k);
            }
        }
        rows.sort_by(cmp);
        rows.into_iter().map(|i| Hit { row: i, id: self.ids[i].clone(), score: scores[i] }).collect()
    }

    /// Bytes held by the matrices.
    pub fn bytes(&self) -> usize {
        self.tensors.values().map(EmbeddingMatrix::bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(rows: &[(&str, Vec<f32>, Vec<f32>)]) -> EmbeddingIndex {
        let dim = rows[0].1.len();
        let mut v = EmbeddingMatrix::new(dim);
        let mut vh = EmbeddingMatrix::new(dim);
        let mut ids = Vec::new();
        for (id, a, b) in rows {
            assert!(v.push(a) && vh.push(b));
            ids.push(id.to_string());
        }
        EmbeddingIndex { ids, tensors: BTreeMap::from([("v".to_string(), v), ("v_hat".to_string(), vh)]), numeric_ids: false }
    }

    #[test]
    fn cosines_agree_with_the_scalar_rule() {
        let mut m = EmbeddingMatrix::new(37);
        let mut rows = Vec::new();
        let mut s = 1u64;
        for _ in 0..3000 {
            let r: Vec<f32> = (0..37)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            assert!(m.push(&r));
            rows.push(r);
        }
        assert!(!m.push(&[1.0; 3]), "a row of the wrong length is refused");
        let q = rows[5].iter().map(|x| x * 2.0 + 0.1).collect::<Vec<_>>();
        let got = m.cosines(&q);
        for (r, g) in rows.iter().zip(&got) {
            assert!((zeroshot::cosine(r, &q) - g).abs() < 2e-6);
            assert!((dot_f32_portable(r, &q) - dot_f32::<true>(r, &q)).abs() < 1e-5);
        }
    }

    #[test]
    fn brgsa_text_scores_are_the_zero_shot_scores_and_rank_breaks_ties_by_id() {
        let ix =
            index(&[("b", vec![1.0, 0.0], vec![1.0, 0.0]), ("a", vec![1.0, 0.0], vec![1.0, 0.0]), ("c", vec![0.0, 1.0], vec![0.6, 0.8])]);
        let t = vec![0.3, 0.7];
        let s = ix.text_scores(&TextQuery::Brgsa { t: t.clone() }).unwrap();
        for (i, (_, v, vh)) in
            [("b", [1.0f32, 0.0], [1.0f32, 0.0]), ("a", [1.0, 0.0], [1.0, 0.0]), ("c", [0.0, 1.0], [0.6, 0.8])].iter().enumerate()
        {
            assert!((s[i] - zeroshot::brgsa_score(v, vh, &t).2).abs() < 1e-6);
        }
        let ranked = ix.rank(&s, None, None);
        assert_eq!(ranked.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["c", "a", "b"]);
        assert_eq!(ix.rank(&s, Some(2), None).iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["c", "a"]);
        assert!(ix.rank(&s, Some(0), None).is_empty());
        // Similar studies: the query itself scores 1 and can be excluded.
        let like = ix.like_scores("c", "v").unwrap();
        assert_eq!(ix.rank(&like, Some(1), None)[0].id, "c");
        assert_eq!(ix.rank(&like, None, Some("c")).len(), 2);
        assert_eq!(ix.like_scores("zz", "v"), Err(RetrievalError::UnknownId("zz".into())));
        assert!(matches!(ix.text_scores(&TextQuery::Brgsa { t: vec![1.0; 3] }), Err(RetrievalError::Dimension { .. })));
        assert!(matches!(
            ix.text_scores(&TextQuery::Ctclip { present: vec![1.0; 2], absent: vec![0.0; 2], scale: 1.0 }),
            Err(RetrievalError::MissingTensor(_))
        ));
    }
}
