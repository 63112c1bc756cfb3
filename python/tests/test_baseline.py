"""scllm.tl.baseline runs `scllm baseline` on AnnData objects in memory: the same predictions
and confidences as the CLI on the committed kang reference/query split, for each method."""

import json

import anndata as ad
import numpy as np
import pytest

import scllm
from conftest import fixture, read, run_cli

CASES = {
    "logreg": ([], {}),
    "knn": (["--unknown-below", "auto"], {"unknown_below": "auto"}),
    "correlation": (["--n-hvg", "500"], {"n_hvg": 500}),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_baseline_equals_the_cli(tmp_path, method):
    flags, kw = CASES[method]
    out = tmp_path / "cli.h5ad"
    r = run_cli("baseline", method, fixture("eval/kang_query.h5ad"), "--train",
                fixture("eval/kang_ref.h5ad"), "-o", out, "--json", *flags)
    assert r.returncode == 0, r.stderr
    cli_summary = json.loads(r.stdout)
    cli = ad.read_h5ad(out)
    q, ref = read("eval/kang_query.h5ad"), read("eval/kang_ref.h5ad")
    s = scllm.tl.baseline(q, ref, label="cell_type", method=method, **kw)
    assert s["classes"] == cli_summary["classes"]
    assert s["n_unknown"] == cli_summary["n_unknown"]
    assert list(q.obs["predicted_cell_type"].astype(str)) == list(cli.obs["predicted_cell_type"].astype(str))
    assert np.array_equal(q.obs["prediction_confidence"].to_numpy(), cli.obs["prediction_confidence"].to_numpy())
    assert "scllm_baseline" in q.uns
    if "metrics" in cli_summary:
        assert s["metrics"]["accuracy"] == cli_summary["metrics"]["accuracy"]


def test_knn_on_an_embedding_and_bad_input():
    q, ref = read("eval/kang_query.h5ad"), read("eval/kang_ref.h5ad")
    scllm.tl.embed(q, model=fixture("cellplm"))
    scllm.tl.embed(ref, model=fixture("cellplm"))
    s = scllm.tl.baseline(q, ref, method="knn", use_rep="X_cellplm")
    assert s["method"] == "knn" and q.obs["predicted_cell_type"].notna().all()
    before = q.obs.copy()
    with pytest.raises(KeyError, match="X_umap"):
        scllm.tl.baseline(q, ref, method="knn", use_rep="X_umap")
    with pytest.raises(KeyError, match="nolabel"):
        scllm.tl.baseline(q, ref, label="nolabel")
    with pytest.raises(ValueError, match="unknown baseline"):
        scllm.tl.baseline(q, ref, method="svm")
    assert q.obs.equals(before)


def test_celltypist_equals_the_cli(tmp_path):
    d = "celltypist"
    model = fixture(f"{d}/models/cd4.pkl")
    out = tmp_path / "cli.h5ad"
    cli = run_cli("baseline", "celltypist", fixture(f"{d}/tcells_query.h5ad"), "--model", model,
                  "--mode", "prob_match", "--p-thres", "0.2", "--over-clustering",
                  "celltypist_over_clustering", "-o", out, "--json")
    assert cli.returncode == 0, cli.stderr
    ref = ad.read_h5ad(out)
    q = read(f"{d}/tcells_query.h5ad")
    s = scllm.tl.baseline(q, method="celltypist", model=model, mode="prob_match", p_thres=0.2,
                          over_clustering="celltypist_over_clustering")
    assert s["n_query"] == 120 and len(s["classes"]) == 42
    for col in ["predicted_labels", "majority_voting", "conf_score"]:
        assert list(q.obs[col]) == list(ref.obs[col]), col
    assert np.array_equal(q.obsm["celltypist_probability"], ref.obsm["celltypist_probability"])
    with pytest.raises(ValueError, match="model="):
        scllm.tl.baseline(q, method="celltypist")
    with pytest.raises(FileNotFoundError):
        scllm.tl.baseline(q, method="celltypist", model=tmp_path / "none.pkl")
