//! One module per subcommand: its clap arguments and its `run`. Shared pieces (the loading
//! flags, progress bars, prompt files) live in `common`.

pub mod bank;
pub mod batch;
pub mod bench;
pub mod common;
pub mod convert;
pub mod diagnose;
pub mod embed;
pub mod eval;
pub mod feedback;
pub mod import_checkpoint;
pub mod inspect;
pub mod library;
pub mod pacs;
pub mod preprocess;
pub mod report;
pub mod search;
pub mod summarize;
pub mod synth;
pub mod train;
