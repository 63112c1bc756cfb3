"""``scllm.benchmark``: a benchmark config run as ``scllm benchmark`` runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

import pandas as pd

from . import _scllm

PathLike = Union[str, "os.PathLike[str]"]


def benchmark(config: PathLike, out: PathLike, *, fewshot: bool = True, progress: bool = False) -> pd.DataFrame:
    """Every method of the benchmark ``config`` (a TOML file: data, label, split, methods --
    baselines beside model methods; see configs/README.md) on one split, as
    ``scllm benchmark CONFIG -o OUT``: the report (``results.json``, ``results.md``, predictions,
    pictures) goes to the folder ``out``.

    Example::

        table = scllm.benchmark("configs/tiny_kang_fixture.toml", out="report")
        table.sort_values("macro_f1", ascending=False)

    Returns the main table, one row per method: trainable parameters, accuracy, macro
    precision/recall/F1, weighted F1, wall seconds, peak memory (MiB), and the error of a method
    that failed (the others still ran). The full report is in ``table.attrs["report"]``.
    """
    if not Path(config).is_file():
        raise FileNotFoundError(f"benchmark config {config} does not exist")
    report_json, table_md = _scllm.benchmark(str(config), str(out), fewshot, progress)
    report = json.loads(report_json)
    rows = []
    for m in report["methods"]:
        x = m.get("metrics") or {}
        rows.append({
            "method": m["name"],
            "trainable_params": m.get("trainable_params"),
            "accuracy": x.get("accuracy"),
            "macro_precision": x.get("precision_macro"),
            "macro_recall": x.get("recall_macro"),
            "macro_f1": x.get("f1_macro"),
            "weighted_f1": x.get("f1_weighted"),
            "wall_seconds": m.get("wall_seconds"),
            "peak_mib": (m.get("memory") or {}).get("peak_rss_bytes", 0) / 2**20,
            "error": m.get("error"),
        })
    table = pd.DataFrame(rows).set_index("method")
    table.attrs["report"] = report
    table.attrs["markdown"] = table_md
    return table
