#!/usr/bin/env python3
"""scBERT parity fixture, produced by scBERT's own code.

Writes tests/fixtures/scbert/:

    cells.h5ad          the 6 labelled pbmc3k cells with the most counts (raw counts, float32 CSR):
                        124 of the 128 panel genes (in another order than the panel's: the 100
                        genes these cells count most, 20 other expressed ones, 4 all-zero ones)
                        and the 100 genes outside the panel they count most next (so dropping them
                        before normalize_total matters); with fewer panel genes every count would
                        land in bin 5
    model/              a model folder as scllm reads it:
      scbert_best.pth   torch.save of the dict scBERT's utils.save_best_ckpt writes (epoch,
                        model_state_dict, optimizer_state_dict, scheduler_state_dict, losses),
                        written by that function (file name fixture_best.pth, then renamed, so the
                        zip's inner folder name differs from the file name)
      scbert_config.json  num_tokens, dim, depth, heads, dim_head, max_seq_len
      gene_panel.txt    the 128 panel genes in model order (4 of them absent from cells.h5ad)
    expected.safetensors, fixture.json   the reference's outputs (below)

Which scBERT code. TencentAILabHealthcare/scBERT @ 262fd4b91f3f1c21a6e595d03d4ef423e16ffc99,
unpacked outside this repository (`git archive <commit> | tar -x -C DIR`, passed as --ref):
  model         performer_pytorch.PerformerLM (qkv_bias False, g2v_position_emb True, the
                defaults of finetune.py/predict.py) at a small shape: num_tokens 7, dim 16, depth 3,
                heads 2, dim_head 16 (nb_features int(16 ln 16) = 44), ff_mult 4, max_seq_len 129.
                Its Gene2VecPositionalEmbedding reads '../data/gene2vec_16906.npy' relative to
                the working directory: a random float64 [128, 16] table is written there (the
                class appends the zero row itself). torch.qr, removed from current torch, is
                shimmed onto torch.linalg.qr (it draws the random projection matrices; the
                checkpoint's matrices are what the outputs use).
  preprocessing preprocess.py itself, run with runpy in a scratch directory holding
                data/panglao_10000.h5ad (var_names = the panel) and data/your_raw_data.h5ad
                (= cells.h5ad). Its sc.pp.filter_cells(min_genes=200) is made a no-op: these
                cells have at most 128 panel genes, and scllm never drops cells (it reports).
                Bins are predict.py's `full_seq[full_seq > (CLASS - 2)] = CLASS - 2` then
                `.long()`, with the appended token 0.
  head          finetune.py's `Identity` class, taken from finetune.py's source with `ast` (the
                script itself trains at import) and built with SEQ_LEN = 129, h_dim 16, 3 classes;
                its literal-sized layers are replaced by the same layer types at the fixture's
                sizes: conv1 Conv2d(1, 1, (1, dim)) (the source's (1, 200) is the released dim)
                fc1 Linear(SEQ_LEN, 32) and fc2 Linear(32, 16) (the source's 512 and 512 → h_dim). The forward is the reference's.
  freezing      finetune.py's: every parameter frozen, then model.norm and
                model.performer.net.layers[-2] unfrozen, then the new head.
  one step      Adam (lr 1e-4) over model.parameters() and utils.CosineAnnealingWarmupRestarts
                (finetune.py's arguments) take one step on a cross-entropy loss of all 6 cells,
                so the saved optimizer and scheduler states are real; the saved weights are the
                ones after the step, and every output below is computed from them.
  outputs       model.eval(), torch.no_grad(), one cell at a time as predict.py runs (the key
                feature max of FAVOR+ is taken over the whole batch tensor, so a batch would
                change the numbers; fixture.json records by how much).

expected.safetensors (B = 6 cells in cells.h5ad order, L = 129, d = 16):
    bins [B, L] i64            the model input: 128 panel bins + the appended 0
    hidden_{i} [2, L, d] f32   cells 0 and 1: i = 0 the input to the first layer (token +
                               gene2vec embedding), i = 1..3 the output of layer i (captured by a
                               forward hook on each layer's feed-forward block: input + output)
    encodings [B, L, d] f32    model(x, return_encodings=True): the final norm's output
    embedding [B, d] f32       encodings[:, :-1].mean(1): the mean over the panel positions
    logits [B, 3] f32          model(x) with the Identity head

fixture.json also records lr_epochs, the learning rate of each of 100 epochs under
utils.CosineAnnealingWarmupRestarts(first_cycle_steps=15, cycle_mult=2, max_lr=1e-4,
min_lr=1e-6, warmup_steps=5, gamma=0.9) stepped per epoch (finetune.py), and parameter counts
of the reference at the released shape (16,907 positions, dim 200, depth 6, heads 10, dim_head
64): all parameters and those with requires_grad as built (pretraining), and after finetune.py's
freezing with the released Identity head (h_dim 128) for 9 classes.

Run: .venv-ref/bin/python tools/make_scbert_fixture.py --ref /tmp/scbert-ref
(needs torch, einops, local-attention, scanpy, safetensors: tools/setup_reference_env.sh).
"""

import argparse
import ast
import json
import os
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REF_COMMIT = "262fd4b91f3f1c21a6e595d03d4ef423e16ffc99"
N_PANEL = 128
N_ABSENT = 4
N_OTHER = 100
N_TOP = 100
N_CELLS = 6
SHAPE = dict(num_tokens=7, dim=16, depth=3, heads=2, dim_head=16)
HEAD_HIDDEN = (32, 16)
N_CLASSES = 3
SEED = 2021


def shim_torch_qr(torch):
    """torch.qr (used by the reference's gaussian_orthogonal_random_matrix) was removed."""

    def qr(a, some=True):
        return torch.linalg.qr(a, mode="reduced" if some else "complete")

    torch.qr = qr


def identity_class(ref: Path, seq_len: int):
    """finetune.py's `Identity` head class, compiled from its source alone."""
    import torch
    from torch import nn

    tree = ast.parse((ref / "finetune.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Identity")
    ns = {"torch": torch, "nn": nn, "SEQ_LEN": seq_len}
    exec(compile(ast.Module(body=[node], type_ignores=[]), "finetune.py", "exec"), ns)
    return ns["Identity"]


def pick_data(data: Path, rng):
    import anndata as ad
    import scipy.sparse as sp

    a = ad.read_h5ad(data)
    # deep cells and a panel holding their most counted genes: the panel total is then large
    # enough that bins 1..5 all occur (with few genes every count lands in bin 5)
    totals_cell = np.asarray(a.X.sum(1)).ravel()
    labelled = np.flatnonzero(a.obs["cell_type"].notna().to_numpy())
    cells = np.sort(labelled[np.argsort(-totals_cell[labelled], kind="stable")[:N_CELLS]])
    x = sp.csr_matrix(a.X[cells])
    totals = np.asarray(x.sum(0)).ravel()
    by_count = np.argsort(-totals, kind="stable")
    expressed = np.flatnonzero(totals > 0)
    top = list(by_count[:N_TOP])
    rest = np.setdiff1d(expressed, top)
    panel_cols = top + list(rng.choice(rest, N_PANEL - N_ABSENT - 4 - N_TOP, replace=False))
    zero = np.setdiff1d(np.arange(a.n_vars), expressed)
    panel_cols += list(rng.choice(zero, 4, replace=False))
    absent = list(rng.choice(np.setdiff1d(zero, panel_cols), N_ABSENT, replace=False))
    # the genes outside the panel these cells count most: dropping them before normalising matters
    others = [j for j in by_count if j not in panel_cols][:N_OTHER]
    file_cols = np.array(sorted(set(panel_cols) | set(others)))
    panel = [a.var_names[j] for j in panel_cols + absent]
    rng.shuffle(panel)
    sub = a[cells][:, file_cols].copy()
    sub.X = sp.csr_matrix(sub.X, dtype=np.float32)
    sub.X.eliminate_zeros()
    sub.obs["cell_type"] = sub.obs["cell_type"].cat.remove_unused_categories()
    sub.uns = {
        k: str(v) for k, v in a.uns.items() if k in ("source", "license", "citation", "x_kind")
    }
    return sub, panel, [a.var_names[j] for j in absent]


def reference_bins(ref: Path, cells, panel, scratch: Path):
    """Run preprocess.py on the cells, then predict.py's binning."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    work = scratch / "pre"
    (work / "data").mkdir(parents=True)
    ad.AnnData(
        X=sp.csr_matrix((1, len(panel)), dtype=np.float32),
        var=__import__("pandas").DataFrame(index=panel),
    ).write_h5ad(work / "data" / "panglao_10000.h5ad")
    cells.write_h5ad(work / "data" / "your_raw_data.h5ad")
    cwd = os.getcwd()
    keep = sc.pp.filter_cells
    sc.pp.filter_cells = lambda *a, **k: None
    try:
        os.chdir(work)
        runpy.run_path(str(ref / "preprocess.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
        sc.pp.filter_cells = keep
    pre = ad.read_h5ad(work / "data" / "preprocessed_data.h5ad")
    assert list(pre.var_names) == panel
    CLASS = 5 + 2
    rows = []
    for i in range(pre.n_obs):
        full_seq = pre.X[i].toarray()[0]
        full_seq[full_seq > (CLASS - 2)] = CLASS - 2
        rows.append(np.concatenate([full_seq.astype(np.int64), [0]]))
    return np.stack(rows), pre


def noise_(model, torch, gen):
    """Non-trivial random weights: matrices N(0, 1/fan_in), LayerNorm weights/biases and linear
    biases noised, token embedding N(0, 1). The projection matrices and gene2vec stay as built."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("pos_emb"):
                continue
            if p.dim() >= 2 and not name.startswith("token_emb"):
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            elif name.startswith("token_emb"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def released_counts(ref: Path, scratch: Path):
    """requires_grad sums of the reference at the released shape."""
    import torch
    from performer_pytorch import PerformerLM

    work = scratch / "released" / "work"
    (work.parent / "data").mkdir(parents=True)
    np.save(work.parent / "data" / "gene2vec_16906.npy", np.zeros((16906, 200)))
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        m = PerformerLM(
            num_tokens=7, dim=200, depth=6, max_seq_len=16907, heads=10,
            local_attn_heads=0, g2v_position_emb=True,
        )
    finally:
        os.chdir(cwd)
    total = sum(p.numel() for p in m.parameters())
    pretrain = sum(p.numel() for p in m.parameters() if p.requires_grad)
    buffers = sum(b.numel() for n, b in m.named_buffers() if n.endswith("projection_matrix"))
    for p in m.parameters():
        p.requires_grad = False
    for p in m.norm.parameters():
        p.requires_grad = True
    for p in m.performer.net.layers[-2].parameters():
        p.requires_grad = True
    backbone_ft = sum(p.numel() for p in m.parameters() if p.requires_grad)
    Identity = identity_class(ref, 16907)
    m.to_out = Identity(dropout=0.0, h_dim=128, out_dim=9)
    ft = sum(p.numel() for p in m.parameters() if p.requires_grad)
    ft_total = sum(p.numel() for p in m.parameters())
    return {
        "shape": dict(num_tokens=7, dim=200, depth=6, heads=10, dim_head=64, max_seq_len=16907),
        "total_params": total,
        "trainable_as_built": pretrain,
        "projection_matrix_buffer_elements": buffers,
        "finetune_trainable_backbone": backbone_ft,
        "finetune_classes": 9,
        "finetune_trainable_with_head": ft,
        "finetune_total_with_head": ft_total,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="unpacked scBERT @ " + REF_COMMIT)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/pbmc3k.h5ad"))
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/scbert"))
    args = ap.parse_args()
    ref = args.ref.resolve()
    out = args.out.resolve()
    sys.path.insert(0, str(ref))

    import torch
    from torch import nn
    from safetensors.numpy import save_file

    shim_torch_qr(torch)
    from performer_pytorch import PerformerLM
    import utils as ref_utils

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    scratch = Path(tempfile.mkdtemp(prefix="scbert-fixture-"))

    cells, panel, absent = pick_data(args.data.resolve(), rng)
    bins, pre = reference_bins(ref, cells, panel, scratch)
    seq_len = N_PANEL + 1

    # the model, its gene2vec table read from ../data as the reference does
    (scratch / "data").mkdir(exist_ok=True)
    (scratch / "work").mkdir()
    g2v = rng.standard_normal((N_PANEL, SHAPE["dim"]))
    np.save(scratch / "data" / "gene2vec_16906.npy", g2v)
    cwd = os.getcwd()
    os.chdir(scratch / "work")
    try:
        model = PerformerLM(
            max_seq_len=seq_len, local_attn_heads=0, g2v_position_emb=True, **SHAPE
        )
    finally:
        os.chdir(cwd)
    noise_(model, torch, gen)

    # finetune.py: freeze, unfreeze norm and layers[-2], new head
    for p in model.parameters():
        p.requires_grad = False
    for p in model.norm.parameters():
        p.requires_grad = True
    for p in model.performer.net.layers[-2].parameters():
        p.requires_grad = True
    Identity = identity_class(ref, seq_len)
    head = Identity(dropout=0.0, h_dim=HEAD_HIDDEN[1], out_dim=N_CLASSES)
    head.conv1 = nn.Conv2d(1, 1, (1, SHAPE["dim"]))
    head.fc1 = nn.Linear(in_features=seq_len, out_features=HEAD_HIDDEN[0], bias=True)
    head.fc2 = nn.Linear(in_features=HEAD_HIDDEN[0], out_features=HEAD_HIDDEN[1], bias=True)
    model.to_out = head
    noise_(model.to_out, torch, gen)
    fixture_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixture_total = sum(p.numel() for p in model.parameters())

    # one optimiser step, so the saved optimizer/scheduler states are real
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = ref_utils.CosineAnnealingWarmupRestarts(
        optimizer, first_cycle_steps=15, cycle_mult=2, max_lr=1e-4, min_lr=1e-6,
        warmup_steps=5, gamma=0.9,
    )
    labels = torch.from_numpy(cells.obs["cell_type"].cat.codes.to_numpy().astype(np.int64))
    labels = labels % N_CLASSES
    model.train()
    loss = nn.CrossEntropyLoss()(model(torch.from_numpy(bins)), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()

    # outputs, one cell at a time
    model.eval()
    hooks_out = {}

    def layer_hook(i):
        def hook(mod, inp, outp):
            hooks_out[i] = (inp[0] + outp).detach()
        return hook

    def first_hook(mod, inp):
        hooks_out[0] = inp[0].detach()

    handles = [model.performer.register_forward_pre_hook(first_hook)]
    for i, (_, g) in enumerate(model.performer.net.layers):
        handles.append(g.register_forward_hook(layer_hook(i + 1)))
    hidden = {i: [] for i in range(SHAPE["depth"] + 1)}
    encodings, logits = [], []
    with torch.no_grad():
        for b in range(N_CELLS):
            x = torch.from_numpy(bins[b]).long().unsqueeze(0)
            enc = model(x, return_encodings=True)
            for i in range(SHAPE["depth"] + 1):
                hidden[i].append(hooks_out[i][0].numpy())
            encodings.append(enc[0].numpy())
            logits.append(model(x)[0].numpy())
        for h in handles:
            h.remove()
        batched = model(torch.from_numpy(bins), return_encodings=True).numpy()
    encodings = np.stack(encodings).astype(np.float32)
    embedding = encodings[:, :-1].mean(1)
    batch_effect = float(np.abs(batched - encodings).max())

    # the schedule over 100 epochs, stepped per epoch as finetune.py does
    opt2 = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-4)
    sch2 = ref_utils.CosineAnnealingWarmupRestarts(
        opt2, first_cycle_steps=15, cycle_mult=2, max_lr=1e-4, min_lr=1e-6,
        warmup_steps=5, gamma=0.9,
    )
    lrs = []
    for _ in range(100):
        lrs.append(opt2.param_groups[0]["lr"])
        sch2.step()

    # the model folder
    # the generated files only (README.md stays)
    shutil.rmtree(out / "model", ignore_errors=True)
    (out / "model").mkdir(parents=True)

    class Ddp:  # save_best_ckpt saves model.module.state_dict()
        module = model

    ref_utils.save_best_ckpt(3, Ddp, optimizer, scheduler, float(loss), "fixture", str(scratch) + "/")
    shutil.move(scratch / "fixture_best.pth", out / "model" / "scbert_best.pth")
    (out / "model" / "gene_panel.txt").write_text("".join(g + "\n" for g in panel))
    cfg = dict(SHAPE, max_seq_len=seq_len)
    (out / "model" / "scbert_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    cells.write_h5ad(out / "cells.h5ad")

    tensors = {
        "bins": bins.astype(np.int64),
        "encodings": encodings,
        "embedding": embedding.astype(np.float32),
        "logits": np.stack(logits).astype(np.float32),
    }
    for i in range(SHAPE["depth"] + 1):
        tensors[f"hidden_{i}"] = np.stack(hidden[i][:2]).astype(np.float32)
    save_file(tensors, out / "expected.safetensors")

    import importlib.metadata as md

    meta = {
        "scbert_commit": REF_COMMIT,
        "config": cfg,
        "nb_features": int(model.performer.net.layers[0][0].fn.fast_attention.projection_matrix.shape[0]),
        "head_hidden": list(HEAD_HIDDEN),
        "n_classes": N_CLASSES,
        "cells": list(cells.obs_names),
        "cell_types": [str(c) for c in cells.obs["cell_type"]],
        "panel_genes_absent_from_cells": absent,
        "n_panel_matched": N_PANEL - N_ABSENT,
        "file_genes": int(cells.n_vars),
        "fixture_params": {"total": fixture_total, "trainable_finetune": fixture_trainable},
        "released_counts": released_counts(ref, scratch),
        "batch_of_6_vs_one_cell_max_abs_diff": batch_effect,
        "lr_epochs": lrs,
        "checkpoint_entries": ["epoch", "model_state_dict", "optimizer_state_dict",
                               "scheduler_state_dict", "losses"],
        "versions": {p: md.version(p) for p in
                     ["torch", "einops", "local-attention", "numpy", "scanpy", "anndata"]},
    }
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(scratch)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
