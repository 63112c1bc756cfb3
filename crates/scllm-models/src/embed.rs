//! Cell embeddings as scGPT's `embed_data` computes them: genes matched to the vocabulary, the
//! expressed genes of each cell binned per cell, `<cls>` first with value `pad_value`, sampled
//! down to `max_len`, the encoder's `<cls>` output L2-normalised.
//!
//! Unlike the reference, a cell's embedding never depends on its batch neighbours: tokenisation
//! randomness is seeded per cell from its content, and padding is masked exactly (the reference's
//! issue #281 is not copied). Batches hold cells of equal length (`EmbedOptions::max_padding`),
//! so nothing is padded.

use std::time::Instant;

use rayon::prelude::*;
use scllm_io::Compressed;
use scllm_tokenize::{
    length_grouped_batches, pad_batch, BatchLimits, TokenizedCell, Tokenizer, TokenizerConfig,
};

use crate::error::{ModelError, Result};
use crate::scgpt::BatchInput;
use crate::ScGptModel;

/// `EmbedOptions::max_padding` unless set.
pub const DEFAULT_MAX_PADDING: f64 = 0.0;

#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Longest sequence, `<cls>` included (`embed_data`'s `max_length`, 1200).
    pub max_len: usize,
    /// Most cells in one forward pass.
    pub batch_size: usize,
    /// Most tokens (cells × padded length) in one forward pass; bounds memory on long cells.
    pub max_batch_tokens: usize,
    /// Most padding as a share of a batch's tokens: a cell that would pad its batch more starts
    /// the next one. Padding is pure waste here (a cell's embedding is the same in any batch),
    /// and on CPU small batches cost nothing: the default 0 puts only cells of equal length
    /// together (bench/RESULTS.md, "padding-free batches and packed attention").
    pub max_padding: f64,
    pub seed: u64,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            max_len: 1200,
            batch_size: 64,
            max_batch_tokens: 64 * 1200,
            max_padding: DEFAULT_MAX_PADDING,
            seed: 0,
        }
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EmbedStats {
    pub cells: usize,
    /// Real tokens (`<cls>` included).
    pub tokens: usize,
    /// Tokens computed including padding.
    pub padded_tokens: usize,
    pub batches: usize,
    /// Seconds in the forward pass (tokenisation and I/O excluded).
    pub forward_seconds: f64,
    pub tokenize_seconds: f64,
    /// Floating-point operations of the forward passes (multiply-add = 2).
    pub flops: f64,
}

impl EmbedStats {
    pub fn gflops_per_second(&self) -> f64 {
        if self.forward_seconds > 0.0 {
            self.flops / self.forward_seconds / 1e9
        } else {
            0.0
        }
    }
}

/// Embeds CSR row blocks with a loaded model; embeddings come back in input order.
pub struct Embedder<'a> {
    pub model: &'a ScGptModel,
    pub tokenizer: Tokenizer,
    pub opts: EmbedOptions,
    pub stats: EmbedStats,
}

impl<'a> Embedder<'a> {
    /// `gene_ids[j]`: the vocabulary id of column `j` (from `scllm_tokenize::match_genes`).
    pub fn new(
        model: &'a ScGptModel,
        genes: &scllm_tokenize::GeneMatch,
        opts: EmbedOptions,
    ) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(ModelError::Invalid(
                "--batch-size must be at least 1".into(),
            ));
        }
        let cfg = &model.config;
        let mut tc = TokenizerConfig::embedding(opts.max_len, cfg.n_bins, opts.seed);
        tc.cls_value = cfg.pad_value as f32;
        tc.pad_value = cfg.pad_value as f32;
        let tokenizer = Tokenizer::new(tc, genes, &model.vocab, "<cls>", &cfg.pad_token)?;
        Ok(Embedder {
            model,
            tokenizer,
            opts,
            stats: EmbedStats::default(),
        })
    }

    pub fn dim(&self) -> usize {
        self.model.config.embsize
    }

    /// Tokenise a block's rows (in parallel; each cell on its own).
    pub fn tokenize(&mut self, block: &Compressed) -> Result<Vec<TokenizedCell>> {
        let t0 = Instant::now();
        let vals = block.data.to_f32();
        let cells = (0..block.nrows)
            .into_par_iter()
            .map(|i| {
                let r = block.range(i);
                self.tokenizer
                    .tokenize_row(&block.indices[r.clone()], &vals[r])
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.stats.tokenize_seconds += t0.elapsed().as_secs_f64();
        Ok(cells)
    }

    /// Embed tokenised cells; `out` receives `cells.len() × d` floats in the cells' order.
    /// `progress(n)` is called after each batch with the number of cells it held.
    pub fn embed_tokenized(
        &mut self,
        cells: &[TokenizedCell],
        out: &mut [f32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let d = self.dim();
        assert_eq!(out.len(), cells.len() * d);
        let lengths: Vec<usize> = cells.iter().map(|c| c.len()).collect();
        let pad_id = self.tokenizer.pad_id;
        let pad_value = self.tokenizer.cfg.pad_value;
        let limits = BatchLimits {
            cells: self.opts.batch_size,
            tokens: self.opts.max_batch_tokens,
            max_padding: self.opts.max_padding,
        };
        for group in length_grouped_batches(&lengths, &limits) {
            let refs: Vec<(usize, &TokenizedCell)> =
                group.iter().map(|&i| (i, &cells[i])).collect();
            let b = pad_batch(&refs, pad_id, pad_value);
            let input = BatchInput::of(&b);
            let t0 = Instant::now();
            let emb = self.model.model.encode_cls(&input, &self.model.device);
            let v: Vec<f32> = emb
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
            self.stats.forward_seconds += t0.elapsed().as_secs_f64();
            self.stats.flops += forward_flops(&self.model.config, b.size(), b.seq_len);
            self.stats.batches += 1;
            self.stats.tokens += b.tokens();
            self.stats.padded_tokens += b.size() * b.seq_len;
            for (r, &cell) in b.cells.iter().enumerate() {
                let row = &v[r * d..(r + 1) * d];
                // embed_data L2-normalises each embedding
                let norm = row
                    .iter()
                    .map(|x| (*x as f64) * (*x as f64))
                    .sum::<f64>()
                    .sqrt();
                let dst = &mut out[cell * d..(cell + 1) * d];
                for (o, x) in dst.iter_mut().zip(row) {
                    *o = if norm > 0.0 {
                        (*x as f64 / norm) as f32
                    } else {
                        *x
                    };
                }
            }
            self.stats.cells += b.size();
            progress(b.size());
        }
        Ok(())
    }

    /// Tokenise and embed one block of rows.
    pub fn embed_block(
        &mut self,
        block: &Compressed,
        out: &mut [f32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let cells = self.tokenize(block)?;
        self.embed_tokenized(&cells, out, progress)
    }
}

/// FLOPs of `encode_cls` on a `[b, l]` batch (multiply-add = 2; norms and activations left out).
pub fn forward_flops(cfg: &crate::ScGptConfig, b: usize, l: usize) -> f64 {
    let (b, l, d, h) = (b as f64, l as f64, cfg.embsize as f64, cfg.d_hid as f64);
    let n = cfg.nlayers as f64;
    let value_enc = 2.0 * b * l * (d + d * d);
    let full_layer = 2.0 * b * l * (3.0 * d * d + d * d + 2.0 * d * h) + 4.0 * b * l * l * d;
    // last layer: K/V (and Q) projections of every token, the rest for <cls> only
    let last_layer = 2.0 * b * l * 3.0 * d * d + 4.0 * b * l * d + 2.0 * b * (d * d + 2.0 * d * h);
    value_enc + (n - 1.0) * full_layer + last_layer
}
