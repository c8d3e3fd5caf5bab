//! `radbridge summarize`: free-text reports → short finding sentences and a status per label.
//!
//! Contract (`--json`, and always for `--jsonl` input with `--json`): one JSON object per line per
//! report, `{"id": ..., "sentences": [...], "findings": [{"label", "status", "evidence"}]}`,
//! with every label of the CT-RATE, CT-RATE-LT and ct-rate-extended sets.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use radbridge_train::summarize::{Builtin, ChatEndpoint, Status, Summarizer, Summary};

#[derive(Args)]
pub struct SummarizeArgs {
    /// A report as plain text
    #[arg(conflicts_with_all = ["jsonl", "reports_json"], required_unless_present_any = ["jsonl", "reports_json"])]
    pub file: Option<PathBuf>,
    /// Reports, one JSON object {"id": ..., "text": ...} per line
    #[arg(long, conflicts_with = "reports_json")]
    pub jsonl: Option<PathBuf>,
    /// Reports as one JSON object {"<id>": "<text>", ...} (the layout of CT-RATE's
    /// ctrate_valid_unique_report_text.json)
    #[arg(long)]
    pub reports_json: Option<PathBuf>,
    /// Also write the distinct summary sentences as a sentence corpus for `radbridge bank
    /// describe`: one {"text": ..., "count": n} per line in order of first appearance, and
    /// <FILE minus .jsonl>.meta.json with the source, license and command
    #[arg(long)]
    pub corpus_out: Option<PathBuf>,
    /// License of the reports, recorded in the corpus' .meta.json
    #[arg(long, requires = "corpus_out")]
    pub corpus_license: Option<String>,
    /// Where the reports came from, recorded in the corpus' .meta.json
    #[arg(long, requires = "corpus_out")]
    pub corpus_source: Option<String>,
    /// Print one JSON object per report and line
    #[arg(long)]
    pub json: bool,
    /// Use an OpenAI-compatible chat endpoint (llama.cpp, vLLM) at this URL instead of the
    /// built-in summariser (default: $RADBRIDGE_SUMMARY_ENDPOINT when set; otherwise no network)
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Model name sent to the endpoint (default: $RADBRIDGE_SUMMARY_MODEL or "default")
    #[arg(long)]
    pub endpoint_model: Option<String>,
    /// Endpoint timeout per report, seconds
    #[arg(long, default_value_t = 120)]
    pub endpoint_timeout: u64,
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        o => Some(o.to_string()),
    }
}

fn summarizer(a: &SummarizeArgs) -> Box<dyn Summarizer> {
    let configured = match &a.endpoint {
        Some(url) => {
            let model = a.endpoint_model.clone().or_else(|| std::env::var("RADBRIDGE_SUMMARY_MODEL").ok());
            let mut e = ChatEndpoint::new(url, model.as_deref());
            e.api_key = std::env::var("RADBRIDGE_SUMMARY_API_KEY").ok().filter(|s| !s.is_empty());
            Some(e)
        }
        None => ChatEndpoint::from_env().map(|mut e| {
            if let Some(m) = &a.endpoint_model {
                e.model = m.clone();
            }
            e
        }),
    };
    match configured {
        Some(mut e) => {
            e.timeout = std::time::Duration::from_secs(a.endpoint_timeout.max(1));
            tracing::info!(url = %e.url, "summaries from a chat endpoint");
            Box::new(e)
        }
        None => Box::new(Builtin::new()),
    }
}

fn print(out: &mut impl Write, s: &Summary, json: bool) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(s)?)?;
        return Ok(());
    }
    if let Some(id) = &s.id {
        writeln!(out, "== {id}")?;
    }
    for line in &s.sentences {
        writeln!(out, "  {line}")?;
    }
    for f in s.findings.iter().filter(|f| f.status != Status::Absent || !f.evidence.is_empty()) {
        writeln!(out, "  {:<9} {:<36} {}", f.status.as_str(), f.label, f.evidence)?;
    }
    Ok(())
}

pub fn run(a: &SummarizeArgs) -> Result<()> {
    let summ = summarizer(a);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Some(path) = &a.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read report", path.display()))?;
        let mut s = summ.summarize(&text).with_context(|| path.display().to_string())?;
        s.id = path.file_stem().map(|x| x.to_string_lossy().into_owned());
        print(&mut out, &s, a.json)?;
        return Ok(out.flush()?);
    }
    let (path, reports) = if let Some(path) = &a.reports_json {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).with_context(|| format!("{}: not a JSON object of id -> report text", path.display()))?;
        let mut v = Vec::with_capacity(map.len());
        for (id, t) in map {
            let t = t.as_str().with_context(|| format!("{}: report {id} is not a string", path.display()))?.to_string();
            v.push((format!("{}: report {id}", path.display()), Some(id), t));
        }
        // Numeric ids in numeric order (serde_json's map is sorted as strings).
        v.sort_by_key(|(_, id, _)| id.as_deref().and_then(|i| i.parse::<u64>().ok()).unwrap_or(u64::MAX));
        (path, v)
    } else {
        let path = a.jsonl.as_ref().context("give a report file, --jsonl or --reports-json")?;
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut v = Vec::new();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let j: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
            let report =
                j.get("text").and_then(|t| t.as_str()).with_context(|| format!("{}:{}: no \"text\" string", path.display(), n + 1))?;
            v.push((format!("{}:{}", path.display(), n + 1), j.get("id").and_then(id_string), report.to_string()));
        }
        (path, v)
    };
    let bar = indicatif::ProgressBar::new(reports.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("summarising {bar:30} {pos}/{len} reports, {eta} left")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if reports.len() < 50 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut corpus: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (place, id, report) in &reports {
        let mut s = match summ.summarize(report) {
            Ok(s) => s,
            Err(radbridge_train::summarize::SummarizeError::Empty) => {
                tracing::warn!("{place}: empty report skipped");
                bar.inc(1);
                continue;
            }
            Err(e) => return Err(e).with_context(|| place.clone()),
        };
        s.id = id.clone();
        print(&mut out, &s, a.json)?;
        if a.corpus_out.is_some() {
            for line in &s.sentences {
                match index.get(line) {
                    Some(&k) => corpus[k].1 += 1,
                    None => {
                        index.insert(line.clone(), corpus.len());
                        corpus.push((line.clone(), 1));
                    }
                }
            }
        }
        bar.inc(1);
    }
    if let Some(c) = &a.corpus_out {
        write_corpus(c, &corpus, path, reports.len(), a)?;
    }
    bar.finish_and_clear();
    Ok(out.flush()?)
}

fn write_corpus(c: &std::path::Path, corpus: &[(String, usize)], input: &std::path::Path, reports: usize, a: &SummarizeArgs) -> Result<()> {
    let mut text = String::new();
    for (t, n) in corpus {
        text.push_str(&serde_json::to_string(&serde_json::json!({"text": t, "count": n}))?);
        text.push('\n');
    }
    super::common::write_file(c, text)?;
    let meta = serde_json::json!({
        "format": "radbridge-sentence-corpus-1",
        "sentences": corpus.len(),
        "reports": reports,
        "input": input.file_name().map(|f| f.to_string_lossy().into_owned()),
        "source": a.corpus_source,
        "license": a.corpus_license,
        "summarizer": if a.endpoint.is_some() { "chat endpoint" } else { "radbridge built-in" },
        "generator_version": env!("CARGO_PKG_VERSION"),
    });
    let mp = radbridge_model::bank::corpus_meta_path(c);
    super::common::write_file(&mp, serde_json::to_string_pretty(&meta)? + "\n")?;
    eprintln!("wrote {}: {} distinct sentences from {} reports", c.display(), corpus.len(), reports);
    Ok(())
}
