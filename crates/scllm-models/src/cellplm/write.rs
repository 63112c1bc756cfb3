//! Writing a CellPLM model in the released layout (docs/models/cellplm.md §1.1): `{prefix}.config.json`
//! (`OmicsFormer`'s keyword arguments, the gene list included) and `{prefix}.best.ckpt`
//! (`torch.save({'model_state_dict': ...})`), so scllm's own models load in the reference's
//! `load_pretrain` and in scllm alike.

use std::path::Path;

use serde_json::{json, Value};

use super::model::CellPlm;
use super::norm::GROUPS;
use crate::error::{ModelError, Result};
use crate::weights::{save::write_atomic, state_dict, write_state_dict_under, StateTensor};

/// The config of `m` as `OmicsFormer(**config)` reads it: the released architecture's choices
/// (flowformer, GMVAE, groupnorm, the positional encoding off) at `m`'s sizes, with `extra`'s
/// keys added or replacing these.
pub fn config_of(m: &CellPlm, gene_list: &[String], extra: &Value) -> Result<Value> {
    if gene_list.len() != m.n_genes() {
        return Err(ModelError::Invalid(format!(
            "the gene list has {} genes, the model's table {}",
            gene_list.len(),
            m.n_genes()
        )));
    }
    let ffn_ok = m
        .layers
        .iter()
        .all(|l| l.ff1.weight.lazy_shape()[1] == 2 * m.d_model());
    if !ffn_ok {
        return Err(ModelError::Invalid(
            "CellPLM's feed-forward width is 2 × enc_hid; this model's differs".into(),
        ));
    }
    let mut c = json!({
        "enc_mod": "flowformer", "enc_hid": m.d_model(), "enc_layers": m.layers.len(),
        "enc_head": m.heads(), "post_latent_dim": m.latent_dim(),
        "latent_mod": "gmvae", "num_clusters": m.n_clusters(),
        "w_li": 5.0, "w_en": 5.0, "lamda": 5.0,
        "dec_mod": "nbmlp", "dec_hid": m.d_model(), "dec_layers": 2, "out_dim": gene_list.len(),
        "model_dropout": m.model_dropout, "activation": "gelu", "norm": "groupnorm",
        "mask_node_rate": 0.75, "mask_feature_rate": 0.25, "mask_beta": true,
        "drop_node_rate": 0.3, "max_batch_size": 4000, "pe_type": "sin", "cat_pe": false,
        "dsbn": false, "input_covariate": false, "dae": true,
        "gene_list": gene_list,
    });
    debug_assert_eq!(GROUPS, 4, "the reference's groupnorm has 4 groups");
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    Ok(c)
}

/// Write `m` into `dir` as `{prefix}.config.json` + `{prefix}.best.ckpt` (each atomically),
/// `config` being [`config_of`]'s.
pub fn write_folder(dir: &Path, prefix: &str, config: &Value, m: &CellPlm) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelError::file(dir, format!("cannot create: {e}")))?;
    let text = serde_json::to_vec_pretty(config)
        .map_err(|e| ModelError::Backend(format!("config: {e}")))?;
    write_atomic(&dir.join(format!("{prefix}.config.json")), &text)?;
    let tensors: Vec<StateTensor> = state_dict(m)
        .into_iter()
        .map(|(name, shape, data)| StateTensor { name, shape, data })
        .collect();
    write_state_dict_under(
        dir.join(format!("{prefix}.best.ckpt")),
        "model_state_dict",
        &tensors,
    )
}
