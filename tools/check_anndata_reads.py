#!/usr/bin/env python3
"""Dev-run check: files that scllm writes open in Python anndata with the same values.

Runs the `scllm` binary on the committed fixtures (round trip through `preprocess` with no steps,
and a full preprocess), then reads every output with anndata and compares with what anndata reads
from the input.

    cargo build --release -p scllm
    .venv-ref/bin/python tools/check_anndata_reads.py [path/to/scllm]
"""
import os
import subprocess
import sys
import tempfile
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "scllm")
DATA = os.path.join(ROOT, "tests", "fixtures", "data")


def dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def same_frame(a: pd.DataFrame, b: pd.DataFrame, what):
    assert list(a.index) == list(b.index), f"{what}: index differs"
    assert list(a.columns) == list(b.columns), f"{what}: columns {list(a.columns)} vs {list(b.columns)}"
    for c in a.columns:
        x, y = a[c], b[c]
        assert str(x.dtype) == str(y.dtype), f"{what}[{c}]: dtype {x.dtype} vs {y.dtype}"
        assert x.equals(y) or (x.isna() == y.isna()).all() and (x[~x.isna()] == y[~y.isna()]).all(), f"{what}[{c}] differs"


def main():
    tmp = tempfile.mkdtemp()
    files = sorted(f for f in os.listdir(DATA) if f.endswith(".h5ad"))
    for f in files:
        src = os.path.join(DATA, f)
        for comp in ("none", "gzip", "lzf"):
            out = os.path.join(tmp, f"{comp}_{f}")
            subprocess.run([BIN, "preprocess", src, "-o", out, "--compression", comp], check=True, capture_output=True)
            a, b = ad.read_h5ad(src), ad.read_h5ad(out)
            assert a.shape == b.shape, f
            assert np.array_equal(dense(a.X), dense(b.X), equal_nan=True), f"{f}: X differs"
            assert a.X.dtype == b.X.dtype, f"{f}: X dtype {a.X.dtype} vs {b.X.dtype}"
            same_frame(a.obs, b.obs, f"{f} obs")
            same_frame(a.var, b.var, f"{f} var")
            for k in a.layers:
                assert np.array_equal(dense(a.layers[k]), dense(b.layers[k]), equal_nan=True), f"{f}: layer {k}"
            for k in a.obsm:
                assert np.array_equal(np.asarray(a.obsm[k]), np.asarray(b.obsm[k]), equal_nan=True), f"{f}: obsm {k}"
            if a.raw is not None:
                assert np.array_equal(dense(a.raw.X), dense(b.raw.X)), f"{f}: raw.X"
        print(f"ok  {f}: scllm's output reads in anndata {ad.__version__} with identical X, obs, var, layers, obsm, raw")
    out = os.path.join(tmp, "pp.h5ad")
    subprocess.run([BIN, "preprocess", os.path.join(DATA, "kang2018_pbmc_400.h5ad"), "-o", out, "--normalize-total",
                    "--log1p", "--hvg", "200", "--hvg-flavor", "cell_ranger", "--bin", "51", "--scale"], check=True,
                   capture_output=True)
    p = ad.read_h5ad(out)
    assert {"X_normed", "X_log1p", "X_binned", "X_scaled"} <= set(p.layers), p
    assert p.var["highly_variable"].sum() == 200
    print("ok  preprocess output:", p)


if __name__ == "__main__":
    main()
