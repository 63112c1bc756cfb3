#!/usr/bin/env python3
"""Check that the reference scGPT code loads a model folder written by scllm (`scllm pretrain`).

1. `torch.load(best_model.pt, weights_only=True)`: the pickle uses only allowed globals;
2. every tensor equals, bit for bit, the same tensor of `model.safetensors` (scllm's loader is
   tested on that file, and scllm's forward pass against the reference's elsewhere, so equal
   weights close the chain);
3. scgpt's own `TransformerModel`, built from `args.json` and `vocab.json` as the reference builds
   it (`n_cls=1, do_mvc=MVC`, `use_fast_transformer=False`), accepts the state dict after the
   reference's `Wqkv` -> `in_proj_*` rename: no unexpected key, no key of a wrong shape, and only
   the heads scllm did not train missing;
4. the reference runs a forward pass on a few real cells (binned with scgpt's own `binning`) and
   gives finite outputs.

    .venv-ref/bin/python tools/check_scgpt_loads.py MODEL_DIR [tests/fixtures/data/pbmc3k_300.h5ad]

Exit status 0 when every check passes.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_scgpt_fixture import load_scgpt  # noqa: E402


def main():
    model_dir = sys.argv[1]
    data = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "tests/fixtures/data/pbmc3k_300.h5ad")
    args = json.load(open(os.path.join(model_dir, "args.json")))
    vocab = json.load(open(os.path.join(model_dir, "vocab.json")))
    sd = torch.load(os.path.join(model_dir, "best_model.pt"), weights_only=True)
    print(f"best_model.pt: {len(sd)} tensors, loaded with weights_only=True")

    from safetensors.torch import load_file
    st = load_file(os.path.join(model_dir, "model.safetensors"))
    assert set(st) == set(sd), f"key sets differ: {set(st) ^ set(sd)}"
    for k in sd:
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], st[k]), f"{k} differs"
    print("every tensor equals model.safetensors bit for bit")

    TransformerModel, _ = load_scgpt()
    import importlib
    binning = importlib.import_module("scgpt.preprocess").binning
    model = TransformerModel(
        ntoken=len(vocab), d_model=args["embsize"], nhead=args["nheads"], d_hid=args["d_hid"],
        nlayers=args["nlayers"], nlayers_cls=args.get("n_layers_cls", 3), n_cls=1, vocab=vocab,
        dropout=args["dropout"], pad_token=args["pad_token"], pad_value=args["pad_value"],
        do_mvc=bool(args.get("MVC", False)), do_dab=False, use_batch_labels=False,
        domain_spec_batchnorm=False, explicit_zero_prob=False, use_fast_transformer=False,
        fast_transformer_backend="flash", pre_norm=False)
    renamed = {k.replace("self_attn.Wqkv.weight", "self_attn.in_proj_weight")
               .replace("self_attn.Wqkv.bias", "self_attn.in_proj_bias"): v for k, v in sd.items()}
    own = model.state_dict()
    wrong = [k for k, v in renamed.items() if k in own and own[k].shape != v.shape]
    assert not wrong, f"shape mismatches: {wrong}"
    res = model.load_state_dict(renamed, strict=False)
    assert not res.unexpected_keys, f"unexpected keys: {res.unexpected_keys}"
    missing = [k for k in res.missing_keys if not k.startswith("cls_decoder.")]
    assert not missing, f"missing keys beyond the untrained heads: {missing}"
    print(f"scgpt TransformerModel loaded it: {len(renamed)} tensors, "
          f"missing only {len(res.missing_keys)} cls_decoder tensors")

    import anndata
    a = anndata.read_h5ad(data)
    genes = list(a.var_names)
    cols = [j for j, g in enumerate(genes) if g in vocab]
    x = a.X[:8].toarray() if hasattr(a.X, "toarray") else np.asarray(a.X[:8])
    ids, vals = [], []
    max_len = 64
    for row in x:
        nz = [j for j in cols if row[j] != 0][: max_len - 1]
        b = binning(row[nz].astype(np.float32), n_bins=args.get("n_bins", 51))
        ids.append([vocab["<cls>"]] + [vocab[genes[j]] for j in nz])
        vals.append([args["pad_value"]] + list(b))
    L = max(len(r) for r in ids)
    pad = vocab[args["pad_token"]]
    g = torch.tensor([r + [pad] * (L - len(r)) for r in ids])
    v = torch.tensor([r + [args["pad_value"]] * (L - len(r)) for r in vals], dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(g, v, src_key_padding_mask=g.eq(pad), CLS=False, MVC=bool(args.get("MVC")))
    emb = out["cell_emb"]
    assert torch.isfinite(emb).all() and torch.isfinite(out["mlm_output"]).all()
    print(f"reference forward on {len(ids)} real cells: cell_emb {tuple(emb.shape)}, finite")
    print("OK")


if __name__ == "__main__":
    main()
