"""Metrics, as ``scllm evaluate`` computes them (scikit-learn's definitions, checked against it):
classification against a truth column, ARI/NMI of a clustering, silhouette of an embedding."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import _anndata as ad_
from . import _scllm


def evaluate(
    adata: Any,
    truth: str = "cell_type",
    pred: Optional[str] = None,
    *,
    embedding: Optional[str] = None,
    cluster: Optional[str] = None,
    distances: Sequence[str] = ("euclidean",),
    silhouette_max_cells: int = 20000,
    seed: int = 0,
) -> Tuple[Dict[str, Any], pd.DataFrame]:
    """Accuracy, balanced accuracy, macro/weighted precision, recall and F1, the confusion
    matrix (``pred``), ARI and NMI (``cluster``), silhouette scores (``embedding``: an ``obsm``
    key; ``distances``: ``euclidean`` and/or ``cosine``) of the cells with a ``truth`` label --
    ``scllm evaluate``'s numbers, equal to scikit-learn's.

    Example::

        summary, per_class = scllm.metrics.evaluate(adata, truth="cell_type", pred="predicted_cell_type")
        summary["classification"]["f1_macro"], per_class.sort_values("f1")

    Returns the report as a dict (``scllm evaluate --json``) and the per-class table (label,
    precision, recall, F1, support, predicted) as a DataFrame (empty without ``pred``).
    """
    cols = [c for c in (truth, pred, cluster) if c is not None]
    for c in cols:
        if c not in adata.obs:
            raise KeyError(f"{c!r} is not an obs column (obs: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    emb = None
    if embedding is not None:
        if embedding not in adata.obsm:
            raise KeyError(f"{embedding!r} is not an obsm key (obsm: {', '.join(adata.obsm.keys()) or 'none'})")
        emb = (embedding, np.ascontiguousarray(np.asarray(adata.obsm[embedding]), dtype=np.float32))
    obs = [(c, ad_.column(adata.obs[c])) for c in dict.fromkeys(cols)]
    report = json.loads(
        _scllm.evaluate(
            ad_.names(adata.obs_names), obs, truth, pred, emb, cluster, list(distances),
            silhouette_max_cells, seed,
        )
    )
    report.pop("file", None)
    rows = (report.get("classification") or {}).get("per_class", [])
    per_class = pd.DataFrame(rows, columns=["label", "precision", "recall", "f1", "support", "predicted"])
    return report, per_class
