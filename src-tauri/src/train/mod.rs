//! Training the demo model: the synthetic corpus (`synth`) and, later, the trainer.

pub mod config;
pub mod data;
pub mod loss;
pub mod mae;
pub mod optim;
pub mod synth;
pub mod trainer;
pub mod vocab;
