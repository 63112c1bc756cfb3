//! Which model folder a verb uses when none is named, and opening it.

use std::path::{Path, PathBuf};

use crate::bad;

/// The model folder to use: `given`, else `$SCLLM_MODEL`, else the shipped small model
/// (`models/scllm-small` in the current folder, or next to the repository the running binary was
/// built in).
pub fn resolve(given: Option<&Path>) -> anyhow::Result<PathBuf> {
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
    let mut tried = vec![PathBuf::from("models/scllm-small")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/scllm → the repository root
        if let Some(root) = exe
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
        {
            tried.push(root.join("models/scllm-small"));
        }
    }
    tried
        .iter()
        .find(|p| p.join("args.json").is_file())
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
