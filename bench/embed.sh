#!/usr/bin/env bash
# scllm's scGPT embedding vs the reference `scgpt.tasks.embed_data` (PyTorch CPU): same full-size
# random checkpoint (12 layers, d 512, 60,697 tokens: tools/make_scgpt_fixture.py --preset full),
# same cells of kang2018_pbmc.h5ad, same thread count, one run each. Peak RSS from GNU time
# (the reference's DataLoader workers included as their maximum). Results: bench/RESULTS.md.
#
#   MODEL=/tmp/scgpt_full CELLS=1000 THREADS=2 bash bench/embed.sh
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

echo "== reference scgpt.tasks.embed_data (PyTorch CPU, $THREADS threads)"
OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/embed_reference.py --model "$MODEL" --data "$SUB" \
  --threads "$THREADS" --out "$OUT/ref.npy" >"$OUT/ref.json" 2>"$OUT/ref.time"
tail -1 "$OUT/ref.json"; grep -E "Maximum resident|Elapsed" "$OUT/ref.time"

echo "== agreement (cosine of the two tools' embeddings of each cell; tie-breaks and sampling differ by design)"
"$PY" - "$OUT/scllm.h5ad" "$OUT/ref.npy" <<'PY'
import sys, numpy as np, anndata as ad
a = np.asarray(ad.read_h5ad(sys.argv[1]).obsm["X_scGPT"], dtype=np.float64)
b = np.load(sys.argv[2]).astype(np.float64)
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"cosine: min {cos.min():.4f} median {np.median(cos):.4f} mean {cos.mean():.4f}")
PY
