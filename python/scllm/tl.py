"""Tools, as scanpy's ``sc.tl``: embeddings, fine-tuning and annotation with a model folder of
any family, and the classical baselines beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _anndata as ad_
from . import _scllm

PathLike = Union[str, "os.PathLike[str]"]

# The models shipped with scllm, where an installed package or a source checkout keeps them:
# `embed` defaults to the CellPLM one, fine-tuning and annotation to the scGPT one (as the CLI).
_HERE = Path(__file__).resolve().parent
_SHIPPED = {
    "embed": ("cellplm-small", "cellplm.config.json"),
    "finetune": ("scllm-small", "args.json"),
}


def default_model(verb: str = "embed") -> Optional[Path]:
    """``$SCLLM_MODEL``, else the model the command line's ``verb`` uses by default (``embed``:
    the shipped CellPLM; ``finetune``/``annotate``: the shipped scGPT), else ``None`` (the
    native code then looks in ``./models``)."""
    env = os.environ.get("SCLLM_MODEL")
    if env:
        return Path(env)
    name, marker = _SHIPPED["embed" if verb == "embed" else "finetune"]
    for root in (_HERE / "models", _HERE.parent.parent / "models"):
        if (root / name / marker).is_file():
            return root / name
    return None


def _model(model: Optional[PathLike], verb: str) -> Optional[str]:
    if model is None:
        found = default_model(verb)
        return None if found is None else str(found)
    if not Path(model).exists():
        raise FileNotFoundError(f"model folder {model} does not exist")
    return str(model)


def _cells(
    adata: Any,
    layer: Optional[str] = None,
    gene_col: Optional[str] = None,
    need_obs: Sequence[Optional[str]] = (),
    use_rep: Optional[str] = None,
    what: str = "adata",
    writes: bool = True,
):
    """The native module's view of the cells (X or a layer, or ``raw``; names; columns; one
    embedding), with the KeyErrors a missing column, layer or embedding deserves (and the
    ValueError of an AnnData that cannot take results, when the call ``writes``)."""
    if writes:
        ad_.writable(adata, what)
    if gene_col is not None and gene_col not in adata.var:
        raise KeyError(
            f"gene_col {gene_col!r} is not a var column of {what} (var: {', '.join(map(str, adata.var.columns)) or 'none'})"
        )
    for c in need_obs:
        if c is not None and c != "none" and c not in adata.obs:
            raise KeyError(f"{c!r} is not an obs column of {what} (obs: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    if layer == "raw":
        if adata.raw is None:
            raise KeyError(f"{what} has no .raw")
        var_names, var = adata.raw.var_names, adata.raw.var
    else:
        var_names, var = adata.var_names, adata.var
    x = ad_.matrix_in(adata, layer, raw=True, allow_float64=True)
    rep = None
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(f"{use_rep!r} is not an obsm key of {what} (obsm: {', '.join(adata.obsm.keys()) or 'none'})")
        rep = (use_rep, np.ascontiguousarray(np.asarray(adata.obsm[use_rep]), dtype=np.float32))
    return (
        x,
        ad_.names(adata.obs_names),
        ad_.names(var_names),
        ad_.columns(adata.obs),
        ad_.columns(var),
        rep,
    )


def _progress(total: int, what: str):
    """A progress callback ``(done, total)`` and its closer: tqdm's bar (a widget in Jupyter,
    text in a terminal) where tqdm is installed, else a line on stderr."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        import sys

        def line(done: int, total: int) -> None:
            print(f"\r{what}: {done}/{total} cells", end="", file=sys.stderr, flush=True)

        return line, lambda: print(file=sys.stderr)
    bar = tqdm(total=total, desc=what, unit="cells")

    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close


def _follow():
    """A progress callback ``(done, total, label)`` for the loop scllm runs now (an epoch, the
    prediction, a kNN search ...) and its closer: one tqdm bar per loop (a widget in Jupyter,
    text in a terminal) where tqdm is installed, else a line on stderr."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        import sys

        def line(done: int, total: int, label: str) -> None:
            print(f"\r{label}: {done}/{total}", end="", file=sys.stderr, flush=True)

        return line, lambda: print(file=sys.stderr)
    state: Dict[str, Any] = {"bar": None, "label": None}

    def update(done: int, total: int, label: str) -> None:
        if label != state["label"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"], state["label"] = tqdm(total=total, desc=label), label
        bar = state["bar"]
        bar.update(done - bar.n)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return update, close


def forget_model() -> None:
    """Free the model that :func:`embed` and :func:`annotate` keep loaded.

    Both keep the last model they read (with its adapter, for ``annotate``) for the next call in
    this process, so embedding AnnData after AnnData -- or shard after shard on a Dask worker --
    reads a checkpoint once (the summary's ``model_reused`` says which calls did). A different
    model, adapter or ``precision``, or a checkpoint rewritten in place, is read afresh and
    replaces it. Call this to give its memory back.

    Example::

        scllm.tl.embed(adata, model="models/cellplm-small")
        scllm.tl.forget_model()
    """
    _scllm.forget_model()


def embed(
    adata: Any,
    model: Optional[PathLike] = None,
    *,
    key_added: Optional[str] = None,
    layer: Optional[str] = None,
    gene_col: Optional[str] = None,
    group_by: Optional[str] = None,
    batch_size: Optional[int] = None,
    max_len: Optional[int] = None,
    seed: int = 0,
    threads: Optional[int] = None,
    precision: Optional[str] = None,
    dictionaries: Optional[PathLike] = None,
    weights: Optional[PathLike] = None,
    strict: bool = False,
    progress: bool = False,
    copy: bool = False,
) -> Dict[str, Any]:
    """Cell embeddings into ``adata.obsm[key_added]`` -- exactly what ``scllm embed`` writes for
    the same cells (the same Rust function, bit for bit).

    ``model`` is a folder of any family (scGPT, Geneformer, scBERT, CellPLM; default: the
    shipped CellPLM model). ``X`` (or ``layers[layer]``) holds raw counts; genes are matched by
    ``var_names`` (or ``var[gene_col]``). CellPLM: the cells of each ``obs[group_by]`` group
    (default ``obs['batch']`` when present) attend to each other, so a cell's embedding depends
    on its set; ``batch_size`` cuts groups into sets of at most that many consecutive cells and
    the grouping goes to ``uns['cellplm_sets']``. Other families embed each cell on its own, 64
    cells a batch unless ``batch_size`` says otherwise. ``precision``: ``f32``, ``bf16`` or
    ``int8`` for the linear layers (docs/precision.md); default bf16 where the CPU has AVX-512
    BF16 (~2x f32, cosine to f32 >= 0.9999), else f32 -- the summary's ``precision`` and
    ``precision_default`` say which; ``"f32"`` gives the reference implementation's numbers. ``progress=True`` shows a bar (tqdm's,
    a widget in Jupyter); Ctrl-C stops the run at its next batch and leaves ``adata`` as it was.

    Example::

        scllm.tl.embed(adata, model="scGPT_human", key_added="X_scGPT")
        sc.pp.neighbors(adata, use_rep="X_scGPT")

    A backed AnnData (``read_h5ad(..., backed="r")``) is read from its file block by block, as
    ``scllm embed --stream`` does, so X never sits whole in memory (CellPLM: each set runs once
    its last cell is read, so the cells of unfinished sets are held; the numbers are the
    in-memory ones).

    Returns the run's summary (cells/s, genes matched, the load report). ``adata`` is changed
    only when the embedding succeeded (``copy=True``: a copy is, and is under ``"adata"``).
    """
    if ad_.in_file(adata):
        # read from its file block by block, as `scllm embed --stream`: X is never whole in memory
        if layer is not None:
            raise ValueError("a backed AnnData is embedded from X; drop layer= or use adata.to_memory()")
        if gene_col is not None and gene_col not in adata.var:
            raise KeyError(f"gene_col {gene_col!r} is not a var column of adata")
        cells = (str(adata.filename), adata.n_obs)
    else:
        cells = _cells(adata, layer, gene_col, [group_by])
    callback, close = _progress(adata.n_obs, "embedding") if progress else (None, lambda: None)
    try:
        key, emb, summary, uns = _scllm.embed(
            cells,
            _model(model, "embed"),
            key_added,
            batch_size,
            max_len,
            seed,
            threads,
            gene_col,
            group_by,
            precision,
            None if dictionaries is None else str(dictionaries),
            None if weights is None else str(weights),
            strict,
            callback,
        )
    finally:
        close()
    out = json.loads(summary)
    if copy:
        adata = adata.copy()
        out["adata"] = adata
    adata.obsm[key] = emb
    for k, v in uns.items():
        adata.uns[k] = v
    return out


def finetune(
    adata: Any,
    model: Optional[PathLike] = None,
    *,
    label: str = "cell_type",
    method: str,
    out: PathLike,
    layer: Optional[str] = None,
    val_by: Optional[str] = None,
    val_fraction: float = 0.1,
    epochs: Optional[int] = None,
    lr: Optional[float] = None,
    batch_size: Optional[int] = None,
    patience: Optional[int] = None,
    max_len: Optional[int] = None,
    min_cells_per_class: Optional[int] = None,
    gene_col: Optional[str] = None,
    adapter_ratio: Optional[float] = None,
    lora_r: Optional[int] = None,
    lora_alpha: Optional[float] = None,
    prefix_tokens: Optional[int] = None,
    layers: Optional[List[int]] = None,
    freeze_layers: Optional[int] = None,
    resume: bool = False,
    seed: int = 0,
    group_by: Optional[str] = None,
    hvg: Optional[int] = None,
    dictionaries: Optional[PathLike] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """Adapt ``model`` (any family; default: the shipped scGPT) to the labelled cells of
    ``adata`` with one strategy -- ``full``, ``head``, ``prefix``, ``lora``, ``token-prompt``
    or ``encoder-prompt`` -- exactly as ``scllm finetune`` does (the family's reference
    training settings; ``None`` arguments keep them). The adapter (``adapter.safetensors`` +
    ``adapter.json``), ``train_log.jsonl`` and the learning curves go to the folder ``out``;
    the base model is never modified and ``adata`` is not changed.

    ``val_by="donor=1015"`` validates on those cells, else on a stratified ``val_fraction``.

    A backed AnnData (``read_h5ad(..., backed="r")``) is fine: its X is read from the file by
    scllm itself (as ``scllm finetune`` reads it), never loaded by Python; a view of one is
    read as the cells it holds.

    ``progress=True`` shows a bar for each loop it runs (each epoch's cells, the
    validation predictions); Ctrl-C stops it at its next batch.

    Example::

        s = scllm.tl.finetune(ref, model="scGPT_human", label="cell_type", method="lora",
                              out="adapters/lora", val_by="donor=1015")
        s["best_val_acc"]

    Returns the run's summary (best epoch, validation scores, trainable parameters).
    """
    if label not in adata.obs:
        raise KeyError(f"label {label!r} is not an obs column (obs: {', '.join(map(str, adata.obs.columns)) or 'none'})")
    callback, close = _follow() if progress else (None, lambda: None)
    try:
        summary = _scllm.finetune(
            _cells(adata, layer, gene_col, [group_by], writes=False),
            _model(model, "finetune"),
            label,
            method,
            str(out),
            val_by,
            val_fraction,
            epochs,
            lr,
            batch_size,
            patience,
            max_len,
            min_cells_per_class,
            gene_col,
            adapter_ratio,
            lora_r,
            lora_alpha,
            prefix_tokens,
            None if layers is None else list(layers),
            freeze_layers,
            resume,
            seed,
            group_by,
            hvg,
            None if dictionaries is None else str(dictionaries),
            callback,
        )
    finally:
        close()
    return json.loads(summary)


def annotate(
    adata: Any,
    model: Optional[PathLike] = None,
    *,
    adapter: PathLike,
    unknown_below: Union[float, str, None] = None,
    coverage: Optional[float] = None,
    key_added: Optional[str] = None,
    layer: Optional[str] = None,
    max_len: Optional[int] = None,
    batch_size: Optional[int] = None,
    group_by: Optional[str] = None,
    gene_col: Optional[str] = None,
    seed: int = 0,
    precision: Optional[str] = None,
    dictionaries: Optional[PathLike] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """Cell types from a fine-tuned adapter, as ``scllm annotate``: ``obs['predicted_cell_type']``
    (categorical), ``obs['prediction_confidence']``, the adapted embeddings in ``obsm`` and
    ``uns['scllm_annotate']``. ``unknown_below``: a confidence under which a cell is
    ``Unknown`` (a number, or ``"auto"``: the threshold fine-tuning picked on its validation
    cells); ``coverage=0.9``: conformal prediction sets (``obs['prediction_set']``,
    ``obs['conformal_label']``). ``precision``: as :func:`embed` (default bf16 where the CPU
    has AVX-512 BF16, else f32; ``"f32"`` for the reference's numbers).

    ``progress=True`` shows a bar of the cells predicted; Ctrl-C stops the run at its
    next batch and leaves ``adata`` as it was.

    A backed AnnData (``read_h5ad(..., backed="r")``) is read from its file by scllm
    itself, never loaded by Python; results go to its ``obs``/``obsm``/``uns`` in memory (a
    view of a backed AnnData cannot take them: a ``ValueError`` says so before any work).

    Example::

        scllm.tl.annotate(query, model="scGPT_human", adapter="adapters/lora", unknown_below="auto")
        query.obs["predicted_cell_type"].value_counts()

    Returns the run's summary. ``adata`` changes only when the annotation succeeded.
    """
    import pandas as pd

    if not Path(adapter).is_dir():
        raise FileNotFoundError(f"adapter folder {adapter} does not exist")
    callback, close = _follow() if progress else (None, lambda: None)
    try:
        summary, (obs, obsm, uns) = _scllm.annotate(
            _cells(adata, layer, gene_col, [group_by]),
            _model(model, "annotate"),
            str(adapter),
            None if unknown_below is None else str(unknown_below),
            coverage,
            key_added,
            max_len,
            batch_size,
            group_by,
            gene_col,
            seed,
            precision,
            None if dictionaries is None else str(dictionaries),
            callback,
        )
    finally:
        close()
    for name, (values, categorical) in obs.items():
        adata.obs[name] = pd.Categorical(values) if categorical else values
    for k, v in obsm.items():
        adata.obsm[k] = v
    for k, v in uns.items():
        adata.uns[k] = v
    return json.loads(summary)


def baseline(
    adata: Any,
    reference: Any = None,
    *,
    label: str = "cell_type",
    method: str = "logreg",
    layer: Optional[str] = None,
    n_hvg: int = 2000,
    hvg_flavor: str = "seurat",
    unknown_below: Union[float, str, None] = None,
    coverage: Optional[float] = None,
    c: Optional[float] = None,
    k: int = 15,
    use_rep: Optional[str] = None,
    n_pcs: int = 50,
    vote: str = "majority",
    metric: str = "cosine",
    model: Optional[PathLike] = None,
    mode: str = "best_match",
    p_thres: float = 0.5,
    majority_voting: bool = False,
    over_clustering: Optional[str] = None,
    min_prop: float = 0.0,
    resolution: Optional[float] = None,
    decision: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> Dict[str, Any]:
    """The classical annotators a model must beat, as ``scllm baseline``: ``logreg`` (L1
    logistic regression, C by 5-fold cross-validation), ``knn`` (label transfer on
    ``obsm[use_rep]`` or PCA) or ``correlation`` (SingleR-style), trained on the labelled cells
    of ``reference`` (log-normalised expression, or the embedding) and predicting ``adata``:
    ``obs['predicted_cell_type']``, ``obs['prediction_confidence']``, ``uns['scllm_baseline']``.
    ``unknown_below`` (a number or ``"auto"``) and ``coverage`` as in :func:`annotate`.

    ``method="celltypist"`` runs a released CellTypist model instead (``model``: its ``.pkl``,
    read as data, never executed; no ``reference``) as celltypist 1.7.1 annotates
    (log-normalised ``adata``, CP10k): ``mode`` ``"best_match"`` or ``"prob_match"`` (every
    type above ``p_thres``), ``majority_voting`` within ``over_clustering`` (an obs column, or
    computed), ``min_prop``, ``resolution``; writes celltypist's ``obs['predicted_labels']``,
    ``obs['conf_score']`` (``obs['majority_voting']``, ``obs['over_clustering']``) and
    ``obsm['celltypist_probability']`` (``decision=True``: also ``obsm['celltypist_decision']``).

    ``progress=True`` shows a bar for the loops that have one (kNN search,
    correlation, cross-validation fits).

    A backed AnnData (``read_h5ad(..., backed="r")``, query or reference) is read from its file by scllm
    itself, never loaded by Python; results go to its ``obs``/``obsm``/``uns`` in memory (a
    view of a backed AnnData cannot take them: a ``ValueError`` says so before any work).

    Example::

        scllm.tl.baseline(query, ref, label="cell_type", method="knn", use_rep="X_cellplm")
        scllm.tl.baseline(query, method="celltypist", model="Immune_All_Low.pkl", majority_voting=True)

    Returns the run's summary (with metrics when ``adata`` has the label column too).
    """
    import pandas as pd

    callback, close = _follow() if progress else (None, lambda: None)
    if method == "celltypist":
        if model is None:
            raise ValueError("method='celltypist' needs model= (a CellTypist model .pkl)")
        if reference is not None:
            raise ValueError("method='celltypist' takes a trained model (model=), not a reference")
        if not Path(model).is_file():
            raise FileNotFoundError(f"CellTypist model {model} does not exist")
        try:
            summary, (obs, obsm, uns) = _scllm.celltypist(
                _cells(adata, layer, need_obs=[over_clustering], what="the query"),
                str(model),
                mode,
                p_thres,
                majority_voting,
                over_clustering,
                min_prop,
                resolution,
                label,
                decision,
                seed,
                callback,
            )
        finally:
            close()
    else:
        if reference is None:
            raise ValueError(f"method={method!r} needs a reference (labelled cells)")
        if label not in reference.obs:
            raise KeyError(f"label {label!r} is not an obs column of the reference")
        try:
            summary, (obs, obsm, uns) = _scllm.baseline(
                _cells(adata, layer, use_rep=use_rep, what="the query"),
                _cells(reference, layer, use_rep=use_rep, what="the reference", writes=False),
                label,
                method,
                n_hvg,
                hvg_flavor,
                None if unknown_below is None else str(unknown_below),
                coverage,
                c,
                k,
                use_rep,
                n_pcs,
                vote,
                metric,
                seed,
                callback,
            )
        finally:
            close()
        # obsm of the other baselines holds only the inputs handed over
        obsm = {}
    for name, (values, categorical) in obs.items():
        adata.obs[name] = pd.Categorical(values) if categorical else values
    for key, v in obsm.items():
        adata.obsm[key] = v
    for key, v in uns.items():
        adata.uns[key] = v
    return json.loads(summary)


def umap(
    adata: Any,
    *,
    use_rep: Optional[str] = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    key_added: str = "X_umap",
) -> Dict[str, Any]:
    """A 2-D UMAP layout (umap-learn's algorithm, seeded: the same picture every run) of
    ``obsm[use_rep]``, or of PCA (50 components) of log1p(CP10k) of the counts in ``X``, as
    ``scllm umap``; stored in ``obsm[key_added]`` (float32). Draw it with
    :func:`scllm.pl.umap`.

    A backed AnnData (``read_h5ad(..., backed="r")``) is read from its file by scllm
    itself, never loaded by Python; results go to its ``obs``/``obsm``/``uns`` in memory (a
    view of a backed AnnData cannot take them: a ``ValueError`` says so before any work).

    Example::

        scllm.tl.umap(adata, use_rep="X_cellplm")
        scllm.pl.umap(adata, color="cell_type")
    """
    ad_.writable(adata)
    rep = None
    x = var_names = None
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(f"{use_rep!r} is not an obsm key (obsm: {', '.join(adata.obsm.keys()) or 'none'})")
        rep = (use_rep, np.ascontiguousarray(np.asarray(adata.obsm[use_rep]), dtype=np.float32))
    else:
        x = ad_.matrix_in(adata, allow_float64=True)
        var_names = ad_.names(adata.var_names)
    layout, what = _scllm.umap(ad_.names(adata.obs_names), x, var_names, rep, n_neighbors, min_dist, seed)
    adata.obsm[key_added] = layout
    return {"representation": what, "cells": adata.n_obs, "key": key_added}
