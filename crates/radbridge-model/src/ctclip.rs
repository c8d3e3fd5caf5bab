//! CT-CLIP (`CT_CLIP/ct_clip/ct_clip.py::CTCLIP`, v2 "mean pooling"): latents, temperature and
//! zero-shot scores.
//!
//! - Image: CTViT encoded tokens (b, t, h, w, d) → mean over t → flatten (h, w, d) →
//!   `to_visual_latent` (no bias) → l2-norm.
//! - Text: BERT (`text_transformer`, CXR-BERT in the release) → [CLS] of the last hidden state
//!   → `to_text_latent` (no bias) → l2-norm. BERT's attention mask makes padding irrelevant to
//!   the real tokens, so texts run unpadded (batched to their longest member with a mask).
//! - Logit = cos(image, text) · exp(`temperature`); zero-shot P(present) = softmax over the
//!   pair ("{p} is present.", "{p} is not present.") (`scripts/zero_shot.py`).
//!
//! Checkpoint names (`CT-CLIP_v2.pt`): `visual_transformer.*`, `text_transformer.*`,
//! `to_text_latent.weight`, `to_visual_latent.weight`, `temperature`. The unused
//! `to_*_latent_extra`, `visual_transformer.to_pixels*` and `to_patch_emb_first_frame` tensors
//! may be present and are not read.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::bert::{BertConfig, BertModel};
use super::ctvit::{l2norm, CtVit, CtVitConfig};
use super::text::Encoding;

fn d_latent() -> usize {
    512
}
fn d_text_max() -> usize {
    512
}

/// CT-CLIP configuration: the CTViT, the BERT (Hugging Face `config.json`), the latent width
/// and the tokenizer's maximum length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtClipConfig {
    #[serde(default)]
    pub vision: CtVitConfig,
    #[serde(default)]
    pub text: BertConfig,
    #[serde(default = "d_latent")]
    pub latent_dim: usize,
    #[serde(default = "d_text_max")]
    pub text_max_length: usize,
}

impl Default for CtClipConfig {
    fn default() -> Self {
        Self::ct_clip_v2()
    }
}

impl CtClipConfig {
    /// The dimensions of model.json's `model` section in range (the BERT side is checked with
    /// its config.json).
    pub fn validate(&self) -> std::result::Result<(), crate::error::SettingError> {
        use crate::error::{check_size, MAX_SIDE, MAX_WIDTH};
        self.vision.validate("model.vision")?;
        check_size("model.latent_dim", self.latent_dim, MAX_WIDTH)?;
        check_size("model.text_max_length", self.text_max_length, MAX_SIDE)
    }

    /// `CT-CLIP_v2.pt`: CTViT v2, CXR-BERT-specialized (BERT-base shape), latent 512.
    pub fn ct_clip_v2() -> Self {
        Self { vision: CtVitConfig::ct_clip_v2(), text: BertConfig::default(), latent_dim: 512, text_max_length: 512 }
    }

    /// Input width of `to_visual_latent`: h · w · dim of the token grid.
    pub fn dim_image(&self) -> usize {
        let (h, w) = self.vision.grid();
        h * w * self.vision.dim
    }
}

/// CT-CLIP for inference.
pub struct CtClip {
    visual_transformer: CtVit,
    text_transformer: BertModel,
    to_text_latent: Linear,
    to_visual_latent: Linear,
    temperature: f32,
    cfg: CtClipConfig,
}

impl CtClip {
    /// `vb` at the checkpoint root.
    pub fn load(vb: VarBuilder, cfg: &CtClipConfig) -> Result<Self> {
        let visual_transformer = CtVit::load(vb.pp("visual_transformer"), &cfg.vision)?;
        let text_transformer = BertModel::load(vb.pp("text_transformer"), &cfg.text)?;
        let to_text_latent = candle_nn::linear_no_bias(cfg.text.hidden_size, cfg.latent_dim, vb.pp("to_text_latent"))?;
        let to_visual_latent = candle_nn::linear_no_bias(cfg.dim_image(), cfg.latent_dim, vb.pp("to_visual_latent"))?;
        let temperature = vb.get((), "temperature")?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok(Self { visual_transformer, text_transformer, to_text_latent, to_visual_latent, temperature, cfg: cfg.clone() })
    }

    pub fn config(&self) -> &CtClipConfig {
        &self.cfg
    }

    pub fn visual(&self) -> &CtVit {
        &self.visual_transformer
    }

    pub fn text(&self) -> &BertModel {
        &self.text_transformer
    }

    /// The learned log-temperature (`temperature`; logits are scaled by its exp).
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// Image latents from the CTViT's quantised tokens (b, t, h, w, d): (b, latent_dim).
    pub fn image_latent_from_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, _t, h, w, d) = tokens.dims5()?;
        let pooled = tokens.mean(1)?.reshape((b, h * w * d))?;
        l2norm(&self.to_visual_latent.forward(&pooled)?)
    }

    /// Image latents for preprocessed volumes (b, 1, frames, h, w): (b, latent_dim), unit norm.
    pub fn encode_image(&self, x: &Tensor) -> Result<Tensor> {
        let tokens = self.visual_transformer.forward(x)?;
        self.image_latent_from_tokens(&tokens)
    }

    /// BERT [CLS] features (n, hidden) of the last layer for tokenised texts. Padding is
    /// stripped and the texts are batched to the longest one with an attention mask; [CLS] is
    /// unaffected by padding (masked keys get zero weight).
    pub fn text_cls(&self, encodings: &[Encoding]) -> Result<Tensor> {
        let device = self.text_transformer.device().clone();
        let encs: Vec<Encoding> = encodings.iter().map(|e| e.unpadded()).collect();
        if encs.is_empty() {
            return Tensor::zeros((0, self.cfg.text.hidden_size), DType::F32, &device);
        }
        let max_len = self.cfg.text_max_length.min(self.cfg.text.max_position_embeddings);
        if let Some(e) = encs.iter().find(|e| e.len() > max_len) {
            candle_core::bail!("ct-clip: a text has {} tokens, more than the maximum {max_len}", e.len());
        }
        if let Some(i) = encs.iter().position(|e| e.is_empty()) {
            candle_core::bail!("ct-clip: text {i} has no tokens");
        }
        let l = encs.iter().map(Encoding::len).max().unwrap_or(0);
        let n = encs.len();
        let (mut ids, mut types, mut mask) = (Vec::with_capacity(n * l), Vec::with_capacity(n * l), Vec::with_capacity(n * l));
        for e in &encs {
            let pad = l - e.len();
            ids.extend(e.ids.iter().copied().chain(std::iter::repeat_n(self.cfg.text.pad_token_id, pad)));
            types.extend(e.type_ids.iter().copied().chain(std::iter::repeat_n(0, pad)));
            mask.extend(std::iter::repeat_n(1u32, e.len()).chain(std::iter::repeat_n(0, pad)));
        }
        let ids = Tensor::from_vec(ids, (n, l), &device)?;
        let types = Tensor::from_vec(types, (n, l), &device)?;
        let all_real = encs.iter().all(|e| e.len() == l);
        let mask = if all_real { None } else { Some(Tensor::from_vec(mask, (n, l), &device)?) };
        let states = self.text_transformer.forward(&ids, Some(&types), mask.as_ref())?;
        let last = states.last().expect("BERT returns at least the embeddings");
        last.narrow(1, 0, 1)?.squeeze(1)
    }

    /// Text latents (n, latent_dim), unit norm, one row per encoding.
    pub fn text_latents(&self, encodings: &[Encoding]) -> Result<Tensor> {
        let cls = self.text_cls(encodings)?;
        l2norm(&self.to_text_latent.forward(&cls)?)
    }

    /// Text latents, one (latent_dim,) tensor per encoding.
    pub fn encode_texts(&self, encodings: &[Encoding]) -> Result<Vec<Tensor>> {
        let t = self.text_latents(encodings)?;
        (0..encodings.len()).map(|i| t.get(i)).collect()
    }

    /// cos(image, text) · exp(temperature) for one image latent and one text latent (each
    /// (latent_dim,) or (1, latent_dim)).
    pub fn logit(&self, image: &Tensor, text: &Tensor) -> Result<f32> {
        let a = image.flatten_all()?.to_dtype(DType::F32)?;
        let b = text.flatten_all()?.to_dtype(DType::F32)?;
        let cos = (a * b)?.sum_all()?.to_scalar::<f32>()?;
        Ok(cos * self.temperature.exp())
    }

    /// Logits (n_images, n_texts) for latents (n_images, d) and (n_texts, d).
    pub fn logits(&self, images: &Tensor, texts: &Tensor) -> Result<Tensor> {
        images.matmul(&texts.t()?)? * (self.temperature.exp() as f64)
    }

    /// Zero-shot probability that a finding is present: softmax over the two logits of
    /// ("… is present.", "… is not present."), first entry.
    pub fn p_present(&self, image: &Tensor, present: &Tensor, absent: &Tensor) -> Result<f32> {
        let lp = self.logit(image, present)?;
        let la = self.logit(image, absent)?;
        Ok(softmax_pair(lp, la))
    }

    /// Zero-shot probabilities for many labels: `pairs` (n, 2, d) or two (n, d) tensors of
    /// present/absent latents → (n,) P(present).
    pub fn p_present_batch(&self, image: &Tensor, present: &Tensor, absent: &Tensor) -> Result<Vec<f32>> {
        let img = image.flatten_all()?.unsqueeze(0)?;
        let lp = self.logits(&img, present)?.squeeze(0)?;
        let la = self.logits(&img, absent)?.squeeze(0)?;
        let l = Tensor::stack(&[&lp, &la], D::Minus1)?;
        let p = candle_nn::ops::softmax_last_dim(&l)?;
        p.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?.to_dtype(DType::F32)?.to_vec1::<f32>()
    }
}

/// softmax([a, b])[0], computed stably.
pub fn softmax_pair(a: f32, b: f32) -> f32 {
    let m = a.max(b);
    let (ea, eb) = ((a - m).exp(), (b - m).exp());
    ea / (ea + eb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_pair_basics() {
        assert!((softmax_pair(0.0, 0.0) - 0.5).abs() < 1e-7);
        assert!((softmax_pair(1000.0, 0.0) - 1.0).abs() < 1e-7);
        let (a, b) = (2.5f32, -1.0f32);
        let e = a.exp() / (a.exp() + b.exp());
        assert!((softmax_pair(a, b) - e).abs() < 1e-7);
    }

    #[test]
    fn config_from_partial_json() {
        let c: CtClipConfig = serde_json::from_str(
            r#"{"vision": {"dim": 64, "patch_size": 4, "image_size": [16, 16], "ff_inner": 170},
                "text": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4},
                "latent_dim": 24}"#,
        )
        .unwrap();
        assert_eq!(c.vision.temporal_patch_size, 10);
        assert_eq!(c.vision.ff_inner(), 170);
        assert_eq!(c.dim_image(), 4 * 4 * 64);
        assert_eq!(c.text_max_length, 512);
        assert_eq!(CtClipConfig::default().dim_image(), 294912);
    }
}
