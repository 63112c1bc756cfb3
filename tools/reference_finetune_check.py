#!/usr/bin/env python3
"""Fine-tune a model folder with the reference scGPT code, to compare with `scllm finetune`.

Separates "the backbone is weak" from "scllm's fine-tuning path has a defect": the same weights
(best_model.pt of MODEL_DIR), the same cells and the same hyper-parameters as `scllm finetune
--method full` (Adam, StepLR 0.9 per epoch, batch 32, cross-entropy on `cls_output`), trained by
scgpt's own TransformerModel in PyTorch. Cells: expressed genes in the vocabulary, normalize_total
1e4 + log1p, scgpt's own `binning` (51 bins), `<cls>` first with value pad_value, at most MAX_LEN
tokens (genes sampled without replacement when a cell has more). Prints one line per epoch:
train loss, train accuracy, accuracy on the held-out cells. `--strategy` head / token-prompt /
encoder-prompt / lora trains scPEFT's own adapter model (its trainability rule, Adam eps 1e-4;
plain cross-entropy and random batches, unlike scllm's scPEFT defaults of class-weighted loss and a
class-balanced sampler, which matter little on balanced data).

    .venv-ref/bin/python tools/reference_finetune_check.py MODEL_DIR DATA.h5ad \
        --label cell_type --holdout species=mouse --epochs 25 --lr 1e-4 --max-len 257
"""
import argparse
import importlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_scgpt_fixture import load_scgpt  # noqa: E402


def tokenize(a, vocab, args, max_len, rng):
    binning = importlib.import_module("scgpt.preprocess").binning
    genes = list(a.var_names)
    in_vocab = np.array([g in vocab for g in genes])
    x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    x = x.astype(np.float64)
    tot = x.sum(1, keepdims=True)
    x = np.log1p(np.divide(x * 1e4, tot, out=np.zeros_like(x), where=tot > 0))
    cells = []
    for row in x:
        nz = np.flatnonzero((row != 0) & in_vocab)
        if len(nz) > max_len - 1:
            nz = np.sort(rng.choice(nz, max_len - 1, replace=False))
        b = binning(row[nz].astype(np.float32), n_bins=args.get("n_bins", 51))
        ids = [vocab["<cls>"]] + [vocab[genes[j]] for j in nz]
        vals = [args["pad_value"]] + list(np.asarray(b, dtype=np.float32))
        cells.append((ids, vals))
    return cells


def batch(cells, idx, pad, pad_value):
    L = max(len(cells[i][0]) for i in idx)
    g = torch.tensor([cells[i][0] + [pad] * (L - len(cells[i][0])) for i in idx])
    v = torch.tensor([cells[i][1] + [pad_value] * (L - len(cells[i][1])) for i in idx],
                     dtype=torch.float32)
    return g, v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("data")
    p.add_argument("--label", default="cell_type")
    p.add_argument("--holdout", required=True, help="COLUMN=VALUE of the held-out cells")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=257)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-init", action="store_true",
                   help="do not load best_model.pt (the same config, torch's own init)")
    p.add_argument("--strategy", default="full",
                   help="full, head, or a scPEFT strategy: token-prompt, encoder-prompt, lora "
                        "(scPEFT's own model_prompt.TransformerModel, its trainability rule)")
    p.add_argument("--scpeft", default="/tmp/scpeft",
                   help="checkout of laolintou/scPEFT (see tools/make_peft_fixture.py)")
    o = p.parse_args()
    torch.manual_seed(o.seed)
    rng = np.random.default_rng(o.seed)
    import anndata
    a = anndata.read_h5ad(o.data)
    col, val = o.holdout.split("=", 1)
    held = (a.obs[col].astype(str) == val).to_numpy()
    classes = sorted(a.obs[o.label].astype(str).unique())
    y = np.array([classes.index(c) for c in a.obs[o.label].astype(str)])
    args = json.load(open(os.path.join(o.model_dir, "args.json")))
    vocab = json.load(open(os.path.join(o.model_dir, "vocab.json")))
    TransformerModel, _ = load_scgpt()  # installs the `scgpt` package stub first
    cells = tokenize(a, vocab, args, o.max_len, rng)
    pad = vocab[args["pad_token"]]
    kw = dict(
        ntoken=len(vocab), d_model=args["embsize"], nhead=args["nheads"], d_hid=args["d_hid"],
        nlayers=args["nlayers"], nlayers_cls=args.get("n_layers_cls", 3), n_cls=len(classes),
        vocab=vocab, dropout=args["dropout"], pad_token=args["pad_token"],
        pad_value=args["pad_value"], do_mvc=False, do_dab=False, use_batch_labels=False,
        domain_spec_batchnorm=False, explicit_zero_prob=False, use_fast_transformer=False,
        pre_norm=False)
    prompt_type = {"token-prompt": "Gene_token_prompt", "encoder-prompt": "Gene_encoder_prompt",
                   "lora": "LoRA"}.get(o.strategy)
    if prompt_type:
        from make_peft_fixture import load_model_module, trainable
        mp = load_model_module(o.scpeft)
        conf = [1 if i < 6 else 0 for i in range(args["nlayers"])]  # scllm's default: layers 0-5
        model = mp.TransformerModel(**kw, use_prompt=True, prompt_type=prompt_type, num_tokens=1,
                                    n_layers_conf=conf, mlp_adapter_conf=conf,
                                    space_adapter_conf=conf)
    else:
        model = TransformerModel(**kw, fast_transformer_backend="flash")
    if not o.random_init:
        sd = torch.load(os.path.join(o.model_dir, "best_model.pt"), weights_only=True)
        if prompt_type != "LoRA":
            sd = {k.replace("self_attn.Wqkv.weight", "self_attn.in_proj_weight")
                  .replace("self_attn.Wqkv.bias", "self_attn.in_proj_bias"): v
                  for k, v in sd.items()}
        own = model.state_dict()
        sd = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(sd, strict=False)
    for name, prm in model.named_parameters():
        if o.strategy == "head":
            prm.requires_grad = "cls" in name
        elif prompt_type:
            prm.requires_grad = trainable(name, prompt_type)
    params = [prm for prm in model.parameters() if prm.requires_grad]
    print(f"strategy {o.strategy}: {sum(prm.numel() for prm in params):,} trainable parameters")
    # the adapters as scPEFT trains them (Adam eps 1e-4); full/head as Tutorial_Annotation
    opt = torch.optim.Adam(params, lr=o.lr, eps=1e-4 if prompt_type else 1e-8)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.9)
    train_idx = np.flatnonzero(~held)
    test_idx = np.flatnonzero(held)

    def predict(idx):
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(idx), 64):
                g, v = batch(cells, idx[s:s + 64], pad, args["pad_value"])
                r = model(g, v, src_key_padding_mask=g.eq(pad), CLS=True)
                out.append(r["cls_output"].argmax(1).numpy())
        return np.concatenate(out)

    print(f"{len(train_idx)} training cells, {len(test_idx)} held out ({o.holdout}), "
          f"{len(classes)} classes, max_len {o.max_len}, lr {o.lr}")
    for epoch in range(1, o.epochs + 1):
        model.train()
        perm = rng.permutation(train_idx)
        tot, n, correct = 0.0, 0, 0
        for s in range(0, len(perm), o.batch_size):
            idx = perm[s:s + o.batch_size]
            g, v = batch(cells, idx, pad, args["pad_value"])
            r = model(g, v, src_key_padding_mask=g.eq(pad), CLS=True)
            t = torch.tensor(y[idx])
            loss = torch.nn.functional.cross_entropy(r["cls_output"], t)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            tot += loss.item() * len(idx)
            n += len(idx)
            correct += (r["cls_output"].argmax(1) == t).sum().item()
        sched.step()
        acc_test = (predict(test_idx) == y[test_idx]).mean()
        print(f"epoch {epoch:3d}  train_loss {tot / n:.3f}  train_acc {correct / n:.3f}  "
              f"heldout_acc {acc_test:.3f}", flush=True)


if __name__ == "__main__":
    main()
