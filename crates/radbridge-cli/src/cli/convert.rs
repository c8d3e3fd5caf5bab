//! `radbridge convert`: the volume in HU as NIfTI with its affine.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use radbridge_volume as volume;

use super::common::{open, LoadArgs};

#[derive(Args)]
pub struct ConvertArgs {
    path: PathBuf,
    /// Output file (.nii.gz or .nii)
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    load: LoadArgs,
}

pub fn run(a: &ConvertArgs) -> Result<()> {
    let (path, output, load) = (&a.path, &a.output, &a.load);
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
