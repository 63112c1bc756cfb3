#!/usr/bin/env python3
"""scBERT's own embedding path on PyTorch CPU, for bench/scbert_embed.sh: preprocess.py (run as
is in a scratch folder, its filter_cells(min_genes=200) a no-op as scllm keeps every cell), then
predict.py's loop (one cell at a time, bins clipped at 5, token 0 appended) with
model(x, return_encodings=True) and the mean over the panel positions. Prints one JSON line:
cells, preprocessing and forward seconds, cells per second of the forward.
Reference: TencentAILabHealthcare/scBERT @ 262fd4b91f3f1c21a6e595d03d4ef423e16ffc99 (--ref).
"""

import argparse
import json
import os
import runpy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    ref = a.ref.resolve()
    sys.path.insert(0, str(ref))
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp
    import torch

    torch.set_num_threads(a.threads)
    torch.qr = lambda x, some=True: torch.linalg.qr(x, mode="reduced" if some else "complete")
    from performer_pytorch import PerformerLM

    panel = a.model.joinpath("gene_panel.txt").read_text().split()
    data = a.data.resolve()
    t0 = time.time()
    scratch = Path(tempfile.mkdtemp())
    (scratch / "data").mkdir()
    ad.AnnData(X=sp.csr_matrix((1, len(panel)), dtype=np.float32),
               var=__import__("pandas").DataFrame(index=panel)).write_h5ad(
        scratch / "data" / "panglao_10000.h5ad")
    os.symlink(data, scratch / "data" / "your_raw_data.h5ad")
    cwd = os.getcwd()
    keep = sc.pp.filter_cells
    sc.pp.filter_cells = lambda *x, **k: None
    os.chdir(scratch)
    runpy.run_path(str(ref / "preprocess.py"), run_name="__main__")
    sc.pp.filter_cells = keep
    pre = ad.read_h5ad(scratch / "data" / "preprocessed_data.h5ad")
    t_pre = time.time() - t0

    # the model: the reference class, the folder's checkpoint (gene2vec comes from it)
    # Gene2VecPositionalEmbedding reads ../data/gene2vec_16906.npy; the checkpoint overwrites it
    np.save(scratch / "data" / "gene2vec_16906.npy", np.zeros((len(panel), 200)))
    (scratch / "work").mkdir()
    os.chdir(scratch / "work")
    model = PerformerLM(num_tokens=7, dim=200, depth=6, max_seq_len=len(panel) + 1, heads=10,
                        local_attn_heads=0, g2v_position_emb=True)
    os.chdir(cwd)
    ckpt = torch.load(next(a.model.glob("*.pth")), map_location="cpu")
    model.load_state_dict(ckpt["model_state_dict"])
    model.eval()

    CLASS = 7
    embs = []
    t1 = time.time()
    with torch.no_grad():
        for index in range(pre.n_obs):
            full_seq = pre.X[index].toarray()[0]
            full_seq[full_seq > (CLASS - 2)] = CLASS - 2
            full_seq = torch.from_numpy(full_seq).long()
            full_seq = torch.cat((full_seq, torch.tensor([0]))).unsqueeze(0)
            enc = model(full_seq, return_encodings=True)
            embs.append(enc[0, :-1].mean(0).numpy())
    t_fwd = time.time() - t1
    np.save(a.out, np.stack(embs))
    print(json.dumps({"cells": pre.n_obs, "preprocess_seconds": t_pre, "forward_seconds": t_fwd,
                      "cells_per_second": pre.n_obs / t_fwd, "threads": a.threads}))


if __name__ == "__main__":
    main()
