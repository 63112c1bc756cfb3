#!/usr/bin/env python3
"""scanpy's batched `seurat` / `cell_ranger` highly variable genes on a committed fixture, for
crates/scllm-pp/tests/scanpy_parity.rs (`batched_seurat_and_cell_ranger_match_scanpy`).

Input: tests/fixtures/data/kang2018_pbmc_400.h5ad (raw counts; `donor`: 8 batches of 50 cells,
many genes unexpressed in some; `condition`: one value, the one-batch case), normalize_total(1e4)
+ log1p, then
`sc.pp.highly_variable_genes(flavor=F, n_top_genes=300, batch_key=K, inplace=False)` for each
flavor and batch key. Output: tests/fixtures/parity/hvg_batched_kang2018_pbmc_400.json, the
columns scanpy returns, in var order (NaN as null).

    python tools/make_hvg_batched_fixture.py     # scanpy 1.11.5 (what .ci/python.sh pins)
"""

import json
import math
import os

from importlib.metadata import version

import anndata as ad
import scanpy as sc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


def column(values):
    out = []
    for v in values:
        if isinstance(v, float) and math.isnan(v):
            out.append(None)
        elif hasattr(v, "item"):
            out.append(v.item())
        else:
            out.append(v)
    return out


def main():
    a = ad.read_h5ad(os.path.join(FIX, "data", "kang2018_pbmc_400.h5ad"))
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    runs = []
    for key in ("donor", "condition"):
        for flavor in ("seurat", "cell_ranger"):
            r = sc.pp.highly_variable_genes(a, flavor=flavor, n_top_genes=300, batch_key=key, inplace=False)
            runs.append({
                "flavor": flavor,
                "batch_key": key,
                "n_top_genes": 300,
                "columns": {c: column(r[c].tolist()) for c in r.columns},
            })
    out = {"file": "data/kang2018_pbmc_400.h5ad", "preprocess": "normalize_total 1e4, log1p",
           "scanpy": version("scanpy"), "runs": runs}
    with open(os.path.join(FIX, "parity", "hvg_batched_kang2018_pbmc_400.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
