"""scllm.metrics.evaluate equals scikit-learn on the committed kang cells with noisy
predictions, an Unknown class, a missing truth label and a PCA embedding."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

import scllm
from conftest import read


@pytest.fixture
def labelled():
    a = read("data/kang2018_pbmc_400.h5ad")
    rng = np.random.default_rng(0)
    truth = a.obs["cell_type"].astype(str).to_numpy()
    pred = truth.copy()
    flip = rng.random(len(pred)) < 0.25
    pred[flip] = rng.choice(np.unique(truth), flip.sum())
    pred[rng.random(len(pred)) < 0.05] = "Unknown"
    a.obs["pred"] = pd.Categorical(pred)
    t = a.obs["cell_type"].astype(object)
    t.iloc[3] = np.nan  # an unlabelled cell: left out of every metric
    a.obs["truth"] = pd.Categorical(t)
    a.obs["cluster"] = pd.Categorical(rng.integers(0, 6, a.n_obs).astype(str))
    x = np.log1p(a.X.toarray())
    x -= x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    a.obsm["X_pca"] = (u[:, :20] * s[:20]).astype(np.float32)
    return a


def test_evaluate_equals_scikit_learn(labelled):
    a = labelled
    rep, per_class = scllm.metrics.evaluate(
        a, truth="truth", pred="pred", embedding="X_pca", cluster="cluster",
        distances=["euclidean", "cosine"],
    )
    keep = a.obs["truth"].notna().to_numpy()
    t = a.obs["truth"].astype(str).to_numpy()[keep]
    p = a.obs["pred"].astype(str).to_numpy()[keep]
    c = rep["classification"]
    assert rep["n_scored"] == keep.sum() and rep["n_unlabeled_skipped"] == 1
    assert c["accuracy"] == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)
    assert c["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(t, p), abs=1e-12)
    for avg in ("macro", "weighted"):
        pr, rc, f1, _ = skm.precision_recall_fscore_support(t, p, average=avg, zero_division=0)
        assert c[f"precision_{avg}"] == pytest.approx(pr, abs=1e-12)
        assert c[f"recall_{avg}"] == pytest.approx(rc, abs=1e-12)
        assert c[f"f1_{avg}"] == pytest.approx(f1, abs=1e-12)
    labels = sorted(set(t) | set(p))
    assert c["labels"] == labels
    assert np.array_equal(np.array(c["confusion"]), skm.confusion_matrix(t, p, labels=labels))
    pr, rc, f1, sup = skm.precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    assert list(per_class["label"]) == labels
    np.testing.assert_allclose(per_class["f1"], f1, atol=1e-12)
    np.testing.assert_array_equal(per_class["support"], sup)
    cl = a.obs["cluster"].astype(str).to_numpy()[keep]
    assert rep["ari"] == pytest.approx(skm.adjusted_rand_score(t, cl), abs=1e-12)
    assert rep["nmi"] == pytest.approx(skm.normalized_mutual_info_score(t, cl), abs=1e-12)
    e = a.obsm["X_pca"][keep].astype(np.float64)
    sil = {s["metric"]: s["score"] for s in rep["silhouette"]}
    assert sil["euclidean"] == pytest.approx(skm.silhouette_score(e, t, metric="euclidean"), abs=1e-6)
    assert sil["cosine"] == pytest.approx(skm.silhouette_score(e, t, metric="cosine"), abs=1e-6)
    assert rep["n_unknown"] == (p == "Unknown").sum()


def test_evaluate_bad_input(labelled):
    with pytest.raises(KeyError, match="no_such"):
        scllm.metrics.evaluate(labelled, truth="no_such", pred="pred")
    with pytest.raises(KeyError, match="X_umap"):
        scllm.metrics.evaluate(labelled, truth="truth", embedding="X_umap")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        scllm.metrics.evaluate(labelled, truth="truth")
    with pytest.raises(ValueError, match="distance"):
        scllm.metrics.evaluate(labelled, truth="truth", embedding="X_pca", distances=["manhattan"])
