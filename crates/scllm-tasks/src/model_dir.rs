//! Which model folder a verb uses when none is named, and opening it.

use std::path::{Path, PathBuf};

use crate::bad;

/// The shipped models, by the verb that defaults to them: `embed` takes the CellPLM one (its
/// zero-shot embedding is the better one, bench/RESULTS.md), the other verbs the scGPT one.
pub const SHIPPED_SCGPT: &str = "models/scllm-small";
pub const SHIPPED_CELLPLM: &str = "models/cellplm-small";

/// The model folder to use: `given`, else `$SCLLM_MODEL`, else the shipped small scGPT
/// (`models/scllm-small` in the current folder, or next to the repository the running binary was
/// built in).
pub fn resolve(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    resolve_shipped(given, &[SHIPPED_SCGPT])
}

/// [`resolve`] for `embed`: the shipped CellPLM first, then the shipped scGPT.
pub fn resolve_for_embedding(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    resolve_shipped(given, &[SHIPPED_CELLPLM, SHIPPED_SCGPT])
}

/// `given`, else `$SCLLM_MODEL`, else the first of the `shipped` folders that holds a model.
fn resolve_shipped(given: Option<&Path>, shipped: &[&str]) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("SCLLM_MODEL") {
        let p = PathBuf::from(p);
        if let Err(e) = scllm_models::folder::detect(&p) {
            return Err(bad(format!(
                "SCLLM_MODEL={}: {e}; point it at a model folder or unset it",
                p.display()
            )));
        }
        return Ok(p);
    }
    // target/{debug,release}/scllm → the repository root
    let root = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
    });
    let mut tried = Vec::new();
    for s in shipped {
        tried.push(PathBuf::from(s));
        if let Some(r) = &root {
            tried.push(r.join(s));
        }
    }
    tried
        .iter()
        .find(|p| scllm_models::folder::detect(p).is_ok())
        .cloned()
        .ok_or_else(|| {
            bad(format!(
                "no --model given and the shipped model is not at {}: pass --model DIR (a model folder) or set SCLLM_MODEL",
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })
}

/// Open the model folder `dir` (its family detected) with a weights file other than its own
/// and, for Geneformer, a folder of dictionaries.
pub fn open(
    dir: &Path,
    weights: Option<&Path>,
    dictionaries: Option<&Path>,
) -> anyhow::Result<scllm_models::AnyFolder> {
    Ok(scllm_models::open_folder(
        dir,
        &scllm_models::FolderOptions {
            weights: weights.map(Path::to_path_buf),
            dictionaries: dictionaries.map(Path::to_path_buf),
        },
    )?)
}
