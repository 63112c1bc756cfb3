"""scllm: single-cell foundation models on the AnnData you already hold.

The same Rust library as the ``scllm`` command line, called in-process: no subprocess and no
temporary file. Verbs follow scanpy's layout:

- :mod:`scllm.pp` -- preprocessing (``normalize_total``, ``log1p``, ``highly_variable_genes``,
  ``filter_cells``, ``filter_genes``, ``scale``, ``binning``), in place, scanpy's keys;
- :mod:`scllm.tl` -- tools (``embed`` with a model folder of any family);
- :mod:`scllm.pl` -- pictures (confusion matrix, per-class F1, UMAP, learning curves);
- ``scllm.benchmark(config, out)`` -- ``scllm benchmark``: baselines beside model methods, as a table;
- :mod:`scllm.metrics` -- ``evaluate``: ``scllm evaluate``'s metrics, equal to scikit-learn's;
- :mod:`scllm.papers` -- ``search`` / ``show``: bioRxiv preprints and their full text as DataFrames;
- :mod:`scllm.dask` -- ``embed_files``: many ``.h5ad`` shards across a ``dask.distributed``
  cluster (imported on use: ``import scllm.dask``).

Example::

    import scanpy as sc, scllm
    adata = sc.read_h5ad("pbmc.h5ad")          # raw counts
    scllm.tl.embed(adata, model="models/cellplm-small")
    sc.pp.neighbors(adata, use_rep="X_cellplm")
"""

from . import metrics, papers, pl, pp, tl
from ._benchmark import benchmark
from ._scllm import __version__

__all__ = ["benchmark", "metrics", "papers", "pl", "pp", "tl", "__version__"]
