#!/usr/bin/env python3
"""Regenerate tests/fixtures/celltypist/: real CellTypist models, small queries and what
celltypist itself predicts on them (the parity reference of `scllm baseline celltypist`).

Inputs (none is needed to build or test scllm):
  * the STCAT T-cell models (MIT): the PyPI `stcat==1.1.2` wheel, `STCAT/data/{T_cell,cd4,cd8}.pkl`
    (downloaded here with `pip download --no-deps`, or --stcat-wheel);
  * CellTypist's 2020 test model and expected probabilities (MIT): repository Teichlab/celltypist
    at commit 1cdb119, `tests/data/models/immune.pkl` and `tests/data/samples/
    expected_{probability_matrix,predicted_labels}.csv` (`git show 1cdb119:PATH` of a clone;
    --legacy-dir holds the three files);
  * the sample query shipped in the `celltypist` 1.7.1 wheel (`celltypist/data/samples/
    sample_cell_by_gene.csv`, the cells the 2020 expected matrix was computed on);
  * ../shared/data/wu2020_tcells.h5ad (200 T cells, BSD-3-Clause; --tcells).

Reference: `celltypist` 1.7.1 (`pip install celltypist==1.7.1`). Its own code runs every
prediction, over-clustering and majority vote below. The STCAT pickles were written by an older
scikit-learn whose SGD loss class (`sklearn.linear_model._sgd_fast.Log`) no longer exists; they are
unpickled with that one class mapped to a placeholder (predictions never use the loss object) and
handed to celltypist as `celltypist.models.Model(classifier, scaler, description)`, which is what
`Model.load` builds.

Usage: .venv-ref/bin/python tools/make_celltypist_fixture.py --legacy-dir DIR
"""

import argparse
import gzip
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

import celltypist
from celltypist.classifier import AnnotationResult, Classifier
from celltypist.models import Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "celltypist")
STCAT_MODELS = ["T_cell", "cd4", "cd8"]
# prob-match threshold of the fixture (celltypist's default is 0.5; a lower one gives cells with
# several labels as well as `Unassigned` ones on these 120 cells)
P_THRES = 0.2
N_TCELLS = 120
LEGACY_EVERY = 23  # every 23rd of the 559 sample cells: 25 cells (over-clustering and the vote are
# checked on the T cells; celltypist votes on more than 50 cells only)


class _Placeholder:
    """Stands in for scikit-learn's removed SGD loss class; never called by predictions."""

    def __init__(self, *args):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _OldSklearn(pickle.Unpickler):
    RENAMED = {
        "sklearn.linear_model.stochastic_gradient": "sklearn.linear_model._stochastic_gradient",
        "sklearn.linear_model.sgd_fast": "sklearn.linear_model._sgd_fast",
    }

    def find_class(self, module, name):
        module = self.RENAMED.get(module, module)
        if module == "sklearn.linear_model._sgd_fast" and name == "Log":
            return _Placeholder
        return super().find_class(module, name)


def load_model(path):
    with open(path, "rb") as f:
        d = _OldSklearn(f).load()
    return Model(d["Model"], d["Scaler_"], d["description"])


def stcat_models(wheel):
    tmp = tempfile.mkdtemp()
    if wheel is None:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "stcat==1.1.2", "-d", tmp]
        )
        wheel = os.path.join(tmp, [f for f in os.listdir(tmp) if f.endswith(".whl")][0])
    paths = {}
    with zipfile.ZipFile(wheel) as z:
        for m in STCAT_MODELS:
            dst = os.path.join(tmp, f"{m}.pkl")
            with z.open(f"STCAT/data/{m}.pkl") as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out)
            paths[m] = dst
    return paths


def tcells_query(path, models):
    """120 T cells as celltypist expects an .h5ad: log1p(CP10k) of all genes in X, then only the
    genes any STCAT model uses kept (plus 40 others), so the file stays small."""
    a = ad.read_h5ad(path)
    a = a[:N_TCELLS].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    feats = set()
    for m in models.values():
        feats |= set(m.features)
    in_model = np.isin(a.var_names, list(feats))
    others = np.where(~in_model)[0][:: max(1, (~in_model).sum() // 40)][:40]
    keep = np.sort(np.concatenate([np.where(in_model)[0], others]))
    q = a[:, keep].copy()
    q.obs = q.obs[["cell_type"]].copy()
    q.var = pd.DataFrame(index=q.var_names)
    q.uns = {}
    q.obsm = {}
    return q


def over_cluster(adata):
    """celltypist 1.7.1's own heuristic over-clustering (scanpy neighbours + leiden)."""
    clf = Classifier.__new__(Classifier)
    clf.adata = adata.copy()
    return clf.over_cluster().astype(str).values


def run_models(query_path, q, models, over):
    exp = ad.AnnData(obs=pd.DataFrame(index=q.obs_names))
    exp.uns["p_thres"] = P_THRES
    for name, model in models.items():
        best = celltypist.annotate(
            query_path, model=model, majority_voting=True, over_clustering=over
        )
        prob = celltypist.annotate(
            query_path, model=model, mode="prob match", p_thres=P_THRES, majority_voting=True,
            over_clustering=over,
        )
        classes = np.asarray(best.probability_matrix.columns, dtype=str)
        exp.uns[f"{name}_classes"] = classes
        exp.obs[f"{name}_best"] = best.predicted_labels["predicted_labels"].astype(str).values
        exp.obs[f"{name}_best_mv"] = best.predicted_labels["majority_voting"].astype(str).values
        exp.obs[f"{name}_prob"] = prob.predicted_labels["predicted_labels"].astype(str).values
        exp.obs[f"{name}_prob_mv"] = prob.predicted_labels["majority_voting"].astype(str).values
        exp.obs[f"{name}_conf"] = best.to_adata().obs["conf_score"].values.astype(np.float64)
        exp.obsm[f"{name}_probability"] = best.probability_matrix.values.astype(np.float64)
        exp.obsm[f"{name}_decision"] = best.decision_matrix.values.astype(np.float64)
        multi = sum("|" in x for x in exp.obs[f"{name}_prob"])
        unassigned = sum(x == "Unassigned" for x in exp.obs[f"{name}_prob"])
        print(f"{name}: {len(classes)} classes; prob match: {multi} multi-label, "
              f"{unassigned} Unassigned")
    return exp


def legacy(legacy_dir, sample_csv):
    """The 2020 test model's sample cells: a subset of the wheel's sample (near-integer counts)
    and the matching rows of the repository's expected probability matrix and labels (copied
    verbatim)."""
    df = pd.read_csv(sample_csv, index_col=0)
    rows = np.arange(0, df.shape[0], LEGACY_EVERY)
    sub = df.iloc[rows]
    q = ad.AnnData(
        # float64 as read: the sample holds near-integers (1 - 1e-16 and the like), and the 2020
        # expected matrix is log1p of exactly these values
        X=sp.csr_matrix(sub.values),
        obs=pd.DataFrame(index=sub.index.astype(str)),
        var=pd.DataFrame(index=sub.columns.astype(str)),
    )
    lines = open(os.path.join(legacy_dir, "expected_probability_matrix.csv")).read().splitlines()
    labels = open(os.path.join(legacy_dir, "expected_predicted_labels.csv")).read().splitlines()
    # rows are numbered 0..558 in file order, after one header line
    prob = [lines[0]] + [lines[1 + i] for i in rows]
    lab = [labels[0]] + [labels[1 + i] for i in rows]
    return q, prob, lab


class _RunsACommand:
    """Pickles as a call of os.system: a reader that executes pickles would run it."""

    def __reduce__(self):
        return (os.system, ("echo this pickle ran a command",))


def bad_models():
    """Inputs that must be refused by name: a pickle calling os.system, and a CellTypist-shaped
    dict holding a classifier that is not on the allow-list (an unfitted SVC)."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    with open(os.path.join(OUT, "models", "bad_os_system.pkl"), "wb") as f:
        pickle.dump({"Model": _RunsACommand()}, f, protocol=4)
    with open(os.path.join(OUT, "models", "bad_svc.pkl"), "wb") as f:
        pickle.dump({"Model": SVC(), "Scaler_": StandardScaler(), "description": {}}, f, protocol=4)


def fixed_length_var_names(src, dst):
    """Copy the .h5ad `src` to `dst` with var/_index as gzip-compressed fixed-length strings:
    HDF5 keeps variable-length strings in an uncompressed heap (32,786 names took 1 MB); readers
    accept both."""
    import h5py

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for key in f:
            if key != "var":
                f.copy(f[key], g, name=key)
        var = g.create_group("var")
        for k, v in f["var"].attrs.items():
            var.attrs[k] = v
        for key in f["var"]:
            if key != "_index":
                f.copy(f["var"][key], var, name=key)
        old = f["var/_index"]
        names = [x.encode() for x in old.asstr()[:]]
        width = max(len(x) for x in names)
        new = var.create_dataset(
            "_index", data=np.array(names, dtype=f"S{width}"), compression="gzip"
        )
        for k, v in old.attrs.items():
            new.attrs[k] = v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--legacy-dir", required=True,
                   help="folder with immune.pkl, expected_probability_matrix.csv and "
                        "expected_predicted_labels.csv from Teichlab/celltypist@1cdb119")
    p.add_argument("--stcat-wheel", default=None)
    p.add_argument(
        "--tcells", default=os.path.join(ROOT, "..", "shared", "data", "wu2020_tcells.h5ad")
    )
    a = p.parse_args()
    assert celltypist.__version__ == "1.7.1", celltypist.__version__
    os.makedirs(os.path.join(OUT, "models"), exist_ok=True)

    bad_models()
    paths = stcat_models(a.stcat_wheel)
    for m, src in paths.items():
        shutil.copyfile(src, os.path.join(OUT, "models", f"{m}.pkl"))
    models = {m: load_model(src) for m, src in paths.items()}

    q = tcells_query(a.tcells, models)
    over = over_cluster(q)
    q.obs["celltypist_over_clustering"] = pd.Categorical(over)
    qpath = os.path.join(OUT, "tcells_query.h5ad")
    q.write_h5ad(qpath, compression="gzip")
    exp = run_models(qpath, q, models, "celltypist_over_clustering")
    exp.write_h5ad(os.path.join(OUT, "tcells_expected.h5ad"), compression="gzip")
    print(f"T cells: {q.n_obs} cells x {q.n_vars} genes, {len(set(over))} over-clusters")

    with open(os.path.join(a.legacy_dir, "immune.pkl"), "rb") as f, \
            gzip.GzipFile(os.path.join(OUT, "models", "legacy_immune.pkl.gz"), "wb", mtime=0) as g:
        shutil.copyfileobj(f, g)
    sample_csv = os.path.join(os.path.dirname(celltypist.__file__), "data", "samples",
                              "sample_cell_by_gene.csv")
    lq, prob, lab = legacy(a.legacy_dir, sample_csv)
    tmp = os.path.join(tempfile.mkdtemp(), "legacy_query.h5ad")
    lq.write_h5ad(tmp, compression="gzip")
    fixed_length_var_names(tmp, os.path.join(OUT, "legacy_query.h5ad"))
    with open(os.path.join(OUT, "legacy_expected_probability_matrix.csv"), "w") as f:
        f.write("\n".join(prob) + "\n")
    with open(os.path.join(OUT, "legacy_expected_labels.csv"), "w") as f:
        f.write("\n".join(lab) + "\n")
    print(f"legacy: {lq.n_obs} cells x {lq.n_vars} genes")


if __name__ == "__main__":
    main()
