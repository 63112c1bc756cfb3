"""AnnData parts as the native module takes them: a CSR float32 matrix, obs/var columns."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

Csr = Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]]


def matrix(adata: Any, layer: Optional[str] = None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error when it is absent. A backed
    AnnData's X is refused (callers of this change it in place); its layers are in memory."""
    if layer is None:
        if in_file(adata):
            raise ValueError(
                "this AnnData is backed by a file (opened read-only) and this call changes X in "
                "place: load it with adata.to_memory(), or run `scllm preprocess --stream` on the "
                "file (scllm.tl's functions and highly_variable_genes read a backed AnnData's file "
                "themselves)"
            )
        if adata.X is None:
            raise ValueError("adata.X is empty: store the expression matrix in X or name a layer")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"no layer {layer!r} (layers: {', '.join(adata.layers.keys()) or 'none'})")
    return adata.layers[layer]


def in_file(adata: Any) -> bool:
    """A backed AnnData whose X is its file's (a view of one holds a subset: read as in memory)."""
    return bool(getattr(adata, "isbacked", False)) and not getattr(adata, "is_view", False)


def writable(adata: Any, what: str = "adata") -> None:
    """Refuse, before any work, an AnnData that cannot take the results: a view of a backed
    AnnData (anndata makes a view actual by copying it, which a backed one cannot)."""
    if getattr(adata, "isbacked", False) and getattr(adata, "is_view", False):
        raise ValueError(
            f"{what} is a view of a backed AnnData, which cannot take new obs/obsm/var entries: "
            "load the cells first, e.g. adata[rows].to_memory(), or pass the backed AnnData itself"
        )


FileMatrix = Tuple[str, str, Tuple[int, int]]


def matrix_in(
    adata: Any, layer: Optional[str] = None, *, raw: bool = False, allow_float64: bool = False
) -> Union[Csr, FileMatrix]:
    """The matrix a read-only call works on, as the native module takes it: ``X``,
    ``layers[layer]`` or, with ``raw`` (scllm.tl's convention, where ``layer="raw"`` names
    ``.raw``), ``raw.X``. A backed AnnData's X and raw.X are read from its file by the native
    module itself, ``(path, element, shape)``, so Python never holds them; layers (in memory
    even when backed) and in-memory matrices go over as CSR float32 parts."""
    if raw and layer == "raw":
        if adata.raw is None:
            raise KeyError("this AnnData has no .raw")
        if in_file(adata):
            return (str(adata.filename), "raw/X", (int(adata.n_obs), int(adata.raw.n_vars)))
        return csr(adata.raw.X, "raw.X", allow_float64=allow_float64)
    if layer is None and in_file(adata):
        return (str(adata.filename), "X", (int(adata.n_obs), int(adata.n_vars)))
    return csr(matrix(adata, layer), "X" if layer is None else f"layers[{layer!r}]", allow_float64=allow_float64)


def check_dtype(m: Any, what: str, allow_float64: bool) -> None:
    """scllm computes in float32 as scanpy does for counts: integers and float32 are taken;
    float64 only where the result does not depend on it (embedding reads counts)."""
    dt = np.dtype(m.dtype)
    if dt.kind in "iub" or dt == np.float32 or (allow_float64 and dt == np.float64):
        return
    if dt == np.float64:
        raise TypeError(
            f"{what} is float64: scllm.pp computes in float32 as scanpy does for counts; "
            f"convert first with {what} = {what}.astype('float32')"
        )
    raise TypeError(f"{what} has dtype {dt}: scllm takes integer or float32 values")


def csr(m: Any, what: str = "X", allow_float64: bool = False) -> Csr:
    """The matrix as CSR float32 parts (a copy only where the format or dtype needs one)."""
    if not (sp.issparse(m) or isinstance(m, np.ndarray)):
        if hasattr(m, "toarray"):
            m = m.toarray()
        else:
            m = np.asarray(m)
    if getattr(m, "ndim", 2) != 2:
        raise ValueError(f"{what} must be 2-D (cells x genes), not {m.ndim}-D")
    check_dtype(m, what, allow_float64)
    if sp.issparse(m):
        m = m.tocsr() if m.format != "csr" else m
    else:
        m = sp.csr_matrix(m)
    data = np.ascontiguousarray(m.data, dtype=np.float32)
    return (data, _index(m.indices), _index(m.indptr), (int(m.shape[0]), int(m.shape[1])))


def _index(a: np.ndarray) -> np.ndarray:
    if a.dtype in (np.int32, np.int64):
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a, dtype=np.int64)


def column(s: pd.Series) -> Any:
    """One obs/var column: numbers, booleans, a categorical (codes, categories) or strings."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return (
            np.ascontiguousarray(s.cat.codes.to_numpy(), dtype=np.int32),
            [str(c) for c in s.cat.categories],
        )
    if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
        return np.ascontiguousarray(s.to_numpy(), dtype=np.bool_)
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        return np.ascontiguousarray(s.to_numpy(), dtype=np.int64)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return np.ascontiguousarray(s.to_numpy(dtype=np.float64, na_value=np.nan))
    return ["" if pd.isna(v) else str(v) for v in s.to_numpy()]


def columns(df: pd.DataFrame) -> List[Tuple[str, Any]]:
    return [(str(name), column(df[name])) for name in df.columns]


def names(index: pd.Index) -> List[str]:
    return [str(v) for v in index]


def like(m: Any, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape) -> Any:
    """New values in the original's format: CSR stays CSR, CSC becomes CSC, dense stays dense.
    The new CSR matrix shares the (never modified) index arrays instead of copying them, as
    scanpy's in-place operations keep them."""
    out = sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)
    if sp.issparse(m):
        return out.asformat(m.format)
    return out.toarray()
