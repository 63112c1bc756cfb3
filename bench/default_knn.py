"""Zero-shot embeddings of the default models vs PCA-50: 10-NN accuracy on each shipped split.

Development aid for bench/default_knn.sh (issue 15); scllm itself does not use Python.

  default_knn.py prepare OUTDIR CONFIG...   one query .h5ad per distinct query set (raw counts in X,
                                            the config's label in obs['knn_label']), plus splits.json
  default_knn.py cellplm-input OUTDIR     <split>.ens.h5ad: the query with var.index = var['ensembl_id']
                                            where the file has a complete, unique one (cellbench_3cl,
                                            kang2018_*), else as is (symbols, mapped through GENCODE by
                                            scllm)
  default_knn.py score OUTDIR [KEY=SUFFIX...]
                                            10-NN accuracy (cosine, 5-fold stratified CV, seed 0) of
                                            obsm[KEY] read from OUTDIR/<split>.<SUFFIX>.h5ad, and of
                                            PCA-50 of the query cells' log-normalized counts

The kNN is fit and scored on the query cells alone (cross-validated), so it measures how well an
embedding separates the labelled types, not label transfer from the training cells.
"""

import json
import os
import sys
import tomllib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SEED = 0


def shared_dir(config_dir: Path) -> Path:
    # same rule as the configs' header: $SCLLM_SHARED_DATA, else the nearest shared/data upwards
    env = os.environ.get("SCLLM_SHARED_DATA")
    if env:
        return Path(env)
    for d in [config_dir, *config_dir.parents]:
        if (d / "shared" / "data").is_dir():
            return d / "shared" / "data"
    raise SystemExit("shared data not found: set SCLLM_SHARED_DATA")


def resolve(path: str, config_dir: Path) -> Path:
    p = path.replace("${SHARED}", str(shared_dir(config_dir)))
    p = Path(p)
    return p if p.is_absolute() else config_dir / p


def mask_values(obs: pd.DataFrame, column: str, values) -> np.ndarray:
    # compare as strings: donor "1015" is a categorical of strings, is_duplicate a bool column
    return obs[column].astype(str).isin([str(v) for v in values]).to_numpy()


def query_of(cfg: dict, config_dir: Path):
    """(query file, boolean cell mask, label Series) as the benchmark runner selects them."""
    data = cfg["data"]
    qfile = resolve(data["query"] if "query" in data else data["file"], config_dir)
    a = ad.read_h5ad(qfile, backed="r")
    obs = a.obs.copy()
    a.file.close()
    keep = np.ones(len(obs), dtype=bool)
    for rule in data.get("include", []):
        keep &= mask_values(obs, rule["column"], rule["values"])
    for rule in data.get("exclude", []):
        keep &= ~mask_values(obs, rule["column"], rule["values"])
    if "query" not in data:
        h = cfg["split"]["holdout"]
        keep &= mask_values(obs, h["column"], [h["value"]])
    label = obs[cfg.get("label", "cell_type")].astype(object)
    if "label_map" in cfg:
        m = cfg["label_map"]
        table = pd.read_csv(resolve(m["file"], config_dir), sep="\t")
        if "dataset_column" in m:
            table = table[table[m["dataset_column"]] == qfile.stem]
        mapping = dict(zip(table[m["from"]], table[m["to"]]))
        label = label.map(mapping)
    keep &= label.notna().to_numpy()
    keep &= ~label.isin(data.get("drop_labels", [])).to_numpy()
    return qfile, keep, label


def x_kind(x) -> str:
    v = x.data if sp.issparse(x) else np.asarray(x).ravel()
    if v.size == 0:
        return "empty"
    if v.min() < 0:
        return "scaled"
    return "counts" if np.allclose(v, np.round(v)) else "non-integer"


def prepare(outdir: Path, configs):
    outdir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for c in configs:
        c = Path(c).resolve()
        cfg = tomllib.loads(c.read_text())
        qfile, keep, label = query_of(cfg, c.parent)
        key = (str(qfile), tuple(np.flatnonzero(keep)), tuple(label[keep]))
        same = [s for s, v in splits.items() if v["_key"] == key]
        if same:
            splits[same[0]]["configs"].append(cfg["name"])
            continue
        a = ad.read_h5ad(qfile)[keep].copy()
        kind = x_kind(a.X)
        a.obs["knn_label"] = pd.Categorical(label[keep].astype(str))
        # X as shipped (raw counts: checked below and in the table); nothing else carried
        a.uns = {"x_kind": str(kind)}
        a.obsm.clear()
        name = cfg["name"]
        a.write_h5ad(outdir / f"{name}.h5ad")
        splits[name] = {
            "_key": key,
            "configs": [name],
            "file": qfile.name,
            "cells": int(a.n_obs),
            "genes": int(a.n_vars),
            "x": kind,
        }
        print(f"{name}: {a.n_obs} cells x {a.n_vars} genes from {qfile.name}, X {kind}", flush=True)
    for v in splits.values():
        del v["_key"]
    (outdir / "splits.json").write_text(json.dumps(splits, indent=1))


def cellplm_input(outdir: Path):
    # CellPLM matches var.index as stored and reads it as symbols only when nothing matches
    # (CellPLM/pipeline/__init__.py common_preprocess; crates/scllm-tokenize/src/cellplm.rs):
    # cellbench_3cl's var.index holds ~1,000 Ensembl ids (genes without a GENCODE symbol) among its
    # symbols, so a direct hit on those would silently drop every symbol-named gene.
    splits = json.loads((outdir / "splits.json").read_text())
    for name in splits:
        a = ad.read_h5ad(outdir / f"{name}.h5ad")
        how = "symbols"
        if "ensembl_id" in a.var:
            e = a.var["ensembl_id"]
            if e.notna().all() and e.astype(str).is_unique:
                a.var_names = pd.Index(e.astype(str).to_numpy())
                how = "ensembl_id"
        a.write_h5ad(outdir / f"{name}.ens.h5ad")
        print(f"{name}: CellPLM input var.index = {how}", flush=True)


def knn_cv(x: np.ndarray, y: np.ndarray):
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=10, metric="cosine")
    cv = StratifiedKFold(5, shuffle=True, random_state=SEED)
    s = cross_val_score(clf, x, y, cv=cv, scoring="accuracy")
    return float(s.mean()), float(s.std())


def pca50(a: ad.AnnData) -> np.ndarray:
    import scanpy as sc

    a = a.copy()
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    # seurat_v3 ranks genes on the raw counts; files with < 2000 genes keep them all
    n_top = min(2000, a.n_vars)
    if n_top < a.n_vars:
        sc.pp.highly_variable_genes(a, n_top_genes=n_top, flavor="seurat_v3", layer="counts")
        a = a[:, a.var["highly_variable"]].copy()
    sc.pp.scale(a, max_value=10)
    sc.pp.pca(a, n_comps=50, svd_solver="arpack", random_state=SEED)
    return a.obsm["X_pca"]


def score(outdir: Path, keys):
    splits = json.loads((outdir / "splits.json").read_text())
    rows = []
    for name, s in splits.items():
        a = ad.read_h5ad(outdir / f"{name}.h5ad")
        y = a.obs["knn_label"].astype(str).to_numpy()
        counts = pd.Series(y).value_counts()
        row = {
            "split": name,
            "configs": s["configs"],
            "cells": int(a.n_obs),
            "genes": int(a.n_vars),
            "classes": int(len(counts)),
            "min_class": int(counts.min()),
            "majority": float(counts.iloc[0] / len(y)),
            "x": s["x"],
        }
        for spec in keys:
            key, suffix = spec.split("=")
            f = outdir / f"{name}.{suffix}.h5ad"
            if not f.exists():
                row[key] = None
                continue
            e = ad.read_h5ad(f, backed="r")
            emb = np.asarray(e.obsm[key], dtype=np.float64)
            assert list(e.obs_names) == list(a.obs_names), f"{f}: cells differ from the query"
            e.file.close()
            row[key] = knn_cv(emb, y)
        row["PCA-50"] = knn_cv(pca50(a), y)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (outdir / "scores.json").write_text(json.dumps(rows, indent=1))

    cols = [k.split("=")[0] for k in keys] + ["PCA-50"]
    print()
    print("| split (configs) | cells | classes | majority | X | " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|" + "---|" * len(cols))
    for r in rows:
        cells = []
        for k in cols:
            v = r.get(k)
            cells.append("n/a" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}")
        print(
            f"| {r['split']} ({', '.join(r['configs'])}) | {r['cells']} | {r['classes']} "
            f"(smallest {r['min_class']}) | {r['majority']:.3f} | {r['x']} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    cmd, out, *rest = sys.argv[1:]
    if cmd == "prepare":
        prepare(Path(out), rest)
    elif cmd == "cellplm-input":
        cellplm_input(Path(out))
    elif cmd == "score":
        score(Path(out), rest)
    else:
        raise SystemExit(__doc__)
