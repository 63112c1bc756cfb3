"""scllm.dask.embed_files on a 2-worker LocalCluster over 3 shards equals a single-process
scllm.tl.embed of each shard, one output per shard, none left half-written."""

import anndata as ad
import numpy as np
import pytest

import scllm
from conftest import fixture, read

distributed = pytest.importorskip("distributed")
import scllm.dask  # noqa: E402  (needs dask.distributed)


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def shards(tmp_path):
    a = read("data/kang2018_pbmc_400.h5ad")
    files = []
    for i, (lo, hi) in enumerate([(0, 150), (150, 260), (260, 400)]):
        p = tmp_path / f"shard{i}.h5ad"
        a[lo:hi].copy().write_h5ad(p)
        files.append(p)
    return files


def test_two_workers_equal_one_process(tmp_path, client):
    files = shards(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    model = fixture("cellplm")
    table = scllm.dask.embed_files(files, out, model=model, client=client)
    assert list(table["cells"]) == [150, 110, 140]
    assert table["worker"].nunique() >= 1
    each_worker_reads_the_model_once(table)
    for f in files:
        local = ad.read_h5ad(f)
        scllm.tl.embed(local, model=model)
        got = ad.read_h5ad(out / f.name)
        assert list(got.obs_names) == list(local.obs_names)
        assert np.array_equal(got.obsm["X_cellplm"], local.obsm["X_cellplm"])
    assert sorted(p.name for p in out.iterdir()) == [f.name for f in files]


def each_worker_reads_the_model_once(table):
    # 3 shards on 2 single-threaded workers: one worker takes two, and reads the model once
    loads = (~table["model_reused"]).groupby(table["worker"]).sum()
    assert (loads <= 1).all(), table
    assert table["model_reused"].sum() >= 3 - table["worker"].nunique(), table


def test_a_bad_shard_is_named(tmp_path, client):
    files = shards(tmp_path)
    bad = tmp_path / "bad.h5ad"
    a = read("data/kang2018_pbmc_400.h5ad")[:20].copy()
    a.var_names = [f"gene{i}" for i in range(a.n_vars)]
    a.write_h5ad(bad)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="bad.h5ad"):
        scllm.dask.embed_files([files[0], bad], out, model=fixture("scgpt/small"), client=client)
    assert not any(p.name.startswith(".") for p in out.iterdir())
    with pytest.raises(FileNotFoundError):
        scllm.dask.embed_files([tmp_path / "missing.h5ad"], out, client=client)


def test_annotate_files_equals_one_process(tmp_path, client):
    files = shards(tmp_path)
    model = fixture("scgpt/small")
    adapter = tmp_path / "adapter"
    scllm.tl.finetune(read("data/kang2018_pbmc_400.h5ad"), model, method="head", out=adapter,
                      epochs=1, max_len=64, min_cells_per_class=2)
    out = tmp_path / "annotated"
    out.mkdir()
    table = scllm.dask.annotate_files(files, out, model=model, adapter=adapter, client=client,
                                      max_len=64, unknown_below=0.5)
    assert list(table["cells"]) == [150, 110, 140]
    each_worker_reads_the_model_once(table)
    for f in files:
        local = ad.read_h5ad(f)
        scllm.tl.annotate(local, model, adapter=adapter, max_len=64, unknown_below=0.5)
        got = ad.read_h5ad(out / f.name)
        assert list(got.obs["predicted_cell_type"].astype(str)) == list(local.obs["predicted_cell_type"].astype(str))
        assert np.array_equal(got.obs["prediction_confidence"].to_numpy(), local.obs["prediction_confidence"].to_numpy())
    with pytest.raises(FileNotFoundError):
        scllm.dask.annotate_files(files, out, model=model, adapter=tmp_path / "none", client=client)
