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
        // PyTorch zip: a Lightning checkpoint keeps the weights under "state_dict". Read with
        // our bounded reader (`crate::pickle`), not candle's, which panics on hostile pickles.
        // Empty tensors (CT-CLIP's null_kv of shape (heads, 0, dim_head)) hold nothing.
        crate::pickle::read_pth(path).map_err(|e| err(format!("not a readable PyTorch state dict ({e})")))?
    } else if head[0] == 0x80 {
        return Err(err(
            "legacy (non-zip) PyTorch serialisation is not supported; re-save with torch.save in the default zip format".into()
        ));
    } else {
        crate::pickle::check_safetensors_header(path).map_err(|e| err(format!("neither a PyTorch zip nor a safetensors file ({e})")))?;
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

/// The shape of tensor `k` if present; an error (naming the key) when it has not `rank`
/// dimensions or any of them is zero.
fn shape(t: &BTreeMap<String, Tensor>, k: &str, rank: usize) -> Result<Option<Vec<usize>>, String> {
    let Some(x) = t.get(k) else { return Ok(None) };
    let d = x.dims();
    if d.len() != rank {
        return Err(format!("{k} has shape {d:?}; expected {rank} dimensions"));
    }
    if d.contains(&0) {
        return Err(format!("{k} has shape {d:?}, with no elements"));
    }
    Ok(Some(d.to_vec()))
}

/// The shape of tensor `k`, which must be present (`missing` says what its absence means).
fn need(t: &BTreeMap<String, Tensor>, k: &str, rank: usize, missing: &str) -> Result<Vec<usize>, String> {
    shape(t, k, rank)?.ok_or_else(|| missing.to_string())
}

/// a × b, or an error naming what overflowed.
fn mul(a: usize, b: usize, what: &str) -> Result<usize, String> {
    a.checked_mul(b).ok_or_else(|| format!("{what}: {a} × {b} overflows"))
}

/// How many consecutive indices 0, 1, … have keys `{prefix}{n}.…` (one pass over the keys).
fn count_indexed(t: &BTreeMap<String, Tensor>, prefix: &str) -> usize {
    let seen: std::collections::BTreeSet<usize> = t
        .range(prefix.to_string()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(prefix))
        .filter_map(|k| k[prefix.len()..].split_once('.').and_then(|(n, _)| n.parse::<usize>().ok()))
        .collect();
    (0..).take_while(|n| seen.contains(n)).count()
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
fn bert_config_of(t: &BTreeMap<String, Tensor>, prefix: &str, base: &Value) -> Result<Value, String> {
    let we = need(
        t,
        &format!("{prefix}embeddings.word_embeddings.weight"),
        2,
        &format!("no {prefix}embeddings.word_embeddings.weight: not a BERT text encoder"),
    )?;
    let pe = shape(t, &format!("{prefix}embeddings.position_embeddings.weight"), 2)?.unwrap_or(vec![512, we[1]]);
    let te = shape(t, &format!("{prefix}embeddings.token_type_embeddings.weight"), 2)?.unwrap_or(vec![2, we[1]]);
    let layers = count_indexed(t, &format!("{prefix}encoder.layer."));
    let inter = match shape(t, &format!("{prefix}encoder.layer.0.intermediate.dense.weight"), 2)? {
        Some(s) => s[0],
        None => mul(4, we[1], "intermediate size")?,
    };
    let mut o = match base {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
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
    Ok(Value::Object(o))
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
    (s.checked_mul(s)?.checked_mul(s)? == tokens).then_some(s)
}

/// Work out a BrgSA model's dimensions from its weights (canonical names).
pub fn infer_brgsa(t: &BTreeMap<String, Tensor>, text_base: &Value, o: &Overrides, path: &str) -> Result<Inferred, CheckpointError> {
    infer_brgsa_of(t, text_base, o).map_err(|reason| CheckpointError::Dims { path: path.into(), reason })
}

fn infer_brgsa_of(t: &BTreeMap<String, Tensor>, text_base: &Value, o: &Overrides) -> Result<Inferred, String> {
    let v = "img_encoder.model.";
    let cls = need(t, &format!("{v}cls_token"), 3, "no img_encoder.model.cls_token: not a BrgSA checkpoint")?;
    let hidden = cls[2];
    let pw = need(t, &format!("{v}patch_embed.proj.weight"), 5, "no patch_embed.proj.weight").map_err(|e| {
        if e.contains("expected 5") {
            format!("{e} (a Conv3d weight)")
        } else {
            e
        }
    })?;
    let patch = [pw[2], pw[3], pw[4]];
    let depth = count_indexed(t, &format!("{v}blocks."));
    let mlp = match shape(t, &format!("{v}blocks.0.mlp.fc1.weight"), 2)? {
        Some(s) => s[0],
        None => mul(4, hidden, "MLP width")?,
    };
    let pos = need(t, &format!("{v}pos_embed"), 3, "no pos_embed")?;
    let img_size: Vec<usize> = match &o.image_size {
        Some(s) if s.len() == 3 => s.clone(),
        Some(s) => return Err(format!("--image-size needs three values for BrgSA, got {s:?}")),
        None => {
            // Official grid: 224×224×112 with patch 16×16×8 → 14³. A cube grid is unambiguous.
            let tokens = pos[1] - 1; // pos[1] ≥ 1 (no zero dimensions)
            let side = grid_side(tokens)
                .ok_or_else(|| format!("pos_embed holds {tokens} patch positions, not a cube: give --image-size A0,A1,A2"))?;
            vec![mul(side, patch[0], "image size")?, mul(side, patch[1], "image size")?, mul(side, patch[2], "image size")?]
        }
    };
    let embed = need(t, "img_encoder.global_embedder.weight", 2, "no img_encoder.global_embedder.weight")?[0];
    let bank = need(t, "dictionarylearning.dictionary.weight", 2, "no dictionarylearning.dictionary.weight (the knowledge bank)")?;
    let heads = o.vision_heads.unwrap_or(if hidden % 64 == 0 { hidden / 64 } else { 12 });
    let text_config = bert_config_of(t, "text_encoder.model.", text_base)?;
    let th = text_config["hidden_size"].as_u64().unwrap_or(0) as usize;
    let hidden3 = mul(3, hidden, "qkv width")?;
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
    let mut grid = 1usize;
    for a in 0..3 {
        grid = mul(grid, img_size[a] / patch[a], "position grid")?;
    }
    let grid1 = grid.checked_add(1).ok_or("position grid overflows")?;
    let mut e = Vec::new();
    let mut push = |k: String, s: Vec<usize>| e.push((k, s));
    push(format!("{v}cls_token"), vec![1, 1, hidden]);
    push(format!("{v}pos_embed"), vec![1, grid1, hidden]);
    push(format!("{v}patch_embed.proj.weight"), pw.clone());
    push(format!("{v}patch_embed.proj.bias"), vec![hidden]);
    for n in 0..depth {
        let b = format!("{v}blocks.{n}.");
        for ln in ["norm1", "norm2"] {
            push(format!("{b}{ln}.weight"), vec![hidden]);
            push(format!("{b}{ln}.bias"), vec![hidden]);
        }
        push(format!("{b}attn.qkv.weight"), vec![hidden3, hidden]);
        if model["vision"]["qkv_bias"] == json!(true) {
            push(format!("{b}attn.qkv.bias"), vec![hidden3]);
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
    infer_ctclip_of(t, text_base, o).map_err(|reason| CheckpointError::Dims { path: path.into(), reason })
}

fn infer_ctclip_of(t: &BTreeMap<String, Tensor>, text_base: &Value, o: &Overrides) -> Result<Inferred, String> {
    let v = "visual_transformer.";
    let emb = need(t, &format!("{v}to_patch_emb.2.weight"), 2, "no visual_transformer.to_patch_emb.2.weight: not a CT-CLIP checkpoint")?;
    let (dim, feat) = (emb[0], emb[1]);
    let patch = o.patch_size.unwrap_or(20);
    let tpatch = o.temporal_patch_size.unwrap_or(10);
    let features = mul(mul(tpatch, patch, "patch features")?, patch, "patch features")?;
    if feat != features {
        return Err(format!(
            "the patch embedding takes {feat} features but patch {patch} × {patch} × temporal {tpatch} gives {features}: pass --patch-size and --temporal-patch-size"
        ));
    }
    let sd = count_indexed(t, &format!("{v}enc_spatial_transformer.layers."));
    let td = count_indexed(t, &format!("{v}enc_temporal_transformer.layers."));
    let q = need(t, &format!("{v}enc_spatial_transformer.layers.0.1.to_q.weight"), 2, "no attention to_q weight")?;
    let inner = q[0];
    let dim_head = o.dim_head.unwrap_or(32);
    let heads = o.heads.unwrap_or(inner / dim_head.max(1));
    if heads.checked_mul(dim_head) != Some(inner) {
        return Err(format!("attention width {inner} is not heads {heads} × dim_head {dim_head}: pass --heads and --dim-head"));
    }
    let ff = shape(t, &format!("{v}enc_spatial_transformer.layers.0.3.1.weight"), 2)?.map(|s| s[0]).unwrap_or(0);
    let code = need(t, &format!("{v}vq._codebook.embed"), 3, "no vq._codebook.embed")?;
    let vl = need(t, "to_visual_latent.weight", 2, "no to_visual_latent.weight")?;
    let latent = vl[0];
    let grid = vl[1] / dim; // dim ≥ 1 (no zero dimensions)
    let side = (grid as f64).sqrt().round() as usize;
    let image_size = match &o.image_size {
        Some(s) if s.len() == 2 => s.clone(),
        // One value: a square image, as CTViT's own `image_size` argument.
        Some(s) if s.len() == 1 => vec![s[0], s[0]],
        Some(s) => return Err(format!("--image-size needs one value (a square image) or two (h, w) for CT-CLIP, got {s:?}")),
        None if side.checked_mul(side) == Some(grid) => vec![mul(side, patch, "image size")?, mul(side, patch, "image size")?],
        None => return Err(format!("to_visual_latent expects {grid} spatial tokens, not a square: give --image-size H,W")),
    };
    let cpb = shape(t, &format!("{v}spatial_rel_pos_bias.net.0.0.weight"), 2)?.map(|s| s[0]).unwrap_or(dim);
    let text_config = bert_config_of(t, "text_transformer.", text_base)?;
    let th = text_config["hidden_size"].as_u64().unwrap_or(0) as usize;
    let inner2 = mul(2, inner, "key/value width")?;
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
            push(format!("{b}1.to_kv.weight"), vec![inner2, dim]);
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

    fn tensors(shapes: &[(&str, &[usize])]) -> BTreeMap<String, Tensor> {
        shapes.iter().map(|(k, s)| (k.to_string(), Tensor::zeros(*s, DType::F32, &Device::Cpu).unwrap())).collect()
    }

    #[test]
    fn tensors_with_too_few_dimensions_name_the_key_and_rank() {
        let t = tensors(&[("img_encoder.model.cls_token", &[4])]);
        let e = infer_brgsa(&t, &json!({}), &Overrides::default(), "x.ckpt").unwrap_err();
        assert!(matches!(e, CheckpointError::Dims { .. }), "{e:?}");
        assert!(e.to_string().contains("img_encoder.model.cls_token has shape [4]; expected 3 dimensions"), "{e}");
        let t = tensors(&[("img_encoder.model.cls_token", &[1, 1, 8]), ("img_encoder.model.patch_embed.proj.weight", &[8, 1, 2])]);
        let e = infer_brgsa(&t, &json!({}), &Overrides::default(), "x.ckpt").unwrap_err();
        assert!(e.to_string().contains("patch_embed.proj.weight has shape [8, 1, 2]; expected 5 dimensions"), "{e}");
        let t = tensors(&[
            ("img_encoder.model.cls_token", &[1, 1, 8]),
            ("img_encoder.model.patch_embed.proj.weight", &[8, 1, 2, 2, 2]),
            ("img_encoder.model.pos_embed", &[9]),
        ]);
        let e = infer_brgsa(&t, &json!({}), &Overrides::default(), "x.ckpt").unwrap_err();
        assert!(e.to_string().contains("pos_embed has shape [9]; expected 3"), "{e}");
        // A BERT word embedding of rank 1.
        let t = tensors(&[
            ("img_encoder.model.cls_token", &[1, 1, 8]),
            ("img_encoder.model.patch_embed.proj.weight", &[8, 1, 2, 2, 2]),
            ("img_encoder.model.pos_embed", &[1, 9, 8]),
            ("img_encoder.global_embedder.weight", &[4, 8]),
            ("dictionarylearning.dictionary.weight", &[3, 4]),
            ("text_encoder.model.embeddings.word_embeddings.weight", &[10]),
        ]);
        let e = infer_brgsa(&t, &json!({}), &Overrides::default(), "x.ckpt").unwrap_err();
        assert!(e.to_string().contains("word_embeddings.weight has shape [10]; expected 2"), "{e}");
        // CT-CLIP: the patch embedding, the latent projection.
        let t = tensors(&[("visual_transformer.to_patch_emb.2.weight", &[8])]);
        let e = infer_ctclip(&t, &json!({}), &Overrides::default(), "c.pt").unwrap_err();
        assert!(e.to_string().contains("to_patch_emb.2.weight has shape [8]; expected 2"), "{e}");
        let o = Overrides { patch_size: Some(1), temporal_patch_size: Some(1), ..Default::default() };
        let t = tensors(&[
            ("visual_transformer.to_patch_emb.2.weight", &[8, 1]),
            ("visual_transformer.enc_spatial_transformer.layers.0.1.to_q.weight", &[32, 8]),
            ("visual_transformer.vq._codebook.embed", &[4, 8]),
        ]);
        let e = infer_ctclip(&t, &json!({}), &o, "c.pt").unwrap_err();
        assert!(e.to_string().contains("vq._codebook.embed has shape [4, 8]; expected 3"), "{e}");
    }

    #[test]
    fn overflowing_overrides_are_errors() {
        let t = tensors(&[("visual_transformer.to_patch_emb.2.weight", &[8, 1])]);
        let o = Overrides { patch_size: Some(usize::MAX), temporal_patch_size: Some(3), ..Default::default() };
        let e = infer_ctclip(&t, &json!({}), &o, "c.pt").unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
        assert_eq!(grid_side(usize::MAX), None);
    }

    #[test]
    fn indexed_layers_are_counted_in_one_pass() {
        let t = tensors(&[("b.0.w", &[1]), ("b.1.w", &[1]), ("b.1.v", &[1]), ("b.3.w", &[1]), ("b.x.w", &[1]), ("c.2.w", &[1])]);
        assert_eq!(count_indexed(&t, "b."), 2);
        assert_eq!(count_indexed(&t, "c."), 0);
        assert_eq!(count_indexed(&t, "z."), 0);
    }
}
