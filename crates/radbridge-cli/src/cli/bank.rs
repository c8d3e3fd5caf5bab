//! `radbridge bank describe`: name each knowledge-bank entry by the corpus sentences that
//! weight it most; writes bank.json into the model directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct BankArgs {
    #[command(subcommand)]
    what: BankCommand,
}

#[derive(Subcommand)]
enum BankCommand {
    /// Name each bank entry by the corpus sentences that weight it most; writes bank.json into the model
    Describe {
        #[arg(long)]
        model: PathBuf,
        /// Sentences, one per line: a JSON string, or an object with "text" (or "sentence").
        /// Default: the bundled corpus of summarised CT-RATE validation reports
        /// (models/corpus/ct-rate-valid-sentences.jsonl, CC-BY-NC-SA 4.0)
        #[arg(long)]
        corpus: Option<PathBuf>,
    },
}

pub fn run(a: &BankArgs) -> Result<()> {
    match &a.what {
        BankCommand::Describe { model, corpus } => bank_describe(model, corpus.as_deref()),
    }
}

fn bank_describe(model: &Path, corpus: Option<&Path>) -> Result<()> {
    use radbridge_model::analysis::{Engine, TextCode};
    let bundled;
    let (corpus, corpus_name) = match corpus {
        Some(c) => (c, c.display().to_string()),
        None => {
            bundled = radbridge_model::bank::find_bundled_corpus(Some(model)).with_context(|| {
                format!(
                    "the bundled corpus {} was not found (set RADBRIDGE_CORPUS or give --corpus)",
                    radbridge_model::bank::BUNDLED_CORPUS
                )
            })?;
            (bundled.as_path(), radbridge_model::bank::BUNDLED_CORPUS.to_string())
        }
    };
    let meta = radbridge_model::bank::CorpusMeta::load(corpus)?.unwrap_or_default();
    let text = std::fs::read_to_string(corpus).with_context(|| format!("{}: cannot read corpus", corpus.display()))?;
    let mut sentences = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", corpus.display(), n + 1))?;
        let s = match &v {
            serde_json::Value::String(s) => s.clone(),
            o => o
                .get("text")
                .or_else(|| o.get("sentence"))
                .and_then(|x| x.as_str())
                .map(String::from)
                .with_context(|| format!("{}:{}: no \"text\"", corpus.display(), n + 1))?,
        };
        sentences.push(s);
    }
    anyhow::ensure!(!sentences.is_empty(), "{}: no sentences", corpus.display());
    let mut engine = Engine::load(model)?;
    anyhow::ensure!(engine.arch() == radbridge_model::checkpoint::Arch::Brgsa, "{}: only BrgSA has a knowledge bank", model.display());
    let codes = engine.embed_prompts(&sentences)?;
    let z: Vec<Vec<f32>> = codes
        .into_iter()
        .map(|c| match c {
            TextCode::Brgsa { z, .. } => z,
            TextCode::Ctclip { .. } => unreachable!(),
        })
        .collect();
    let bank_size = z.first().map(|v| v.len()).unwrap_or(0);
    let mut d = radbridge_model::bank::BankDescriptions::from_weights(&corpus_name, &sentences, &z, bank_size);
    d.corpus_license = meta.license;
    d.corpus_source = meta.source;
    let out = model.join("bank.json");
    super::common::write_file(&out, serde_json::to_string_pretty(&d)? + "\n")?;
    let mut pkg = engine.package.clone();
    pkg.manifest.bank = Some("bank.json".into());
    pkg.write_manifest()?;
    eprintln!("wrote {}: {} of {} entries described from {} sentences", out.display(), d.entries.len(), bank_size, sentences.len());
    Ok(())
}
