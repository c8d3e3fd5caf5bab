//! `radbridge embed`: embeddings of an image and prompts (JSON).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use radbridge_model::preprocess;
use radbridge_volume as volume;
use serde_json::json;

use super::common::{open_options, read_prompts, LoadArgs};

#[derive(Args)]
pub struct EmbedArgs {
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

pub fn run(a: &EmbedArgs) -> Result<()> {
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
            let input = engine.preprocess(&loaded.volume)?;
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
    super::common::write_file(&a.output, serde_json::to_string_pretty(&out)? + "\n")?;
    eprintln!("wrote {} ({} prompts)", a.output.display(), prompts.len());
    Ok(())
}
