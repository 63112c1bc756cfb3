"""Pictures, as scanpy's ``sc.pl``: the confusion matrix, per-class F1, the UMAP and the
learning curves, drawn by scllm's Rust code (the same pictures the CLI writes). Each function
writes a PNG (or SVG: ``save="x.svg"``), shows it inline when running in Jupyter, and returns
the file's path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import _scllm
from .metrics import evaluate

PathLike = Union[str, "os.PathLike[str]"]


def _target(save: Optional[PathLike], stem: str) -> Path:
    if save is not None:
        p = Path(save)
        if p.suffix.lower() not in (".png", ".svg"):
            raise ValueError(f"save={save}: name a .png or .svg file")
        if not p.parent.is_dir():
            raise FileNotFoundError(f"folder {p.parent} does not exist")
        return p
    return Path(tempfile.mkdtemp(prefix="scllm-pl-")) / f"{stem}.png"


def _show(p: Path, show: Optional[bool]) -> str:
    """Display inline under IPython (``show=None``: when a notebook kernel runs this)."""
    if show is None:
        try:
            from IPython import get_ipython

            show = get_ipython() is not None and "IPKernelApp" in get_ipython().config
        except Exception:
            show = False
    if show:
        from IPython.display import SVG, Image, display

        display(SVG(filename=str(p)) if p.suffix.lower() == ".svg" else Image(filename=str(p)))
    return str(p)


def confusion(
    adata: Any,
    truth: str = "cell_type",
    pred: str = "predicted_cell_type",
    *,
    save: Optional[PathLike] = None,
    title: Optional[str] = None,
    show: Optional[bool] = None,
) -> str:
    """The confusion matrix of ``obs[pred]`` against ``obs[truth]`` as a heat map (row-normalised
    colours, counts written in), as ``scllm evaluate --plots``.

    Example::

        scllm.pl.confusion(query, truth="cell_type", pred="predicted_cell_type", save="cm.png")
    """
    rep, _ = evaluate(adata, truth=truth, pred=pred)
    c = rep["classification"]
    p = _target(save, "confusion")
    _scllm.confusion(str(p), c["labels"], c["confusion"], title or f"{pred} vs {truth}")
    return _show(p, show)


def per_class_f1(
    adata: Any,
    truth: str = "cell_type",
    pred: str = "predicted_cell_type",
    *,
    save: Optional[PathLike] = None,
    title: Optional[str] = None,
    show: Optional[bool] = None,
) -> str:
    """F1 of every class (with its support), rare classes visible, as ``scllm evaluate --plots``.

    Example::

        scllm.pl.per_class_f1(query, truth="cell_type", pred="predicted_cell_type")
    """
    _, per_class = evaluate(adata, truth=truth, pred=pred)
    rows = [
        (str(r.label), float(r.precision), float(r.recall), float(r.f1), int(r.support), int(r.predicted))
        for r in per_class.itertuples()
    ]
    p = _target(save, "per_class_f1")
    _scllm.per_class_f1(str(p), rows, title or f"per-class F1 of {pred}")
    return _show(p, show)


def umap(
    adata: Any,
    color: Union[str, Sequence[str]] = "cell_type",
    *,
    basis: str = "X_umap",
    save: Optional[PathLike] = None,
    title: Optional[str] = None,
    show: Optional[bool] = None,
) -> str:
    """The layout ``obsm[basis]`` (from :func:`scllm.tl.umap`) coloured by an obs column, or by
    two side by side with one shared legend (e.g. ``["cell_type", "predicted_cell_type"]``).

    Example::

        scllm.tl.umap(query, use_rep="X_cellplm")
        scllm.pl.umap(query, color=["cell_type", "predicted_cell_type"], save="umap.svg")
    """
    cols = [color] if isinstance(color, str) else list(color)
    if not 1 <= len(cols) <= 2:
        raise ValueError("color takes one obs column, or two to draw side by side")
    if basis not in adata.obsm:
        raise KeyError(f"{basis!r} is not an obsm key: run scllm.tl.umap(adata) first")
    for c in cols:
        if c not in adata.obs:
            raise KeyError(f"{c!r} is not an obs column")
    labels = [["nan" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in adata.obs[c]] for c in cols]
    coords = np.ascontiguousarray(np.asarray(adata.obsm[basis])[:, :2], dtype=np.float32)
    p = _target(save, "umap")
    _scllm.embedding(str(p), coords, labels[0], title or f"UMAP ({basis})", labels[1] if len(labels) == 2 else None)
    return _show(p, show)


def learning_curves(
    adapter: PathLike,
    *,
    save: Optional[PathLike] = None,
    title: Optional[str] = None,
    show: Optional[bool] = None,
) -> str:
    """Loss and accuracy per epoch (training and validation) of a fine-tuning run, from its
    adapter folder's ``train_log.jsonl``.

    Example::

        scllm.tl.finetune(ref, method="lora", out="adapters/lora")
        scllm.pl.learning_curves("adapters/lora")
    """
    log = Path(adapter) / "train_log.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"{log} does not exist: name the folder scllm.tl.finetune wrote")
    p = _target(save, "learning_curves")
    _scllm.learning_curves(str(p), str(log), title or f"fine-tuning {Path(adapter).name}")
    return _show(p, show)
