#!/usr/bin/env bash
# scllm's scGPT embedding vs the reference `scgpt.tasks.embed_data` (PyTorch CPU): same full-size
# random checkpoint (12 layers, d 512, 60,697 tokens: tools/make_scgpt_fixture.py --preset full),
# same cells of kang2018_pbmc.h5ad, same thread count, one run each. Peak RSS from GNU time
# (the reference's DataLoader workers included as their maximum). Results: bench/RESULTS.md.
#
#   MODEL=/tmp/scgpt_full CELLS=1000 THREADS=2 [REF_BATCHES="64 1"] bash bench/embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-/tmp/scgpt_full}
DATA=${DATA:-../shared/data/kang2018_pbmc.h5ad}
CELLS=${CELLS:-1000}
THREADS=${THREADS:-2}
PROFILE=${PROFILE:-release}
PY=${PY:-.venv-ref/bin/python}
OUT=${OUT:-/tmp/scllm_embed_bench}
mkdir -p "$OUT"
[ -f "$MODEL/best_model.pt" ] || "$PY" tools/make_scgpt_fixture.py --preset full --out "$MODEL"

# the same first CELLS cells for both tools
SUB="$OUT/kang_${CELLS}.h5ad"
"$PY" - "$DATA" "$SUB" "$CELLS" <<'PY'
import sys, anndata as ad
a = ad.read_h5ad(sys.argv[1])
n = int(sys.argv[3]) or a.n_obs
a[:n].copy().write_h5ad(sys.argv[2])
PY

flag=""; [ "$PROFILE" = release ] && flag="--release"
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build $flag -p scllm-models --example embed_h5ad
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/examples/embed_h5ad

echo "== scllm (burn flex, $THREADS threads)"
/usr/bin/time -v "$BIN" "$MODEL" "$SUB" "$OUT/scllm.h5ad" "$THREADS" 64 >"$OUT/scllm.json" 2>"$OUT/scllm.time"
cat "$OUT/scllm.json"; grep -E "Maximum resident|Elapsed" "$OUT/scllm.time"

# the reference at its default batch size (64, batches in input order: padded to each batch's
# longest cell) and at batch size 1 (nothing padded: its fastest setting on this CPU)
for RB in ${REF_BATCHES:-64 1}; do
  echo "== reference scgpt.tasks.embed_data (PyTorch CPU, $THREADS threads, batch size $RB)"
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/embed_reference.py --model "$MODEL" --data "$SUB" \
    --threads "$THREADS" --batch-size "$RB" --out "$OUT/ref_$RB.npy" >"$OUT/ref_$RB.json" 2>"$OUT/ref_$RB.time"
  tail -1 "$OUT/ref_$RB.json"; grep -E "Maximum resident|Elapsed" "$OUT/ref_$RB.time"
done

echo "== agreement (cosine of the two tools' embeddings of each cell; tie-breaks and sampling differ by design)"
for RB in ${REF_BATCHES:-64 1}; do
"$PY" - "$OUT/scllm.h5ad" "$OUT/ref_$RB.npy" <<'PY2'
import sys, numpy as np, anndata as ad
a = np.asarray(ad.read_h5ad(sys.argv[1]).obsm["X_scGPT"], dtype=np.float64)
b = np.load(sys.argv[2]).astype(np.float64)
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"{sys.argv[2]}: cosine min {cos.min():.4f} median {np.median(cos):.4f} mean {cos.mean():.4f}")
PY2
done
