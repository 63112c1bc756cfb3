"""A large dense-X .h5ad for `scllm inspect`'s memory check (issue 19): N cells x G genes of
float32 counts written chunk by chunk with h5py, in anndata's encoding, so the generator itself
never holds X. Usage: python bench/gen_dense_h5ad.py OUT.h5ad [N] [G]"""
import sys

import h5py
import numpy as np

out = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 250_000
g = int(sys.argv[3]) if len(sys.argv) > 3 else 2_000
rng = np.random.default_rng(0)
str_dt = h5py.string_dtype()


def enc(obj, kind, version):
    obj.attrs["encoding-type"] = kind
    obj.attrs["encoding-version"] = version


with h5py.File(out, "w") as f:
    enc(f, "anndata", "0.1.0")
    x = f.create_dataset("X", shape=(n, g), dtype="float32", chunks=(1000, g))
    enc(x, "array", "0.2.0")
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        x[start:stop] = rng.poisson(0.5, size=(stop - start, g)).astype(np.float32)
    for name, size, prefix in (("obs", n, "cell"), ("var", g, "gene")):
        d = f.create_group(name)
        enc(d, "dataframe", "0.2.0")
        d.attrs["_index"] = "_index"
        d.attrs["column-order"] = np.array([], dtype=str_dt)
        idx = d.create_dataset("_index", data=np.array([f"{prefix}{i}" for i in range(size)], dtype=object), dtype=str_dt)
        enc(idx, "string-array", "0.2.0")
    for name in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
        enc(f.create_group(name), "dict", "0.1.0")
