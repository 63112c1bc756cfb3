#!/usr/bin/env bash
# scllm preprocess vs scanpy, side by side on one input, one run each (issue 2's benchmark):
# read + HVG(seurat_v3, N) + normalize_total(1e4) + log1p + write. Prints wall time and peak RSS.
#
#   bash bench/preprocess.sh INPUT.h5ad [N_TOP=2000] [--stream]
#
# Needs: target/release/scllm (cargo build --release -p scllm) and .venv-ref (tools/setup_reference_env.sh).
# SCANPY_MEM_LIMIT_KB caps scanpy's address space (default 20 GiB) so an out-of-memory run fails
# cleanly instead of taking the machine down.
set -uo pipefail
cd "$(dirname "$0")/.."
IN=$1; N=${2:-2000}; MODE=${3:-}
OUT=$(mktemp -d /tmp/scllm-bench.XXXX)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "input: $IN ($(du -h "$IN" | cut -f1))"
run() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" >/dev/null 2>"$OUT/err"
  local rc=$?
  local last; last=$(tail -n1 "$OUT/time")
  echo "$label: exit $rc, wall ${last%% *} s, peak RSS $(( ${last##* } / 1024 )) MiB"
  [ $rc -eq 0 ] || tail -n3 "$OUT/err" | sed 's/^/    /'
  grep -h "^scanpy:" "$OUT/err" | sed 's/^/    /' || true
}
run "scllm " target/release/scllm preprocess "$IN" -o "$OUT/scllm.h5ad" --normalize-total 1e4 --log1p --hvg "$N" --hvg-flavor seurat_v3 $MODE --json
run "scanpy" bash -c "ulimit -v ${SCANPY_MEM_LIMIT_KB:-20971520}; exec .venv-ref/bin/python bench/scanpy_preprocess.py '$IN' '$OUT/scanpy.h5ad' $N"
