#!/usr/bin/env bash
# Baseline benchmarks (issue 5): logreg training time vs scikit-learn liblinear on kang2018_pbmc
# (leave donor 101 out, C=0.1 and C=100), and kNN label transfer vs scikit-learn on 100k
# synthetic cells (80k reference, 20k query, 50 dims, cosine, k=15).
# Usage: bench/baselines.sh [SHARED_DATA_DIR]   (results: JSON lines on stdout)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PY=${PY:-/work/.venv-ref/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p scllm-eval --example bench_baselines
BIN=$CARGO_TARGET_DIR/release/examples/bench_baselines
for C in 0.1 100; do
  $PY bench/baselines_sklearn.py logreg "$DATA/kang2018_pbmc.h5ad" donor 101 $C
  RAYON_NUM_THREADS=1 $BIN logreg "$DATA/kang2018_pbmc.h5ad" donor 101 $C
  $BIN logreg "$DATA/kang2018_pbmc.h5ad" donor 101 $C
done
TMP=$(mktemp -d)
$PY bench/baselines_sklearn.py knn_data "$TMP" 100000 50
$PY bench/baselines_sklearn.py knn "$TMP/synth_ref.h5ad" "$TMP/synth_query.h5ad" X_emb
RAYON_NUM_THREADS=1 $BIN knn "$TMP/synth_ref.h5ad" "$TMP/synth_query.h5ad" X_emb
$BIN knn "$TMP/synth_ref.h5ad" "$TMP/synth_query.h5ad" X_emb
rm -rf "$TMP"
