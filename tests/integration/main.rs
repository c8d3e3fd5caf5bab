//! The integration tests: one binary, a module per area. They run the `radbridge` CLI built in
//! the same target folder (`make test` builds it first) and the core crates directly, against
//! reference values from the Python readers and PyTorch (`tests/reference/`).

mod analysis;
mod architecture;
mod bad_input;
mod bank_site_words;
mod batch;
mod brgsa_model;
mod checkpoint;
mod cli;
mod corrupt_corpus;
mod ctclip_model;
mod dimse;
mod eval;
mod feedback;
mod library;
mod measure;
mod pacs;
mod preprocess;
mod readers;
mod report;
mod series;
mod slurm;
mod summarize;
mod synth;
mod train;
