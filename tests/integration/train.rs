//! `radbridge train`: the BrgSA objective and torch-style Adam against PyTorch
//! (tests/reference/loss_reference.py → tests/data/reference/brgsa_loss.json), and the trainer
//! end to end on a tiny corpus: the loss falls, an interrupted-and-resumed run equals an
//! uninterrupted one, and the model directory loads in `analysis::Engine` and diagnoses.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor, Var, D};
use radbridge_tests::{bin, data, json_file};
use radbridge_train::config::{LossConfig, OptimConfig};
use radbridge_train::loss::brgsa_loss;
use radbridge_train::optim::Adam;
use serde_json::Value;

fn tensor(v: &Value, dev: &Device) -> Tensor {
    fn flat(v: &Value, out: &mut Vec<f64>, shape: &mut Vec<usize>, depth: usize) {
        match v {
            Value::Array(a) => {
                if shape.len() <= depth {
                    shape.push(a.len());
                }
                for x in a {
                    flat(x, out, shape, depth + 1);
                }
            }
            x => out.push(x.as_f64().expect("number")),
        }
    }
    let (mut out, mut shape) = (Vec::new(), Vec::new());
    flat(v, &mut out, &mut shape, 0);
    Tensor::from_vec(out, shape, dev).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

fn recon(x: &Tensor, d: &Tensor) -> Tensor {
    let z = candle_nn::ops::softmax(&x.matmul(&d.t().unwrap()).unwrap(), D::Minus1).unwrap();
    z.matmul(d).unwrap()
}

#[test]
fn objective_and_adam_match_pytorch() {
    let r = json_file("reference/brgsa_loss.json");
    let dev = Device::Cpu;
    let inp = &r["inputs"];
    let x_img = tensor(&inp["x_img"], &dev);
    let x_txt = tensor(&inp["x_txt"], &dev);
    let names = ["b_v", "dictionary", "w_t", "w_v"];
    let vars: Vec<(String, Var)> = names.iter().map(|n| (n.to_string(), Var::from_tensor(&tensor(&inp[*n], &dev)).unwrap())).collect();
    let get = |n: &str| vars.iter().find(|(k, _)| k == n).unwrap().1.as_tensor().clone();
    let s = &r["settings"];
    let loss_cfg = LossConfig { temperature: s["temperature"].as_f64().unwrap(), eps: s["eps"].as_f64().unwrap(), ..Default::default() };
    assert_eq!((loss_cfg.global_weight, loss_cfg.recon_weight, loss_cfg.mse_weight), (1.0, 1.0, 0.5), "defaults are the spec's");
    let optim = OptimConfig {
        lr: s["lr"].as_f64().unwrap(),
        beta1: s["betas"][0].as_f64().unwrap(),
        beta2: s["betas"][1].as_f64().unwrap(),
        weight_decay: s["weight_decay"].as_f64().unwrap(),
        clip_norm: s["clip_norm"].as_f64().unwrap(),
        ..Default::default()
    };
    let mut adam = Adam::new(vars.clone(), optim).unwrap();
    let objective = || {
        let v = x_img.matmul(&get("w_v").t().unwrap()).unwrap().broadcast_add(&get("b_v")).unwrap();
        let t = x_txt.matmul(&get("w_t").t().unwrap()).unwrap();
        let d = get("dictionary");
        brgsa_loss(&v, &t, &recon(&v, &d), &recon(&t, &d), &loss_cfg).unwrap()
    };
    for (i, step) in r["steps"].as_array().unwrap().iter().enumerate() {
        let parts = objective();
        let got = parts.values().unwrap();
        let want_loss = step["loss"].as_f64().unwrap();
        assert!((got[0] - want_loss).abs() < 1e-10 * want_loss.abs().max(1.0), "step {i}: loss {} vs torch {want_loss}", got[0]);
        for (k, w) in step["parts"].as_array().unwrap().iter().enumerate() {
            let w = w.as_f64().unwrap();
            assert!((got[k + 1] - w).abs() < 1e-10 * w.abs().max(1.0), "step {i}: part {k}: {} vs {w}", got[k + 1]);
        }
        let grads = parts.total.backward().unwrap();
        let norm = adam.step(&grads).unwrap();
        let want_norm = step["grad_norm"].as_f64().unwrap();
        assert!((norm - want_norm).abs() < 1e-9 * want_norm, "step {i}: grad norm {norm} vs {want_norm}");
    }
    let after = &r["after"];
    for n in names {
        let want = tensor(&after["params"][n], &dev);
        let d = max_abs_diff(&get(n), &want);
        assert!(d < 1e-10, "{n} after 3 steps differs from torch by {d}");
    }
    let final_loss = objective().values().unwrap()[0];
    assert!((final_loss - after["loss"].as_f64().unwrap()).abs() < 1e-10 * final_loss);
    // The parameters really moved (the comparison is not vacuous).
    assert!(max_abs_diff(&get("w_v"), &tensor(&inp["w_v"], &dev)) > 1e-3);
}

#[test]
fn objective_in_f32_is_close_to_f64() {
    // The trainer runs in f32: the same objective in f32 stays within 1e-5 of torch's f64 value.
    let r = json_file("reference/brgsa_loss.json");
    let dev = Device::Cpu;
    let inp = &r["inputs"];
    let f = |n: &str| tensor(&inp[n], &dev).to_dtype(DType::F32).unwrap();
    let v = f("x_img").matmul(&f("w_v").t().unwrap()).unwrap().broadcast_add(&f("b_v")).unwrap();
    let t = f("x_txt").matmul(&f("w_t").t().unwrap()).unwrap();
    let d = f("dictionary");
    let got = brgsa_loss(&v, &t, &recon(&v, &d), &recon(&t, &d), &LossConfig::default()).unwrap().values().unwrap()[0];
    let want = r["steps"][0]["loss"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5 * want, "{got} vs {want}");
}

fn radbridge(args: &[&str], paths: &[(&str, &Path)]) -> (String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (flag, p) in paths {
        cmd.arg(flag).arg(p);
    }
    let out = cmd.output().expect("run radbridge");
    let (so, se) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(out.status.success(), "{cmd:?} failed: {se}");
    (so, se)
}

/// A tiny corpus of `n` procedural cases.
fn corpus(dir: &Path, n: usize) -> PathBuf {
    let c = dir.join(format!("corpus{n}"));
    radbridge(&["synth", "--count", &n.to_string(), "--seed", "4242", "--chest-fraction", "0"], &[("--output", &c)]);
    c
}

fn train(config: &Path, data: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["train"];
    args.extend_from_slice(extra);
    let (so, _) = radbridge(&args, &[("--config", config), ("--data", data), ("--output", out)]);
    serde_json::from_str(so.lines().last().expect("report line")).expect("report JSON")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn weights(dir: &Path) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn tiny_training_lowers_the_loss_and_writes_a_loadable_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data4 = corpus(tmp.path(), 4);
    let out = tmp.path().join("model");
    let report = train(&data("train/tiny-config.json"), &data4, &out, &[]);
    assert_eq!(report["steps"], 12);
    let log: Value = read_json(&out.join("train-log.json"));
    let losses: Vec<f64> = log["steps"].as_array().unwrap().iter().map(|s| s[2].as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 12);
    let head = losses[..3].iter().sum::<f64>() / 3.0;
    let tail = losses[9..].iter().sum::<f64>() / 3.0;
    assert!(tail < head - 0.5, "loss did not fall: {losses:?}");

    // The model directory: synthetic demo manifest, checksum, vocabulary, BERT config.
    let m: Value = read_json(&out.join("model.json"));
    assert_eq!(m["synthetic"], true);
    assert!(m["description"].as_str().unwrap().contains("not a clinical model"));
    assert_eq!(m["architecture"], "brgsa");
    assert_eq!(m["preprocess"]["target_shape"], serde_json::json!([32, 32, 16]));
    // It loads in the engine the app uses and diagnoses a case.
    let mut engine = radbridge_model::analysis::Engine::load(&out).expect("engine loads the trained model");
    let ct = data4.join("case_0001/ct.nii.gz");
    let vol = radbridge_volume::open(&ct, &Default::default()).unwrap().volume;
    let opts = radbridge_model::analysis::DiagnoseOptions {
        labels: vec!["Pleural effusion".into(), "Cardiomegaly".into()],
        findings: vec!["small nodule in the left lung".into()],
        top_k: 3,
        ..Default::default()
    };
    let d = engine.diagnose(&vol, &opts, &|_, _| {}).expect("diagnose");
    assert_eq!(d.findings.len(), 3);
    assert!(d.model.synthetic);
    assert!(d.findings.iter().all(|f| f.finding.score.is_finite() && f.finding.score.abs() <= 1.0));
    // On its own synthetic cases the demo notice stays away; on a real CT it says the scores
    // mean nothing.
    assert_eq!(d.model.notice, None);
    let real = radbridge_volume::open(data("totalsegmentator/chest_ct.nii.gz"), &Default::default()).unwrap().volume;
    let d = engine.diagnose(&real, &opts, &|_, _| {}).expect("diagnose the real CT");
    assert_eq!(d.model.notice.as_deref(), Some(radbridge_model::analysis::SYNTHETIC_MODEL_NOTICE));
    // And through the CLI.
    let o = Command::new(bin())
        .env("RADBRIDGE_CACHE_DIR", tmp.path().join("cache"))
        .arg("diagnose")
        .arg(&ct)
        .arg("--model")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("synthetic-data demo"));
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data8 = corpus(tmp.path(), 8);
    let cfg = data("train/tiny-config.json");
    // 8 cases, batch 4: two steps per epoch; 4 epochs = 8 steps.
    let full = tmp.path().join("full");
    train(&cfg, &data8, &full, &["--epochs", "4"]);
    // Stop in the middle of epoch 2 (step 3), then resume to the end.
    let part = tmp.path().join("part");
    let r1 = train(&cfg, &data8, &part, &["--epochs", "4", "--max-steps", "3"]);
    assert_eq!(r1["steps"], 3);
    let state: Value = read_json(&part.join("train-state/state.json"));
    assert_eq!((state["epoch"].as_u64(), state["step_in_epoch"].as_u64()), (Some(1), Some(1)));
    let r2 = train(&cfg, &data8, &part, &["--epochs", "4", "--resume"]);
    assert_eq!(r2["steps"], 8);
    let (a, b) = (weights(&full), weights(&part));
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let d = (t - &b[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(d <= 1e-6, "{k}: resumed run differs by {d}");
    }
    // A resume with another configuration is refused.
    let other = tmp.path().join("other.json");
    let mut c: Value = read_json(&cfg);
    c["optim"]["lr"] = 0.5.into();
    std::fs::write(&other, c.to_string()).unwrap();
    let out = Command::new(bin())
        .args(["train", "--resume", "--config"])
        .arg(&other)
        .arg("--data")
        .arg(&data8)
        .arg("--output")
        .arg(&part)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another configuration"));
}

#[test]
fn the_pretraining_stage_lowers_its_loss_and_is_reused_by_a_later_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data4 = corpus(tmp.path(), 4);
    let mut c: Value = read_json(&data("train/tiny-config.json"));
    c["epochs"] = 2.into();
    c["pretrain"] = serde_json::json!({
        "steps": 40, "batch_size": 4, "mask_ratio": 0.75, "decoder_dim": 12, "decoder_depth": 1, "decoder_heads": 2,
        "norm_pix": false, "optim": {"lr": 0.003, "beta1": 0.9, "beta2": 0.95, "warmup_steps": 5}
    });
    let cfg = tmp.path().join("pretrain.json");
    std::fs::write(&cfg, c.to_string()).unwrap();
    let state = tmp.path().join("state");

    let first = tmp.path().join("first");
    let (so, se) = radbridge(&["train"], &[("--config", &cfg), ("--data", &data4), ("--output", &first), ("--state-dir", &state)]);
    assert!(se.contains("pre-trained image encoder trained"), "{se}");
    let report: Value = serde_json::from_str(so.lines().last().unwrap()).unwrap();
    assert!(report["pretrain_seconds"].as_f64().unwrap() > 0.0);
    let log: Value = read_json(&first.join("train-log.json"));
    let losses: Vec<f64> = log["pretrain_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 40);
    let head = losses[..5].iter().sum::<f64>() / 5.0;
    let tail = losses[35..].iter().sum::<f64>() / 5.0;
    assert!(tail < 0.8 * head, "masked-patch loss did not fall: {losses:?}");
    assert!(state.join("pretrained-vision.safetensors").exists());
    assert_eq!(read_json(&first.join("train-config.json"))["pretrain"]["steps"], 40);

    // A second run with the same stage, corpus and seed takes the encoder from the state
    // folder and ends with the same weights.
    let second = tmp.path().join("second");
    let (_, se) = radbridge(&["train"], &[("--config", &cfg), ("--data", &data4), ("--output", &second), ("--state-dir", &state)]);
    assert!(se.contains("pre-trained image encoder reused"), "{se}");
    let (a, b) = (weights(&first), weights(&second));
    for (k, t) in &a {
        let d = (t - &b[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(d <= 1e-6, "{k}: the run on the reused encoder differs by {d}");
    }

    // The warm start changes the image encoder: a run without the stage ends elsewhere.
    c.as_object_mut().unwrap().remove("pretrain");
    let plain_cfg = tmp.path().join("plain.json");
    std::fs::write(&plain_cfg, c.to_string()).unwrap();
    let plain = tmp.path().join("plain");
    radbridge(&["train"], &[("--config", &plain_cfg), ("--data", &data4), ("--output", &plain)]);
    let p = weights(&plain);
    let k = "img_encoder.model.blocks.0.attn.qkv.weight";
    let d = (&a[k] - &p[k]).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(d > 1e-3, "pre-training left {k} where training from scratch puts it");
}
