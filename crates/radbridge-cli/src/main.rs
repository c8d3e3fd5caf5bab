//! `radbridge`: the command-line face of the Radbridge core, for batch and headless use.
//!
//! Contract (relied on by checks outside the repo): subcommands `inspect`, `convert`,
//! `preprocess`, `bench load`, their flags, and the JSON field names of `inspect --json` and
//! `bench load --json`. Bad input exits non-zero with one line naming the file and the problem.
//! (`bench model --json` is read by `tests/reference/bench_models.py`.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use radbridge_model::preprocess::{self, PreprocessConfig};
use radbridge_volume::{self as volume, Loaded, OpenOptions, Progress};
use serde_json::json;

#[path = "cli/eval.rs"]
mod eval;
#[path = "cli/feedback.rs"]
mod feedback;
#[path = "cli/report.rs"]
mod report;
#[path = "cli/summarize.rs"]
mod summarize;
#[path = "cli/synth.rs"]
mod synth;
#[path = "cli/train.rs"]
mod train;

#[derive(Parser)]
#[command(
    name = "radbridge",
    version,
    about = "Radbridge: CT volumes and model inputs for zero-shot CT review (research use only, not for diagnosis)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Series to load when the folder holds several: 0-based index or SeriesInstanceUID
    #[arg(long)]
    series: Option<String>,
    /// Load non-CT modalities too (values are then not Hounsfield units)
    #[arg(long)]
    any_modality: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Series found, chosen series geometry, HU range, warnings
    Inspect {
        /// DICOM folder or file, or NIfTI file (.nii, .nii.gz)
        path: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Write the volume in HU as NIfTI (int16 where lossless, else float32) with its affine
    Convert {
        path: PathBuf,
        /// Output file (.nii.gz or .nii)
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write the exact model input tensor as .npy (float32, C order)
    Preprocess {
        path: PathBuf,
        /// brgsa → (1,1,256,256,128) over (L→R.. see docs); ctclip → (1,1,240,480,480)
        #[arg(long)]
        model: String,
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Embeddings of an image and prompts (JSON), from a model input tensor or a CT
    Embed(EmbedArgs),
    /// Zero-shot findings for a CT: scores, thresholds, knowledge-bank matches, heat maps
    Diagnose(DiagnoseArgs),
    /// Report summaries: short finding sentences and a status per label (built-in, or a configured chat endpoint)
    Summarize(summarize::SummarizeArgs),
    /// The feedback store: record runs, review findings, recalibrate thresholds, export, audit log
    Feedback(feedback::FeedbackArgs),
    /// Findings report (pdf, json, DICOM SR) from a feedback run or a diagnose JSON; de-identified by default
    Report(report::ReportArgs),
    /// Write a synthetic chest-CT corpus (volumes, masks, labels.csv, reports) for training the demo model
    Synth(synth::SynthArgs),
    /// Train BrgSA on a synthetic corpus and write a model directory (checkpoints, --resume)
    Train(train::TrainArgs),
    /// Evaluate a model on a labelled corpus: AUROC, weighted F1, accuracy, precision, recall, AUPRC with bootstrap intervals
    Eval(eval::EvalArgs),
    /// Knowledge-bank tools
    Bank {
        #[command(subcommand)]
        what: BankCommand,
    },
    /// Import official weights (BrgSA best.ckpt, CT-CLIP_v2.pt, or safetensors) into a model directory
    ImportCheckpoint(ImportArgs),
    /// Benchmarks
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Args)]
struct EmbedArgs {
    /// Model directory
    #[arg(long)]
    model: PathBuf,
    /// The model input tensor as .npy (float32, C order, batch and channel included), as
    /// `radbridge preprocess` writes it
    #[arg(long, conflicts_with = "ct", required_unless_present = "ct")]
    volume: Option<PathBuf>,
    /// A CT (DICOM folder/file or NIfTI), preprocessed as the model expects
    #[arg(long)]
    ct: Option<PathBuf>,
    /// Prompts, one per line (default: the model's prompts for all its labels)
    #[arg(long)]
    prompts: Option<PathBuf>,
    #[arg(long, short)]
    output: PathBuf,
    /// Bank entries listed for the image
    #[arg(long, default_value_t = 10)]
    top_k: usize,
}

#[derive(Args)]
struct DiagnoseArgs {
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
    #[command(flatten)]
    load: LoadArgs,
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

#[derive(Args)]
struct ImportArgs {
    /// brgsa or ctclip
    #[arg(long)]
    arch: String,
    /// .ckpt / .pt (PyTorch zip) or .safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// Folder with the BERT config.json and vocab.txt (or tokenizer.json)
    #[arg(long)]
    text_dir: PathBuf,
    /// Model directory to write
    #[arg(long, short)]
    output: PathBuf,
    /// Name recorded in model.json (default: the output folder's name)
    #[arg(long)]
    name: Option<String>,
    /// BrgSA: attention heads of the image encoder (default: hidden/64, 12 for the official model)
    #[arg(long)]
    vision_heads: Option<usize>,
    /// BrgSA: how many last BERT layers are pooled (official: 4)
    #[arg(long)]
    text_pool_layers: Option<usize>,
    /// Text length in tokens (BrgSA: 97; CT-CLIP: 512)
    #[arg(long)]
    text_max_length: Option<usize>,
    /// BrgSA: base image size of the stored position grid "A0,A1,A2" (official 224,224,112);
    /// CT-CLIP: "H,W" of the input (official 480,480)
    #[arg(long, value_delimiter = ',')]
    image_size: Option<Vec<usize>>,
    /// CT-CLIP: spatial patch size (official 20)
    #[arg(long)]
    patch_size: Option<usize>,
    /// CT-CLIP: temporal patch size (official 10)
    #[arg(long)]
    temporal_patch_size: Option<usize>,
    /// CT-CLIP: attention heads (official 8)
    #[arg(long)]
    heads: Option<usize>,
    /// CT-CLIP: attention head width (official 32)
    #[arg(long)]
    dim_head: Option<usize>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time loading PATH: MB/s (decoded int16 voxels) and slices/s
    Load {
        path: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Time a model on CPU: load, image encoder (median) and text encoder (median) on a model
    /// input .npy; peak RSS
    Model {
        /// Model directory
        #[arg(long)]
        model: PathBuf,
        /// The model input tensor as .npy (float32, C order, shape (1, 1, d0, d1, d2))
        #[arg(long)]
        volume: PathBuf,
        /// Prompts, one per line (default: what `diagnose` embeds for the model's default label set)
        #[arg(long)]
        prompts: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// One untimed image + text pass before the timed ones
        #[arg(long)]
        warmup: bool,
        #[arg(long)]
        json: bool,
        /// Write the last repeat's embeddings (image code and one text code per prompt) as JSON
        #[arg(long)]
        embeddings: Option<PathBuf>,
    },
}

/// Progress bar on stderr (hidden when stderr is not a terminal).
struct Bar(ProgressBar);

impl Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

fn open_options(load: &LoadArgs, progress: bool) -> OpenOptions {
    let mut o = OpenOptions { series: load.series.clone(), any_modality: load.any_modality, ..Default::default() };
    if progress {
        let pb = ProgressBar::new(0);
        pb.set_style(ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}").unwrap().progress_chars("=> "));
        o.progress = Arc::new(Bar(pb));
    }
    o
}

fn open(path: &Path, load: &LoadArgs) -> Result<Loaded> {
    Ok(volume::open(path, &open_options(load, true))?)
}

fn inspect(path: &Path, load: &LoadArgs, as_json: bool) -> Result<()> {
    let loaded = open(path, load)?;
    let v = &loaded.volume;
    let (lo, hi) = v.voxels.range().unwrap_or((f32::NAN, f32::NAN));
    let canon = v.affine.canonical_plan(v.dims).map(|p| p.new_dims).unwrap_or(v.dims);
    let out = json!({
        "path": path.display().to_string(),
        "format": v.meta.format,
        "format_detail": v.meta.format_detail,
        "files_scanned": loaded.scan.files_scanned,
        "non_dicom_skipped": loaded.scan.non_dicom_skipped,
        "non_image_skipped": loaded.scan.non_image_skipped,
        "series": loaded.series,
        "chosen": loaded.chosen,
        "volume": {
            "modality": v.meta.modality,
            "series_uid": v.meta.series_uid,
            "description": v.meta.series_description,
            "dimensions": v.dims,
            "spacing": v.spacing(),
            "affine_lps": v.affine.0,
            "orientation": v.orientation(),
            "canonical_dimensions": canon,
            "dtype": v.voxels.dtype(),
            "hu_min": lo,
            "hu_max": hi,
            "files": v.meta.files.len(),
        },
        "warnings": v.warnings,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} ({}; {})", path.display(), v.meta.format, v.meta.format_detail);
    if v.meta.format == "dicom" {
        println!(
            "scanned {} files; {} not DICOM, {} DICOM without image",
            loaded.scan.files_scanned, loaded.scan.non_dicom_skipped, loaded.scan.non_image_skipped
        );
    }
    println!("series:");
    for s in &loaded.series {
        println!(
            "  {}{} {:<4} {:>4} slices {:?} spacing [{:.3}, {:.3}, {:.3}] {} {}",
            if s.index == loaded.chosen { "*" } else { " " },
            s.index,
            s.modality,
            s.slice_count,
            s.dimensions,
            s.spacing[0],
            s.spacing[1],
            s.spacing[2],
            if s.uid.is_empty() { "(no SeriesInstanceUID)" } else { &s.uid },
            s.description
        );
    }
    println!("volume: {:?} voxels, {}, orientation {}", v.dims, v.voxels.dtype(), v.orientation());
    let sp = v.spacing();
    println!("spacing: [{:.4}, {:.4}, {:.4}] mm", sp[0], sp[1], sp[2]);
    println!("affine (voxel → LPS mm):");
    for r in &v.affine.0[..3] {
        println!("  [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]", r[0], r[1], r[2], r[3]);
    }
    println!("HU range: {lo} .. {hi}");
    if v.warnings.is_empty() {
        println!("warnings: none");
    } else {
        println!("warnings:");
        for w in &v.warnings {
            println!("  - [{}] {}", serde_json::to_value(w.code)?.as_str().unwrap_or(""), w.message);
        }
    }
    Ok(())
}

fn convert(path: &Path, output: &Path, load: &LoadArgs) -> Result<()> {
    let loaded = open(path, load)?;
    volume::nifti::write(&loaded.volume, output)?;
    for w in &loaded.volume.warnings {
        eprintln!("warning: {}", w.message);
    }
    eprintln!(
        "wrote {} ({:?}, {}, orientation {})",
        output.display(),
        loaded.volume.dims,
        loaded.volume.voxels.dtype(),
        loaded.volume.orientation()
    );
    Ok(())
}

fn run_preprocess(path: &Path, model: &str, output: &Path, load: &LoadArgs) -> Result<()> {
    let cfg = PreprocessConfig::for_model(model).with_context(|| format!("unknown model '{model}' (expected brgsa or ctclip)"))?;
    let loaded = open(path, load)?;
    for w in &loaded.volume.warnings {
        eprintln!("warning: {}", w.message);
    }
    let input = preprocess::preprocess(&loaded.volume, &cfg);
    preprocess::write_npy(output, &input.shape, &input.data).with_context(|| format!("{}: cannot write", output.display()))?;
    eprintln!("wrote {} float32 {:?} (resampled grid {:?})", output.display(), input.shape, input.resampled_shape);
    Ok(())
}

fn bench_load(path: &Path, repeats: usize, as_json: bool, load: &LoadArgs) -> Result<()> {
    let r = radbridge_model::bench::load(path, repeats, &open_options(load, false))?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{}: {} slices, {} files, {:.1} MB on disk → median {:.4} s over {} runs: {:.1} MB/s (int16 voxels), {:.1} slices/s ({} threads)",
            r.path,
            r.slices,
            r.files,
            r.file_bytes as f64 / 1e6,
            r.seconds_median,
            r.repeats,
            r.mb_per_s,
            r.slices_per_s,
            r.threads
        );
    }
    Ok(())
}

fn bench_model(
    model: &Path,
    volume: &Path,
    prompts: Option<&Path>,
    repeats: usize,
    warmup: bool,
    as_json: bool,
    embeddings: Option<&Path>,
) -> Result<()> {
    let prompts = prompts.map(read_prompts).transpose()?;
    let (r, out) = radbridge_model::bench::model(model, volume, prompts, repeats, warmup)?;
    if let Some(p) = embeddings {
        std::fs::write(p, serde_json::to_string(&out)? + "\n").with_context(|| format!("{}: cannot write", p.display()))?;
    }
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} ({:?}), input {:?}: load {:.2} s; image median {:.3} s, text ({} prompts) median {:.3} s over {} runs{}; peak RSS {:.0} MB ({} threads)",
            r.model,
            r.architecture,
            r.input_shape,
            r.load_seconds,
            r.image_seconds,
            r.prompts,
            r.text_seconds,
            r.repeats,
            if r.warmup { " after a warm-up" } else { "" },
            r.peak_rss_bytes as f64 / 1e6,
            r.threads
        );
    }
    Ok(())
}

fn import_checkpoint(a: &ImportArgs) -> Result<()> {
    use radbridge_model::{checkpoint, package};
    let arch: checkpoint::Arch = a.arch.parse().map_err(anyhow::Error::msg)?;
    let cfg_path = a.text_dir.join("config.json");
    let text_base: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}: invalid JSON", cfg_path.display()))?,
        Err(e) => anyhow::bail!("{}: {e} (the text encoder's config.json is needed)", cfg_path.display()),
    };
    let o = checkpoint::Overrides {
        vision_heads: a.vision_heads,
        text_pool_layers: a.text_pool_layers,
        text_max_length: a.text_max_length,
        image_size: a.image_size.clone(),
        patch_size: a.patch_size,
        temporal_patch_size: a.temporal_patch_size,
        heads: a.heads,
        dim_head: a.dim_head,
    };
    let (tensors, inferred, report) = checkpoint::import(&a.checkpoint, arch, &text_base, &o)?;
    let name =
        a.name.clone().unwrap_or_else(|| a.output.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "model".into()));
    let source = json!({
        "checkpoint": a.checkpoint.file_name().map(|n| n.to_string_lossy().to_string()),
        "checkpoint_sha256": package::sha256_file(&a.checkpoint)?,
        "keys_used": report.used,
        "keys_ignored": report.ignored.len(),
        "keys_unexpected": report.unexpected,
        "radbridge_version": env!("CARGO_PKG_VERSION"),
    });
    let pkg = package::create(&a.output, &name, &tensors, &inferred, &a.text_dir, source)?;
    // Prove the directory loads: build the model from it once.
    radbridge_model::analysis::Engine::load(&pkg.dir).with_context(|| format!("{}: the written model does not load", pkg.dir.display()))?;
    if !report.unexpected.is_empty() {
        eprintln!(
            "warning: {} unexpected keys were left out: {}",
            report.unexpected.len(),
            report.unexpected.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    eprintln!(
        "wrote {} ({:?}; {} tensors used, {} official but unused keys ignored)",
        pkg.dir.display(),
        arch,
        report.used,
        report.ignored.len()
    );
    println!("{}", serde_json::to_string_pretty(&pkg.manifest.model)?);
    Ok(())
}

fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read prompts", path.display()))?;
    let p: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    anyhow::ensure!(!p.is_empty(), "{}: no prompts (one per line)", path.display());
    Ok(p)
}

fn embed(a: &EmbedArgs) -> Result<()> {
    use radbridge_model::analysis::{Engine, ImageCode, TextCode};
    use radbridge_model::zeroshot;
    let mut engine = Engine::load(&a.model)?;
    let x = match (&a.volume, &a.ct) {
        (Some(npy), _) => {
            let (shape, data) = preprocess::read_npy(npy)?;
            anyhow::ensure!(
                shape.len() == 5 && shape[0] == 1 && shape[1] == 1,
                "{}: expected a (1, 1, d0, d1, d2) tensor, found {shape:?}",
                npy.display()
            );
            candle_core::Tensor::from_vec(data, shape, &engine.device)?
        }
        (None, Some(ct)) => {
            let loaded = volume::open(ct, &open_options(&LoadArgs { series: None, any_modality: false }, true))?;
            let input = engine.preprocess(&loaded.volume);
            engine.tensor(&input)?
        }
        (None, None) => anyhow::bail!("give --volume or --ct"),
    };
    let prompts = match &a.prompts {
        Some(p) => read_prompts(p)?,
        None => {
            let m = &engine.package.manifest;
            m.labels(&m.default_label_set).unwrap_or_default().iter().map(|l| m.prompts.positive_for(l)).collect()
        }
    };
    let image = engine.encode_image(&x).map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().next().unwrap_or_default()))?;
    let codes = engine.embed_prompts(&prompts)?;
    let scale = engine.logit_scale();
    let out = match &image {
        ImageCode::Brgsa { v, v_hat, z, .. } => {
            let bank_top: Vec<_> =
                radbridge_model::bank::top_k(z, a.top_k.max(5)).iter().map(|e| json!({"index": e.index, "weight": e.weight})).collect();
            let prompts: Vec<_> = prompts
                .iter()
                .zip(&codes)
                .map(|(p, c)| {
                    let TextCode::Brgsa { t, t_hat, .. } = c else { unreachable!() };
                    let (cv, cvh, s) = zeroshot::brgsa_score(v, v_hat, t);
                    json!({"text": p, "t": t, "t_hat": t_hat, "cos_v_t": cv, "cos_vhat_t": cvh, "score": s})
                })
                .collect();
            json!({"image": {"v": v, "v_hat": v_hat, "bank_top": bank_top}, "prompts": prompts})
        }
        ImageCode::Ctclip { latent } => {
            let prompts: Vec<_> = prompts
                .iter()
                .zip(&codes)
                .map(|(p, c)| {
                    let TextCode::Ctclip { latent: l } = c else { unreachable!() };
                    json!({"text": p, "latent": l, "logit": zeroshot::cosine(latent, l) * scale})
                })
                .collect();
            json!({"image": {"latent": latent}, "prompts": prompts})
        }
    };
    std::fs::write(&a.output, serde_json::to_string_pretty(&out)? + "\n")
        .with_context(|| format!("{}: cannot write", a.output.display()))?;
    eprintln!("wrote {} ({} prompts)", a.output.display(), prompts.len());
    Ok(())
}

fn diagnose(a: &DiagnoseArgs) -> Result<()> {
    use radbridge_model::analysis::{DiagnoseOptions, Engine};
    let t0 = std::time::Instant::now();
    let mut engine = Engine::load(&a.model)?;
    let load_model = t0.elapsed().as_secs_f64();
    let m = &engine.package.manifest;
    let set = a.labels.clone().unwrap_or_else(|| m.default_label_set.clone());
    let labels = m.labels(&set).with_context(|| {
        format!("unknown label set '{set}' (this model has: all, {})", m.label_sets.keys().cloned().collect::<Vec<_>>().join(", "))
    })?;
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
        ..Default::default()
    };
    let pb = ProgressBar::new(100);
    pb.set_style(ProgressStyle::with_template("{msg:>14} [{bar:30}] {elapsed}").unwrap().progress_chars("=> "));
    let mut d = engine.diagnose(&loaded.volume, &opts, &|stage, f| {
        pb.set_message(stage.to_string());
        pb.set_position((f * 100.0) as u64);
    })?;
    pb.finish_and_clear();
    if let Some(src) = d.source.as_mut() {
        src.series_index = Some(loaded.chosen);
    }
    d.timings.insert(0, ("load CT".into(), load_ct));
    d.timings.insert(0, ("load model".into(), load_model));
    println!("{}", radbridge_model::analysis::DISCLAIMER);
    println!("model: {} ({:?}{})", d.model.name, d.model.architecture, if d.model.synthetic { ", synthetic-data demo" } else { "" });
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
        std::fs::write(j, serde_json::to_string_pretty(&d)? + "\n").with_context(|| format!("{}: cannot write", j.display()))?;
    }
    Ok(())
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
    std::fs::write(&out, serde_json::to_string_pretty(&d)? + "\n").with_context(|| format!("{}: cannot write", out.display()))?;
    let mut pkg = engine.package.clone();
    pkg.manifest.bank = Some("bank.json".into());
    pkg.write_manifest()?;
    eprintln!("wrote {}: {} of {} entries described from {} sentences", out.display(), d.entries.len(), bank_size, sentences.len());
    Ok(())
}

fn main() -> ExitCode {
    // Printing into a closed pipe (`radbridge diagnose … | head`) ends the process quietly, as
    // Unix tools do, instead of panicking in println!.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RADBRIDGE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect { path, load, json } => inspect(path, load, *json),
        Command::Convert { path, output, load } => convert(path, output, load),
        Command::Preprocess { path, model, output, load } => run_preprocess(path, model, output, load),
        Command::Bench { what: BenchCommand::Load { path, repeats, json, load } } => bench_load(path, *repeats, *json, load),
        Command::Bench { what: BenchCommand::Model { model, volume, prompts, repeats, warmup, json, embeddings } } => {
            bench_model(model, volume, prompts.as_deref(), *repeats, *warmup, *json, embeddings.as_deref())
        }
        Command::ImportCheckpoint(a) => import_checkpoint(a),
        Command::Embed(a) => embed(a),
        Command::Diagnose(a) => diagnose(a),
        Command::Summarize(a) => summarize::run(a),
        Command::Feedback(a) => feedback::run(a),
        Command::Report(a) => report::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Bank { what: BankCommand::Describe { model, corpus } } => bank_describe(model, corpus.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error chain joined.
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
