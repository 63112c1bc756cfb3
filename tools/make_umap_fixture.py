#!/usr/bin/env python3
"""umap-learn's own embedding and quality scores, to hold scllm's UMAP to.

Run with the reference environment (numpy, scikit-learn, anndata, umap-learn):

    /work/.venv-ref/bin/python tools/make_umap_fixture.py
    /work/.venv-ref/bin/python tools/make_umap_fixture.py --timing N --shared ../shared/data

Default: reads `obsm['X_pca']` (30 PCs, float32) and `obs['cell_type']` of the committed
tests/fixtures/eval/kang_ref.h5ad (1,050 cells) -- the Rust test reads the same matrix from the
same file, so the input is not duplicated -- runs `umap.UMAP(n_neighbors=15, min_dist=0.1,
random_state=0)` and writes tests/fixtures/eval/umap_reference.json with

  * umap-learn's 2-D embedding (float32 values, row-major);
  * trustworthiness (sklearn.manifold.trustworthiness, k=15, euclidean) of that embedding: the
    Rust trustworthiness is checked against this number on this very embedding (exact parity);
  * kNN preservation: mean over cells of |15-NN in X ∩ 15-NN in 2-D| / 15 (self excluded);
  * silhouette (euclidean) of cell_type on the 2-D embedding;
  * the same scores averaged over seeds 0..4, and the wall time of one run.

--timing N: log1p(CP10k) + PCA-50 (sklearn, randomized, seed 0) of N random cells (seed 0) of
kang2018_pbmc.h5ad (../shared/data), written raw to /tmp/umap_timing_N.f32 (+ .labels.txt) for
`cargo run --release -p scllm-eval --example umap_bench`; prints umap-learn's scores and time
on that matrix (parallel, no random_state: umap-learn's fast path; the second of two runs,
so that numba's compilation is not counted).
"""
import argparse
import json
import os
import time
import warnings

import anndata as ad
import numpy as np
import scipy.sparse as sp
import sklearn
import umap
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

warnings.filterwarnings("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval")
K = 15


def knn_preservation(x, y, k=K):
    a = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    b = NearestNeighbors(n_neighbors=k).fit(y).kneighbors(return_distance=False)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(x))]))


def scores(x, y, labels):
    return {
        "trustworthiness": float(trustworthiness(x, y, n_neighbors=K)),
        "knn_preservation": knn_preservation(x, y),
        "silhouette": float(silhouette_score(y, labels)),
    }


def run_umap(x, seed):
    t = time.perf_counter()
    m = umap.UMAP(n_neighbors=K, min_dist=0.1, random_state=seed)
    y = m.fit_transform(x)
    return y, time.perf_counter() - t


def timing(n, shared):
    a = ad.read_h5ad(os.path.join(shared, "kang2018_pbmc.h5ad"))
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(a.n_obs, size=min(n, a.n_obs), replace=False))
    a = a[idx].copy()
    x = a.X.astype(np.float64)
    x = sp.csr_matrix(x)
    s = np.asarray(x.sum(1)).ravel()
    x = sp.diags(1e4 / np.maximum(s, 1)) @ x
    x.data = np.log1p(x.data)
    pcs = PCA(50, svd_solver="randomized", random_state=0).fit_transform(x.toarray()).astype(np.float32)
    labels = a.obs["cell_type"].astype(str).values
    base = f"/tmp/umap_timing_{len(idx)}"
    pcs.tofile(base + ".f32")
    with open(base + ".labels.txt", "w") as f:
        f.write("\n".join(labels) + "\n")
    # numba JIT warm-up on the same code path (nearest-neighbour descent above 4,096 cells), not timed
    umap.UMAP(n_neighbors=K, min_dist=0.1).fit_transform(pcs)
    t = time.perf_counter()
    y = umap.UMAP(n_neighbors=K, min_dist=0.1).fit_transform(pcs)
    dt = time.perf_counter() - t
    print(json.dumps({"n": len(idx), "d": 50, "file": base + ".f32", "umap_learn_seconds": dt,
                      **scores(pcs, y, labels)}, indent=1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timing", type=int)
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    args = ap.parse_args()
    if args.timing:
        timing(args.timing, args.shared)
        return
    a = ad.read_h5ad(os.path.join(OUT, "kang_ref.h5ad"))
    x = np.asarray(a.obsm["X_pca"], dtype=np.float32)
    labels = a.obs["cell_type"].astype(str).values
    run_umap(x[:200], 0)  # numba JIT warm-up, not timed
    y, dt = run_umap(x, 0)
    ref = scores(x, y, labels)
    seeds = [scores(x, run_umap(x, s)[0], labels) for s in range(5)]
    mean = {k: float(np.mean([s[k] for s in seeds])) for k in ref}
    out = {
        "source": "tests/fixtures/eval/kang_ref.h5ad obsm['X_pca'] (float32), labels obs['cell_type']",
        "generator": "tools/make_umap_fixture.py",
        "umap_learn": umap.__version__ if hasattr(umap, "__version__") else "?",
        "sklearn": sklearn.__version__,
        "params": {"n_neighbors": K, "min_dist": 0.1, "spread": 1.0, "random_state": 0, "metric": "euclidean"},
        "n": int(x.shape[0]),
        "d": int(x.shape[1]),
        "k": K,
        "embedding": [float(v) for v in y.astype(np.float32).ravel()],
        "scores": ref,
        "scores_mean_seeds_0_4": mean,
        "seconds_single_thread_random_state": dt,
    }
    with open(os.path.join(OUT, "umap_reference.json"), "w") as f:
        json.dump(out, f)
    print(json.dumps({k: v for k, v in out.items() if k != "embedding"}, indent=1))


if __name__ == "__main__":
    main()
