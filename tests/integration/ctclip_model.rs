//! CT-CLIP in candle against the official PyTorch code, on a tiny random-weight model
//! (`tests/data/models/ctclip_tiny`, made by `tests/reference/model_reference.py`): every CTViT
//! stage (≤ 1e-4), the VQ indices (exact), the latents, logits and zero-shot probabilities
//! (≤ 1e-5). The full-size CPU measurement is `#[ignore]`d:
//! `cargo test --release -p radbridge-tests --test integration ctclip_model:: -- --ignored --nocapture`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use radbridge_model::bert::BertConfig;
use radbridge_model::ctclip::{CtClip, CtClipConfig};
use radbridge_model::ctvit::CtVitConfig;
use radbridge_model::text::{BertTokenizer, Encoding};
use serde_json::Value;

const STAGE_TOL: f32 = 1e-4;
const SCORE_TOL: f32 = 1e-5;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/ctclip_tiny")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.elem_count(), b.elem_count(), "element counts differ: {:?} vs {:?}", a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let b = b.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn vec_f32(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn vec_u32(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("integer") as u32).collect()
}

struct Fixture {
    dir: PathBuf,
    cfg: CtClipConfig,
    model: CtClip,
    expected: Value,
    stages: std::collections::HashMap<String, Tensor>,
}

fn load_fixture() -> Fixture {
    let dir = fixture_dir();
    let arch: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("arch.json")).unwrap()).unwrap();
    let vision: CtVitConfig = serde_json::from_value(arch.clone()).unwrap();
    let text = BertConfig::from_json_file(dir.join("config.json")).unwrap();
    let cfg = CtClipConfig {
        vision,
        text,
        latent_dim: arch["latent_dim"].as_u64().unwrap() as usize,
        text_max_length: arch["text_max_length"].as_u64().unwrap() as usize,
    };
    assert_eq!(cfg.dim_image(), arch["dim_image"].as_u64().unwrap() as usize);
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap() };
    let model = CtClip::load(vb, &cfg).unwrap();
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let stages = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    Fixture { dir, cfg, model, expected, stages }
}

#[test]
fn ctvit_stages_match_pytorch() {
    let f = load_fixture();
    let video = Tensor::read_npy(f.dir.join("input.npy")).unwrap();
    assert_eq!(video.dims(), &[1, 1, 8, 16, 16]);
    let vit = f.model.visual();
    let (h, w) = f.cfg.vision.grid();

    let bias = vit.rel_pos_bias(h, w).unwrap();
    let d = max_abs_diff(&bias, &f.stages["rel_pos_bias"]);
    println!("rel_pos_bias max |diff| = {d:.3e}");
    assert!(d <= STAGE_TOL, "rel_pos_bias {d}");

    let out = vit.forward_with_intermediates(&video).unwrap();
    for (name, ours) in
        [("patch_emb", &out.patch_emb), ("spatial_out", &out.spatial), ("temporal_out", &out.temporal), ("quantized", &out.quantized)]
    {
        let theirs = &f.stages[name];
        assert_eq!(ours.dims(), theirs.dims(), "{name} shape");
        let d = max_abs_diff(ours, theirs);
        println!("{name:<13} max |diff| = {d:.3e}");
        assert!(d <= STAGE_TOL, "{name}: max abs diff {d}");
    }
    let ours: Vec<u32> = out.indices.flatten_all().unwrap().to_vec1::<u32>().unwrap();
    let theirs: Vec<u32> = f.stages["vq_indices"]
        .flatten_all()
        .unwrap()
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as u32)
        .collect();
    assert_eq!(ours, theirs, "VQ indices");

    // mean over t, then the image latent
    let mean = out.quantized.mean(1).unwrap();
    let d = max_abs_diff(&mean, &f.stages["tokens_mean"]);
    assert!(d <= STAGE_TOL, "tokens_mean {d}");
    let latent = f.model.image_latent_from_tokens(&out.quantized).unwrap();
    let exp = Tensor::new(vec_f32(&f.expected["image"]["latent"]).as_slice(), &Device::Cpu).unwrap();
    let d = max_abs_diff(&latent, &exp);
    println!("image latent  max |diff| = {d:.3e}");
    assert!(d <= SCORE_TOL, "image latent {d}");
    // and through the public entry point
    let latent2 = f.model.encode_image(&video).unwrap();
    assert_eq!(latent2.dims(), &[1, f.cfg.latent_dim]);
    assert!(max_abs_diff(&latent, &latent2) == 0.0);
}

#[test]
fn text_latents_logits_and_zero_shot_match_pytorch() {
    let f = load_fixture();
    let tok = BertTokenizer::from_vocab_file(f.dir.join("vocab.txt"), true).unwrap();
    let temp = f.expected["temperature"].as_f64().unwrap() as f32;
    assert!((f.model.temperature() - temp).abs() <= 1e-7, "temperature {} vs {temp}", f.model.temperature());

    let video = Tensor::read_npy(f.dir.join("input.npy")).unwrap();
    let img = f.model.encode_image(&video).unwrap().squeeze(0).unwrap();

    let prompts = f.expected["prompts"].as_array().unwrap();
    let encs: Vec<Encoding> = prompts.iter().map(|p| tok.encode(p["text"].as_str().unwrap(), f.cfg.text_max_length).unwrap()).collect();
    // tokenisation: our unpadded ids = the reference's ids up to its mask
    for (p, e) in prompts.iter().zip(&encs) {
        let ids = vec_u32(&p["input_ids"]);
        let mask = vec_u32(&p["attention_mask"]);
        let n = mask.iter().filter(|&&m| m != 0).count();
        assert_eq!(e.ids, ids[..n], "ids of {:?}", p["text"]);
        assert_eq!(ids.len(), f.cfg.text_max_length);
    }

    // [CLS]: unpadded (batched to the longest with a mask) vs the reference (padded to 64 + mask)
    let cls = f.model.text_cls(&encs).unwrap();
    let d = max_abs_diff(&cls, &f.stages["text_cls"]);
    println!("text cls      max |diff| = {d:.3e}");
    assert!(d <= STAGE_TOL, "text cls {d}");
    // one text at a time, fully unpadded, gives the same [CLS]
    for (i, e) in encs.iter().enumerate().take(3) {
        let one = f.model.text_cls(std::slice::from_ref(e)).unwrap();
        assert!(max_abs_diff(&one, &cls.get(i).unwrap()) <= 1e-5);
    }
    // and the reference's padded encoding with its mask, straight through BERT
    {
        let p = &prompts[0];
        let ids = Tensor::new(vec_u32(&p["input_ids"]).as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let mask = Tensor::new(vec_u32(&p["attention_mask"]).as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let states = f.model.text().forward(&ids, None, Some(&mask)).unwrap();
        let padded_cls = states.last().unwrap().get(0).unwrap().get(0).unwrap();
        let d = max_abs_diff(&padded_cls, &cls.get(0).unwrap());
        println!("cls padded vs unpadded max |diff| = {d:.3e}");
        assert!(d <= 1e-5, "padded vs unpadded CLS {d}");
    }

    let txt = f.model.encode_texts(&encs).unwrap();
    let mut worst = (0f32, 0f32);
    for (p, t) in prompts.iter().zip(&txt) {
        let exp = Tensor::new(vec_f32(&p["latent"]).as_slice(), &Device::Cpu).unwrap();
        let dl = max_abs_diff(t, &exp);
        let logit = f.model.logit(&img, t).unwrap();
        let dlg = (logit - p["logit"].as_f64().unwrap() as f32).abs();
        worst = (worst.0.max(dl), worst.1.max(dlg));
        assert!(dl <= SCORE_TOL, "{:?}: latent diff {dl}", p["text"]);
        assert!(dlg <= SCORE_TOL, "{:?}: logit diff {dlg}", p["text"]);
    }
    println!("text latent   max |diff| = {:.3e}; logit max |diff| = {:.3e}", worst.0, worst.1);

    let mut worst_p = 0f32;
    let labels = f.expected["labels"].as_array().unwrap();
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for l in labels {
        let label = l["label"].as_str().unwrap();
        let texts = vec_u32(&l["texts"]);
        assert_eq!(prompts[texts[0] as usize]["text"].as_str().unwrap(), format!("{label} is present."));
        assert_eq!(prompts[texts[1] as usize]["text"].as_str().unwrap(), format!("{label} is not present."));
        let (tp, ta) = (&txt[texts[0] as usize], &txt[texts[1] as usize]);
        let p = f.model.p_present(&img, tp, ta).unwrap();
        let d = (p - l["p_present"].as_f64().unwrap() as f32).abs();
        worst_p = worst_p.max(d);
        assert!(d <= SCORE_TOL, "{label}: p_present diff {d}");
        present.push(tp.clone());
        absent.push(ta.clone());
    }
    println!("p_present     max |diff| = {worst_p:.3e}");
    // the batched form agrees with the per-label one
    let pb = f.model.p_present_batch(&img, &Tensor::stack(&present, 0).unwrap(), &Tensor::stack(&absent, 0).unwrap()).unwrap();
    for (l, p) in labels.iter().zip(pb) {
        assert!((p - l["p_present"].as_f64().unwrap() as f32).abs() <= SCORE_TOL);
    }
}

// ---------------------------------------------------------------------------------------------
// full-size measurement

/// Peak and current resident memory in KiB (the library's /proc readers).
fn peak_rss_kb() -> Option<u64> {
    Some(radbridge_model::bench::peak_rss_bytes() / 1024).filter(|&v| v > 0)
}

fn rss_kb() -> Option<u64> {
    Some(radbridge_model::bench::current_rss_bytes() / 1024).filter(|&v| v > 0)
}

/// Deterministic pseudo-random f32 in [−1, 1).
fn lcg_fill(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Random weights under every name the model reads: a first load through a `VarMap` lists the
/// names and shapes, then plausible values are drawn (norm scales ≈ 1, other weights small).
fn random_ctclip(cfg: &CtClipConfig) -> CtClip {
    let shapes: Vec<(String, Vec<usize>)> = {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        CtClip::load(vb, cfg).unwrap();
        let data = varmap.data().lock().unwrap();
        data.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect()
    };
    let mut tensors = std::collections::HashMap::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let fan_in = if shape.len() >= 2 { shape[1..].iter().product::<usize>() } else { 1 };
        let mut v = lcg_fill(n, i as u64 + 1);
        let is_scale = name.ends_with("gamma") || name.ends_with("scale") || (shape.len() == 1 && name.ends_with("weight"));
        if name == "temperature" {
            v = vec![1.0];
        } else if is_scale {
            v.iter_mut().for_each(|x| *x = 1.0 + 0.1 * *x);
        } else if name.ends_with("bias") || name.ends_with("beta") {
            v.iter_mut().for_each(|x| *x *= 0.02);
        } else {
            let s = (3.0 / fan_in as f32).sqrt();
            v.iter_mut().for_each(|x| *x *= s);
        }
        tensors.insert(name.clone(), Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap());
    }
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    CtClip::load(vb, cfg).unwrap()
}

#[test]
#[ignore = "full-size CT-CLIP image forward on CPU (minutes in debug; run in release)"]
fn full_size_image_forward_cpu() {
    let cfg = CtClipConfig::ct_clip_v2();
    let t0 = std::time::Instant::now();
    let model = random_ctclip(&cfg);
    println!("random full-size CT-CLIP (CTViT + CXR-BERT-shaped BERT + projections) built in {:.1} s", t0.elapsed().as_secs_f64());
    let video = Tensor::from_vec(lcg_fill(240 * 480 * 480, 99), (1, 1, 240, 480, 480), &Device::Cpu).unwrap();
    let rss0 = rss_kb().unwrap_or(0);
    // reset the high-water mark so the peak below is this forward's (Linux ≥ 4.0)
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let hwm_before = peak_rss_kb().unwrap_or(0);
    let mut times = Vec::new();
    let mut latent = None;
    for _ in 0..2 {
        let t = std::time::Instant::now();
        let l = model.encode_image(&video).unwrap();
        times.push(t.elapsed().as_secs_f64());
        latent = Some(l);
    }
    let latent = latent.unwrap();
    assert_eq!(latent.dims(), &[1, 512]);
    let norm = latent.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
    assert!((norm - 1.0).abs() < 1e-4);
    let hwm = peak_rss_kb().unwrap_or(0);
    println!(
        "input (1,1,240,480,480): encode_image {:.2} s (first, includes the position-bias MLP) / {:.2} s (second, cached); \
         RSS before forward {:.2} GB (weights + input), peak during forwards {:.2} GB (HWM before {:.2} GB)",
        times[0],
        times[1],
        rss0 as f64 / 1e6 * 1.024,
        hwm as f64 / 1e6 * 1.024,
        hwm_before as f64 / 1e6 * 1.024
    );
    // stage breakdown
    let vit = model.visual();
    let t = std::time::Instant::now();
    let x = vit.patch_embed(&video).unwrap();
    let tp = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let x = vit.encode_spatial(&x).unwrap();
    let ts = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let x = vit.encode_temporal(&x).unwrap();
    let tt = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let (q, _) = vit.vq().forward(&x).unwrap();
    let tq = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let _ = model.image_latent_from_tokens(&q).unwrap();
    let tl = t.elapsed().as_secs_f64();
    println!("stages: patch_emb {tp:.2} s, spatial {ts:.2} s, temporal {tt:.2} s, vq {tq:.2} s, latent {tl:.2} s");
}

#[test]
#[ignore = "op-level timings at full size (release)"]
fn profile_ctvit_ops() {
    use candle_core::Module;
    use radbridge_model::ctvit::{layer_norm, Attention, FeedForward, Peg};
    let cfg = CtVitConfig::ct_clip_v2();
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let attn = Attention::load(vb.pp("a"), &cfg).unwrap();
    let ff = FeedForward::load(vb.pp("f"), &cfg).unwrap();
    let peg = Peg::load(vb.pp("p"), 512, true).unwrap();
    let x = Tensor::from_vec(lcg_fill(13824 * 512, 5), (24, 576, 512), &Device::Cpu).unwrap();
    let bias = Tensor::from_vec(lcg_fill(8 * 576 * 576, 6), (8, 576, 576), &Device::Cpu).unwrap();
    let w = Tensor::ones(512, DType::F32, &Device::Cpu).unwrap();
    let time = |name: &str, f: &dyn Fn() -> Tensor| {
        let _ = f();
        let t = std::time::Instant::now();
        for _ in 0..3 {
            let _ = f();
        }
        println!("{name:<28} {:8.1} ms", t.elapsed().as_secs_f64() * 1000.0 / 3.0);
    };
    let big = Tensor::from_vec(lcg_fill(13824 * 2730, 7), (13824, 2730), &Device::Cpu).unwrap();
    let wl = Tensor::from_vec(lcg_fill(2730 * 512, 8), (2730, 512), &Device::Cpu).unwrap();
    let x2 = x.reshape((13824, 512)).unwrap();
    time("matmul 13824x512x2730", &|| x2.matmul(&wl.t().unwrap()).unwrap());
    time("gelu_erf 13824x1365", &|| big.narrow(1, 0, 1365).unwrap().gelu_erf().unwrap());
    time("gelu(tanh) 13824x1365", &|| big.narrow(1, 0, 1365).unwrap().gelu().unwrap());
    time("layer_norm 13824x512", &|| layer_norm(&x, &w, &w, 1e-5).unwrap());
    time("peg conv", &|| peg.conv(&x, (1, 24, 24, 24)).unwrap());
    time("ff", &|| ff.forward(&x).unwrap());
    time("attn spatial (24,576)", &|| attn.forward(&x, Some(&bias)).unwrap());
    let xt = x.reshape((576, 24, 512)).unwrap();
    time("attn temporal (576,24)", &|| attn.forward(&xt, None).unwrap());
    let q = Tensor::from_vec(lcg_fill(576 * 8 * 24 * 32, 9), (576, 8, 24, 32), &Device::Cpu).unwrap();
    time("bmm 4608x(24x32x24)", &|| q.matmul(&q.transpose(2, 3).unwrap()).unwrap());
    let s = Tensor::from_vec(lcg_fill(24 * 8 * 576 * 576, 9), (24, 8, 576, 576), &Device::Cpu).unwrap();
    time("softmax 24x8x576x576", &|| candle_nn::ops::softmax_last_dim(&s).unwrap());
}
