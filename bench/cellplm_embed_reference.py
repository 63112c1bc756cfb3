#!/usr/bin/env python3
"""PyPI `cellplm`'s own embedding path on PyTorch CPU, for bench/cellplm_embed.sh:
`CellEmbeddingPipeline(pretrain_prefix, pretrain_directory)` then `pipe.predict(adata,
device='cpu')` (docs/models/cellplm.md §4.1: whole `obs['batch']` groups, or all cells one set
without the column), threads pinned. The GMVAE's Gumbel noise is fixed at zero (the cluster is
the argmax of the logits), as tools/make_cellplm_fixture.py does, so that the result is
deterministic and comparable with scllm's (docs/models/cellplm.md §7.4). Prints one JSON line:
cells, model load seconds, seconds and cells per second of the `predict` call itself; writes the
embeddings (input order) to --out as .npy.
Reference: OmicsML/CellPLM @ b59ee7688b1bd2a745856a610248b46f15019a22 (= PyPI cellplm 0.1.0.post2).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True, help="folder of the checkpoint pair")
    ap.add_argument("--prefix", default="bench85M")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import anndata as ad
    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    import CellPLM.latent.autoencoders as gm
    from CellPLM.pipeline.cell_embedding import CellEmbeddingPipeline

    def zero_gumbel(self, logits, eps=1e-20):
        # the argmax path: no Gumbel noise (docs/models/cellplm.md §7.4)
        return torch.zeros_like(logits)

    gm.GumbelSoftmax.sample_gumbel = zero_gumbel

    adata = ad.read_h5ad(a.data)
    t0 = time.time()
    pipe = CellEmbeddingPipeline(pretrain_prefix=a.prefix, pretrain_directory=str(a.model))
    t_load = time.time() - t0
    t1 = time.time()
    emb = pipe.predict(adata, device="cpu")
    t_pred = time.time() - t1
    np.save(a.out, emb.detach().float().numpy())
    print(json.dumps({"cells": adata.n_obs, "load_seconds": t_load, "predict_seconds": t_pred,
                      "cells_per_second": adata.n_obs / t_pred, "threads": a.threads,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
