//! The models, in candle, in the style of candle-transformers: a serde `Config`, `load(vb,
//! &cfg)` constructors whose VarBuilder paths mirror the official PyTorch names, and `forward`.
//!
//! - BrgSA (Lai et al. 2025): `vit3d` (3-D ViT image encoder), `bert` (BERT exposing every
//!   layer's output) + `text` (BrgSA's prompt cleaning and tokenisation), `brgsa` (projections,
//!   the cross-modal knowledge bank, scores).
//! - CT-CLIP: `ctvit` (CTViT encoder + VQ), `ctclip` (latents, temperature, scores).
//! - `attention`: memory-bounded attention shared by both.
//! - `checkpoint`: reading official PyTorch / safetensors checkpoints and validating keys;
//!   `package`: model directories (`model.json` + weights + tokenizer).

pub mod attention;
pub mod bert;
pub mod brgsa;
pub mod checkpoint;
pub mod ctclip;
pub mod ctvit;
pub mod package;
pub mod text;
pub mod vit3d;
