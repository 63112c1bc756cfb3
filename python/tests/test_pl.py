"""scllm.tl.umap equals `scllm umap`; scllm.pl writes the CLI's pictures (PNG or SVG) and
refuses bad input before drawing."""

import anndata as ad
import numpy as np
import pytest

import scllm
from conftest import fixture, read, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def test_umap_equals_the_cli(tmp_path):
    a = read("cellplm/cells.h5ad")
    scllm.tl.embed(a, model=fixture("cellplm"))
    src = tmp_path / "emb.h5ad"
    a.write_h5ad(src)
    out = tmp_path / "umap.h5ad"
    r = run_cli("umap", src, "--use-rep", "X_cellplm", "-o", out)
    assert r.returncode == 0, r.stderr
    s = scllm.tl.umap(a, use_rep="X_cellplm")
    assert s["representation"] == "obsm['X_cellplm']"
    assert a.obsm["X_umap"].shape == (a.n_obs, 2) and a.obsm["X_umap"].dtype == np.float32
    assert np.array_equal(a.obsm["X_umap"], ad.read_h5ad(out).obsm["X_umap"])
    # without an embedding: PCA of the log-normalised counts, as the CLI
    b = read("cellplm/cells.h5ad")
    scllm.tl.umap(b)
    out2 = tmp_path / "umap_pca.h5ad"
    assert run_cli("umap", fixture("cellplm/cells.h5ad"), "-o", out2).returncode == 0
    assert np.array_equal(b.obsm["X_umap"], ad.read_h5ad(out2).obsm["X_umap"])


def test_pictures(tmp_path):
    q, ref = read("eval/kang_query.h5ad"), read("eval/kang_ref.h5ad")
    scllm.tl.baseline(q, ref, method="correlation", n_hvg=500)
    p = scllm.pl.confusion(q, save=tmp_path / "cm.png", show=False)
    assert open(p, "rb").read(8) == PNG
    p = scllm.pl.per_class_f1(q, save=tmp_path / "f1.svg", show=False)
    assert open(p).read(200).lstrip().startswith("<svg")
    scllm.tl.umap(q)
    p = scllm.pl.umap(q, color=["cell_type", "predicted_cell_type"], show=False)
    assert open(p, "rb").read(8) == PNG
    run = tmp_path / "run"
    scllm.tl.finetune(read("data/kang2018_pbmc_400.h5ad"), fixture("scgpt/small"), method="head",
                      out=run, epochs=2, max_len=64, min_cells_per_class=2)
    p = scllm.pl.learning_curves(run, save=tmp_path / "lc.png", show=False)
    assert open(p, "rb").read(8) == PNG
    with pytest.raises(KeyError, match="no_col"):
        scllm.pl.umap(q, color="no_col", show=False)
    with pytest.raises(ValueError, match="png"):
        scllm.pl.confusion(q, save=tmp_path / "cm.jpg", show=False)
    with pytest.raises(FileNotFoundError):
        scllm.pl.learning_curves(tmp_path / "nothing", show=False)
