"""scIB metrics: `scllm evaluate-embedding` against scib-metrics' `Benchmarker` on CPU, in one
run, on the same synthetic file (issue 18's benchmark).

Data (seeded): N cells x 50 dims, 10 cell types and 5 batches drawn uniformly; each type has a
mean ~ N(0, 2²) per dim, each batch a shift ~ N(0, 1) per dim, cells N(0, 1) noise around it.
obsm['X_pre'] carries the full batch shift (the unintegrated embedding), obsm['X_emb'] 0.3 of it
(a partly integrated one); X is X_pre. Both tools score X_emb with X_pre as the PCR reference:
the Benchmarker's default metric set (no Leiden) and its default neighbours (pynndescent, so
approximate; scllm's are exact).

Each side runs in its own process; time is wall clock of the whole process (reading the file
included; for the reference, also `import scib_metrics` and jax's compilation, which is part of
what a user waits for), memory the process's peak RSS (wait4). Usage:

    .venv-ref/bin/python bench/integration_metrics.py [--cells 100000] [--cli target-bench/release/scllm]

Prints one markdown table (bench/RESULTS.md "scIB metrics").
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make(path, n, seed=0):
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    d, k, b = 50, 10, 5
    types = rng.integers(0, k, n)
    batches = rng.integers(0, b, n)
    mu = rng.normal(0, 2.0, (k, d))
    shift = rng.normal(0, 1.0, (b, d))
    noise = rng.normal(0, 1.0, (n, d))
    pre = (mu[types] + shift[batches] + noise).astype(np.float32)
    emb = (mu[types] + 0.3 * shift[batches] + noise).astype(np.float32)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type{t}" for t in types]),
            "batch": pd.Categorical([f"batch{x}" for x in batches]),
        },
        index=[f"c{i}" for i in range(n)],
    )
    a = ad.AnnData(X=pre.copy(), obs=obs)
    a.obsm["X_pre"] = pre
    a.obsm["X_emb"] = emb
    a.write_h5ad(path)


def reference(path):
    """Runs in a child process: the Benchmarker on X_emb, results and phase times as JSON."""
    t0 = time.perf_counter()
    import anndata as ad
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    a = ad.read_h5ad(path)
    bm = Benchmarker(
        a,
        batch_key="batch",
        label_key="cell_type",
        embedding_obsm_keys=["X_emb"],
        pre_integrated_embedding_obsm_key="X_pre",
        bio_conservation_metrics=BioConservation(),
        batch_correction_metrics=BatchCorrection(),
        n_jobs=os.cpu_count(),
        progress_bar=False,
    )
    t1 = time.perf_counter()
    bm.prepare()
    t2 = time.perf_counter()
    bm.benchmark()
    t3 = time.perf_counter()
    df = bm.get_results(min_max_scale=False)
    out = {c: float(df.loc["X_emb", c]) for c in df.columns}
    print(json.dumps({"results": out, "load_s": t1 - t0, "neighbors_s": t2 - t1, "metrics_s": t3 - t2}))


def run_measured(cmd, env=None):
    """(stdout, seconds, peak RSS in MiB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed with status {status}")
    return out.decode(), secs, ru.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--cli", default=str(ROOT / "target-bench" / "release" / "scllm"))
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    if args.reference:
        reference(args.reference)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.h5ad")
        make(path, args.cells)
        cmd = [args.cli, "evaluate-embedding", path, "--use-rep", "X_emb", "--pre-rep", "X_pre",
               "--batch", "batch", "--label", "cell_type", "--json"]
        out, s_secs, s_mb = run_measured(cmd)
        ours = {m["name"]: m["value"] for m in json.loads(out)["embeddings"][0]["metrics"]}
        rows = []
        if not args.skip_reference:
            out, r_secs, r_mb = run_measured([sys.executable, __file__, "--reference", path])
            ref = json.loads(out.strip().splitlines()[-1])
            theirs = ref["results"]
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
        feats = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags.split()]
        print(f"Machine: {cpu}, {os.cpu_count()} threads, {'/'.join(feats)}; {platform.python_version()}")
        print(f"Command: {' '.join(cmd[:1] + ['evaluate-embedding', 'FILE'] + cmd[3:])}\n")
        print(f"| {args.cells:,} cells x 50 dims | wall s | peak RSS MiB |")
        print("|---|---|---|")
        print(f"| scllm | {s_secs:.1f} | {s_mb:.0f} |")
        if not args.skip_reference:
            print(f"| scib-metrics Benchmarker | {r_secs:.1f} (load {ref['load_s']:.1f}, neighbours {ref['neighbors_s']:.1f}, metrics {ref['metrics_s']:.1f}) | {r_mb:.0f} |")
            print(f"| ratio | **{r_secs / s_secs:.1f}x faster** | **{s_mb / r_mb:.2f}x** |\n")
            print("| metric | scllm | scib-metrics |")
            print("|---|---|---|")
            for k, v in ours.items():
                print(f"| {k} | {v:.4f} | {theirs.get(k, float('nan')):.4f} |")
        else:
            print(json.dumps(ours, indent=1))


if __name__ == "__main__":
    main()
