#!/usr/bin/env bash
# scllm's CellPLM embedding vs the reference (PyPI `cellplm`'s CellEmbeddingPipeline on PyTorch
# CPU, bench/cellplm_embed_reference.py) and vs scllm's own scGPT whole-human embedding, on the
# same cells and thread count (issue 15). CellPLM: a random-weight checkpoint at the released 85M
# shape built with cellplm's own OmicsFormer (bench/cellplm_make_model.py), the GMVAE's Gumbel
# noise fixed at zero in the reference (scllm takes the argmax: docs/models/cellplm.md §7.4).
# scGPT: the whole-human-shape random checkpoint of bench/embed.sh (tools/make_scgpt_fixture.py
# --preset full). Cells: the first CELLS of DATA (0 = all) for CellPLM, and its first SUB cells
# for all three (scGPT whole-human runs at ~10 cells/s here). The file has no obs['batch']:
# every run embeds all its cells as one attention set, as both CellPLM tools do by default.
# var.index is set to var['ensembl_id'] for CellPLM (the reference maps symbols through a web
# service only); scGPT reads the symbols (--gene-col gene_symbol). One run each; peak RSS from
# GNU time. Results: bench/RESULTS.md.
#
#   CARGO_TARGET_DIR=target CELLS=0 SUB=200 THREADS=2 [RUN_SCGPT=0] bash bench/cellplm_embed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/kang2018_pbmc.h5ad}
CELLS=${CELLS:-0}
SUB=${SUB:-200}
THREADS=${THREADS:-2}
# scllm embed --precision (f32, bf16 or int8; the references run f32)
PRECISION=${PRECISION:-f32}
PY=${PY:-.venv-ref/bin/python}
MODEL=${MODEL:-/tmp/cellplm_85M}
SCGPT=${SCGPT:-/tmp/scgpt_full}
OUT=${OUT:-/tmp/scllm_cellplm_bench}
RUN_SCGPT=${RUN_SCGPT:-1}
mkdir -p "$OUT"
[ -f "$MODEL/bench85M.best.ckpt" ] || "$PY" bench/cellplm_make_model.py --data "$DATA" --out "$MODEL"
[ "$RUN_SCGPT" = 0 ] || [ -f "$SCGPT/best_model.pt" ] || "$PY" tools/make_scgpt_fixture.py --preset full --out "$SCGPT"

# the same cells for every tool: var.index = Ensembl ids (symbols kept in var['gene_symbol'])
"$PY" - "$DATA" "$OUT" "$CELLS" "$SUB" <<'PY'
import sys, anndata as ad
a = ad.read_h5ad(sys.argv[1])
assert "batch" not in a.obs, "this script embeds all cells as one set"
a.var["gene_symbol"] = a.var["gene_symbol"].astype(str)
a.var.index = a.var["ensembl_id"].astype(str).values
n = int(sys.argv[3]) or a.n_obs
a[:n].copy().write_h5ad(f"{sys.argv[2]}/full.h5ad")
a[: int(sys.argv[4])].copy().write_h5ad(f"{sys.argv[2]}/sub.h5ad")
print(f"full: {min(n, a.n_obs)} cells, sub: {sys.argv[4]} cells, {a.n_vars} genes")
PY

CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} cargo build --release -p scllm
BIN=${CARGO_TARGET_DIR:-target}/release/scllm

for S in full sub; do
  echo "== $S: scllm embed, CellPLM (burn flex, $THREADS threads)"
  /usr/bin/time -v "$BIN" embed "$OUT/$S.h5ad" --model "$MODEL" -o "$OUT/scllm_$S.h5ad" \
    --threads "$THREADS" --precision "$PRECISION" --json >"$OUT/scllm_$S.json" 2>"$OUT/scllm_$S.time"
  echo "== $S: reference cellplm CellEmbeddingPipeline.predict (PyTorch CPU, $THREADS threads)"
  OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS /usr/bin/time -v "$PY" \
    bench/cellplm_embed_reference.py --data "$OUT/$S.h5ad" --model "$MODEL" \
    --threads "$THREADS" --out "$OUT/ref_$S.npy" >"$OUT/ref_$S.json" 2>"$OUT/ref_$S.time"
done
if [ "$RUN_SCGPT" != 0 ]; then
  echo "== sub: scllm embed, scGPT whole-human shape ($THREADS threads)"
  /usr/bin/time -v "$BIN" embed "$OUT/sub.h5ad" --model "$SCGPT" --gene-col gene_symbol \
    -o "$OUT/scgpt_sub.h5ad" --threads "$THREADS" --precision "$PRECISION" --json >"$OUT/scgpt_sub.json" 2>"$OUT/scgpt_sub.time"
fi

"$PY" - "$OUT" "$RUN_SCGPT" <<'PY'
import json, re, sys
import numpy as np, anndata as ad
out, run_scgpt = sys.argv[1], sys.argv[2] != "0"

def gnu_time(path):
    t = open(path).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024**2
    w = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
    wall = sum(float(x) * 60**i for i, x in enumerate(reversed(w.split(":"))))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", t).group(1)) for k in ["User", "System"])
    print(f"  {path.rsplit('/', 1)[-1]}: wall {wall:.2f} s, CPU user+sys {cpu:.2f} s, peak RSS {rss:.2f} GB")
    return rss, wall

def last_json(path):
    return json.loads(open(path).read().strip().splitlines()[-1])

rows = {}
for s in ["full", "sub"]:
    j, r = json.load(open(f"{out}/scllm_{s}.json")), last_json(f"{out}/ref_{s}.json")
    (srss, swall), (rrss, rwall) = gnu_time(f"{out}/scllm_{s}.time"), gnu_time(f"{out}/ref_{s}.time")
    n = j["cells"]
    rows[s] = dict(n=n, s_embed=n / j["embed_seconds"], s_run=n / swall, s_rss=srss,
                   r_embed=r["cells_per_second"], r_run=n / rwall, r_rss=rrss)
    print(f"[{s}, {n} cells] scllm CellPLM: embed call {j['embed_seconds']:.2f} s "
          f"({n / j['embed_seconds']:.0f} cells/s; forward {j['forward_seconds']:.2f} s), "
          f"load {j['load_seconds']:.2f} s, whole run {swall:.2f} s ({n / swall:.0f} cells/s), "
          f"peak RSS {srss:.2f} GB")
    print(f"[{s}, {n} cells] reference:     predict {r['predict_seconds']:.2f} s "
          f"({r['cells_per_second']:.0f} cells/s), load {r['load_seconds']:.2f} s, "
          f"whole run {rwall:.2f} s ({n / rwall:.0f} cells/s), peak RSS {rrss:.2f} GB")
    print(f"[{s}] ratios: embed call {rows[s]['s_embed'] / r['cells_per_second']:.2f}x, "
          f"whole run {rows[s]['s_run'] / rows[s]['r_run']:.2f}x, scllm whole run vs "
          f"reference predict {rows[s]['s_run'] / r['cells_per_second']:.2f}x its cells/s; "
          f"peak RSS {srss / rrss:.3f}x")
    a = np.asarray(ad.read_h5ad(f"{out}/scllm_{s}.h5ad").obsm["X_cellplm"], dtype=np.float64)
    b = np.load(f"{out}/ref_{s}.npy").astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"[{s}] agreement: cosine min {cos.min():.6f} median {np.median(cos):.6f}; max abs "
          f"diff {np.abs(a - b).max():.2e} (embedding max abs {np.abs(b).max():.2f})")
if run_scgpt:
    g = json.load(open(f"{out}/scgpt_sub.json"))
    grss, gwall = gnu_time(f"{out}/scgpt_sub.time")
    n = g["cells"]
    g_run = n / gwall
    g_fwd = n / (g["forward_seconds"] + g["tokenize_seconds"])
    print(f"[sub, {n} cells] scllm scGPT whole-human: tokenize + forward "
          f"{g['tokenize_seconds'] + g['forward_seconds']:.2f} s ({g_fwd:.2f} cells/s), whole run "
          f"{gwall:.2f} s ({g_run:.2f} cells/s), peak RSS {grss:.2f} GB")
    for s in ["sub", "full"]:
        print(f"CellPLM ({s}, {rows[s]['n']} cells) vs scGPT (sub): embed call "
              f"{rows[s]['s_embed'] / g_fwd:.0f}x, whole run {rows[s]['s_run'] / g_run:.0f}x")
PY
