//! Cell embeddings with any family: each cell tokenised on its own by the family's tokenizer
//! (scGPT: `embed_data`'s binning, `<cls>` and gene sampling; Geneformer: rank-value tokens),
//! batched by length, and read off the encoder as the family's [`EmbeddingSpec`] says
//! (optionally L2-normalised, as `embed_data` does).
//!
//! Unlike the references, a cell's embedding never depends on its batch neighbours: tokenisation
//! randomness is seeded per cell from its content, and padding is masked exactly (scGPT's
//! issue #281 is not copied). Batches hold cells of equal length (`EmbedOptions::max_padding`),
//! so nothing is padded.

use std::ops::Range;
use std::time::Instant;

use burn::tensor::Device;
use rayon::prelude::*;
use scllm_io::Compressed;
use scllm_tokenize::{length_grouped_batches, pad_batch, BatchLimits, RowTokenizer, TokenizedCell};

use crate::error::{ModelError, Result};
use crate::model::{BatchInput, EmbeddingSpec, TokenModel};

/// `EmbedOptions::max_padding` unless set.
pub const DEFAULT_MAX_PADDING: f64 = 0.0;

/// `EmbedOptions::max_tokens_held` unless set: 128 MiB of tokens (id + value, 8 bytes each).
pub const DEFAULT_MAX_TOKENS_HELD: usize = 1 << 24;

/// How cells are batched (tokenisation options belong to the family's tokenizer).
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Most cells in one forward pass.
    pub batch_size: usize,
    /// Most tokens (cells × padded length) in one forward pass; bounds memory on long cells.
    pub max_batch_tokens: usize,
    /// Most padding as a share of a batch's tokens: a cell that would pad its batch more starts
    /// the next one. Padding is pure waste here (a cell's embedding is the same in any batch),
    /// and on CPU small batches cost nothing: the default 0 puts only cells of equal length
    /// together (bench/RESULTS.md, "padding-free batches and packed attention").
    pub max_padding: f64,
    /// Most tokens held tokenised at once, for a family whose cells have a fixed length
    /// ([`RowTokenizer::max_tokens`]): a block is tokenised and embedded a chunk of rows at a time.
    pub max_tokens_held: usize,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch_size: 64,
            max_batch_tokens: 64 * 1200,
            max_padding: DEFAULT_MAX_PADDING,
            max_tokens_held: DEFAULT_MAX_TOKENS_HELD,
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
pub struct Embedder<'a, M: TokenModel> {
    pub model: &'a M,
    pub device: Device,
    pub tokenizer: &'a dyn RowTokenizer,
    pub spec: EmbeddingSpec,
    /// L2-normalise each embedding (scGPT's `embed_data` does; Geneformer's `EmbExtractor` not).
    pub normalize: bool,
    pub opts: EmbedOptions,
    pub stats: EmbedStats,
    /// Row of the file the next block starts at (for messages naming a cell).
    pub row_offset: usize,
}

impl<'a, M: TokenModel> Embedder<'a, M> {
    pub fn new(
        model: &'a M,
        device: &Device,
        tokenizer: &'a dyn RowTokenizer,
        spec: EmbeddingSpec,
        normalize: bool,
        opts: EmbedOptions,
    ) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(ModelError::Invalid(
                "--batch-size must be at least 1".into(),
            ));
        }
        Ok(Embedder {
            model,
            device: device.clone(),
            tokenizer,
            spec,
            normalize,
            opts,
            stats: EmbedStats::default(),
            row_offset: 0,
        })
    }

    pub fn dim(&self) -> usize {
        self.model.d_model()
    }

    /// Tokenise a block's rows (in parallel; each cell on its own); a cell the tokenizer refuses
    /// is an error naming its row within the block. `totals`: each row's total
    /// count over all genes where the file records it (Geneformer's `obs['n_counts']`); else the
    /// sum of the row's stored values.
    pub fn tokenize(
        &mut self,
        block: &Compressed,
        totals: Option<&[f64]>,
    ) -> Result<Vec<TokenizedCell>> {
        let vals = block.data.to_f32();
        self.tokenize_rows(block, &vals, 0..block.nrows, totals)
    }

    /// [`Self::tokenize`] of the rows `rows` of `block` (`vals`: its values as f32).
    fn tokenize_rows(
        &mut self,
        block: &Compressed,
        vals: &[f32],
        rows: Range<usize>,
        totals: Option<&[f64]>,
    ) -> Result<Vec<TokenizedCell>> {
        let t0 = Instant::now();
        let tok = self.tokenizer;
        let offset = self.row_offset;
        let cells = rows
            .into_par_iter()
            .map(|i| {
                let r = block.range(i);
                let v = &vals[r.clone()];
                let total = match totals {
                    Some(t) => t[i],
                    None => v.iter().map(|&x| x as f64).sum(),
                };
                tok.tokenize_row(&block.indices[r], v, total).map_err(|e| {
                    ModelError::Invalid(format!("row {} of the input: {e}", offset + i))
                })
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
        let pad_id = self.tokenizer.pad_id();
        let pad_value = self.tokenizer.pad_value();
        let limits = BatchLimits {
            cells: self.opts.batch_size,
            tokens: self.opts.max_batch_tokens,
            max_padding: self.opts.max_padding,
        };
        for group in length_grouped_batches(&lengths, &limits) {
            crate::interrupt::check()?;
            let refs: Vec<(usize, &TokenizedCell)> =
                group.iter().map(|&i| (i, &cells[i])).collect();
            let b = pad_batch(&refs, pad_id, pad_value);
            let input = BatchInput::of(&b);
            let t0 = Instant::now();
            let emb = self.model.embed(&input, &self.spec, &self.device)?;
            let v: Vec<f32> = emb
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
            self.stats.forward_seconds += t0.elapsed().as_secs_f64();
            self.stats.flops += self.model.embed_flops(b.size(), b.seq_len, &self.spec);
            self.stats.batches += 1;
            self.stats.tokens += b.tokens();
            self.stats.padded_tokens += b.size() * b.seq_len;
            for (r, &cell) in b.cells.iter().enumerate() {
                let row = &v[r * d..(r + 1) * d];
                let norm = if self.normalize {
                    row.iter()
                        .map(|x| (*x as f64) * (*x as f64))
                        .sum::<f64>()
                        .sqrt()
                } else {
                    0.0
                };
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

    /// Tokenise and embed one block of rows (`totals` as in [`Self::tokenize`]).
    pub fn embed_block(
        &mut self,
        block: &Compressed,
        totals: Option<&[f64]>,
        out: &mut [f32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        // Cells are tokenised a chunk at a time where the family fixes their length, so a block
        // of long cells (scBERT: 16,907 tokens, 135 KB a cell) never sits tokenised whole.
        let chunk = match self.tokenizer.max_tokens() {
            Some(l) => (self.opts.max_tokens_held / l.max(1)).max(1),
            None => block.nrows.max(1),
        };
        let vals = block.data.to_f32();
        let d = self.dim();
        for start in (0..block.nrows).step_by(chunk) {
            let end = (start + chunk).min(block.nrows);
            let cells = self.tokenize_rows(block, &vals, start..end, totals)?;
            self.embed_tokenized(&cells, &mut out[start * d..end * d], progress)?;
        }
        Ok(())
    }
}
