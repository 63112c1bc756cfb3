#!/usr/bin/env python3
"""scPEFT adapter parity fixtures, produced by the reference adapter code itself.

For each strategy this builds the scPEFT `TransformerModel` (`scgpt/model/model_prompt.py` with
its own `transformer_.py`, `use_fast_transformer=False`) at the size of the small scGPT fixture
(tests/fixtures/scgpt/small: d 64, 4 heads, d_hid 96, 3 layers, n_cls 5), loads that fixture's
base weights, sets random NON-ZERO adapter weights (prompt embeddings and lora_B included) and
perturbs the cls_decoder, then runs it in eval mode on the small fixture's padded batch
(genes/values/padding of its outputs.safetensors). It writes tests/fixtures/peft/<strategy>/:

    adapter.safetensors  every tensor the reference trains (names containing `Adapter`, `lora_`,
                         `prompt_embeddings`, `cls`, plus the LoRA `Wqkv.bias`), reference keys,
                         LoRA tensors saved BEFORE eval() (so `Wqkv` holds the unmerged W0)
    outputs.safetensors  cell_emb [B,d] (<cls>), cls_output [B,n_cls], last_hidden [B,L,d]
                         (only non-pad positions are meaningful)
    fixture.json         the reference's prompt_type and options

Which code:
  token-prompt   laolintou/scPEFT      prompt_type "Gene_token_prompt"
  encoder-prompt laolintou/scPEFT      prompt_type "Gene_encoder_prompt", adapters in layers 0-1
  lora           laolintou/scPEFT      prompt_type "LoRA" (loralib MergedLinear r=8 alpha=1, q and v)
  prefix         scPEFT_reproduction   prompt_type "prefix-prompt", 64 tokens in every layer
                 (v1's prefix path calls an undefined `forward_deep_prompt`; see docs/models/scpeft.md §1.1)

Reference paths taken. The forward runs with autograd ON (parameters require grad) so that
torch's fused eval fast path (`torch._transformer_encoder_layer_fwd`), which would skip every
adapter, is not taken: this is the path the tutorials take (they evaluate under autocast, which
also disables the fast path). For LoRA that path adds ΔW twice (loralib merges ΔW into
`Wqkv.weight` on eval() and the custom attention adds x·ΔWᵀ again): outputs `*` are W0 + 2ΔW
(Rust: `lora_eval_multiplier = 2`). LoRA also stores `*_native`, the same model run under
torch.no_grad(), where torch's native fast path uses the merged weight only: W0 + ΔW (the
mathematically intended model, multiplier 1).

Patch: the reference hardcodes the prompt width `emb_dim=512`; for the d=64 fixture the
`prompt_embeddings` are re-created as [1, 64, 64] (zeros, then random like the rest).

Regenerate (the reference checkouts from their git mirrors; loralib into the reference venv):

    git -C /work/.mirror/laolintou+scPEFT/repo archive HEAD scgpt | (mkdir -p /tmp/scpeft && tar -x -C /tmp/scpeft)
    git -C /work/.mirror/coffee19850519+scPEFT_reproduction/repo archive HEAD scgpt \\
        | (mkdir -p /tmp/scpeft_repro && tar -x -C /tmp/scpeft_repro)
    .venv-ref/bin/pip install loralib
    .venv-ref/bin/python tools/make_peft_fixture.py --scpeft /tmp/scpeft --repro /tmp/scpeft_repro
"""
import argparse
import importlib
import json
import logging
import os
import struct
import sys
import types
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_scgpt_fixture import write_safetensors  # noqa: E402

STRATEGIES = {
    "token-prompt": dict(code="scpeft", prompt_type="Gene_token_prompt"),
    "encoder-prompt": dict(code="scpeft", prompt_type="Gene_encoder_prompt", layers=[0, 1]),
    "lora": dict(code="scpeft", prompt_type="LoRA"),
    "prefix": dict(code="repro", prompt_type="prefix-prompt", num_tokens=64),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "I64": np.int64, "U8": np.uint8}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def load_model_module(root):
    """scPEFT's model_prompt without its scgpt/__init__.py (which imports the training stack)."""
    for k in list(sys.modules):
        if k == "scgpt" or k.startswith("scgpt."):
            del sys.modules[k]
    pkg = types.ModuleType("scgpt")
    pkg.__path__ = [os.path.join(root, "scgpt")]
    pkg.logger = logging.getLogger("scGPT")
    sys.modules["scgpt"] = pkg
    sub = types.ModuleType("scgpt.model")
    sub.__path__ = [os.path.join(root, "scgpt", "model")]
    sys.modules["scgpt.model"] = sub
    return importlib.import_module("scgpt.model.model_prompt")


def trainable(name, prompt_type):
    """The reference's rule (Tutorial_Annotation_Prompt.py; docs/models/scpeft.md §7)."""
    if any(p in name for p in ("lora_", "cls", "prompt_embeddings", "Adapter")):
        return True
    return prompt_type == "LoRA" and name.endswith("self_attn.Wqkv.bias")


def build(strategy, a, base_dir, args, vocab, sd_base):
    spec = STRATEGIES[strategy]
    mp = load_model_module(a.scpeft if spec["code"] == "scpeft" else a.repro)
    nl = args["nlayers"]
    layers = spec.get("layers", list(range(nl)))
    conf = [1 if i in layers else 0 for i in range(nl)]
    kw = dict(
        ntoken=len(vocab), d_model=args["embsize"], nhead=args["nheads"], d_hid=args["d_hid"],
        nlayers=nl, nlayers_cls=args["n_layers_cls"], n_cls=5, vocab=vocab, dropout=args["dropout"],
        pad_token="<pad>", pad_value=-2, do_mvc=False, do_dab=False, use_batch_labels=False,
        domain_spec_batchnorm=False, explicit_zero_prob=False, use_fast_transformer=False,
        pre_norm=False, use_prompt=True, prompt_type=spec["prompt_type"],
        num_tokens=spec.get("num_tokens", 1), n_layers_conf=conf, mlp_adapter_conf=conf,
        space_adapter_conf=conf,
    )
    model = mp.TransformerModel(**kw)
    d = args["embsize"]
    if strategy == "prefix":  # the reference hardcodes emb_dim=512
        for layer in model.transformer_encoder.layers:
            if hasattr(layer, "prompt_embeddings"):
                layer.prompt_embeddings = torch.nn.Parameter(torch.zeros(1, spec["num_tokens"], d))
    # base weights: torch's MHA calls the packed projection in_proj_*, loralib's MergedLinear Wqkv
    sd = {}
    for k, v in sd_base.items():
        if spec["prompt_type"] != "LoRA":
            k = k.replace("self_attn.Wqkv.weight", "self_attn.in_proj_weight")
            k = k.replace("self_attn.Wqkv.bias", "self_attn.in_proj_bias")
        sd[k] = v
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not trainable(k, spec["prompt_type"])]
    assert not missing, f"base weights missing: {missing}"
    unexpected = [k for k in res.unexpected_keys if not (k.startswith("mvc_decoder") or k == "flag_encoder.weight")]
    assert not unexpected, f"unexpected: {unexpected}"
    # random non-zero adapters, perturbed cls_decoder and (LoRA) Wqkv bias
    g = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(s in name for s in ("Adapter", "lora_", "prompt_embeddings")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif trainable(name, spec["prompt_type"]):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if trainable(k, spec["prompt_type"])}
    return model, state, spec, layers


def run(model, genes, values, padding):
    out = model(genes, values, src_key_padding_mask=padding, CLS=True)
    hidden = model._encode(genes, values, padding)
    return {"cell_emb": out["cell_emb"], "cls_output": out["cls_output"], "last_hidden": hidden}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scpeft", required=True, help="checkout of laolintou/scPEFT (holding scgpt/)")
    ap.add_argument("--repro", required=True, help="checkout of coffee19850519/scPEFT_reproduction")
    ap.add_argument("--base", default=os.path.join(ROOT, "tests", "fixtures", "scgpt", "small"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "peft"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="one strategy")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    args = json.load(open(os.path.join(a.base, "args.json")))
    vocab = json.load(open(os.path.join(a.base, "vocab.json")))
    sd_base = torch.load(os.path.join(a.base, "best_model.pt"), map_location="cpu", weights_only=True)
    inp = read_safetensors(os.path.join(a.base, "outputs.safetensors"))
    genes = torch.from_numpy(inp["genes"].copy()).long()
    values = torch.from_numpy(inp["values"].copy()).float()
    padding = torch.from_numpy(inp["padding"].copy()).bool()

    for strategy in STRATEGIES:
        if a.only and strategy != a.only:
            continue
        model, state, spec, layers = build(strategy, a, a.base, args, vocab, sd_base)
        if strategy == "lora":
            # the LoRA attention sets these aliases on its first forward (in the tutorials a
            # training step); the layer's fast-path check reads them before that otherwise
            for layer in model.transformer_encoder.layers:
                layer.self_attn.in_proj_weight = layer.self_attn.Wqkv.weight
                layer.self_attn.in_proj_bias = layer.self_attn.Wqkv.bias
        model.eval()  # LoRA: loralib merges ΔW into Wqkv.weight here
        res = run(model, genes, values, padding)  # autograd on: the slow (adapter) path
        meta = {"strategy": strategy, "prompt_type": spec["prompt_type"], "code": spec["code"],
                "layers": layers, "num_tokens": spec.get("num_tokens"), "seed": a.seed,
                "torch": torch.__version__, "n_cls": 5,
                "outputs": "eval mode, autograd on (adapter path, as the tutorials under autocast)"}
        if strategy == "lora":
            meta["lora_eval_multiplier"] = 2
            w = model.transformer_encoder.layers[0].self_attn.Wqkv
            dw = (w.weight - sd_base["transformer_encoder.layers.0.self_attn.Wqkv.weight"]).abs().max().item()
            meta["merged_weight_minus_base_max"] = dw
            assert dw > 1e-4, "loralib did not merge on eval()"
            with torch.no_grad():
                nat = run(model, genes, values, padding)
            res.update({k + "_native": v for k, v in nat.items()})
            meta["native"] = "*_native: torch.no_grad(), native fast path on the merged weight = W0 + ΔW (multiplier 1)"
        out = os.path.join(a.out, strategy)
        os.makedirs(out, exist_ok=True)
        write_safetensors(os.path.join(out, "adapter.safetensors"),
                          {k: v.numpy().astype(np.float32) for k, v in state.items()})
        write_safetensors(os.path.join(out, "outputs.safetensors"),
                          {k: v.detach().numpy().astype(np.float32) for k, v in res.items()})
        json.dump(meta, open(os.path.join(out, "fixture.json"), "w"), indent=2)
        print(strategy, len(state), "adapter tensors", {k: list(v.shape) for k, v in res.items()})


if __name__ == "__main__":
    main()
