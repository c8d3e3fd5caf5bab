//! Radbridge's model layer: everything between a loaded CT volume and a scored finding.
//!
//! - `preprocess`: the exact input preprocessing of each model (resample, crop/pad, HU window).
//! - `zeroshot`, `bank`, `heatmap`: scoring rules, the cross-modal knowledge bank in words,
//!   and where a finding fires.
//! - `analysis`: the [`analysis::Engine`], a loaded model directory that diagnoses a volume.
//! - `bench`: model and loader benchmarks (peer ratios, never timed assertions).
//! - `error`: [`ModelError`], the layer's one error type (file named, cause kept as source).
//!
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

pub mod analysis;
pub mod attention;
pub mod bank;
pub mod bench;
pub mod bert;
pub mod brgsa;
pub mod checkpoint;
pub mod ctclip;
pub mod ctvit;
pub mod device;
pub mod error;
pub mod heatmap;
pub mod package;
pub mod pickle;
pub mod preprocess;
pub mod retrieval;
pub mod text;
pub mod vit3d;
pub mod zeroshot;

pub use error::ModelError;
