"""A backed AnnData (``read_h5ad(..., backed="r")``) in scllm.tl and highly_variable_genes: its X
is read from the file by the native module itself (Python never loads it), with the same
results as the AnnData in memory; calls that would change X in place say how to load it."""

import anndata as ad
import numpy as np
import pytest

import scllm
import scllm._anndata as ad_
from conftest import ROOT, fixture, read
from test_adapt import same_adapter

DATA = "data/kang2018_pbmc_400.h5ad"


@pytest.fixture
def no_python_copy(monkeypatch):
    """Fail any call that would hand a backed AnnData's X over from Python."""
    real = ad_.csr

    def csr(m, *args, **kwargs):
        assert not hasattr(m, "group") and "Dataset" not in type(m).__name__, "X loaded by Python"
        return real(m, *args, **kwargs)

    monkeypatch.setattr(ad_, "csr", csr)


def backed(name):
    a = ad.read_h5ad(fixture(name), backed="r")
    assert a.isbacked
    return a


def test_finetune_and_annotate_read_a_backed_file(tmp_path, no_python_copy):
    model = ROOT / "models" / "cellplm-small"
    ft = {"method": "head", "group_by": "donor", "val_fraction": 0.2, "epochs": 2, "min_cells_per_class": 2}
    mem, fil = read(DATA), backed(DATA)
    s_mem = scllm.tl.finetune(mem, model, label="cell_type", out=tmp_path / "mem", **ft)
    s_fil = scllm.tl.finetune(fil, model, label="cell_type", out=tmp_path / "file", **ft)
    assert s_fil["best_epoch"] == s_mem["best_epoch"]
    same_adapter(tmp_path / "file" / "adapter.safetensors", tmp_path / "mem" / "adapter.safetensors")

    an = {"group_by": "donor", "unknown_below": "auto"}
    scllm.tl.annotate(mem, model, adapter=tmp_path / "mem", **an)
    s = scllm.tl.annotate(fil, model, adapter=tmp_path / "mem", **an)
    assert fil.isbacked and s["cells"] == fil.n_obs
    assert list(fil.obs["predicted_cell_type"].astype(str)) == list(mem.obs["predicted_cell_type"].astype(str))
    assert np.array_equal(fil.obs["prediction_confidence"], mem.obs["prediction_confidence"])
    assert np.array_equal(fil.obsm[s["obsm_key"]], mem.obsm[s["obsm_key"]])


def test_baseline_reads_backed_query_and_reference(no_python_copy):
    q_mem, r_mem = read("eval/kang_query.h5ad"), read("eval/kang_ref.h5ad")
    q_fil, r_fil = backed("eval/kang_query.h5ad"), backed("eval/kang_ref.h5ad")
    s_mem = scllm.tl.baseline(q_mem, r_mem, label="cell_type", method="logreg")
    s_fil = scllm.tl.baseline(q_fil, r_fil, label="cell_type", method="logreg")
    assert s_fil["classes"] == s_mem["classes"]
    assert list(q_fil.obs["predicted_cell_type"].astype(str)) == list(q_mem.obs["predicted_cell_type"].astype(str))
    assert np.array_equal(q_fil.obs["prediction_confidence"], q_mem.obs["prediction_confidence"])


def test_a_view_of_a_backed_anndata(tmp_path):
    """A view of a backed AnnData holds a subset of the file's cells: read as in memory where
    nothing is written to it; refused before any work where results would be (anndata cannot
    make such a view actual)."""
    rows = np.arange(0, 400, 3)
    view, sub = backed(DATA)[rows], read(DATA)[rows].copy()
    assert view.is_view and view.isbacked
    ft = {"method": "head", "val_fraction": 0.2, "epochs": 1, "min_cells_per_class": 2}
    model = ROOT / "models" / "cellplm-small"
    scllm.tl.finetune(view, model, label="cell_type", out=tmp_path / "view", **ft)
    scllm.tl.finetune(sub, model, label="cell_type", out=tmp_path / "sub", **ft)
    same_adapter(tmp_path / "view" / "adapter.safetensors", tmp_path / "sub" / "adapter.safetensors")
    ref = read("eval/kang_ref.h5ad")
    for call in (
        lambda: scllm.tl.embed(view, model=fixture("cellplm")),
        lambda: scllm.tl.annotate(view, model, adapter=tmp_path / "sub"),
        lambda: scllm.tl.baseline(view, ref, method="knn"),
        lambda: scllm.tl.umap(view),
        lambda: scllm.pp.highly_variable_genes(view, n_top_genes=10, flavor="seurat_v3"),
    ):
        with pytest.raises(ValueError, match="view of a backed"):
            call()
    assert not view.obsm and "predicted_cell_type" not in view.obs and "highly_variable" not in view.var


@pytest.mark.parametrize("flavor", ["seurat_v3"])
def test_highly_variable_genes_of_a_backed_file(flavor, no_python_copy):
    mem, fil = read(DATA), backed(DATA)
    scllm.pp.highly_variable_genes(mem, n_top_genes=50, flavor=flavor, batch_key="donor")
    scllm.pp.highly_variable_genes(fil, n_top_genes=50, flavor=flavor, batch_key="donor")
    assert fil.isbacked
    for c in mem.var.columns:
        f, m = fil.var[c].to_numpy(), mem.var[c].to_numpy()
        assert np.array_equal(f, m, equal_nan=f.dtype.kind == "f"), c
    assert fil.uns["hvg"] == {"flavor": flavor}
    with pytest.raises(ValueError, match="subset"):
        scllm.pp.highly_variable_genes(fil, n_top_genes=50, flavor=flavor, subset=True)


def test_in_place_preprocessing_of_a_backed_file_says_how_to_load_it():
    a = backed(DATA)
    for f in (scllm.pp.normalize_total, scllm.pp.log1p, scllm.pp.scale):
        with pytest.raises(ValueError, match="to_memory"):
            f(a)
    assert a.isbacked and "log1p" not in a.uns


def test_layers_of_a_backed_anndata_are_read_as_in_memory(tmp_path, no_python_copy):
    """A backed AnnData's layers are in memory: tl and highly_variable_genes take them (the
    file's X is then not read), and pp's scanpy-style ``layer="raw"`` names layers['raw'],
    not .raw."""
    for name in ("eval/kang_query.h5ad", "eval/kang_ref.h5ad"):
        a = read(name)
        a.layers["counts"] = a.X.copy()
        a.layers["raw"] = a.X.copy()
        a.X = a.X.multiply(0).tocsr()  # the counts only in the layers: reading X would show
        a.write_h5ad(tmp_path / name.split("/")[1])
    q_fil = ad.read_h5ad(tmp_path / "kang_query.h5ad", backed="r")
    r_fil = ad.read_h5ad(tmp_path / "kang_ref.h5ad", backed="r")
    q_mem, r_mem = read("eval/kang_query.h5ad"), read("eval/kang_ref.h5ad")
    s_mem = scllm.tl.baseline(q_mem, r_mem, label="cell_type", method="logreg")
    s_fil = scllm.tl.baseline(q_fil, r_fil, label="cell_type", method="logreg", layer="counts")
    assert s_fil["classes"] == s_mem["classes"]
    assert list(q_fil.obs["predicted_cell_type"].astype(str)) == list(q_mem.obs["predicted_cell_type"].astype(str))
    assert np.array_equal(q_fil.obs["prediction_confidence"], q_mem.obs["prediction_confidence"])

    scllm.pp.highly_variable_genes(q_mem, n_top_genes=50, flavor="seurat_v3")
    for layer in ("counts", "raw"):
        scllm.pp.highly_variable_genes(q_fil, n_top_genes=50, flavor="seurat_v3", layer=layer)
        assert q_fil.isbacked
        assert np.array_equal(q_fil.var["highly_variable"], q_mem.var["highly_variable"]), layer
        assert np.array_equal(q_fil.var["variances_norm"], q_mem.var["variances_norm"]), layer
    # in-place preprocessing of a layer (in memory) works; of X it is refused
    for a, layer in ((q_mem, None), (q_fil, "counts")):
        scllm.pp.normalize_total(a, target_sum=1e4, layer=layer)
        scllm.pp.log1p(a, layer=layer)
    assert np.array_equal(q_fil.layers["counts"].toarray(), q_mem.X.toarray())
    with pytest.raises(ValueError, match="to_memory"):
        scllm.pp.log1p(q_fil)
