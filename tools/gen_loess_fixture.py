#!/usr/bin/env python3
"""Generate parity fixtures for `scllm_pp::loess::loess_fitted`.

Reference: scikit-misc's `loess(x, y, span, degree)` with its defaults
(surface="interpolate", statistics="approximate", family="gaussian",
cell=0.2), exactly as scanpy's `highly_variable_genes(flavor="seurat_v3")`
calls it; we record `model.outputs.fitted_values`.

Inputs:
  * pbmc3k: x = log10(mean), y = log10(var) of the genes with var > 0,
    mean/var from scanpy's own `_get_mean_var` (ddof=1, float64) on the raw
    counts -- i.e. exactly the points scanpy hands to skmisc (no batch key).
  * kang2018_pbmc: same, all cells, plus one donor ("107") as a batch, the
    way seurat_v3 fits one loess per batch.
  * synthetic sets: heavy ties, n < 500 (skmisc's "exact trace" branch),
    small n (nvmax = 200 region, fc = 2) and a degree-1 / span-0.5 case.

Output format (crates/scllm-pp/tests/fixtures/loess/<name>.txt), plain text:
    line 1:  "<span> <degree> <n>"
    n lines: "<x> <y> <fitted>"   (Python repr of float64: round-trips exactly)

Usage: /work/.venv-ref/bin/python tools/gen_loess_fixture.py
"""

from __future__ import annotations

import os
import sys

import anndata as ad
import numpy as np
from scanpy.preprocessing._utils import _get_mean_var
from skmisc.loess import loess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "scllm-pp", "tests", "fixtures", "loess")
DATA = "/work/shared/data"


def fit(x: np.ndarray, y: np.ndarray, span: float, degree: int) -> np.ndarray:
    model = loess(x, y, span=span, degree=degree)
    model.fit()
    return np.asarray(model.outputs.fitted_values, dtype=np.float64)


def write(name: str, x, y, span: float = 0.3, degree: int = 2) -> None:
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    f = fit(x, y, span, degree)
    path = os.path.join(OUT, name + ".txt")
    with open(path, "w") as fh:
        fh.write(f"{span!r} {degree} {len(x)}\n")
        for a, b, c in zip(x.tolist(), y.tolist(), f.tolist()):
            fh.write(f"{a!r} {b!r} {c!r}\n")
    print(f"{name}: n={len(x)} -> {path} ({os.path.getsize(path)} bytes)")


def mean_var_points(X):
    mean, var = _get_mean_var(X)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    keep = var > 0
    return np.log10(mean[keep]), np.log10(var[keep])


def main() -> int:
    os.makedirs(OUT, exist_ok=True)

    a = ad.read_h5ad(os.path.join(DATA, "pbmc3k.h5ad"))
    x, y = mean_var_points(a.X)
    write("pbmc3k", x, y)

    k = ad.read_h5ad(os.path.join(DATA, "kang2018_pbmc.h5ad"))
    x, y = mean_var_points(k.X)
    write("kang2018", x, y)
    donor = k.obs["donor"].astype(str).to_numpy()
    x, y = mean_var_points(k.X[donor == "107"])
    write("kang2018_donor107", x, y)

    rng = np.random.default_rng(20240611)

    # Heavy ties: x on a coarse grid (like log10 mean of rare genes), noisy y.
    n = 3000
    x = np.round(rng.gamma(1.5, 1.0, n) * 8.0) / 8.0 - 3.0
    y = 0.3 * x**2 + np.sin(2 * x) + rng.normal(0, 0.3, n)
    write("synthetic_ties", x, y)

    # n < 500: skmisc takes the "interpolate/1.approx" branch (trace exact).
    n = 300
    x = rng.uniform(-2.0, 3.0, n)
    y = np.exp(-x) + x + rng.normal(0, 0.2, n)
    write("synthetic_n300", x, y)

    # Small n: nvmax = 200 > n, fc = floor(40 * 0.06) = 2.
    n = 40
    x = np.sort(rng.normal(0, 1, n))
    y = x**3 - x + rng.normal(0, 0.1, n)
    write("synthetic_n40", x, y)

    # Other span / degree.
    n = 1000
    x = rng.uniform(0, 10, n)
    y = np.sin(x) + rng.normal(0, 0.25, n)
    write("synthetic_deg1_span05", x, y, span=0.5, degree=1)
    write("synthetic_deg2_span075", x, y, span=0.75, degree=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
