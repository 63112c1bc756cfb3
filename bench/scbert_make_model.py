#!/usr/bin/env python3
"""A random-weight scBERT model folder at the released shape, built with scBERT's own code, for
bench/scbert_embed.sh: PerformerLM(num_tokens=7, dim=200, depth=6, heads=10, dim_head=64,
max_seq_len=16907) with PyTorch's default init (seeded) and a random float64 gene2vec table,
saved as scBERT saves checkpoints (torch.save of {'epoch', 'model_state_dict'}); the panel is
the first 16,906 genes of the data file (any 16,906 symbols do for timing: every cell is the
whole panel). Reference: TencentAILabHealthcare/scBERT @ 262fd4b91f3f1c21a6e595d03d4ef423e16ffc99,
unpacked outside this repository (SCBERT_REF); torch.qr is shimmed onto torch.linalg.qr.

    .venv-ref/bin/python bench/scbert_make_model.py --ref /tmp/scbert-ref --data DATA --out DIR
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, str(a.ref.resolve()))
    import anndata as ad
    import torch

    torch.qr = lambda x, some=True: torch.linalg.qr(x, mode="reduced" if some else "complete")
    from performer_pytorch import PerformerLM

    torch.manual_seed(a.seed)
    genes = list(ad.read_h5ad(a.data, backed="r").var_names[:16906])
    scratch = Path(tempfile.mkdtemp())
    (scratch / "data").mkdir()
    (scratch / "work").mkdir()
    np.save(scratch / "data" / "gene2vec_16906.npy",
            np.random.default_rng(a.seed).standard_normal((16906, 200)))
    cwd = os.getcwd()
    os.chdir(scratch / "work")
    model = PerformerLM(num_tokens=7, dim=200, depth=6, max_seq_len=16907, heads=10,
                        local_attn_heads=0, g2v_position_emb=True)
    os.chdir(cwd)
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "model_state_dict": model.state_dict()}, out / "panglao_pretrain.pth")
    (out / "gene_panel.txt").write_text("".join(g + "\n" for g in genes))
    cfg = dict(num_tokens=7, dim=200, depth=6, heads=10, dim_head=64, max_seq_len=16907)
    (out / "scbert_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
