#!/usr/bin/env python3
"""PyTorch side of bench/pretrain_step.sh: scGPT's pretraining step with the reference code.

scgpt 0.2.4's `TransformerModel` (do_mvc=True, use_fast_transformer=False) of the shape in
`--model`'s args.json (random init), trained with the objectives `scllm pretrain` implements:
GEP (masked MSE of `mlm_output` over masked positions) + GEPC (masked MSE of `mvc_output`), the
mask ratio drawn per step from 0.25/0.5/0.75 and applied with scgpt's own `random_mask_value`
(mask value -1, pad -2; the function restated here because its module imports torchtext), AdamW (lr 5e-4, weight decay 0.01), clip-norm 1.0, fp32 on CPU. Cells:
the first cells of `--data` with at least 10 expressed genes, expressed genes in the vocabulary
sampled to max_len-1, normalize_total + log1p, scgpt's `binning`, `<cls>` first with value -2;
tokenized before timing. Prints one JSON line: cells/s over the timed steps (after one warm-up
step), loss of the last step.

    .venv-ref/bin/python bench/pretrain_step_torch.py --model models/scllm-small \
        --data ../shared/data/pbmc3k.h5ad --batch 32 --max-len 256 --steps 10
"""
import argparse
import importlib
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_scgpt_fixture import load_scgpt  # noqa: E402


def random_mask_value(values, mask_ratio, mask_value, pad_value):
    """scgpt.tokenizer.random_mask_value (its module imports torchtext, absent here): per row,
    int(n * ratio) of the non-pad positions (`<cls>` carries the pad value) set to mask_value."""
    values = values.clone().numpy()
    for row in values:
        idx = np.nonzero(row - pad_value)[0]
        row[np.random.choice(idx, int(len(idx) * mask_ratio), replace=False)] = mask_value
    return torch.from_numpy(values).float()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    o = p.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    rng = np.random.default_rng(0)
    args = json.load(open(os.path.join(o.model, "args.json")))
    vocab = json.load(open(os.path.join(o.model, "vocab.json")))
    TransformerModel, _ = load_scgpt()
    binning = importlib.import_module("scgpt.preprocess").binning
    loss_mod = importlib.import_module("scgpt.loss")

    import anndata
    n_cells = o.batch * (o.steps + 1)
    a = anndata.read_h5ad(o.data)
    genes = list(a.var_names)
    in_vocab = np.array([g in vocab for g in genes])
    pad, pad_value = vocab[args["pad_token"]], float(args["pad_value"])
    cells = []
    for i in range(a.n_obs):
        if len(cells) == n_cells:
            break
        row = a.X[i].toarray().ravel() if hasattr(a.X, "toarray") else np.asarray(a.X[i]).ravel()
        row = row.astype(np.float64)
        if (row != 0).sum() < 10:
            continue
        row = np.log1p(row * 1e4 / row.sum())
        nz = np.flatnonzero((row != 0) & in_vocab)
        if len(nz) > o.max_len - 1:
            nz = np.sort(rng.choice(nz, o.max_len - 1, replace=False))
        b = binning(row[nz].astype(np.float32), n_bins=args.get("n_bins", 51))
        cells.append(([vocab["<cls>"]] + [vocab[genes[j]] for j in nz],
                      [pad_value] + list(np.asarray(b, dtype=np.float32))))
    assert len(cells) == n_cells, f"only {len(cells)} usable cells"

    model = TransformerModel(
        ntoken=len(vocab), d_model=args["embsize"], nhead=args["nheads"], d_hid=args["d_hid"],
        nlayers=args["nlayers"], nlayers_cls=args.get("n_layers_cls", 3), n_cls=1, vocab=vocab,
        dropout=args["dropout"], pad_token=args["pad_token"], pad_value=args["pad_value"],
        do_mvc=True, do_dab=False, use_batch_labels=False, domain_spec_batchnorm=False,
        explicit_zero_prob=False, use_fast_transformer=False, fast_transformer_backend="flash",
        pre_norm=False)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)

    def step(k):
        idx = range(k * o.batch, (k + 1) * o.batch)
        L = max(len(cells[i][0]) for i in idx)
        g = torch.tensor([cells[i][0] + [pad] * (L - len(cells[i][0])) for i in idx])
        v = torch.tensor([cells[i][1] + [pad_value] * (L - len(cells[i][1])) for i in idx])
        ratio = [0.25, 0.5, 0.75][k % 3]
        masked = random_mask_value(v, ratio, -1.0, pad_value)
        mask = masked.eq(-1)
        out = model(g, masked, src_key_padding_mask=g.eq(pad), MVC=True)
        loss = (loss_mod.masked_mse_loss(out["mlm_output"], v, mask)
                + loss_mod.masked_mse_loss(out["mvc_output"], v, mask))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step(0)  # warm-up, not timed
    t0 = time.perf_counter()
    for k in range(1, o.steps + 1):
        last = step(k)
    secs = time.perf_counter() - t0
    print(json.dumps({"side": "torch", "batch": o.batch, "max_len": o.max_len, "steps": o.steps,
                      "seconds": secs, "cells_per_s": o.batch * o.steps / secs,
                      "last_loss": last, "threads": o.threads}))


if __name__ == "__main__":
    main()
