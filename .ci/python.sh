#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest): builds the native module with maturin into
# a virtual environment outside the clone (and the wheel, for test_wheel.py), compares scllm.pp
# with scanpy and scllm.tl.embed with the CLI binary `cargo test --workspace` built, and runs
# scllm.dask on a 2-worker LocalCluster.
# Versions pinned to those the tests were written against (scanpy 1.11.5 made the fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SCLLM_PY_VENV:-${HOME}/.cache/scllm/ci-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  maturin==1.16.0 pytest==9.2.0 numpy==2.4.6 scipy==1.17.1 pandas==2.3.3 anndata==0.12.19 \
  scanpy==1.11.5 scikit-misc==0.5.3 dask==2026.8.0 distributed==2026.8.0
(cd python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --locked -q)
# the wheel too (the same build, seconds): python/tests/test_wheel.py installs it outside the
# clone and checks that the shipped models came with it
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
(cd python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin build --locked -q -o "$wheels")
SCLLM_WHEEL="$(ls "$wheels"/*.whl)" "$venv/bin/python" -m pytest -q -p no:cacheprovider python/tests
