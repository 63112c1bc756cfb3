#!/usr/bin/env bash
# Development aid (never needed to build or test scllm): a Python environment with the reference
# implementations, used by tools/*.py to regenerate the committed fixtures and by bench/ to run
# the peers side by side. Creates .venv-ref/ and unpacks the scgpt wheel into ref/ (both ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv --system-site-packages .venv-ref
.venv-ref/bin/pip install -q numpy scipy anndata scanpy scikit-misc scikit-learn h5py
if [ "${WITH_TORCH:-0}" = 1 ]; then
  .venv-ref/bin/pip install -q torch safetensors loralib
  # Geneformer (tools/make_geneformer_fixture.py, bench/geneformer_embed_reference.py): its
  # tokenizer, perturber_utils and emb_extractor modules import these; pandas < 3 because
  # tokenize_anndata indexes a Series by position
  .venv-ref/bin/pip install -q transformers datasets peft tdigest loompy "pandas<3"
  # scBERT (tools/make_scbert_fixture.py, bench/scbert_*.py): its performer_pytorch imports these
  .venv-ref/bin/pip install -q einops local-attention
fi
# tools/make_novel_fixture.py: crepes cross-checks the class-conditional conformal sets
.venv-ref/bin/pip install -q crepes==0.9.1
# CellTypist (tools/make_celltypist_fixture.py, bench/celltypist_reference.py); pulls igraph
# and leidenalg for its over-clustering
.venv-ref/bin/pip install -q celltypist==1.7.1
# CellPLM (tools/make_cellplm_fixture.py): --no-deps, the packages above cover what its pipeline
# imports, plus torchmetrics
.venv-ref/bin/pip install -q --no-deps cellplm==0.1.0.post2
.venv-ref/bin/pip install -q torchmetrics
d=$(mktemp -d)
.venv-ref/bin/pip download -q --no-deps -d "$d" scgpt==0.2.4
mkdir -p ref && (cd ref && unzip -qo "$d"/scgpt-0.2.4-*.whl)
echo "reference environment ready: .venv-ref/bin/python, scgpt sources in ref/"
