//! Analysis: a model directory loaded and ready (network, tokenizer, bank words, thresholds,
//! text-embedding cache), and the zero-shot diagnosis of a volume with it. The CLI
//! (`embed`, `diagnose`, `bank describe`) and the app call these functions.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::bank::{self, BankDescriptions, EntryWeight, SharedEntry};
use crate::bert::BertConfig;
use crate::brgsa::{Brgsa, BrgsaConfig};
use crate::checkpoint::Arch;
use crate::ctclip::{CtClip, CtClipConfig};
use crate::error::{ModelError, Result};
use crate::package::ModelPackage;
use crate::preprocess::{self, ModelInput};
use crate::text::{process_text, BertTokenizer};
use crate::zeroshot::{self, Finding, TextCache, Thresholds};
use radbridge_volume::{CancelToken, Volume};

/// The network behind a model directory.
pub enum Net {
    Brgsa(Box<Brgsa>),
    Ctclip(Box<CtClip>),
}

/// A loaded model directory.
pub struct Engine {
    pub package: ModelPackage,
    pub net: Net,
    pub tokenizer: BertTokenizer,
    pub bank: Option<BankDescriptions>,
    pub thresholds: Option<Thresholds>,
    pub cache: TextCache,
    pub device: Device,
    /// The last volume's encoding, reused by a later call with the same
    /// [`DiagnoseOptions::image_key`] (a heat map or a typed finding on the open study).
    encoded: Option<EncodedImage>,
}

/// One volume as the model saw it: the mapping back to the CT, a voxel-less copy of the
/// canonical volume's header (grid, affine, source), and the image code.
struct EncodedImage {
    /// The caller's key; None never matches (the encoding is dropped at the end of the call).
    key: Option<String>,
    geometry: preprocess::InputGeometry,
    header: Volume,
    image: ImageCode,
}

/// The image side of one volume.
#[derive(Debug, Clone, Serialize)]
pub enum ImageCode {
    Brgsa {
        v: Vec<f32>,
        v_hat: Vec<f32>,
        z: Vec<f32>,
        /// `global_embedder` applied to each patch token, row-major over `grid`.
        #[serde(skip)]
        patch_proj: Vec<Vec<f32>>,
        grid: [usize; 3],
        /// The tokens entering ViT block `hidden_layer` (1+N, H), for gradient heat maps.
        #[serde(skip)]
        hidden: Tensor,
        #[serde(skip)]
        hidden_layer: usize,
    },
    Ctclip {
        latent: Vec<f32>,
    },
}

impl ImageCode {
    /// The embeddings a library keeps for search, by tensor name (BrgSA: `v`, `v_hat`;
    /// CT-CLIP: `latent`).
    pub fn embeddings(&self) -> Vec<(&'static str, Vec<f32>)> {
        match self {
            ImageCode::Brgsa { v, v_hat, .. } => vec![("v", v.clone()), ("v_hat", v_hat.clone())],
            ImageCode::Ctclip { latent } => vec![("latent", latent.clone())],
        }
    }
}

/// The text side of one prompt.
#[derive(Debug, Clone, Serialize)]
pub enum TextCode {
    Brgsa { t: Vec<f32>, t_hat: Vec<f32>, z: Vec<f32> },
    Ctclip { latent: Vec<f32> },
}

impl TextCode {
    /// The embedding that is scored against the image: BrgSA's t, CT-CLIP's latent.
    pub fn embedding(&self) -> &[f32] {
        match self {
            TextCode::Brgsa { t, .. } => t,
            TextCode::Ctclip { latent } => latent,
        }
    }
}

/// The lengths of the vectors a model's text side gives (what a cached entry must hold):
/// BrgSA t, t̂ (embed_dim) and z (bank_size); CT-CLIP's latent.
fn text_dims(net: &Net) -> Vec<usize> {
    match net {
        Net::Brgsa(m) => vec![m.config().embed_dim, m.config().embed_dim, m.config().bank_size],
        Net::Ctclip(m) => vec![m.config().latent_dim],
    }
}

fn vec1(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Where text-embedding caches live: $RADBRIDGE_CACHE_DIR, else $XDG_CACHE_HOME/radbridge,
/// else ~/.cache/radbridge.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RADBRIDGE_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("radbridge"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("radbridge"))
}

impl Engine {
    /// Open a model directory on the CPU.
    pub fn load(dir: &Path) -> Result<Engine> {
        Self::load_on(dir, &Device::Cpu)
    }

    pub fn load_on(dir: &Path, device: &Device) -> Result<Engine> {
        Self::load_with_cache(dir, device, cache_dir().as_deref())
    }

    /// Open a model directory with its text-embedding cache under `cache` (None: in memory
    /// only). `load_on` passes [`cache_dir`].
    pub fn load_with_cache(dir: &Path, device: &Device, cache: Option<&Path>) -> Result<Engine> {
        let package = ModelPackage::open(dir)?;
        package.verify_weights()?;
        let m = &package.manifest;
        let text_cfg_path = package.path(&m.text.config);
        let text = BertConfig::from_json_file(&text_cfg_path)?;
        let weights = package.weights_path();
        let weights_error = |what: &'static str| {
            let path = weights.clone();
            move |source| ModelError::Weights { path, what, source: Box::new(source) }
        };
        crate::pickle::check_safetensors_header(&weights)
            .map_err(|reason| ModelError::Invalid { path: weights.clone(), reason: format!("not a safetensors file: {reason}") })?;
        // SAFETY of the mmap: the file is not modified while the model is loaded (it is ours).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
            .map_err(weights_error("cannot map the weights"))?;
        let net = match m.architecture {
            Arch::Brgsa => {
                let mut cfg: BrgsaConfig = serde_json::from_value(m.model.clone())
                    .map_err(ModelError::json(dir, "model.json 'model' is not a BrgSA configuration"))?;
                cfg.text = text;
                Net::Brgsa(Box::new(Brgsa::load(vb, &cfg).map_err(weights_error("weights do not fit the BrgSA configuration"))?))
            }
            Arch::Ctclip => {
                let mut cfg: CtClipConfig = serde_json::from_value(m.model.clone())
                    .map_err(ModelError::json(dir, "model.json 'model' is not a CT-CLIP configuration"))?;
                cfg.text = text;
                Net::Ctclip(Box::new(CtClip::load(vb, &cfg).map_err(weights_error("weights do not fit the CT-CLIP configuration"))?))
            }
        };
        let tokenizer = match (&m.text.tokenizer, &m.text.vocab) {
            (Some(t), _) => BertTokenizer::from_tokenizer_json(package.path(t))?,
            (None, Some(v)) => BertTokenizer::from_vocab_file(package.path(v), true)?,
            (None, None) => return Err(ModelError::Invalid { path: dir.to_path_buf(), reason: "no tokenizer".into() }),
        };
        let bank = match &m.bank {
            Some(b) => BankDescriptions::load(&package.path(b))?,
            None => None,
        };
        let thresholds = match &m.thresholds {
            Some(t) => Thresholds::load(&package.path(t))?,
            None => None,
        };
        let mut cache = match cache {
            Some(d) => TextCache::open(d.join("text-embeddings").join(format!("{}.json", &m.weights_sha256)), &m.weights_sha256),
            None => TextCache::in_memory(&m.weights_sha256),
        };
        cache.retain_valid(&text_dims(&net));
        Ok(Engine { package, net, tokenizer, bank, thresholds, cache, device: device.clone(), encoded: None })
    }

    pub fn arch(&self) -> Arch {
        self.package.manifest.architecture
    }

    pub fn text_max_length(&self) -> usize {
        match &self.net {
            Net::Brgsa(m) => m.config().text_max_length,
            Net::Ctclip(m) => m.config().text_max_length,
        }
    }

    /// The model's preprocessing of a volume (an error names the volume's source).
    pub fn preprocess(&self, volume: &Volume) -> Result<ModelInput> {
        preprocess_named(volume, &self.package.manifest.preprocess)
    }

    /// A model input as a tensor (1, 1, d0, d1, d2).
    pub fn tensor(&self, input: &ModelInput) -> Result<Tensor> {
        Ok(Tensor::from_slice(&input.data, &input.shape, &self.device)?)
    }

    /// Encode an image tensor shaped as the model consumes it.
    pub fn encode_image(&self, x: &Tensor) -> Result<ImageCode> {
        self.encode_image_keeping(x, None)
    }

    /// As [`Engine::encode_image`]; a BrgSA model keeps the tokens entering ViT block `layer`
    /// (default: [`crate::brgsa::Brgsa::default_relevance_layer`], the middle block) for
    /// [`Engine::patch_maps`].
    pub fn encode_image_keeping(&self, x: &Tensor, layer: Option<usize>) -> Result<ImageCode> {
        Ok(match &self.net {
            Net::Brgsa(m) => {
                let layer = layer.unwrap_or_else(|| m.default_relevance_layer());
                let e = m
                    .encode_images_keeping(x, layer)?
                    .pop()
                    .ok_or_else(|| ModelError::Invalid { path: self.package.dir.clone(), reason: "no image embedding".into() })?;
                let n = e.patch_proj.dim(0)?;
                let pp = e.patch_proj.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                debug_assert_eq!(pp.len(), n);
                ImageCode::Brgsa {
                    v: vec1(&e.v)?,
                    v_hat: vec1(&e.v_hat)?,
                    z: vec1(&e.z)?,
                    patch_proj: pp,
                    grid: e.grid,
                    hidden: e.hidden,
                    hidden_layer: e.hidden_layer,
                }
            }
            Net::Ctclip(m) => ImageCode::Ctclip { latent: vec1(&m.encode_image(x)?)? },
        })
    }

    /// One patch-grid map per text embedding (row-major over the image's grid), by `method`;
    /// None for a model without patch tokens (CT-CLIP).
    pub fn patch_maps(&self, image: &ImageCode, texts: &[&[f32]], method: HeatmapMethod) -> Result<Option<Vec<Vec<f32>>>> {
        let (ImageCode::Brgsa { patch_proj, hidden, hidden_layer, .. }, Net::Brgsa(m)) = (image, &self.net) else { return Ok(None) };
        Ok(Some(match method {
            HeatmapMethod::PatchCosine => texts.iter().map(|t| crate::heatmap::patch_similarity(patch_proj, t)).collect(),
            HeatmapMethod::Gradient => {
                let dev = m.device();
                let ts = texts.iter().map(|t| Tensor::from_slice(t, t.len(), dev)).collect::<candle_core::Result<Vec<_>>>()?;
                m.patch_relevance_from(hidden, *hidden_layer, &ts.iter().collect::<Vec<_>>())?
            }
        }))
    }

    /// Embed prompts (from the cache where possible).
    pub fn embed_prompts(&mut self, prompts: &[String]) -> Result<Vec<TextCode>> {
        let todo: Vec<&String> = prompts.iter().filter(|p| self.cache.get(p).is_none()).collect();
        if !todo.is_empty() {
            let max = self.text_max_length();
            let mut encodings = Vec::with_capacity(todo.len());
            for p in &todo {
                let text = match self.arch() {
                    Arch::Brgsa => process_text(p),
                    Arch::Ctclip => p.to_string(),
                };
                encodings.push(self.tokenizer.encode(&text, max)?);
            }
            let codes: Vec<Vec<Vec<f32>>> = match &self.net {
                Net::Brgsa(m) => m
                    .encode_texts(&encodings)?
                    .iter()
                    .map(|e| Ok(vec![vec1(&e.t)?, vec1(&e.t_hat)?, vec1(&e.z)?]))
                    .collect::<Result<_>>()?,
                Net::Ctclip(m) => m.encode_texts(&encodings)?.iter().map(|l| Ok(vec![vec1(l)?])).collect::<Result<_>>()?,
            };
            for (p, c) in todo.iter().zip(codes) {
                self.cache.insert(p, c);
            }
            self.cache.save();
        }
        let dims = text_dims(&self.net);
        prompts
            .iter()
            .map(|p| {
                let bad = |reason: String| ModelError::Invalid {
                    path: self.cache.path().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("text-embedding cache")),
                    reason: format!("cached text embedding of '{p}' {reason}"),
                };
                let c = self.cache.get(p).ok_or_else(|| bad("is missing".into()))?;
                TextCache::check_entry(c, &dims).map_err(bad)?;
                Ok(match (self.arch(), c.as_slice()) {
                    (Arch::Brgsa, [t, t_hat, z]) => TextCode::Brgsa { t: t.clone(), t_hat: t_hat.clone(), z: z.clone() },
                    (Arch::Ctclip, [latent]) => TextCode::Ctclip { latent: latent.clone() },
                    _ => return Err(bad(format!("holds {} vectors", c.len()))),
                })
            })
            .collect()
    }

    /// A sentence as a search query: embedded exactly as a typed finding is (the model's
    /// prompt templates), so that ranking stored image embeddings by it gives the score the
    /// finding would get in the app.
    pub fn text_query(&mut self, sentence: &str) -> Result<crate::retrieval::TextQuery> {
        let tpl = self.package.manifest.prompts.clone();
        let mut prompts = vec![tpl.positive_for(sentence)];
        prompts.extend(tpl.negative_for(sentence));
        let codes = self.embed_prompts(&prompts)?;
        use crate::retrieval::TextQuery;
        match (codes.first(), codes.get(1)) {
            (Some(TextCode::Brgsa { t, .. }), _) => Ok(TextQuery::Brgsa { t: t.clone() }),
            (Some(TextCode::Ctclip { latent: p }), Some(TextCode::Ctclip { latent: n })) => {
                Ok(TextQuery::Ctclip { present: p.clone(), absent: n.clone(), scale: self.logit_scale() })
            }
            _ => Err(ModelError::Invalid {
                path: self.package.dir.clone(),
                reason: "the model's prompt templates lack the negative prompt its scoring rule needs".into(),
            }),
        }
    }

    /// CT-CLIP's logit scale exp(temperature); 1 for BrgSA (raw cosine).
    pub fn logit_scale(&self) -> f32 {
        match &self.net {
            Net::Brgsa(_) => 1.0,
            Net::Ctclip(m) => m.temperature().exp(),
        }
    }
}

/// One finding of a diagnosis with its explanation.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct ScoredFinding {
    #[serde(flatten)]
    pub finding: Finding,
    /// BrgSA: the finding's strongest bank entries and those it shares with the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub bank: Option<FindingBank>,
    /// Path of the heat map written for this finding, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<String>,
    /// Where the finding's heat map is highest (BrgSA). With gradient heat maps, only for
    /// flagged and typed findings and for those whose heat map was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<Peak>,
}

/// Where the analysed study came from: enough to find it again (path, series) and the DICOM
/// study/patient fields a report and its de-identification need. Identifying fields stay in
/// the local JSON; exports de-identify them unless told not to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
pub struct StudySource {
    /// The path that was opened (DICOM folder or file, or NIfTI file).
    pub path: String,
    /// "dicom" or "nifti" (never "heatmap": a diagnosis is of a CT).
    pub format: SourceFormat,
    /// Index of the series in the folder's series list (for `--series`), when known.
    #[serde(default)]
    pub series_index: Option<usize>,
    #[serde(default)]
    pub series_instance_uid: Option<String>,
    #[serde(default)]
    pub study_instance_uid: Option<String>,
    #[serde(default)]
    pub frame_of_reference_uid: Option<String>,
    #[serde(default)]
    pub modality: Option<String>,
    #[serde(default)]
    pub series_description: Option<String>,
    /// Canonical (LPS-ordered) grid size [nx, ny, nz] the peaks index.
    #[serde(default)]
    pub dims: [usize; 3],
    #[serde(default)]
    pub patient: PatientFields,
    #[serde(default)]
    pub study: StudyFields,
    /// SOP class / instance UIDs of the series' files (DICOM only).
    #[serde(default)]
    pub instances: Vec<InstanceUids>,
}

/// The patient, study and instance records are the volume crate's (one definition, the
/// JSON field names unchanged); re-exported where they have always been named.
pub use radbridge_volume::{InstanceUids, PatientFields, SourceFormat, StudyFields};

impl StudySource {
    /// The source of a loaded volume.
    pub fn of(volume: &Volume) -> StudySource {
        let m = &volume.meta;
        let p = &m.patient;
        let dims = volume.affine.canonical_plan(volume.dims).map(|pl| pl.new_dims).unwrap_or(volume.dims);
        StudySource {
            path: m.path.display().to_string(),
            format: m.format,
            series_index: None,
            series_instance_uid: m.series_uid.clone(),
            study_instance_uid: p.study_uid.clone(),
            frame_of_reference_uid: p.frame_of_reference_uid.clone(),
            modality: m.modality.clone(),
            series_description: m.series_description.clone(),
            dims,
            patient: p.patient.clone(),
            study: p.study.clone(),
            instances: m.instances.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct FindingBank {
    pub text_top: Vec<Described<EntryWeight>>,
    pub shared: Vec<Described<SharedEntry>>,
}

/// A bank entry with its words (when `bank.json` has them).
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct Described<T> {
    #[serde(flatten)]
    pub entry: T,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The entry's example sentences that came from this site's feedback (`bank describe
    /// --feedback`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_words: Vec<String>,
}

/// What `diagnose` returns.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct Diagnosis {
    pub disclaimer: String,
    pub model: ModelInfo,
    pub findings: Vec<ScoredFinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_bank_top: Vec<Described<EntryWeight>>,
    /// Seconds per stage.
    pub timings: Vec<(String, f64)>,
    /// The analysed study (absent in results written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<StudySource>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: Arch,
    pub weights_sha256: String,
    pub synthetic: bool,
    pub scoring: zeroshot::ScoringRule,
    /// Where the model ran (`cpu`, `cuda:0`, `metal:0`; absent in results written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// A warning about this model on this study, shown with the findings and in the report:
    /// [`SYNTHETIC_MODEL_NOTICE`] when a synthetic-data model ran on a CT that is not synthetic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// The NIfTI description `radbridge synth` gives its synthetic CTs: a demo model (trained on
/// synthetic data) run on a CT without it gets [`SYNTHETIC_MODEL_NOTICE`].
pub const SYNTHETIC_CT_DESCRIPTION: &str = "radbridge synth: synthetic CT";

/// What a synthetic-data model's result says on a CT that is not one of its synthetic cases.
pub const SYNTHETIC_MODEL_NOTICE: &str = "This model was trained on synthetic data only: its scores on a real CT are not meaningful.";

pub const DISCLAIMER: &str = "Research use only. Not for diagnostic use: every finding needs a clinician's review.";

/// A stage of an analysis, as progress reports name it: "load model" (the caller's), then what
/// [`Engine::diagnose`] reports, "preprocess" … "done". The serde names are the strings the CLI
/// prints and the app's progress events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub enum Stage {
    #[serde(rename = "load model")]
    LoadModel,
    #[serde(rename = "preprocess")]
    Preprocess,
    #[serde(rename = "encode image")]
    EncodeImage,
    #[serde(rename = "encode text")]
    EncodeText,
    #[serde(rename = "score")]
    Score,
    #[serde(rename = "heat maps")]
    HeatMaps,
    #[serde(rename = "done")]
    Done,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 7] =
        [Stage::LoadModel, Stage::Preprocess, Stage::EncodeImage, Stage::EncodeText, Stage::Score, Stage::HeatMaps, Stage::Done];

    /// The stage's name (its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::LoadModel => "load model",
            Stage::Preprocess => "preprocess",
            Stage::EncodeImage => "encode image",
            Stage::EncodeText => "encode text",
            Stage::Score => "score",
            Stage::HeatMaps => "heat maps",
            Stage::Done => "done",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to score and where to write heat maps.
#[derive(Debug, Clone, Default)]
pub struct DiagnoseOptions {
    /// Labels from the model's sets (e.g. from `--labels all`).
    pub labels: Vec<String>,
    /// Findings the user typed.
    pub findings: Vec<String>,
    /// Bank entries to list per image / finding.
    pub top_k: usize,
    pub heatmap_dir: Option<PathBuf>,
    pub cancel: CancelToken,
    /// Identifies the volume for the engine's encoding cache: a later call with the same key
    /// skips preprocessing and the image encoder. The caller must change the key whenever the
    /// volume changes (the app uses the study's generation and path). None: always encode.
    pub image_key: Option<String>,
    /// How heat maps and peaks are computed.
    pub heatmap_method: HeatmapMethod,
}

pub use crate::heatmap::{Method as HeatmapMethod, Peak, PeakSource};

/// A volume made ready for a model: the canonical (LPS-ordered) volume's header without its
/// voxels, and the model input. Preparing needs no engine, so it can run on another thread.
pub struct Prepared {
    pub header: Volume,
    pub input: ModelInput,
}

/// A model's preprocessing of a volume; an error names the volume's source.
fn preprocess_named(volume: &Volume, cfg: &preprocess::PreprocessConfig) -> Result<ModelInput> {
    preprocess::preprocess(volume, cfg)
        .map_err(|source| ModelError::Preprocess { path: volume.meta.path.clone(), source: Box::new(source) })
}

/// Reorder a volume to LPS and preprocess it for a model (an error names the volume's source).
pub fn prepare(volume: &Volume, cfg: &preprocess::PreprocessConfig) -> Result<Prepared> {
    let canon = volume.canonical();
    let input = preprocess_named(&canon, cfg)?;
    let header = Volume {
        dims: canon.dims,
        voxels: radbridge_volume::Voxels::F32(Vec::new()),
        affine: canon.affine,
        meta: canon.meta.clone(),
        warnings: Vec::new(),
    };
    Ok(Prepared { header, input })
}

fn slug(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    out.trim_matches('_').to_string()
}

impl Engine {
    fn describe<T: Clone>(&self, entry: &T, index: usize) -> Described<T> {
        Described {
            entry: entry.clone(),
            description: self.bank.as_ref().and_then(|b| b.describe(index)).map(String::from),
            site_words: self.bank.as_ref().map(|b| b.site_examples(index).to_vec()).unwrap_or_default(),
        }
    }

    /// Score a volume: preprocess, encode the image once, embed every prompt (cached), score,
    /// explain, and write heat maps. `progress(stage, fraction)` is called between stages.
    pub fn diagnose(&mut self, volume: &Volume, opts: &DiagnoseOptions, progress: &dyn Fn(Stage, f32)) -> Result<Diagnosis> {
        let mut timings = Timings::default();
        self.encode_or_reuse(volume, opts, progress, &mut timings)?;
        let d = self.finish(opts, progress, timings);
        if opts.image_key.is_none() {
            self.encoded = None;
        }
        d
    }

    /// Everything after the image encoding: prompts, scores, explanations, peaks, heat maps.
    fn finish(&mut self, opts: &DiagnoseOptions, progress: &dyn Fn(Stage, f32), mut timings: Timings) -> Result<Diagnosis> {
        opts.cancel.check()?;
        progress(Stage::EncodeText, 0.7);
        let t = Instant::now();
        let prompts = Prompts::new(&self.package.manifest.prompts, opts);
        let codes = self.embed_prompts(&prompts.all())?;
        timings.push("encode text", t);
        opts.cancel.check()?;
        progress(Stage::Score, 0.9);
        let t = Instant::now();
        let enc = self.encoded.as_ref().expect("encoded above");
        let k = opts.top_k.max(1);
        let mut findings = self.score_findings(enc, &prompts, &codes, k);
        timings.push("score", t);
        opts.cancel.check()?;
        let maps = self.compute_peaks(enc, opts, &codes, &mut findings, &mut timings)?;
        let image_bank_top = match &enc.image {
            ImageCode::Brgsa { z, .. } => bank::top_k(z, k).iter().map(|e| self.describe(e, e.index)).collect(),
            ImageCode::Ctclip { .. } => vec![],
        };
        if let Some(dir) = &opts.heatmap_dir {
            self.write_heatmaps(enc, dir, opts, &maps, &mut findings, progress, &mut timings)?;
        }
        progress(Stage::Done, 1.0);
        Ok(self.diagnosis(&enc.header, findings, image_bank_top, timings.0))
    }

    /// Preprocess and encode the volume, or reuse the encoding kept from the last call with
    /// the same [`DiagnoseOptions::image_key`]; either way `self.encoded` holds it afterwards.
    fn encode_or_reuse(
        &mut self,
        volume: &Volume,
        opts: &DiagnoseOptions,
        progress: &dyn Fn(Stage, f32),
        timings: &mut Timings,
    ) -> Result<()> {
        let stage_start = Instant::now();
        let reuse = opts.image_key.is_some() && self.encoded.as_ref().is_some_and(|e| e.key == opts.image_key);
        if reuse {
            // The same stages as a full run (the UI has a bar for each), at no cost.
            progress(Stage::Preprocess, 0.0);
            progress(Stage::EncodeImage, 0.2);
            timings.push("encode image (reused)", stage_start);
            return Ok(());
        }
        self.encoded = None;
        progress(Stage::Preprocess, 0.0);
        let prepared = prepare(volume, &self.package.manifest.preprocess)?;
        timings.push("preprocess", stage_start);
        self.encode_prepared(prepared, opts, progress, timings)
    }

    /// Encode a prepared volume into `self.encoded`.
    fn encode_prepared(
        &mut self,
        prepared: Prepared,
        opts: &DiagnoseOptions,
        progress: &dyn Fn(Stage, f32),
        timings: &mut Timings,
    ) -> Result<()> {
        opts.cancel.check()?;
        progress(Stage::EncodeImage, 0.2);
        let t = Instant::now();
        let x = self.tensor(&prepared.input)?;
        let image = self.encode_image(&x)?;
        drop(x);
        timings.push("encode image", t);
        self.encoded =
            Some(EncodedImage { key: opts.image_key.clone(), geometry: prepared.input.geometry, header: prepared.header, image });
        Ok(())
    }

    /// [`Engine::diagnose`] of a volume prepared elsewhere (by [`prepare`], e.g. on a loader
    /// thread while the engine encodes the previous study). The result is the same as
    /// `diagnose` on the volume; "preprocess" is timed by the caller.
    pub fn diagnose_prepared(&mut self, prepared: Prepared, opts: &DiagnoseOptions, progress: &dyn Fn(Stage, f32)) -> Result<Diagnosis> {
        let mut timings = Timings::default();
        self.encoded = None;
        self.encode_prepared(prepared, opts, progress, &mut timings)?;
        self.finish(opts, progress, timings)
    }

    /// The image embedding of the last analysis, when it is still kept (a diagnosis with an
    /// `image_key`, or [`Engine::diagnose_prepared`] until the next call).
    pub fn last_image(&self) -> Option<&ImageCode> {
        self.encoded.as_ref().map(|e| &e.image)
    }

    /// Score every label and typed finding against the image, with the bank entries that
    /// explain each (BrgSA) and the threshold decision.
    fn score_findings(&self, enc: &EncodedImage, prompts: &Prompts, codes: &[TextCode], k: usize) -> Vec<ScoredFinding> {
        let scale = self.logit_scale();
        let mut findings = Vec::with_capacity(prompts.items.len());
        for (i, (label, custom)) in prompts.items.iter().enumerate() {
            let (score, bank) = match (&enc.image, &codes[i]) {
                (ImageCode::Brgsa { v, v_hat, z: zi, .. }, TextCode::Brgsa { t, z: zt, .. }) => {
                    let (_, _, s) = zeroshot::brgsa_score(v, v_hat, t);
                    let text_top = bank::top_k(zt, k).iter().map(|e| self.describe(e, e.index)).collect();
                    let shared = bank::shared(zi, zt, k).iter().map(|e| self.describe(e, e.index)).collect();
                    (s, Some(FindingBank { text_top, shared }))
                }
                (ImageCode::Ctclip { latent }, TextCode::Ctclip { latent: pos }) => {
                    let TextCode::Ctclip { latent: neg } = &codes[prompts.positives.len() + i] else { unreachable!("same architecture") };
                    let lp = zeroshot::cosine(latent, pos) * scale;
                    let ln = zeroshot::cosine(latent, neg) * scale;
                    (zeroshot::ctclip_p_present(lp, ln), None)
                }
                _ => unreachable!("image and text codes come from the same model"),
            };
            let threshold = self.thresholds.as_ref().and_then(|th| th.get(label));
            findings.push(ScoredFinding {
                finding: Finding {
                    label: label.clone(),
                    prompt: prompts.positives[i].clone(),
                    score,
                    threshold,
                    flagged: threshold.map(|th| score > th),
                    custom: *custom,
                },
                bank,
                heatmap: None,
                peak: None,
            });
        }
        findings
    }

    /// Where each finding fires, from the patch grid (refined by [`Engine::write_heatmaps`]
    /// from the heat map on the CT grid when one is written). A gradient map costs a backward
    /// pass through part of the ViT, so without heat maps it is computed only for the findings
    /// a reviewer looks at: flagged and typed ones (the others get no peak). Returns each
    /// finding's patch-grid map, where one was computed.
    fn compute_peaks(
        &self,
        enc: &EncodedImage,
        opts: &DiagnoseOptions,
        codes: &[TextCode],
        findings: &mut [ScoredFinding],
        timings: &mut Timings,
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let mapped: Vec<usize> = (0..findings.len())
            .filter(|&i| {
                opts.heatmap_dir.is_some()
                    || opts.heatmap_method == HeatmapMethod::PatchCosine
                    || findings[i].finding.custom
                    || findings[i].finding.flagged == Some(true)
            })
            .collect();
        let texts: Vec<&[f32]> = mapped.iter().map(|&i| codes[i].embedding()).collect();
        let t = Instant::now();
        let maps = if mapped.is_empty() { None } else { self.patch_maps(&enc.image, &texts, opts.heatmap_method)? };
        timings.push("peaks", t);
        let mut maps_by_item: Vec<Option<Vec<f32>>> = vec![None; findings.len()];
        if let (Some(maps), ImageCode::Brgsa { grid, .. }, Net::Brgsa(m)) = (maps, &enc.image, &self.net) {
            let patch = m.config().vision.patch_size;
            for (&i, map) in mapped.iter().zip(maps) {
                findings[i].peak = crate::heatmap::grid_peak(&map, *grid, patch, &enc.geometry, &enc.header);
                maps_by_item[i] = Some(map);
            }
        }
        Ok(maps_by_item)
    }

    /// Write each mapped finding's heat map as NIfTI on the CT grid into `dir`, and take the
    /// finding's peak from it.
    #[allow(clippy::too_many_arguments)]
    fn write_heatmaps(
        &self,
        enc: &EncodedImage,
        dir: &Path,
        opts: &DiagnoseOptions,
        maps: &[Option<Vec<f32>>],
        findings: &mut [ScoredFinding],
        progress: &dyn Fn(Stage, f32),
        timings: &mut Timings,
    ) -> Result<()> {
        let t = Instant::now();
        progress(Stage::HeatMaps, 0.95);
        std::fs::create_dir_all(dir).map_err(ModelError::io(dir, "cannot create"))?;
        if let (ImageCode::Brgsa { grid, .. }, Net::Brgsa(m)) = (&enc.image, &self.net) {
            let patch = m.config().vision.patch_size;
            for (i, f) in findings.iter_mut().enumerate() {
                opts.cancel.check()?;
                let Some(map) = &maps[i] else { continue };
                let hm = crate::heatmap::to_volume(map, *grid, patch, &enc.geometry, &enc.header, &f.finding.label, opts.heatmap_method);
                let path = dir.join(format!("{:02}_{}.nii.gz", i, slug(&f.finding.label)));
                radbridge_volume::nifti::write(&hm, &path)?;
                f.heatmap = Some(path.display().to_string());
                if let Some(p) = crate::heatmap::volume_peak(&hm) {
                    f.peak = Some(p);
                }
            }
        }
        timings.push("heat maps", t);
        Ok(())
    }

    /// The result: the model's identity, the findings, and the analysed study.
    fn diagnosis(
        &self,
        volume: &Volume,
        findings: Vec<ScoredFinding>,
        image_bank_top: Vec<Described<EntryWeight>>,
        timings: Vec<(String, f64)>,
    ) -> Diagnosis {
        let m = &self.package.manifest;
        Diagnosis {
            disclaimer: DISCLAIMER.to_string(),
            model: ModelInfo {
                name: m.name.clone(),
                architecture: m.architecture,
                weights_sha256: m.weights_sha256.clone(),
                synthetic: m.synthetic,
                scoring: m.scoring,
                device: crate::device::name(&self.device),
                notice: (m.synthetic
                    && !volume.meta.series_description.as_deref().is_some_and(|d| d.starts_with(SYNTHETIC_CT_DESCRIPTION)))
                .then(|| SYNTHETIC_MODEL_NOTICE.to_string()),
            },
            findings,
            image_bank_top,
            timings,
            source: Some(StudySource::of(volume)),
        }
    }
}

/// Seconds per stage, in the order the stages ran.
#[derive(Default)]
struct Timings(Vec<(String, f64)>);

impl Timings {
    fn push(&mut self, stage: &str, since: Instant) {
        self.0.push((stage.to_string(), since.elapsed().as_secs_f64()));
    }
}

/// What one diagnosis scores: labels then typed findings (`true`), their positive prompts
/// and (CT-CLIP) their negative prompts.
struct Prompts {
    items: Vec<(String, bool)>,
    positives: Vec<String>,
    negatives: Vec<String>,
}

impl Prompts {
    fn new(tpl: &zeroshot::PromptTemplates, opts: &DiagnoseOptions) -> Prompts {
        let mut items: Vec<(String, bool)> = opts.labels.iter().map(|l| (l.clone(), false)).collect();
        items.extend(opts.findings.iter().map(|f| (f.clone(), true)));
        let positives = items.iter().map(|(l, _)| tpl.positive_for(l)).collect();
        let negatives = items.iter().filter_map(|(l, _)| tpl.negative_for(l)).collect();
        Prompts { items, positives, negatives }
    }

    /// Every prompt to embed: the positives, then the negatives.
    fn all(&self) -> Vec<String> {
        let mut all = self.positives.clone();
        all.extend(self.negatives.iter().cloned());
        all
    }
}
