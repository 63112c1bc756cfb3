#!/usr/bin/env python3
"""Training-step parity fixture: the reference scGPT's gradients on the small fixture.

Loads tests/fixtures/scgpt/small (weights, args, vocab) into scgpt's own `TransformerModel`
(n_cls 5, `use_fast_transformer=False`, dropout 0 so the step is deterministic), puts it in train
mode, runs the small fixture's padded batch (genes/values/padding of outputs.safetensors, 6 cells of
lengths 100..9) with `CLS=True`, takes the mean cross-entropy of `cls_output` against the labels
[0, 1, 2, 3, 4, 0] and back-propagates. Writes tests/fixtures/scgpt/small/grads.safetensors:

    loss                    [1]   the cross-entropy
    grad.<state-dict key>         d loss / d parameter, for every parameter with a gradient,
                                  under the released keys (`self_attn.Wqkv.*`, PyTorch layout)

    .venv-ref/bin/python tools/make_grad_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_peft_fixture import read_safetensors  # noqa: E402
from make_scgpt_fixture import load_scgpt, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = [0, 1, 2, 3, 4, 0]


def main():
    d = os.path.join(ROOT, "tests", "fixtures", "scgpt", "small")
    args = json.load(open(os.path.join(d, "args.json")))
    vocab = json.load(open(os.path.join(d, "vocab.json")))
    TransformerModel, _ = load_scgpt()
    model = TransformerModel(
        ntoken=len(vocab), d_model=args["embsize"], nhead=args["nheads"], d_hid=args["d_hid"],
        nlayers=args["nlayers"], nlayers_cls=args["n_layers_cls"], n_cls=5, vocab=vocab,
        dropout=0.0, pad_token=args["pad_token"], pad_value=args["pad_value"], do_mvc=False,
        do_dab=False, use_batch_labels=False, domain_spec_batchnorm=False,
        explicit_zero_prob=False, use_fast_transformer=False, pre_norm=False)
    sd = torch.load(os.path.join(d, "best_model.pt"), weights_only=True)
    sd = {k.replace("self_attn.Wqkv.weight", "self_attn.in_proj_weight")
          .replace("self_attn.Wqkv.bias", "self_attn.in_proj_bias"): v for k, v in sd.items()}
    res = model.load_state_dict(sd, strict=False)
    assert not res.missing_keys, res.missing_keys
    out = read_safetensors(os.path.join(d, "outputs.safetensors"))
    genes = torch.tensor(out["genes"].astype(np.int64))
    values = torch.tensor(out["values"].astype(np.float32))
    padding = torch.tensor(out["padding"].astype(bool))
    model.train()
    r = model(genes, values, src_key_padding_mask=padding, CLS=True)
    loss = torch.nn.functional.cross_entropy(r["cls_output"], torch.tensor(LABELS))
    loss.backward()
    tensors = {"loss": np.array([loss.item()], dtype=np.float32)}
    for k, p in model.named_parameters():
        if p.grad is None:
            continue
        k = k.replace("self_attn.in_proj_weight", "self_attn.Wqkv.weight")
        k = k.replace("self_attn.in_proj_bias", "self_attn.Wqkv.bias")
        tensors["grad." + k] = p.grad.detach().numpy().astype(np.float32)
    path = os.path.join(d, "grads.safetensors")
    write_safetensors(path, tensors)
    print(f"loss {loss.item():.6f}; {len(tensors) - 1} gradients -> {path}")


if __name__ == "__main__":
    main()
