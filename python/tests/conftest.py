"""Shared pieces of the Python package's tests: the committed fixtures and the CLI binary
(built by `cargo test --workspace` / `cargo build`) to compare with."""

import os
import shutil
import subprocess
from pathlib import Path

import anndata as ad
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def fixture(rel: str) -> Path:
    return FIXTURES / rel


def read(rel: str) -> ad.AnnData:
    return ad.read_h5ad(fixture(rel))


def cli() -> Path:
    """The `scllm` binary: $SCLLM_BIN, else the cargo target folder's debug build."""
    if os.environ.get("SCLLM_BIN"):
        return Path(os.environ["SCLLM_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for p in (target / "debug" / "scllm", target / "release" / "scllm"):
        if p.is_file():
            return p
    found = shutil.which("scllm")
    if found:
        return Path(found)
    pytest.fail("no scllm binary: build it with `cargo build -p scllm` or set SCLLM_BIN")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli()), *map(str, args)], capture_output=True, text=True)
