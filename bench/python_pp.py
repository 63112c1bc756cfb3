"""scllm.pp against scanpy in one Python process, on the same AnnData: normalize_total(1e4) +
log1p + highly_variable_genes(seurat_v3, 2000) on kang2018_pbmc (../shared/data) and on a
synthetic 200k-cell matrix; and scllm.tl.embed against `scllm embed` (CLI) on the same cells.

Time: the best of --repeat runs of each side, alternating. Memory: the peak RSS above the RSS
before the call (/proc/self/clear_refs resets the peak between calls; Linux). Usage:

    python bench/python_pp.py [--repeat 3] [--cells 200000] [--cli target/release/scllm]

Prints one markdown table (bench/RESULTS.md "Python package").
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp

import scllm

ROOT = Path(__file__).resolve().parents[1]


def rss_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def measure(fn, adata):
    a = adata.copy()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = rss_kb("VmRSS:")
    t0 = time.perf_counter()
    fn(a)
    secs = time.perf_counter() - t0
    peak = rss_kb("VmHWM:") - before
    return secs, peak / 1024


def hvg_then_norm(pp):
    # seurat_v3 reads counts: select genes first, then normalise and log, as scanpy's docs do
    def run(a):
        pp.highly_variable_genes(a, n_top_genes=min(2000, a.n_vars - 1), flavor="seurat_v3")
        pp.normalize_total(a, target_sum=1e4)
        pp.log1p(a)
    return run


def synthetic(n, g=2000, density=0.08, seed=0):
    rng = np.random.default_rng(seed)
    nnz_per_row = rng.binomial(g, density, n)
    indptr = np.concatenate([[0], np.cumsum(nnz_per_row)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(g, k, replace=False)) for k in nnz_per_row]).astype(np.int32)
    mean = rng.gamma(0.6, 2.0, g)
    data = rng.poisson(mean[indices] + 0.5).astype(np.float32) + 1
    x = sp.csr_matrix((data, indices, indptr), shape=(n, g))
    a = ad.AnnData(x)
    a.var_names = [f"g{i}" for i in range(g)]
    a.obs_names = [f"c{i}" for i in range(n)]
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cells", type=int, default=200_000)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    ap.add_argument("--cli", default=str(target / "release" / "scllm"))
    args = ap.parse_args()
    shared = ROOT.parent / "shared" / "data" / "kang2018_pbmc.h5ad"
    sets = []
    if shared.is_file():
        sets.append(("kang2018_pbmc", ad.read_h5ad(shared)))
    sets.append((f"synthetic {args.cells // 1000}k", synthetic(args.cells)))
    rows = []
    for name, a in sets:
        if a.X.dtype != np.float32:
            a.X = a.X.astype(np.float32)
        best = {}
        for _ in range(args.repeat):
            for side, pp in (("scanpy", sc.pp), ("scllm", scllm.pp)):
                t, m = measure(hvg_then_norm(pp), a)
                b = best.setdefault(side, [float("inf"), float("inf")])
                b[0], b[1] = min(b[0], t), min(b[1], m)
        s, l = best["scanpy"], best["scllm"]
        rows.append((name, a.n_obs, a.n_vars, s[0], l[0], s[0] / l[0], s[1], l[1], l[1] / max(s[1], 1e-9)))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"scanpy {sc.__version__}, scllm {scllm.__version__}, python {sys.version.split()[0]}")
    print("| data | cells | genes | scanpy s | scllm s | speed-up | scanpy peak MB | scllm peak MB | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r[8]:.2f}" if r[6] >= 1 else "n/a (scanpy's peak stayed under the RSS before)"
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.2f}x | {r[6]:.0f} | {r[7]:.0f} | {ratio} |")

    # embed: the Python call and the CLI on the same cells, the embedding call's own rate
    if not Path(args.cli).is_file():
        print(f"\n(no CLI binary at {args.cli}: the embed comparison is skipped; pass --cli)")
    elif shared.is_file():
        a = ad.read_h5ad(shared)
        py = []
        for _ in range(args.repeat):
            b = a.copy()
            s = scllm.tl.embed(b)
            py.append(s["cells"] / s["embed_seconds"])
        cli = []
        with tempfile.TemporaryDirectory() as d:
            for _ in range(args.repeat):
                r = subprocess.run([args.cli, "embed", str(shared), "-o", f"{d}/o.h5ad", "--json"],
                                   capture_output=True, text=True, check=True)
                s = json.loads(r.stdout)
                cli.append(s["cells"] / s["embed_seconds"])
        print()
        print("| embed (shipped CellPLM), cells/s of the embedding call | best | runs |")
        print("|---|---:|---|")
        print(f"| scllm.tl.embed | {max(py):.0f} | {', '.join(f'{v:.0f}' for v in py)} |")
        print(f"| scllm embed (CLI) | {max(cli):.0f} | {', '.join(f'{v:.0f}' for v in cli)} |")
        print(f"| ratio Python / CLI | {max(py) / max(cli):.3f} | |")


if __name__ == "__main__":
    main()
