//! Model directories: `model.json` (what the model is, its dimensions, preprocessing, prompts,
//! scoring rule and label sets), the weights as safetensors under canonical names, the BERT
//! `config.json` with `vocab.txt` (or a `tokenizer.json`), and optional `bank.json` (words for
//! the knowledge-bank entries) and `thresholds.json`. The format is documented in
//! `models/README.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use radbridge_volume::atomic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::Arch;
use crate::error::SettingError;
use crate::preprocess::{PreprocessConfig, PreprocessError};
use crate::zeroshot::{self, PromptTemplates, ScoringRule};

pub const FORMAT: &str = "radbridge-model/1";

pub use crate::error::PackageError;

fn invalid(path: &Path, reason: impl Into<String>) -> PackageError {
    PackageError::Invalid { path: path.to_path_buf(), reason: reason.into() }
}

/// Files of the text side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextFiles {
    /// HF BERT `config.json`.
    pub config: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

/// `model.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub architecture: Arch,
    pub description: String,
    /// A model trained on synthetic data (the bundled demo), not a clinical model.
    #[serde(default)]
    pub synthetic: bool,
    /// Architecture dimensions. BrgSA: {"vision": {...}, "embed_dim", "bank_size",
    /// "text_max_length", "text_pool_layers"}; CT-CLIP: {"vision": {...}, "latent_dim",
    /// "text_max_length"}.
    pub model: Value,
    pub text: TextFiles,
    pub weights: String,
    pub weights_sha256: String,
    pub preprocess: PreprocessConfig,
    pub prompts: PromptTemplates,
    pub scoring: ScoringRule,
    pub label_sets: BTreeMap<String, Vec<String>>,
    #[serde(default = "default_label_set")]
    pub default_label_set: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<String>,
    /// Where the weights came from (checkpoint file, import time, key report).
    #[serde(default)]
    pub source: Value,
}

fn default_label_set() -> String {
    "all".into()
}

impl Manifest {
    /// The official settings for an architecture (preprocessing, prompts, scoring, labels).
    pub fn official(arch: Arch, name: &str, model: Value, weights_sha256: String, text: TextFiles) -> Manifest {
        let (preprocess, prompts, scoring, description) = match arch {
            Arch::Brgsa => (
                PreprocessConfig::brgsa(),
                PromptTemplates::brgsa(),
                ScoringRule::BrgsaMeanCosine,
                "BrgSA (Bridged Semantic Alignment, Lai et al. 2025): 3-D ViT + BERT with a cross-modal knowledge bank",
            ),
            Arch::Ctclip => (
                PreprocessConfig::ctclip(),
                PromptTemplates::ctclip(),
                ScoringRule::CtclipSoftmaxPair,
                "CT-CLIP v2 (Hamamci et al.): CTViT + CXR-BERT contrastive model",
            ),
        };
        let mut label_sets = BTreeMap::new();
        label_sets.insert("ct-rate".to_string(), zeroshot::label_set("ct-rate").unwrap());
        label_sets.insert("ct-rate-lt".to_string(), zeroshot::label_set("ct-rate-lt").unwrap());
        Manifest {
            format: FORMAT.into(),
            name: name.into(),
            architecture: arch,
            description: description.into(),
            synthetic: false,
            model,
            text,
            weights: "model.safetensors".into(),
            weights_sha256,
            preprocess,
            prompts,
            scoring,
            label_sets,
            default_label_set: default_label_set(),
            bank: None,
            thresholds: None,
            source: Value::Null,
        }
    }

    /// Labels of a named set; "all" is every set in the manifest's order of ct-rate, ct-rate-lt,
    /// then the rest.
    pub fn labels(&self, set: &str) -> Option<Vec<String>> {
        if set == "all" {
            let mut names: Vec<&String> = self.label_sets.keys().collect();
            names.sort_by_key(|n| match n.as_str() {
                "ct-rate" => 0,
                "ct-rate-lt" => 1,
                _ => 2,
            });
            let mut out: Vec<String> = Vec::new();
            for n in names {
                for l in &self.label_sets[n] {
                    if !out.contains(l) {
                        out.push(l.clone());
                    }
                }
            }
            return Some(out);
        }
        // Built-in sets (e.g. "ct-rate-extended") resolve even when model.json predates them.
        self.label_sets.get(set).cloned().or_else(|| zeroshot::label_set(set))
    }
}

/// An opened model directory.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ModelPackage {
    pub fn open(dir: &Path) -> Result<ModelPackage, PackageError> {
        let mpath = dir.join("model.json");
        let text = std::fs::read_to_string(&mpath).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                invalid(dir, "not a model directory (no model.json); import official weights with `radbridge import-checkpoint`")
            } else {
                PackageError::Io { path: mpath.clone(), source: e }
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| invalid(&mpath, format!("invalid model.json: {e}")))?;
        if manifest.format != FORMAT {
            return Err(invalid(&mpath, format!("format '{}' is not {FORMAT}", manifest.format)));
        }
        let p = ModelPackage { dir: dir.to_path_buf(), manifest };
        let m = &p.manifest;
        let named: [(&'static str, Option<&String>); 6] = [
            ("weights", Some(&m.weights)),
            ("text.config", Some(&m.text.config)),
            ("text.vocab", m.text.vocab.as_ref()),
            ("text.tokenizer", m.text.tokenizer.as_ref()),
            ("bank", m.bank.as_ref()),
            ("thresholds", m.thresholds.as_ref()),
        ];
        for (field, name) in named {
            if let Some(name) = name {
                confined(dir, field, name)?;
            }
        }
        for f in [Some(&m.weights), Some(&m.text.config), m.text.vocab.as_ref(), m.text.tokenizer.as_ref()].into_iter().flatten() {
            if !p.dir.join(f).exists() {
                return Err(invalid(&p.dir.join(f), "listed in model.json but missing"));
            }
        }
        if m.text.vocab.is_none() && m.text.tokenizer.is_none() {
            return Err(invalid(&mpath, "text needs a vocab (vocab.txt) or a tokenizer (tokenizer.json)"));
        }
        check_settings(m).map_err(|e| e.in_file(&mpath))?;
        Ok(p)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn weights_path(&self) -> PathBuf {
        self.path(&self.manifest.weights)
    }

    /// The BERT config.json as JSON.
    pub fn text_config(&self) -> Result<Value, PackageError> {
        let p = self.path(&self.manifest.text.config);
        let t = std::fs::read_to_string(&p).map_err(|e| PackageError::Io { path: p.clone(), source: e })?;
        serde_json::from_str(&t).map_err(|e| invalid(&p, format!("invalid JSON: {e}")))
    }

    /// Recompute the weights' checksum and compare with model.json.
    pub fn verify_weights(&self) -> Result<(), PackageError> {
        let got = sha256_file(&self.weights_path())?;
        if got != self.manifest.weights_sha256 {
            return Err(invalid(
                &self.weights_path(),
                format!("checksum {got} does not match model.json ({})", self.manifest.weights_sha256),
            ));
        }
        Ok(())
    }

    pub fn write_manifest(&self) -> Result<(), PackageError> {
        let p = self.dir.join("model.json");
        let t = serde_json::to_string_pretty(&self.manifest).expect("manifest serialises");
        atomic::write(&p, t + "\n").map_err(|e| PackageError::Io { path: p, source: e })
    }
}

/// Check model.json's numeric settings: the preprocessing (see
/// [`PreprocessConfig::validate`]) and the model dimensions of its architecture. A `model`
/// section that does not parse is left to the loader, which names the parse error.
fn check_settings(m: &Manifest) -> Result<(), SettingError> {
    m.preprocess.validate().map_err(|e| match e {
        PreprocessError::Config { field, reason } => SettingError::new(format!("preprocess.{field}"), reason),
        e => SettingError::new("preprocess", e.to_string()),
    })?;
    match m.architecture {
        Arch::Brgsa => {
            if let Ok(c) = serde_json::from_value::<crate::brgsa::BrgsaConfig>(m.model.clone()) {
                c.validate()?;
            }
        }
        Arch::Ctclip => {
            if let Ok(c) = serde_json::from_value::<crate::ctclip::CtClipConfig>(m.model.clone()) {
                c.validate()?;
            }
        }
    }
    Ok(())
}

/// `name`, a file named by model.json's `field`, joined to the model folder `dir` — provided
/// it stays inside: a relative path without `..`, and, where it (or a folder on its way)
/// exists, no symbolic link that resolves outside the folder.
pub fn confined(dir: &Path, field: &'static str, name: &str) -> Result<PathBuf, PackageError> {
    let unsafe_path = |reason: &str| PackageError::UnsafePath {
        path: dir.join("model.json"),
        field,
        reason: format!("'{}' {reason}", name.escape_debug()),
    };
    let rel = Path::new(name);
    if name.is_empty() || name.contains('\0') {
        return Err(unsafe_path("is not a file name"));
    }
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path("contains '..'")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_path("is an absolute path")),
        }
    }
    if rel.components().all(|c| c == Component::CurDir) {
        return Err(unsafe_path("is not a file name"));
    }
    let joined = dir.join(rel);
    let root = std::fs::canonicalize(dir).map_err(|e| PackageError::Io { path: dir.to_path_buf(), source: e })?;
    // The longest existing prefix of the path, with its links resolved, must lie in the folder.
    let mut probe = joined.clone();
    loop {
        if probe.symlink_metadata().is_ok() {
            match std::fs::canonicalize(&probe) {
                Ok(real) if real.starts_with(&root) => break,
                Ok(_) => return Err(unsafe_path("is a symbolic link that resolves outside the model folder")),
                Err(_) => return Err(unsafe_path("is a symbolic link that does not resolve")),
            }
        }
        if !probe.pop() || probe.as_os_str().is_empty() {
            break;
        }
    }
    Ok(joined)
}

/// Copy `from` to `to` with an atomic write (an error names the file that failed).
pub fn copy_file(from: &Path, to: &Path) -> Result<(), PackageError> {
    let bytes = std::fs::read(from).map_err(|e| PackageError::Io { path: from.to_path_buf(), source: e })?;
    atomic::write(to, bytes).map_err(|e| PackageError::Io { path: to.to_path_buf(), source: e })
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, PackageError> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(|e| PackageError::Io { path: path.to_path_buf(), source: e })?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| PackageError::Io { path: path.to_path_buf(), source: e })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Write a model directory from imported weights: `model.safetensors`, the BERT
/// `config.json` (dimensions from the weights), the tokenizer files copied from `text_dir`,
/// and `model.json` with the official settings of the architecture.
pub fn create(
    out: &Path,
    name: &str,
    tensors: &BTreeMap<String, candle_core::Tensor>,
    inferred: &super::checkpoint::Inferred,
    text_dir: &Path,
    source: Value,
) -> Result<ModelPackage, PackageError> {
    let io = |p: &Path, e: std::io::Error| PackageError::Io { path: p.to_path_buf(), source: e };
    let vocab = text_dir.join("vocab.txt");
    let tok = text_dir.join("tokenizer.json");
    if !vocab.exists() && !tok.exists() {
        return Err(invalid(text_dir, "needs vocab.txt or tokenizer.json (the BERT tokenizer of the checkpoint)"));
    }
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let weights = out.join("model.safetensors");
    let map: std::collections::HashMap<&str, candle_core::Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    atomic::write_via(&weights, |tmp| candle_core::safetensors::save(&map, tmp))
        .map_err(|e| invalid(&weights, format!("cannot write weights: {e}")))?;
    let cfg = out.join("config.json");
    atomic::write(&cfg, serde_json::to_string_pretty(&inferred.text_config).unwrap() + "\n").map_err(|e| io(&cfg, e))?;
    let mut text = TextFiles { config: "config.json".into(), vocab: None, tokenizer: None };
    if vocab.exists() {
        copy_file(&vocab, &out.join("vocab.txt"))?;
        text.vocab = Some("vocab.txt".into());
    }
    if tok.exists() {
        copy_file(&tok, &out.join("tokenizer.json"))?;
        text.tokenizer = Some("tokenizer.json".into());
    }
    let mut manifest = Manifest::official(inferred.arch, name, inferred.model.clone(), sha256_file(&weights)?, text);
    manifest.source = source;
    let p = ModelPackage { dir: out.to_path_buf(), manifest };
    p.write_manifest()?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A model folder with placeholder files and a manifest that `edit` may spoil.
    fn folder(tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("radbridge-package-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.safetensors", "config.json", "vocab.txt"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let text = TextFiles { config: "config.json".into(), vocab: Some("vocab.txt".into()), tokenizer: None };
        let m = Manifest::official(Arch::Brgsa, "t", json!({}), "0".repeat(64), text);
        let mut v = serde_json::to_value(&m).unwrap();
        edit(&mut v);
        std::fs::write(dir.join("model.json"), serde_json::to_string(&v).unwrap()).unwrap();
        dir
    }

    fn open_err(tag: &str, edit: impl FnOnce(&mut Value)) -> PackageError {
        let dir = folder(tag, edit);
        let e = ModelPackage::open(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        e
    }

    #[test]
    fn a_valid_folder_opens() {
        let dir = folder("ok", |_| {});
        let p = ModelPackage::open(&dir).unwrap();
        assert_eq!(p.weights_path(), dir.join("model.safetensors"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_names_that_leave_the_folder_are_refused_naming_the_field() {
        let cases: [(&str, &str, Value); 5] = [
            ("abs", "weights", json!("/etc/passwd")),
            ("dotdot", "weights", json!("../model.safetensors")),
            ("deep", "bank", json!("a/../../bank.json")),
            ("thr", "thresholds", json!("../../thresholds.json")),
            ("empty", "weights", json!("")),
        ];
        for (tag, field, name) in cases {
            let e = open_err(tag, |v| v[field] = name.clone());
            match &e {
                PackageError::UnsafePath { field: f, .. } => assert_eq!(*f, field, "{e}"),
                _ => panic!("{tag}: {e:?}"),
            }
            assert!(e.to_string().contains("model.json") && e.to_string().contains(field), "{e}");
        }
        let e = open_err("vocab", |v| v["text"]["vocab"] = json!("../vocab.txt"));
        assert!(matches!(e, PackageError::UnsafePath { field: "text.vocab", .. }), "{e:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_out_of_the_folder_is_refused() {
        let outside = std::env::temp_dir().join(format!("radbridge-package-outside-{}", std::process::id()));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("thresholds.json"), b"{}").unwrap();
        let dir = folder("link", |v| v["thresholds"] = json!("sub/thresholds.json"));
        std::os::unix::fs::symlink(&outside, dir.join("sub")).unwrap();
        let e = ModelPackage::open(&dir).unwrap_err();
        assert!(matches!(e, PackageError::UnsafePath { field: "thresholds", .. }), "{e:?}");
        // A link that stays inside is fine; a dangling one is not.
        std::fs::remove_file(dir.join("sub")).unwrap();
        std::fs::create_dir(dir.join("real")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("sub")).unwrap();
        ModelPackage::open(&dir).unwrap();
        std::os::unix::fs::symlink(outside.join("gone"), dir.join("real").join("thresholds.json")).unwrap();
        let e = ModelPackage::open(&dir).unwrap_err();
        assert!(matches!(e, PackageError::UnsafePath { field: "thresholds", .. }), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn numeric_settings_out_of_range_are_refused_naming_the_field() {
        let field = |tag: &str, edit: &dyn Fn(&mut Value)| match open_err(tag, |v| edit(v)) {
            PackageError::Setting { field, path, .. } => {
                assert!(path.ends_with("model.json"));
                field
            }
            e => panic!("{tag}: {e:?}"),
        };
        assert_eq!(field("axes", &|v| v["preprocess"]["output_axes"] = json!([0, 1, 3])), "preprocess.output_axes");
        assert_eq!(field("hu", &|v| v["preprocess"]["hu_window"] = json!([1000.0, -1000.0])), "preprocess.hu_window");
        assert_eq!(field("sp", &|v| v["preprocess"]["target_spacing"] = json!([1.5, 0.0, 3.0])), "preprocess.target_spacing");
        assert_eq!(field("sp2", &|v| v["preprocess"]["target_spacing"] = json!([1.5, -1.0, 3.0])), "preprocess.target_spacing");
        assert_eq!(field("shape", &|v| v["preprocess"]["target_shape"] = json!([0, 256, 128])), "preprocess.target_shape");
        assert_eq!(field("std", &|v| v["preprocess"]["std"] = json!(0.0)), "preprocess.std");
        assert_eq!(
            field(
                "heads",
                &|v| v["model"] = json!({"vision": {"hidden_size": 768, "depth": 12, "num_heads": 0, "mlp_dim": 3072, "patch_size": [16, 16, 8], "img_size": [224, 224, 112], "in_channels": 1, "qkv_bias": true, "block_eps": 1e-6, "final_eps": 1e-5}})
            ),
            "model.vision.num_heads"
        );
        assert_eq!(
            field(
                "patch",
                &|v| v["model"] = json!({"vision": {"hidden_size": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072, "patch_size": [16, 0, 8], "img_size": [224, 224, 112], "in_channels": 1, "qkv_bias": true, "block_eps": 1e-6, "final_eps": 1e-5}})
            ),
            "model.vision.patch_size"
        );
        assert_eq!(field("bank", &|v| v["model"] = json!({"bank_size": 0})), "model.bank_size");
        assert_eq!(field("embed", &|v| v["model"] = json!({"embed_dim": 1u64 << 40})), "model.embed_dim");
    }
}
