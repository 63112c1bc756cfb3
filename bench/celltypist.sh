#!/usr/bin/env bash
# CellTypist models on synthetic sparse cells (issue 14): `scllm baseline celltypist`'s job (the
# example bench_celltypist runs the same library call as the command, and builds without the
# model crates) vs `celltypist.annotate` 1.7.1, best match, 2 threads, each reading the .h5ad
# and writing the annotated query (predictions + probability matrix). Peak RSS from GNU time.
# Usage: bench/celltypist.sh [MODEL.pkl] [N_CELLS]
#   default model: tests/fixtures/celltypist/models/cd8.pkl (STCAT, 21 types x 2,213 genes)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-tests/fixtures/celltypist/models/cd8.pkl}
N=${2:-200000}
PY=${PY:-.venv-ref/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p scllm-eval --example bench_celltypist
BIN=$CARGO_TARGET_DIR/release/examples/bench_celltypist
TMP=${TMP_DIR:-$(mktemp -d)}
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 NUMBA_NUM_THREADS=2 RAYON_NUM_THREADS=2
Q=$TMP/celltypist_query_$N.h5ad
[ -f "$Q" ] || $PY bench/celltypist_reference.py data "$MODEL" "$Q" "$N"
grep -m1 "model name" /proc/cpuinfo || true
echo "== scllm"
/usr/bin/time -f "peak_rss_kb %M wall_s %e" $BIN "$Q" "$MODEL" "$TMP/scllm_out.h5ad" > "$TMP/scllm.json"
$PY -c "import json; d=json.load(open('$TMP/scllm.json')); print(json.dumps({k: d[k] for k in ('n_query','n_genes_matched','predict_seconds','total_seconds','cells_per_s')}))"
echo "== celltypist 1.7.1"
/usr/bin/time -f "peak_rss_kb %M wall_s %e" $PY bench/celltypist_reference.py run "$MODEL" "$Q" "$TMP/celltypist_out.h5ad" 2>&1 \
  | grep -v "^[[:space:]]*$" | grep -E "^\{|peak_rss" || true
# the two agree
$PY - "$TMP/scllm_out.h5ad" "$TMP/celltypist_out.h5ad" <<'PY'
import sys, anndata as ad, numpy as np
a, b = ad.read_h5ad(sys.argv[1], backed="r"), ad.read_h5ad(sys.argv[2], backed="r")
same = (a.obs["predicted_labels"].astype(str).values == b.obs["predicted_labels"].astype(str).values).mean()
d = np.abs(a.obsm["celltypist_probability"][:] - b.obsm["celltypist_probability"][:]).max()
print(f"labels equal: {same:.6f}; max |probability difference|: {d:.2e}")
PY
[ -n "${TMP_DIR:-}" ] || rm -rf "$TMP"
