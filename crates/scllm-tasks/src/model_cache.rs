//! The model last loaded by `embed` or `annotate`, kept for the next call in the same process
//! when the job asks (the Python package: a notebook embedding AnnData after AnnData, a Dask
//! worker taking shard after shard), so that a process reads a checkpoint once. One entry: a
//! different model replaces it (the old one is dropped before the new one is read). Entries are
//! keyed by the folders and files read — their sizes and modification times, so a checkpoint
//! rewritten in place is read again — and by the options the load depends on.
//!
//! Why not a map: a process rarely alternates between models, and each entry holds a whole
//! model's weights.

use std::any::Any;
use std::path::Path;
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

type Slot = Option<(String, Box<dyn Any + Send>)>;

static SLOT: Mutex<Slot> = Mutex::new(None);

/// What identifies a load: `paths` (a folder stands for its files, one level deep) with their
/// sizes and modification times, and `options`.
pub(crate) fn key(paths: &[&Path], options: &str) -> String {
    let mut k = String::from(options);
    for p in paths {
        let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let mut files = vec![p.clone()];
        if let Ok(rd) = std::fs::read_dir(&p) {
            files.extend(rd.flatten().map(|e| e.path()));
            files.sort();
        }
        for f in files {
            let stamp = std::fs::metadata(&f).ok().map(|m| {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                (m.len(), t.map(|t| t.as_nanos()))
            });
            k.push_str(&format!("|{}:{stamp:?}", f.display()));
        }
    }
    k
}

/// The value `load` makes, from the slot when `key` is the slot's (`true`: reused) or freshly
/// loaded (`false`) and, when `keep`, left in the slot for the next call. Loads in one process
/// wait for each other, so concurrent calls for one model read it once.
pub(crate) fn get_or_load<T: Clone + Send + 'static>(
    keep: bool,
    key: impl FnOnce() -> String,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, bool)> {
    if !keep {
        return Ok((load()?, false));
    }
    let key = key();
    // a load that panicked leaves nothing half-made in the slot: it is emptied below first
    let mut slot = SLOT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, v)) = slot.as_ref() {
        if *k == key {
            if let Some(v) = v.downcast_ref::<T>() {
                return Ok((v.clone(), true));
            }
        }
    }
    *slot = None;
    let v = load()?;
    *slot = Some((key, Box::new(v.clone())));
    Ok((v, false))
}

/// Drop the kept model (its memory is freed once no run uses it).
pub fn forget() {
    *SLOT.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_value_is_reused_until_its_files_or_options_change() {
        forget();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.bin");
        std::fs::write(&f, b"one").unwrap();
        let k = |o: &str| key(&[dir.path()], o);
        let (v, reused) = get_or_load(true, || k("a"), || Ok(1u32)).unwrap();
        assert_eq!((v, reused), (1, false));
        let (v, reused) = get_or_load(true, || k("a"), || Ok(2u32)).unwrap();
        assert_eq!((v, reused), (1, true), "same files and options: reused");
        let (v, reused) = get_or_load(true, || k("b"), || Ok(3u32)).unwrap();
        assert_eq!((v, reused), (3, false), "other options: loaded");
        std::fs::write(&f, b"longer").unwrap();
        let (v, reused) = get_or_load(true, || k("b"), || Ok(4u32)).unwrap();
        assert_eq!((v, reused), (4, false), "a rewritten file: loaded again");
        let (v, reused) = get_or_load(false, || k("b"), || Ok(5u32)).unwrap();
        assert_eq!((v, reused), (5, false), "not asked to keep: loaded");
        forget();
        let (_, reused) = get_or_load(true, || k("b"), || Ok(6u32)).unwrap();
        assert!(!reused, "forgotten");
        forget();
    }
}
