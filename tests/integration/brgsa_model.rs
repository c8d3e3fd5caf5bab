//! BrgSA in candle against the PyTorch reference (`tests/reference/model_reference.py` →
//! `tests/data/models/brgsa_tiny/`): a tiny random-weight BrgSA with the official names, one
//! (1,1,64,64,32) input whose 4×4×4 token grid needs the 2³ position embedding resized, and
//! prompts covering cleaning, word pieces, [UNK], truncation and an empty prompt.
//!
//! Exact: cleaned text, tokens and ids. Embeddings: max abs diff ≤ 1e-4. Scores ≤ 1e-5.
//!
//! `full_size_random_weights_cpu` (ignored) times the official geometry at 256×256×128 and
//! reports peak RSS: `cargo test --release -p radbridge-tests --test integration brgsa_model:: -- --ignored
//! --nocapture`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use radbridge_model::bert::BertConfig;
use radbridge_model::brgsa::{score, Brgsa, BrgsaConfig, TextEmbedding};
use radbridge_model::text::{process_text, BertTokenizer, Encoding};
use radbridge_tests::*;
use serde_json::Value;

fn dir() -> PathBuf {
    data("models/brgsa_tiny")
}

fn config() -> BrgsaConfig {
    let mut cfg: BrgsaConfig = serde_json::from_value(json_file("models/brgsa_tiny/arch.json")).expect("arch.json");
    cfg.text = BertConfig::from_json_file(dir().join("config.json")).expect("config.json");
    cfg
}

fn load() -> Brgsa {
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir().join("model.safetensors")], DType::F32, &Device::Cpu) }
        .expect("model.safetensors");
    Brgsa::load(vb, &config()).expect("load BrgSA")
}

fn expected() -> Value {
    json_file("models/brgsa_tiny/expected.json")
}

fn expected_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join("expected.safetensors"), &Device::Cpu).expect("expected.safetensors")
}

/// A little-endian float32 C-order `.npy` file.
fn read_npy_f32(path: PathBuf) -> Tensor {
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, off) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[off..off + hlen]).unwrap();
    assert!(header.contains("'<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_str = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_str.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let data: Vec<f32> = b[off + hlen..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

fn max_diff(got: &Tensor, want: &Value, what: &str) -> f64 {
    let want = f64s(want);
    let got = flat(got);
    assert_eq!(got.len(), want.len(), "{what}: length");
    got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
}

fn max_diff_t(got: &Tensor, want: &Tensor, what: &str) -> f64 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    flat(got).iter().zip(flat(want)).map(|(a, b)| (*a as f64 - b as f64).abs()).fold(0.0, f64::max)
}

fn u32s(v: &Value) -> Vec<u32> {
    usizes(v).into_iter().map(|x| x as u32).collect()
}

const EMB_TOL: f64 = 1e-4;
const SCORE_TOL: f64 = 1e-5;

#[test]
fn prompt_cleaning_and_tokenisation_are_exact() {
    let cfg = config();
    let tok = BertTokenizer::from_vocab_file(dir().join("vocab.txt"), true).unwrap();
    let tok_dir = BertTokenizer::from_dir(dir()).unwrap();
    let exp = expected();
    let prompts = exp["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 10);
    for p in prompts {
        let text = p["text"].as_str().unwrap();
        let cleaned = process_text(text);
        assert_eq!(cleaned, p["cleaned"].as_str().unwrap(), "cleaning of {text:?}");
        for t in [&tok, &tok_dir] {
            let e = t.encode_padded(&cleaned, cfg.text_max_length).unwrap();
            assert_eq!(e.ids, u32s(&p["input_ids"]), "ids of {cleaned:?}");
            assert_eq!(e.type_ids, u32s(&p["token_type_ids"]), "type ids of {cleaned:?}");
            assert_eq!(e.attention_mask, u32s(&p["attention_mask"]), "mask of {cleaned:?}");
            let want: Vec<String> = p["tokens"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            assert_eq!(e.tokens, want, "tokens of {cleaned:?}");
        }
    }
}

#[test]
fn image_side_matches_pytorch() {
    let model = load();
    let x = read_npy_f32(dir().join("input.npy"));
    assert_eq!(x.dims(), &[1, 1, 64, 64, 32]);
    let exp = expected();
    let et = expected_tensors();

    // Stages: patch embedding, resized position embedding, tokens entering the blocks.
    let (patches, grid) = model.vision().patch_embed(&x).unwrap();
    assert_eq!(grid, [4, 4, 4]);
    let d = max_diff_t(&patches, &et["patch_embed"], "patch_embed");
    assert!(d <= EMB_TOL, "patch_embed: {d}");
    let pe = model.vision().pos_embed_for(grid).unwrap();
    let d = max_diff_t(&pe, &et["pos_embed_resized"], "pos_embed_resized");
    assert!(d <= 1e-6, "pos_embed_resized: {d}");
    let (tokens_in, _) = model.vision().embed(&x).unwrap();
    let d = max_diff_t(&tokens_in, &et["tokens_in"], "tokens_in");
    assert!(d <= EMB_TOL, "tokens_in: {d}");

    let img = model.encode_image(&x).unwrap();
    assert_eq!(img.grid, [4, 4, 4]);
    let mut report = Vec::new();
    for (name, got) in [("cls", &img.cls), ("v", &img.v), ("v_hat", &img.v_hat), ("z", &img.z)] {
        let d = max_diff(got, &exp["image"][name], name);
        report.push(format!("{name} {d:.2e}"));
        assert!(d <= EMB_TOL, "image {name}: max abs diff {d}");
    }
    let d = max_diff_t(&img.patches.unsqueeze(0).unwrap(), &et["patch_tokens"], "patch_tokens");
    report.push(format!("patch_tokens {d:.2e}"));
    assert!(d <= EMB_TOL, "patch_tokens: {d}");
    let d = max_diff_t(&img.patch_proj.unsqueeze(0).unwrap(), &et["patch_proj"], "patch_proj");
    report.push(format!("patch_proj {d:.2e}"));
    assert!(d <= EMB_TOL, "patch_proj: {d}");
    eprintln!("image side: {}", report.join(", "));
}

fn encodings(cfg: &BrgsaConfig) -> Vec<Encoding> {
    let tok = BertTokenizer::from_vocab_file(dir().join("vocab.txt"), true).unwrap();
    expected()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| tok.encode_padded(&process_text(p["text"].as_str().unwrap()), cfg.text_max_length).unwrap())
        .collect()
}

#[test]
fn bert_hidden_states_match_padded_and_unpadded() {
    let model = load();
    let cfg = model.config().clone();
    let et = expected_tensors();
    let want = &et["text_hidden_states"]; // (prompts, layers + 1, max_len, hidden)
    let encs = encodings(&cfg);
    assert_eq!(want.dim(0).unwrap(), encs.len());
    let dev = Device::Cpu;
    let n = encs.len();
    let l = cfg.text_max_length;
    let cat = |f: &dyn Fn(&Encoding) -> &Vec<u32>| {
        Tensor::from_vec(encs.iter().flat_map(|e| f(e).clone()).collect::<Vec<u32>>(), (n, l), &dev).unwrap()
    };
    // The official way: everything padded to 97 (here 24) with an attention mask.
    let states = model.bert().forward(&cat(&|e| &e.ids), Some(&cat(&|e| &e.type_ids)), Some(&cat(&|e| &e.attention_mask))).unwrap();
    assert_eq!(states.len(), cfg.text.num_hidden_layers + 1);
    let mut worst = 0f64;
    for (layer, h) in states.iter().enumerate() {
        for (i, e) in encs.iter().enumerate() {
            let r = e.real_len();
            let d = max_diff_t(&h.i((i, 0..r)).unwrap(), &want.i((i, layer, 0..r)).unwrap(), "hidden");
            worst = worst.max(d);
            // Unpadded: same real-token outputs.
            let u = e.unpadded();
            let ids = Tensor::new(u.ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
            let types = Tensor::new(u.type_ids.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
            if layer == 0 {
                let s = model.bert().forward(&ids, Some(&types), None).unwrap();
                for (ll, hu) in s.iter().enumerate() {
                    let d = max_diff_t(&hu.i(0).unwrap(), &want.i((i, ll, 0..r)).unwrap(), "hidden unpadded");
                    worst = worst.max(d);
                }
            }
        }
    }
    eprintln!("BERT hidden states: worst {worst:.2e}");
    assert!(worst <= EMB_TOL, "BERT hidden states differ by {worst}");
}

#[test]
fn text_side_and_scores_match_pytorch() {
    let model = load();
    let cfg = model.config().clone();
    let exp = expected();
    let x = read_npy_f32(dir().join("input.npy"));
    let img = model.encode_image(&x).unwrap();
    let encs = encodings(&cfg);
    let texts: Vec<TextEmbedding> = model.encode_texts(&encs).unwrap();
    // Unpadded input gives the same embeddings.
    let unpadded: Vec<Encoding> = encs.iter().map(|e| e.unpadded()).collect();
    let texts_u = model.encode_texts(&unpadded).unwrap();
    let scores = model.scores(&img, &texts).unwrap();
    let (mut emb_worst, mut score_worst) = (0f64, 0f64);
    for (i, p) in exp["prompts"].as_array().unwrap().iter().enumerate() {
        let t = &texts[i];
        for (name, got) in [("s", &t.s), ("t", &t.t), ("t_hat", &t.t_hat), ("z", &t.z)] {
            let d = max_diff(got, &p[name], name);
            emb_worst = emb_worst.max(d);
            assert!(d <= EMB_TOL, "prompt {i} {name}: max abs diff {d}");
        }
        let d = max_diff_t(&texts_u[i].t, &t.t, "t unpadded");
        assert!(d <= 1e-5, "prompt {i}: unpadded t differs by {d}");
        let cos_vt = radbridge_model::brgsa::cosine(&img.v, &t.t).unwrap();
        let cos_vht = radbridge_model::brgsa::cosine(&img.v_hat, &t.t).unwrap();
        for (name, got) in [("cos_v_t", cos_vt), ("cos_vhat_t", cos_vht), ("score", scores[i] as f64)] {
            let d = (got - p[name].as_f64().unwrap()).abs();
            score_worst = score_worst.max(d);
            assert!(d <= SCORE_TOL, "prompt {i} {name}: {got} vs {} ({d})", p[name]);
        }
        let s1 = score(&img.v, &img.v_hat, &t.t).unwrap();
        assert_eq!(s1, scores[i]);
    }
    eprintln!("text side: embeddings worst {emb_worst:.2e}, scores worst {score_worst:.2e}");
}

/// Restarts the peak-RSS count from the current RSS (Linux `clear_refs` 5), so that the random
/// initialisation above does not count.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_now() -> Option<u64> {
    Some(radbridge_model::bench::current_rss_bytes()).filter(|&v| v > 0)
}

/// Peak resident set size of this process (Linux VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    Some(radbridge_model::bench::peak_rss_bytes()).filter(|&v| v > 0)
}

#[test]
#[ignore = "full-size timing; run in release with --ignored --nocapture"]
fn full_size_random_weights_cpu() {
    use std::time::Instant;
    let dev = Device::Cpu;
    let cfg = BrgsaConfig::default();
    let t0 = Instant::now();
    // Initialise through a VarMap (it knows every name and shape), then rebuild from plain
    // detached tensors: a model on `Var`s would record the autograd graph and keep every
    // intermediate alive, unlike one loaded from a checkpoint.
    let varmap = candle_nn::VarMap::new();
    Brgsa::load(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg).unwrap();
    let weights: HashMap<String, Tensor> = varmap.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
    drop(varmap);
    let n_params: usize = weights.values().map(|t| t.elem_count()).sum();
    eprintln!("random init: {n_params} parameters in {:.1} s", t0.elapsed().as_secs_f64());
    // Through a safetensors file and mmap, as the app loads a converted checkpoint.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    candle_core::safetensors::save(&weights, &file).unwrap();
    drop(weights);
    reset_peak_rss();
    let t0 = Instant::now();
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&file], DType::F32, &dev) }.unwrap();
    let model = Brgsa::load(vb, &cfg).unwrap();
    eprintln!("load from safetensors: {:.1} s", t0.elapsed().as_secs_f64());
    let rss_load = peak_rss().unwrap_or(0);
    let rss_weights = rss_now().unwrap_or(0);
    reset_peak_rss();

    let x = Tensor::randn(0f32, 1., (1, 1, 256, 256, 128), &dev).unwrap();
    let t1 = Instant::now();
    let img = model.encode_image(&x).unwrap();
    let t_img = t1.elapsed().as_secs_f64();
    assert_eq!(img.grid, [16, 16, 16]);
    assert_eq!(img.patch_proj.dims(), &[4096, 768]);

    // 18 CT-RATE-like prompts of 5–9 tokens ([CLS] … [SEP]), random ids.
    let encs: Vec<Encoding> = (0..18)
        .map(|i| {
            let n = 5 + i % 5;
            let ids: Vec<u32> = (0..n)
                .map(|j| {
                    if j == 0 {
                        101
                    } else if j == n - 1 {
                        102
                    } else {
                        1000 + (i * 37 + j * 11) as u32
                    }
                })
                .collect();
            let mut tokens: Vec<String> = (0..n).map(|j| format!("w{j}")).collect();
            tokens[0] = "[CLS]".into();
            tokens[n - 1] = "[SEP]".into();
            Encoding { ids, type_ids: vec![0; n], attention_mask: vec![1; n], tokens }.padded(97, 0, "[PAD]")
        })
        .collect();
    let t2 = Instant::now();
    let texts = model.encode_texts(&encs).unwrap();
    let t_txt = t2.elapsed().as_secs_f64();
    let scores = model.scores(&img, &texts).unwrap();
    assert!(scores.iter().all(|s| s.is_finite()));
    let rss = peak_rss().unwrap_or(0).max(rss_load);
    eprintln!(
        "full-size BrgSA, CPU f32, {} threads: image 256x256x128 {t_img:.1} s, 18 prompts {t_txt:.2} s; \
         peak RSS {:.2} GB (loading: {:.2} GB with the mmapped file; resident weights {:.2} GB; \
         forward: {:.2} GB)",
        candle_core::utils::get_num_threads(),
        rss as f64 / 1e9,
        rss_load as f64 / 1e9,
        rss_weights as f64 / 1e9,
        peak_rss().unwrap_or(0) as f64 / 1e9,
    );
    assert!(rss <= 4_000_000_000, "peak RSS {rss} > 4 GB");
}
