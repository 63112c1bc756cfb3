#!/usr/bin/env python3
"""The reference side of bench/celltypist.sh: synthetic sparse cells for a CellTypist model, and
`celltypist.annotate` 1.7.1 on them.

  celltypist_reference.py data MODEL.pkl OUT.h5ad N_CELLS [EXTRA_GENES] [DENSITY]
      N_CELLS synthetic cells over the model's genes plus EXTRA_GENES others (default 2000):
      each gene expressed in a cell with probability DENSITY (default 0.1), counts geometric
      (p = 0.5, so 1 or more); X = scanpy normalize_total(1e4) + log1p, float32 CSR, uncompressed (what
      celltypist expects in an .h5ad). Seeded (numpy default_rng(0)).
  celltypist_reference.py run MODEL.pkl QUERY.h5ad OUT.h5ad
      celltypist.annotate(QUERY, model, mode='best match') as a user runs it, then the predictions
      (obs columns and the probability matrix in obsm) written with the query to OUT; prints one
      JSON line with the seconds of each part and the cells/s of the whole.

The STCAT pickles predate today's scikit-learn: they are unpickled with the removed SGD loss class
mapped to a placeholder (see tools/make_celltypist_fixture.py), then handed to celltypist as the
`celltypist.models.Model` its `Model.load` builds.
"""

import json
import os
import sys
import time

import numpy as np


def load_model(path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
    from make_celltypist_fixture import load_model as load

    return load(path)


def data(model_path, out, n, extra=2000, density=0.1):
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    import scipy.sparse as sp

    model = load_model(model_path)
    genes = list(model.features) + [f"SYNTH{i}" for i in range(extra)]
    g = len(genes)
    rng = np.random.default_rng(0)
    blocks = []
    step = 20000
    for start in range(0, n, step):
        m = min(step, n - start)
        nnz_rows = rng.binomial(g, density, size=m)
        indptr = np.concatenate([[0], np.cumsum(nnz_rows)])
        indices = np.concatenate(
            [np.sort(rng.choice(g, size=k, replace=False)) for k in nnz_rows]
        ).astype(np.int32)
        vals = rng.geometric(0.5, size=indptr[-1]).astype(np.float32)
        blocks.append(sp.csr_matrix((vals, indices, indptr), shape=(m, g)))
    x = sp.vstack(blocks, format="csr")
    a = ad.AnnData(
        X=x,
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(n)]),
        var=pd.DataFrame(index=genes),
    )
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a.uns = {}
    a.write_h5ad(out)
    print(json.dumps({"cells": n, "genes": g, "nnz": int(a.X.nnz), "file": out}))


def run(model_path, query, out):
    import celltypist

    t0 = time.perf_counter()
    model = load_model(model_path)
    t1 = time.perf_counter()
    res = celltypist.annotate(query, model=model, mode="best match")
    t2 = time.perf_counter()
    adata = res.to_adata()
    adata.obsm["celltypist_probability"] = res.probability_matrix.values
    adata.write_h5ad(out)
    t3 = time.perf_counter()
    n = adata.n_obs
    print(
        json.dumps(
            {
                "tool": "celltypist 1.7.1",
                "cells": n,
                "load_model_s": round(t1 - t0, 3),
                "annotate_s": round(t2 - t1, 3),
                "write_s": round(t3 - t2, 3),
                "total_s": round(t3 - t0, 3),
                "cells_per_s": round(n / (t3 - t0), 1),
                "annotate_cells_per_s": round(n / (t2 - t1), 1),
            }
        )
    )


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "data":
        data(
            sys.argv[2],
            sys.argv[3],
            int(sys.argv[4]),
            *(int(sys.argv[5]),) if len(sys.argv) > 5 else (),
            *(float(sys.argv[6]),) if len(sys.argv) > 6 else (),
        )
    elif cmd == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
