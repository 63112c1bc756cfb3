"""scllm.tl.finetune and scllm.tl.annotate run the CLI's own fine-tuning and annotation on an
AnnData in memory: the adapter `scllm finetune` trains on the same cells and seed, and the
same obs/obsm/uns as `scllm annotate` writes, for a token family (scGPT) and CellPLM."""

import json

import anndata as ad
import numpy as np
import pytest

import scllm
from conftest import ROOT, fixture, read, run_cli

DATA = "data/kang2018_pbmc_400.h5ad"
CASES = {
    # model, finetune options (CLI flags and Python keywords), annotate options
    "scgpt": (
        fixture("scgpt/small"),
        {"method": "encoder-prompt", "val_by": "donor=1015", "epochs": 1, "batch_size": 32,
         "max_len": 128, "lr": 1e-3, "min_cells_per_class": 2},
        {"max_len": 128, "unknown_below": "0.99"},
    ),
    "cellplm": (
        ROOT / "models" / "cellplm-small",
        {"method": "head", "group_by": "donor", "val_fraction": 0.2, "epochs": 2,
         "min_cells_per_class": 2},
        {"group_by": "donor", "unknown_below": "auto", "coverage": 0.9},
    ),
}


def flags(opts):
    out = []
    for k, v in opts.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def tensors(p):
    """The tensors of a .safetensors file (8-byte header length, JSON header, raw data)."""
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out


def same_adapter(py, cli):
    """Equal up to the order of float sums. The bytes were equal in every run but one, which
    ran while a build loaded both cores: a parallel reduction's split can follow the thread
    scheduling, so the last bits may move between two runs of the same binary."""
    a, b = tensors(py), tensors(cli)
    assert a.keys() == b.keys()
    for k in a:
        scale = max(1.0, float(np.abs(b[k]).max(initial=0.0)))
        assert np.abs(a[k] - b[k]).max(initial=0.0) <= 1e-4 * scale, k


@pytest.mark.parametrize("family", sorted(CASES))
def test_finetune_and_annotate_equal_the_cli(tmp_path, family):
    model, ft, an = CASES[family]
    cli_ad = tmp_path / "cli_adapter"
    r = run_cli("finetune", "--model", model, "--train", fixture(DATA), "--label", "cell_type",
                "-o", cli_ad, "--json", *flags(ft))
    assert r.returncode == 0, r.stderr
    cli_summary = json.loads(r.stdout)

    a = read(DATA)
    obs_before = a.obs.copy()
    py_ad = tmp_path / "py_adapter"
    s = scllm.tl.finetune(a, model, label="cell_type", out=py_ad, **ft)
    assert a.obs.equals(obs_before), "fine-tuning does not change the cells"
    assert s["method"] == cli_summary["method"] == ft["method"]
    assert s["trainable_params"] == cli_summary["trainable_params"]
    assert s["best_epoch"] == cli_summary["best_epoch"]
    same_adapter(py_ad / "adapter.safetensors", cli_ad / "adapter.safetensors")

    out = tmp_path / "annotated.h5ad"
    r = run_cli("annotate", "--model", model, "--adapter", cli_ad, fixture(DATA), "-o", out,
                "--json", *flags(an))
    assert r.returncode == 0, r.stderr
    cli = ad.read_h5ad(out)
    # the CLI's adapter, so that prediction alone is compared, bit for bit
    summary = scllm.tl.annotate(a, model, adapter=cli_ad, **an)
    assert summary["cells"] == a.n_obs
    assert list(a.obs["predicted_cell_type"].astype(str)) == list(cli.obs["predicted_cell_type"].astype(str))
    assert a.obs["predicted_cell_type"].dtype == "category"
    assert np.array_equal(a.obs["prediction_confidence"].to_numpy(), cli.obs["prediction_confidence"].to_numpy())
    new_cols = set(cli.obs.columns) - set(obs_before.columns)
    assert new_cols <= set(a.obs.columns), new_cols - set(a.obs.columns)
    key = summary["obsm_key"]
    assert np.array_equal(a.obsm[key], cli.obsm[key])
    assert set(a.uns["scllm_annotate"]) == set(cli.uns["scllm_annotate"])


def test_annotate_bad_input_leaves_the_cells(tmp_path):
    a = read(DATA)
    before = a.obs.copy()
    with pytest.raises(FileNotFoundError):
        scllm.tl.annotate(a, fixture("scgpt/small"), adapter=tmp_path / "none")
    with pytest.raises(KeyError, match="no_such_label"):
        scllm.tl.finetune(a, fixture("scgpt/small"), label="no_such_label", method="head", out=tmp_path / "x")
    with pytest.raises(ValueError, match="strategy|method"):
        scllm.tl.finetune(a, fixture("scgpt/small"), method="dance", out=tmp_path / "x")
    # an adapter folder that holds no adapter: the CLI's message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError):
        scllm.tl.annotate(a, fixture("scgpt/small"), adapter=tmp_path / "empty")
    assert a.obs.equals(before) and "scllm_annotate" not in a.uns


def test_progress_follows_the_loop_scllm_runs(tmp_path, monkeypatch):
    """``progress=True``: the callback sees the loop running now (its label, cells done, total),
    ending at done == total; stderr gets none of the command line's bars."""
    calls = []
    monkeypatch.setattr(scllm.tl, "_follow", lambda: (lambda d, t, l: calls.append((l, d, t)), lambda: None))
    ref = read("data/kang2018_pbmc_400.h5ad")
    adapter = tmp_path / "adapter"
    scllm.tl.finetune(ref, fixture("scgpt/small"), method="head", out=adapter, epochs=1,
                      max_len=64, min_cells_per_class=2, progress=True)
    assert calls, "no progress reported"
    label, done, total = calls[-1]
    assert done == total > 0, calls[-1]
    calls.clear()
    q = read("data/kang2018_pbmc_400.h5ad")
    scllm.tl.annotate(q, fixture("scgpt/small"), adapter=adapter, max_len=64, progress=True)
    assert calls[-1] == ("predict", q.n_obs, q.n_obs), calls[-3:]
    calls.clear()
    scllm.tl.baseline(read("data/kang2018_pbmc_400.h5ad"), ref, method="knn", progress=True)
    assert calls[-1] == ("knn", 400, 400), calls[-3:]
