"""Embedding or annotating many ``.h5ad`` shards across a ``dask.distributed`` cluster: one
task per shard, each read, embedded with :func:`scllm.tl.embed` (or annotated with
:func:`scllm.tl.annotate`) and written by the worker that ran it, so no expression matrix
travels through the scheduler. Each worker reads the model once: ``scllm.tl.embed`` and
``annotate`` keep the last model they loaded for the next call in the same process (the table's
``model_reused`` column says which shards found it loaded; :func:`scllm.tl.forget_model`). The
same code runs on a ``LocalCluster`` and on any Dask cluster whose workers can read the shards
and the model folder.

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


def run_shard(verb: str, src: str, dst: str, model: Optional[str], options: Dict[str, Any]) -> Dict[str, Any]:
    """Run ``scllm.tl.<verb>`` (``embed`` or ``annotate``) on one shard and write it to ``dst``
    (through a temporary file in the same folder, renamed when complete, so a failed or killed
    task leaves no half-written output)."""
    import anndata as ad

    from . import tl

    t0 = time.perf_counter()
    adata = ad.read_h5ad(src)
    summary = getattr(tl, verb)(adata, model, **options)
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
        "obsm_key": summary.get("obsm_key"),
        "family": summary.get("family"),
        "verb_seconds": summary.get("seconds"),
        "model_reused": bool(summary.get("model_reused")),
        "seconds": time.perf_counter() - t0,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def _run_files(verb, files, out_dir, model, client, options):
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

        model = default_model(verb)
    model_s = None if model is None else str(Path(model).resolve())
    futures = [
        client.submit(run_shard, verb, f, str((out / n).resolve()), model_s, options, pure=False,
                      key=f"scllm-{verb}-{i}-{n}")
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

    Returns a pandas DataFrame, one row per shard: its cells, the worker that ran it, the
    seconds taken and ``model_reused`` (the worker had read the model for an earlier shard). A shard that fails raises its error here, naming the file; the shards that
    finished keep their outputs.
    """
    return _run_files("embed", files, out_dir, model, client, options)


def annotate_files(
    files: Sequence[PathLike],
    out_dir: PathLike,
    model: Optional[PathLike] = None,
    *,
    adapter: PathLike,
    client: Any = None,
    **options: Any,
) -> "Any":
    """Annotate every file of ``files`` with a fine-tuned adapter on the cluster of ``client``,
    as :func:`embed_files` embeds them: ``out_dir/<file name>`` per shard with
    ``obs['predicted_cell_type']``, ``obs['prediction_confidence']`` and the adapted
    embeddings; ``options`` go to :func:`scllm.tl.annotate` (``unknown_below``, ``coverage``,
    ...). Workers must see ``adapter`` too.

    Example::

        scllm.dask.annotate_files(shards, "annotated/", model="scGPT_human",
                                  adapter="adapters/lora", unknown_below="auto", client=client)
    """
    if not Path(adapter).is_dir():
        raise FileNotFoundError(f"adapter folder {adapter} does not exist")
    return _run_files("annotate", files, out_dir, model, client,
                      {**options, "adapter": str(Path(adapter).resolve())})
