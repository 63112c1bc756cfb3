"""scllm.benchmark runs `scllm benchmark`: the same methods and numbers as the CLI's
results.json, as a DataFrame, with the report folder written."""

import json

import pytest

import scllm
from conftest import ROOT, run_cli

CONFIG = ROOT / "configs" / "tiny_kang_fixture.toml"


def test_benchmark_equals_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    r = run_cli("benchmark", CONFIG, "-o", tmp_path / "cli", "--json")
    assert r.returncode == 0, r.stderr
    cli = {m["name"]: m for m in json.loads(r.stdout)["methods"]}
    table = scllm.benchmark(CONFIG, tmp_path / "py")
    assert list(table.index) == list(cli)
    for name, row in table.iterrows():
        assert row["accuracy"] == cli[name]["metrics"]["accuracy"]
        assert row["macro_f1"] == cli[name]["metrics"]["f1_macro"]
    assert (tmp_path / "py" / "results.json").is_file()
    assert (tmp_path / "py" / "results.md").is_file()
    assert "| Method |" in table.attrs["markdown"]
    with pytest.raises(FileNotFoundError):
        scllm.benchmark(tmp_path / "none.toml", tmp_path / "x")
