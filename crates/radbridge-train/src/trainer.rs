//! The BrgSA trainer: a synthetic corpus in, a model directory out.
//!
//! 1. Read the corpus; the training text of a case is the summariser's sentences of its
//!    report (`data::training_sentences`).
//! 2. Build the word-piece vocabulary from those sentences (`vocab`), or reuse the one of the
//!    run being resumed.
//! 3. Preprocess every volume once with the configured `PreprocessConfig` and cache the inputs
//!    (float16) in the state folder.
//! 4. Initialise BrgSA (normal(0, 0.02) weights, zero biases, 3-D sin-cos position embedding,
//!    orthogonal knowledge bank) from the seed, or restore the last checkpoint (`resume`).
//!    With a `pretrain` stage in the config, a fresh run first pre-trains the ViT by masked
//!    autoencoding on the cached inputs (`mae`; the official run starts from an M3AE-pre-trained
//!    ViT instead), or reuses that stage's result from the state folder.
//! 5. Per epoch a seeded permutation of the cases in batches (the last incomplete batch is
//!    dropped, as the official loader does); per step a random crop of each input and
//!    `merge_num` sentences sampled without replacement and joined by spaces; the BrgSA
//!    objective (`loss`); gradient clipping and torch-style Adam (`optim`).
//! 6. A checkpoint (weights, Adam moments, position in the run) after every epoch and on
//!    cancellation, written to temporary files and renamed, so an interrupted run never leaves
//!    a broken checkpoint; a resumed run continues with the same batches, crops and sentences
//!    it would have drawn without the interruption.
//! 7. The model directory (models/README.md format, `synthetic: true`).
//!
//! The random streams are derived from (seed, epoch, step), so a run is reproducible and a
//! resumed run equals an uninterrupted one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::config::{MaeConfig, TextSentences, TrainConfig, ValidationError, WeightInit};
use super::data::{self, CaseEntry, Corpus, DataError, InputCache};
use super::init::{init_vars, orthogonal, permutation, random_origin, rng_for, sample_without_replacement, sincos_pos_embed};
use super::loss::brgsa_loss;
use super::mae::{self, MaeStep};
use super::optim::Adam;
use super::vocab;
use radbridge_model::brgsa::Brgsa;
use radbridge_model::checkpoint::Arch;
use radbridge_model::package::{self, Manifest, ModelPackage, TextFiles};
use radbridge_model::text::{process_text, BertTokenizer, Encoding};
use radbridge_model::zeroshot::{self, PromptTemplates, ScoringRule};
use radbridge_model::ModelError;
use radbridge_volume::{atomic, CancelToken, Cancelled};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Package(#[from] package::PackageError),
    /// The tokenizer (vocabulary) could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The training configuration does not fit together.
    #[error("{path}: invalid training config")]
    Validation {
        path: PathBuf,
        #[source]
        source: ValidationError,
    },
    /// A case's training text could not be tokenised.
    #[error("{path}: cannot tokenise the training text")]
    Text {
        path: PathBuf,
        #[source]
        source: Box<ModelError>,
    },
    /// Weights or optimiser state could not be written.
    #[error("{path}: cannot write")]
    Write {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// The run was cancelled; `stage` says what is kept in `state_dir` for a later run.
    #[error("{}", .stage.message(.state_dir))]
    Cancelled {
        stage: CancelStage,
        state_dir: PathBuf,
        #[source]
        source: Cancelled,
    },
}

/// Where a cancelled run stopped, which decides what a later run can continue from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStage {
    /// During the BrgSA epochs: a checkpoint was saved (continue with `--resume`).
    Training,
    /// During the pre-training stage, which keeps no checkpoint of its own: a later run (with
    /// or without `--resume`) starts that stage again.
    Pretraining,
}

impl CancelStage {
    /// The user-facing line for a run cancelled at this stage with its state in `state_dir`.
    pub fn message(self, state_dir: &Path) -> String {
        match self {
            CancelStage::Training => {
                format!("training cancelled; checkpoint saved in {} (continue with --resume)", state_dir.display())
            }
            CancelStage::Pretraining => format!(
                "training cancelled during pre-training of the image encoder; nothing was saved in {} (a new run starts the stage again)",
                state_dir.display()
            ),
        }
    }
}

impl TrainError {
    fn cancelled(stage: CancelStage, state_dir: &Path) -> TrainError {
        TrainError::Cancelled { stage, state_dir: state_dir.to_path_buf(), source: Cancelled }
    }

    /// Whether the run stopped because it was cancelled (in any stage, preprocessing included).
    pub fn is_cancelled(&self) -> bool {
        match self {
            TrainError::Cancelled { .. } => true,
            TrainError::Data(e) => e.is_cancelled(),
            TrainError::Model(e) => e.is_cancelled(),
            _ => false,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

fn write_err(path: &Path) -> impl FnOnce(candle_core::Error) -> TrainError + '_ {
    move |source| TrainError::Write { path: path.to_path_buf(), source }
}

/// What to train and where.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: TrainConfig,
    /// Corpus folder (`radbridge synth` output).
    pub data: PathBuf,
    /// Model directory to write.
    pub output: PathBuf,
    /// Checkpoints and the input cache (default `<output>/train-state`).
    pub state_dir: PathBuf,
    /// Continue from the checkpoint in `state_dir`.
    pub resume: bool,
    /// Stop (and write the model) after this many steps in total (tests, smoke runs).
    pub max_steps: Option<usize>,
    pub cancel: CancelToken,
}

/// Progress events.
#[derive(Debug, Clone)]
pub enum Event {
    Preprocess {
        done: usize,
        total: usize,
    },
    Start {
        cases: usize,
        steps_per_epoch: usize,
        total_steps: usize,
        first_step: usize,
        vocab_size: usize,
        parameters: usize,
    },
    Step(StepInfo),
    EpochEnd {
        epoch: usize,
        mean_loss: f64,
        checkpoint: PathBuf,
    },
    /// A step of the masked-image pre-training stage (`pretrain` in the config), of `total`.
    PretrainStep {
        total: usize,
        step: MaeStep,
    },
    /// The pre-trained encoder is in place: trained now (`reused` false) or taken from the
    /// state folder of an earlier run with the same stage, corpus and seed.
    PretrainDone {
        weights: PathBuf,
        reused: bool,
        seconds: f64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInfo {
    pub epoch: usize,
    pub step: usize,
    pub global_step: usize,
    pub loss: f64,
    /// i2t, t2i, i2t_recon, t2i_recon, mse_v, mse_t.
    pub parts: [f64; 6],
    pub grad_norm: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// The run's position and history, saved with each checkpoint (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// Epoch to run next (or the one in progress).
    pub epoch: usize,
    /// Steps of `epoch` already done.
    pub step_in_epoch: usize,
    pub global_step: usize,
    pub config: TrainConfig,
    pub train_ids_sha256: String,
    /// Mean loss per finished epoch.
    pub epoch_loss: Vec<f64>,
    pub steps: Vec<StepInfo>,
    /// Wall time of the BrgSA steps.
    pub train_seconds: f64,
    /// Wall time of the pre-training stage (as recorded when it ran, also when reused).
    #[serde(default)]
    pub pretrain_seconds: f64,
    /// The pre-training stage's loss per step (empty without one).
    #[serde(default)]
    pub pretrain_loss: Vec<f64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub output: PathBuf,
    pub cases: usize,
    pub epochs: usize,
    pub steps: usize,
    pub first_loss: f64,
    pub final_loss: f64,
    pub epoch_loss: Vec<f64>,
    pub train_seconds: f64,
    pub pretrain_seconds: f64,
}

const DICT: &str = "dictionarylearning.dictionary.weight";
const POS: &str = "img_encoder.model.pos_embed";

/// Initialise every variable from the seed: weight matrices normal(0, 0.02) (`fan_in`:
/// normal(0, 1/√fan_in)), embedding tables and tokens normal(0, 0.02), zero biases, LayerNorms
/// at (1, 0), sin-cos position embedding, orthogonal bank.
fn init_params(varmap: &VarMap, model: &Brgsa, seed: u64, fan_in_init: bool) -> candle_core::Result<()> {
    let cfg = model.config();
    let mut rng = rng_for(seed, u64::MAX, 0);
    init_vars(varmap, &mut rng, fan_in_init, &mut |name, dims, rng| {
        if name == DICT {
            Some(orthogonal(rng, dims[0], dims[1]))
        } else if name == POS {
            Some(sincos_pos_embed(cfg.vision.pos_embed_grid(), cfg.vision.hidden_size))
        } else {
            None
        }
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `bytes` to `path` atomically.
fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), TrainError> {
    atomic::write(path, bytes).map_err(io(path))
}

/// The variables Adam updates, sorted by name (the position embedding is left out when
/// frozen).
fn trainable(varmap: &VarMap, freeze_pos: bool) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> =
        data.iter().filter(|(k, _)| !(freeze_pos && k.as_str() == POS)).map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

struct Checkpoint<'a> {
    dir: &'a Path,
}

impl Checkpoint<'_> {
    fn weights(&self) -> PathBuf {
        self.dir.join("weights.safetensors")
    }
    fn adam(&self) -> PathBuf {
        self.dir.join("adam.safetensors")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Weights and Adam moments are both written before either replaces its old file, then
    /// the run state: an interrupted save leaves the previous checkpoint usable.
    fn save(&self, varmap: &VarMap, adam: &Adam, state: &RunState) -> Result<(), TrainError> {
        let (weights, moments) = (self.weights(), self.adam());
        atomic::write_via(&weights, |w_tmp| {
            varmap.save(w_tmp)?;
            atomic::write_via(&moments, |a_tmp| adam.save(a_tmp))
        })
        .map_err(write_err(&weights))?;
        write_atomic(&self.state(), serde_json::to_string_pretty(state).expect("state serialises"))
    }
}

/// Tokenise one training text.
fn encode_text(tok: &BertTokenizer, sentences: &[&str], max_len: usize) -> Result<Encoding, ModelError> {
    tok.encode(&process_text(&sentences.join(" ")), max_len)
}

/// Train. `on_event` receives progress; cancellation (via `opts.cancel`) saves a checkpoint
/// and returns [`TrainError::Cancelled`].
pub fn train(opts: &TrainOptions, on_event: &mut dyn FnMut(&Event)) -> Result<TrainReport, TrainError> {
    let cfg = &opts.config;
    cfg.validate().map_err(|source| TrainError::Validation { path: opts.output.clone(), source })?;
    let dev = Device::Cpu;
    let corpus = Corpus::open(&opts.data)?;
    let mut cases: Vec<&CaseEntry> = corpus.cases.iter().collect();
    if cfg.max_cases > 0 {
        cases.truncate(cfg.max_cases);
    }
    let ids_hash = sha256_hex(cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join("\n").as_bytes());
    std::fs::create_dir_all(&opts.state_dir).map_err(io(&opts.state_dir))?;
    let ckpt = Checkpoint { dir: &opts.state_dir };
    let sentences = training_sentences(&corpus, &cases, cfg)?;
    let mut state = resume_state(opts, &ckpt, &ids_hash)?;
    let (vocab_path, tokenizer) = vocabulary(opts, state.is_some(), &sentences)?;
    let vocab_size = tokenizer.vocab_size();

    // Inputs.
    let cache = InputCache::load_or_build(&corpus, &cases, &cfg.preprocess, &opts.state_dir, &opts.cancel, &|done, total| {
        let _ = (done, total);
    })?;
    on_event(&Event::Preprocess { done: cache.len(), total: cache.len() });

    // Model: initialised from the seed (and pre-trained) or restored from the checkpoint.
    let bcfg = cfg.brgsa_config(vocab_size);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = Brgsa::load(vb, &bcfg)?;
    init_params(&varmap, &model, cfg.seed, cfg.init == WeightInit::FanIn)?;
    let mut adam = Adam::new(trainable(&varmap, cfg.freeze_pos_embed), cfg.optim.clone())?;
    let mut pretrain_log: Option<(f64, Vec<f64>)> = None;
    if let Some(s) = &state {
        let mut vm = varmap.clone();
        vm.load(ckpt.weights())?;
        adam.load(&ckpt.adam(), s.global_step, &dev)?;
    } else if let Some(mae_cfg) = &cfg.pretrain {
        pretrain_log = Some(pretrain_vision(opts, &ckpt, &varmap, &model, &cache, mae_cfg, &ids_hash, on_event)?);
    }
    let parameters: usize = trainable(&varmap, cfg.freeze_pos_embed).iter().map(|(_, v)| v.elem_count()).sum();

    let n = cases.len();
    let batch = cfg.batch_size.min(n);
    if batch < 2 {
        return Err(TrainError::Invalid { path: opts.data.clone(), reason: format!("{n} case(s): at least 2 are needed") });
    }
    let steps_per_epoch = n / batch;
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut st = state.take().unwrap_or_else(|| RunState::fresh(cfg, &ids_hash));
    st.config = cfg.clone();
    if let Some((seconds, losses)) = pretrain_log {
        st.pretrain_seconds = seconds;
        st.pretrain_loss = losses;
    }
    let limit = opts.max_steps.map(|m| m.min(total_steps)).unwrap_or(total_steps);
    on_event(&Event::Start { cases: n, steps_per_epoch, total_steps: limit, first_step: st.global_step, vocab_size, parameters });

    let run = Run {
        opts,
        dev: &dev,
        corpus: &corpus,
        cases: &cases,
        sentences: &sentences,
        tokenizer: &tokenizer,
        cache: &cache,
        model: &model,
        varmap: &varmap,
        ckpt: &ckpt,
        batch,
        steps_per_epoch,
        limit,
    };
    run_epochs(&run, &mut adam, &mut st, on_event)?;
    ckpt.save(&varmap, &adam, &st)?;

    write_model_dir(&opts.output, &varmap, cfg, &bcfg, &vocab_path, &corpus, n, &st)?;
    Ok(TrainReport {
        output: opts.output.clone(),
        cases: n,
        epochs: st.epoch_loss.len(),
        steps: st.global_step,
        first_loss: st.steps.first().map(|s| s.loss).unwrap_or(f64::NAN),
        final_loss: st.steps.last().map(|s| s.loss).unwrap_or(f64::NAN),
        epoch_loss: st.epoch_loss.clone(),
        train_seconds: st.train_seconds,
        pretrain_seconds: st.pretrain_seconds,
    })
}

impl RunState {
    /// The state of a run that has not taken a step yet.
    fn fresh(cfg: &TrainConfig, ids_hash: &str) -> RunState {
        RunState {
            epoch: 0,
            step_in_epoch: 0,
            global_step: 0,
            config: cfg.clone(),
            train_ids_sha256: ids_hash.to_string(),
            epoch_loss: Vec::new(),
            steps: Vec::new(),
            train_seconds: 0.0,
            pretrain_seconds: 0.0,
            pretrain_loss: Vec::new(),
        }
    }
}

/// The training text of each case: the summariser's sentences of its report.
fn training_sentences(corpus: &Corpus, cases: &[&CaseEntry], cfg: &TrainConfig) -> Result<Vec<Vec<String>>, TrainError> {
    let summarizer = crate::summarize::Builtin::new();
    let mut sentences: Vec<Vec<String>> = Vec::with_capacity(cases.len());
    for c in cases {
        let report = corpus.report(c)?;
        let s = data::training_sentences(&summarizer, &report, cfg.text_sentences == TextSentences::Findings);
        if s.is_empty() {
            return Err(TrainError::Invalid { path: corpus.path(&c.report), reason: "report has no sentences".into() });
        }
        sentences.push(s);
    }
    Ok(sentences)
}

/// The run state to continue from with `--resume` (None: start from scratch), checked to
/// belong to the same cases and configuration (only the number of epochs may be raised).
fn resume_state(opts: &TrainOptions, ckpt: &Checkpoint, ids_hash: &str) -> Result<Option<RunState>, TrainError> {
    if !(opts.resume && ckpt.state().exists()) {
        if opts.resume {
            tracing::warn!("{}: no checkpoint to resume; starting from scratch", ckpt.state().display());
        }
        return Ok(None);
    }
    let t = std::fs::read_to_string(ckpt.state()).map_err(io(&ckpt.state()))?;
    let s: RunState = serde_json::from_str(&t).map_err(|e| TrainError::Invalid { path: ckpt.state(), reason: e.to_string() })?;
    if s.train_ids_sha256 != ids_hash {
        return Err(TrainError::Invalid { path: ckpt.state(), reason: "the checkpoint was trained on other cases".into() });
    }
    let mut a = serde_json::to_value(&s.config).unwrap();
    let mut b = serde_json::to_value(&opts.config).unwrap();
    // The number of epochs may be raised on resume; everything else must match.
    a["epochs"] = 0.into();
    b["epochs"] = 0.into();
    if a != b {
        return Err(TrainError::Invalid { path: ckpt.state(), reason: "the checkpoint was trained with another configuration".into() });
    }
    Ok(Some(s))
}

/// The word-piece vocabulary built from the training text (or kept from the run being
/// resumed) in the state folder, and its tokenizer.
fn vocabulary(opts: &TrainOptions, resuming: bool, sentences: &[Vec<String>]) -> Result<(PathBuf, BertTokenizer), TrainError> {
    let cfg = &opts.config;
    let vocab_path = opts.state_dir.join("vocab.txt");
    if !resuming || !vocab_path.exists() {
        let v = vocab::build(sentences.iter().flatten().map(|s| s.as_str()), cfg.vocab.min_count, cfg.vocab.max_size);
        vocab::write(&v, &vocab_path).map_err(io(&vocab_path))?;
    }
    let tokenizer = BertTokenizer::from_vocab_file(&vocab_path, true)?;
    Ok((vocab_path, tokenizer))
}

/// Everything the BrgSA steps read.
struct Run<'a> {
    opts: &'a TrainOptions,
    dev: &'a Device,
    corpus: &'a Corpus,
    cases: &'a [&'a CaseEntry],
    sentences: &'a [Vec<String>],
    tokenizer: &'a BertTokenizer,
    cache: &'a InputCache,
    model: &'a Brgsa,
    varmap: &'a VarMap,
    ckpt: &'a Checkpoint<'a>,
    batch: usize,
    steps_per_epoch: usize,
    /// Stop after this global step.
    limit: usize,
}

/// The epochs from the position in `st` up to the last epoch or `run.limit`: a checkpoint
/// after each finished epoch, and one on cancellation (then [`TrainError::Cancelled`]).
fn run_epochs(run: &Run, adam: &mut Adam, st: &mut RunState, on_event: &mut dyn FnMut(&Event)) -> Result<(), TrainError> {
    let cfg = &run.opts.config;
    let run_start = Instant::now();
    let base_seconds = st.train_seconds;
    'epochs: while st.epoch < cfg.epochs && st.global_step < run.limit {
        let order = permutation(&mut rng_for(cfg.seed, st.epoch as u64, u64::MAX), run.cases.len());
        let mut epoch_sum: f64 = st.steps.iter().filter(|s| s.epoch == st.epoch).map(|s| s.loss).sum();
        while st.step_in_epoch < run.steps_per_epoch {
            if st.global_step >= run.limit {
                break 'epochs;
            }
            if run.opts.cancel.is_cancelled() {
                st.train_seconds = base_seconds + run_start.elapsed().as_secs_f64();
                run.ckpt.save(run.varmap, adam, st)?;
                return Err(TrainError::cancelled(CancelStage::Training, &run.opts.state_dir));
            }
            let info = train_step(run, adam, st, &order)?;
            epoch_sum += info.loss;
            on_event(&Event::Step(info.clone()));
            st.steps.push(info);
            st.step_in_epoch += 1;
            st.global_step += 1;
        }
        if st.step_in_epoch >= run.steps_per_epoch {
            st.epoch_loss.push(epoch_sum / run.steps_per_epoch as f64);
            st.epoch += 1;
            st.step_in_epoch = 0;
            st.train_seconds = base_seconds + run_start.elapsed().as_secs_f64();
            run.ckpt.save(run.varmap, adam, st)?;
            on_event(&Event::EpochEnd { epoch: st.epoch - 1, mean_loss: *st.epoch_loss.last().unwrap(), checkpoint: run.ckpt.weights() });
        }
    }
    st.train_seconds = base_seconds + run_start.elapsed().as_secs_f64();
    Ok(())
}

/// One BrgSA step at the position in `st`: the batch's crops and sentences drawn from the
/// step's random stream, the objective, clipping and the Adam update.
fn train_step(run: &Run, adam: &mut Adam, st: &RunState, order: &[usize]) -> Result<StepInfo, TrainError> {
    let cfg = &run.opts.config;
    let (batch, model) = (run.batch, run.model);
    let [c0, c1, c2] = cfg.crop;
    let crop_vox = c0 * c1 * c2;
    let t0 = Instant::now();
    let mut rng = rng_for(cfg.seed, st.epoch as u64, st.step_in_epoch as u64);
    let idx = &order[st.step_in_epoch * batch..(st.step_in_epoch + 1) * batch];
    let mut xs = vec![0f32; batch * crop_vox];
    let mut encs = Vec::with_capacity(batch);
    for (b, &ci) in idx.iter().enumerate() {
        let o = random_origin(&mut rng, run.cache.shape, cfg.crop);
        run.cache.crop_into(ci, o, cfg.crop, &mut xs[b * crop_vox..(b + 1) * crop_vox]);
        let picked = sample_without_replacement(&mut rng, &run.sentences[ci], cfg.merge_num);
        let e = encode_text(run.tokenizer, &picked, cfg.text_max_length)
            .map_err(|e| TrainError::Text { path: run.corpus.path(&run.cases[ci].report), source: Box::new(e) })?;
        encs.push(e);
    }
    let x = Tensor::from_vec(xs, (batch, 1, c0, c1, c2), run.dev)?;
    let v = model.image_embeddings(&x)?;
    let t = model.text_embeddings(&encs)?;
    let (_, v_hat) = model.reconstruct(&v)?;
    let (_, t_hat) = model.reconstruct(&t)?;
    let parts = brgsa_loss(&v, &t, &v_hat, &t_hat, &cfg.loss)?;
    let vals = parts.values()?;
    if !vals[0].is_finite() {
        return Err(TrainError::Invalid {
            path: run.opts.output.clone(),
            reason: format!("loss is {} at step {}", vals[0], st.global_step),
        });
    }
    let grads = parts.total.backward()?;
    let lr = adam.current_lr();
    let grad_norm = adam.step(&grads)?;
    drop(grads);
    Ok(StepInfo {
        epoch: st.epoch,
        step: st.step_in_epoch,
        global_step: st.global_step,
        loss: vals[0],
        parts: [vals[1], vals[2], vals[3], vals[4], vals[5], vals[6]],
        grad_norm,
        lr,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The state-folder record of a finished pre-training stage.
#[derive(Serialize, Deserialize, PartialEq)]
struct PretrainRecord {
    config: MaeConfig,
    vision: radbridge_model::vit3d::Vit3dConfig,
    crop: [usize; 3],
    seed: u64,
    init: String,
    train_ids_sha256: String,
}

/// Run the masked-image pre-training stage on the image encoder's variables of `varmap`, or
/// reuse its result from the state folder when an earlier run did the same stage. Returns
/// (seconds, loss per step); an interrupted stage is not checkpointed (it restarts).
#[allow(clippy::too_many_arguments)]
fn pretrain_vision(
    opts: &TrainOptions,
    ckpt: &Checkpoint,
    varmap: &VarMap,
    model: &Brgsa,
    cache: &InputCache,
    mae_cfg: &MaeConfig,
    ids_hash: &str,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(f64, Vec<f64>), TrainError> {
    let cfg = &opts.config;
    let record = PretrainRecord {
        config: mae_cfg.clone(),
        vision: cfg.vision.clone(),
        crop: cfg.crop,
        seed: cfg.seed,
        init: cfg.init.as_str().into(),
        train_ids_sha256: ids_hash.to_string(),
    };
    let weights = ckpt.dir.join("pretrained-vision.safetensors");
    let record_path = ckpt.dir.join("pretrained-vision.json");
    let log_path = ckpt.dir.join("pretrained-vision-log.json");
    let encoder: Vec<(String, Var)> =
        trainable(varmap, cfg.freeze_pos_embed).into_iter().filter(|(k, _)| k.starts_with("img_encoder.model.")).collect();
    let same = std::fs::read_to_string(&record_path)
        .ok()
        .and_then(|t| serde_json::from_str::<PretrainRecord>(&t).ok())
        .is_some_and(|r| r == record);
    if same && weights.exists() {
        let saved = candle_core::safetensors::load(&weights, &Device::Cpu)?;
        for (name, var) in &encoder {
            let t = saved.get(name).ok_or_else(|| TrainError::Invalid { path: weights.clone(), reason: format!("{name} is missing") })?;
            var.set(t)?;
        }
        let (seconds, losses): (f64, Vec<f64>) =
            std::fs::read_to_string(&log_path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or((0.0, Vec::new()));
        on_event(&Event::PretrainDone { weights, reused: true, seconds });
        return Ok((seconds, losses));
    }
    let t0 = Instant::now();
    let total = mae_cfg.steps;
    let cancel = opts.cancel.clone();
    let log = mae::pretrain(model.vision(), encoder.clone(), cache, mae_cfg, cfg.crop, cfg.seed, &mut |step| {
        on_event(&Event::PretrainStep { total, step: step.clone() });
        !cancel.is_cancelled()
    })?;
    let Some(log) = log else {
        return Err(TrainError::cancelled(CancelStage::Pretraining, &opts.state_dir));
    };
    let seconds = t0.elapsed().as_secs_f64();
    let losses: Vec<f64> = log.iter().map(|s| s.loss).collect();
    let tensors: HashMap<String, Tensor> = encoder.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    atomic::write_via(&weights, |tmp| candle_core::safetensors::save(&tensors, tmp)).map_err(write_err(&weights))?;
    write_atomic(&log_path, serde_json::to_string(&(seconds, &losses)).expect("log serialises"))?;
    write_atomic(&record_path, serde_json::to_string_pretty(&record).expect("record serialises"))?;
    on_event(&Event::PretrainDone { weights, reused: false, seconds });
    Ok((seconds, losses))
}

/// Write the model directory: `model.safetensors`, `config.json`, `vocab.txt`, `model.json`
/// (synthetic), `train-config.json` and `train-log.json`.
#[allow(clippy::too_many_arguments)]
fn write_model_dir(
    out: &Path,
    varmap: &VarMap,
    cfg: &TrainConfig,
    bcfg: &radbridge_model::brgsa::BrgsaConfig,
    vocab_path: &Path,
    corpus: &Corpus,
    cases: usize,
    st: &RunState,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let weights = out.join("model.safetensors");
    {
        let data = varmap.data().lock().expect("varmap lock");
        let map: HashMap<String, Tensor> = data.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect();
        atomic::write_via(&weights, |tmp| candle_core::safetensors::save(&map, tmp)).map_err(write_err(&weights))?;
    }
    let text_cfg = out.join("config.json");
    let mut tc = serde_json::to_value(&bcfg.text).expect("bert config serialises");
    tc["model_type"] = "bert".into();
    tc["architectures"] = serde_json::json!(["BertModel"]);
    write_atomic(&text_cfg, serde_json::to_string_pretty(&tc).unwrap() + "\n")?;
    package::copy_file(vocab_path, &out.join("vocab.txt"))?;
    let mut model = serde_json::to_value(bcfg).expect("config serialises");
    if let Some(o) = model.as_object_mut() {
        o.remove("text");
    }
    let mut m = Manifest::official(
        Arch::Brgsa,
        &cfg.name,
        model,
        package::sha256_file(&weights)?,
        TextFiles { config: "config.json".into(), vocab: Some("vocab.txt".into()), tokenizer: None },
    );
    m.description = "BrgSA demonstration model trained on synthetic CT volumes and reports generated by `radbridge synth`. \
        It shows how the method works; it is not a clinical model and says nothing about real patients."
        .into();
    m.synthetic = true;
    m.preprocess = cfg.preprocess.clone();
    m.prompts = PromptTemplates::brgsa();
    m.scoring = ScoringRule::BrgsaMeanCosine;
    let mut sets = std::collections::BTreeMap::new();
    for s in ["ct-rate", "ct-rate-lt"] {
        sets.insert(s.to_string(), zeroshot::label_set(s).expect("label set"));
    }
    m.label_sets = sets;
    // Keep the bank / thresholds of an earlier run only if their files are still there.
    if let Ok(old) = ModelPackage::open(out) {
        m.bank = old.manifest.bank.filter(|b| out.join(b).exists());
        m.thresholds = old.manifest.thresholds.filter(|t| out.join(t).exists());
    }
    m.source = serde_json::json!({
        "trainer": format!("radbridge train {}", env!("CARGO_PKG_VERSION")),
        "corpus": corpus.dir.display().to_string(),
        "corpus_seed": corpus.seed,
        "cases": cases,
        "train_ids_sha256": st.train_ids_sha256,
        "seed": cfg.seed,
        "epochs": st.epoch_loss.len(),
        "steps": st.global_step,
        "final_loss": st.steps.last().map(|s| s.loss),
        "train_seconds": st.train_seconds,
        "pretrain_seconds": st.pretrain_seconds,
    });
    let pkg = ModelPackage { dir: out.to_path_buf(), manifest: m };
    pkg.write_manifest()?;
    let tc_path = out.join("train-config.json");
    write_atomic(&tc_path, serde_json::to_string_pretty(cfg).unwrap() + "\n")?;
    let log = serde_json::json!({
        "epoch_loss": st.epoch_loss,
        "steps": st.steps.iter().map(|s| serde_json::json!([s.global_step, s.epoch, (s.loss * 1e6).round() / 1e6])).collect::<Vec<_>>(),
        "train_seconds": st.train_seconds,
        "pretrain_seconds": st.pretrain_seconds,
        "pretrain_loss": st.pretrain_loss.iter().map(|l| (l * 1e6).round() / 1e6).collect::<Vec<_>>(),
    });
    let log_path = out.join("train-log.json");
    write_atomic(&log_path, serde_json::to_string(&log).unwrap() + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_columns_are_orthonormal() {
        let mut rng = rng_for(3, 0, 0);
        let (r, c) = (12, 5);
        let q = orthogonal(&mut rng, r, c);
        for a in 0..c {
            for b in 0..c {
                let d: f64 = (0..r).map(|i| q[i * c + a] as f64 * q[i * c + b] as f64).sum();
                assert!((d - if a == b { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn streams_are_reproducible_and_samples_distinct() {
        let a = permutation(&mut rng_for(1, 2, 3), 50);
        let b = permutation(&mut rng_for(1, 2, 3), 50);
        assert_eq!(a, b);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        let items: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
        let pick = sample_without_replacement(&mut rng_for(1, 0, 0), &items, 5);
        let set: std::collections::BTreeSet<_> = pick.iter().collect();
        assert_eq!(set.len(), 5);
        assert_eq!(sample_without_replacement(&mut rng_for(1, 0, 0), &items[..3], 5).len(), 3);
    }

    /// The gradients of the whole model (ViT with padding-free attention, BERT with a padded
    /// batch, projections, bank) through the BrgSA objective equal finite differences, in f64:
    /// the training path has no op without a backward pass.
    #[test]
    fn model_gradients_match_finite_differences() {
        use radbridge_model::text::Encoding;
        let dev = Device::Cpu;
        let cfg: TrainConfig = serde_json::from_value(serde_json::json!({
            "vision": {"hidden_size": 8, "depth": 1, "num_heads": 2, "mlp_dim": 16, "patch_size": [2, 2, 2], "img_size": [4, 4, 4]},
            "text": {"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16},
            "embed_dim": 6, "bank_size": 5, "text_max_length": 8, "text_pool_layers": 2,
            "crop": [4, 4, 4], "preprocess": {"target_spacing": [1.0, 1.0, 1.0], "target_shape": [4, 4, 4], "resampler": "itk_linear",
                "size_rule": "round", "crop_rule": "ceil_lower", "outside_hu": 0.0, "itk_integer_cast": false,
                "clip_before_resample": false, "pad_hu": 0.0, "hu_window": [-1000.0, 1000.0], "hu_scale": 1000.0,
                "intensity_f64": false, "mean": 0.0, "std": 1.0, "output_axes": [0, 1, 2]}
        }))
        .unwrap();
        let bcfg = cfg.brgsa_config(12);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
        let model = Brgsa::load(vb, &bcfg).unwrap();
        init_params(&varmap, &model, 5, false).unwrap();
        // Larger weights than the 0.02 init so every path carries a visible gradient.
        for (_, v) in trainable(&varmap, false) {
            let t = (v.as_tensor() * 20.0).unwrap();
            v.set(&t).unwrap();
        }
        let x = Tensor::randn(0f64, 1.0, (3, 1, 4, 4, 4), &dev).unwrap();
        let enc = |ids: &[u32]| Encoding {
            ids: ids.to_vec(),
            type_ids: vec![0; ids.len()],
            attention_mask: vec![1; ids.len()],
            tokens: ids.iter().enumerate().map(|(i, _)| if i + 1 == ids.len() { "[SEP]".into() } else { "w".into() }).collect(),
        };
        let encs = vec![enc(&[2, 5, 7, 3]), enc(&[2, 9, 3]), enc(&[2, 4, 6, 8, 10, 3])];
        let loss_of = || -> f64 {
            let v = model.image_embeddings(&x).unwrap();
            let t = model.text_embeddings(&encs).unwrap();
            let (_, vh) = model.reconstruct(&v).unwrap();
            let (_, th) = model.reconstruct(&t).unwrap();
            brgsa_loss(&v, &t, &vh, &th, &cfg.loss).unwrap().total.to_scalar::<f64>().unwrap()
        };
        let v = model.image_embeddings(&x).unwrap();
        let t = model.text_embeddings(&encs).unwrap();
        let (_, vh) = model.reconstruct(&v).unwrap();
        let (_, th) = model.reconstruct(&t).unwrap();
        let grads = brgsa_loss(&v, &t, &vh, &th, &cfg.loss).unwrap().total.backward().unwrap();
        let vars = trainable(&varmap, false);
        let mut checked = 0;
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"))
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let p0 = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            // Two entries per variable.
            for &k in &[0usize, p0.len() / 2] {
                let h = 1e-5;
                let mut p = p0.clone();
                p[k] += h;
                var.set(&Tensor::from_vec(p.clone(), var.dims(), &dev).unwrap()).unwrap();
                let up = loss_of();
                p[k] -= 2.0 * h;
                var.set(&Tensor::from_vec(p, var.dims(), &dev).unwrap()).unwrap();
                let down = loss_of();
                var.set(&Tensor::from_vec(p0.clone(), var.dims(), &dev).unwrap()).unwrap();
                let fd = (up - down) / (2.0 * h);
                assert!((fd - g[k]).abs() < 1e-5 * fd.abs().max(1e-2), "{name}[{k}]: autograd {} vs finite difference {fd}", g[k]);
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn a_cancelled_run_says_what_was_kept_and_is_recognised_by_type() {
        let dir = Path::new("/runs/x/train-state");
        let e = TrainError::cancelled(CancelStage::Training, dir);
        assert!(e.is_cancelled());
        assert_eq!(e.to_string(), "training cancelled; checkpoint saved in /runs/x/train-state (continue with --resume)");
        let e = TrainError::cancelled(CancelStage::Pretraining, dir);
        assert_eq!(
            e.to_string(),
            "training cancelled during pre-training of the image encoder; nothing was saved in /runs/x/train-state (a new run starts the stage again)"
        );
        assert!(TrainError::Data(DataError::Cancelled(Cancelled)).is_cancelled());
        assert!(!TrainError::Invalid { path: dir.into(), reason: "r".into() }.is_cancelled());
    }

    #[test]
    fn sincos_embedding_has_expected_layout() {
        let pe = sincos_pos_embed([2, 2, 2], 12);
        assert_eq!(pe.len(), 9 * 12);
        assert!(pe[..12].iter().all(|&x| x == 0.0));
        // token (0,0,0): sin(0) = 0, cos(0) = 1 for each axis.
        assert_eq!(&pe[12..16], &[0.0, 0.0, 1.0, 1.0]);
    }
}
