"""Tools, as scanpy's ``sc.tl``: cell embeddings from a model folder of any family."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from . import _anndata as ad_
from . import _scllm

PathLike = Union[str, "os.PathLike[str]"]

# The models shipped with scllm, where an installed package or a source checkout keeps them.
_HERE = Path(__file__).resolve().parent
_SHIPPED = [_HERE / "models" / "cellplm-small", _HERE.parent.parent / "models" / "cellplm-small"]


def default_model() -> Optional[Path]:
    """``$SCLLM_MODEL``, else the shipped CellPLM model (the command line's ``embed``
    default), else ``None`` (the native code then looks in ``./models``)."""
    env = os.environ.get("SCLLM_MODEL")
    if env:
        return Path(env)
    for p in _SHIPPED:
        if (p / "cellplm.config.json").is_file():
            return p
    return None


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
    precision: str = "f32",
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
    ``int8`` for the linear layers (docs/precision.md).

    Example::

        scllm.tl.embed(adata, model="scGPT_human", key_added="X_scGPT")
        sc.pp.neighbors(adata, use_rep="X_scGPT")

    Returns the run's summary (cells/s, genes matched, the load report). ``adata`` is changed
    only when the embedding succeeded (``copy=True``: a copy is, and is under ``"adata"``).
    """
    if model is None:
        model = default_model()
    elif not Path(model).exists():
        raise FileNotFoundError(f"model folder {model} does not exist")
    if gene_col is not None and gene_col not in adata.var:
        raise KeyError(f"gene_col {gene_col!r} is not a var column (var: {', '.join(map(str, adata.var.columns)) or 'none'})")
    if group_by is not None and group_by != "none" and group_by not in adata.obs:
        raise KeyError(f"group_by {group_by!r} is not an obs column")
    m = ad_.matrix(adata, layer)
    x = ad_.csr(m, "X" if layer is None else f"layers[{layer!r}]", allow_float64=True)
    key, emb, summary, uns = _scllm.embed(
        x,
        ad_.names(adata.obs_names),
        ad_.names(adata.var_names),
        ad_.columns(adata.obs),
        ad_.columns(adata.var),
        None if model is None else str(model),
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
        progress,
    )
    out = json.loads(summary)
    if copy:
        adata = adata.copy()
        out["adata"] = adata
    adata.obsm[key] = emb
    for k, v in uns.items():
        adata.uns[k] = v
    return out
