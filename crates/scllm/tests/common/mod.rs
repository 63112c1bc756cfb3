//! Helpers shared by the CLI tests: fixture paths and running the binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use scllm_models::cellplm::write::{config_of, write_folder};
use scllm_models::cellplm::{CellPlm, CellPlmShape};
use scllm_models::Device;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Run `scllm ARGS`: exit code, stdout, stderr.
pub fn scllm(args: &[&str]) -> (i32, String, String) {
    scllm_env(args, &[])
}

/// `scllm` with extra environment variables.
pub fn scllm_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scllm"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of metric `name` in a report's scIB `metrics` array (`[{name, kind, value}]`).
pub fn scib_metric(metrics: &serde_json::Value, name: &str) -> f64 {
    metrics
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name}"))["value"]
        .as_f64()
        .unwrap()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A random CellPLM over the Ensembl ids of `genes` (symbols, through GENCODE), in `dir`.
pub fn random_cellplm(dir: &Path, genes: &[String]) {
    let by_name: BTreeMap<String, String> = scllm_tokenize::vocab::gencode_id_to_name()
        .into_iter()
        .map(|(id, name)| (name, id))
        .collect();
    let mut gene_list: Vec<String> = genes
        .iter()
        .filter_map(|g| by_name.get(g).cloned())
        .collect();
    gene_list.sort();
    gene_list.dedup();
    assert!(gene_list.len() > 1000, "{} genes mapped", gene_list.len());
    let dev = Device::flex();
    dev.seed(0);
    let m = CellPlm::new(
        &CellPlmShape {
            n_genes: gene_list.len(),
            d_model: 64,
            n_layers: 2,
            heads: 4,
            ffn: 128,
            gmvae: Some((4, 64, 32)),
            latent: 32,
            model_dropout: 0.1,
            pretrain: None,
        },
        &dev,
    );
    let cfg = config_of(&m, &gene_list, &serde_json::json!({})).unwrap();
    write_folder(dir, "small", &cfg, &m).unwrap();
}
