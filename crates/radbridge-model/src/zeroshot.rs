//! Zero-shot scoring: label sets, prompt templates, the two models' scoring rules, and a
//! per-model cache of text embeddings.
//!
//! BrgSA (spec §1.4): one positive prompt "There is {label}";
//! score = ½·[cos(v, t) + cos(v̂, t)] with v̂ the knowledge-bank reconstruction of v.
//! CT-CLIP (spec §7.2): "{label} is present." / "{label} is not present.";
//! logits = cos · exp(temperature); P(present) = softmax over the pair.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ModelError;
use serde::{Deserialize, Serialize};

/// The 18 CT-RATE abnormalities, in the official prompt order.
pub const CT_RATE: [&str; 18] = [
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
];

/// The 15 CT-RATE-LT long-tail abnormalities, in the official prompt order.
pub const CT_RATE_LT: [&str; 15] = [
    "Pneumonia",
    "Pneumothorax",
    "Empyema",
    "Tuberculosis",
    "Pulmonary fibrosis",
    "Lung cyst",
    "Bronchial thickening",
    "Lung mass",
    "Osteophyte",
    "Rib fracture",
    "Atherosclerosis",
    "Pericardial calcification",
    "Spondylosis",
    "Pleural calcification",
    "Pneumomediastinum",
];

/// The 88 extended findings the BrgSA authors evaluated (`CT-RATE_valid_GPT4Modify_text.json`,
/// each prompt "There is {label}"), in their file's order.
pub const CT_RATE_EXTENDED: [&str; 88] = [
    "Acute respiratory distress syndrome",
    "Adenoma",
    "Adrenal hyperplasia",
    "Arterial wall calcification",
    "Ascites",
    "Atelectasis",
    "Atherosclerosis",
    "Bone lesion",
    "Bronchial thickening",
    "Bronchiectasis",
    "Bronchiolitis",
    "Bronchopneumonia",
    "Calcification",
    "Carcinomatosis",
    "Cardiomegaly",
    "Cavitary lesion",
    "Chilaiditi syndrome",
    "Consolidation",
    "Coronary artery wall calcification",
    "Covid 19 pneumonia",
    "Degenerative change",
    "Emphysema",
    "Empyema",
    "Fatty liver",
    "Fibrosis",
    "Fracture",
    "Gallstone",
    "Ground glass opacity",
    "Gynecomastia",
    "Heart failure",
    "Hepatomegaly",
    "Hepatosplenomegaly",
    "Hiatal hernia",
    "Hydatid cyst",
    "Infarction",
    "Interlobular septal thickening",
    "Kidney atrophy",
    "Kidney stone",
    "Lipomatosis",
    "Liver lesion",
    "Lung cyst",
    "Lung mass",
    "Lung nodule",
    "Lung opacity",
    "Lymphadenopathy",
    "Lymphangitis carcinomatosis",
    "Lymphoma",
    "Lytic bone lesion",
    "Medical material",
    "Metastasis",
    "Mosaic attenuation pattern",
    "Myeloma",
    "Nephrolithiasis",
    "Osteopenia",
    "Osteophyte",
    "Osteoporosis",
    "Pancreatic cancer",
    "Pancreatic pseudocyst",
    "Peribronchial thickening",
    "Pericardial calcification",
    "Pericardial effusion",
    "Pleural calcification",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumomediastinum",
    "Pneumonia",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Pulmonary fibrotic sequela",
    "Pulmonary hypertension",
    "Pulmonary hypertrophy",
    "Renal atrophy",
    "Renal cyst",
    "Renal parapelvic cyst",
    "Rib fracture",
    "Sclerotic bone lesion",
    "Scoliosis",
    "Situs inversus",
    "Splenic effusion",
    "Splenomegaly",
    "Spondylosis",
    "Thyroid nodule",
    "Tracheal stenosis",
    "Tracheobronchopathy",
    "Tuberculosis",
    "Vertebral compression fracture",
    "Vertebral degeneration",
    "Viral pneumonia",
];

/// Labels of a named set: "ct-rate", "ct-rate-lt", "ct-rate-extended" or "all" (CT-RATE and
/// CT-RATE-LT, CT-RATE first).
pub fn label_set(name: &str) -> Option<Vec<String>> {
    let v: Vec<&str> = match name.to_ascii_lowercase().as_str() {
        "ct-rate" | "ctrate" => CT_RATE.to_vec(),
        "ct-rate-lt" | "ctrate-lt" | "lt" => CT_RATE_LT.to_vec(),
        "ct-rate-extended" | "ctrate-extended" | "extended" => CT_RATE_EXTENDED.to_vec(),
        "all" => CT_RATE.iter().chain(CT_RATE_LT.iter()).copied().collect(),
        _ => return None,
    };
    Some(v.into_iter().map(String::from).collect())
}

/// Prompt templates of a model; `{label}` is replaced by the finding's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptTemplates {
    pub positive: String,
    /// CT-CLIP's "not present" counterpart; BrgSA has none.
    #[serde(default)]
    pub negative: Option<String>,
}

impl PromptTemplates {
    pub fn brgsa() -> Self {
        PromptTemplates { positive: "There is {label}".into(), negative: None }
    }
    pub fn ctclip() -> Self {
        PromptTemplates { positive: "{label} is present.".into(), negative: Some("{label} is not present.".into()) }
    }
    pub fn positive_for(&self, label: &str) -> String {
        self.positive.replace("{label}", label)
    }
    pub fn negative_for(&self, label: &str) -> Option<String> {
        self.negative.as_ref().map(|n| n.replace("{label}", label))
    }
}

/// How a model turns embeddings into a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ScoringRule {
    /// ½·[cos(v, t) + cos(v̂, t)] (raw cosine, range −1..1).
    BrgsaMeanCosine,
    /// softmax over (present, not present) logits → P(present) (0..1).
    CtclipSoftmaxPair,
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64) * (*x as f64);
        bb += (*y as f64) * (*y as f64);
    }
    let d = (aa.sqrt() * bb.sqrt()).max(1e-12);
    (ab / d) as f32
}

/// BrgSA's score and its two halves: (cos(v,t), cos(v̂,t), ½ of their sum).
pub fn brgsa_score(v: &[f32], v_hat: &[f32], t: &[f32]) -> (f32, f32, f32) {
    let a = cosine(v, t);
    let b = cosine(v_hat, t);
    (a, b, 0.5 * (a + b))
}

/// CT-CLIP's P(present) from the two logits.
pub fn ctclip_p_present(logit_present: f32, logit_absent: f32) -> f32 {
    let m = logit_present.max(logit_absent);
    let (a, b) = ((logit_present - m).exp(), (logit_absent - m).exp());
    a / (a + b)
}

/// One scored finding.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct Finding {
    pub label: String,
    pub prompt: String,
    pub score: f32,
    pub threshold: Option<f32>,
    /// score > threshold (None when the model has no threshold for this label).
    pub flagged: Option<bool>,
    /// true for a finding the user typed rather than one of a label set.
    pub custom: bool,
}

/// Per-label decision thresholds (`thresholds.json` in a model directory).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thresholds {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub source: String,
    pub thresholds: BTreeMap<String, f32>,
}

impl Thresholds {
    pub fn load(path: &Path) -> Result<Option<Thresholds>, ModelError> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(ModelError::io(path, "cannot read"))?;
        let t: Thresholds = serde_json::from_str(&text).map_err(ModelError::json(path, "invalid thresholds file"))?;
        // JSON has no NaN, but 1e39 reads as an infinite f32.
        if let Some((label, x)) = t.thresholds.iter().find(|(_, x)| !x.is_finite()) {
            return Err(ModelError::Invalid {
                path: path.to_path_buf(),
                reason: format!("thresholds.{label}: {x} is not a finite number"),
            });
        }
        Ok(Some(t))
    }
    pub fn get(&self, label: &str) -> Option<f32> {
        self.thresholds.get(label).copied()
    }
}

/// Text embeddings cached per model (keyed by the weights' checksum) and prompt, kept in a
/// JSON file so repeated runs skip the text encoder.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TextCache {
    pub model_checksum: String,
    pub entries: BTreeMap<String, Vec<Vec<f32>>>,
    #[serde(skip)]
    path: Option<PathBuf>,
    #[serde(skip)]
    dirty: bool,
}

impl TextCache {
    /// Open (or start) the cache file for a model; a cache for other weights is discarded.
    pub fn open(path: PathBuf, model_checksum: &str) -> TextCache {
        let mut c = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<TextCache>(&t).ok())
            .filter(|c| c.model_checksum == model_checksum)
            .unwrap_or_default();
        c.model_checksum = model_checksum.to_string();
        c.path = Some(path);
        c
    }

    pub fn in_memory(model_checksum: &str) -> TextCache {
        TextCache { model_checksum: model_checksum.into(), ..Default::default() }
    }

    pub fn get(&self, prompt: &str) -> Option<&Vec<Vec<f32>>> {
        self.entries.get(prompt)
    }

    /// The cache file (None for an in-memory cache).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether an entry fits a model whose text side gives one vector per `dims` entry, of that
    /// length, all finite: `Err` says what is wrong.
    pub fn check_entry(vectors: &[Vec<f32>], dims: &[usize]) -> Result<(), String> {
        let lens: Vec<usize> = vectors.iter().map(Vec::len).collect();
        if lens != dims {
            return Err(format!("holds vectors of lengths {lens:?}; the model gives {dims:?}"));
        }
        if vectors.iter().flatten().any(|x| !x.is_finite()) {
            return Err("holds a value that is not finite".into());
        }
        Ok(())
    }

    /// Drop the entries that do not fit the model (`dims` as in [`TextCache::check_entry`]),
    /// so that they are embedded again: the cache is derived data. Returns how many were
    /// dropped (each is logged with the cache file and the prompt).
    pub fn retain_valid(&mut self, dims: &[usize]) -> usize {
        let before = self.entries.len();
        let file = self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        self.entries.retain(|prompt, v| match TextCache::check_entry(v, dims) {
            Ok(()) => true,
            Err(reason) => {
                tracing::warn!(file = %file, prompt = %prompt, reason = %reason, "dropping a cached text embedding that does not fit the model");
                false
            }
        });
        let dropped = before - self.entries.len();
        if dropped > 0 {
            self.dirty = true;
        }
        dropped
    }

    pub fn insert(&mut self, prompt: &str, vectors: Vec<Vec<f32>>) {
        self.entries.insert(prompt.to_string(), vectors);
        self.dirty = true;
    }

    /// Write the cache back if it changed (best effort: a cache is never worth an error).
    pub fn save(&mut self) {
        if let (true, Some(p)) = (self.dirty, &self.path) {
            if let Some(dir) = p.parent() {
                let _ = radbridge_volume::atomic::create_private_dir_all(dir);
            }
            if let Ok(t) = serde_json::to_string(self) {
                // Owner-only (0600 on Unix): the prompts include findings the user typed.
                if radbridge_volume::atomic::write_private(p, t).is_ok() {
                    self.dirty = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_have_the_benchmark_sizes() {
        assert_eq!(label_set("ct-rate").unwrap().len(), 18);
        assert_eq!(label_set("ct-rate-lt").unwrap().len(), 15);
        let all = label_set("all").unwrap();
        assert_eq!(all.len(), 33);
        assert_eq!(all[18], "Pneumonia");
        assert!(label_set("nope").is_none());
        let ext = label_set("ct-rate-extended").unwrap();
        assert_eq!(ext.len(), 88);
        assert_eq!(ext[0], "Acute respiratory distress syndrome");
        assert_eq!(ext[87], "Viral pneumonia");
    }

    #[test]
    fn prompts_follow_the_official_templates() {
        assert_eq!(PromptTemplates::brgsa().positive_for("Cardiomegaly"), "There is Cardiomegaly");
        let c = PromptTemplates::ctclip();
        assert_eq!(c.positive_for("Emphysema"), "Emphysema is present.");
        assert_eq!(c.negative_for("Emphysema").unwrap(), "Emphysema is not present.");
    }

    #[test]
    fn a_bad_thresholds_file_is_an_error_naming_it_with_the_parse_error_as_source() {
        use std::error::Error as _;
        let dir = std::env::temp_dir().join(format!("radbridge-thresholds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("thresholds.json");
        assert!(Thresholds::load(&p).unwrap().is_none(), "a missing file means no thresholds");
        std::fs::write(&p, "{\"thresholds\": {\"Emphysema\": \"high\"}}").unwrap();
        let e = Thresholds::load(&p).unwrap_err();
        assert!(matches!(e, ModelError::Json { .. }), "{e:?}");
        assert_eq!(e.to_string(), format!("{}: invalid thresholds file", p.display()));
        assert!(e.source().is_some_and(|s| s.to_string().contains("invalid type")), "{:?}", e.source());
        std::fs::write(&p, "{\"thresholds\": {\"Emphysema\": 0.25}}").unwrap();
        assert_eq!(Thresholds::load(&p).unwrap().unwrap().get("Emphysema"), Some(0.25));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn scores() {
        let v = [1.0, 0.0];
        let vh = [0.0, 1.0];
        let t = [1.0, 1.0];
        let (a, b, s) = brgsa_score(&v, &vh, &t);
        assert!((a - 0.70710677).abs() < 1e-6 && (b - a).abs() < 1e-6 && (s - a).abs() < 1e-6);
        assert!((ctclip_p_present(2.0, 0.0) - 0.880797).abs() < 1e-5);
        assert!((ctclip_p_present(0.0, 0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn an_infinite_threshold_is_refused_naming_the_label() {
        let dir = std::env::temp_dir().join(format!("radbridge-thresholds-inf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("thresholds.json");
        std::fs::write(&p, "{\"thresholds\": {\"Emphysema\": 1e39}}").unwrap();
        let e = Thresholds::load(&p).unwrap_err();
        assert!(matches!(e, ModelError::Invalid { .. }), "{e:?}");
        assert!(e.to_string().contains("thresholds.Emphysema") && e.to_string().contains("thresholds.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_text_cache_is_saved_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("radbridge-text-cache-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("text-embeddings").join("abc.json");
        let mut c = TextCache::open(p.clone(), "abc");
        c.insert("a typed finding", vec![vec![1.0, 2.0]]);
        c.save();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cached_text_embeddings_that_do_not_fit_the_model_are_dropped() {
        let dir = std::env::temp_dir().join(format!("radbridge-text-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.json");
        std::fs::write(
            &p,
            r#"{"model_checksum": "abc", "entries": {"empty": [], "no vectors": [[]], "short": [[1.0], [1.0], [1.0, 2.0]], "good": [[1.0, 2.0], [3.0, 4.0], [5.0]]}}"#,
        )
        .unwrap();
        let mut c = TextCache::open(p.clone(), "abc");
        assert_eq!(c.path(), Some(p.as_path()));
        assert_eq!(c.entries.len(), 4);
        assert!(TextCache::check_entry(c.get("empty").unwrap(), &[2, 2, 1]).unwrap_err().contains("lengths []"));
        assert!(TextCache::check_entry(c.get("short").unwrap(), &[2, 2, 1]).is_err());
        assert_eq!(c.retain_valid(&[2, 2, 1]), 3);
        assert!(c.get("good").is_some() && c.get("empty").is_none());
        assert!(TextCache::check_entry(&[vec![f32::INFINITY]], &[1]).unwrap_err().contains("not finite"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
