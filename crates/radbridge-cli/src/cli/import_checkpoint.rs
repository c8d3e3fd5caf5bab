//! `radbridge import-checkpoint`: official weights into a model directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct ImportArgs {
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
    /// CT-CLIP: "H,W" of the input, or one value for a square image (official 480)
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

pub fn run(a: &ImportArgs) -> Result<()> {
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
