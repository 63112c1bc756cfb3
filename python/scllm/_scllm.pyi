# Type stubs of the native module (crates/scllm-py). The public API is scllm.pp / scllm.tl,
# which turn an AnnData into these arguments; these are their building blocks.
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

Index = Union[npt.NDArray[np.int32], npt.NDArray[np.int64]]
# (data float32, indices, indptr, (n_rows, n_cols)): scipy csr_matrix parts
Csr = Tuple[npt.NDArray[np.float32], Index, Index, Tuple[int, int]]
# a backed AnnData's matrix, read from its file: (path, "X" | "layers/NAME" | "raw/X", shape)
InFile = Tuple[str, str, Tuple[int, int]]
MatrixIn = Union[Csr, InFile]
# numbers, booleans, (categorical codes int32, categories) or strings
ColumnIn = Union[
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.bool_],
    Tuple[npt.NDArray[np.int32], List[str]],
    List[str],
]

# obs columns written (values, categorical?), obsm matrices, uns entries
Written = Tuple[Dict[str, Tuple[Any, bool]], Dict[str, npt.NDArray[np.float32]], Dict[str, Any]]
# X, obs names, var names, obs columns, var columns, (obsm key, embedding) or None
CellsIn = Tuple[MatrixIn, List[str], List[str], List[Tuple[str, ColumnIn]], List[Tuple[str, ColumnIn]], Optional[Tuple[str, npt.NDArray[np.float32]]]]

def normalize_total(
    x: Csr, target_sum: Optional[float] = None, max_fraction: Optional[float] = None
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float]:
    """New CSR values (same sparsity), each cell's total (over the genes kept), the target
    used; ``max_fraction``: scanpy's ``exclude_highly_expressed``."""

def normalize_total_in_place(
    data: npt.NDArray[np.float32],
    indices: Index,
    indptr: Index,
    n_cols: int,
    target_sum: Optional[float] = None,
    max_fraction: Optional[float] = None,
) -> Tuple[npt.NDArray[np.float32], float]:
    """Divide a CSR matrix's own values in place; each cell's total before, the target."""

def log1p(values: npt.NDArray[np.float32], base: Optional[float] = None) -> None:
    """log1p of float32 values in place, over ln(base) when given."""

def highly_variable_genes(
    x: MatrixIn,
    n_top_genes: int,
    flavor: str,
    span: float = 0.3,
    n_bins: int = 20,
    batches: Optional[npt.NDArray[np.uint32]] = None,
    gene_names: Optional[List[str]] = None,
    cutoffs: Optional[Tuple[float, float, float, float]] = None,
) -> Dict[str, Any]:
    """The var columns scanpy writes, by name; ``cutoffs`` (min_mean, max_mean, min_disp,
    max_disp) select seurat/cell_ranger genes by bounds instead of the top ``n_top_genes``."""

def filter_cells(
    x: Csr,
    min_counts: Optional[float] = None,
    min_genes: Optional[int] = None,
    max_counts: Optional[float] = None,
    max_genes: Optional[int] = None,
) -> Tuple[npt.NDArray[np.uint64], Dict[str, Any]]:
    """Indices of the cells kept, and the obs columns scanpy records."""

def filter_genes(
    x: Csr,
    min_counts: Optional[float] = None,
    min_cells: Optional[int] = None,
    max_counts: Optional[float] = None,
    max_cells: Optional[int] = None,
) -> Tuple[npt.NDArray[np.uint64], Dict[str, Any]]:
    """Indices of the genes kept, and the var columns scanpy records."""

def scale(
    x: Csr, zero_center: bool = True, max_value: Optional[float] = None
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Dense float32 matrix (zero_center) or the CSR values; the means; the stds."""

def binning(
    x: Csr, n_bins: int, seed: int = 0, per_cell: bool = False
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The bins (CSR values, int64) and each cell's edges (cells x n_bins)."""

def embed(
    source: Union[CellsIn, Tuple[str, int]],
    model: Optional[str],
    key_added: Optional[str] = None,
    batch_size: Optional[int] = None,
    max_len: Optional[int] = None,
    seed: int = 0,
    threads: Optional[int] = None,
    gene_col: Optional[str] = None,
    group_by: Optional[str] = None,
    precision: str = "f32",
    dictionaries: Optional[str] = None,
    weights: Optional[str] = None,
    strict: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
    name: str = "<AnnData>",
) -> Tuple[str, npt.NDArray[np.float32], str, Dict[str, Any]]:
    """The obsm key, the embedding (cells x d), the summary (JSON), the uns entries. `source`:
    the cells, or (file, number of cells) of a backed AnnData, read block by block."""

def evaluate(
    obs_names: List[str],
    obs: List[Tuple[str, ColumnIn]],
    truth: str,
    pred: Optional[str] = None,
    embedding: Optional[Tuple[str, npt.NDArray[np.float32]]] = None,
    cluster: Optional[str] = None,
    distances: List[str] = ["euclidean"],
    silhouette_max_cells: int = 20000,
    seed: int = 0,
) -> str:
    """`scllm evaluate --json`'s report."""

def finetune(
    cells: CellsIn,
    model: Optional[str],
    label: str,
    method: str,
    out: str,
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
    dictionaries: Optional[str] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
    source: str = "<AnnData>",
) -> str:
    """`scllm finetune --json`'s summary; the adapter is written to `out`."""

def annotate(
    cells: CellsIn,
    model: Optional[str],
    adapter: str,
    unknown_below: Optional[str] = None,
    coverage: Optional[float] = None,
    key_added: Optional[str] = None,
    max_len: Optional[int] = None,
    batch_size: Optional[int] = None,
    group_by: Optional[str] = None,
    gene_col: Optional[str] = None,
    seed: int = 0,
    precision: str = "f32",
    dictionaries: Optional[str] = None,
    progress: Optional[Callable[[int, int, str], None]] = None,
    source: str = "<AnnData>",
) -> Tuple[str, Written]:
    """The summary (JSON) and what was written into the cells."""

def baseline(
    query: CellsIn,
    reference: CellsIn,
    label: str,
    method: str,
    n_hvg: int = 2000,
    hvg_flavor: str = "seurat",
    unknown_below: Optional[str] = None,
    coverage: Optional[float] = None,
    c: Optional[float] = None,
    k: int = 15,
    use_rep: Optional[str] = None,
    n_pcs: int = 50,
    vote: str = "majority",
    metric: str = "cosine",
    seed: int = 0,
    progress: Optional[Callable[[int, int, str], None]] = None,
) -> Tuple[str, Written]:
    """`scllm baseline --json`'s summary and what was written into the query."""

def celltypist(
    query: CellsIn,
    model: str,
    mode: str = "best_match",
    p_thres: float = 0.5,
    majority_voting: bool = False,
    over_clustering: Optional[str] = None,
    min_prop: float = 0.0,
    resolution: Optional[float] = None,
    label: str = "cell_type",
    decision: bool = False,
    seed: int = 0,
    progress: Optional[Callable[[int, int, str], None]] = None,
) -> Tuple[str, Written]:
    """`scllm baseline celltypist --json`'s summary and what was written into the query."""

def umap(
    obs_names: List[str],
    x: Optional[MatrixIn] = None,
    var_names: Optional[List[str]] = None,
    rep: Optional[Tuple[str, npt.NDArray[np.float32]]] = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> Tuple[npt.NDArray[np.float32], str]:
    """The layout (cells x 2) and what was laid out."""

def confusion(path: str, labels: List[str], matrix: List[List[int]], title: str) -> None: ...
def per_class_f1(path: str, rows: List[Tuple[str, float, float, float, int, int]], title: str) -> None: ...
def embedding(
    path: str, coords: npt.NDArray[np.float32], labels: List[str], title: str, second: Optional[List[str]] = None
) -> None: ...
def learning_curves(path: str, train_log: str, title: str) -> None: ...

def benchmark(config: str, out: str, fewshot: bool = True, progress: bool = False) -> Tuple[str, str]:
    """results.json's content (JSON) and the main table (markdown)."""

def forget_model() -> None:
    """Drop the model `embed` / `annotate` kept for the next call."""

def papers_search(query: str, limit: int, html_search: bool, client: Dict[str, Any]) -> str:
    """`scllm papers search --json`: a JSON list of papers. `client`: europepmc_url,
    biorxiv_api_url, biorxiv_url, cache_dir (None or str), no_cache, min_interval_ms, deadline."""

def papers_show(doi: str, full_text: bool, client: Dict[str, Any]) -> str:
    """JSON with ``paper``, ``versions`` (papers) and ``full_text`` (``null`` unless asked)."""
