"""The scanpy side of bench/preprocess.sh: read, HVG (seurat_v3 on counts), normalize_total,
log1p, write — the same work `scllm preprocess` does in that benchmark."""
import sys
import time
import warnings

warnings.filterwarnings("ignore")
t0 = time.time()
import scanpy as sc  # noqa: E402

t_import = time.time() - t0
src, out, n_top = sys.argv[1], sys.argv[2], int(sys.argv[3])
a = sc.read_h5ad(src)
sc.pp.highly_variable_genes(a, flavor="seurat_v3", n_top_genes=n_top)
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
a.write_h5ad(out)
print(f"scanpy: {a.n_obs} cells, {int(a.var['highly_variable'].sum())} HVGs, import {t_import:.1f} s, total {time.time() - t0:.1f} s", file=sys.stderr)
