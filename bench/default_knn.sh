#!/usr/bin/env bash
# Zero-shot embeddings of the default models vs PCA-50 on every shipped benchmark split (issue 15):
# 10-NN accuracy (cosine, 5-fold stratified CV, shuffle seed 0) on each split's query cells, with the
# config's label. Splits: configs/*.toml minus the fixture configs (tiny_*, kang_fixture_*) and the pretraining configs; configs
# with the same query cells and labels (kang2018_pbmc_novel = kang2018_pbmc_lodo, pancreas_novel =
# pancreas_human_mouse) are scored once. Query cells are those the benchmark runner tests on (include/
# exclude rules, holdout, drop_labels, label_map), none of which scllm-small saw in pretraining
# (configs/pretrain_small.toml). Results: bench/RESULTS.md.
#
#   [SCLLM=target/release/scllm] [SCLLM_MODEL=models/scllm-small] [CELLPLM_MODEL=models/cellplm-small] \
#   [CELLPLM_GROUP_BY=none] [RANDOM_INIT=1] [REUSE=1] [THREADS=2] [OUT=/tmp/default_knn] bash bench/default_knn.sh
#
# scGPT (scllm-small): X as shipped (raw counts in every split; the model bins each cell's expressed
# genes, so counts and log1p give the same tokens), obsm['X_scGPT'].
# CellPLM (only when CELLPLM_MODEL is set): raw counts in X, genes by var['ensembl_id'] where the
# file has one (cellbench_3cl, kang2018_*: var.index set to it), else by symbol (mapped to Ensembl
# ids through GENCODE v44 by scllm), all query cells one attention set by default (--group-by none: every
# query is one donor/chemistry/platform/species, except pbmc3k_to_kang2018_coarse with 8 donors, and
# kang2018_ctrl_stim's stim cells of 2 donors), obsm['X_cellplm'].
# PCA-50: scanpy normalize_total 1e4, log1p, top 2000 HVG by seurat_v3 on the counts (files with
# fewer genes keep all), scale (clip 10), PCA 50 (arpack, seed 0), all on the query cells alone.
set -euo pipefail
cd "$(dirname "$0")/.."
SCLLM=${SCLLM:-target/release/scllm}
SCLLM_MODEL=${SCLLM_MODEL:-models/scllm-small}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/default_knn}
PY=${PY:-.venv-ref/bin/python}
export PYTHONWARNINGS=ignore

# embed QUERY OUT ARGS...: scllm embed, skipped under REUSE=1 when OUT exists (a rerun that only
# adds a model); prints scllm's summary line
embed() {
  local in=$1 out=$2; shift 2
  if [ "${REUSE:-0}" = 1 ] && [ -f "$out" ]; then echo "reused $out"; return; fi
  # f32 unless PRECISION says otherwise (the recorded accuracies are f32's; the CLI's default
  # is bf16 on CPUs with AVX-512 BF16)
  "$SCLLM" embed "$in" -o "$out" --threads "$THREADS" --precision "${PRECISION:-f32}" "$@" 2>&1 | tail -1
}

mapfile -t CONFIGS < <(ls configs/*.toml | grep -v -e '/tiny_' -e '/pretrain_' -e '/kang_fixture_')
"$PY" bench/default_knn.py prepare "$OUT" "${CONFIGS[@]}"
SPLITS=$("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))))' "$OUT/splits.json")

KEYS=("X_scGPT=scgpt")
for s in $SPLITS; do
  echo "== $s: scllm embed --model $SCLLM_MODEL"
  embed "$OUT/$s.h5ad" "$OUT/$s.scgpt.h5ad" --model "$SCLLM_MODEL"
done
# RANDOM_INIT=1: the same scGPT shape and vocabulary untrained (the recipe of bench/honest_check.sh:
# one pretraining step at lr 1e-12), to tell what pretraining added to the zero-shot embedding
if [ "${RANDOM_INIT:-0}" = 1 ]; then
  RANDOM_MODEL=$OUT/random-init
  if [ ! -f "$RANDOM_MODEL/best_model.pt" ]; then
    sed -e '/^exclude = \[/,/^\]/d' -e 's/^steps = .*/steps = 1/' -e 's/^lr = .*/lr = 1e-12/' \
      -e 's/^checkpoint_every = .*/checkpoint_every = 1/' \
      -e "s|^\[data\]|[data]\nvocab = \"$(realpath "$SCLLM_MODEL")/vocab.json\"|" \
      configs/pretrain_small.toml > "$OUT/pretrain_random_init.toml"
    "$SCLLM" pretrain --config "$OUT/pretrain_random_init.toml" -o "$RANDOM_MODEL" \
      --data "${SCLLM_SHARED_DATA:-../shared/data}/pbmc3k.h5ad" >/dev/null
  fi
  KEYS+=("X_random=random")
  for s in $SPLITS; do
    echo "== $s: scllm embed --model $RANDOM_MODEL (random init)"
    embed "$OUT/$s.h5ad" "$OUT/$s.random.h5ad" --model "$RANDOM_MODEL" --obsm-key X_random
  done
fi
if [ -n "${CELLPLM_MODEL:-}" ]; then
  KEYS+=("X_cellplm=cellplm")
  "$PY" bench/default_knn.py cellplm-input "$OUT"
  for s in $SPLITS; do
    echo "== $s: scllm embed --model $CELLPLM_MODEL --group-by ${CELLPLM_GROUP_BY:-none}"
    embed "$OUT/$s.ens.h5ad" "$OUT/$s.cellplm.h5ad" --model "$CELLPLM_MODEL" \
      --group-by "${CELLPLM_GROUP_BY:-none}"
  done
fi

"$PY" bench/default_knn.py score "$OUT" "${KEYS[@]}"
