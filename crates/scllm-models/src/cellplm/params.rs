//! CellPLM's state-dict keys (`OmicsFormer.state_dict()`, docs/models/cellplm.md §3, §4.2): the
//! one place that pairs each parameter of [`CellPlm`] with its key and its part of the model,
//! which decides what trains. Under `full` everything trains, as the annotation pipeline's two
//! AdamW groups (§5); the `ae` latent (`lat_2lat`) is new at fine-tuning, so it trains with the
//! head under every strategy. `freeze_layers` K keeps layers 0..K frozen.

use super::decoder::NbDecoder;
use super::model::{CellPlm, FlowLayer};
use super::norm::GroupNorm;
use crate::params::{self, Layout, ParamVisitor, Part};
use crate::peft::adapter::visit_opt;
use crate::peft::{frozen_layers, LoraKeys};

/// The key prefix of the GMVAE's inference network.
pub const GMVAE: &str = "latent.layers.1.inference";

fn group_norm(v: &mut impl ParamVisitor, key: &str, part: Part, g: &mut GroupNorm) {
    v.param(&format!("{key}.weight"), part, Layout::AsIs, &mut g.weight);
    v.param(&format!("{key}.bias"), part, Layout::AsIs, &mut g.bias);
}

fn layer(v: &mut impl ParamVisitor, i: usize, part: Part, l: &mut FlowLayer) {
    let p = format!("encoder.layers.{i}");
    let a = &mut l.self_attn;
    // Hugging Face `peft`'s key layout for LoRA on these projections
    a.query.visit(
        &format!("{p}.self_attn.query_projection"),
        part,
        LoraKeys::Peft,
        v,
    );
    params::linear(
        v,
        &format!("{p}.self_attn.key_projection"),
        part,
        &mut a.key,
    );
    a.value.visit(
        &format!("{p}.self_attn.value_projection"),
        part,
        LoraKeys::Peft,
        v,
    );
    params::linear(
        v,
        &format!("{p}.self_attn.out_projection"),
        part,
        &mut a.out,
    );
    params::linear(v, &format!("{p}._ff_block.0"), part, &mut l.ff1);
    params::linear(v, &format!("{p}._ff_block.3"), part, &mut l.ff2);
    params::layer_norm(v, &format!("{p}.norm1"), part, &mut l.norm1);
    params::layer_norm(v, &format!("{p}.norm2"), part, &mut l.norm2);
    l.adapters.visit(&p, v);
}

fn decoder(v: &mut impl ParamVisitor, d: &mut NbDecoder) {
    let part = Part::Backbone;
    for (i, b) in d.blocks.iter_mut().enumerate() {
        let p = format!("decoder.layers.{i}");
        params::linear(v, &format!("{p}.0"), part, &mut b.linear);
        v.param(
            &format!("{p}.1.weight"),
            part,
            Layout::AsIs,
            &mut b.prelu.weight,
        );
        group_norm(v, &format!("{p}.3"), part, &mut b.norm);
        for (name, c) in b.covariate_names.iter().zip(b.covariates.iter_mut()) {
            let k = format!("decoder.covariate_layers.{i}.{name}");
            v.param(&format!("{k}.0.weight"), part, Layout::AsIs, &mut c.table);
            v.param(
                &format!("{k}.1.weight"),
                part,
                Layout::AsIs,
                &mut c.prelu.weight,
            );
            group_norm(v, &format!("{k}.2"), part, &mut c.norm);
        }
    }
    params::linear(v, "decoder.out_layer.dec_1", part, &mut d.dec_1);
    params::linear(v, "decoder.out_layer.dec_mean.0", part, &mut d.dec_mean);
    v.param(
        "decoder.out_layer.dec_disp",
        part,
        Layout::AsIs,
        &mut d.dec_disp,
    );
}

impl CellPlm {
    /// Pair every parameter with its state-dict key (PyTorch layout).
    pub fn visit_keys(&mut self, v: &mut impl ParamVisitor) {
        use Part::*;
        let frozen = frozen_layers(self.peft.as_ref());
        let e = &mut self.embedder;
        v.param(
            "embedder.feat_enc.emb",
            Backbone,
            Layout::AsIs,
            &mut e.gene_table,
        );
        params::linear(v, "embedder.extra_linear.0", Backbone, &mut e.extra_linear);
        group_norm(v, "embedder.extra_linear.3", Backbone, &mut e.extra_norm);
        visit_opt(&mut self.token_adapter, "embedder.Space_Adapter", v);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let part = if i < frozen { Frozen } else { Backbone };
            layer(v, i, part, l);
        }
        params::layer_norm(
            v,
            "pre_latent_norm.norm",
            Backbone,
            &mut self.pre_latent_norm,
        );
        if let Some(g) = &mut self.gmvae {
            params::linear(
                v,
                &format!("{GMVAE}.inference_qyx.0.logits"),
                Backbone,
                &mut g.cluster_logits,
            );
            params::linear(
                v,
                &format!("{GMVAE}.inference_qzyx.0"),
                Backbone,
                &mut g.qzyx_hidden,
            );
            params::linear(
                v,
                &format!("{GMVAE}.inference_qzyx.2.mu"),
                Backbone,
                &mut g.qzyx_mu,
            );
        }
        if let Some(g) = &mut self.gmvae_prior {
            params::linear(
                v,
                &format!("{GMVAE}.inference_qzyx.2.var"),
                Backbone,
                &mut g.qzyx_var,
            );
            params::linear(v, &format!("{GMVAE}.y_mu"), Backbone, &mut g.y_mu);
            params::linear(v, &format!("{GMVAE}.y_var"), Backbone, &mut g.y_var);
        }
        if let Some(d) = &mut self.decoder {
            decoder(v, d);
        }
        if let Some(l) = &mut self.lat_2lat {
            params::linear(v, "latent.layers.1.lat_2lat.0", Head, l);
        }
        if let Some(h) = &mut self.head {
            params::linear(v, "head.mlp.1", Head, &mut h.linear);
        }
    }
}
