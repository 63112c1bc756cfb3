#!/usr/bin/env bash
# Fine-tuning step cost per scPEFT strategy (issue 4): scllm (burn flex, release) vs scPEFT's own
# PyTorch `TransformerModel`, the same random batch, the same trainable set, one after the other
# per strategy. Seconds per step = median of STEPS timed steps after one warm-up step
# (forward + cross-entropy on cls_output + backward + Adam, train mode, fp32); peak RSS of each
# process from GNU time. Results: bench/RESULTS.md.
#
#   bash bench/finetune_step.sh                       # small, then full-size, all six strategies
#   CONFIGS=small STRATEGIES="full lora" bash bench/finetune_step.sh
#   TABLE_ONLY=1 bash bench/finetune_step.sh          # re-print the table of the last run
#   APPEND=1 CONFIGS=full FULL_STRATEGIES=lora bash bench/finetune_step.sh   # add rows to it
#
# small:     d 128, 4 layers, 4 heads, d_hid 256 (the shape of models/scllm-small), vocab 5,000, n_cls 8, batch 16, L 512
# full-size: d 512, 12 layers, 8 heads, d_hid 512, vocab 60,697, n_cls 8, batch 4, L 1200
# Needs .venv-ref (torch, loralib) and the scPEFT checkouts (SCPEFT, REPRO; see
# tools/make_peft_fixture.py for how to extract them from their git mirrors).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv-ref/bin/python}
OUT=${OUT:-/tmp/scllm_finetune_bench}
THREADS=${THREADS:-2}
CONFIGS=${CONFIGS:-"small full"}
STRATEGIES=${STRATEGIES:-"full head prefix lora token-prompt encoder-prompt"}
FULL_STRATEGIES=${FULL_STRATEGIES:-$STRATEGIES}
SMALL_STEPS=${SMALL_STEPS:-5}
FULL_STEPS=${FULL_STEPS:-3}
SCPEFT=${SCPEFT:-/tmp/scpeft}
REPRO=${REPRO:-/tmp/scpeft_repro}
RES="$OUT/results.tsv"
mkdir -p "$OUT"

table() {
  "$PY" - "$RES" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    cfg, strat, side, med, rss, ntr = line.rstrip("\n").split("\t")
    rows.setdefault((cfg, strat), {})[side] = (float(med), int(rss) / 1024, int(ntr))
print("| config | strategy | trainable params | scllm s/step | PyTorch s/step | time ratio | scllm peak RSS | PyTorch peak RSS | RSS ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for (cfg, strat), r in rows.items():
    s, t = r.get("scllm"), r.get("torch")
    f = lambda x, i, fmt: (fmt % x[i]) if x else "–"
    rt = f"{s[0] / t[0]:.2f}x" if s and t else "–"
    rr = f"{s[1] / t[1]:.2f}x" if s and t else "–"
    ntr = f"{(s or t)[2]:,}"
    print(f"| {cfg} | {strat} | {ntr} | {f(s, 0, '%.3f')} | {f(t, 0, '%.3f')} | {rt} | {f(s, 1, '%.0f MiB')} | {f(t, 1, '%.0f MiB')} | {rr} |")
PY
}
if [ -n "${TABLE_ONLY:-}" ]; then table; exit 0; fi

cargo build --release -p scllm-train --example finetune_step
BIN=target/release/examples/finetune_step
[ -n "${APPEND:-}" ] || : >"$RES"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

record() { # cfg strategy side json-file time-file
  local med ntr rss
  med=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["median_s"])' "$4")
  ntr=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["trainable"])' "$4")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$5")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$med" "$rss" "$ntr" >>"$RES"
  printf '  %-6s %-15s %-6s %8.3f s/step  %8.0f MiB  (%s trainable)\n' "$1" "$2" "$3" "$med" "$((rss / 1024))" "$ntr"
}

for cfg in $CONFIGS; do
  if [ "$cfg" = small ]; then
    D=128 NL=4 NH=4 DH=256 NT=5000 NC=8 B=16 L=512 STEPS=$SMALL_STEPS STRATS=$STRATEGIES
  else
    D=512 NL=12 NH=8 DH=512 NT=60697 NC=8 B=${FULL_BATCH:-4} L=${FULL_LEN:-1200} STEPS=$FULL_STEPS STRATS=$FULL_STRATEGIES
  fi
  DATA="$OUT/batch_$cfg"
  "$PY" bench/finetune_step_torch.py --gen "$DATA" --batch $B --len $L --ntoken $NT --ncls $NC
  echo "== $cfg: d $D, $NL layers, $NH heads, d_hid $DH, vocab $NT, n_cls $NC, batch $B, L $L, $STEPS timed steps"
  for s in $STRATS; do
    /usr/bin/time -v "$BIN" "$DATA" "$s" $D $NL $NH $DH $NT $NC $STEPS 0.2 \
      >"$OUT/$cfg.$s.scllm.json" 2>"$OUT/$cfg.$s.scllm.time"
    record "$cfg" "$s" scllm "$OUT/$cfg.$s.scllm.json" "$OUT/$cfg.$s.scllm.time"
    OMP_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" bench/finetune_step_torch.py --data "$DATA" \
      --strategy "$s" --d $D --nlayers $NL --nheads $NH --dhid $DH --ntoken $NT --ncls $NC \
      --steps $STEPS --dropout 0.2 --threads $THREADS --scpeft "$SCPEFT" --repro "$REPRO" \
      >"$OUT/$cfg.$s.torch.json" 2>"$OUT/$cfg.$s.torch.time"
    record "$cfg" "$s" torch "$OUT/$cfg.$s.torch.json" "$OUT/$cfg.$s.torch.time"
  done
done
echo "finished $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
table
