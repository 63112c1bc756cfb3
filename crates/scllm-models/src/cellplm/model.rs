//! CellPLM's embedding path (`OmicsFormer` with `head_type='embedder'`, eval;
//! docs/models/cellplm.md §3.1-3.4, §4.1): the embedder's sparse product with the gene table,
//! Linear + ReLU + GroupNorm, pre-LN Flowformer layers over the cells of one set, LayerNorm, and
//! the GMVAE's mean with the cluster taken as the argmax of its logits (§7).

use burn::tensor::activation::{gelu, relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{ModelError, Result};

/// `nn.Linear`: weight held as `[in, out]`.
#[derive(Clone, Debug)]
pub struct Lin {
    pub w: Tensor<2>,
    pub b: Tensor<1>,
}

impl Lin {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let out = self.b.dims()[0];
        x.matmul(self.w.clone()) + self.b.clone().reshape([1, out])
    }
}

/// An affine norm's `weight` and `bias`.
#[derive(Clone, Debug)]
pub struct Affine {
    pub weight: Tensor<1>,
    pub bias: Tensor<1>,
}

/// PyTorch's LayerNorm / GroupNorm epsilon.
const NORM_EPS: f64 = 1e-5;
/// Flow-Attention's epsilon (`CellPLM/layer/flowformer.py`).
const FLOW_EPS: f64 = 1e-6;

fn normalize_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let mean = x.clone().mean_dim(D - 1);
    let xc = x - mean;
    let var = xc.clone().powi_scalar(2).mean_dim(D - 1);
    xc / var.add_scalar(NORM_EPS).sqrt()
}

impl Affine {
    fn apply(&self, x: Tensor<2>) -> Tensor<2> {
        let d = self.weight.dims()[0];
        x * self.weight.clone().reshape([1, d]) + self.bias.clone().reshape([1, d])
    }
    /// `nn.LayerNorm(d)` over `[N, d]`.
    pub fn layer_norm(&self, x: Tensor<2>) -> Tensor<2> {
        self.apply(normalize_last(x))
    }
    /// `nn.GroupNorm(groups, d)` over `[N, d]`: each cell's channels in `groups` consecutive
    /// blocks, each normalised on its own.
    pub fn group_norm(&self, x: Tensor<2>, groups: usize) -> Tensor<2> {
        let [n, d] = x.dims();
        let g = normalize_last(x.reshape([n, groups, d / groups])).reshape([n, d]);
        self.apply(g)
    }
}

/// `encoder.layers.{i}`: a pre-LN `FlowformerLayer`.
#[derive(Clone, Debug)]
pub struct FlowLayer {
    pub query: Lin,
    pub key: Lin,
    pub value: Lin,
    pub out: Lin,
    /// `_ff_block.0` and `_ff_block.3`.
    pub ff1: Lin,
    pub ff2: Lin,
    pub norm1: Affine,
    pub norm2: Affine,
}

impl FlowLayer {
    /// `Flow_Attention.forward` over one set of `N` cells, `heads` heads.
    fn flow_attention(&self, x: Tensor<2>, heads: usize) -> Tensor<2> {
        let [n, d] = x.dims();
        let dh = d / heads;
        let split = |t: Tensor<2>| t.reshape([n, heads, dh]).swap_dims(0, 1); // [H, N, dh]
        let q = sigmoid(split(self.query.forward(x.clone())));
        let k = sigmoid(split(self.key.forward(x.clone())));
        let v = split(self.value.forward(x));
        let e = FLOW_EPS;
        // incoming and outgoing flow, per query and per key: [H, N, 1]
        let sink_in = (q.clone().add_scalar(e) * k.clone().sum_dim(1).add_scalar(e))
            .sum_dim(2)
            .recip();
        let source_out = (k.clone().add_scalar(e) * q.clone().sum_dim(1).add_scalar(e))
            .sum_dim(2)
            .recip();
        // conservation refine
        let conserved_sink = (q.clone().add_scalar(e)
            * (k.clone() * source_out).sum_dim(1).add_scalar(e))
        .sum_dim(2);
        let conserved_source = (k.clone().add_scalar(e)
            * (q.clone() * sink_in.clone()).sum_dim(1).add_scalar(e))
        .sum_dim(2)
        .clamp(-1.0, 1.0);
        // competition and allocation (queries and keys are the same cells: L/S = 1)
        let allocation = sigmoid(conserved_sink);
        let competition = softmax(conserved_source, 1).mul_scalar(n as f64);
        let kv = k.swap_dims(1, 2).matmul(v * competition); // [H, dh, dh]
        let y = (q * sink_in).matmul(kv) * allocation; // [H, N, dh]
        self.out.forward(y.swap_dims(0, 1).reshape([n, d]))
    }

    pub fn forward(&self, x: Tensor<2>, heads: usize) -> Tensor<2> {
        let x = x.clone() + self.flow_attention(self.norm1.layer_norm(x), heads);
        let f = self
            .ff2
            .forward(gelu(self.ff1.forward(self.norm2.layer_norm(x.clone()))));
        x + f
    }
}

/// CellPLM's embedding path, at the checkpoint's shape.
#[derive(Clone, Debug)]
pub struct CellPlm {
    /// `embedder.feat_enc.emb`, `[n_genes, d]`, kept on the host: the sparse product reads it
    /// row by row.
    pub gene_table: Vec<f32>,
    pub d_model: usize,
    /// `embedder.extra_linear.0` and `.3` (GroupNorm of [`Self::groups`] groups).
    pub extra_linear: Lin,
    pub extra_norm: Affine,
    pub groups: usize,
    pub layers: Vec<FlowLayer>,
    pub heads: usize,
    /// `pre_latent_norm.norm`
    pub pre_latent_norm: Affine,
    /// `latent.layers.1.inference`: `inference_qyx.0.logits`, `inference_qzyx.0`,
    /// `inference_qzyx.2.mu`.
    pub cluster_logits: Lin,
    pub qzyx_hidden: Lin,
    pub qzyx_mu: Lin,
}

/// Every intermediate of one set's forward pass, `[N, ·]` each.
pub struct SetOutput {
    /// The embedder's output (after its GroupNorm).
    pub embedder: Tensor<2>,
    /// Each encoder layer's output.
    pub hidden: Vec<Tensor<2>>,
    /// The GMVAE's cluster logits.
    pub logits: Tensor<2>,
    /// The latent mean: the cell embedding.
    pub latent: Tensor<2>,
}

/// One set of cells as the embedder reads it: per cell, gene-table rows and `log1p` counts
/// (`scllm_tokenize::cellplm::CellPlmTokenizer`).
pub struct SetInput<'a> {
    pub genes: Vec<&'a [u32]>,
    pub values: Vec<&'a [f32]>,
}

impl CellPlm {
    pub fn n_genes(&self) -> usize {
        self.gene_table.len() / self.d_model
    }
    pub fn latent_dim(&self) -> usize {
        self.qzyx_mu.b.dims()[0]
    }
    pub fn n_clusters(&self) -> usize {
        self.cluster_logits.b.dims()[0]
    }

    /// `OmicsEmbedder`: `log1p(X) @ emb[gene_idx]`, the sum of each cell's genes' table rows
    /// weighted by log-expression (a cell with no matched gene gives zeros). Computed as a dense
    /// product over the genes the set's cells express, in chunks of cells (the reference's
    /// sparse product, as a matrix product the kernels run fast; a cell's row depends on it
    /// alone).
    fn gene_sum(&self, set: &SetInput, dev: &Device) -> Result<Tensor<2>> {
        const CHUNK: usize = 512;
        let d = self.d_model;
        let rows = self.n_genes();
        let mut local = vec![usize::MAX; rows];
        let mut used: Vec<usize> = Vec::new();
        for genes in &set.genes {
            for &g in genes.iter() {
                let g = g as usize;
                if g >= rows {
                    return Err(ModelError::Invalid(format!(
                        "gene-table row {g} out of range ({rows} rows)"
                    )));
                }
                if local[g] == usize::MAX {
                    local[g] = used.len();
                    used.push(g);
                }
            }
        }
        let n = set.genes.len();
        let u = used.len();
        if u == 0 {
            return Ok(Tensor::zeros([n, d], dev));
        }
        let mut table = Vec::with_capacity(u * d);
        for &g in &used {
            table.extend_from_slice(&self.gene_table[g * d..(g + 1) * d]);
        }
        let table = Tensor::<2>::from_data(TensorData::new(table, [u, d]), dev);
        let mut parts = Vec::with_capacity(n.div_ceil(CHUNK));
        for start in (0..n).step_by(CHUNK) {
            let c = CHUNK.min(n - start);
            let mut x = vec![0f32; c * u];
            for k in 0..c {
                let row = &mut x[k * u..(k + 1) * u];
                for (&g, &v) in set.genes[start + k]
                    .iter()
                    .zip(set.values[start + k].iter())
                {
                    // a gene listed twice in the file counts twice
                    row[local[g as usize]] += v;
                }
            }
            let x = Tensor::<2>::from_data(TensorData::new(x, [c, u]), dev);
            parts.push(x.matmul(table.clone()));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// The forward pass of one attention set (the cells attend to each other, so a cell's
    /// output depends on the set it is in).
    pub fn forward_set(&self, set: &SetInput, dev: &Device) -> Result<SetOutput> {
        let n = set.genes.len();
        if n == 0 {
            return Err(ModelError::Invalid(
                "an attention set needs at least one cell".into(),
            ));
        }
        let h = self.gene_sum(set, dev)?;
        let embedder = self
            .extra_norm
            .group_norm(relu(self.extra_linear.forward(h)), self.groups);
        let mut hidden = Vec::with_capacity(self.layers.len());
        let mut h = embedder.clone();
        for l in &self.layers {
            h = l.forward(h, self.heads);
            hidden.push(h.clone());
        }
        let h = self.pre_latent_norm.layer_norm(h);
        let logits = self.cluster_logits.forward(h.clone());
        // the cluster: argmax of the logits (the reference adds Gumbel noise even in eval)
        let k = self.n_clusters();
        let host: Vec<f32> = logits
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
        let mut onehot = vec![0f32; n * k];
        for (c, row) in host.chunks_exact(k).enumerate() {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            onehot[c * k + best] = 1.0;
        }
        let y = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), dev);
        let t = relu(self.qzyx_hidden.forward(Tensor::cat(vec![h, y], 1)));
        let latent = self.qzyx_mu.forward(t);
        Ok(SetOutput {
            embedder,
            hidden,
            logits,
            latent,
        })
    }
}
