//! The fine-tuning loop: Adam/AdamW on burn's autodiff device, StepLR or cosine with warm-up,
//! global gradient-norm clipping (as `torch.nn.utils.clip_grad_norm_`), plain or class-weighted
//! cross-entropy, an optional class-balanced sampler, early stopping on validation loss, the
//! best model kept, and exact resume.
//!
//! What trains is what has `require_grad`: burn's optimizer skips frozen parameters (no gradient,
//! no state). The model side is [`TokenModel`], so any token family's model with a classifier head
//! trains here. Dropout is re-seeded from the seed and the epoch number at the start of each
//! epoch, so a resumed run repeats the remaining epochs exactly.
//!
//! Files: [`config`] (what a run is told), [`loss`], [`stopping`], [`log`] (`train_log.jsonl`),
//! [`resume`] (the checkpoint); the loop and validation are here.

pub mod config;
mod json_floats;
pub mod log;
pub mod loss;
pub mod resume;
pub mod stopping;

pub use config::{OptimizerKind, Schedule, TrainConfig, TrainData};
pub use log::{read_train_log, EpochLog};
pub use loss::macro_f1;
pub use resume::{checkpoint_dir, load_module, save_module};
pub use stopping::{EarlyStopping, Verdict};

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use scllm_models::{BatchInput, TokenModel};
use scllm_tokenize::{pad_batch, TokenizedCell};

use crate::error::{ck_err, invalid, Result};
use crate::sampler::{class_counts, class_weights, epoch_batches, SplitMix64, WeightedSampler};
use config::{build_optimizer, check};
use log::write_log;
use loss::{ce_loss, clip_global_norm, host_ce, to_vec};

use resume::{save_checkpoint, TrainState, STATE_VERSION};

pub struct TrainOutcome<M> {
    /// The model with the lowest validation loss, on the inference device (`Module::valid`).
    pub best: M,
    /// The model after the last epoch run, on the training device.
    pub last: M,
    /// 1-based epoch of `best`.
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub history: Vec<EpochLog>,
    pub stopped_early: bool,
    /// Stopped by `stop_after_epochs` before `epochs` were done.
    pub interrupted: bool,
    /// Epochs already done in the checkpoint this run resumed from.
    pub resumed_from: Option<usize>,
}

fn mix(seed: u64, epoch: usize) -> u64 {
    let mut r = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64()
}

/// Validation loss, accuracy and macro F1 of `model` (on the inference device `dev`) on the
/// cells `idx`; `weights`: class weights of the loss (as in training), or plain cross-entropy.
pub fn evaluate<M: TokenModel>(
    model: &M,
    d: &TrainData,
    idx: &[usize],
    cfg: &TrainConfig,
    weights: Option<&[f32]>,
    dev: &Device,
) -> Result<(f64, f64, f64)> {
    let lengths: Vec<usize> = d.cells.iter().map(|c| c.len()).collect();
    let mut rng = SplitMix64::new(0);
    let batches = epoch_batches(
        idx,
        &lengths,
        cfg.eval_batch_size,
        cfg.max_batch_tokens,
        true, // inference: grouping only saves padding
        &mut rng,
    );
    let (mut num, mut den) = (0.0, 0.0);
    let mut truth = Vec::with_capacity(idx.len());
    let mut preds = Vec::with_capacity(idx.len());
    let k = d.classes.len();
    for b in batches {
        scllm_models::interrupt::check()?;
        let refs: Vec<(usize, &TokenizedCell)> = b.iter().map(|&i| (i, &d.cells[i])).collect();
        let pb = pad_batch(&refs, d.pad_id, d.pad_value);
        let input = BatchInput::of(&pb);
        let out = model.classify(&input, dev)?;
        let logits = to_vec(out.logits)?;
        let targets: Vec<u32> = b.iter().map(|&i| d.labels[i]).collect();
        let (n, w, p) = host_ce(&logits, k, &targets, weights);
        num += n;
        den += w;
        truth.extend(targets);
        preds.extend(p);
    }
    let acc = truth.iter().zip(&preds).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
    let f1 = macro_f1(&truth, &preds, k);
    Ok((num / den.max(f64::MIN_POSITIVE), acc, f1))
}

/// Fine-tune `model` (on the autodiff device `dev`, frozen parts already frozen) on `data`.
///
/// Returns the best model (lowest validation loss) on the inference device, the last model, and
/// the per-epoch log. With `cfg.out_dir`, writes `train_log.jsonl` and a checkpoint per epoch;
/// with `cfg.resume`, continues from that checkpoint (the model passed in must be built the same
/// way: same architecture, adapters and frozen parts).
pub fn train<M: TokenModel>(
    mut model: M,
    data: &TrainData,
    cfg: &TrainConfig,
    dev: &Device,
) -> Result<TrainOutcome<M>> {
    check(cfg, data)?;
    let inf_dev = dev.clone().without_autodiff();
    let k = data.classes.len();
    let train_labels: Vec<u32> = data.train.iter().map(|&i| data.labels[i]).collect();
    let weights: Option<Vec<f32>> = cfg.class_weighted_loss.then(|| {
        class_weights(
            cfg.class_weight_counts
                .as_deref()
                .unwrap_or(&class_counts(&train_labels, k)),
        )
    });
    let w = weights.as_deref();
    let sampler = cfg
        .balanced_sampler
        .then(|| WeightedSampler::balanced(data.train, data.labels, k));
    let mut opt = build_optimizer(cfg);
    let mut st = TrainState {
        version: STATE_VERSION,
        epochs_done: 0,
        step: 0,
        stopping: EarlyStopping::new(cfg.patience),
        stopped_early: false,
        rng: SplitMix64::new(cfg.seed),
        n_train: data.train.len(),
        n_val: data.val.len(),
        n_classes: k,
        history: Vec::new(),
        run_flags: cfg.run_flags.clone(),
    };
    let mut best: Option<M> = None;
    let mut resumed_from = None;
    let log_path = cfg.out_dir.as_ref().map(|o| o.join("train_log.jsonl"));
    if let Some(out) = &cfg.out_dir {
        std::fs::create_dir_all(out).map_err(|e| ck_err(out, e))?;
    }
    if cfg.resume {
        let out = cfg
            .out_dir
            .as_ref()
            .ok_or_else(|| invalid("resume needs the output folder of the interrupted run"))?;
        let ck = resume::checkpoint_to_resume(out)?;
        let sp = ck.join("state.json");
        let s: TrainState = resume::read_state(&ck)?;
        if let Some(why) = resume::other_run_flags(&s.run_flags, &cfg.run_flags) {
            return Err(ck_err(&sp, why));
        }
        if s.version != STATE_VERSION
            || s.n_train != st.n_train
            || s.n_val != st.n_val
            || s.n_classes != k
        {
            return Err(ck_err(
                &sp,
                format!(
                    "written for another run ({} training / {} validation cells, {} classes; now {} / {} / {}): resume with the same data, split and options",
                    s.n_train, s.n_val, s.n_classes, st.n_train, st.n_val, k
                ),
            ));
        }
        opt = resume::load_model_and_optimizer(&ck, &mut model, opt)?;
        let bp = ck.join("best.bpk");
        if bp.is_file() {
            let mut b = model.valid();
            load_module(&mut b, &bp)?;
            best = Some(b);
        }
        st = s;
        resumed_from = Some(st.epochs_done);
        if let Some(lp) = &log_path {
            write_log(lp, &st.history, false)?;
        }
    } else if let Some(lp) = &log_path {
        write_log(lp, &[], false)?;
    }

    let lengths: Vec<usize> = data.cells.iter().map(|c| c.len()).collect();
    let steps_per_epoch = data.train.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:25}] {pos}/{len} cells {per_sec} ETA {eta} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let start_epoch = st.epochs_done;
    let mut interrupted = false;
    for epoch in start_epoch..cfg.epochs {
        if st.stopped_early {
            break;
        }
        if let Some(n) = cfg.stop_after_epochs {
            if epoch - start_epoch >= n {
                interrupted = true;
                break;
            }
        }
        let t0 = Instant::now();
        dev.seed(mix(cfg.seed, epoch));
        let order: Vec<usize> = match &sampler {
            Some(s) => s.sample(data.train.len(), &mut st.rng),
            None => {
                let mut o = data.train.to_vec();
                if cfg.shuffle {
                    st.rng.shuffle(&mut o);
                }
                o
            }
        };
        let batches = epoch_batches(
            &order,
            &lengths,
            cfg.batch_size,
            cfg.max_batch_tokens,
            cfg.group_by_length,
            &mut st.rng,
        );
        let label = format!("epoch {}/{}", epoch + 1, cfg.epochs);
        let bar = if cfg.progress {
            let b = ProgressBar::new(order.len() as u64);
            b.set_style(style.clone());
            b.set_prefix(label.clone());
            b
        } else {
            ProgressBar::hidden()
        };
        scllm_eval::progress::follow(&bar, label, order.len() as u64);
        let lr0 = cfg.lr_at(epoch, st.step, total_steps);
        let (mut loss_num, mut loss_den, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize, 0usize);
        for b in &batches {
            scllm_models::interrupt::check()?;
            let lr = cfg.lr_at(epoch, st.step, total_steps);
            let refs: Vec<(usize, &TokenizedCell)> =
                b.iter().map(|&i| (i, &data.cells[i])).collect();
            let pb = pad_batch(&refs, data.pad_id, data.pad_value);
            let input = BatchInput::of(&pb);
            let out = model.classify(&input, dev)?;
            let [_, kk] = out.logits.dims();
            if kk != k {
                return Err(invalid(format!(
                    "the model's classification head has {kk} outputs but the data have {k} classes; build the head with n_cls = {k}"
                )));
            }
            let targets: Vec<u32> = b.iter().map(|&i| data.labels[i]).collect();
            let logits_host = to_vec(out.logits.clone().detach())?;
            let loss = ce_loss(out.logits, &targets, w, dev);
            let (n, wsum, pred) = host_ce(&logits_host, k, &targets, w);
            loss_num += n;
            loss_den += wsum;
            correct += pred.iter().zip(&targets).filter(|(a, b)| a == b).count();
            seen += b.len();
            let grads = loss.backward();
            let mut gp = GradientsParams::from_grads(grads, &model);
            if let Some(c) = cfg.grad_clip_norm {
                clip_global_norm(&model, &mut gp, c)?;
            }
            model = opt.step(lr, model, gp);
            st.step += 1;
            bar.inc(b.len() as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.3}",
                loss_num / loss_den.max(f64::MIN_POSITIVE),
                correct as f64 / seen as f64
            ));
        }
        let train_secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let valid = model.valid();
        let (val_loss, val_acc, val_f1) = evaluate(&valid, data, data.val, cfg, w, &inf_dev)?;
        let verdict = st.stopping.update(val_loss, epoch + 1);
        let best_changed = verdict.improved;
        if best_changed {
            best = Some(valid);
        }
        st.stopped_early = verdict.stop;
        st.epochs_done = epoch + 1;
        let log = EpochLog {
            epoch: epoch + 1,
            lr: lr0,
            train_loss: loss_num / loss_den.max(f64::MIN_POSITIVE),
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            val_macro_f1: val_f1,
            seconds: t0.elapsed().as_secs_f64(),
            cells_per_s: seen as f64 / train_secs.max(1e-9),
        };
        if cfg.progress {
            eprintln!(
                "epoch {}/{}: lr {:.3e} train loss {:.4} acc {:.3} | val loss {:.4} acc {:.3} macro-F1 {:.3}{} | {:.1} s, {:.1} cells/s",
                log.epoch,
                cfg.epochs,
                log.lr,
                log.train_loss,
                log.train_acc,
                log.val_loss,
                log.val_acc,
                log.val_macro_f1,
                if best_changed { " (best)" } else { "" },
                log.seconds,
                log.cells_per_s
            );
        }
        st.history.push(log.clone());
        if let Some(out) = &cfg.out_dir {
            save_checkpoint(out, &model, &opt, best.as_ref(), best_changed, &st)?;
            write_log(log_path.as_ref().unwrap(), &[log], true)?;
        }
    }
    let best = best.unwrap_or_else(|| model.valid());
    Ok(TrainOutcome {
        best,
        last: model,
        best_epoch: st.stopping.best_epoch,
        best_val_loss: st.stopping.best,
        history: st.history,
        stopped_early: st.stopped_early,
        interrupted,
        resumed_from,
    })
}
