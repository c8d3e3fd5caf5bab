//! Official checkpoints → tensors under canonical names, with every key checked.
//!
//! Reads PyTorch files directly (BrgSA's PyTorch-Lightning `best.ckpt`: a zip pickle whose
//! `state_dict` keys carry the `gloria.` prefix; CT-CLIP's `CT-CLIP_v2.pt`: a plain state dict)
//! and safetensors. Dimensions are inferred from tensor shapes where they are unambiguous
//! (depth, hidden sizes, bank size, vocabulary, patch sizes); the rest (heads, pooling, text
//! length, image size where the position grid does not say) come from the official defaults or
//! from overrides. The checkpoint is then checked against the full list of keys the model
//! needs: missing, unexpected and mis-shaped keys are reported together, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use serde_json::{json, Value};

/// Which model a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Brgsa,
    Ctclip,
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "brgsa" => Ok(Arch::Brgsa),
            "ctclip" => Ok(Arch::Ctclip),
            _ => Err(format!("unknown architecture '{s}' (expected brgsa or ctclip)")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: cannot read checkpoint: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: not the {arch:?} checkpoint this needs:\n{report}")]
    Keys { path: String, arch: Arch, report: Box<KeyReport> },
    #[error("{path}: {reason}")]
    Dims { path: String, reason: String },
}

/// What a checkpoint holds against what the model needs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KeyReport {
    pub missing: Vec<(String, Vec<usize>)>,
    /// (key, expected shape, found shape)
    pub misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    pub unexpected: Vec<String>,
    /// Keys the official model holds but inference does not use.
    pub ignored: Vec<String>,
    pub used: usize,
}

impl KeyReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.misshaped.is_empty()
    }
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |f: &mut std::fmt::Formatter<'_>, title: &str, items: Vec<String>| -> std::fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            writeln!(f, "  {title} ({}):", items.len())?;
            for i in items.iter().take(20) {
                writeln!(f, "    {i}")?;
            }
            if items.len() > 20 {
                writeln!(f, "    … and {} more", items.len() - 20)?;
            }
            Ok(())
        };
        list(f, "missing keys", self.missing.iter().map(|(k, s)| format!("{k} {s:?}")).collect())?;
        list(f, "mis-shaped keys", self.misshaped.iter().map(|(k, e, g)| format!("{k}: expected {e:?}, found {g:?}")).collect())?;
        list(f, "unexpected keys", self.unexpected.clone())?;
        write!(f, "  {} keys matched", self.used)
    }
}

/// Read every tensor of a checkpoint as (name, tensor), f32 on the CPU.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let err = |reason: String| CheckpointError::Read { path: path.display().to_string(), reason };
    let mut head = [0u8; 8];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let n = f.read(&mut head).map_err(|e| err(e.to_string()))?;
        if n < 8 {
            return Err(err("file is too short to be a checkpoint".into()));
        }
    }
    let pairs: Vec<(String, Tensor)> = if &head[..2] == b"PK" {
        // PyTorch zip: a Lightning checkpoint keeps the weights under "state_dict".
        let pth = match candle_core::pickle::PthTensors::new(path, Some("state_dict")) {
            Ok(p) if !p.tensor_infos().is_empty() => p,
            _ => candle_core::pickle::PthTensors::new(path, None)
                .map_err(|e| err(format!("not a readable PyTorch state dict ({})", first_line(&e))))?,
        };
        let mut v = Vec::new();
        for (name, info) in pth.tensor_infos() {
            // Empty tensors (CT-CLIP's null_kv of shape (heads, 0, dim_head)) hold nothing.
            if info.layout.shape().elem_count() == 0 {
                continue;
            }
            match pth.get(name) {
                Ok(Some(t)) => v.push((name.clone(), t)),
                Ok(None) => {}
                Err(e) => return Err(err(format!("tensor {name}: {}", first_line(&e)))),
            }
        }
        v
    } else if head[0] == 0x80 {
        return Err(err(
            "legacy (non-zip) PyTorch serialisation is not supported; re-save with torch.save in the default zip format".into()
        ));
    } else {
        candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| err(format!("neither a PyTorch zip nor a safetensors file ({})", first_line(&e))))?
            .into_iter()
            .collect()
    };
    if pairs.is_empty() {
        return Err(err("no tensors found".into()));
    }
    let mut out = BTreeMap::new();
    for (k, t) in pairs {
        let t = if t.dtype() == DType::F32 { t } else { t.to_dtype(DType::F32).map_err(|e| err(first_line(&e)))? };
        out.insert(k, t);
    }
    Ok(out)
}

/// A candle error's message without the backtrace it may carry.
pub fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Strip training-wrapper prefixes: everything up to the last "gloria." (as BrgSA's loader
/// does), and a leading "module." (DataParallel).
pub fn canonical_name(key: &str) -> String {
    let k = match key.rfind("gloria.") {
        Some(i) => &key[i + "gloria.".len()..],
        None => key,
    };
    k.strip_prefix("module.").unwrap_or(k).to_string()
}

fn shape(t: &BTreeMap<String, Tensor>, k: &str) -> Option<Vec<usize>> {
    t.get(k).map(|x| x.dims().to_vec())
}

fn count_indexed(t: &BTreeMap<String, Tensor>, prefix: &str) -> usize {
    let mut n = 0;
    while t.keys().any(|k| k.starts_with(&format!("{prefix}{n}."))) {
        n += 1;
    }
    n
}

/// Overrides for what shapes cannot tell.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub vision_heads: Option<usize>,
    pub text_pool_layers: Option<usize>,
    pub text_max_length: Option<usize>,
    /// BrgSA: the base image size of the stored position grid; CT-CLIP: (h, w) of the input.
    pub image_size: Option<Vec<usize>>,
    pub patch_size: Option<usize>,
    pub temporal_patch_size: Option<usize>,
    pub heads: Option<usize>,
    pub dim_head: Option<usize>,
}

/// Text-encoder (BERT) dimensions from the weights, merged over a `config.json`.
fn bert_config(t: &BTreeMap<String, Tensor>, prefix: &str, base: &Value, path: &str) -> Result<Value, CheckpointError> {
    let dims = |reason: String| CheckpointError::Dims { path: path.into(), reason };
    let we = shape(t, &format!("{prefix}embeddings.word_embeddings.weight"))
        .ok_or_else(|| dims(format!("no {prefix}embeddings.word_embeddings.weight: not a BERT text encoder")))?;
    let pe = shape(t, &format!("{prefix}embeddings.position_embeddings.weight")).unwrap_or(vec![512, we[1]]);
    let te = shape(t, &format!("{prefix}embeddings.token_type_embeddings.weight")).unwrap_or(vec![2, we[1]]);
    let layers = count_indexed(t, &format!("{prefix}encoder.layer."));
    let inter = shape(t, &format!("{prefix}encoder.layer.0.intermediate.dense.weight")).map(|s| s[0]).unwrap_or(4 * we[1]);
    let mut c = base.clone();
    if !c.is_object() {
        c = json!({});
    }
    let o = c.as_object_mut().unwrap();
    for (k, v) in [
        ("vocab_size", json!(we[0])),
        ("hidden_size", json!(we[1])),
        ("max_position_embeddings", json!(pe[0])),
        ("type_vocab_size", json!(te[0])),
        ("num_hidden_layers", json!(layers)),
        ("intermediate_size", json!(inter)),
    ] {
        if let Some(old) = o.get(k) {
            if old != &v {
                tracing::warn!(key = k, config = %old, weights = %v, "config.json disagrees with the weights; using the weights");
            }
        }
        o.insert(k.into(), v);
    }
    o.entry("num_attention_heads").or_insert(json!((we[1] / 64).max(1)));
    o.entry("hidden_act").or_insert(json!("gelu"));
    o.entry("layer_norm_eps").or_insert(json!(1e-12));
    o.entry("pad_token_id").or_insert(json!(0));
    o.entry("model_type").or_insert(json!("bert"));
    Ok(c)
}

fn bert_expected(prefix: &str, c: &Value, out: &mut Vec<(String, Vec<usize>)>) {
    let g = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
    let (h, v, p, tv, l, i) = (
        g("hidden_size"),
        g("vocab_size"),
        g("max_position_embeddings"),
        g("type_vocab_size"),
        g("num_hidden_layers"),
        g("intermediate_size"),
    );
    let e = |out: &mut Vec<(String, Vec<usize>)>, k: String, s: Vec<usize>| out.push((format!("{prefix}{k}"), s));
    e(out, "embeddings.word_embeddings.weight".into(), vec![v, h]);
    e(out, "embeddings.position_embeddings.weight".into(), vec![p, h]);
    e(out, "embeddings.token_type_embeddings.weight".into(), vec![tv, h]);
    e(out, "embeddings.LayerNorm.weight".into(), vec![h]);
    e(out, "embeddings.LayerNorm.bias".into(), vec![h]);
    for n in 0..l {
        let b = format!("encoder.layer.{n}.");
        for q in ["query", "key", "value"] {
            e(out, format!("{b}attention.self.{q}.weight"), vec![h, h]);
            e(out, format!("{b}attention.self.{q}.bias"), vec![h]);
        }
        e(out, format!("{b}attention.output.dense.weight"), vec![h, h]);
        e(out, format!("{b}attention.output.dense.bias"), vec![h]);
        e(out, format!("{b}attention.output.LayerNorm.weight"), vec![h]);
        e(out, format!("{b}attention.output.LayerNorm.bias"), vec![h]);
        e(out, format!("{b}intermediate.dense.weight"), vec![i, h]);
        e(out, format!("{b}intermediate.dense.bias"), vec![i]);
        e(out, format!("{b}output.dense.weight"), vec![h, i]);
        e(out, format!("{b}output.dense.bias"), vec![h]);
        e(out, format!("{b}output.LayerNorm.weight"), vec![h]);
        e(out, format!("{b}output.LayerNorm.bias"), vec![h]);
    }
}

/// Architecture description (the `model.json` sections) inferred from a checkpoint.
#[derive(Debug, Clone)]
pub struct Inferred {
    pub arch: Arch,
    /// BrgSA: {"vision": Vit3dConfig, "embed_dim", "bank_size", "text_max_length",
    /// "text_pool_layers"}; CT-CLIP: {"vision": CtVitConfig, "latent_dim", "text_max_length"}.
    pub model: Value,
    /// The BERT config.json (HF layout), with dimensions taken from the weights.
    pub text_config: Value,
    pub expected: Vec<(String, Vec<usize>)>,
    /// Canonical-name prefixes that official checkpoints carry but inference does not use.
    pub ignored_prefixes: Vec<&'static str>,
}

fn grid_side(tokens: usize) -> Option<usize> {
    let s = (tokens as f64).cbrt().round() as usize;
    (s * s * s == tokens).then_some(s)
}

/// Work out a BrgSA model's dimensions from its weights (canonical names).
pub fn infer_brgsa(t: &BTreeMap<String, Tensor>, text_base: &Value, o: &Overrides, path: &str) -> Result<Inferred, CheckpointError> {
    let dims = |reason: String| CheckpointError::Dims { path: path.into(), reason };
    let v = "img_encoder.model.";
    let cls = shape(t, &format!("{v}cls_token")).ok_or_else(|| dims("no img_encoder.model.cls_token: not a BrgSA checkpoint".into()))?;
    let hidden = cls[2];
    let pw = shape(t, &format!("{v}patch_embed.proj.weight")).ok_or_else(|| dims("no patch_embed.proj.weight".into()))?;
    if pw.len() != 5 {
        return Err(dims(format!("patch_embed.proj.weight has shape {pw:?}; expected a Conv3d weight (5 dims)")));
    }
    let patch = [pw[2], pw[3], pw[4]];
    let depth = count_indexed(t, &format!("{v}blocks."));
    let mlp = shape(t, &format!("{v}blocks.0.mlp.fc1.weight")).map(|s| s[0]).unwrap_or(4 * hidden);
    let pos = shape(t, &format!("{v}pos_embed")).ok_or_else(|| dims("no pos_embed".into()))?;
    let img_size: Vec<usize> = match &o.image_size {
        Some(s) if s.len() == 3 => s.clone(),
        Some(s) => return Err(dims(format!("--image-size needs three values for BrgSA, got {s:?}"))),
        None => {
            // Official grid: 224×224×112 with patch 16×16×8 → 14³. A cube grid is unambiguous.
            let side = grid_side(pos[1] - 1)
                .ok_or_else(|| dims(format!("pos_embed holds {} patch positions, not a cube: give --image-size A0,A1,A2", pos[1] - 1)))?;
            vec![side * patch[0], side * patch[1], side * patch[2]]
        }
    };
    let embed = shape(t, "img_encoder.global_embedder.weight").ok_or_else(|| dims("no img_encoder.global_embedder.weight".into()))?[0];
    let bank = shape(t, "dictionarylearning.dictionary.weight")
        .ok_or_else(|| dims("no dictionarylearning.dictionary.weight (the knowledge bank)".into()))?;
    let heads = o.vision_heads.unwrap_or(if hidden % 64 == 0 { hidden / 64 } else { 12 });
    let text_config = bert_config(t, "text_encoder.model.", text_base, path)?;
    let th = text_config["hidden_size"].as_u64().unwrap() as usize;
    let model = json!({
        "vision": {
            "hidden_size": hidden, "depth": depth, "num_heads": heads, "mlp_dim": mlp,
            "patch_size": patch, "img_size": img_size, "in_channels": pw[1], "qkv_bias": t.contains_key(&format!("{v}blocks.0.attn.qkv.bias")),
            "block_eps": 1e-6, "final_eps": 1e-5
        },
        "embed_dim": embed,
        "bank_size": bank[0],
        "text_max_length": o.text_max_length.unwrap_or(97),
        "text_pool_layers": o.text_pool_layers.unwrap_or(4),
    });
    let grid: usize = (0..3).map(|a| img_size[a] / patch[a]).product();
    let mut e = Vec::new();
    let mut push = |k: String, s: Vec<usize>| e.push((k, s));
    push(format!("{v}cls_token"), vec![1, 1, hidden]);
    push(format!("{v}pos_embed"), vec![1, 1 + grid, hidden]);
    push(format!("{v}patch_embed.proj.weight"), pw.clone());
    push(format!("{v}patch_embed.proj.bias"), vec![hidden]);
    for n in 0..depth {
        let b = format!("{v}blocks.{n}.");
        for ln in ["norm1", "norm2"] {
            push(format!("{b}{ln}.weight"), vec![hidden]);
            push(format!("{b}{ln}.bias"), vec![hidden]);
        }
        push(format!("{b}attn.qkv.weight"), vec![3 * hidden, hidden]);
        if model["vision"]["qkv_bias"] == json!(true) {
            push(format!("{b}attn.qkv.bias"), vec![3 * hidden]);
        }
        push(format!("{b}attn.proj.weight"), vec![hidden, hidden]);
        push(format!("{b}attn.proj.bias"), vec![hidden]);
        push(format!("{b}mlp.fc1.weight"), vec![mlp, hidden]);
        push(format!("{b}mlp.fc1.bias"), vec![mlp]);
        push(format!("{b}mlp.fc2.weight"), vec![hidden, mlp]);
        push(format!("{b}mlp.fc2.bias"), vec![hidden]);
    }
    push(format!("{v}norm.weight"), vec![hidden]);
    push(format!("{v}norm.bias"), vec![hidden]);
    push("img_encoder.global_embedder.weight".into(), vec![embed, hidden]);
    push("img_encoder.global_embedder.bias".into(), vec![embed]);
    push("text_encoder.emb_global.weight".into(), vec![embed, th]);
    push("text_encoder.emb_global.bias".into(), vec![embed]);
    push("dictionarylearning.dictionary.weight".into(), vec![bank[0], embed]);
    bert_expected("text_encoder.model.", &text_config, &mut e);
    Ok(Inferred {
        arch: Arch::Brgsa,
        model,
        text_config,
        expected: e,
        ignored_prefixes: vec![
            "img_encoder.local_embedder.",
            "text_encoder.emb_local.",
            "text_encoder.model.pooler.",
            "text_encoder.model.embeddings.position_ids",
        ],
    })
}

/// Work out a CT-CLIP model's dimensions from its weights.
pub fn infer_ctclip(t: &BTreeMap<String, Tensor>, text_base: &Value, o: &Overrides, path: &str) -> Result<Inferred, CheckpointError> {
    let dims = |reason: String| CheckpointError::Dims { path: path.into(), reason };
    let v = "visual_transformer.";
    let emb = shape(t, &format!("{v}to_patch_emb.2.weight"))
        .ok_or_else(|| dims("no visual_transformer.to_patch_emb.2.weight: not a CT-CLIP checkpoint".into()))?;
    let (dim, feat) = (emb[0], emb[1]);
    let patch = o.patch_size.unwrap_or(20);
    let tpatch = o.temporal_patch_size.unwrap_or(10);
    if feat != tpatch * patch * patch {
        return Err(dims(format!(
            "the patch embedding takes {feat} features but patch {patch} × {patch} × temporal {tpatch} gives {}: pass --patch-size and --temporal-patch-size",
            tpatch * patch * patch
        )));
    }
    let sd = count_indexed(t, &format!("{v}enc_spatial_transformer.layers."));
    let td = count_indexed(t, &format!("{v}enc_temporal_transformer.layers."));
    let q =
        shape(t, &format!("{v}enc_spatial_transformer.layers.0.1.to_q.weight")).ok_or_else(|| dims("no attention to_q weight".into()))?;
    let inner = q[0];
    let dim_head = o.dim_head.unwrap_or(32);
    let heads = o.heads.unwrap_or(inner / dim_head.max(1));
    if heads * dim_head != inner {
        return Err(dims(format!("attention width {inner} is not heads {heads} × dim_head {dim_head}: pass --heads and --dim-head")));
    }
    let ff = shape(t, &format!("{v}enc_spatial_transformer.layers.0.3.1.weight")).map(|s| s[0]).unwrap_or(0);
    let code = shape(t, &format!("{v}vq._codebook.embed")).ok_or_else(|| dims("no vq._codebook.embed".into()))?;
    let vl = shape(t, "to_visual_latent.weight").ok_or_else(|| dims("no to_visual_latent.weight".into()))?;
    let latent = vl[0];
    let grid = vl[1] / dim;
    let side = (grid as f64).sqrt().round() as usize;
    let image_size = match &o.image_size {
        Some(s) if s.len() == 2 => s.clone(),
        Some(s) => return Err(dims(format!("--image-size needs two values (h, w) for CT-CLIP, got {s:?}"))),
        None if side * side == grid => vec![side * patch, side * patch],
        None => return Err(dims(format!("to_visual_latent expects {grid} spatial tokens, not a square: give --image-size H,W"))),
    };
    let cpb = shape(t, &format!("{v}spatial_rel_pos_bias.net.0.0.weight")).map(|s| s[0]).unwrap_or(dim);
    let text_config = bert_config(t, "text_transformer.", text_base, path)?;
    let th = text_config["hidden_size"].as_u64().unwrap() as usize;
    let model = json!({
        "vision": {
            "dim": dim, "patch_size": patch, "temporal_patch_size": tpatch, "spatial_depth": sd, "temporal_depth": td,
            "heads": heads, "dim_head": dim_head, "codebook_size": code[1], "ff_inner": ff / 2, "image_size": image_size,
        },
        "latent_dim": latent,
        "text_max_length": o.text_max_length.unwrap_or(512),
    });
    let mut e = Vec::new();
    let mut push = |k: String, s: Vec<usize>| e.push((k, s));
    push(format!("{v}spatial_rel_pos_bias.net.0.0.weight"), vec![cpb, 2]);
    push(format!("{v}spatial_rel_pos_bias.net.0.0.bias"), vec![cpb]);
    push(format!("{v}spatial_rel_pos_bias.net.1.0.weight"), vec![cpb, cpb]);
    push(format!("{v}spatial_rel_pos_bias.net.1.0.bias"), vec![cpb]);
    push(format!("{v}spatial_rel_pos_bias.net.2.weight"), vec![heads, cpb]);
    push(format!("{v}spatial_rel_pos_bias.net.2.bias"), vec![heads]);
    push(format!("{v}to_patch_emb.1.weight"), vec![feat]);
    push(format!("{v}to_patch_emb.1.bias"), vec![feat]);
    push(format!("{v}to_patch_emb.2.weight"), vec![dim, feat]);
    push(format!("{v}to_patch_emb.2.bias"), vec![dim]);
    push(format!("{v}to_patch_emb.3.weight"), vec![dim]);
    push(format!("{v}to_patch_emb.3.bias"), vec![dim]);
    for (stage, depth) in [("enc_spatial_transformer", sd), ("enc_temporal_transformer", td)] {
        for n in 0..depth {
            let b = format!("{v}{stage}.layers.{n}.");
            push(format!("{b}0.dsconv.weight"), vec![dim, 1, 3, 3, 3]);
            push(format!("{b}0.dsconv.bias"), vec![dim]);
            push(format!("{b}1.q_scale"), vec![dim_head]);
            push(format!("{b}1.k_scale"), vec![dim_head]);
            push(format!("{b}1.norm.gamma"), vec![dim]);
            push(format!("{b}1.norm.beta"), vec![dim]);
            push(format!("{b}1.to_q.weight"), vec![inner, dim]);
            push(format!("{b}1.to_kv.weight"), vec![2 * inner, dim]);
            push(format!("{b}1.to_out.weight"), vec![dim, inner]);
            push(format!("{b}3.0.weight"), vec![dim]);
            push(format!("{b}3.0.bias"), vec![dim]);
            push(format!("{b}3.1.weight"), vec![ff, dim]);
            push(format!("{b}3.4.weight"), vec![dim, ff / 2]);
        }
        push(format!("{v}{stage}.norm_out.gamma"), vec![dim]);
        push(format!("{v}{stage}.norm_out.beta"), vec![dim]);
    }
    push(format!("{v}vq._codebook.embed"), code.clone());
    push("to_visual_latent.weight".into(), vl.clone());
    push("to_text_latent.weight".into(), vec![latent, th]);
    push("temperature".into(), vec![]);
    bert_expected("text_transformer.", &text_config, &mut e);
    Ok(Inferred {
        arch: Arch::Ctclip,
        model,
        text_config,
        expected: e,
        ignored_prefixes: vec![
            "visual_transformer.to_patch_emb_first_frame.",
            "visual_transformer.to_pixels",
            "visual_transformer.vq._codebook.initted",
            "visual_transformer.vq._codebook.cluster_size",
            "visual_transformer.vq._codebook.embed_avg",
            "to_text_latent_extra.",
            "to_visual_latent_extra.",
            "text_transformer.pooler.",
            "text_transformer.embeddings.position_ids",
            ".1.null_kv",
            ".1.context_norm.",
        ],
    })
}

/// Compare a checkpoint with what the model needs.
pub fn check_keys(t: &BTreeMap<String, Tensor>, inferred: &Inferred) -> KeyReport {
    let mut r = KeyReport::default();
    let expected: BTreeMap<&str, &Vec<usize>> = inferred.expected.iter().map(|(k, s)| (k.as_str(), s)).collect();
    for (k, s) in &inferred.expected {
        match t.get(k) {
            None => r.missing.push((k.clone(), s.clone())),
            Some(x) if x.dims() != s.as_slice() => r.misshaped.push((k.clone(), s.clone(), x.dims().to_vec())),
            Some(_) => r.used += 1,
        }
    }
    for k in t.keys() {
        if expected.contains_key(k.as_str()) {
            continue;
        }
        if inferred.ignored_prefixes.iter().any(|p| k.starts_with(p) || (p.starts_with('.') && k.contains(p))) {
            r.ignored.push(k.clone());
        } else {
            r.unexpected.push(k.clone());
        }
    }
    r
}

/// Read, rename, infer and check a checkpoint. Returns the tensors the model uses (canonical
/// names), the inferred architecture, and the key report (which is `is_ok()`).
pub fn import(
    path: &Path,
    arch: Arch,
    text_base: &Value,
    o: &Overrides,
) -> Result<(BTreeMap<String, Tensor>, Inferred, KeyReport), CheckpointError> {
    let raw = read_tensors(path)?;
    let tensors: BTreeMap<String, Tensor> = raw.into_iter().map(|(k, v)| (canonical_name(&k), v)).collect();
    let p = path.display().to_string();
    let inferred = match arch {
        Arch::Brgsa => infer_brgsa(&tensors, text_base, o, &p),
        Arch::Ctclip => infer_ctclip(&tensors, text_base, o, &p),
    };
    let inferred = match inferred {
        Ok(i) => i,
        Err(CheckpointError::Dims { reason, .. }) => {
            // Say what the file looks like, so a wrong --arch or a wrong file is obvious.
            let sample: Vec<String> = tensors.keys().take(5).cloned().collect();
            return Err(CheckpointError::Dims { path: p, reason: format!("{reason} (first keys: {})", sample.join(", ")) });
        }
        Err(e) => return Err(e),
    };
    let report = check_keys(&tensors, &inferred);
    if !report.is_ok() {
        return Err(CheckpointError::Keys { path: p, arch, report: Box::new(report) });
    }
    let keep: std::collections::BTreeSet<&str> = inferred.expected.iter().map(|(k, _)| k.as_str()).collect();
    let used = tensors.into_iter().filter(|(k, _)| keep.contains(k.as_str())).collect();
    Ok((used, inferred, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped_like_the_official_loader() {
        assert_eq!(canonical_name("gloria.img_encoder.model.cls_token"), "img_encoder.model.cls_token");
        assert_eq!(canonical_name("model.gloria.dictionarylearning.dictionary.weight"), "dictionarylearning.dictionary.weight");
        assert_eq!(canonical_name("module.temperature"), "temperature");
        assert_eq!(canonical_name("temperature"), "temperature");
    }

    #[test]
    fn cube_grids_only() {
        assert_eq!(grid_side(2744), Some(14));
        assert_eq!(grid_side(4096), Some(16));
        assert_eq!(grid_side(2 * 2 * 3), None);
    }
}
