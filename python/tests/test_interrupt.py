"""Long calls report progress and stop on Ctrl-C: the work runs beside the interpreter, which
shows progress and sees signals; a KeyboardInterrupt stops the work at its next batch, leaves
the AnnData unchanged, and the next call runs normally."""

import os
import signal
import threading
import time

import anndata as ad
import numpy as np
import pytest

import scllm
from conftest import fixture, read

MODEL = fixture("scgpt/small")


def big():
    a = read("data/pbmc3k_300.h5ad")
    return ad.concat([a] * 8, index_unique="-")


def test_progress_reaches_every_cell(monkeypatch):
    seen = []

    def fake_progress(total, what):
        return (lambda done, t: seen.append((done, t))), (lambda: None)

    monkeypatch.setattr(scllm.tl, "_progress", fake_progress)
    a = read("data/pbmc3k_300.h5ad")
    scllm.tl.embed(a, model=MODEL, progress=True, batch_size=16)
    assert seen, "the callback was called"
    assert seen[-1] == (a.n_obs, a.n_obs)
    assert all(x[0] <= y[0] for x, y in zip(seen, seen[1:])), "monotonic"


def test_an_exception_in_the_progress_callback_stops_the_work(monkeypatch):
    def interrupting(total, what):
        def cb(done, t):
            if done > 0:
                raise KeyboardInterrupt

        return cb, (lambda: None)

    monkeypatch.setattr(scllm.tl, "_progress", interrupting)
    a = big()
    with pytest.raises(KeyboardInterrupt):
        scllm.tl.embed(a, model=MODEL, progress=True, batch_size=1)
    assert "X_scGPT" not in a.obsm


def test_ctrl_c_stops_a_long_embedding_and_the_next_call_works(monkeypatch):
    # a real SIGINT, sent 50 ms after the first cells are done (a fixed delay from the start
    # raced the embedding itself: on a quiet machine the run once finished before it)
    def kill_once_started(total, what):
        sent = threading.Event()

        def cb(done, t):
            if 0 < done < t and not sent.is_set():
                sent.set()
                threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGINT)).start()

        return cb, (lambda: None)

    monkeypatch.setattr(scllm.tl, "_progress", kill_once_started)
    a = big()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        scllm.tl.embed(a, model=MODEL, batch_size=1, progress=True)
    stopped = time.perf_counter() - t0
    assert "X_scGPT" not in a.obsm
    # a full run takes longer than the interrupted one (the stop came at a batch boundary)
    b = big()
    t1 = time.perf_counter()
    scllm.tl.embed(b, model=MODEL, batch_size=1)
    full = time.perf_counter() - t1
    assert b.obsm["X_scGPT"].shape[0] == b.n_obs
    assert stopped < full, (stopped, full)
