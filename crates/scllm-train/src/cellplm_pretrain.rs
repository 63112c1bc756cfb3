//! CellPLM pretraining (docs/models/cellplm.md §3.6, §7.7): masked-feature negative-binomial
//! autoencoding of raw counts with cell dropping and the GMVAE latent loss, the cells of one
//! file at a time as the attention set.
//!
//! The reference's pretraining script is not released; what the released model code fixes is
//! kept (the loss, the masking of 75 % of the cells at 25 % of their features, 30 % of the cells
//! dropped, at most `max_batch_size` kept); the data pipeline and the optimiser are scllm's:
//! each step draws `set_size` random cells of one file (files drawn in proportion to their
//! cells) as the set, AdamW with a linear warm-up and cosine decay, global norm clipping.
//! Genes are the union of the files' genes (each name as an Ensembl id, a symbol through GENCODE
//! v44) seen in at least `min_files_per_gene` files; a gene a file lacks counts as an observed zero (the
//! released objective reads every gene of the list).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use scllm_models::cellplm::decoder::{DecoderShape, N_DEC_1};
use scllm_models::cellplm::objective::PretrainInput;
use scllm_models::cellplm::write::{config_of, write_folder};
use scllm_models::cellplm::{CellPlm, CellPlmShape, SetInput};
use scllm_pp::{detect_values, ValueKind};
use scllm_tokenize::vocab::{gencode_id_to_name, looks_ensembl, strip_version};
use scllm_tokenize::{list_inputs, ObsFilter};
use serde::{Deserialize, Serialize};

use crate::error::{ck_err, file_err, invalid, Result};
use crate::sampler::SplitMix64;
use crate::trainer::loss::{clip_global_norm, scalar};
use crate::trainer::resume::{
    checkpoint_to_resume, load_model_and_optimizer, read_state, write_checkpoint,
};

/// `[model]`: the sizes (`OmicsFormer`'s keyword names).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellPlmModelSection {
    /// `"cellplm"`: what tells `scllm pretrain` the family.
    pub family: String,
    pub enc_hid: usize,
    pub enc_layers: usize,
    #[serde(default = "d_heads")]
    pub enc_head: usize,
    pub post_latent_dim: usize,
    #[serde(default = "d_clusters")]
    pub num_clusters: usize,
    #[serde(default = "d_dropout")]
    pub model_dropout: f64,
    /// The GMVAE loss (the release: 5, 5, 5).
    #[serde(default = "d_five")]
    pub w_li: f64,
    #[serde(default = "d_five")]
    pub w_en: f64,
    #[serde(default = "d_five")]
    pub lamda: f64,
}

/// `[data]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellPlmDataSection {
    /// Cells to leave out (`FILE.h5ad:COLUMN=VALUE`), e.g. benchmark test cells.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "d_min_files")]
    pub min_files_per_gene: usize,
    /// Cells with fewer expressed genes of the list are skipped.
    #[serde(default = "d_min_genes")]
    pub min_genes: usize,
    /// Cells drawn from one file for a step's set.
    #[serde(default = "d_set")]
    pub set_size: usize,
}

/// `[train]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellPlmTrainSection {
    pub steps: usize,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_warmup")]
    pub warmup_ratio: f64,
    #[serde(default = "d_min_lr")]
    pub min_lr_ratio: f64,
    #[serde(default = "d_clip")]
    pub grad_clip_norm: f32,
    #[serde(default = "d_drop")]
    pub drop_node_rate: f64,
    #[serde(default = "d_max_batch")]
    pub max_batch_size: usize,
    #[serde(default = "d_mask_node")]
    pub mask_node_rate: f64,
    #[serde(default = "d_mask_feature")]
    pub mask_feature_rate: f64,
    #[serde(default = "d_log")]
    pub log_every: usize,
    /// Write `checkpoint/` (model, optimizer, state) every this many steps, for `--resume`.
    #[serde(default = "d_checkpoint")]
    pub checkpoint_every: usize,
    #[serde(default)]
    pub seed: u64,
}

/// `scllm pretrain --config` with `[model] family = "cellplm"`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellPlmPretrainConfig {
    pub model: CellPlmModelSection,
    pub data: CellPlmDataSection,
    pub train: CellPlmTrainSection,
}

fn d_heads() -> usize {
    8
}
fn d_clusters() -> usize {
    16
}
fn d_dropout() -> f64 {
    0.2
}
fn d_five() -> f64 {
    5.0
}
fn d_min_files() -> usize {
    1
}
fn d_min_genes() -> usize {
    10
}
fn d_set() -> usize {
    512
}
fn d_lr() -> f64 {
    1e-3
}
fn d_wd() -> f64 {
    1e-6
}
fn d_warmup() -> f64 {
    0.05
}
fn d_min_lr() -> f64 {
    0.05
}
fn d_clip() -> f32 {
    1.0
}
fn d_drop() -> f64 {
    0.3
}
fn d_max_batch() -> usize {
    4000
}
fn d_mask_node() -> f64 {
    0.75
}
fn d_mask_feature() -> f64 {
    0.25
}
fn d_log() -> usize {
    10
}
fn d_checkpoint() -> usize {
    100
}

impl CellPlmPretrainConfig {
    /// Whether a TOML config names the CellPLM family (`[model] family = "cellplm"`).
    pub fn names_cellplm(text: &str) -> bool {
        toml::from_str::<toml::Value>(text)
            .ok()
            .and_then(|v| {
                v.get("model")?
                    .get("family")?
                    .as_str()
                    .map(|f| f == "cellplm")
            })
            .unwrap_or(false)
    }

    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))?;
        let c: Self = toml::from_str(&text).map_err(|e| file_err(path, e.to_string()))?;
        let bad = |m: &str| file_err(path, m.to_string());
        if c.model.family != "cellplm" {
            return Err(bad("[model] family must be \"cellplm\""));
        }
        if c.model.enc_hid == 0
            || c.model.enc_head == 0
            || !c.model.enc_hid.is_multiple_of(c.model.enc_head)
            || !c.model.enc_hid.is_multiple_of(4)
        {
            return Err(bad(
                "[model] enc_hid must divide into enc_head heads and 4 norm groups",
            ));
        }
        if c.train.steps == 0 || c.data.set_size < 2 || c.model.post_latent_dim == 0 {
            return Err(bad(
                "[train] steps, [data] set_size (at least 2) and [model] post_latent_dim must be positive",
            ));
        }
        Ok(c)
    }

    /// The learning rate at 0-based `step`: linear warm-up, then cosine to `lr · min_lr_ratio`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let t = &self.train;
        crate::pretrain::warmup_cosine(t.lr, t.min_lr_ratio, t.warmup_ratio, t.steps, step)
    }
}

/// One file's kept cells: per cell, gene-list rows and raw counts.
struct FileCells {
    name: String,
    cells: Vec<(Vec<u32>, Vec<f32>)>,
}

/// The Ensembl id a `var` name stands for (as given, version removed, or a symbol via GENCODE).
fn ensembl_of(name: &str, by_symbol: &HashMap<String, String>) -> Option<String> {
    if looks_ensembl(name) {
        Some(strip_version(name).to_string())
    } else {
        by_symbol.get(name).cloned()
    }
}

/// Read the inputs: the exclusion filters applied, X checked to hold counts, the gene list
/// built, each cell's entries matched to it.
fn read_corpus(
    inputs: &[PathBuf],
    d: &CellPlmDataSection,
) -> Result<(Vec<String>, Vec<FileCells>)> {
    let files = list_inputs(inputs)?;
    let filters: Vec<ObsFilter> = d
        .exclude
        .iter()
        .map(|s| s.parse::<ObsFilter>().map_err(invalid))
        .collect::<Result<_>>()?;
    let mut by_symbol: HashMap<String, String> = HashMap::new();
    let mut pairs: Vec<(String, String)> = gencode_id_to_name().into_iter().collect();
    pairs.sort();
    for (id, name) in pairs {
        by_symbol.entry(name).or_insert(id);
    }
    let mut data = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let a = scllm_io::read_h5ad(f)?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let kind = detect_values(a.x()?).kind;
        if kind != ValueKind::Counts {
            return Err(file_err(
                f,
                format!(
                    "X holds {} values: CellPLM pretrains on raw counts (put the counts in X, or \
                     leave the file out)",
                    kind.as_str()
                ),
            ));
        }
        let mut keep = vec![true; a.n_obs()];
        for flt in &filters {
            if flt.file.as_deref().is_some_and(|x| x != name) {
                continue;
            }
            let Some(col) = a.obs.column(&flt.column) else {
                continue;
            };
            for (i, v) in col.to_strings().into_iter().enumerate() {
                if v.is_some_and(|v| flt.values.contains(&v)) {
                    keep[i] = false;
                }
            }
        }
        let ids: std::collections::BTreeSet<String> = a
            .var
            .index
            .iter()
            .filter_map(|g| ensembl_of(g, &by_symbol))
            .collect();
        for id in ids {
            *seen.entry(id).or_default() += 1;
        }
        data.push((f.clone(), name, a, keep));
    }
    let gene_list: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n >= d.min_files_per_gene)
        .map(|(g, _)| g)
        .collect();
    if gene_list.is_empty() {
        return Err(invalid(format!(
            "no gene is in at least {} of the input files (min_files_per_gene)",
            d.min_files_per_gene
        )));
    }
    let mut out = Vec::new();
    let pos: HashMap<&str, u32> = gene_list
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i as u32))
        .collect();
    for (_, name, a, keep) in data {
        // each name on its own (a file may mix symbols and Ensembl ids, as cellbench_3cl does)
        let ids: Vec<Option<u32>> = a
            .var
            .index
            .iter()
            .map(|g| ensembl_of(g, &by_symbol).and_then(|id| pos.get(id.as_str()).copied()))
            .collect();
        let x = a.x()?.to_csr();
        let vals = x.data.to_f32();
        let mut cells = Vec::new();
        for i in (0..x.nrows).filter(|&i| keep[i]) {
            let (mut g, mut v) = (Vec::new(), Vec::new());
            for k in x.range(i) {
                if let Some(id) = ids[x.indices[k] as usize] {
                    if vals[k] > 0.0 {
                        g.push(id);
                        v.push(vals[k]);
                    }
                }
            }
            if g.len() >= d.min_genes {
                cells.push((g, v));
            }
        }
        if cells.len() >= 2 {
            out.push(FileCells { name, cells });
        }
    }
    if out.is_empty() {
        return Err(invalid(
            "no input file has two cells left after the filters and min_genes",
        ));
    }
    Ok((gene_list, out))
}

/// One line of `pretrain_log.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellPlmStepLog {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    pub nb: f64,
    pub latent: f64,
    pub cells_per_s: f64,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct CellPlmPretrainSummary {
    pub steps: usize,
    pub cells_seen: usize,
    pub seconds: f64,
    pub genes: usize,
    pub parameters: usize,
    pub files: Vec<(String, usize)>,
    pub final_loss: Option<f64>,
    pub output: String,
    pub resumed_from_step: Option<usize>,
    /// All `steps` done and the model written (else a checkpoint to resume from).
    pub finished: bool,
}

/// Where inputs and outputs go: `resume` continues from `out/checkpoint` (the same config and
/// inputs), `stop_after_steps` stops a call as if interrupted, a checkpoint written.
pub type CellPlmPretrainRun<'a> = crate::pretrain::PretrainRun<'a, CellPlmPretrainConfig>;

/// The loss sums of the log window in progress.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Window {
    loss: f64,
    nb: f64,
    latent: f64,
    steps: usize,
    cells: usize,
}

/// `checkpoint/state.json`: with the model and optimizer beside it, all a resumed run needs to
/// take the same steps (every random choice comes from `rng`, dropout seeded from it per step).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CellPlmState {
    version: u32,
    /// Steps done.
    step: usize,
    rng: SplitMix64,
    cells_seen: usize,
    window: Window,
    log: Vec<CellPlmStepLog>,
    /// The run's config and gene list: a resumed run must have the same.
    config: serde_json::Value,
    genes: Vec<String>,
}

const STATE_VERSION: u32 = 1;

/// Why a run with config `now` cannot resume one saved with `saved` (the first field that
/// differs), if it cannot.
fn config_differs(saved: &serde_json::Value, now: &serde_json::Value) -> Option<String> {
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else {
        return (saved != now).then(|| "the config differs".to_string());
    };
    for (section, sv) in a {
        let nv = b.get(section).unwrap_or(&serde_json::Value::Null);
        let (Some(sf), Some(nf)) = (sv.as_object(), nv.as_object()) else {
            continue;
        };
        let keys: std::collections::BTreeSet<&String> = sf.keys().chain(nf.keys()).collect();
        for k in keys {
            let (x, y) = (sf.get(k), nf.get(k));
            if x != y {
                let show =
                    |v: Option<&serde_json::Value>| v.map_or("unset".into(), |v| v.to_string());
                return Some(format!(
                    "[{section}] {k} is {} in this config but {} in the run being resumed",
                    show(y),
                    show(x)
                ));
            }
        }
    }
    None
}

/// Pretrain a CellPLM model as `run.config` says on `run.inputs` and write it to `run.out` in
/// the released layout (`cellplm.config.json` + `cellplm.best.ckpt`), with
/// `pretrain_log.jsonl`, `loss_curve.png` and, every `checkpoint_every` steps, `checkpoint/`
/// (model, optimizer, state) from which `resume` continues exactly.
pub fn pretrain_cellplm(run: &CellPlmPretrainRun) -> Result<CellPlmPretrainSummary> {
    let (cfg, out) = (run.config, run.out);
    let t0 = Instant::now();
    let (gene_list, files) = read_corpus(run.inputs, &cfg.data)?;
    let g = gene_list.len();
    let m = &cfg.model;
    let t = &cfg.train;
    std::fs::create_dir_all(out).map_err(|e| ck_err(out, e))?;
    let found = match run.resume {
        true => Some(checkpoint_to_resume(out)?),
        false => None,
    };
    let dev = Device::flex();
    dev.seed(t.seed);
    let shape = CellPlmShape {
        n_genes: g,
        d_model: m.enc_hid,
        n_layers: m.enc_layers,
        heads: m.enc_head,
        ffn: 2 * m.enc_hid,
        // the GMVAE's hidden layer is 512 in the reference whatever the latent
        gmvae: Some((m.num_clusters, 512, m.post_latent_dim)),
        latent: m.post_latent_dim,
        model_dropout: m.model_dropout,
        pretrain: Some(DecoderShape {
            hidden: m.enc_hid,
            blocks: 1,
            n_dec_1: N_DEC_1,
            covariates: Vec::new(),
            w_li: m.w_li,
            w_en: m.w_en,
            lamda: m.lamda,
        }),
    };
    let mut model = CellPlm::new(&shape, &dev).train();
    let parameters = model.num_params();
    let mut opt: ModuleOptimizer = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(t.weight_decay as f32)
        .init();
    let config_json = serde_json::to_value(cfg).expect("a plain config");
    let log_path = out.join("pretrain_log.jsonl");
    let mut st = CellPlmState {
        version: STATE_VERSION,
        step: 0,
        rng: SplitMix64::new(t.seed ^ 0x5EED),
        cells_seen: 0,
        window: Window::default(),
        log: Vec::new(),
        config: config_json.clone(),
        genes: gene_list.clone(),
    };
    let resumed_from_step = match &found {
        Some(ck) => {
            let sp = ck.join("state.json");
            st = read_state(ck)?;
            if let Some(why) = config_differs(&st.config, &config_json) {
                return Err(file_err(
                    &sp,
                    format!(
                        "{why}: resume with the run's config, or start afresh without --resume"
                    ),
                ));
            }
            if st.genes != gene_list {
                return Err(file_err(
                    &sp,
                    format!(
                        "the inputs give another gene list ({g} genes) than the run being resumed \
                         ({}): resume with the run's --data, or start afresh without --resume",
                        st.genes.len()
                    ),
                ));
            }
            opt = load_model_and_optimizer(ck, &mut model, opt)?;
            Some(st.step)
        }
        None => None,
    };
    // the log as of the checkpoint (lines a killed run wrote after it are taken back)
    let mut text = String::new();
    for l in &st.log {
        text.push_str(&serde_json::to_string(l).expect("serialisable"));
        text.push('\n');
    }
    scllm_fs::write_atomic(&log_path, text.as_bytes()).map_err(|e| ck_err(&log_path, e))?;
    let mut log_file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(|e| ck_err(&log_path, e))?;
    let adev = dev.clone().autodiff();
    let total: usize = files.iter().map(|f| f.cells.len()).sum();
    let bar = if run.progress {
        let b = ProgressBar::new(t.steps as u64);
        b.set_style(
            ProgressStyle::with_template(
                "pretrain CellPLM [{bar:25}] {pos}/{len} steps {per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_position(st.step as u64);
        b
    } else {
        ProgressBar::hidden()
    };
    let mut t_win = Instant::now();
    let mut steps_now = 0;
    while st.step < t.steps && run.stop_after_steps.is_none_or(|k| steps_now < k) {
        let step = st.step;
        let rng = &mut st.rng;
        // a file in proportion to its cells, then `set_size` of its cells
        let mut pick = rng.below(total);
        let f = files
            .iter()
            .find(|f| {
                if pick < f.cells.len() {
                    true
                } else {
                    pick -= f.cells.len();
                    false
                }
            })
            .expect("pick < total");
        let mut order: Vec<usize> = (0..f.cells.len()).collect();
        rng.shuffle(&mut order);
        let drawn = order.len().min(cfg.data.set_size);
        // cell dropping (`drop_nodes`), then the mask (`MaskBuilder`)
        let keep = t
            .max_batch_size
            .min((drawn as f64 * (1.0 - t.drop_node_rate)) as usize)
            .max(2);
        let rows: Vec<usize> = order[..keep.min(drawn)].to_vec();
        let n = rows.len();
        let n_mask = (t.mask_node_rate * n as f64) as usize;
        let mut mask = vec![0f32; n * g];
        for i in 0..n_mask {
            for v in &mut mask[i * g..(i + 1) * g] {
                if rng.uniform() <= t.mask_feature_rate {
                    *v = 1.0;
                }
            }
        }
        // nothing masked: no loss to learn from, the step passes
        if n_mask > 0 && mask.iter().any(|&v| v > 0.0) {
            let mut counts = vec![0f32; n * g];
            let mut values: Vec<Vec<f32>> = Vec::with_capacity(n);
            for (i, &r) in rows.iter().enumerate() {
                let (genes, raw) = &f.cells[r];
                let mut v = Vec::with_capacity(genes.len());
                for (&gid, &c) in genes.iter().zip(raw) {
                    counts[i * g + gid as usize] += c;
                    v.push(if mask[i * g + gid as usize] > 0.0 {
                        0.0
                    } else {
                        c.ln_1p()
                    });
                }
                values.push(v);
            }
            let input = PretrainInput {
                input: SetInput {
                    genes: rows.iter().map(|&r| f.cells[r].0.as_slice()).collect(),
                    values: values.iter().map(Vec::as_slice).collect(),
                },
                counts: &counts,
                mask: Some(&mask),
            };
            adev.seed(rng.next_u64());
            let o = model.pretrain_loss(&input, &adev)?;
            let (nb, lat) = (
                scalar(o.nb_loss.clone().detach())?,
                scalar(o.latent_loss.clone().detach())?,
            );
            let loss = o.nb_loss + o.latent_loss;
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, t.grad_clip_norm)?;
            let lr = cfg.lr_at(step);
            model = opt.step(lr, model, grads);
            st.cells_seen += n;
            let w = &mut st.window;
            w.loss += nb + lat;
            w.nb += nb;
            w.latent += lat;
            w.steps += 1;
            w.cells += n;
            if w.steps == t.log_every.max(1) || step + 1 == t.steps {
                let k = w.steps as f64;
                let l = CellPlmStepLog {
                    step: step + 1,
                    lr,
                    loss: w.loss / k,
                    nb: w.nb / k,
                    latent: w.latent / k,
                    cells_per_s: w.cells as f64 / t_win.elapsed().as_secs_f64().max(1e-9),
                };
                writeln!(
                    log_file,
                    "{}",
                    serde_json::to_string(&l).expect("serialisable")
                )
                .map_err(|e| ck_err(&log_path, e))?;
                bar.set_message(format!("loss {:.2} (NB {:.2})", l.loss, l.nb));
                st.log.push(l);
                st.window = Window::default();
                t_win = Instant::now();
            }
        }
        st.step += 1;
        steps_now += 1;
        bar.inc(1);
        let stopping = run.stop_after_steps.is_some_and(|k| steps_now == k);
        if st.step.is_multiple_of(t.checkpoint_every.max(1)) || st.step == t.steps || stopping {
            let state = serde_json::to_string(&st).map_err(|e| ck_err(&log_path, e))?;
            write_checkpoint(out, &model, &opt, &state, |_, _| Ok(()))?;
        }
    }
    bar.finish_and_clear();
    let finished = st.step == t.steps;
    if finished {
        let model = model.valid();
        let config = config_of(
            &model,
            &gene_list,
            &serde_json::json!({
                "dec_layers": 2, "dec_hid": m.enc_hid, "batch_num": 0, "dataset_num": 0,
                "w_li": m.w_li, "w_en": m.w_en, "lamda": m.lamda,
                "mask_node_rate": t.mask_node_rate, "mask_feature_rate": t.mask_feature_rate,
                "drop_node_rate": t.drop_node_rate, "max_batch_size": t.max_batch_size,
            }),
        )?;
        write_folder(out, "cellplm", &config, &model)?;
        if !st.log.is_empty() {
            let pts = |f: fn(&CellPlmStepLog) -> f64| -> Vec<(f64, f64)> {
                st.log.iter().map(|l| (l.step as f64, f(l))).collect()
            };
            scllm_eval::plot::plot_lines(
                out.join("loss_curve.png"),
                "CellPLM pretraining loss",
                "step",
                "loss per cell",
                &[
                    ("NB reconstruction".to_string(), pts(|l| l.nb)),
                    ("GMVAE latent".to_string(), pts(|l| l.latent)),
                ],
            )
            .map_err(|e| file_err(out, e.to_string()))?;
        }
    }
    Ok(CellPlmPretrainSummary {
        steps: st.step,
        cells_seen: st.cells_seen,
        seconds: t0.elapsed().as_secs_f64(),
        genes: g,
        parameters,
        files: files
            .iter()
            .map(|f| (f.name.clone(), f.cells.len()))
            .collect(),
        final_loss: st.log.last().map(|l| l.loss),
        output: out.display().to_string(),
        resumed_from_step,
        finished,
    })
}
