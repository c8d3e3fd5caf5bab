//! Cohorts: one model over many studies, resumable, sharded over a cluster's job array.
//!
//! `radbridge batch` is the command-line face. A run is a [`plan`] (the studies, in manifest
//! order, each with a file-safe name), a [`Shard`] of it (study k belongs to shard k mod N),
//! and an output folder that N shards may share on a shared file system:
//!
//! ```text
//! <OUT>/studies/<safe>.json                 each study's `diagnose --json` record (the marker of a finished study)
//! <OUT>/parts/embeddings/<safe>.safetensors its image embeddings (BrgSA: v, v_hat; CT-CLIP: latent)
//! <OUT>/parts/failures/<safe>.json          a study that failed: id, path, the named error
//! <OUT>/parts/shard-<I>-of-<N>.json         what shard I was asked to do and what it did
//! <OUT>/scores.csv, embeddings.safetensors, failures.csv, run.json   built by [`merge`]
//! ```
//!
//! Every file is written atomically, and a study's record is written last, so a run killed at
//! any moment leaves no half-written file and loses no finished study; the next run skips
//! every study whose record matches the model checksum and prompts ([`run`]).

mod embeddings;
mod error;
mod layout;
mod merge;
pub mod pacs;
mod plan;
mod results;
mod run;
mod shard;

pub use embeddings::{read_embeddings, EmbeddingsWriter};
pub use error::BatchError;
pub use layout::{Layout, ModelRef, Settings, ShardRecord};
pub use merge::{merge, MergeResult};
pub use plan::{plan, safe_names, Source, Study};
pub use results::{read_cohort, study_results, Cohort, StudyResult};
pub use run::{run, BatchOptions, Event, RunStats};
pub use shard::Shard;
