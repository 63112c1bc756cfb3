#!/usr/bin/env bash
# Reduced-precision embedding (issue: bf16 and int8 on the CPU's matrix units): scllm's
# `embed --precision f32|bf16|int8` vs the reference `scgpt.tasks.embed_data` in f32 and with the
# model converted to bf16, on the same full-size random checkpoint (12 layers, d 512, 60,697
# tokens: tools/make_scgpt_fixture.py --preset full), the same first CELLS cells of
# kang2018_pbmc.h5ad, the same thread count, one run each, in one script. Peak RSS from GNU time.
# Each scllm precision is compared with scllm's f32 embeddings (cosine per cell) and by the
# --check report (10-NN labels on both). Results: bench/RESULTS.md.
#
#   MODEL=/tmp/scgpt_full CELLS=1000 THREADS=2 bash bench/precision_embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-/tmp/scgpt_full}
DATA=${DATA:-../shared/data/kang2018_pbmc.h5ad}
CELLS=${CELLS:-1000}
THREADS=${THREADS:-2}
PY=${PY:-.venv-ref/bin/python}
OUT=${OUT:-/tmp/scllm_precision_bench}
REF_BATCH=${REF_BATCH:-1}
mkdir -p "$OUT"
[ -f "$MODEL/best_model.pt" ] || "$PY" tools/make_scgpt_fixture.py --preset full --out "$MODEL"

SUB="$OUT/kang_${CELLS}.h5ad"
"$PY" - "$DATA" "$SUB" "$CELLS" <<'PY'
import sys, anndata as ad
a = ad.read_h5ad(sys.argv[1])
n = int(sys.argv[3]) or a.n_obs
a[:n].copy().write_h5ad(sys.argv[2])
PY

echo "== machine"
lscpu | grep -E "Model name" || true
grep -o -w -E "avx512f|avx512_bf16|avx512_vnni|amx_tile|amx_bf16|amx_int8|avx2" /proc/cpuinfo | sort -u | tr '\n' ' '; echo

CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release -p scllm
BIN=${CARGO_TARGET_DIR:-target}/release/scllm

for P in ${PRECISIONS:-f32 bf16 int8}; do
  echo "== scllm embed --precision $P ($THREADS threads)"
  check=""; [ "$P" != f32 ] && check="--check ${CHECK:-300} --check-label cell_type"
  /usr/bin/time -v "$BIN" embed --model "$MODEL" "$SUB" -o "$OUT/scllm_$P.h5ad" --threads "$THREADS" \
    --precision "$P" $check --json >"$OUT/scllm_$P.json" 2>"$OUT/scllm_$P.time"
  "$PY" - "$OUT/scllm_$P.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{s['precision']} ({s['kernel']}): {s['cells_per_second']:.2f} cells/s, forward {s['forward_gflops_per_second']:.0f} GFLOP/s, {s['seconds']:.1f} s")
if s.get("check"):
    c = s["check"]
    print(f"  check on {c['cells']} cells: cosine min {c['cosine']['min']:.5f} mean {c['cosine']['mean']:.6f}; "
          f"10-NN shared {c['neighbours_shared']:.3f}; labels same {c['labels']['same_prediction']:.3f} "
          f"(acc f32 {c['labels']['accuracy_reference']:.3f}, {s['precision']} {c['labels']['accuracy_other']:.3f})")
PY
  grep -E "Maximum resident|Elapsed" "$OUT/scllm_$P.time"
done

for RP in ${REF_PRECISIONS:-f32 bf16}; do
  echo "== reference scgpt.tasks.embed_data in $RP (PyTorch CPU, $THREADS threads, batch size $REF_BATCH)"
  flag=""; [ "$RP" = bf16 ] && flag="--bf16"
  OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/embed_reference.py --model "$MODEL" --data "$SUB" \
    --threads "$THREADS" --batch-size "$REF_BATCH" $flag --out "$OUT/ref_$RP.npy" >"$OUT/ref_$RP.json" 2>"$OUT/ref_$RP.time"
  tail -1 "$OUT/ref_$RP.json"; grep -E "Maximum resident|Elapsed" "$OUT/ref_$RP.time"
done

echo "== agreement: each precision's embeddings against scllm f32 (cosine per cell)"
"$PY" - "$OUT" <<'PY'
import sys, os, numpy as np, anndata as ad
d = sys.argv[1]
f32 = np.asarray(ad.read_h5ad(f"{d}/scllm_f32.h5ad").obsm["X_scGPT"], dtype=np.float64)
def cos(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
for name in ["scllm_bf16.h5ad", "scllm_int8.h5ad", "ref_f32.npy", "ref_bf16.npy"]:
    p = f"{d}/{name}"
    if not os.path.exists(p):
        continue
    e = np.load(p) if p.endswith(".npy") else ad.read_h5ad(p).obsm["X_scGPT"]
    c = cos(f32, np.asarray(e, dtype=np.float64))
    print(f"{name}: cosine to scllm f32 min {c.min():.5f} p1 {np.quantile(c, 0.01):.5f} mean {c.mean():.6f}")
PY
