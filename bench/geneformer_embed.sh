#!/usr/bin/env bash
# scllm's Geneformer embedding vs the reference (Geneformer's own tokenizer + EmbExtractor's
# path on transformers/PyTorch CPU, bench/geneformer_embed_reference.py): the same random-weight
# V1-shaped model (tools/make_geneformer_bench_model.py: 6 layers d 256, and 12 layers d 512,
# the full 25,426-token V1 dictionary), the same first CELLS cells of kang2018_pbmc.h5ad, the same
# thread count, one run each, emb_mode cell at emb_layer -1 (Geneformer V1's default). Peak RSS
# from GNU time. Results: bench/RESULTS.md.
#
#   GENEFORMER_REF=/tmp/geneformer-ref CELLS=1000 THREADS=2 [SHAPES="6L-256 12L-512"] bash bench/geneformer_embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/kang2018_pbmc.h5ad}
CELLS=${CELLS:-1000}
THREADS=${THREADS:-2}
# scllm embed --precision (f32, bf16 or int8; the references run f32)
PRECISION=${PRECISION:-f32}
SHAPES=${SHAPES:-6L-256 12L-512}
PY=${PY:-.venv-ref/bin/python}
MODELS=${MODELS:-/tmp/gf_bench}
OUT=${OUT:-/tmp/scllm_gf_bench}
export GENEFORMER_REF=${GENEFORMER_REF:-/tmp/geneformer-ref}
mkdir -p "$OUT"
for S in $SHAPES; do
  [ -f "$MODELS/gf-$S/config.json" ] || "$PY" tools/make_geneformer_bench_model.py --out "$MODELS" --shapes "${S%%-*}"
done

# the same first CELLS cells for both tools
SUB="$OUT/kang_${CELLS}.h5ad"
"$PY" - "$DATA" "$SUB" "$CELLS" <<'PY'
import sys, anndata as ad
a = ad.read_h5ad(sys.argv[1])
n = int(sys.argv[3]) or a.n_obs
a[:n].copy().write_h5ad(sys.argv[2])
PY

CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release -p scllm
BIN=${CARGO_TARGET_DIR:-target}/release/scllm

for S in $SHAPES; do
  M="$MODELS/gf-$S"
  echo "== $S: scllm embed (burn flex, $THREADS threads)"
  /usr/bin/time -v "$BIN" embed "$SUB" --model "$M" -o "$OUT/scllm_$S.h5ad" --threads "$THREADS" \
    --emb-mode cell --emb-layer -1 --precision "$PRECISION" --json >"$OUT/scllm_$S.json" 2>"$OUT/scllm_$S.time"
  "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print({k: j[k] for k in ['cells','seconds','cells_per_second','forward_seconds','tokenize_seconds','forward_gflops_per_second','cell_totals','kernel']})" "$OUT/scllm_$S.json"
  grep -E "Maximum resident|Elapsed" "$OUT/scllm_$S.time"
  echo "== $S: reference (Geneformer tokenizer + EmbExtractor path, PyTorch CPU, $THREADS threads)"
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/geneformer_embed_reference.py --data "$SUB" \
    --model "$M" --dicts "$M" --threads "$THREADS" --out "$OUT/ref_$S.npy" >"$OUT/ref_$S.json" 2>"$OUT/ref_$S.time"
  tail -1 "$OUT/ref_$S.json"; grep -E "Maximum resident|Elapsed" "$OUT/ref_$S.time"
  echo "== $S: agreement (cosine and max abs difference of each cell's embedding)"
  "$PY" - "$OUT/scllm_$S.h5ad" "$OUT/ref_$S.npy" <<'PY2'
import sys, numpy as np, anndata as ad
a = np.asarray(ad.read_h5ad(sys.argv[1]).obsm["X_geneformer"], dtype=np.float64)
b = np.load(sys.argv[2]).astype(np.float64)
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"cosine min {cos.min():.6f} median {np.median(cos):.6f}; max abs diff {np.abs(a - b).max():.2e}")
PY2
done
