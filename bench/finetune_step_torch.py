#!/usr/bin/env python3
"""PyTorch side of bench/finetune_step.sh: seconds per fine-tuning step of scPEFT's own
`TransformerModel` (laolintou/scPEFT `scgpt/model/model_prompt.py`; prefix from
scPEFT_reproduction), built and frozen by tools/make_peft_fixture.py's helpers.

One step = forward(CLS=True) + cross-entropy on cls_output + backward + torch.optim.Adam step over
the strategy's trainable set (scPEFT's rule: freeze all, unfreeze adapters / prompts / lora_ +
cls_decoder; `full`: everything; `head`: cls_decoder only). Train mode (dropout as configured),
fp32, no AMP, no gradient clipping (the Rust side does none either), 2 threads.

    python finetune_step_torch.py --gen DIR --batch B --len L --ntoken N --ncls K   # write the batch
    python finetune_step_torch.py --data DIR --strategy S --d 128 --nlayers 4 ...    # time steps

The batch (`--gen`) is random: gene ids uniform in [0, ntoken-2) with `<cls>` (id ntoken-2) first,
values uniform integer bins 0..50, no padding, labels uniform in [0, ncls); `<pad>` = ntoken-1.
Raw little-endian files genes.i64, values.f32, labels.i64, shape.json; the Rust side reads the same.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))


def gen(a):
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.gen, exist_ok=True)
    genes = rng.integers(0, a.ntoken - 2, size=(a.batch, a.len), dtype=np.int64)
    genes[:, 0] = a.ntoken - 2
    values = rng.integers(0, 51, size=(a.batch, a.len)).astype(np.float32)
    values[:, 0] = 0.0
    labels = rng.integers(0, a.ncls, size=(a.batch,), dtype=np.int64)
    genes.tofile(os.path.join(a.gen, "genes.i64"))
    values.tofile(os.path.join(a.gen, "values.f32"))
    labels.tofile(os.path.join(a.gen, "labels.i64"))
    json.dump({"batch": a.batch, "len": a.len, "ntoken": a.ntoken, "ncls": a.ncls, "pad_id": a.ntoken - 1},
              open(os.path.join(a.gen, "shape.json"), "w"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gen", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--strategy", default="full")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nlayers", type=int, default=4)
    ap.add_argument("--nheads", type=int, default=4)
    ap.add_argument("--dhid", type=int, default=512)
    ap.add_argument("--ntoken", type=int, default=5000)
    ap.add_argument("--ncls", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scpeft", default="/tmp/scpeft")
    ap.add_argument("--repro", default="/tmp/scpeft_repro")
    a = ap.parse_args()
    if a.gen:
        return gen(a)

    import torch
    from make_peft_fixture import STRATEGIES, load_model_module, trainable

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    shape = json.load(open(os.path.join(a.data, "shape.json")))
    B, L = shape["batch"], shape["len"]
    assert shape["ntoken"] == a.ntoken and shape["ncls"] == a.ncls
    genes = torch.from_numpy(np.fromfile(os.path.join(a.data, "genes.i64"), dtype=np.int64).reshape(B, L))
    values = torch.from_numpy(np.fromfile(os.path.join(a.data, "values.f32"), dtype=np.float32).reshape(B, L))
    labels = torch.from_numpy(np.fromfile(os.path.join(a.data, "labels.i64"), dtype=np.int64))
    padding = torch.zeros(B, L, dtype=torch.bool)

    s = a.strategy
    spec = STRATEGIES.get(s, dict(code="scpeft", prompt_type=""))
    mp = load_model_module(a.scpeft if spec["code"] == "scpeft" else a.repro)
    nl = a.nlayers
    # encoder-prompt: the reference's [1]*6 + [0]*6 (all layers of a smaller model), as scllm's default
    layers = list(range(min(6, nl))) if s == "encoder-prompt" else list(range(nl))
    conf = [1 if i in layers else 0 for i in range(nl)]
    use_prompt = s not in ("full", "head")
    model = mp.TransformerModel(
        ntoken=a.ntoken, d_model=a.d, nhead=a.nheads, d_hid=a.dhid, nlayers=nl, nlayers_cls=3,
        n_cls=a.ncls, vocab={"<pad>": a.ntoken - 1}, dropout=a.dropout, pad_token="<pad>", pad_value=-2,
        do_mvc=False, do_dab=False, use_batch_labels=False, domain_spec_batchnorm=False,
        explicit_zero_prob=False, use_fast_transformer=False, pre_norm=False,
        use_prompt=use_prompt, prompt_type=spec["prompt_type"] if use_prompt else "",
        num_tokens=spec.get("num_tokens", 1), n_layers_conf=conf, mlp_adapter_conf=conf,
        space_adapter_conf=conf,
    )
    if s == "prefix" and a.d != 512:  # the reference hardcodes emb_dim=512 (as make_peft_fixture.py)
        for layer in model.transformer_encoder.layers:
            if hasattr(layer, "prompt_embeddings"):
                layer.prompt_embeddings = torch.nn.Parameter(torch.zeros(1, spec["num_tokens"], a.d))
    for name, p in model.named_parameters():
        if s == "full":
            p.requires_grad_(True)
        elif s == "head":
            p.requires_grad_("cls" in name)
        else:
            p.requires_grad_(trainable(name, spec["prompt_type"]))
    params = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(params, lr=a.lr)  # eps 1e-8, as the Rust side
    crit = torch.nn.CrossEntropyLoss()
    model.train()
    times = []
    for step in range(a.steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(genes, values, src_key_padding_mask=padding, CLS=True)
        loss = crit(out["cls_output"], labels)
        loss.backward()
        opt.step()
        lv = loss.item()
        times.append(time.perf_counter() - t)
        print(f"torch {s} step {step}: {times[-1]:.3f} s loss {lv:.4f}", file=sys.stderr, flush=True)
    timed = times[1:]
    print(json.dumps({"side": "torch", "strategy": s, "batch": B, "len": L,
                      "median_s": statistics.median(timed), "steps_s": timed, "warmup_s": times[0],
                      "trainable": n_train, "total": n_total, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
