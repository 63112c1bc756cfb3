"""Preprocessing, as scanpy's ``sc.pp`` (same signatures, in place, same result keys), run by
scllm's Rust code in float32 -- the arithmetic scanpy uses for count matrices, so results agree
with scanpy's on the same data.

Every function computes first and only then writes into ``adata``: an error leaves it unchanged.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import scipy.sparse as sp

from . import _anndata as ad_
from . import _scllm


def _own_csr_f32(m: Any) -> bool:
    """A CSR float32 matrix whose value array can be written in place."""
    return (
        sp.issparse(m)
        and m.format == "csr"
        and m.dtype == np.float32
        and m.data.flags.c_contiguous
        and m.data.flags.writeable
    )


def _copy_or(adata: Any, copy: bool) -> Any:
    """The AnnData to write into: a copy, or ``adata`` itself made actual if it is a view (as
    scanpy's ``view_to_actual``: writing into a view would reach its parent)."""
    if copy:
        return adata.copy()
    if adata.is_view:
        adata._init_as_actual(adata.copy())
    return adata


def normalize_total(
    adata: Any,
    *,
    target_sum: Optional[float] = None,
    exclude_highly_expressed: bool = False,
    max_fraction: float = 0.05,
    key_added: Optional[str] = None,
    layer: Optional[str] = None,
    inplace: bool = True,
    copy: bool = False,
) -> Optional[Any]:
    """Scale each cell to ``target_sum`` total counts (default: the median of the totals).

    As ``scanpy.pp.normalize_total``: integer counts become float32; cells with no counts stay
    zero; ``key_added`` stores each cell's factor (``total / target_sum``) in ``obs``. With
    ``exclude_highly_expressed``, a gene with more than ``max_fraction`` of some cell's counts
    is left out of every cell's total (its values are still scaled).

    Example::

        scllm.pp.normalize_total(adata, target_sum=1e4)

    Returns ``None`` (in place), the copy (``copy=True``) or a dict with ``X`` and
    ``norm_factor`` (``inplace=False``).
    """
    if not 0 <= max_fraction <= 1:
        raise ValueError("Choose max_fraction between 0 and 1.")
    fraction = float(max_fraction) if exclude_highly_expressed else None
    m = ad_.matrix(adata, layer)
    what = "X" if layer is None else f"layers[{layer!r}]"
    if inplace and not copy and not adata.is_view and _own_csr_f32(m):
        # the matrix's own values, divided in place as scanpy does (no copy of X); nothing can
        # fail once the offsets (and, to exclude genes, the indices) are checked, so X is never
        # left half-normalised
        totals, target = _scllm.normalize_total_in_place(
            m.data, m.indices, m.indptr, m.shape[1], target_sum, fraction
        )
        if key_added is not None:
            adata.obs[key_added] = totals / np.float32(target)
        return None
    x = ad_.csr(m, what)
    data, totals, target = _scllm.normalize_total(x, target_sum, fraction)
    new = ad_.like(m, data, x[1], x[2], x[3])
    factor = totals / np.float32(target)
    if not inplace:
        return {"X": new, "norm_factor": factor}
    adata = _copy_or(adata, copy)
    if layer is None:
        adata.X = new
    else:
        adata.layers[layer] = new
    if key_added is not None:
        adata.obs[key_added] = factor
    return adata if copy else None


def log1p(
    adata: Any,
    *,
    base: Optional[float] = None,
    layer: Optional[str] = None,
    copy: bool = False,
) -> Optional[Any]:
    """Natural logarithm of one plus each value (``base``: divided by ``ln(base)``), as
    ``scanpy.pp.log1p``; records ``uns['log1p'] = {'base': base}``.

    Example::

        scllm.pp.log1p(adata)
    """
    m = ad_.matrix(adata, layer)
    what = "X" if layer is None else f"layers[{layer!r}]"
    ad_.check_dtype(m, what, allow_float64=False)
    if not copy and not adata.is_view and _own_csr_f32(m):
        _scllm.log1p(m.data, base)  # in place, as scanpy; element-wise, so it cannot stop half-way
        adata.uns["log1p"] = {"base": base}
        return None
    if sp.issparse(m):
        x = ad_.csr(m, what)
        values = np.array(x[0], copy=True)  # adata stays as it was until the end
        _scllm.log1p(values, base)
        new = ad_.like(m, values, x[1], x[2], x[3])
    else:
        dense = np.array(m, dtype=np.float32, order="C", copy=True)
        _scllm.log1p(dense.reshape(-1), base)
        new = dense
    adata = _copy_or(adata, copy)
    if layer is None:
        adata.X = new
    else:
        adata.layers[layer] = new
    adata.uns["log1p"] = {"base": base}
    return adata if copy else None


def highly_variable_genes(
    adata: Any,
    *,
    layer: Optional[str] = None,
    n_top_genes: Optional[int] = None,
    min_disp: float = 0.5,
    max_disp: float = float("inf"),
    min_mean: float = 0.0125,
    max_mean: float = 3.0,
    flavor: str = "seurat",
    span: float = 0.3,
    n_bins: int = 20,
    batch_key: Optional[str] = None,
    subset: bool = False,
    inplace: bool = True,
) -> Optional[Any]:
    """Highly variable genes as ``scanpy.pp.highly_variable_genes``: flavors ``seurat`` and
    ``cell_ranger`` (log data), ``seurat_v3`` (counts), each with or without ``batch_key``
    (``highly_variable_nbatches`` and ``highly_variable_intersection`` added for
    seurat/cell_ranger). With ``n_top_genes`` the top genes (batched: chosen in most batches
    first, as scanpy); without it, seurat/cell_ranger select the genes whose mean lies in
    (``min_mean``, ``max_mean``) and normalised dispersion in (``min_disp``, ``max_disp``), and
    seurat_v3 takes scanpy's default of 2000 genes. Writes ``var['highly_variable']``,
    ``var['means']`` and the flavor's columns, and ``uns['hvg'] = {'flavor': flavor}``.

    A backed AnnData's X is read from its file by scllm itself (never loaded by Python); the
    columns go to its ``var`` in memory (``subset=True`` is refused: the file is read-only).
    The functions that change X in place refuse a backed AnnData with a ``ValueError`` that
    says how to load it (scanpy's raise too).

    Example::

        scllm.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3")  # counts
        scllm.pp.highly_variable_genes(adata, min_mean=0.0125, max_mean=3, min_disp=0.5)  # log data

    Returns ``None`` (in place) or the columns as a DataFrame (``inplace=False``).
    """
    import pandas as pd

    cutoffs = None
    if flavor == "seurat_v3":
        n_top_genes = 2000 if n_top_genes is None else n_top_genes
    elif n_top_genes is None:
        cutoffs = (float(min_mean), float(max_mean), float(min_disp), float(max_disp))
    elif (min_disp, max_disp, min_mean, max_mean) != (0.5, float("inf"), 0.0125, 3.0):
        import warnings

        warnings.warn("If you pass `n_top_genes`, all cutoffs are ignored.", UserWarning, stacklevel=2)
    ad_.writable(adata)
    if subset and ad_.in_file(adata):
        raise ValueError(
            "subset=True would drop genes from a backed AnnData's file (opened read-only): use "
            "subset=False and select with adata[:, adata.var['highly_variable']].to_memory()"
        )
    # a backed AnnData's X is read from its file by the native module; var and uns are in
    # memory. `layer` is scanpy's: "raw" names layers['raw'] here, not .raw
    x = ad_.matrix_in(adata, layer)
    batches = None
    if batch_key is not None:
        if batch_key not in adata.obs:
            raise KeyError(f"batch_key {batch_key!r} is not an obs column")
        col = adata.obs[batch_key]
        if col.isna().any():
            raise ValueError(f"obs[{batch_key!r}] has missing values")
        _, inv = np.unique(np.asarray(col).astype(str), return_inverse=True)
        batches = np.ascontiguousarray(inv.reshape(-1), dtype=np.uint32)
    # batched seurat/cell_ranger break ties by gene name, as scanpy's groupby
    names = None if batches is None else [str(g) for g in adata.var_names]
    cols: Dict[str, Any] = _scllm.highly_variable_genes(
        x, 0 if n_top_genes is None else int(n_top_genes), flavor, span, n_bins, batches, names, cutoffs
    )
    if not inplace:
        return pd.DataFrame(cols, index=adata.var_names)
    adata = _copy_or(adata, False)
    for name, values in cols.items():
        adata.var[name] = values
    adata.uns["hvg"] = {"flavor": flavor}
    if subset:
        adata._inplace_subset_var(np.asarray(cols["highly_variable"]))
    return None


def _filter(adata: Any, kept: np.ndarray, cols: Dict[str, Any], axis: str, inplace: bool, copy: bool):
    kept = kept.astype(np.int64)
    if not inplace and not copy:
        n = adata.n_obs if axis == "obs" else adata.n_vars
        mask = np.zeros(n, dtype=bool)
        mask[kept] = True
        return (mask, *cols.values())
    adata = _copy_or(adata, copy)
    if axis == "obs":
        adata._inplace_subset_obs(kept)
        frame = adata.obs
    else:
        adata._inplace_subset_var(kept)
        frame = adata.var
    for name, values in cols.items():
        frame[name] = values
    return adata if copy else None


def filter_cells(
    adata: Any,
    *,
    min_counts: Optional[float] = None,
    min_genes: Optional[int] = None,
    max_counts: Optional[float] = None,
    max_genes: Optional[int] = None,
    inplace: bool = True,
    copy: bool = False,
) -> Optional[Any]:
    """Keep the cells passing every given threshold (counts: the row sum; genes: the number
    of non-zero values), as ``scanpy.pp.filter_cells``; records ``obs['n_genes']`` /
    ``obs['n_counts']`` for the criteria used. An error, and no change, when none is left.

    Example::

        scllm.pp.filter_cells(adata, min_genes=200)
    """
    x = ad_.csr(ad_.matrix(adata), "X", allow_float64=True)
    kept, cols = _scllm.filter_cells(x, min_counts, min_genes, max_counts, max_genes)
    return _filter(adata, kept, cols, "obs", inplace, copy)


def filter_genes(
    adata: Any,
    *,
    min_counts: Optional[float] = None,
    min_cells: Optional[int] = None,
    max_counts: Optional[float] = None,
    max_cells: Optional[int] = None,
    inplace: bool = True,
    copy: bool = False,
) -> Optional[Any]:
    """Keep the genes passing every given threshold, as ``scanpy.pp.filter_genes``; records
    ``var['n_cells']`` / ``var['n_counts']`` for the criteria used.

    Example::

        scllm.pp.filter_genes(adata, min_cells=3)
    """
    x = ad_.csr(ad_.matrix(adata), "X", allow_float64=True)
    kept, cols = _scllm.filter_genes(x, min_counts, min_cells, max_counts, max_cells)
    return _filter(adata, kept, cols, "var", inplace, copy)


def scale(
    adata: Any,
    *,
    zero_center: bool = True,
    max_value: Optional[float] = None,
    layer: Optional[str] = None,
    copy: bool = False,
) -> Optional[Any]:
    """Each gene to unit variance (and zero mean), clipped at ``max_value``, as
    ``scanpy.pp.scale``: a dense float32 matrix when zero-centring; ``var['mean']`` and
    ``var['std']``.

    Example::

        scllm.pp.scale(adata, max_value=10)
    """
    m = ad_.matrix(adata, layer)
    x = ad_.csr(m, "X" if layer is None else f"layers[{layer!r}]")
    out, mean, std = _scllm.scale(x, zero_center, max_value)
    if not zero_center:
        out = ad_.like(m, out, x[1], x[2], x[3])
    adata = _copy_or(adata, copy)
    if layer is None:
        adata.X = out
    else:
        adata.layers[layer] = out
    adata.var["mean"] = mean
    adata.var["std"] = std
    return adata if copy else None


def binning(
    adata: Any,
    n_bins: int = 51,
    *,
    layer: Optional[str] = None,
    key_added: str = "X_binned",
    seed: int = 0,
    numpy_rng: bool = False,
) -> None:
    """scGPT's value binning (its ``Preprocessor(binning=n_bins)``), as ``scllm preprocess
    --bin``: each cell's non-zero values into ``n_bins - 1`` quantile bins (zeros stay 0).
    Ties are broken by a stream per cell seeded from ``seed`` and the cell's own values, so a
    cell's bins do not depend on the other cells; ``numpy_rng=True`` draws them from numpy's
    ``np.random.seed(seed)`` stream over the cells in order, reproducing scGPT's bins exactly.
    Writes ``layers[key_added]`` (int64, the input's sparsity) and ``obsm['bin_edges']``.

    Example::

        scllm.pp.binning(adata, n_bins=51)
    """
    m = ad_.matrix(adata, layer)
    x = ad_.csr(m, "X" if layer is None else f"layers[{layer!r}]")
    bins, edges = _scllm.binning(x, int(n_bins), int(seed), not numpy_rng)
    adata = _copy_or(adata, False)
    adata.layers[key_added] = sp.csr_matrix((bins, x[1].copy(), x[2].copy()), shape=x[3])
    adata.obsm["bin_edges"] = edges
