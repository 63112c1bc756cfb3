"""scllm.tl.embed runs the CLI's own embedding on an AnnData in memory: bit for bit what
`scllm embed` writes for the same file, for every family; the shipped model is the default."""

import json

import anndata as ad
import numpy as np
import pytest

import scllm
from conftest import ROOT, fixture, read, run_cli

CASES = {
    "scgpt": ("scgpt/small", "data/pbmc3k_300.h5ad", "X_scGPT"),
    "geneformer": ("geneformer/v1", "geneformer/cells.h5ad", "X_geneformer"),
    "scbert": ("scbert/model", "scbert/cells.h5ad", "X_scBERT"),
    "cellplm": ("cellplm", "cellplm/cells.h5ad", "X_cellplm"),
}


def cli_embedding(tmp_path, model, cells, *extra):
    out = tmp_path / "cli.h5ad"
    r = run_cli("embed", fixture(cells), "--model", model, "-o", out, "--json", *extra)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    return ad.read_h5ad(out), summary


@pytest.mark.parametrize("family", sorted(CASES))
def test_embed_equals_the_cli_bit_for_bit(tmp_path, family):
    model, cells, key = CASES[family]
    cli, summary = cli_embedding(tmp_path, fixture(model), cells)
    assert summary["obsm_key"] == key
    a = read(cells)
    obs_before = a.obs.copy()
    out = scllm.tl.embed(a, model=fixture(model))
    assert out["family"] == summary["family"]
    assert out["obsm_key"] == key
    assert a.obsm[key].dtype == np.float32
    assert a.obsm[key].shape == cli.obsm[key].shape
    assert np.array_equal(a.obsm[key], cli.obsm[key]), (
        f"max difference {np.abs(a.obsm[key] - cli.obsm[key]).max()}"
    )
    assert a.obs.equals(obs_before)
    if family == "cellplm":
        ours, theirs = a.uns["cellplm_sets"], cli.uns["cellplm_sets"]
        assert set(ours) == set(theirs)
        assert ours["group_by"] == theirs["group_by"]
        for k in ("n_groups", "n_sets", "batch_size"):
            assert int(ours[k]) == int(theirs[k])


def test_embed_options_reach_the_model(tmp_path):
    # a dense X, another key, bf16 and a CellPLM set size: still the CLI's numbers
    cli, _ = cli_embedding(
        tmp_path, fixture("cellplm"), "cellplm/cells.h5ad", "--batch-size", "7",
        "--precision", "bf16", "--obsm-key", "emb",
    )
    a = read("cellplm/cells.h5ad")
    a.X = a.X.toarray() if hasattr(a.X, "toarray") else a.X
    out = scllm.tl.embed(a, model=fixture("cellplm"), batch_size=7, precision="bf16", key_added="emb")
    assert out["precision"] == "bf16" and out["set_size"] == 7
    assert np.array_equal(a.obsm["emb"], cli.obsm["emb"])


def test_the_shipped_model_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SCLLM_MODEL", raising=False)
    a = read("data/kang2018_pbmc_400.h5ad")
    out = scllm.tl.embed(a)
    assert out["family"] == "cellplm"
    assert out["model"].endswith("cellplm-small")
    shipped = ROOT / "models" / "cellplm-small"
    cli, _ = cli_embedding(tmp_path, shipped, "data/kang2018_pbmc_400.h5ad")
    assert np.array_equal(a.obsm["X_cellplm"], cli.obsm["X_cellplm"])


def test_copy_leaves_the_input():
    a = read("cellplm/cells.h5ad")
    out = scllm.tl.embed(a, model=fixture("cellplm"), copy=True)
    assert "X_cellplm" not in a.obsm
    assert "X_cellplm" in out["adata"].obsm


@pytest.mark.parametrize("family", ["scgpt", "geneformer"])
def test_a_backed_anndata_streams_from_its_file(tmp_path, family):
    model, cells, key = CASES[family]
    cli, _ = cli_embedding(tmp_path, fixture(model), cells, "--stream", "--block-cells", "7")
    a = ad.read_h5ad(fixture(cells), backed="r")
    out = scllm.tl.embed(a, model=fixture(model))
    assert out["streamed"] is True
    assert np.array_equal(a.obsm[key], cli.obsm[key])
    # the same numbers as the in-memory path
    m = read(cells)
    scllm.tl.embed(m, model=fixture(model))
    assert np.array_equal(a.obsm[key], m.obsm[key])


def test_a_backed_cellplm_anndata_gets_the_in_memory_embedding():
    path = fixture("cellplm/cells.h5ad")
    for kwargs in ({}, {"batch_size": 5}):
        a = ad.read_h5ad(path, backed="r")
        out = scllm.tl.embed(a, model=fixture("cellplm"), **kwargs)
        assert out["streamed"] is True
        m = read(path)
        scllm.tl.embed(m, model=fixture("cellplm"), **kwargs)
        assert np.array_equal(a.obsm["X_cellplm"], m.obsm["X_cellplm"])
        assert dict(a.uns["cellplm_sets"]) == dict(m.uns["cellplm_sets"])


def test_the_default_precision_is_the_clis_and_is_reported():
    # bf16 where the CPU has AVX-512 BF16, else f32, as `scllm embed` without --precision
    a, b = read("cellplm/cells.h5ad"), read("cellplm/cells.h5ad")
    out = scllm.tl.embed(a, model=fixture("cellplm"))
    assert out["precision_default"] is True and out["precision"] in ("bf16", "f32")
    asked = scllm.tl.embed(b, model=fixture("cellplm"), precision=out["precision"])
    assert asked["precision_default"] is False
    assert np.array_equal(a.obsm["X_cellplm"], b.obsm["X_cellplm"])


def test_the_last_model_is_kept_for_the_next_call():
    model = fixture("cellplm")
    scllm.tl.forget_model()
    a, b = read("cellplm/cells.h5ad"), read("cellplm/cells.h5ad")
    first = scllm.tl.embed(a, model=model)
    again = scllm.tl.embed(b, model=model)
    assert (first["model_reused"], again["model_reused"]) == (False, True)
    assert np.array_equal(a.obsm["X_cellplm"], b.obsm["X_cellplm"])
    # another precision is another load; forgetting empties the slot
    c = read("cellplm/cells.h5ad")
    assert scllm.tl.embed(c, model=model, precision="int8")["model_reused"] is False
    scllm.tl.forget_model()
    assert scllm.tl.embed(c, model=model, precision="int8")["model_reused"] is False
    scllm.tl.forget_model()
