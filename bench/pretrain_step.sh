#!/usr/bin/env bash
# Pretraining throughput and peak memory (issue 6): `scllm pretrain` vs the reference's
# pretraining step (bench/pretrain_step_torch.py: scgpt's TransformerModel, GEP + GEPC, AdamW,
# clip 1.0, PyTorch CPU fp32), the same model shape (models/scllm-small's args.json and 21,122-gene
# vocabulary, random init), the same cells (pbmc3k), batch and max_len, one after the other.
# cells/s over STEPS timed steps after one warm-up step; peak RSS from GNU time. scllm's figure
# includes reading and tokenizing the cells (it streams them); PyTorch's excludes it (tokenized
# before timing). Results: bench/RESULTS.md.
#
#   SCLLM_SHARED_DATA=/path/to/shared/data bash bench/pretrain_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SCLLM_SHARED_DATA:?set SCLLM_SHARED_DATA to the shared data folder}"
PY=${PY:-.venv-ref/bin/python}
OUT=${OUT:-/tmp/scllm_pretrain_bench}
BATCH=${BATCH:-32}
MAX_LEN=${MAX_LEN:-256}
STEPS=${STEPS:-10}
THREADS=${THREADS:-2}
DATA=$SCLLM_SHARED_DATA/pbmc3k.h5ad
SCLLM=${SCLLM:-target/release/scllm}
mkdir -p "$OUT"
[ "$SCLLM" != target/release/scllm ] || cargo build --release -p scllm
rm -rf "$OUT/scllm_model"
sed -e '/^exclude = \[/,/^\]/d' -e '/^min_files_per_gene/d' \
    -e "s/^steps = .*/steps = $((STEPS + 1))/" -e "s/^batch_size = .*/batch_size = $BATCH/" \
    -e "s/^max_len = .*/max_len = $MAX_LEN/" -e 's/^checkpoint_every = .*/checkpoint_every = 100000/' \
    -e 's/^log_every = .*/log_every = 1/' \
    -e "s|^\[data\]|[data]\nvocab = \"$PWD/models/scllm-small/vocab.json\"|" \
    configs/pretrain_small.toml >"$OUT/pretrain_bench.toml"
RAYON_NUM_THREADS=$THREADS /usr/bin/time -v "$SCLLM" pretrain --config "$OUT/pretrain_bench.toml" \
  --data "$DATA" -o "$OUT/scllm_model" >"$OUT/scllm.out" 2>"$OUT/scllm.time"
OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/pretrain_step_torch.py --model models/scllm-small \
  --data "$DATA" --batch "$BATCH" --max-len "$MAX_LEN" --steps "$STEPS" --threads "$THREADS" \
  >"$OUT/torch.out" 2>"$OUT/torch.time"
"$PY" - "$OUT" "$BATCH" <<'EOF'
import json, re, sys
out, batch = sys.argv[1], int(sys.argv[2])
log = [json.loads(l) for l in open(f"{out}/scllm_model/pretrain_log.jsonl")]
timed = log[1:]  # step 1 is the warm-up
scllm_cps = len(timed) * batch / sum(batch / e["cells_per_s"] for e in timed)
torch = json.loads(open(f"{out}/torch.out").read().strip().splitlines()[-1])
rss = lambda f: int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f).read()).group(1)) / 1024
rs, rt = rss(f"{out}/scllm.time"), rss(f"{out}/torch.time")
print("| side | cells/s | peak RSS |")
print("|---|---|---|")
print(f"| scllm | {scllm_cps:.1f} | {rs:.0f} MiB |")
print(f"| PyTorch (scgpt 0.2.4) | {torch['cells_per_s']:.1f} | {rt:.0f} MiB |")
print(f"| ratio scllm/PyTorch | {scllm_cps / torch['cells_per_s']:.2f}x throughput | {rs / rt:.2f}x memory |")
EOF
echo "finished $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
