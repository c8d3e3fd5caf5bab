//! BERT (Hugging Face `BertModel` layout) returning every hidden state: the embeddings output
//! followed by the output of each encoder layer, as `output_hidden_states=True` does.
//!
//! VarBuilder paths (relative to the model prefix, e.g. `text_encoder.model` in BrgSA or
//! `text_transformer` in CT-CLIP): `embeddings.{word_embeddings, position_embeddings,
//! token_type_embeddings, LayerNorm}`, `encoder.layer.{i}.attention.self.{query,key,value}`,
//! `.attention.output.{dense,LayerNorm}`, `.intermediate.dense`, `.output.{dense,LayerNorm}`,
//! and the optional `pooler.dense` (loaded only when present). LayerNorm `gamma`/`beta` names
//! from old checkpoints are accepted too. `embeddings.position_ids`, if present, is ignored.
//!
//! Padding: with an attention mask, masked keys get the most negative finite value added to
//! their scores, as Hugging Face does, so they receive exactly zero weight and the outputs of
//! the real tokens equal those of the same sequence run unpadded (absolute positions start at 0
//! and padding is on the right). Callers may therefore run short sequences unpadded, or pad a
//! batch only to its longest member.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::attention;

/// Activation of the intermediate layer (`hidden_act` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact GELU, x·Φ(x) with erf (Hugging Face "gelu").
    Gelu,
    /// tanh approximation ("gelu_new", "gelu_pytorch_tanh", "gelu_fast").
    #[serde(alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    Relu,
    #[serde(alias = "swish")]
    Silu,
}

impl HiddenAct {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gelu => x.gelu_erf(),
            Self::GeluNew => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn d_maxpos() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_pos_type() -> String {
    "absolute".to_string()
}

/// The fields of a Hugging Face BERT `config.json` that the forward pass needs; other fields
/// (architectures, dropout rates, `model_type`, projection sizes, …) are ignored. Missing
/// fields take Hugging Face's `BertConfig` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: HiddenAct,
    #[serde(default = "d_maxpos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    /// Only "absolute" is supported.
    #[serde(default = "d_pos_type")]
    pub position_embedding_type: String,
}

impl Default for BertConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl BertConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_json_file(path: impl AsRef<std::path::Path>) -> std::result::Result<Self, crate::error::ModelError> {
        use crate::error::ModelError;
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(ModelError::io(path, "cannot read"))?;
        let cfg: BertConfig = serde_json::from_str(&text).map_err(ModelError::json(path, "invalid BERT config"))?;
        cfg.validate().map_err(|e| e.in_file(path))?;
        Ok(cfg)
    }

    /// Every dimension in range.
    pub fn validate(&self) -> std::result::Result<(), crate::error::SettingError> {
        use crate::error::{check_positive, check_size, SettingError, MAX_DEPTH, MAX_SIDE, MAX_WIDTH};
        check_size("vocab_size", self.vocab_size, MAX_WIDTH)?;
        check_size("hidden_size", self.hidden_size, MAX_WIDTH)?;
        check_size("num_hidden_layers", self.num_hidden_layers, MAX_DEPTH)?;
        check_size("num_attention_heads", self.num_attention_heads, MAX_DEPTH)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(SettingError::new(
                "num_attention_heads",
                format!("{} does not divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        check_size("intermediate_size", self.intermediate_size, MAX_WIDTH)?;
        check_size("max_position_embeddings", self.max_position_embeddings, MAX_SIDE)?;
        check_size("type_vocab_size", self.type_vocab_size, MAX_DEPTH)?;
        check_positive("layer_norm_eps", self.layer_norm_eps)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// A LayerNorm stored as `weight`/`bias` or (old TensorFlow-converted files) `gamma`/`beta`.
fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    candle_nn::layer_norm(size, eps, vb)
}

#[derive(Debug, Clone)]
struct BertEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl BertEmbeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word: candle_nn::embedding(cfg.vocab_size, h, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(cfg.max_position_embeddings, h, vb.pp("position_embeddings"))?,
            token_type: candle_nn::embedding(cfg.type_vocab_size, h, vb.pp("token_type_embeddings"))?,
            norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: Option<&Tensor>) -> Result<Tensor> {
        let (_b, l) = input_ids.dims2()?;
        let max_pos = self.position.embeddings().dim(0)?;
        if l > max_pos {
            candle_core::bail!("bert: sequence of {l} tokens exceeds max_position_embeddings {max_pos}");
        }
        let dev = input_ids.device();
        let words = self.word.forward(input_ids)?;
        let types = match token_type_ids {
            Some(t) => self.token_type.forward(t)?,
            None => self.token_type.forward(&Tensor::zeros(input_ids.shape(), DType::U32, dev)?)?,
        };
        let positions = self.position.forward(&Tensor::arange(0u32, l as u32, dev)?)?;
        let x = (words + types)?.broadcast_add(&positions)?;
        attention::layer_norm(&self.norm, &x)
    }
}

#[derive(Debug, Clone)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    num_heads: usize,
    act: HiddenAct,
}

impl BertLayer {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let sa = att.pp("self");
        Ok(Self {
            query: candle_nn::linear(h, h, sa.pp("query"))?,
            key: candle_nn::linear(h, h, sa.pp("key"))?,
            value: candle_nn::linear(h, h, sa.pp("value"))?,
            attn_out: candle_nn::linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: layer_norm(h, cfg.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: candle_nn::linear(h, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: candle_nn::linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            num_heads: cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let nh = self.num_heads;
        let hd = x.dim(2)? / nh;
        let q = attention::split_heads(&self.query.forward(x)?, nh)?;
        let k = attention::split_heads(&self.key.forward(x)?, nh)?;
        let v = attention::split_heads(&self.value.forward(x)?, nh)?;
        let a = attention::scaled_dot_product_attention(&q, &k, &v, 1.0 / (hd as f64).sqrt(), bias)?;
        let a = self.attn_out.forward(&attention::merge_heads(&a)?)?;
        let x = attention::layer_norm(&self.attn_norm, &(a + x)?)?;
        let m = self.act.apply(&self.intermediate.forward(&x)?)?;
        let m = self.output.forward(&m)?;
        attention::layer_norm(&self.out_norm, &(m + x)?)
    }
}

/// BERT encoder exposing all hidden states.
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Option<Linear>,
    cfg: BertConfig,
    device: Device,
    dtype: DType,
}

impl BertModel {
    /// Loads the encoder from `vb` (pointing at the module that holds `embeddings.*`,
    /// `encoder.*`). `pooler.dense` is loaded only if the VarBuilder has it.
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        if cfg.position_embedding_type != "absolute" {
            candle_core::bail!("bert: position_embedding_type {:?} is not supported", cfg.position_embedding_type);
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!(
                "bert: hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        let embeddings = BertEmbeddings::load(vb.pp("embeddings"), cfg)?;
        let layers =
            (0..cfg.num_hidden_layers).map(|i| BertLayer::load(vb.pp("encoder").pp("layer").pp(i), cfg)).collect::<Result<Vec<_>>>()?;
        let pooler = if vb.contains_tensor("pooler.dense.weight") {
            Some(candle_nn::linear(cfg.hidden_size, cfg.hidden_size, vb.pp("pooler").pp("dense"))?)
        } else {
            None
        };
        Ok(Self { embeddings, layers, pooler, cfg: cfg.clone(), device: vb.device().clone(), dtype: vb.dtype() })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Runs the encoder. `input_ids` and `token_type_ids` are (B, L) integer tensors (u32 or
    /// i64); `attention_mask` (B, L) has 1 for real tokens, 0 for padding (`None` = all real).
    /// Returns `num_hidden_layers + 1` tensors of shape (B, L, hidden): the embeddings output,
    /// then each layer's output (Hugging Face's `hidden_states`; the last one is
    /// `last_hidden_state`).
    pub fn forward(&self, input_ids: &Tensor, token_type_ids: Option<&Tensor>, attention_mask: Option<&Tensor>) -> Result<Vec<Tensor>> {
        let input_ids = input_ids.to_dtype(DType::U32)?;
        let token_type_ids = token_type_ids.map(|t| t.to_dtype(DType::U32)).transpose()?;
        let bias = match attention_mask {
            Some(m) => Some(attention::key_padding_bias(m, self.dtype)?),
            None => None,
        };
        let mut h = self.embeddings.forward(&input_ids, token_type_ids.as_ref())?;
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            let next = layer.forward(&h, bias.as_ref())?;
            states.push(h);
            h = next;
        }
        states.push(h);
        Ok(states)
    }

    /// Hugging Face's `pooler_output`: tanh(dense(hidden[:, 0])), when the checkpoint has a
    /// pooler.
    pub fn pool(&self, last_hidden_state: &Tensor) -> Result<Option<Tensor>> {
        match &self.pooler {
            Some(p) => Ok(Some(p.forward(&last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()?)),
            None => Ok(None),
        }
    }

    pub fn has_pooler(&self) -> bool {
        self.pooler.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    fn tiny() -> BertConfig {
        serde_json::from_str(
            r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 4, "intermediate_size": 24, "hidden_act": "gelu",
                "max_position_embeddings": 40, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                "pad_token_id": 0, "model_type": "bert", "architectures": ["BertModel"],
                "hidden_dropout_prob": 0.1}"#,
        )
        .unwrap()
    }

    #[test]
    fn config_defaults_and_extra_fields() {
        let d = BertConfig::default();
        assert_eq!((d.vocab_size, d.hidden_size, d.num_hidden_layers, d.hidden_act), (30522, 768, 12, HiddenAct::Gelu));
        let c: BertConfig = serde_json::from_str(r#"{"hidden_act": "gelu_pytorch_tanh", "projection_size": 128}"#).unwrap();
        assert_eq!(c.hidden_act, HiddenAct::GeluNew);
    }

    #[test]
    fn padded_and_unpadded_real_tokens_agree() {
        let dev = Device::Cpu;
        let cfg = tiny();
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let bert = BertModel::load(vb, &cfg).unwrap();
        let ids = [2u32, 7, 9, 11, 3];
        let short = Tensor::new(&ids[..], &dev).unwrap().unsqueeze(0).unwrap();
        let unpadded = bert.forward(&short, None, None).unwrap();
        assert_eq!(unpadded.len(), 3);
        let mut padded_ids = ids.to_vec();
        padded_ids.extend([0u32; 6]);
        let mut mask = vec![1u32; 5];
        mask.extend([0u32; 6]);
        let ids_t = Tensor::new(padded_ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let mask_t = Tensor::new(mask.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let types = Tensor::zeros((1, 11), DType::U32, &dev).unwrap();
        let padded = bert.forward(&ids_t, Some(&types), Some(&mask_t)).unwrap();
        for (a, b) in unpadded.iter().zip(&padded) {
            let d =
                (a - b.i((.., 0..5)).unwrap()).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "{d}");
        }
    }
}
