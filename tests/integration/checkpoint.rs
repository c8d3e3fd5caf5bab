//! Importing official checkpoints: a Lightning `.ckpt` with the `gloria.` prefix, a plain
//! CT-CLIP `.pt` state dict and safetensors all give the same tensors under canonical names;
//! wrong or damaged files give one report of what is wrong, never a panic.

use std::collections::BTreeMap;
use std::process::Command;

use radbridge_model::checkpoint::{self, Arch, CheckpointError, Overrides};
use radbridge_model::package::ModelPackage;
use radbridge_tests::*;
use serde_json::Value;

fn text_config(dir: &str) -> Value {
    json_file(&format!("models/{dir}/config.json"))
}

fn brgsa_overrides() -> Overrides {
    Overrides { vision_heads: Some(4), text_max_length: Some(24), ..Default::default() }
}

fn ctclip_overrides() -> Overrides {
    Overrides {
        patch_size: Some(4),
        temporal_patch_size: Some(2),
        heads: Some(2),
        dim_head: Some(8),
        text_max_length: Some(64),
        ..Default::default()
    }
}

fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn lightning_ckpt_and_safetensors_give_the_same_weights() {
    let cfg = text_config("brgsa_tiny");
    let (from_ckpt, inferred, report) =
        checkpoint::import(&data("models/brgsa_tiny/best.ckpt"), Arch::Brgsa, &cfg, &brgsa_overrides()).unwrap();
    assert!(report.unexpected.is_empty(), "{report}");
    assert!(report.ignored.iter().any(|k| k.starts_with("img_encoder.local_embedder")), "{:?}", report.ignored);
    let (from_st, _, _) = checkpoint::import(&data("models/brgsa_tiny/model.safetensors"), Arch::Brgsa, &cfg, &brgsa_overrides()).unwrap();
    assert_eq!(from_ckpt.keys().collect::<Vec<_>>(), from_st.keys().collect::<Vec<_>>());
    for (k, t) in &from_ckpt {
        assert_eq!(max_diff(t, &from_st[k]), 0.0, "{k}");
    }
    // Dimensions read from the shapes.
    let arch = json_file("models/brgsa_tiny/arch.json");
    let v = &inferred.model["vision"];
    for k in ["hidden_size", "depth", "mlp_dim", "patch_size", "img_size", "in_channels"] {
        assert_eq!(v[k], arch["vision"][k], "vision.{k}");
    }
    for k in ["embed_dim", "bank_size", "text_max_length", "text_pool_layers"] {
        assert_eq!(inferred.model[k], arch[k], "{k}");
    }
    assert_eq!(inferred.text_config["num_hidden_layers"], cfg["num_hidden_layers"]);
}

#[test]
fn ctclip_state_dict_imports_with_unused_keys_ignored() {
    let cfg = text_config("ctclip_tiny");
    let (t, inferred, report) =
        checkpoint::import(&data("models/ctclip_tiny/CT-CLIP_v2.pt"), Arch::Ctclip, &cfg, &ctclip_overrides()).unwrap();
    assert!(report.unexpected.is_empty(), "{report}");
    assert!(report.ignored.iter().any(|k| k.contains("_extra")), "{:?}", report.ignored);
    assert!(t.contains_key("temperature") && t.contains_key("visual_transformer.vq._codebook.embed"));
    let arch = json_file("models/ctclip_tiny/arch.json");
    let v = &inferred.model["vision"];
    for k in ["dim", "spatial_depth", "temporal_depth", "codebook_size", "image_size"] {
        assert_eq!(v[k], arch[k], "vision.{k}");
    }
    assert_eq!(inferred.model["latent_dim"], arch["latent_dim"]);
    // `--image-size` with one value is a square image (CTViT's own `image_size`); three are refused.
    let side = arch["image_size"][0].as_u64().unwrap() as usize;
    let one = Overrides { image_size: Some(vec![side]), ..ctclip_overrides() };
    let (_, square, _) = checkpoint::import(&data("models/ctclip_tiny/CT-CLIP_v2.pt"), Arch::Ctclip, &cfg, &one).unwrap();
    assert_eq!(square.model["vision"]["image_size"], serde_json::json!([side, side]));
    let three = Overrides { image_size: Some(vec![side, side, side]), ..ctclip_overrides() };
    let e = checkpoint::import(&data("models/ctclip_tiny/CT-CLIP_v2.pt"), Arch::Ctclip, &cfg, &three).unwrap_err();
    assert!(e.to_string().contains("one value (a square image) or two"), "{e}");
}

#[test]
fn wrong_files_get_a_full_report() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = text_config("brgsa_tiny");
    // Wrong architecture.
    let e = checkpoint::import(&data("models/ctclip_tiny/CT-CLIP_v2.pt"), Arch::Brgsa, &cfg, &brgsa_overrides()).unwrap_err();
    assert!(matches!(e, CheckpointError::Dims { .. }) && e.to_string().contains("not a BrgSA checkpoint"), "{e}");
    // Random bytes and a cut zip.
    let junk = dir.path().join("junk.ckpt");
    std::fs::write(&junk, (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let e = checkpoint::import(&junk, Arch::Brgsa, &cfg, &brgsa_overrides()).unwrap_err();
    assert!(matches!(e, CheckpointError::Read { .. }) && e.to_string().contains("junk.ckpt"), "{e}");
    let bytes = std::fs::read(data("models/brgsa_tiny/best.ckpt")).unwrap();
    let cut = dir.path().join("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = checkpoint::import(&cut, Arch::Brgsa, &cfg, &brgsa_overrides()).unwrap_err();
    assert!(matches!(e, CheckpointError::Read { .. }), "{e}");
    assert!(!e.to_string().contains("   0: "), "no backtrace in messages: {e}");
    // One tensor missing and one mis-shaped: both reported at once.
    let mut t: BTreeMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(data("models/brgsa_tiny/model.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    t.remove("img_encoder.model.blocks.1.mlp.fc2.bias");
    let w = t["text_encoder.emb_global.weight"].clone();
    t.insert("text_encoder.emb_global.weight".into(), w.t().unwrap().contiguous().unwrap());
    t.insert("something.else".into(), candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap());
    let bad = dir.path().join("bad.safetensors");
    let m: std::collections::HashMap<String, candle_core::Tensor> = t.into_iter().collect();
    candle_core::safetensors::save(&m, &bad).unwrap();
    match checkpoint::import(&bad, Arch::Brgsa, &cfg, &brgsa_overrides()).unwrap_err() {
        CheckpointError::Keys { report, .. } => {
            assert_eq!(report.missing.len(), 1, "{report}");
            assert_eq!(report.missing[0].0, "img_encoder.model.blocks.1.mlp.fc2.bias");
            assert_eq!(report.misshaped.len(), 1, "{report}");
            assert_eq!(report.misshaped[0].0, "text_encoder.emb_global.weight");
            assert_eq!(report.unexpected, vec!["something.else".to_string()]);
        }
        e => panic!("expected a key report, got {e}"),
    }
}

#[test]
fn cli_writes_a_model_directory_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let out = radbridge_tests::import_tiny("brgsa", dir.path());
    let p = ModelPackage::open(&out).unwrap();
    p.verify_weights().unwrap();
    assert_eq!(p.manifest.prompts.positive, "There is {label}");
    assert_eq!(p.manifest.labels("all").unwrap().len(), 33);
    assert!(out.join("vocab.txt").exists() && out.join("config.json").exists());
    // A damaged checkpoint: exit 1, the report on stderr, no panic.
    let st = Command::new(bin())
        .args(["import-checkpoint", "--arch", "ctclip", "--checkpoint"])
        .arg(data("models/brgsa_tiny/best.ckpt"))
        .arg("--text-dir")
        .arg(data("models/brgsa_tiny"))
        .arg("--output")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("not a CT-CLIP checkpoint") && !err.contains("panicked"), "{err}");
}
