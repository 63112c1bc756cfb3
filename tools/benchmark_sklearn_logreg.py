#!/usr/bin/env python3
"""scikit-learn's L1 logistic regression on the same split as a `scllm benchmark` report.

  /work/.venv-ref/bin/python tools/benchmark_sklearn_logreg.py REPORT_DIR/results.json

Reads the split (a one-file `holdout` split), the label column and the C that scllm's logreg chose
by cross-validation from results.json, then fits
OneVsRestClassifier(LogisticRegression(penalty='l1', solver='liblinear', C=C)) on
log1p(normalize_total(X, 1e4)) of the training cells (all genes: only valid when scllm's logreg
used all genes, i.e. n_hvg >= the number of genes, which the script checks) and prints scllm's
and scikit-learn's query accuracy, macro F1 and the agreement of their predictions.
"""
import json
import sys
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier

warnings.filterwarnings("ignore")
rep_path = sys.argv[1]
rep = json.load(open(rep_path))
plan = rep["split"]["plan"]
assert plan["kind"] == "holdout", "this script handles one-file holdout splits"
cfg = rep["config"]
assert not cfg["data"]["include"] and not cfg["data"]["exclude"] and not cfg.get("label_map"), \
    "filters / label maps not reproduced here"
lr = next(m for m in rep["methods"] if m["name"] == "logreg")
params = lr["details"]["params"]
C = params["C"]
a = ad.read_h5ad(plan["file"])
assert params["n_hvg"] == a.n_vars, f"scllm used {params['n_hvg']} of {a.n_vars} genes; this script uses all"
label = cfg["label"]
lab = a.obs[label]
keep = ~lab.isna().values
drop = set(cfg["data"]["drop_labels"])
keep &= ~lab.astype(str).isin(drop).values
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
v = a.obs[plan["column"]].astype(str).values
tr = keep & (v != plan["value"])
te = keep & (v == plan["value"])
y = lab.astype(str).values
t0 = time.perf_counter()
m = OneVsRestClassifier(LogisticRegression(penalty="l1", solver="liblinear", C=C)).fit(a.X[tr], y[tr])
fit_s = time.perf_counter() - t0
p = m.predict(a.X[te])
# scllm's predictions, in the same cell order (predictions.tsv is written next to results.json)
tsv = pd.read_csv(rep_path.replace("results.json", "predictions.tsv"), sep="\t", dtype=str, keep_default_na=False)
ids = a.obs_names[te]
assert list(tsv["cell_id"]) == list(ids), "cell order differs"
ps = tsv["logreg"].values
out = {
    "split": rep["split"]["description"],
    "n_train": int(tr.sum()), "n_query": int(te.sum()), "C (scllm's CV choice)": C,
    "scllm_accuracy": round(lr["metrics"]["accuracy"], 4),
    "sklearn_accuracy": round(float(accuracy_score(y[te], p)), 4),
    "scllm_f1_macro": round(lr["metrics"]["f1_macro"], 4),
    "sklearn_f1_macro": round(float(f1_score(y[te], p, average="macro")), 4),
    "prediction_agreement": round(float((ps == p).mean()), 4),
    "sklearn_fit_seconds": round(fit_s, 2),
    "scllm_logreg_wall_seconds_incl_cv": round(lr["wall_seconds"], 2),
}
print(json.dumps(out, indent=1))
