#!/usr/bin/env python3
"""Regenerate the committed test fixtures under tests/fixtures/ with the reference packages.

Every number the Rust tests compare against comes from here: anndata writes the input files,
scanpy computes the preprocessing results, scgpt's own `binning` computes the bins.

    bash tools/setup_reference_env.sh          # once: .venv-ref + scgpt sources in ref/
    .venv-ref/bin/python tools/make_fixtures.py

Inputs: ../shared/data (the project's shared datasets; licences in tests/fixtures/README.md).
"""
import json
import os
import shutil
import sys
import types
import gzip
import importlib
import logging
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.io
import scipy.sparse as sp

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
FIX = os.path.join(ROOT, "tests", "fixtures")
DATA = os.path.join(FIX, "data")
PARITY = os.path.join(FIX, "parity")
BAD = os.path.join(FIX, "bad")
for d in (DATA, PARITY, BAD):
    os.makedirs(d, exist_ok=True)


def scgpt_binning():
    """scgpt.preprocess.binning without importing scgpt's training stack (torch is stubbed:
    the numpy path of `binning` never touches it)."""
    torch = types.ModuleType("torch")
    torch.Tensor = type("Tensor", (), {})
    sys.modules.setdefault("torch", torch)
    pkg = types.ModuleType("scgpt")
    pkg.__path__ = [os.path.join(ROOT, "ref", "scgpt")]
    pkg.logger = logging.getLogger("scGPT")
    sys.modules["scgpt"] = pkg
    return importlib.import_module("scgpt.preprocess").binning


def read(name):
    return ad.read_h5ad(os.path.join(SHARED, name))


def drop_unexpressed(a):
    x = a.X.tocsc() if sp.issparse(a.X) else a.X
    keep = np.asarray((x != 0).sum(axis=0)).ravel() > 0
    return a[:, keep].copy()


def top_genes(a, n):
    tot = np.asarray(a.X.sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-tot, kind="stable")[:n])
    return a[:, keep].copy()


def subsets():
    rng = np.random.default_rng(0)
    # pbmc3k: 300 cells (labelled and unlabelled), genes seen in them; gzip-compressed
    a = read("pbmc3k.h5ad")
    idx = np.sort(rng.choice(a.n_obs, 300, replace=False))
    p3 = drop_unexpressed(a[idx].copy())
    p3.write_h5ad(os.path.join(DATA, "pbmc3k_300.h5ad"), compression="gzip")
    # kang2018_pbmc: 50 cells per donor, all genes
    k = read("kang2018_pbmc.h5ad")
    idx = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(k.obs["donor"] == d), 50, replace=False) for d in k.obs["donor"].cat.categories
    ]))
    k[idx].copy().write_h5ad(os.path.join(DATA, "kang2018_pbmc_400.h5ad"))
    # cellbench: 60 cells per platform, 3000 most expressed genes; lzf-compressed
    c = read("cellbench_3cl.h5ad")
    idx = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(c.obs["platform"] == p), 60, replace=False) for p in c.obs["platform"].cat.categories
    ]))
    top_genes(c[idx].copy(), 3000).write_h5ad(os.path.join(DATA, "cellbench_3cl_120.h5ad"), compression="lzf")
    # pancreas: 75 distinct cells per species, 3000 most expressed genes
    pa = read("pancreas_baron_human_mouse.h5ad")
    pa = pa[~pa.obs["is_duplicate"].astype(bool)].copy()
    idx = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(pa.obs["species"] == s), 75, replace=False) for s in pa.obs["species"].cat.categories
    ]))
    top_genes(pa[idx].copy(), 3000).write_h5ad(os.path.join(DATA, "pancreas_150.h5ad"))
    # pbmc68k_reduced: the old layout, byte-identical copy
    shutil.copy(os.path.join(SHARED, "pbmc68k_reduced.h5ad"), os.path.join(DATA, "pbmc68k_reduced.h5ad"))
    return p3


def features():
    """Every AnnData feature scllm reads, written by anndata, with the expected values as JSON."""
    rng = np.random.default_rng(1)
    n, g = 6, 5
    X = rng.normal(size=(n, g))
    obs = pd.DataFrame(
        {
            "s": [f"cell type {i}" for i in range(n)],
            "i64": np.arange(n, dtype=np.int64) * 3,
            "i32": np.arange(n, dtype=np.int32) - 2,
            "f64": [1.5, np.nan, 2.0, -3.25, 0.0, 7.0],
            "f32": np.array([0.5, 1, 2, 3, np.nan, 5], dtype=np.float32),
            "b": [True, False, True, True, False, False],
            "cat": pd.Categorical(["B", "T", None, "B", "NK", "T"]),
            "ordcat": pd.Categorical(["lo", "hi", "lo", "mid", "hi", "lo"], categories=["lo", "mid", "hi"], ordered=True),
            "nint": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "nbool": pd.array([True, None, False, True, True, None], dtype="boolean"),
        },
        index=[f"c{i}" for i in range(n)],
    )
    var = pd.DataFrame({"gene_symbol": list("ABCDE"), "n": np.arange(g)}, index=[f"G{j}" for j in range(g)])
    a = ad.AnnData(X.astype(np.float64), obs=obs, var=var)
    counts = sp.random(n, g, density=0.5, format="csr", random_state=3, dtype=np.float32)
    counts.data = np.ceil(counts.data * 10)
    a.layers["counts_csc"] = counts.tocsc()
    a.layers["counts_i32"] = counts.astype(np.int32).toarray()
    a.layers["counts_i64_csr"] = counts.astype(np.int64)
    a.obsm["X_pca"] = rng.normal(size=(n, 3)).astype(np.float32)
    a.varm["loadings"] = rng.normal(size=(g, 2))
    a.uns["title"] = "fixture ü"
    a.uns["n_int"] = 42
    a.uns["pi"] = 3.25
    a.uns["flag"] = True
    a.uns["nested"] = {"inner": "x", "k": 7}
    a.uns["colors"] = np.array(["#ff0000", "#00ff00"], dtype=object)
    raw = ad.AnnData(counts, obs=obs[[]], var=var[[]])
    a.raw = raw
    for comp, name in [("gzip", "anndata_features_gzip.h5ad"), ("lzf", "anndata_features_lzf.h5ad"), (None, "anndata_features.h5ad")]:
        a.write_h5ad(os.path.join(DATA, name), compression=comp)
    exp = {
        "shape": [n, g],
        "X": X.ravel().tolist(),
        "obs_index": list(obs.index),
        "var_index": list(var.index),
        "s": list(obs["s"]),
        "i64": obs["i64"].tolist(),
        "i32": obs["i32"].tolist(),
        "f64": [None if np.isnan(v) else v for v in obs["f64"]],
        "f32": [None if np.isnan(v) else float(v) for v in obs["f32"]],
        "b": obs["b"].tolist(),
        "cat": [None if pd.isna(v) else v for v in obs["cat"]],
        "ordcat": list(obs["ordcat"].astype(str)),
        "nint": [None if pd.isna(v) else int(v) for v in obs["nint"]],
        "nbool": [None if pd.isna(v) else bool(v) for v in obs["nbool"]],
        "counts": counts.toarray().ravel().tolist(),
        "X_pca": a.obsm["X_pca"].astype(np.float64).ravel().tolist(),
        "loadings": a.varm["loadings"].ravel().tolist(),
    }
    with open(os.path.join(DATA, "anndata_features.json"), "w") as f:
        json.dump(exp, f)


def text_formats(p3):
    """A 10x folder and a CSV from 40 pbmc3k cells × 200 genes, with scanpy's reading of each."""
    a = p3[:40, :200].copy()
    d = os.path.join(DATA, "pbmc3k_10x")
    os.makedirs(d, exist_ok=True)
    with gzip.open(os.path.join(d, "matrix.mtx.gz"), "wb") as f:
        scipy.io.mmwrite(f, sp.csr_matrix(a.X.T).astype(np.int64), field="integer")
    ens = a.var["ensembl_id"] if "ensembl_id" in a.var else a.var_names
    with gzip.open(os.path.join(d, "features.tsv.gz"), "wt") as f:
        for e, s in zip(ens, a.var["gene_symbol"]):
            f.write(f"{e}\t{s}\tGene Expression\n")
    with gzip.open(os.path.join(d, "barcodes.tsv.gz"), "wt") as f:
        f.write("\n".join(a.obs_names) + "\n")
    t = sc.read_10x_mtx(d, var_names="gene_symbols", make_unique=True)
    t.write_h5ad(os.path.join(DATA, "pbmc3k_10x_scanpy.h5ad"))
    df = pd.DataFrame(a.X.toarray().astype(np.int64), index=a.obs_names, columns=a.var_names)
    df.to_csv(os.path.join(DATA, "pbmc3k_40.csv"))
    sc.read_csv(os.path.join(DATA, "pbmc3k_40.csv"), first_column_names=True).write_h5ad(
        os.path.join(DATA, "pbmc3k_40_csv_scanpy.h5ad"))


def parity(p3):
    """scanpy's own numbers on the pbmc3k_300 fixture; scgpt's own bins."""
    binning = scgpt_binning()
    a = p3.copy()
    counts = a.X.copy()
    fc = sc.pp.filter_cells(a, min_genes=200, inplace=False)[0]
    fg = sc.pp.filter_genes(a, min_cells=3, inplace=False)[0]
    a.obs["keep_min_genes_200"] = fc
    a.var["keep_min_cells_3"] = fg
    sc.pp.normalize_total(a, target_sum=1e4)
    a.layers["X_normed"] = a.X.copy()
    sc.pp.log1p(a)
    a.layers["X_log1p"] = a.X.copy()
    for flavor in ("seurat", "cell_ranger"):
        r = sc.pp.highly_variable_genes(a, flavor=flavor, n_top_genes=500, inplace=False)
        a.var[f"hvg_{flavor}"] = r["highly_variable"].to_numpy()
        a.var[f"dispnorm_{flavor}"] = r["dispersions_norm"].to_numpy().astype(np.float64)
        a.var[f"disp_{flavor}"] = r["dispersions"].to_numpy().astype(np.float64)
        a.var[f"means_{flavor}"] = r["means"].to_numpy().astype(np.float64)
    # median target (normalize_total without target_sum)
    b = ad.AnnData(counts.copy())
    sc.pp.normalize_total(b)
    a.layers["X_normed_median"] = b.X
    # scale on the 500 seurat HVGs, clipped at 10
    h = a[:, a.var["hvg_seurat"].to_numpy()].copy()
    sc.pp.scale(h, max_value=10)
    a.obsm["X_scaled_hvg_seurat"] = np.asarray(h.X, dtype=np.float32)
    # scGPT binning of the log1p layer, cells in order, after np.random.seed(0)
    np.random.seed(0)
    lx = a.layers["X_log1p"].toarray()
    bins = np.stack([binning(lx[i], 51) for i in range(a.n_obs)]).astype(np.int64)
    a.layers["X_binned"] = sp.csr_matrix(bins)
    a.X = counts
    a.write_h5ad(os.path.join(PARITY, "pp_pbmc3k_300.h5ad"), compression="gzip")

    # seurat_v3 on the full shared files (the selected gene names only)
    for name, key, n_top in [("pbmc3k.h5ad", None, 2000), ("kang2018_pbmc.h5ad", None, 500),
                             ("kang2018_pbmc.h5ad", "donor", 500)]:
        full = read(name)
        r = sc.pp.highly_variable_genes(full, flavor="seurat_v3", n_top_genes=n_top, batch_key=key, inplace=False)
        out = {"file": name, "batch_key": key, "n_top_genes": n_top,
               "highly_variable": list(full.var_names[r["highly_variable"].to_numpy()]),
               "variances_norm": r["variances_norm"].astype(float).tolist()}
        tag = name.replace(".h5ad", "") + (f"_{key}" if key else "")
        with open(os.path.join(PARITY, f"hvg_seurat_v3_{tag}.json"), "w") as f:
            json.dump(out, f)
    # seurat_v3 on a committed fixture too, so a bare clone checks it (skmisc's loess reports
    # near-singularities on the 300-cell pbmc3k subset, so the kang subset is used)
    k4 = ad.read_h5ad(os.path.join(DATA, "kang2018_pbmc_400.h5ad"))
    for key in (None, "donor"):
        r = sc.pp.highly_variable_genes(k4, flavor="seurat_v3", n_top_genes=300, batch_key=key, inplace=False)
        tag = "kang2018_pbmc_400" + (f"_{key}" if key else "")
        with open(os.path.join(PARITY, f"hvg_seurat_v3_{tag}.json"), "w") as f:
            json.dump({"file": "kang2018_pbmc_400.h5ad", "batch_key": key, "n_top_genes": 300,
                       "highly_variable": list(k4.var_names[r["highly_variable"].to_numpy()]),
                       "variances_norm": r["variances_norm"].astype(float).tolist()}, f)


def bad_inputs():
    """Files a user might hand scllm by mistake."""
    with open(os.path.join(BAD, "not_hdf5.h5ad"), "w") as f:
        f.write("cell,gene1\nc1,3\n")
    with h5py.File(os.path.join(BAD, "hdf5_not_anndata.h5ad"), "w") as f:
        f["weights"] = np.zeros(3)
    small = ad.AnnData(
        sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 1]], dtype=np.float32)),
        obs=pd.DataFrame({"cell_type": pd.Categorical(["B", "T"])}, index=["c1", "c2"]),
        var=pd.DataFrame(index=["CD3E", "MS4A1", "LYZ"]),
    )
    noX = small.copy()
    noX.X = None
    noX.write_h5ad(os.path.join(BAD, "no_x.h5ad"))
    neg = small.copy()
    neg.X = sp.csr_matrix(np.array([[1, 0, -2], [0, 3, 1]], dtype=np.float32))
    neg.write_h5ad(os.path.join(BAD, "negative.h5ad"))
    nan = small.copy()
    nan.X = sp.csr_matrix(np.array([[1, 0, np.nan], [0, 3, 1]], dtype=np.float32))
    nan.write_h5ad(os.path.join(BAD, "nan.h5ad"))
    dup = small.copy()
    dup.var_names = ["CD3E", "CD3E", "LYZ"]
    dup.write_h5ad(os.path.join(BAD, "duplicate_genes.h5ad"))
    novocab = small.copy()
    novocab.var_names = ["NOT_A_GENE_1", "NOT_A_GENE_2", "NOT_A_GENE_3"]
    novocab.write_h5ad(os.path.join(BAD, "no_vocab_overlap.h5ad"))


if __name__ == "__main__":
    p3 = subsets()
    features()
    text_formats(p3)
    parity(p3)
    bad_inputs()
    print("fixtures written under", FIX)
