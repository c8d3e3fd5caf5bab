//! The training configuration (`radbridge train --config <FILE>`): the model geometry, the
//! preprocessing the model is trained and run with, the BrgSA objective's weights, the
//! optimiser, and the data pipeline. Every field has a default; a config file only needs the
//! fields it changes. The defaults of the optimiser and the objective are the official ones
//! (spec §4): Adam lr 5e-5, betas (0.5, 0.999), weight decay 1e-6 as L2, gradient clipping at a
//! global norm of 0.25, temperature 10, weights 1 / 1 / 0.5.

use std::path::Path;

use serde::{Deserialize, Serialize};

use radbridge_model::bert::BertConfig;
use radbridge_model::brgsa::BrgsaConfig;
use radbridge_model::preprocess::PreprocessConfig;
use radbridge_model::vit3d::Vit3dConfig;

/// Errors reading or checking a training configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: invalid training config: {reason}")]
    Invalid { path: std::path::PathBuf, reason: String },
    /// The file parses but its values do not fit together.
    #[error("{path}: invalid training config")]
    Validation {
        path: std::path::PathBuf,
        #[source]
        source: ValidationError,
    },
}

/// Why a configuration's values do not fit together (the first problem found), e.g.
/// "batch_size must be at least 2 (the contrastive loss needs negatives)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl From<String> for ValidationError {
    fn from(reason: String) -> Self {
        ValidationError(reason)
    }
}

impl From<&str> for ValidationError {
    fn from(reason: &str) -> Self {
        ValidationError(reason.to_string())
    }
}

/// Which summary sentences a case's training text is sampled from (`text_sentences`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSentences {
    /// All of them ("summary").
    #[default]
    Summary,
    /// Only those stating a finding present or possible ("findings").
    Findings,
}

/// Initialisation of weight matrices (`init`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightInit {
    /// Normal, std 0.02 (BERT / timm): "normal_0.02".
    #[default]
    #[serde(rename = "normal_0.02")]
    Normal,
    /// Normal, std 1/√fan_in: "fan_in".
    #[serde(rename = "fan_in")]
    FanIn,
}

impl WeightInit {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightInit::Normal => "normal_0.02",
            WeightInit::FanIn => "fan_in",
        }
    }
}

/// The masked-image pre-training stage (`pretrain` in the training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaeConfig {
    /// Optimiser steps.
    pub steps: usize,
    pub batch_size: usize,
    /// Fraction of the patch tokens dropped from the encoder's input (MAE: 0.75).
    pub mask_ratio: f64,
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
    /// Normalise each target patch to zero mean and unit variance (MAE's `norm_pix_loss`).
    pub norm_pix: bool,
    /// Adam for this stage (MAE: lr 1.5e-4·batch/256 with betas (0.9, 0.95)).
    pub optim: OptimConfig,
}

impl Default for MaeConfig {
    fn default() -> Self {
        MaeConfig {
            steps: 2000,
            batch_size: 16,
            mask_ratio: 0.75,
            decoder_dim: 64,
            decoder_depth: 1,
            decoder_heads: 4,
            norm_pix: true,
            optim: OptimConfig { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0, clip_norm: 1.0, warmup_steps: 100 },
        }
    }
}

impl MaeConfig {
    /// Checks the stage against the ViT it pre-trains; the reason when it does not fit.
    pub fn validate(&self, vision: &Vit3dConfig, crop: [usize; 3]) -> Result<(), ValidationError> {
        if self.steps == 0 || self.batch_size == 0 {
            return Err("pretrain.steps and pretrain.batch_size must be at least 1".into());
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return Err(format!("pretrain.mask_ratio {} must lie strictly between 0 and 1", self.mask_ratio).into());
        }
        if self.decoder_heads == 0 || !self.decoder_dim.is_multiple_of(self.decoder_heads) {
            return Err(format!(
                "pretrain.decoder_dim {} is not a multiple of pretrain.decoder_heads {}",
                self.decoder_dim, self.decoder_heads
            )
            .into());
        }
        if self.decoder_dim < 6 {
            return Err("pretrain.decoder_dim must be at least 6 (3-D sin-cos positions)".into());
        }
        let n: usize = vision.grid_for(crop).iter().product();
        if self.kept(n) == 0 || self.kept(n) == n {
            return Err(format!("pretrain.mask_ratio {} keeps none or all of the {n} patches", self.mask_ratio).into());
        }
        Ok(())
    }

    /// Patch tokens kept (unmasked) out of `n`.
    pub fn kept(&self, n: usize) -> usize {
        ((n as f64) * (1.0 - self.mask_ratio)).round() as usize
    }

    pub(crate) fn decoder_vit(&self, vision: &Vit3dConfig) -> Vit3dConfig {
        Vit3dConfig {
            hidden_size: self.decoder_dim,
            depth: self.decoder_depth,
            num_heads: self.decoder_heads,
            mlp_dim: 4 * self.decoder_dim,
            ..vision.clone()
        }
    }
}

/// Weights and temperature of the BrgSA objective (spec §4):
/// L = global·(CE_i2t + CE_t2i)(T·cos(v,t)) + recon·(CE_i2t + CE_t2i)(T·cos(v̂,t̂))
///   + mse·(MSE(v̂,v) + MSE(t̂,t)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossConfig {
    /// `global_loss_weight` (β).
    pub global_weight: f64,
    /// `global_recon_loss_weight` (γ).
    pub recon_weight: f64,
    /// `mse_loss_weight` (α).
    pub mse_weight: f64,
    /// `temp3`: cosine similarities are multiplied by it before the cross-entropy.
    pub temperature: f64,
    /// Lower bound on |a|·|b| in the cosine (GLoRIA's `eps`).
    pub eps: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { global_weight: 1.0, recon_weight: 1.0, mse_weight: 0.5, temperature: 10.0, eps: 1e-8 }
    }
}

/// torch `Adam` (weight decay added to the gradient, L2 style) with global-norm clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (Lightning `gradient_clip_val`); 0 disables it.
    pub clip_norm: f64,
    /// Linear learning-rate warm-up over this many steps (0 = none; the official run has none).
    pub warmup_steps: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig { lr: 5e-5, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6, clip_norm: 0.25, warmup_steps: 0 }
    }
}

/// The word-piece vocabulary built from the training text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VocabConfig {
    /// Whole words seen at least this often become vocabulary entries; every other word is
    /// split into known pieces (down to single characters, which are always present).
    pub min_count: usize,
    /// Upper bound on the vocabulary size (most frequent words kept).
    pub max_size: usize,
}

impl Default for VocabConfig {
    fn default() -> Self {
        VocabConfig { min_count: 2, max_size: 8000 }
    }
}

/// The training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Model name written to model.json.
    pub name: String,
    pub vision: Vit3dConfig,
    /// BERT geometry (vocab_size is replaced by the size of the built vocabulary).
    pub text: BertConfig,
    pub embed_dim: usize,
    pub bank_size: usize,
    /// Prompt / training-text length in tokens (also the pooling divisor, as in BrgSA).
    pub text_max_length: usize,
    pub text_pool_layers: usize,
    /// How each volume becomes a model input (cached once before training).
    pub preprocess: PreprocessConfig,
    /// Random crop of the cached input used for training (the official RandSpatialCrop);
    /// `vision.img_size` should equal it so the position embedding is used at its own grid.
    pub crop: [usize; 3],
    /// Sentences sampled (without replacement) per case and step (the paper's merge_num).
    pub merge_num: usize,
    /// Which summary sentences a case's training text is sampled from: "summary" (all of
    /// them, as the official loader samples the GPT-4o summary) or "findings" (only those
    /// stating a finding present or possible; a report with none becomes "There is no
    /// abnormality."). A model trained from scratch cannot learn negation from a few thousand
    /// reports, so "There is no effusion" would teach it that "effusion" goes with a normal
    /// pleura; "findings" removes that contradiction.
    pub text_sentences: TextSentences,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// Keep the position embedding at its 3-D sin-cos initialisation (the official model
    /// interpolates it under `no_grad`, so it never receives gradients).
    pub freeze_pos_embed: bool,
    /// Use at most this many training cases (0 = all).
    pub max_cases: usize,
    /// Initialisation of weight matrices: "normal_0.02" (BERT / timm: normal, std 0.02) or
    /// "fan_in" (normal, std 1/√fan_in, which keeps activations of a model trained from
    /// scratch at unit scale). Embedding tables and tokens always use std 0.02.
    pub init: WeightInit,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub vocab: VocabConfig,
    /// Masked-image pre-training of the ViT before the BrgSA objective (the warm start the
    /// official run takes from an M3AE checkpoint; see `train::mae`). Absent: from scratch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<MaeConfig>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        let mut preprocess = PreprocessConfig::brgsa();
        preprocess.target_spacing = [5.6, 5.6, 10.0];
        preprocess.target_shape = [64, 64, 32];
        // Synthetic volumes may be float; keep ITK's cast only where the source is integer.
        TrainConfig {
            name: "brgsa-demo".into(),
            vision: Vit3dConfig {
                hidden_size: 128,
                depth: 4,
                num_heads: 4,
                mlp_dim: 512,
                patch_size: [8, 8, 4],
                img_size: [56, 56, 28],
                ..Default::default()
            },
            text: serde_json::from_value(serde_json::json!({
                "vocab_size": 1000, "hidden_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 512, "max_position_embeddings": 128,
                "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0
            }))
            .expect("default BERT config"),
            embed_dim: 128,
            bank_size: 256,
            text_max_length: 64,
            text_pool_layers: 2,
            preprocess,
            crop: [56, 56, 28],
            merge_num: 5,
            text_sentences: TextSentences::Summary,
            batch_size: 16,
            epochs: 10,
            seed: 1,
            freeze_pos_embed: true,
            max_cases: 0,
            init: WeightInit::Normal,
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            vocab: VocabConfig::default(),
            pretrain: None,
        }
    }
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        let cfg: TrainConfig =
            serde_json::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?;
        cfg.validate().map_err(|source| ConfigError::Validation { path: path.to_path_buf(), source })?;
        Ok(cfg)
    }

    /// Checks the geometry fits together; returns the reason when it does not.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let v = &self.vision;
        if v.num_heads == 0 || !v.hidden_size.is_multiple_of(v.num_heads) {
            return Err(format!("vision.hidden_size {} is not a multiple of vision.num_heads {}", v.hidden_size, v.num_heads).into());
        }
        if self.text.num_attention_heads == 0 || !self.text.hidden_size.is_multiple_of(self.text.num_attention_heads) {
            return Err("text.hidden_size is not a multiple of text.num_attention_heads".into());
        }
        for a in 0..3 {
            if self.crop[a] == 0 || self.crop[a] > self.preprocess.target_shape[a] {
                return Err(
                    format!("crop {:?} must fit inside preprocess.target_shape {:?}", self.crop, self.preprocess.target_shape).into()
                );
            }
            if self.crop[a] < v.patch_size[a] {
                return Err(format!("crop {:?} is smaller than one patch {:?}", self.crop, v.patch_size).into());
            }
        }
        if self.preprocess.output_axes != [0, 1, 2] {
            return Err("preprocess.output_axes must be [0, 1, 2] for BrgSA".into());
        }
        self.preprocess.validate().map_err(|e| e.to_string())?;
        if self.batch_size < 2 {
            return Err("batch_size must be at least 2 (the contrastive loss needs negatives)".into());
        }
        if self.merge_num == 0 || self.epochs == 0 {
            return Err("merge_num and epochs must be at least 1".into());
        }
        if self.text_max_length < 3 || self.text_max_length > self.text.max_position_embeddings {
            return Err(format!(
                "text_max_length {} must be in 3..={} (text.max_position_embeddings)",
                self.text_max_length, self.text.max_position_embeddings
            )
            .into());
        }
        if self.text_pool_layers == 0 || self.text_pool_layers > self.text.num_hidden_layers + 1 {
            return Err("text_pool_layers must be in 1..=text.num_hidden_layers + 1".into());
        }
        if self.embed_dim == 0 || self.bank_size == 0 {
            return Err("embed_dim and bank_size must be positive".into());
        }
        if let Some(p) = &self.pretrain {
            p.validate(&self.vision, self.crop)?;
        }
        Ok(())
    }

    /// The model geometry for a vocabulary of `vocab_size` entries.
    pub fn brgsa_config(&self, vocab_size: usize) -> BrgsaConfig {
        let mut text = self.text.clone();
        text.vocab_size = vocab_size;
        BrgsaConfig {
            vision: self.vision.clone(),
            text,
            embed_dim: self.embed_dim,
            bank_size: self.bank_size,
            text_max_length: self.text_max_length,
            text_pool_layers: self.text_pool_layers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_official_where_stated() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.optim,
            OptimConfig { lr: 5e-5, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay: 1e-6, clip_norm: 0.25, warmup_steps: 0 }
        );
        assert_eq!((c.loss.global_weight, c.loss.recon_weight, c.loss.mse_weight, c.loss.temperature), (1.0, 1.0, 0.5, 10.0));
        // Partial files take the defaults for the rest.
        let p: TrainConfig = serde_json::from_str(r#"{"epochs": 3, "optim": {"lr": 0.001}}"#).unwrap();
        assert_eq!((p.epochs, p.optim.lr, p.optim.beta1), (3, 0.001, 0.5));
        let bad = TrainConfig { crop: [80, 56, 28], ..Default::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn text_sentences_and_init_keep_their_strings() {
        let c: TrainConfig = serde_json::from_str(r#"{"text_sentences": "findings", "init": "fan_in"}"#).unwrap();
        assert_eq!((c.text_sentences, c.init), (TextSentences::Findings, WeightInit::FanIn));
        let v = serde_json::to_value(TrainConfig::default()).unwrap();
        assert_eq!((v["text_sentences"].as_str(), v["init"].as_str()), (Some("summary"), Some("normal_0.02")));
        assert_eq!(WeightInit::FanIn.as_str(), "fan_in");
        for bad in [r#"{"text_sentences": "all"}"#, r#"{"init": "xavier"}"#] {
            assert!(serde_json::from_str::<TrainConfig>(bad).is_err(), "{bad}");
        }
    }
}
