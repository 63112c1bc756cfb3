#!/usr/bin/env bash
# The honest check (issue 6): on every shipped benchmark split, fine-tuning from the shipped
# pretrained model vs from a random init of the same config, with the classical baselines in the
# same table.
#
#   SCLLM_SHARED_DATA=/path/to/shared/data bash bench/honest_check.sh [OUT_DIR]
#
# Each shipped config (configs/*.toml but the CI fixture) is rewritten into OUT_DIR/<name>-<init>.toml:
# its methods become logreg, knn-pca, scgpt-knn and the fine-tuning strategies below; training
# and query sets are capped per class (CAP_TRAIN, CAP_QUERY; seeded) so that the 72 fine-tunes
# fit a 2-core CPU; the model methods see the training cells' N_HVG most variable genes (every
# expressed one as a token); few-shot is skipped. The random init is the shipped config and vocabulary
# after one pretraining step at lr 1e-12 (i.e. the initial weights). Reports land in
# OUT_DIR/<name>-<init>/ and a summary table in OUT_DIR/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SCLLM_SHARED_DATA:?set SCLLM_SHARED_DATA to the shared data folder}"
OUT=${1:-/tmp/honest}
SCLLM=${SCLLM:-target/release/scllm}
CAP_TRAIN=${CAP_TRAIN:-50}
CAP_QUERY=${CAP_QUERY:-100}
EPOCHS=${EPOCHS:-10}
LR=${LR:-1e-3}          # adapters and head (zero- or randomly-initialised new weights)
LR_FULL=${LR_FULL:-1e-4} # full fine-tuning, as scGPT's Tutorial_Annotation
N_HVG=${N_HVG:-500}     # model inputs: the training cells' 500 most variable genes, all expressed ones
STRATEGIES=${STRATEGIES:-"full head encoder-prompt token-prompt lora prefix"}
CONFIGS=${CONFIGS:-"pancreas_human_mouse cellbench_celseq2_dropseq pbmc_3chem_lco kang2018_ctrl_stim kang2018_pbmc_lodo pbmc3k_to_kang2018_coarse"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
[ -x "$SCLLM" ] || cargo build --release -p scllm

RANDOM_MODEL=$OUT/random-init
if [ ! -f "$RANDOM_MODEL/best_model.pt" ]; then
  sed -e '/^exclude = \[/,/^\]/d' -e 's/^steps = .*/steps = 1/' -e 's/^lr = .*/lr = 1e-12/' -e 's/^checkpoint_every = .*/checkpoint_every = 1/' \
    -e "s|^\[data\]|[data]\nvocab = \"$PWD/models/scllm-small/vocab.json\"|" \
    configs/pretrain_small.toml > "$OUT/pretrain_random_init.toml"
  "$SCLLM" pretrain --config "$OUT/pretrain_random_init.toml" -o "$RANDOM_MODEL" \
    --data "$SCLLM_SHARED_DATA/pbmc3k.h5ad"
fi

methods='"logreg", "knn-pca", "scgpt-knn"'
options="[options.\"scgpt-knn\"]
n_hvg = $N_HVG
"
for s in $STRATEGIES; do
  methods="$methods, \"finetune:$s\""
  lr=$LR
  [ "$s" = full ] && lr=$LR_FULL
  options="$options
[options.\"finetune:$s\"]
n_hvg = $N_HVG
epochs = $EPOCHS
lr = $lr
batch_size = 16
"
done

for name in $CONFIGS; do
  for init in pretrained random; do
    model=$PWD/models/scllm-small
    [ "$init" = random ] && model=$RANDOM_MODEL
    cfg=$OUT/$name-$init.toml
    report=$OUT/$name-$init
    [ -f "$report/results.json" ] && continue
    # methods and model at the top, caps in [data], no few-shot, the method options at the end
    awk -v methods="methods = [$methods]" -v model="model = \"$model\"" \
        -v caps="max_train_per_class = $CAP_TRAIN
max_query_per_class = $CAP_QUERY" '
      /^\[fewshot\]/ { skip = 1; next }
      /^\[/ { skip = 0 }
      skip { next }
      /^methods = / { print methods; print model; next }
      /^name = / { sub(/"$/, "_'"$init"'\""); print; next }
      { print }
      /^\[data\]/ { print caps }
    ' "configs/$name.toml" > "$cfg"
    printf '\n%s' "$options" >> "$cfg"
    echo "== $name ($init)" >&2
    "$SCLLM" benchmark "$cfg" -o "$report" --no-fewshot > "$report.log" 2>&1 || echo "FAILED: see $report.log" >&2
  done
done

# summary: accuracy / macro F1 of every method, pretrained vs random init, per split
{
  echo "| split | method | pretrained: acc / macro F1 | random init: acc / macro F1 |"
  echo "|---|---|---|---|"
  for name in $CONFIGS; do
    python3 - "$OUT/$name-pretrained/results.json" "$OUT/$name-random/results.json" "$name" <<'EOF'
import json, sys, os
def load(p):
    if not os.path.exists(p):
        return {}
    r = json.load(open(p))
    out = {}
    for m in r["methods"]:
        c = m.get("metrics")
        out[m["name"]] = f'{c["accuracy"]:.3f} / {c["f1_macro"]:.3f}' if c else m.get("status", "?")
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in list(dict.fromkeys(list(a) + list(b))):
    print(f"| {sys.argv[3]} | {k} | {a.get(k, '-')} | {b.get(k, '-')} |")
EOF
  done
} > "$OUT/summary.md"
cat "$OUT/summary.md"
