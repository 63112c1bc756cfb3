#!/usr/bin/env python3
"""The reference side of bench/embed.sh: scgpt 0.2.4's own `scgpt.tasks.embed_data` (PyTorch CPU),
run without scgpt's training stack (torchtext is replaced by a dict-backed GeneVocab exposing the
calls embed_data makes; everything else is scgpt's code from ref/).

    .venv-ref/bin/python bench/embed_reference.py --model DIR --data X.h5ad --cells N --threads T --out emb.npy
"""
import argparse
import importlib
import json
import logging
import os
import sys
import time
import types
import warnings

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.environ.get("SCGPT_REF", os.path.join(ROOT, "ref"))


class GeneVocab(dict):
    """The part of scgpt.tokenizer.GeneVocab that embed_data uses."""

    @classmethod
    def from_file(cls, path):
        return cls(json.load(open(path)))

    def append_token(self, t):
        self[t] = len(self)

    def set_default_index(self, i):
        self.default = i

    def __call__(self, tokens):
        return [self.get(t, self.default) for t in tokens]


def load_embed_data():
    pkg = types.ModuleType("scgpt")
    pkg.__path__ = [os.path.join(REF, "scgpt")]
    pkg.logger = logging.getLogger("scGPT")
    sys.modules["scgpt"] = pkg
    tok = types.ModuleType("scgpt.tokenizer")
    tok.GeneVocab = GeneVocab
    sys.modules["scgpt.tokenizer"] = tok
    model_pkg = types.ModuleType("scgpt.model")
    model_pkg.__path__ = [os.path.join(REF, "scgpt", "model")]
    sys.modules["scgpt.model"] = model_pkg
    model_pkg.TransformerModel = importlib.import_module("scgpt.model.model").TransformerModel
    tasks = types.ModuleType("scgpt.tasks")
    tasks.__path__ = [os.path.join(REF, "scgpt", "tasks")]
    sys.modules["scgpt.tasks"] = tasks
    return importlib.import_module("scgpt.tasks.cell_emb").embed_data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--cells", type=int, default=0, help="first N cells (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--gene-col", default="index")
    ap.add_argument("--out", default=None)
    ap.add_argument("--bf16", action="store_true",
                    help="the model converted with model.to(torch.bfloat16) (torch.autocast fails "
                         "inside scGPT's value encoder); expression values cast to match")
    a = ap.parse_args()
    import numpy as np
    import scanpy as sc
    import torch

    torch.set_num_threads(a.threads)
    embed_data = load_embed_data()
    if a.bf16:
        tm = sys.modules["scgpt.model.model"].TransformerModel
        eval_f32, encode_f32 = tm.eval, tm._encode

        def eval_bf16(self):
            self.to(torch.bfloat16)
            return eval_f32(self)

        def encode_bf16(self, src, values, src_key_padding_mask, batch_labels=None):
            out = encode_f32(self, src, values.to(torch.bfloat16), src_key_padding_mask, batch_labels)
            return out.float()

        tm.eval, tm._encode = eval_bf16, encode_bf16
    adata = sc.read_h5ad(a.data)
    if a.cells:
        adata = adata[: a.cells].copy()
    t0 = time.time()
    out = embed_data(adata, a.model, gene_col=a.gene_col, max_length=1200, batch_size=a.batch_size,
                     device="cpu", use_fast_transformer=False, return_new_adata=False)
    secs = time.time() - t0
    emb = np.asarray(out.obsm["X_scGPT"], dtype=np.float32)
    if a.out:
        np.save(a.out, emb)
    print(json.dumps({"tool": "scgpt.tasks.embed_data", "torch": torch.__version__, "threads": a.threads,
                      "precision": "bf16" if a.bf16 else "f32",
                      "cells": int(adata.n_obs), "seconds": secs, "cells_per_second": adata.n_obs / secs}))


if __name__ == "__main__":
    main()
