//! Exact resume: after every epoch `OUT/checkpoint/` holds the model (`model.bpk`, burnpack, with
//! the parameter ids the optimizer state is keyed by), the optimizer state (`optimizer.bpk`), the
//! best model so far (`best.bpk`) and `state.json` (epoch, step, best loss, patience counter, RNG
//! state, the log so far), swapped into place whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use super::log::EpochLog;
use super::stopping::EarlyStopping;
use crate::error::{ck_err, Result};
use crate::sampler::SplitMix64;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TrainState {
    pub(crate) version: u32,
    pub(crate) epochs_done: usize,
    pub(crate) step: usize,
    pub(crate) stopping: EarlyStopping,
    pub(crate) stopped_early: bool,
    pub(crate) rng: SplitMix64,
    pub(crate) n_train: usize,
    pub(crate) n_val: usize,
    pub(crate) n_classes: usize,
    pub(crate) history: Vec<EpochLog>,
    /// [`crate::TrainConfig::run_flags`] of the run (absent in checkpoints of earlier versions).
    #[serde(default)]
    pub(crate) run_flags: Vec<(String, String)>,
}

/// Why a run given `now` cannot resume the run that saved `saved` (flags pair up by position:
/// the same choice, possibly made with another flag, e.g. `--val-by` for `--val-fraction`).
pub(crate) fn other_run_flags(
    saved: &[(String, String)],
    now: &[(String, String)],
) -> Option<String> {
    if saved.is_empty() {
        return None; // an earlier version's checkpoint: nothing to compare
    }
    saved
        .iter()
        .zip(now)
        .find(|(a, b)| a != b)
        .map(|((sf, sv), (nf, nv))| {
            format!(
                "this run's {nf} {nv} differs from the run being resumed ({sf} {sv}): resume with {sf} {sv}, or start afresh without --resume"
            )
        })
}

pub(crate) const STATE_VERSION: u32 = 1;

/// Save a module's parameters (with their ids) as burnpack at exactly `path`.
pub fn save_module<M: Module>(m: &M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path)
        .auto_extension(false)
        .overwrite(true);
    m.save_into(&mut store)
        .map_err(|e| ck_err(path, format!("{e:?}")))
}

/// Load parameters saved by [`save_module`] into `m` (ids restored; frozen flags kept); every
/// parameter of `m` must be in the file.
pub fn load_module<M: Module>(m: &mut M, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let r = m
        .load_from(&mut store)
        .map_err(|e| ck_err(path, format!("cannot read: {e:?}")))?;
    if !r.errors.is_empty() || !r.missing.is_empty() {
        return Err(ck_err(
            path,
            format!(
                "does not fit the model ({} missing, {} errors, e.g. {}): was it written for another model or adapter setup?",
                r.missing.len(),
                r.errors.len(),
                r.missing
                    .first()
                    .map(|m| m.0.clone())
                    .or_else(|| r.errors.first().map(|e| format!("{e:?}")))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// `OUT/checkpoint` (or what an interrupted save left: `checkpoint.old`).
pub fn checkpoint_dir(out: &Path) -> Option<PathBuf> {
    let ck = out.join("checkpoint");
    if ck.join("state.json").is_file() {
        return Some(ck);
    }
    let old = out.join("checkpoint.old");
    old.join("state.json").is_file().then_some(old)
}

/// The checkpoint a run asked to `--resume` continues from ([`checkpoint_dir`]); a folder with
/// none is an error naming the fix.
pub(crate) fn checkpoint_to_resume(out: &Path) -> Result<PathBuf> {
    checkpoint_dir(out).ok_or_else(|| {
        ck_err(
            &out.join("checkpoint"),
            "no checkpoint to resume from (expected checkpoint/state.json): run without --resume \
             to start afresh",
        )
    })
}

/// The `state.json` of the checkpoint `ck` ([`write_checkpoint`] wrote it).
pub(crate) fn read_state<S: serde::de::DeserializeOwned>(ck: &Path) -> Result<S> {
    let sp = ck.join("state.json");
    let text = std::fs::read_to_string(&sp).map_err(|e| ck_err(&sp, e))?;
    serde_json::from_str(&text).map_err(|e| ck_err(&sp, e))
}

/// The model (into `model`) and the optimizer state of the checkpoint `ck`, as
/// [`write_checkpoint`] wrote them.
pub(crate) fn load_model_and_optimizer<M: Module>(
    ck: &Path,
    model: &mut M,
    opt: ModuleOptimizer,
) -> Result<ModuleOptimizer> {
    load_module(model, &ck.join("model.bpk"))?;
    let op = ck.join("optimizer.bpk");
    opt.load(&op).map_err(|e| ck_err(&op, format!("{e:?}")))
}

pub(crate) fn save_checkpoint<M: Module>(
    out: &Path,
    model: &M,
    opt: &ModuleOptimizer,
    best: Option<&M>,
    best_changed: bool,
    st: &TrainState,
) -> Result<()> {
    let state = serde_json::to_string_pretty(st).unwrap();
    write_checkpoint(out, model, opt, &state, |tmp, ck| {
        let prev_best = ck.join("best.bpk");
        if let Some(b) = best {
            if best_changed || !prev_best.is_file() {
                save_module(b, &tmp.join("best.bpk"))?;
            } else {
                std::fs::copy(&prev_best, tmp.join("best.bpk"))
                    .map_err(|e| ck_err(&prev_best, e))?;
            }
        }
        Ok(())
    })
}

/// Write `OUT/checkpoint/`: the model and optimizer (burnpack), `state.json`, and whatever `extra`
/// adds (called with the new folder and the current one). Built in `checkpoint.tmp/` and swapped
/// in, the previous checkpoint kept as `checkpoint.old/` until the new one is in place, so an
/// interruption at any point leaves a whole checkpoint ([`checkpoint_dir`] finds it).
pub(crate) fn write_checkpoint<M: Module>(
    out: &Path,
    model: &M,
    opt: &ModuleOptimizer,
    state_json: &str,
    extra: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<()> {
    let ck = out.join("checkpoint");
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| ck_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| ck_err(&tmp, e))?;
    save_module(model, &tmp.join("model.bpk"))?;
    let op = tmp.join("optimizer.bpk");
    opt.save(&op).map_err(|e| ck_err(&op, format!("{e:?}")))?;
    extra(&tmp, &ck)?;
    let sp = tmp.join("state.json");
    let mut f = std::fs::File::create(&sp).map_err(|e| ck_err(&sp, e))?;
    f.write_all(state_json.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| ck_err(&sp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| ck_err(&old, e))?;
    }
    if ck.exists() {
        std::fs::rename(&ck, &old).map_err(|e| ck_err(&ck, e))?;
    }
    std::fs::rename(&tmp, &ck).map_err(|e| ck_err(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| ck_err(&old, e))?;
    }
    Ok(())
}
