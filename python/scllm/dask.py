"""Embedding many ``.h5ad`` shards across a ``dask.distributed`` cluster: one task per shard,
each read, embedded with :func:`scllm.tl.embed` and written by the worker that ran it, so no
expression matrix travels through the scheduler. The same code runs on a ``LocalCluster`` and on
any Dask cluster whose workers can read the shards and the model folder.

Example::

    from dask.distributed import Client, LocalCluster
    import scllm.dask
    client = Client(LocalCluster(n_workers=4, threads_per_worker=2))
    table = scllm.dask.embed_files(shards, "embedded/", model="models/cellplm-small",
                                   client=client, threads=2)

``dask.distributed`` is needed only here (``pip install "dask[distributed]"``).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]


def embed_shard(src: str, dst: str, model: Optional[str], options: Dict[str, Any]) -> Dict[str, Any]:
    """Embed one shard and write it to ``dst`` (through a temporary file in the same folder,
    renamed when complete, so a failed or killed task leaves no half-written output)."""
    import anndata as ad

    from . import tl

    t0 = time.perf_counter()
    adata = ad.read_h5ad(src)
    summary = tl.embed(adata, model=model, **options)
    tmp = Path(dst).with_name(f".{Path(dst).name}.{os.getpid()}.tmp")
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "file": src,
        "output": dst,
        "cells": adata.n_obs,
        "obsm_key": summary["obsm_key"],
        "family": summary["family"],
        "embed_seconds": summary["seconds"],
        "seconds": time.perf_counter() - t0,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def embed_files(
    files: Sequence[PathLike],
    out_dir: PathLike,
    model: Optional[PathLike] = None,
    *,
    client: Any = None,
    **options: Any,
) -> "Any":
    """Embed every file of ``files`` on the cluster of ``client`` (default: the current
    ``dask.distributed`` client), writing ``out_dir/<file name>`` for each with the embedding
    in ``obsm``. ``options`` go to :func:`scllm.tl.embed` (``key_added``, ``threads``,
    ``precision``, ...; set ``threads`` to the worker's thread count).

    Returns a pandas DataFrame, one row per shard: its cells, the worker that ran it and the
    seconds taken. A shard that fails raises its error here, naming the file; the shards that
    finished keep their outputs.
    """
    import pandas as pd
    from dask.distributed import get_client

    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"output folder {out} does not exist")
    srcs = [str(Path(f).resolve()) for f in files]
    names = [Path(f).name for f in srcs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"two shards share a file name ({sorted(dup)[0]}): outputs would collide")
    for f in srcs:
        if not Path(f).is_file():
            raise FileNotFoundError(f"shard {f} does not exist")
    client = client or get_client()
    if model is None:
        from .tl import default_model

        model = default_model()
    model_s = None if model is None else str(Path(model).resolve())
    futures = [
        client.submit(embed_shard, f, str((out / n).resolve()), model_s, options, pure=False, key=f"scllm-embed-{i}-{n}")
        for i, (f, n) in enumerate(zip(srcs, names))
    ]
    rows: List[Dict[str, Any]] = []
    for f, fut in zip(srcs, futures):
        try:
            rows.append(fut.result())
        except Exception as e:  # the shard's own error type, with its name
            try:
                named = type(e)(f"{f}: {e}")
            except Exception:
                named = RuntimeError(f"{f}: {e}")
            raise named from e
    return pd.DataFrame(rows)
