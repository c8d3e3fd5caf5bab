//! BrgSA (`CLIPProjDict`): 3-D ViT + projection, BERT + BrgSA's layer/token pooling +
//! projection, the shared cross-modal knowledge bank, and the zero-shot score.
//!
//! VarBuilder paths (the official names without the Lightning `gloria.` prefix):
//! `img_encoder.model.*` ([`Vit3d`]), `img_encoder.global_embedder`, `text_encoder.model.*`
//! ([`BertModel`]), `text_encoder.emb_global`, `dictionarylearning.dictionary.weight`.
//! `img_encoder.local_embedder`, `text_encoder.emb_local` and the BERT pooler are unused and
//! not required.
//!
//! Forward pass (spec §1): v = global_embedder(cls); s = (1/`text_max_length`) ·
//! Σ over the last `text_pool_layers` hidden states Σ over tokens [CLS]…first [SEP];
//! t = emb_global(s); z = softmax(x·Dᵀ), x̂ = z·D for x ∈ {v, t};
//! score = ½·[cos(v, t) + cos(v̂, t)].

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::bert::{BertConfig, BertModel};
use super::text::Encoding;
use super::vit3d::{Vit3d, Vit3dConfig};

fn d_embed() -> usize {
    768
}
fn d_bank() -> usize {
    2048
}
fn d_text_len() -> usize {
    97
}
fn d_pool_layers() -> usize {
    4
}

/// BrgSA geometry. Defaults are the released model's (`vitb_3D`, BERT-base, 768-d embeddings,
/// 2048 bank entries, prompts of 97 tokens, pooling over the last 4 BERT layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrgsaConfig {
    #[serde(default)]
    pub vision: Vit3dConfig,
    #[serde(default)]
    pub text: BertConfig,
    /// Width of the shared embedding space (`cfg.model.text.embedding_dim`).
    #[serde(default = "d_embed")]
    pub embed_dim: usize,
    /// Number of knowledge-bank entries (`cfg.model.dict.dict_size`).
    #[serde(default = "d_bank")]
    pub bank_size: usize,
    /// The padded prompt length (`cfg.data.text.word_num`); the sentence embedding is divided
    /// by it regardless of the prompt's real length.
    #[serde(default = "d_text_len")]
    pub text_max_length: usize,
    /// Number of final BERT hidden states summed (`cfg.model.text.last_n_layers`).
    #[serde(default = "d_pool_layers")]
    pub text_pool_layers: usize,
}

impl BrgsaConfig {
    /// The dimensions of model.json's `model` section in range (the BERT side is checked with
    /// its config.json).
    pub fn validate(&self) -> std::result::Result<(), crate::error::SettingError> {
        use crate::error::{check_size, MAX_DEPTH, MAX_SIDE, MAX_WIDTH};
        self.vision.validate("model.vision")?;
        check_size("model.embed_dim", self.embed_dim, MAX_WIDTH)?;
        check_size("model.bank_size", self.bank_size, MAX_WIDTH)?;
        check_size("model.text_max_length", self.text_max_length, MAX_SIDE)?;
        check_size("model.text_pool_layers", self.text_pool_layers, MAX_DEPTH)
    }
}

impl Default for BrgsaConfig {
    fn default() -> Self {
        Self {
            vision: Vit3dConfig::default(),
            text: BertConfig::default(),
            embed_dim: d_embed(),
            bank_size: d_bank(),
            text_max_length: d_text_len(),
            text_pool_layers: d_pool_layers(),
        }
    }
}

/// One volume's image-side outputs (batch dimension removed).
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// Projected global embedding v (E).
    pub v: Tensor,
    /// Its knowledge-bank reconstruction v̂ (E).
    pub v_hat: Tensor,
    /// Bank weights softmax(v·Dᵀ) (K).
    pub z: Tensor,
    /// ViT class token after the final norm (H).
    pub cls: Tensor,
    /// ViT patch tokens after the final norm (N, H).
    pub patches: Tensor,
    /// `global_embedder` applied to each patch token (N, E), for heat maps.
    pub patch_proj: Tensor,
    /// Token grid [g0, g1, g2] (N = g0·g1·g2, row-major, A0 slowest).
    pub grid: [usize; 3],
    /// The tokens entering ViT block `hidden_layer` (1+N, H), kept for
    /// [`Brgsa::patch_relevance`].
    pub hidden: Tensor,
    pub hidden_layer: usize,
}

/// One prompt's text-side outputs.
#[derive(Debug, Clone)]
pub struct TextEmbedding {
    /// Pooled BERT sentence embedding s (H).
    pub s: Tensor,
    /// Projected embedding t = emb_global(s) (E).
    pub t: Tensor,
    /// Its knowledge-bank reconstruction t̂ (E).
    pub t_hat: Tensor,
    /// Bank weights softmax(t·Dᵀ) (K).
    pub z: Tensor,
}

/// Largest number of (padded) tokens run through BERT in one batch.
const TEXT_BATCH_TOKENS: usize = 4096;

#[derive(Debug, Clone)]
pub struct Brgsa {
    vision: Vit3d,
    global_embedder: Linear,
    bert: BertModel,
    emb_global: Linear,
    /// The knowledge bank D (K, E).
    dictionary: Tensor,
    cfg: BrgsaConfig,
    device: Device,
    dtype: DType,
}

impl Brgsa {
    pub fn load(vb: VarBuilder, cfg: &BrgsaConfig) -> Result<Self> {
        if cfg.text_pool_layers == 0 || cfg.text_pool_layers > cfg.text.num_hidden_layers + 1 {
            candle_core::bail!("brgsa: text_pool_layers {} must be in 1..={}", cfg.text_pool_layers, cfg.text.num_hidden_layers + 1);
        }
        let img = vb.pp("img_encoder");
        let vision = Vit3d::load(img.clone(), &cfg.vision)?;
        let global_embedder = candle_nn::linear(cfg.vision.hidden_size, cfg.embed_dim, img.pp("global_embedder"))?;
        let txt = vb.pp("text_encoder");
        let bert = BertModel::load(txt.pp("model"), &cfg.text)?;
        let emb_global = candle_nn::linear(cfg.text.hidden_size, cfg.embed_dim, txt.pp("emb_global"))?;
        let dictionary = vb.pp("dictionarylearning").pp("dictionary").get_with_hints(
            (cfg.bank_size, cfg.embed_dim),
            "weight",
            candle_nn::Init::Randn { mean: 0., stdev: 1. / (cfg.embed_dim as f64).sqrt() },
        )?;
        Ok(Self { vision, global_embedder, bert, emb_global, dictionary, cfg: cfg.clone(), device: vb.device().clone(), dtype: vb.dtype() })
    }

    pub fn config(&self) -> &BrgsaConfig {
        &self.cfg
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn vision(&self) -> &Vit3d {
        &self.vision
    }
    pub fn bert(&self) -> &BertModel {
        &self.bert
    }
    /// The knowledge bank D (K, E).
    pub fn dictionary(&self) -> &Tensor {
        &self.dictionary
    }

    /// CMKI: z = softmax(x·Dᵀ) over the bank (no temperature), x̂ = z·D. `x` is (E) or (n, E);
    /// the results have the matching rank.
    pub fn reconstruct(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let one = x.rank() == 1;
        let x2 = if one { x.unsqueeze(0)? } else { x.clone() };
        let x2 = x2.to_dtype(self.dtype)?;
        let logits = x2.matmul(&self.dictionary.t()?)?;
        // candle's fused softmax has no backward pass; the generic one is used while training.
        let z = if logits.track_op() {
            candle_nn::ops::softmax(&logits, candle_core::D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&logits)?
        };
        let x_hat = z.matmul(&self.dictionary)?;
        if one {
            Ok((z.squeeze(0)?, x_hat.squeeze(0)?))
        } else {
            Ok((z, x_hat))
        }
    }

    /// Image side for a batch (B, C, A0, A1, A2): one [`ImageEmbedding`] per volume.
    pub fn encode_images(&self, x: &Tensor) -> Result<Vec<ImageEmbedding>> {
        self.encode_images_keeping(x, self.default_relevance_layer())
    }

    /// The block whose attention input [`Brgsa::patch_relevance`] attributes to by default:
    /// the one that ends the first half of the ViT (block 1 of 4 in the demo model). Chosen on
    /// the demo's validation corpus, where the heat-map peak fell inside the finding's mask
    /// for 19, 53, 47 and 17 of 718 positive findings at blocks 0 to 3 (patch-token cosine:
    /// 12). The last block, Grad-CAM's usual choice, was the worst.
    pub fn default_relevance_layer(&self) -> usize {
        (self.cfg.vision.depth / 2).saturating_sub(1)
    }

    /// As [`Brgsa::encode_images`], keeping the tokens that enter block `layer`.
    pub fn encode_images_keeping(&self, x: &Tensor, layer: usize) -> Result<Vec<ImageEmbedding>> {
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let (hidden, grid) = self.vision.hidden_before(&x, layer)?;
        let (cls, patches) = self.vision.forward_from(&hidden, layer)?;
        let v = self.global_embedder.forward(&cls)?;
        let (z, v_hat) = self.reconstruct(&v)?;
        let patch_proj = self.global_embedder.forward(&patches)?;
        (0..cls.dim(0)?)
            .map(|b| {
                Ok(ImageEmbedding {
                    v: v.i(b)?,
                    v_hat: v_hat.i(b)?,
                    z: z.i(b)?,
                    cls: cls.i(b)?,
                    patches: patches.i(b)?,
                    patch_proj: patch_proj.i(b)?,
                    grid,
                    hidden: hidden.i(b)?,
                    hidden_layer: layer,
                })
            })
            .collect()
    }

    /// Image side for one volume (1, C, A0, A1, A2).
    pub fn encode_image(&self, x: &Tensor) -> Result<ImageEmbedding> {
        let b = x.dim(0)?;
        if b != 1 {
            candle_core::bail!("encode_image expects one volume, got a batch of {b}; use encode_images");
        }
        Ok(self.encode_images(x)?.pop().expect("one embedding"))
    }

    /// Text side for tokenised prompts (padded or not: only the real tokens, mask = 1, are run).
    /// Prompts are sorted by length and batched, each batch padded only to its longest member.
    pub fn encode_texts(&self, encodings: &[Encoding]) -> Result<Vec<TextEmbedding>> {
        let mut real: Vec<(usize, Encoding)> = encodings.iter().map(|e| e.unpadded()).enumerate().collect();
        for (i, e) in &real {
            if e.is_empty() {
                candle_core::bail!("brgsa: prompt {i} has no tokens");
            }
            if e.tokens.len() != e.ids.len() || e.type_ids.len() != e.ids.len() {
                candle_core::bail!("brgsa: prompt {i}: ids, type_ids and tokens differ in length");
            }
        }
        real.sort_by_key(|(_, e)| e.len());
        let mut s_rows: Vec<Option<Tensor>> = vec![None; encodings.len()];
        let mut start = 0;
        while start < real.len() {
            // Sorted ascending, so the last member of a batch is its longest.
            let mut end = start + 1;
            while end < real.len() && (end + 1 - start) * real[end].1.len() <= TEXT_BATCH_TOKENS {
                end += 1;
            }
            let batch = &real[start..end];
            let s = self.pool_text_batch(&batch.iter().map(|(_, e)| e).collect::<Vec<_>>())?;
            for (row, (i, _)) in batch.iter().enumerate() {
                s_rows[*i] = Some(s.i(row)?);
            }
            start = end;
        }
        let s_all = Tensor::stack(&s_rows.into_iter().map(|s| s.expect("pooled")).collect::<Vec<_>>(), 0)?;
        let t_all = self.emb_global.forward(&s_all)?;
        let (z_all, t_hat_all) = self.reconstruct(&t_all)?;
        (0..encodings.len()).map(|i| Ok(TextEmbedding { s: s_all.i(i)?, t: t_all.i(i)?, t_hat: t_hat_all.i(i)?, z: z_all.i(i)? })).collect()
    }

    /// v = global_embedder(cls) for a batch (B, C, A0, A1, A2) → (B, E), and nothing else (the
    /// training forward pass).
    pub fn image_embeddings(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let (cls, _, _) = self.vision.forward(&x)?;
        self.global_embedder.forward(&cls)
    }

    /// t = emb_global(s) for prompts run as one batch padded to its longest member → (n, E)
    /// (the training forward pass).
    pub fn text_embeddings(&self, encodings: &[Encoding]) -> Result<Tensor> {
        let real: Vec<Encoding> = encodings.iter().map(|e| e.unpadded()).collect();
        if let Some(i) = real.iter().position(|e| e.is_empty()) {
            candle_core::bail!("brgsa: prompt {i} has no tokens");
        }
        let s = self.pool_text_batch(&real.iter().collect::<Vec<_>>())?;
        self.emb_global.forward(&s)
    }

    /// BrgSA's sentence embedding for a batch of unpadded encodings: (n, H).
    fn pool_text_batch(&self, batch: &[&Encoding]) -> Result<Tensor> {
        let n = batch.len();
        let l = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let pad = self.cfg.text.pad_token_id;
        let mut ids = vec![pad; n * l];
        let mut types = vec![0u32; n * l];
        let mut mask = vec![0u32; n * l];
        // Pooling weights: 1/text_max_length for tokens [CLS]…first [SEP] (inclusive).
        let mut weights = vec![0f32; n * l];
        let w = 1.0 / self.cfg.text_max_length as f32;
        for (r, e) in batch.iter().enumerate() {
            ids[r * l..r * l + e.len()].copy_from_slice(&e.ids);
            types[r * l..r * l + e.len()].copy_from_slice(&e.type_ids);
            mask[r * l..r * l + e.len()].fill(1);
            for j in 0..pooled_tokens(&e.tokens) {
                weights[r * l + j] = w;
            }
        }
        let dev = &self.device;
        let ids = Tensor::from_vec(ids, (n, l), dev)?;
        let types = Tensor::from_vec(types, (n, l), dev)?;
        let padded = batch.iter().any(|e| e.len() != l);
        let mask = if padded { Some(Tensor::from_vec(mask, (n, l), dev)?) } else { None };
        let states = self.bert.forward(&ids, Some(&types), mask.as_ref())?;
        let last = &states[states.len() - self.cfg.text_pool_layers..];
        let mut sum = last[0].clone();
        for h in &last[1..] {
            sum = (sum + h)?;
        }
        let weights = Tensor::from_vec(weights, (n, 1, l), dev)?.to_dtype(self.dtype)?;
        weights.matmul(&sum)?.squeeze(1)
    }

    /// Where each prompt's score comes from on the patch grid: gradient × activation
    /// (Grad-CAM for a ViT) of the zero-shot score ½·[cos(v, t) + cos(v̂, t)] with respect to
    /// the attention input of block `image.hidden_layer` (its norm1 output, a_j for patch j),
    /// summed over channels: Σ_c a_jc·∂score/∂a_jc, the first-order change of the score when
    /// that patch's keys and values are scaled. (The residual stream itself would give nothing
    /// at the last block: norm1 is blind to a token's scale.)
    /// Positive values raise the score. Only the blocks from `hidden_layer` on are run again,
    /// once, then once backwards per prompt. Returns one map per prompt (N values, row-major
    /// over `image.grid`).
    pub fn patch_relevance(&self, image: &ImageEmbedding, texts: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        self.patch_relevance_from(&image.hidden, image.hidden_layer, texts)
    }

    /// [`Brgsa::patch_relevance`] from the kept tokens (1+N, H) entering block `layer`. The
    /// blocks run forwards once; each prompt's score runs backwards through them.
    pub fn patch_relevance_from(&self, hidden: &Tensor, layer: usize, texts: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        if layer >= self.cfg.vision.depth {
            candle_core::bail!("patch_relevance: the kept tokens enter block {layer}, but the ViT has {} blocks", self.cfg.vision.depth);
        }
        let n = hidden.dim(0)?.saturating_sub(1);
        let hidden = hidden.to_device(&self.device)?.to_dtype(self.dtype)?.unsqueeze(0)?;
        let normed = self.vision.attention_input(&hidden, layer)?;
        let a = candle_core::Var::from_tensor(&normed.to_dtype(DType::F32)?)?;
        let (cls, _) = self.vision.forward_from_normed(&hidden, Some(&a.as_tensor().to_dtype(self.dtype)?), layer)?;
        let v = self.global_embedder.forward(&cls)?.squeeze(0)?.to_dtype(DType::F32)?;
        let dict = self.dictionary.to_dtype(DType::F32)?;
        let z = candle_nn::ops::softmax(&v.unsqueeze(0)?.matmul(&dict.t()?)?, candle_core::D::Minus1)?;
        let v_hat = z.matmul(&dict)?.squeeze(0)?;
        let cos = |x: &Tensor, t: &Tensor| -> Result<Tensor> { (x * t)?.sum_all()? / x.sqr()?.sum_all()?.sqrt()? };
        texts
            .iter()
            .map(|t| {
                let t = t.to_device(&self.device)?.to_dtype(DType::F32)?.flatten_all()?;
                let t = t.broadcast_div(&t.sqr()?.sum_all()?.sqrt()?)?;
                let s = ((cos(&v, &t)? + cos(&v_hat, &t)?)? * 0.5)?;
                let grads = s.backward()?;
                let g = grads
                    .get(a.as_tensor())
                    .ok_or_else(|| candle_core::Error::Msg("patch_relevance: no gradient reached the tokens".into()))?;
                (g * a.as_tensor())?.sum(candle_core::D::Minus1)?.squeeze(0)?.narrow(0, 1, n)?.to_vec1::<f32>()
            })
            .collect()
    }

    /// ½·[cos(v, t) + cos(v̂, t)] for each prompt, in prompt order.
    pub fn scores(&self, image: &ImageEmbedding, texts: &[TextEmbedding]) -> Result<Vec<f32>> {
        texts.iter().map(|t| score(&image.v, &image.v_hat, &t.t)).collect()
    }
}

/// How many leading tokens BrgSA's `aggregate_tokens` sums: everything up to and including the
/// first `[SEP]`. (Without a `[SEP]` the official loop never flushes its last word, so the
/// tokens of the final word — the last token not starting with "##" and its continuations —
/// are left out.)
pub fn pooled_tokens(tokens: &[String]) -> usize {
    if let Some(p) = tokens.iter().position(|t| t == "[SEP]") {
        return p + 1;
    }
    tokens.iter().rposition(|t| !t.starts_with("##")).unwrap_or(0)
}

/// Cosine similarity of two vectors (any shape, flattened), computed in f64.
pub fn cosine(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let b = b.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if a.len() != b.len() {
        candle_core::bail!("cosine: lengths {} and {} differ", a.len(), b.len());
    }
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    Ok(dot / (na * nb).max(1e-300))
}

/// BrgSA's zero-shot score ½·[cos(v, t) + cos(v̂, t)].
pub fn score(v: &Tensor, v_hat: &Tensor, t: &Tensor) -> Result<f32> {
    Ok((0.5 * (cosine(v, t)? + cosine(v_hat, t)?)) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// A tiny BrgSA: 16-wide ViT with `depth` blocks and patches of 4×4×2, a `bert_layers`-layer
    /// BERT, 12-d embeddings and a 10-entry bank.
    fn tiny_config(depth: usize, img_size: [usize; 3], bert_layers: usize) -> BrgsaConfig {
        BrgsaConfig {
            vision: Vit3dConfig {
                hidden_size: 16,
                depth,
                num_heads: 2,
                mlp_dim: 32,
                patch_size: [4, 4, 2],
                img_size,
                ..Default::default()
            },
            text: serde_json::from_value(serde_json::json!({"vocab_size": 30, "hidden_size": 16, "num_hidden_layers": bert_layers,
                "num_attention_heads": 2, "intermediate_size": 20, "max_position_embeddings": 64}))
            .unwrap(),
            embed_dim: 12,
            bank_size: 10,
            text_max_length: 20,
            text_pool_layers: 2,
        }
    }

    #[test]
    fn pooled_token_count() {
        assert_eq!(pooled_tokens(&s(&["[CLS]", "a", "##b", "[SEP]", "[PAD]"])), 4);
        assert_eq!(pooled_tokens(&s(&["[CLS]", "[SEP]"])), 2);
        assert_eq!(pooled_tokens(&s(&["[CLS]", "a", "b", "##c"])), 2);
    }

    #[test]
    fn tiny_model_runs_and_text_batching_is_consistent() {
        let dev = Device::Cpu;
        let cfg = tiny_config(2, [12, 12, 6], 3);
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let m = Brgsa::load(vb, &cfg).unwrap();
        let x = Tensor::randn(0f32, 1., (1, 1, 16, 16, 8), &dev).unwrap();
        let img = m.encode_image(&x).unwrap();
        assert_eq!(img.grid, [4, 4, 4]);
        assert_eq!(img.v.dims(), &[12]);
        assert_eq!(img.z.dims(), &[10]);
        assert_eq!(img.patch_proj.dims(), &[64, 12]);
        let zsum = img.z.sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((zsum - 1.0).abs() < 1e-5);

        let enc = |ids: &[u32], pad: usize| {
            let n = ids.len();
            let mut tokens: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
            tokens[0] = "[CLS]".into();
            tokens[n - 1] = "[SEP]".into();
            Encoding { ids: ids.to_vec(), type_ids: vec![0; n], attention_mask: vec![1; n], tokens }.padded(n + pad, 0, "[PAD]")
        };
        let prompts = vec![enc(&[2, 5, 6, 3], 16), enc(&[2, 7, 8, 9, 10, 3], 14), enc(&[2, 11, 3], 0)];
        let together = m.encode_texts(&prompts).unwrap();
        for (i, p) in prompts.iter().enumerate() {
            let alone = m.encode_texts(std::slice::from_ref(p)).unwrap().pop().unwrap();
            let d = (&alone.t - &together[i].t).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "prompt {i}: {d}");
        }
        let sc = m.scores(&img, &together).unwrap();
        assert_eq!(sc.len(), 3);
        assert!(sc.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
    }

    /// The score as a plain function of block `layer`'s attention input, without autograd.
    fn score_from(m: &Brgsa, h: &Tensor, normed: &Tensor, layer: usize, t: &Tensor) -> f64 {
        let (cls, _) = m.vision.forward_from_normed(&h.unsqueeze(0).unwrap(), Some(&normed.unsqueeze(0).unwrap()), layer).unwrap();
        let v = m.global_embedder.forward(&cls).unwrap().squeeze(0).unwrap();
        let (_, v_hat) = m.reconstruct(&v).unwrap();
        0.5 * (cosine(&v, t).unwrap() + cosine(&v_hat, t).unwrap())
    }

    #[test]
    fn patch_relevance_matches_finite_differences() {
        let dev = Device::Cpu;
        let cfg = tiny_config(3, [8, 8, 4], 2);
        let varmap = candle_nn::VarMap::new();
        let m = Brgsa::load(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg).unwrap();
        let x = Tensor::randn(0f32, 1., (1, 1, 8, 8, 4), &dev).unwrap();
        let texts = [Tensor::randn(0f32, 1., 12, &dev).unwrap(), Tensor::randn(0f32, 1., 12, &dev).unwrap()];
        for layer in [0, 1, m.default_relevance_layer()] {
            let img = m.encode_images_keeping(&x, layer).unwrap().pop().unwrap();
            assert_eq!(img.hidden.dims(), &[1 + 8, 16]);
            // The kept tokens give back the same embedding.
            let full = m.encode_image(&x).unwrap();
            assert!(cosine(&img.v, &full.v).unwrap() > 1.0 - 1e-6);
            let rel = m.patch_relevance(&img, &texts.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(rel.len(), 2);
            for (k, t) in texts.iter().enumerate() {
                assert_eq!(rel[k].len(), 8);
                assert!(rel[k].iter().any(|r| r.abs() > 1e-4), "layer {layer}: all-zero relevance {:?}", rel[k]);
                let normed = m.vision.attention_input(&img.hidden, layer).unwrap();
                for j in 0..8 {
                    // d/dε score(a with patch j's row scaled by 1 + ε) at ε = 0, by central
                    // differences.
                    let eps = 1e-3;
                    let scaled = |f: f64| {
                        let mut rows = Vec::new();
                        for r in 0..9 {
                            let row = normed.i(r).unwrap();
                            rows.push(if r == j + 1 { (row * f).unwrap() } else { row });
                        }
                        Tensor::stack(&rows, 0).unwrap()
                    };
                    let (hi, lo) = (scaled(1.0 + eps), scaled(1.0 - eps));
                    let fd = (score_from(&m, &img.hidden, &hi, layer, t) - score_from(&m, &img.hidden, &lo, layer, t)) / (2.0 * eps);
                    let got = rel[k][j] as f64;
                    assert!(
                        (fd - got).abs() < 2e-3 * (1.0 + fd.abs()),
                        "layer {layer}, text {k}, patch {j}: grad×act {got}, finite difference {fd}"
                    );
                }
            }
        }
    }
}
