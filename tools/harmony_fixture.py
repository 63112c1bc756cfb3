#!/usr/bin/env python3
"""harmonypy's own Harmony runs on the committed Kang 2018 cells, to hold scllm's Harmony to.

Run with the reference environment (harmonypy 2.1.0, scanpy 1.11, anndata 0.12, numpy 2):

    .venv-ref/bin/python tools/harmony_fixture.py

Reads tests/fixtures/data/kang2018_pbmc_400.h5ad (400 cells, 8 donors in obs['donor'], 50
each), runs scanpy normalize_total(1e4) + log1p + PCA (20 components, arpack, seed 0) on all
genes, and writes to tests/fixtures/integration/:

  * harmony_kang400_pcs.f32: the PCs (400 x 20, row-major, little-endian float32; harmonypy is
    fed exactly these values, so the input is the same bits on both sides);
  * harmony_kang400_default_zcorr.f32 / harmony_kang400_alt_zcorr.f32: harmonypy's Z_corr
    (400 x 20, the orientation scanpy.external.pp.harmony_integrate stores in
    obsm['X_pca_harmony']) for two option sets: harmonypy's defaults (random_state 0) and
    "alt" (theta 1, fixed lamb 1, sigma 0.2, nclust 8, tau 5, block_size 0.1,
    max_iter_harmony 5, max_iter_kmeans 6, epsilon_cluster 1e-5, epsilon_harmony 1e-6,
    random_state 7: all 5 iterations run, and k-means checks its convergence);
  * harmony_kang400.json: n, d, batch codes (donors numbered in sorted label order, as
    harmonypy numbers them), cell types, per run the options, the initial centroids Y (d x K,
    from the same call with max_iter_harmony=0: harmonypy builds Y from the seeded k-means
    init and returns it untouched), the objective per iteration and the k-means rounds.
    The wall time of each call is printed, not stored, so regenerating gives the same bytes.

Data: kang2018_pbmc_400.h5ad is a subset of HelenaLC/muscat's Kang et al. 2018 PBMCs (GPL-3,
test data only; see tests/fixtures/README.md). harmonypy is GPL-3.0-or-later; only its outputs
are stored here.
"""
import json
import os
import time

import anndata as ad
import harmonypy
import numpy as np
import scanpy as sc
from importlib.metadata import version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests/fixtures/data/kang2018_pbmc_400.h5ad")
OUT = os.path.join(ROOT, "tests/fixtures/integration")

RUNS = {
    "default": {},
    "alt": dict(theta=1.0, lamb=1.0, sigma=0.2, nclust=8, tau=5, block_size=0.1,
                max_iter_harmony=5, max_iter_kmeans=6, epsilon_cluster=1e-5,
                epsilon_harmony=1e-6, random_state=7),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    adata = ad.read_h5ad(DATA)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=20, svd_solver="arpack", random_state=0)
    pcs = np.ascontiguousarray(adata.obsm["X_pca"], dtype=np.float32)
    n, d = pcs.shape
    donors = np.asarray(adata.obs["donor"]).astype(str)
    labels, codes = np.unique(donors, return_inverse=True)
    meta = {"batch": codes.astype(np.int64)}
    pcs.astype("<f4").tofile(os.path.join(OUT, "harmony_kang400_pcs.f32"))

    runs, times = {}, {}
    for name, opts in RUNS.items():
        init = harmonypy.run_harmony(pcs.astype(np.float64), meta, "batch", verbose=False,
                                     **{**opts, "max_iter_harmony": 0})
        y0 = np.asarray(init.Y, dtype=np.float32)  # d x K
        t0 = time.perf_counter()
        ho = harmonypy.run_harmony(pcs.astype(np.float64), meta, "batch", verbose=False, **opts)
        seconds = time.perf_counter() - t0
        z = np.asarray(ho.Z_corr)
        assert z.shape == (n, d), z.shape
        np.ascontiguousarray(z, dtype="<f4").tofile(
            os.path.join(OUT, f"harmony_kang400_{name}_zcorr.f32"))
        runs[name] = {
            "options": opts,
            "k": int(ho.K),
            "init_centroids": [float(v) for v in y0.ravel(order="C")],  # d x K row-major
            "objective_harmony": [float(v) for v in ho.objective_harmony],
            "kmeans_rounds": [int(v) for v in ho.kmeans_rounds],
            "zcorr_file": f"harmony_kang400_{name}_zcorr.f32",
        }
        times[name] = seconds

    header = {
        "produced_by": "tools/harmony_fixture.py",
        "versions": {p: version(p) for p in ("harmonypy", "scanpy", "anndata", "numpy")},
        "n": n,
        "d": d,
        "pcs_file": "harmony_kang400_pcs.f32",
        "batch_labels": labels.tolist(),
        "batches": codes.tolist(),
        "cell_type": np.asarray(adata.obs["cell_type"]).astype(str).tolist(),
        "runs": runs,
    }
    with open(os.path.join(OUT, "harmony_kang400.json"), "w") as f:
        json.dump(header, f, indent=1)
        f.write("\n")
    for name, run in runs.items():
        print(name, "K", run["k"], "objective", run["objective_harmony"], f"{times[name]:.3f}s")


if __name__ == "__main__":
    main()
