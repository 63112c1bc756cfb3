//! Geneformer V1 and V2 against the reference (tests/fixtures/geneformer, made by
//! tools/make_geneformer_fixture.py with Geneformer's own tokenizer and EmbExtractor and
//! `transformers`' BERT): token ids, every hidden state, both embedding modes at two layers,
//! classification logits, and the load report.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::*;
use scllm_models::embed::{EmbedOptions, Embedder};
use scllm_models::{
    BatchInput, CellModel, EmbeddingSpec, GeneformerFolder, ModelFolder, Pooling, TokenModel,
    TokenOptions,
};

fn dir(v: &str) -> PathBuf {
    fixtures().join("geneformer").join(v)
}
fn cells() -> PathBuf {
    fixtures().join("geneformer/cells.h5ad")
}

/// The fixture's padded batch of reference token ids.
struct Tokens {
    b: usize,
    l: usize,
    ids: Vec<i64>,
    lengths: Vec<usize>,
    padding: Vec<bool>,
    values: Vec<f32>,
}

impl Tokens {
    fn of(v: &str) -> Self {
        let r = read_safetensors(&dir(v).join("expected.safetensors"));
        let (b, l) = (r["input_ids"].shape[0], r["input_ids"].shape[1]);
        let ids: Vec<i64> = r["input_ids"].data.iter().map(|&x| x as i64).collect();
        let lengths: Vec<usize> = r["lengths"].data.iter().map(|&x| x as usize).collect();
        let padding = (0..b * l).map(|i| i % l >= lengths[i / l]).collect();
        Tokens {
            b,
            l,
            ids,
            lengths,
            padding,
            values: vec![0.0; b * l],
        }
    }
    fn input(&self) -> BatchInput<'_> {
        BatchInput {
            batch: self.b,
            seq_len: self.l,
            genes: &self.ids,
            values: &self.values,
            padding: &self.padding,
        }
    }
}

fn load(folder: &GeneformerFolder, n_cls: usize) -> scllm_models::Geneformer {
    let (m, report) = folder.load(n_cls, false, &Device::flex()).unwrap();
    assert!(report.is_complete(), "{}", report.to_text());
    m
}

#[test]
fn tokens_equal_the_reference_tokenizer() {
    let adata = scllm_io::read_h5ad(cells()).unwrap();
    for v in ["v1", "v2"] {
        let folder = GeneformerFolder::open(&dir(v), None, None).unwrap();
        let t = Tokens::of(v);
        let prep = scllm_tokenize::PrepOptions {
            max_len: usize::MAX,
            min_matched: 1,
            ..Default::default()
        };
        let p = folder.prepare_cells(&adata, &cells(), &prep).unwrap();
        assert!(p.steps.contains("obs['n_counts']"), "{}", p.steps);
        assert_eq!(p.cells.len(), t.b);
        for (c, cell) in p.cells.iter().enumerate() {
            let want: Vec<u32> = t.ids[c * t.l..c * t.l + t.lengths[c]]
                .iter()
                .map(|&x| x as u32)
                .collect();
            assert_eq!(cell.genes, want, "{v}: cell {c}");
        }
    }
}

#[test]
fn hidden_states_equal_the_reference() {
    let dev = Device::flex();
    for v in ["v1", "v2"] {
        let folder = GeneformerFolder::open(&dir(v), None, None).unwrap();
        let m = load(&folder, 0);
        let t = Tokens::of(v);
        let r = read_safetensors(&dir(v).join("expected.safetensors"));
        let (ids, mask) = m.inputs(&t.input(), &dev).unwrap();
        let out = m.forward(ids, mask, m.n_layers());
        assert_eq!(out.hidden_states.len(), m.n_layers() + 1);
        let d = m.d_model();
        for (i, h) in out.hidden_states.into_iter().enumerate() {
            let want = &r[&format!("hidden_{i}")];
            let kept = want.shape[1];
            let got = host(h.narrow(1, 0, kept));
            let keep: Vec<bool> = (0..t.b * kept)
                .map(|p| p % kept < t.lengths[p / kept])
                .collect();
            let diff = max_diff_kept(&got, &want.data, &keep, d);
            eprintln!("{v} hidden_{i}: max abs diff {diff:.2e}");
            assert!(diff <= 1e-4, "{v} hidden_{i}: {diff:.3e}");
        }
    }
}

#[test]
fn cell_and_cls_embeddings_equal_emb_extractor() {
    let dev = Device::flex();
    for v in ["v1", "v2"] {
        let folder = GeneformerFolder::open(&dir(v), None, None).unwrap();
        let m = load(&folder, 0);
        let t = Tokens::of(v);
        let r = read_safetensors(&dir(v).join("expected.safetensors"));
        let mut cases = vec![
            ("emb_cell_m1", Pooling::Mean, -1),
            ("emb_cell_0", Pooling::Mean, 0),
        ];
        if v == "v2" {
            cases.push(("emb_cls_m1", Pooling::Cls, -1));
            cases.push(("emb_cls_0", Pooling::Cls, 0));
        }
        for (name, pooling, layer) in cases {
            let got = host(m.embedding(&t.input(), pooling, layer, &dev).unwrap());
            let diff = max_diff(&got, &r[name].data);
            eprintln!("{v} {name}: max abs diff {diff:.2e}");
            assert!(diff <= 1e-4, "{v} {name}: {diff:.3e}");
        }
        if v == "v1" {
            let e = m.embedding(&t.input(), Pooling::Cls, -1, &dev).unwrap_err();
            assert!(e.to_string().contains("<cls>"), "{e}");
        }
        let e = m
            .embedding(&t.input(), Pooling::Mean, -9, &dev)
            .unwrap_err();
        assert!(e.to_string().contains("--emb-layer"), "{e}");
    }
}

/// The whole pipeline (`scllm embed`'s path): the file's cells tokenised one at a time with
/// `obs['n_counts']`, batched, embedded with the family's defaults (V1: the mean of the
/// second-to-last layer; V2: its `<cls>`).
#[test]
fn embedder_gives_the_reference_default_embedding() {
    let dev = Device::flex();
    let adata = scllm_io::read_h5ad(cells()).unwrap();
    let x = scllm_pp::to_csr_f32(adata.x().unwrap());
    let totals: Vec<f64> = {
        let c = adata.obs.column("n_counts").unwrap();
        (0..c.len()).map(|i| c.get_f64(i).unwrap()).collect()
    };
    for (v, want) in [("v1", "emb_cell_m1"), ("v2", "emb_cls_m1")] {
        let folder = GeneformerFolder::open(&dir(v), None, None).unwrap();
        let m = load(&folder, 0);
        let genes = folder.match_genes(&adata.var, None, &cells()).unwrap();
        let tok = folder
            .embed_tokenizer(&genes, &TokenOptions::default())
            .unwrap();
        let defaults = folder.embedding();
        assert!(!defaults.normalize);
        assert_eq!(defaults.obsm_key, "X_geneformer");
        let mut e = Embedder::new(
            &m,
            &dev,
            tok.as_ref(),
            defaults.spec,
            defaults.normalize,
            EmbedOptions::default(),
        )
        .unwrap();
        let mut out = vec![0f32; x.nrows * m.d_model()];
        e.embed_block(&x, Some(&totals), &mut out, &mut |_| {})
            .unwrap();
        let r = read_safetensors(&dir(v).join("expected.safetensors"));
        let diff = max_diff(&out, &r[want].data);
        eprintln!("{v} embedder ({want}): max abs diff {diff:.2e}");
        assert!(diff <= 1e-4, "{v}: {diff:.3e}");
        assert_eq!(
            defaults.spec,
            EmbeddingSpec {
                pooling: if v == "v1" {
                    Pooling::Mean
                } else {
                    Pooling::Cls
                },
                layer: -1
            }
        );
    }
}

#[test]
fn classification_logits_equal_bert_for_sequence_classification() {
    let dev = Device::flex();
    for v in ["v1", "v2"] {
        // the classifier folder has no dictionaries of its own: the MLM folder's are named
        let folder =
            GeneformerFolder::open(&dir(v).join("classifier"), None, Some(&dir(v))).unwrap();
        let m = load(&folder, 3);
        assert_eq!(m.n_classes(), 3);
        let t = Tokens::of(v);
        let out = m.classify(&t.input(), &dev).unwrap();
        let r = read_safetensors(&dir(v).join("expected.safetensors"));
        let diff = max_diff(&host(out.logits), &r["logits"].data);
        eprintln!("{v} logits: max abs diff {diff:.2e}");
        assert!(diff <= 1e-4, "{v} logits: {diff:.3e}");
        // the training path (full forward) gives the same logits
        let (ids, mask) = m.inputs(&t.input(), &dev).unwrap();
        let full = m.forward(ids, mask, m.n_layers()).logits.unwrap();
        assert!(max_diff(&host(full), &r["logits"].data) <= 1e-4);
    }
}

#[test]
fn load_report_names_the_unused_mlm_head_and_buffers() {
    let v1 = GeneformerFolder::open(&dir("v1"), None, None).unwrap();
    let (_, report) = v1.load(0, true, &Device::flex()).unwrap();
    assert!(report.is_complete());
    assert!(report
        .unexpected
        .iter()
        .any(|k| k.starts_with("cls.predictions.")));
    assert!(report
        .unexpected
        .iter()
        .any(|k| k == "bert.embeddings.position_ids"));
    assert_eq!(
        report.loaded.len(),
        scllm_models::param_table(&v1.build(0, &Device::flex()).unwrap()).len()
    );
}

#[test]
fn bad_folders_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // no known family
    let e = scllm_models::open_folder(tmp.path(), &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("args.json") && e.contains("config.json"), "{e}");
    // a V2 dictionary with a V1 checkpoint: the vocabulary sizes differ
    let e = GeneformerFolder::open(&dir("v1"), None, Some(&dir("v2")))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("vocab_size") && e.contains("4065"), "{e}");
    // a token dictionary without its medians
    let f = tmp.path().join("gf");
    std::fs::create_dir(&f).unwrap();
    for n in ["config.json", "pytorch_model.bin", "token_dictionary.pkl"] {
        std::fs::copy(dir("v1").join(n), f.join(n)).unwrap();
    }
    let e = GeneformerFolder::open(&f, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("gene_median_dictionary.pkl"), "{e}");
    // the family is detected from config.json
    assert_eq!(
        scllm_models::folder::detect(&dir("v2")).unwrap(),
        scllm_models::Family::Geneformer
    );
}

/// Genes named by symbol match through the bundled GENCODE map (hg19-era pbmc3k symbols: ~93%
/// of the id matches) or the dictionaries'
/// gene_name_id_dict; a file with no known gene is refused with the fix.
#[test]
fn genes_match_by_ensembl_id_or_symbol() {
    let adata = scllm_io::read_h5ad(cells()).unwrap();
    let v1 = GeneformerFolder::open(&dir("v1"), None, None).unwrap();
    let by_id = v1.match_genes(&adata.var, None, &cells()).unwrap();
    assert!(by_id.key.contains("ensembl_id"), "{}", by_id.key);
    let by_symbol = v1
        .match_genes(&adata.var, Some("gene_symbol"), &cells())
        .unwrap();
    assert!(by_symbol.key.contains("GENCODE"), "{}", by_symbol.key);
    assert!(
        by_symbol.n_matched as f64 >= 0.9 * by_id.n_matched as f64,
        "{} by symbol vs {} by id",
        by_symbol.n_matched,
        by_id.n_matched
    );
    let v2 = GeneformerFolder::open(&dir("v2"), None, None).unwrap();
    let m = v2
        .match_genes(&adata.var, Some("gene_symbol"), &cells())
        .unwrap();
    assert!(m.key.contains("gene_name_id_dict"), "{}", m.key);
    let mut var = scllm_io::DataFrame::new(vec!["foo".into(), "bar".into()]);
    var.set(
        "gene_symbol",
        scllm_io::Column::Str(vec!["x".into(), "y".into()]),
    );
    let e = v1
        .match_genes(&var, None, Path::new("q.h5ad"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("q.h5ad") && e.contains("--gene-col"), "{e}");
}
