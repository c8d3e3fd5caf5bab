//! `radbridge diagnose`: zero-shot findings for a CT (scores, thresholds, knowledge-bank
//! matches, heat maps). Contract: the JSON written by `--json` (the `Diagnosis` type).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use radbridge_volume as volume;

use super::common::{open_options, LoadArgs};

#[derive(Args)]
pub struct DiagnoseArgs {
    /// DICOM folder or file, or NIfTI file
    path: PathBuf,
    /// Model directory
    #[arg(long)]
    model: PathBuf,
    /// ct-rate, ct-rate-lt, ct-rate-extended (88 findings) or all (default: the model's default set)
    #[arg(long)]
    labels: Option<String>,
    /// A finding to score, in words (repeatable)
    #[arg(long = "finding")]
    findings: Vec<String>,
    /// Write the full result as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one heat map per finding (NIfTI, on the CT's grid) into this folder
    #[arg(long)]
    heatmaps: Option<PathBuf>,
    /// How heat maps and peaks are computed: gradient (the score's gradient × activation at
    /// the ViT's middle block) or patch-cosine (projected patch tokens against the text)
    #[arg(long, default_value = "gradient")]
    heatmap_method: radbridge_model::heatmap::Method,
    /// Knowledge-bank entries listed per image and per finding
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Where the model runs: cpu, cuda[:N] or metal[:N] (a GPU needs a build with that feature)
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Record the analysis (with its image embeddings) in the feedback database and the study
    /// library, as the app does; prints the run id on stderr
    #[arg(long)]
    record: bool,
    /// The database for --record (default: $RADBRIDGE_DATA_DIR/radbridge.sqlite3, else the
    /// platform's app-data folder)
    #[arg(long, value_name = "FILE", requires = "record")]
    db: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(a: &DiagnoseArgs) -> Result<()> {
    use radbridge_model::analysis::{DiagnoseOptions, Engine};
    let t0 = std::time::Instant::now();
    let device = super::common::device(&a.device)?;
    let mut engine = Engine::load_on(&a.model, &device)?;
    let load_model = t0.elapsed().as_secs_f64();
    let m = &engine.package.manifest;
    let (_, labels) = super::common::label_set(m, a.labels.as_deref())?;
    let t1 = std::time::Instant::now();
    let loaded = volume::open(&a.path, &open_options(&a.load, true))?;
    let load_ct = t1.elapsed().as_secs_f64();
    for w in &loaded.volume.warnings {
        eprintln!("warning: {}", w.message);
    }
    let opts = DiagnoseOptions {
        labels,
        findings: a.findings.clone(),
        top_k: a.top_k,
        heatmap_dir: a.heatmaps.clone(),
        heatmap_method: a.heatmap_method,
        // Keep the image encoding after the call when it is to be recorded.
        image_key: a.record.then(|| "diagnose --record".to_string()),
        ..Default::default()
    };
    let pb = ProgressBar::new(100);
    pb.set_style(ProgressStyle::with_template("{msg:>14} [{bar:30}] {elapsed}").unwrap().progress_chars("=> "));
    let mut d = engine.diagnose(&loaded.volume, &opts, &|stage, f| {
        pb.set_message(stage.as_str());
        pb.set_position((f * 100.0) as u64);
    })?;
    pb.finish_and_clear();
    if let Some(src) = d.source.as_mut() {
        src.series_index = Some(loaded.chosen);
    }
    d.timings.insert(0, ("load CT".into(), load_ct));
    d.timings.insert(0, ("load model".into(), load_model));
    println!("{}", radbridge_model::analysis::DISCLAIMER);
    println!(
        "model: {} ({:?}{}) on {}",
        d.model.name,
        d.model.architecture,
        if d.model.synthetic { ", synthetic-data demo" } else { "" },
        d.model.device
    );
    if let Some(n) = &d.model.notice {
        println!("note: {n}");
    }
    let mut rows: Vec<&radbridge_model::analysis::ScoredFinding> = d.findings.iter().collect();
    rows.sort_by(|x, y| y.finding.score.partial_cmp(&x.finding.score).unwrap_or(std::cmp::Ordering::Equal));
    println!("{:<40} {:>8} {:>10} {:>8}", "finding", "score", "threshold", "flagged");
    for f in &rows {
        let th = f.finding.threshold.map(|t| format!("{t:.4}")).unwrap_or_else(|| "-".into());
        let fl = match f.finding.flagged {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        println!(
            "{:<40} {:>8.4} {:>10} {:>8}",
            format!("{}{}", f.finding.label, if f.finding.custom { " *" } else { "" }),
            f.finding.score,
            th,
            fl
        );
    }
    if !d.image_bank_top.is_empty() {
        println!("knowledge-bank entries the image uses:");
        for e in &d.image_bank_top {
            println!(
                "  #{:<5} {:.4}  {}",
                e.entry.index,
                e.entry.weight,
                e.description.as_deref().unwrap_or("(no description: run `radbridge bank describe`)")
            );
        }
        if let Some(top) = rows.first() {
            if let Some(b) = &top.bank {
                println!("entries shared by the image and '{}':", top.finding.label);
                for e in &b.shared {
                    println!(
                        "  #{:<5} image {:.4} × finding {:.4}  {}",
                        e.entry.index,
                        e.entry.image_weight,
                        e.entry.text_weight,
                        e.description.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    println!("timings: {}", d.timings.iter().map(|(s, t)| format!("{s} {t:.2} s")).collect::<Vec<_>>().join(", "));
    if let Some(j) = &a.json {
        super::common::write_file(j, serde_json::to_string_pretty(&d)? + "\n")?;
    }
    if a.record {
        let mut rec = radbridge_store::RunRecord::from_diagnosis(&d, None, Some(&a.model))?;
        rec.embeddings =
            engine.last_image().map(|i| i.embeddings().into_iter().map(|(n, v)| (n.to_string(), v)).collect()).unwrap_or_default();
        rec.origin = radbridge_store::library::Origin::Cli;
        let mut store = super::common::open_store(a.db.as_deref())?;
        let id = store.record_run(&rec)?;
        eprintln!("recorded run {id} in {}", store.path().display());
    }
    Ok(())
}
