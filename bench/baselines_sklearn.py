#!/usr/bin/env python3
"""scikit-learn side of bench/baselines.sh (run with the reference environment).

  baselines_sklearn.py logreg FILE.h5ad DONOR_COL TEST_DONOR C
  baselines_sklearn.py knn_data OUT_DIR N_CELLS DIMS      (writes synthetic ref/query .h5ad)
  baselines_sklearn.py knn REF.h5ad QUERY.h5ad OBSM_KEY
Prints one JSON line.
"""
import json
import os
import sys
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier

warnings.filterwarnings("ignore")
mode = sys.argv[1]
if mode == "logreg":
    a = ad.read_h5ad(sys.argv[2])
    col, test, C = sys.argv[3], sys.argv[4], float(sys.argv[5])
    t0 = time.perf_counter()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    lab = a.obs["cell_type"]
    d = a.obs[col].astype(str).values
    tr = (~lab.isna().values) & (d != test)
    te = (~lab.isna().values) & (d == test)
    xtr, xte = a.X[tr], a.X[te]
    ytr, yte = lab.astype(str).values[tr], lab.astype(str).values[te]
    prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    m = OneVsRestClassifier(LogisticRegression(penalty="l1", solver="liblinear", C=C, random_state=0)).fit(xtr, ytr)
    fit = time.perf_counter() - t1
    acc = float((m.predict(xte) == yte).mean())
    nz = int((np.abs(np.vstack([e.coef_ for e in m.estimators_])).sum(0) > 0).sum())
    print(json.dumps({"impl": "sklearn-liblinear", "C": C, "n_train": int(tr.sum()), "n_test": int(te.sum()),
                      "prep_seconds": round(prep, 3), "fit_seconds": round(fit, 3), "accuracy": round(acc, 4),
                      "nonzero_genes": nz}))
elif mode == "knn_data":
    out, n, dims = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    k = 20
    centers = rng.normal(size=(k, dims)) * 2.0
    lab = rng.integers(0, k, size=n)
    x = (centers[lab] + rng.normal(size=(n, dims)) * 1.5).astype(np.float32)
    n_ref = int(n * 0.8)
    for name, sl in (("ref", slice(0, n_ref)), ("query", slice(n_ref, n))):
        b = ad.AnnData(X=sp.csr_matrix((sl.stop - sl.start, 1), dtype=np.float32),
                       obs=pd.DataFrame({"cell_type": pd.Categorical([f"type{v:02d}" for v in lab[sl]])},
                                        index=[f"c{i}" for i in range(sl.start, sl.stop)]))
        b.obsm["X_emb"] = x[sl]
        b.write_h5ad(os.path.join(out, f"synth_{name}.h5ad"))
elif mode == "knn":
    r, q, key = ad.read_h5ad(sys.argv[2]), ad.read_h5ad(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()
    m = KNeighborsClassifier(n_neighbors=15, metric="cosine", algorithm="brute").fit(r.obsm[key], r.obs["cell_type"].astype(str).values)
    p = m.predict(q.obsm[key])
    secs = time.perf_counter() - t0
    acc = float((p == q.obs["cell_type"].astype(str).values).mean())
    print(json.dumps({"impl": "sklearn", "n_ref": r.n_obs, "n_query": q.n_obs, "dims": r.obsm[key].shape[1],
                      "seconds": round(secs, 3), "accuracy": round(acc, 4)}))
