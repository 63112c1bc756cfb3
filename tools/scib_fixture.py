"""scIB metric parity fixture: scib-metrics' own numbers on a committed multi-batch subset.

Writes tests/fixtures/integration/kang400_scib.h5ad (400 Kang et al. 2018 PBMCs from
tests/fixtures/data/kang2018_pbmc_400.h5ad, 8 donors as batches; X = log1p(CP10k) on the 500 most
variable genes; obsm: X_pca (scanpy ARPACK PCA, 50 comps: the unintegrated embedding),
X_pca10 (its first 10 comps), X_label (a label-driven embedding with donor noise, so that both
bio and batch scores take non-trivial values)) and kang400_scib.json (the Benchmarker's results
table, per-label kBET, per-cell LISI and silhouettes, k-means clusters).

Neighbours are exact (scikit-learn, brute force, each cell itself first), in the Benchmarker and in
kBET's diffusion maps (scib_metrics.nearest_neighbors.pynndescent patched), as scllm computes them.

Run: .venv-ref/bin/python tools/scib_fixture.py   (scib-metrics 0.5.10, scanpy 1.11.5,
scikit-learn 1.9.1, jax 0.x CPU; `WITH_TORCH=0 bash tools/setup_reference_env.sh` then
`pip install scib-metrics==0.5.10`). Data licence: GPL-3 (muscat), as the source fixture.
"""

import json
import pathlib

import anndata as ad
import numpy as np
import scanpy as sc
import scib_metrics
import scib_metrics.nearest_neighbors as snn
from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation
from scib_metrics.nearest_neighbors import NeighborsResults
from sklearn.neighbors import NearestNeighbors

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "integration"


def exact(X, k):
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(X)
    dist, idx = nn.kneighbors(X)
    # itself first (brute force already returns it first unless a duplicate ties at 0)
    for i in range(idx.shape[0]):
        if idx[i, 0] != i:
            j = int(np.flatnonzero(idx[i] == i)[0]) if (idx[i] == i).any() else k - 1
            idx[i, 1 : j + 1] = idx[i, 0:j].copy()
            dist[i, 1 : j + 1] = dist[i, 0:j].copy()
            idx[i, 0], dist[i, 0] = i, 0.0
    # the expanded |a|² + |b|² - 2a·b leaves ~1e-7 on the diagonal; pynndescent and scib-metrics'
    # jax search measure the cell's own distance as exactly 0, which UMAP's rho depends on
    dist[:, 0] = 0.0
    return NeighborsResults(indices=idx, distances=dist.astype(np.float32))


def exact_pynndescent(X, n_neighbors, **_):
    return exact(np.asarray(X), n_neighbors)


def main():
    snn.pynndescent = exact_pynndescent  # kBET's diffusion-map neighbours
    a = ad.read_h5ad(ROOT / "tests" / "fixtures" / "data" / "kang2018_pbmc_400.h5ad")
    a.obs = a.obs[["cell_type", "donor"]].copy()
    a.obs["cell_type"] = a.obs["cell_type"].astype(str).astype("category")
    a.obs["donor"] = a.obs["donor"].astype(str).astype("category")
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=500, flavor="seurat")
    a = a[:, a.var["highly_variable"]].copy()
    a.X = a.X.astype(np.float32)
    a.var = a.var[["gene_symbol"]].copy()
    del a.uns["log1p"], a.uns["hvg"]
    sc.tl.pca(a, n_comps=50, svd_solver="arpack", use_highly_variable=False)
    a.obsm["X_pca"] = a.obsm["X_pca"].astype(np.float32)
    for k in ("pca",):
        a.uns.pop(k, None)
    a.varm.clear()
    a.obsm["X_pca10"] = np.ascontiguousarray(a.obsm["X_pca"][:, :10])
    rng = np.random.default_rng(0)
    codes = a.obs["cell_type"].cat.codes.to_numpy()
    dcodes = a.obs["donor"].cat.codes.to_numpy()
    lab = np.zeros((a.n_obs, 8), np.float32)
    lab[np.arange(a.n_obs), codes] = 3.0
    lab += rng.normal(0, 1.0, lab.shape).astype(np.float32)
    lab[:, 0] += 0.8 * dcodes.astype(np.float32)  # a donor effect along one axis
    a.obsm["X_label"] = lab
    keys = ["X_pca", "X_pca10", "X_label"]

    bm = Benchmarker(
        a,
        batch_key="donor",
        label_key="cell_type",
        embedding_obsm_keys=keys,
        pre_integrated_embedding_obsm_key="X_pca",
        bio_conservation_metrics=BioConservation(nmi_ari_cluster_labels_leiden=True),
        batch_correction_metrics=BatchCorrection(),
        progress_bar=False,
    )
    bm.prepare(neighbor_computer=exact)
    bm.benchmark()
    table = bm.get_results(min_max_scale=False)
    results = {}
    for key in keys:
        results[key] = {col: float(table.loc[key, col]) for col in table.columns}

    detail = {}
    labels = a.obs["cell_type"].to_numpy()
    batches = a.obs["donor"].to_numpy()
    for key in keys:
        X = a.obsm[key]
        nn90 = exact(X, 90)
        _, kdf = scib_metrics.kbet_per_label(nn90.subset_neighbors(50), batches, labels, return_df=True)
        km = scib_metrics.utils.KMeans(len(np.unique(labels)))
        km.fit(X)
        detail[key] = {
            "ilisi_per_cell": scib_metrics.lisi_knn(nn90, batches).astype(float).tolist(),
            "clisi_per_cell": scib_metrics.lisi_knn(nn90, labels).astype(float).tolist(),
            "silhouette_per_cell": scib_metrics.utils.silhouette_samples(X, labels).astype(float).tolist(),
            "kbet_per_label": {str(c): (None if np.isnan(s) else float(s)) for c, s in zip(kdf["cluster"], kdf["kBET"])},
            "kmeans_clusters": np.asarray(km.labels_).astype(int).tolist(),
            "pcr": float(scib_metrics.utils.principal_component_regression(X, batches, categorical=True)),
        }
    OUT.mkdir(parents=True, exist_ok=True)
    a.uns["source"] = "tests/fixtures/data/kang2018_pbmc_400.h5ad (muscat, GPL-3); tools/scib_fixture.py"
    a.write_h5ad(OUT / "kang400_scib.h5ad")
    json.dump(
        {
            "generator": "tools/scib_fixture.py",
            "versions": {
                "scib-metrics": scib_metrics.__version__,
                "scanpy": sc.__version__,
            },
            "batch": "donor",
            "label": "cell_type",
            "pre": "X_pca",
            "results": results,
            "detail": detail,
        },
        open(OUT / "kang400_scib.json", "w"),
        indent=1,
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
