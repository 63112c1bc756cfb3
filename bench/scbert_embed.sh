#!/usr/bin/env bash
# scllm's scBERT embedding vs the reference (scBERT's own preprocess.py and PerformerLM on
# PyTorch CPU, predict.py's one-cell-at-a-time loop, bench/scbert_embed_reference.py): the same
# random-weight model at the released shape (16,907 tokens a cell, dim 200, depth 6, heads 10,
# dim_head 64; bench/scbert_make_model.py), the same first CELLS cells of pbmc3k, the same thread
# count, one run each; the cell embedding is the mean over the panel positions of the final
# norm's output. Peak RSS from GNU time. Results: bench/RESULTS.md.
#
#   SCBERT_REF=/tmp/scbert-ref CELLS=20 THREADS=2 bash bench/scbert_embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/pbmc3k.h5ad}
CELLS=${CELLS:-20}
THREADS=${THREADS:-2}
PY=${PY:-.venv-ref/bin/python}
SCBERT_REF=${SCBERT_REF:-/tmp/scbert-ref}
OUT=${OUT:-/tmp/scllm_scbert_bench}
M="$OUT/model"
mkdir -p "$OUT"
[ -f "$M/scbert_config.json" ] || "$PY" bench/scbert_make_model.py --ref "$SCBERT_REF" --data "$DATA" --out "$M"

SUB="$OUT/pbmc3k_${CELLS}.h5ad"
"$PY" - "$DATA" "$SUB" "$CELLS" <<'PY'
import sys, anndata as ad
a = ad.read_h5ad(sys.argv[1])
a[: int(sys.argv[3])].copy().write_h5ad(sys.argv[2])
PY

CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release -p scllm
BIN=${CARGO_TARGET_DIR:-target}/release/scllm

echo "== scllm embed (burn flex, $THREADS threads)"
/usr/bin/time -v "$BIN" embed "$SUB" --model "$M" -o "$OUT/scllm.h5ad" --threads "$THREADS" \
  --precision "${PRECISION:-f32}" --json >"$OUT/scllm.json" 2>"$OUT/scllm.time"
"$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print({k: j.get(k) for k in ['cells','seconds','cells_per_second','forward_seconds','tokenize_seconds','forward_gflops_per_second']})" "$OUT/scllm.json"
grep -E "Maximum resident|Elapsed" "$OUT/scllm.time"
echo "== reference (preprocess.py + PerformerLM, PyTorch CPU, $THREADS threads)"
OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/scbert_embed_reference.py --ref "$SCBERT_REF" \
  --data "$SUB" --model "$M" --threads "$THREADS" --out "$OUT/ref.npy" >"$OUT/ref.json" 2>"$OUT/ref.time"
tail -1 "$OUT/ref.json"; grep -E "Maximum resident|Elapsed" "$OUT/ref.time"
echo "== agreement (cosine and max abs difference of each cell's embedding)"
"$PY" - "$OUT/scllm.h5ad" "$OUT/ref.npy" <<'PY2'
import sys, numpy as np, anndata as ad
a = np.asarray(ad.read_h5ad(sys.argv[1]).obsm["X_scBERT"], dtype=np.float64)
b = np.load(sys.argv[2]).astype(np.float64)
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"cosine min {cos.min():.6f} median {np.median(cos):.6f}; max abs diff {np.abs(a - b).max():.2e}")
PY2
