#!/usr/bin/env python3
"""The reference side of a Geneformer embedding benchmark: Geneformer's own tokenizer and
EmbExtractor path on PyTorch CPU (transformers BertForMaskedLM), one JSON line out.

What runs (Geneformer ctheodoris/Geneformer @ 05fcbeb8, imported from GENEFORMER_REF as in
tools/make_geneformer_fixture.py):
  1. tokenization (timed): TranscriptomeTokenizer(model_version=...).tokenize_data(dir, out,
     prefix, "h5ad") on the first --cells cells, with the dictionaries in --dicts (V1 names
     token_dictionary.pkl / gene_median_dictionary.pkl, or the V2 *_gc104M.pkl set). The timing
     includes reading the h5ad and writing the tokenized .dataset, as tokenize_data does.
  2. embedding (timed separately): what EmbExtractor.extract_embs does, minus writing its CSV:
     perturber_utils.load_model("Pretrained", ...) (from_pretrained, output_hidden_states, eval),
     downsample_and_sort (cells sorted by length, longest first; max_ncells None = every cell),
     then get_embs(emb_mode="cell", layer_to_quant = num_layers + emb_layer(-1)) with
     forward_batch_size --batch-size (default 100, EmbExtractor's default): each mini-batch padded
     to its longest cell, attention_mask on real tokens, mean over real tokens of
     hidden_states[num_layers-1] (V2: without <cls>/<eos>). get_embs hard-codes "cuda"; it runs on
     the CPU through the shim in tools/make_geneformer_fixture.py.
torch.set_num_threads(--threads). Peak RSS: resource.getrusage(RUSAGE_SELF).ru_maxrss.

If obs has no `n_counts`, it is computed as the sum of X over the file's genes (reported as
"n_counts": "computed"); for a file holding a gene subset (e.g. kang2018_pbmc, 1,287 genes) that
is not the whole-transcriptome total Geneformer expects, which changes the values but not the cost.

    .venv-ref/bin/python tools/make_geneformer_bench_model.py --out /tmp/gf_bench --shapes 12L
    GENEFORMER_REF=/tmp/geneformer-ref .venv-ref/bin/python bench/geneformer_embed_reference.py \\
        --data ../shared/data/kang2018_pbmc.h5ad --model /tmp/gf_bench/gf-12L-512 \\
        --dicts /tmp/gf_bench/gf-12L-512 --cells 50 --threads 2 [--out emb.npy]
"""
import argparse
import json
import os
import pickle
import resource
import sys
import tempfile
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TQDM_DISABLE", "1")
import contextlib  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
REF = os.environ.get("GENEFORMER_REF", "/tmp/geneformer-ref")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="h5ad with raw counts and var['ensembl_id']")
    ap.add_argument("--model", required=True, help="Hugging Face model folder (BertForMaskedLM)")
    ap.add_argument("--dicts", required=True, help="folder with the token/median (and V2 mapping) pickles")
    ap.add_argument("--model-version", choices=["V1", "V2"], default=None, help="default: from the pickle names")
    ap.add_argument("--cells", type=int, default=0, help="first N cells (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100, help="EmbExtractor's forward_batch_size")
    ap.add_argument("--emb-layer", type=int, default=-1, choices=[-1, 0])
    ap.add_argument("--out", default=None, help="write the embeddings (input cell order) as .npy")
    a = ap.parse_args()

    import logging

    import anndata as ad
    import numpy as np
    import torch
    import transformers

    import make_geneformer_fixture as gf

    logging.disable(logging.WARNING)
    import datasets

    datasets.disable_progress_bars()
    torch.set_num_threads(a.threads)
    version = a.model_version or ("V2" if os.path.exists(os.path.join(a.dicts, "token_dictionary_gc104M.pkl")) else "V1")
    pkg, mods = gf.load_geneformer(REF)
    if version == "V1":
        tok_file = os.path.join(a.dicts, "token_dictionary.pkl")
        pkg.TOKEN_DICTIONARY_FILE_30M = tok_file
        pkg.GENE_MEDIAN_FILE_30M = os.path.join(a.dicts, "gene_median_dictionary.pkl")
        pkg.ENSEMBL_MAPPING_FILE_30M = None  # V1 shipped no mapping file: identity
        kw = {}
    else:
        tok_file = os.path.join(a.dicts, "token_dictionary_gc104M.pkl")
        kw = dict(token_dictionary_file=tok_file,
                  gene_median_file=os.path.join(a.dicts, "gene_median_dictionary_gc104M.pkl"),
                  gene_mapping_file=os.path.join(a.dicts, "ensembl_mapping_dict_gc104M.pkl"))

    adata = ad.read_h5ad(a.data)
    if a.cells:
        adata = adata[: a.cells].copy()
    n_counts = "obs"
    if "n_counts" not in adata.obs:
        adata.obs["n_counts"] = np.asarray(adata.X.sum(axis=1), dtype=np.float64).ravel()
        n_counts = "computed"
    with tempfile.TemporaryDirectory() as work:
        indir = os.path.join(work, "in")
        os.makedirs(indir)
        adata.write_h5ad(os.path.join(indir, "cells.h5ad"))
        n = adata.n_obs
        del adata

        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the tokenizer prints progress to stdout
            tk = mods.tk.TranscriptomeTokenizer(nproc=1, model_version=version, **kw)
            tk.tokenize_data(indir, work, "cells", file_format="h5ad")
        t_tok = time.perf_counter() - t0

        from datasets import load_from_disk

        pu = mods.pu
        with gf.cuda_on_cpu():
            t0 = time.perf_counter()
            data = load_from_disk(os.path.join(work, "cells.dataset"))
            data = data.add_column("cell_index", list(range(len(data))))
            data = pu.downsample_and_sort(data, None)
            model = pu.load_model("Pretrained", 0, a.model, mode="eval")
            gf.check_positions(model)
            with open(tok_file, "rb") as f:
                gtd = pickle.load(f)
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            embs = mods.ee.get_embs(model, data, "cell", pu.quant_layers(model) + a.emb_layer, gtd["<pad>"],
                                    a.batch_size, {v: k for k, v in gtd.items()}, silent=True)
            t_fwd = time.perf_counter() - t0
        lengths = np.array(data["length"])
        order = np.array(data["cell_index"])
    if a.out:
        e = np.zeros(tuple(embs.shape), np.float32)
        e[order] = embs.numpy()
        np.save(a.out, e)
    cfg = model.config
    print(json.dumps({
        "tool": "geneformer-reference (PyTorch CPU)",
        "geneformer_commit": gf.GENEFORMER["commit"],
        "model_version": version,
        "model": {"layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "heads": cfg.num_attention_heads,
                  "intermediate": cfg.intermediate_size, "vocab": cfg.vocab_size},
        "cells": n, "cells_embedded": int(embs.shape[0]), "threads": a.threads, "batch_size": a.batch_size,
        "emb_mode": "cell", "emb_layer": a.emb_layer, "n_counts": n_counts,
        "mean_length": float(lengths.mean()), "max_length": int(lengths.max()),
        "tokenize_secs": round(t_tok, 3), "tokenize_cells_per_s": round(n / t_tok, 2),
        "load_secs": round(t_load, 3),
        "forward_secs": round(t_fwd, 3), "embed_cells_per_s": round(n / t_fwd, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }))


if __name__ == "__main__":
    main()
