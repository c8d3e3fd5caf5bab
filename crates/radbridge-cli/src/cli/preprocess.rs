//! `radbridge preprocess`: the exact model input tensor as .npy.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use radbridge_model::preprocess::{self, PreprocessConfig};

use super::common::{open, LoadArgs};

#[derive(Args)]
pub struct PreprocessArgs {
    path: PathBuf,
    /// brgsa → (1,1,256,256,128) over (L→R.. see docs); ctclip → (1,1,240,480,480)
    #[arg(long)]
    model: String,
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(a: &PreprocessArgs) -> Result<()> {
    let (path, model, output, load) = (&a.path, &a.model, &a.output, &a.load);
    let cfg = PreprocessConfig::for_model(model).with_context(|| format!("unknown model '{model}' (expected brgsa or ctclip)"))?;
    let loaded = open(path, load)?;
    for w in &loaded.volume.warnings {
        eprintln!("warning: {}", w.message);
    }
    let input = preprocess::preprocess(&loaded.volume, &cfg).with_context(|| format!("{}: cannot preprocess", path.display()))?;
    preprocess::write_npy(output, &input.shape, &input.data).with_context(|| format!("{}: cannot write", output.display()))?;
    eprintln!("wrote {} float32 {:?} (resampled grid {:?})", output.display(), input.shape, input.resampled_shape);
    Ok(())
}
