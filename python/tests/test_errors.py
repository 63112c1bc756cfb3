"""Bad input raises the right Python exception with the CLI's one-line message, and leaves
the AnnData exactly as it was."""

import numpy as np
import pytest
import scipy.sparse as sp

import scllm
from conftest import fixture, read


def snapshot(a):
    x = a.X.copy()
    return x, a.obs.copy(), a.var.copy(), set(a.obsm.keys()), set(a.uns.keys()), set(a.layers.keys())


def unchanged(a, snap):
    x, obs, var, obsm, uns, layers = snap
    xa = a.X.toarray() if sp.issparse(a.X) else a.X
    xs = x.toarray() if sp.issparse(x) else x
    assert np.array_equal(xa, xs)
    assert a.obs.equals(obs) and a.var.equals(var)
    assert set(a.obsm.keys()) == obsm and set(a.uns.keys()) == uns and set(a.layers.keys()) == layers


def test_float64_is_a_type_error_with_the_fix():
    a = read("data/kang2018_pbmc_400.h5ad")
    a.X = a.X.astype(np.float64)
    snap = snapshot(a)
    with pytest.raises(TypeError, match="astype"):
        scllm.pp.normalize_total(a)
    with pytest.raises(TypeError, match="float64"):
        scllm.pp.log1p(a)
    unchanged(a, snap)


def test_missing_columns_are_key_errors():
    a = read("data/kang2018_pbmc_400.h5ad")
    snap = snapshot(a)
    with pytest.raises(KeyError, match="no_such_batch"):
        scllm.pp.highly_variable_genes(a, n_top_genes=100, flavor="seurat_v3", batch_key="no_such_batch")
    with pytest.raises(KeyError, match="no_such_column"):
        scllm.tl.embed(a, model=fixture("cellplm"), group_by="no_such_column")
    with pytest.raises(KeyError, match="gene_col"):
        scllm.tl.embed(a, model=fixture("scgpt/small"), gene_col="no_such_column")
    with pytest.raises(KeyError, match="layer"):
        scllm.pp.log1p(a, layer="counts")
    unchanged(a, snap)


def test_model_folders_that_are_not_one(tmp_path):
    a = read("data/kang2018_pbmc_400.h5ad")
    snap = snapshot(a)
    with pytest.raises(FileNotFoundError):
        scllm.tl.embed(a, model=tmp_path / "missing")
    # an empty folder: the CLI's message naming the files a model folder holds
    with pytest.raises(ValueError, match="config.json"):
        scllm.tl.embed(a, model=tmp_path)
    # genes of no vocabulary: the CLI's message, as a ValueError
    b = a.copy()
    b.var_names = [f"gene{i}" for i in range(b.n_vars)]
    with pytest.raises(ValueError):
        scllm.tl.embed(b, model=fixture("scgpt/small"))
    assert "X_scGPT" not in b.obsm
    unchanged(a, snap)


def test_no_cell_left_is_a_value_error_and_no_change():
    a = read("data/kang2018_pbmc_400.h5ad")
    snap = snapshot(a)
    with pytest.raises(ValueError, match="no cells left"):
        scllm.pp.filter_cells(a, min_genes=10**9)
    with pytest.raises(ValueError, match="unknown HVG flavor"):
        scllm.pp.highly_variable_genes(a, flavor="nope")
    with pytest.raises(ValueError, match="precision"):
        scllm.tl.embed(a, model=fixture("cellplm"), precision="fp4")
    unchanged(a, snap)


def test_malformed_csr_is_a_value_error():
    a = read("data/kang2018_pbmc_400.h5ad")
    x = a.X.copy()
    x.indices[5] = x.shape[1] + 3  # a column index past the end
    a.X = x
    # a call that reads the column indices (a copy of X, or numpy's own buffers for seurat_v3)
    # refuses one past the end or a negative one; normalize_total reads none (as scanpy's)
    with pytest.raises(ValueError, match="column index"):
        scllm.pp.scale(a)
    var = a.var.copy()
    for j in (x.shape[1] + 3, -2):
        x.indices[5] = j
        with pytest.raises(ValueError, match="column index"):
            scllm.pp.highly_variable_genes(a, n_top_genes=50, flavor="seurat_v3")
        assert a.var.equals(var) and "hvg" not in a.uns
    x.indices[5] = 0
    x.data[7] = -1.0
    with pytest.raises(ValueError, match="negative value -1"):
        scllm.pp.highly_variable_genes(a, n_top_genes=50, flavor="seurat_v3")
    assert "highly_variable" not in a.var
    bad = sp.csr_matrix(a.X.shape, dtype=np.float32)
    bad.indptr = bad.indptr.copy()
    bad.indptr[3] = 5  # more stored values claimed than there are
    a.X = bad
    with pytest.raises(ValueError, match="indptr"):
        scllm.pp.normalize_total(a)


def test_wrong_shape():
    a = read("data/kang2018_pbmc_400.h5ad")
    with pytest.raises(ValueError, match="2-D"):
        scllm._anndata.csr(np.zeros((2, 3, 4), dtype=np.float32))


def test_another_thread_count_later_is_a_value_error():
    a = read("cellplm/cells.h5ad")
    scllm.tl.embed(a, model=fixture("cellplm"))  # the process's kernel threads are now fixed
    with pytest.raises(ValueError, match="fixed by its first use"):
        scllm.tl.embed(a, model=fixture("cellplm"), threads=999, key_added="other")
    assert "other" not in a.obsm
