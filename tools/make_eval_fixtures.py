#!/usr/bin/env python3
"""Fixtures for scllm-eval: scikit-learn's own numbers on committed inputs.

Run with the reference environment (numpy, scipy, scikit-learn, scanpy, anndata):

    /work/.venv-ref/bin/python tools/make_eval_fixtures.py [--shared ../shared/data]

Writes tests/fixtures/eval/:
  metrics_parity.json    labelings + embeddings and sklearn's metrics on them
  kang_ref.h5ad          reference: 1,200 cells (150 per donor) of kang2018_pbmc, donors other than 101
  kang_query.h5ad        query: 500 cells of donor 101 (leave-donor-out), with obsm['X_pca']
                         (sklearn PCA fitted on the reference) for the kNN parity check
  kang_split_sklearn.json  sklearn on that split: LogisticRegression(penalty='l1',
                         solver='liblinear') per C (accuracy, objective, non-zeros), 5-fold CV
                         choice of C, KNeighborsClassifier on X_pca (predictions)
"""
import argparse
import json
import os
import time
import warnings

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp
import sklearn
from sklearn import metrics as skm
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier

warnings.filterwarnings("ignore")


def l1_ovr(C=1.0, **kw):
    # sklearn >= 1.7 no longer lets liblinear do one-vs-rest itself; wrapping it is the same
    # scheme (one binary liblinear problem per class, sigmoids normalised for probabilities)
    return OneVsRestClassifier(LogisticRegression(penalty="l1", solver="liblinear", C=C, random_state=0, **kw))


def objective(m, x, y, C):
    """liblinear's objective summed over the one-vs-rest problems: ||w||_1 + |b| + C sum log(1+exp(-y f))."""
    coef = np.vstack([e.coef_ for e in m.estimators_])
    icpt = np.concatenate([e.intercept_ for e in m.estimators_])
    dec = x @ coef.T + icpt
    obj = 0.0
    for k, cls in enumerate(m.classes_):
        yy = np.where(y == cls, 1.0, -1.0)
        obj += np.abs(coef[k]).sum() + abs(icpt[k]) + C * np.logaddexp(0, -yy * dec[:, k]).sum()
    return float(obj), coef

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval")


def metric_case(name, truth, pred, emb=None):
    truth = [str(t) for t in truth]
    pred = [str(p) for p in pred]
    labels = sorted(set(truth) | set(pred))
    p, r, f, s = skm.precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    case = {
        "name": name,
        "truth": truth,
        "pred": pred,
        "labels": labels,
        "accuracy": skm.accuracy_score(truth, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, pred),
        "precision_macro": skm.precision_score(truth, pred, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(truth, pred, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(truth, pred, average="macro", zero_division=0),
        "precision_weighted": skm.precision_score(truth, pred, average="weighted", zero_division=0),
        "recall_weighted": skm.recall_score(truth, pred, average="weighted", zero_division=0),
        "f1_weighted": skm.f1_score(truth, pred, average="weighted", zero_division=0),
        "per_class": {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.tolist()},
        "confusion": skm.confusion_matrix(truth, pred, labels=labels).tolist(),
        "ari": skm.adjusted_rand_score(truth, pred),
        "nmi": skm.normalized_mutual_info_score(truth, pred),
    }
    if emb is not None:
        case["embedding"] = emb.tolist()
        case["dim"] = emb.shape[1]
        case["silhouette_euclidean"] = float(skm.silhouette_score(emb, truth, metric="euclidean"))
        case["silhouette_cosine"] = float(skm.silhouette_score(emb, truth, metric="cosine"))
    return case


def metrics_parity():
    rng = np.random.default_rng(0)
    cases = []
    # 1. six types with realistic confusion, one type never predicted, one label only predicted
    n = 400
    classes = np.array(["B", "CD4 T", "CD8 T", "Mono", "NK", "pDC"])
    truth = rng.choice(classes, size=n, p=[0.2, 0.35, 0.15, 0.2, 0.08, 0.02])
    pred = truth.copy()
    flip = rng.random(n) < 0.25
    pred[flip] = rng.choice(np.array(["B", "CD4 T", "CD8 T", "Mono", "NK", "Unknown"]), size=flip.sum())
    pred[truth == "pDC"] = "Mono"
    centers = rng.normal(size=(len(classes), 8)) * 3
    code = np.searchsorted(classes, truth)
    emb = centers[code] + rng.normal(size=(n, 8))
    cases.append(metric_case("six_types_noisy", truth, pred, emb))
    # 2. a clustering with different names and a split cluster (ARI/NMI), small embedding
    truth = np.repeat(["a", "b", "c"], [30, 20, 10])
    pred = np.array(["k0"] * 15 + ["k1"] * 15 + ["k2"] * 18 + ["k0"] * 2 + ["k3"] * 10)
    emb = rng.normal(size=(60, 3)) + np.repeat(np.eye(3) * 4, [30, 20, 10], axis=0)
    cases.append(metric_case("clusters_renamed", truth, pred, emb))
    # 3. singleton cluster in the embedding labels (silhouette 0 for it), perfect prediction
    truth = np.array(["x"] * 9 + ["y"] * 9 + ["z"])
    emb = rng.normal(size=(19, 4))
    cases.append(metric_case("perfect_with_singleton", truth, truth, emb))
    # 4. everything predicted as one class
    truth = rng.choice(np.array(["p", "q", "r"]), size=50)
    cases.append(metric_case("constant_prediction", truth, np.array(["q"] * 50)))
    with open(os.path.join(OUT, "metrics_parity.json"), "w") as f:
        json.dump({"sklearn": sklearn.__version__, "cases": cases}, f)


def lognorm(a):
    b = a.copy()
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    return b.X


def kang_split(shared):
    a = ad.read_h5ad(os.path.join(shared, "kang2018_pbmc.h5ad"))
    rng = np.random.default_rng(0)
    donors = a.obs["donor"].astype(str).values
    ref_idx = []
    for d in sorted(set(donors) - {"101"}):
        idx = np.where(donors == d)[0]
        ref_idx.extend(sorted(rng.choice(idx, size=150, replace=False)))
    q_all = np.where(donors == "101")[0]
    q_idx = sorted(rng.choice(q_all, size=500, replace=False))
    ref = a[ref_idx].copy()
    qry = a[q_idx].copy()
    for b in (ref, qry):
        b.uns = {k: b.uns[k] for k in ("source", "license", "citation", "x_kind") if k in b.uns}
        b.obs = b.obs[["cell_type", "donor"]].copy()
        b.var = b.var[["gene_symbol"]].copy()
        b.X = sp.csr_matrix(b.X, dtype=np.float32)
    # keep only genes seen in the subsets (smaller files; the gene sets still agree)
    keep = np.asarray((ref.X.sum(0) > 0) | (qry.X.sum(0) > 0)).ravel()
    ref = ref[:, keep].copy()
    qry = qry[:, keep].copy()

    xr, xq = lognorm(ref), lognorm(qry)
    yr, yq = ref.obs["cell_type"].astype(str).values, qry.obs["cell_type"].astype(str).values
    out = {"sklearn": sklearn.__version__, "n_ref": int(ref.n_obs), "n_query": int(qry.n_obs),
           "n_genes": int(ref.n_vars), "logreg": []}
    classes = np.unique(yr)
    for C in [0.01, 0.1, 1.0, 10.0, 100.0]:
        t = time.perf_counter()
        m = l1_ovr(C).fit(xr, yr)
        secs = time.perf_counter() - t
        obj, coef = objective(m, xr, yr, C)
        # the same problem solved to a tight tolerance: the optimum both solvers approach
        tight, _ = objective(l1_ovr(C, tol=1e-8, max_iter=1000).fit(xr, yr), xr, yr, C)
        out["logreg"].append({
            "C": C,
            "accuracy": float((m.predict(xq) == yq).mean()),
            "objective": obj,
            "objective_tight": tight,
            "nonzero_genes": int((np.abs(coef).sum(0) > 0).sum()),
            "fit_seconds": secs,
        })
    gs = GridSearchCV(l1_ovr(), {"estimator__C": [0.01, 0.1, 1.0, 10.0, 100.0]},
                      cv=StratifiedKFold(5, shuffle=True, random_state=0)).fit(xr, yr)
    out["cv_best_C"] = gs.best_params_["estimator__C"]
    out["cv_mean_accuracy"] = gs.cv_results_["mean_test_score"].tolist()
    out["cv_best_query_accuracy"] = float((gs.predict(xq) == yq).mean())

    pca = PCA(n_components=30, random_state=0).fit(xr.toarray())
    ref.obsm["X_pca"] = pca.transform(xr.toarray()).astype(np.float32)
    qry.obsm["X_pca"] = pca.transform(xq.toarray()).astype(np.float32)
    for vote in ("uniform", "distance"):
        knn = KNeighborsClassifier(n_neighbors=15, metric="cosine", algorithm="brute", weights=vote)
        knn.fit(ref.obsm["X_pca"], yr)
        pred = knn.predict(qry.obsm["X_pca"])
        out[f"knn_{vote}_pred"] = pred.tolist()
        out[f"knn_{vote}_accuracy"] = float((pred == yq).mean())
    out["classes"] = classes.tolist()
    ref.write_h5ad(os.path.join(OUT, "kang_ref.h5ad"), compression="gzip")
    qry.write_h5ad(os.path.join(OUT, "kang_query.h5ad"), compression="gzip")
    with open(os.path.join(OUT, "kang_split_sklearn.json"), "w") as f:
        json.dump(out, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared", "data"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    metrics_parity()
    kang_split(args.shared)


if __name__ == "__main__":
    main()
