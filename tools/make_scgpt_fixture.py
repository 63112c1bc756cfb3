#!/usr/bin/env python3
"""scGPT parity fixtures, produced by the reference implementation itself (PyPI scgpt 0.2.4).

Builds scgpt's own `TransformerModel` with a random init (LayerNorm weights and biases noised, so
a loader that skips them fails a test), saves it in the released layout (`best_model.pt` with
`self_attn.Wqkv.*` keys plus the release's extra `flag_encoder.weight`, `vocab.json`, `args.json`
with every field of the scGPT_human file), runs it in eval mode on a fixed tokenized batch of
real cells and stores inputs and outputs in `outputs.safetensors`:

    genes [B,L] i64, values [B,L] f32, padding [B,L] u8 (1 = pad),
    embed [B,L,d]      (gene + value embedding, the transformer input)
    gene_embs [B,L,d]  (post-LN gene-token embeddings, MVC's input)
    layer_{i} [B,L,d]  (output of encoder layer i)
    cell_emb [B,d]     (<cls> position of the last layer)
    mlm_output [B,L]   (ExprDecoder), mvc_output [B,L] (MVCDecoder), cls_output [B,n_cls]

Only non-pad positions are meaningful (PyTorch's fast path leaves garbage or zeros at pads).

Presets:
  small  d 64, 4 heads, d_hid 96, 3 layers, 1,503-token vocab (committed: tests/fixtures/scgpt/small)
  tiny   d 16, 2 heads, d_hid 24, 2 layers, plus the bad-checkpoint set (tests/fixtures/scgpt/tiny)
  full   the whole-human config: d 512, 8 heads, d_hid 512, 12 layers, 60,697 tokens (not committed)

    bash tools/setup_reference_env.sh && .venv-ref/bin/pip install torch   # once
    .venv-ref/bin/python tools/make_scgpt_fixture.py --preset small
    .venv-ref/bin/python tools/make_scgpt_fixture.py --preset tiny
    .venv-ref/bin/python tools/make_scgpt_fixture.py --preset full --out /tmp/scgpt_full

Input cells: tests/fixtures/data/pbmc3k_300.h5ad (a subset of the shared pbmc3k; see its README).
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
REF = os.environ.get("SCGPT_REF", os.path.join(ROOT, "ref"))

PRESETS = {
    "small": dict(embsize=64, nheads=4, d_hid=96, nlayers=3, n_vocab_genes=1500, n_cls=5,
                  lengths=[100, 100, 77, 50, 23, 9], max_length=100),
    "tiny": dict(embsize=16, nheads=2, d_hid=24, nlayers=2, n_vocab_genes=200, n_cls=3,
                 lengths=[20, 12, 5], max_length=20),
    "full": dict(embsize=512, nheads=8, d_hid=512, nlayers=12, n_vocab_genes=None, n_cls=5,
                 lengths=[600, 420, 333, 97, 12], max_length=1200),
}


def load_scgpt():
    """scgpt's model modules without scgpt/__init__.py (which imports the training stack)."""
    pkg = types.ModuleType("scgpt")
    pkg.__path__ = [os.path.join(REF, "scgpt")]
    pkg.logger = logging.getLogger("scGPT")
    sys.modules["scgpt"] = pkg
    sub = types.ModuleType("scgpt.model")
    sub.__path__ = [os.path.join(REF, "scgpt", "model")]
    sys.modules["scgpt.model"] = sub
    model = importlib.import_module("scgpt.model.model")
    collator = importlib.import_module("scgpt.data_collator")
    return model.TransformerModel, collator.DataCollator


def args_json(p, ntoken):
    """Every field of the released scGPT_human args.json; sizes from the preset."""
    return {
        "data_source": "/scratch/ssd004/datasets/cellxgene/scb_strict/human",
        "save_dir": "random-init parity fixture (tools/make_scgpt_fixture.py)",
        "load_model": None,
        "n_hvg": None,
        "valid_size_or_ratio": 0.003,
        "dist_backend": "nccl",
        "grad_accu_steps": 1,
        "pad_token": "<pad>",
        "input_style": "binned",
        "input_emb_style": "continuous",
        "n_bins": 51,
        "max_seq_len": 1200,
        "training_tasks": "both",
        "dist_url": "tcp://localhost:0",
        "mask_ratio": [0.25, 0.5, 0.75],
        "trunc_by_sample": True,
        "vocab_path": "vocab.json",
        "rank": 0,
        "batch_size": 32,
        "eval_batch_size": 64,
        "epochs": 6,
        "lr": 0.0001,
        "scheduler_interval": 100,
        "scheduler_factor": 0.99,
        "warmup_ratio_or_step": 10000.0,
        "no_cls": True,
        "no_cce": True,
        "fp16": True,
        "fast_transformer": True,
        "nlayers": p["nlayers"],
        "nheads": p["nheads"],
        "embsize": p["embsize"],
        "d_hid": p["d_hid"],
        "dropout": 0.2,
        "n_layers_cls": 3,
        "log_interval": 9000,
        "save_interval": 27000,
        "mask_value": -1,
        "pad_value": -2,
        "USE_CLS": False,
        "USE_CCE": False,
        "MVC": True,
        "USE_GENERATIVE_TRAINING": True,
        "world_size": 16,
        "distributed": True,
        "local_rank": 0,
        "gpu": 0,
    }


def write_safetensors(path, tensors):
    """The safetensors format by hand (no extra package needed): u64 header size, JSON, bytes."""
    dt = {np.float32: "F32", np.int64: "I64", np.uint8: "U8"}
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.tobytes()
        header[name] = {"dtype": dt[a.dtype.type], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def released_state_dict(model, d):
    """The model's state dict as the release stores it: `Wqkv`, plus `flag_encoder.weight`."""
    sd = {}
    for k, v in model.state_dict().items():
        k = k.replace("self_attn.in_proj_weight", "self_attn.Wqkv.weight")
        k = k.replace("self_attn.in_proj_bias", "self_attn.Wqkv.bias")
        sd[k] = v.detach().clone()
    sd["flag_encoder.weight"] = torch.randn(2, d) * 0.1  # generative-pretraining only; unexpected on load
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--out", default=None)
    ap.add_argument("--data", default=os.path.join(ROOT, "tests", "fixtures", "data", "pbmc3k_300.h5ad"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    p = PRESETS[a.preset]
    out = a.out or os.path.join(ROOT, "tests", "fixtures", "scgpt", a.preset)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    import anndata as ad
    import scipy.sparse as sp

    TransformerModel, DataCollator = load_scgpt()
    census = json.load(open(os.path.join(REF, "scgpt", "tokenizer", "default_census_vocab.json")))
    adata = ad.read_h5ad(a.data)
    x = adata.X.tocsr() if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    symbols = list(adata.var_names)

    # vocabulary: the census vocab (full) or the most expressed census genes of the data (small)
    if p["n_vocab_genes"] is None:
        tokens = sorted(census, key=census.get)
    else:
        totals = np.asarray(x.sum(axis=0)).ravel()
        in_census = [j for j in np.argsort(-totals, kind="stable") if symbols[j] in census]
        chosen = {symbols[j] for j in in_census[: p["n_vocab_genes"]]}
        tokens = sorted(chosen, key=census.get)  # census order, re-numbered from 0
    tokens += ["<pad>", "<cls>", "<eoc>"]  # appended like the release
    vocab = {t: i for i, t in enumerate(tokens)}
    pad_id, cls_id = vocab["<pad>"], vocab["<cls>"]

    d = p["embsize"]
    model = TransformerModel(
        ntoken=len(vocab), d_model=d, nhead=p["nheads"], d_hid=p["d_hid"], nlayers=p["nlayers"],
        nlayers_cls=3, n_cls=p["n_cls"], vocab=vocab, dropout=0.2, pad_token="<pad>", pad_value=-2,
        do_mvc=True, do_dab=False, use_batch_labels=False, domain_spec_batchnorm=False,
        explicit_zero_prob=False, use_fast_transformer=False, pre_norm=False,
    )
    with torch.no_grad():  # noise every LayerNorm, so a loader that skips one fails parity
        for name, t in model.named_parameters():
            if "norm" in name or name.startswith("cls_decoder._decoder.2") or name.startswith("cls_decoder._decoder.5"):
                t.add_(torch.randn_like(t) * 0.2)
    model.eval()

    # a fixed tokenized batch as embed_data builds it: expressed genes in column order, <cls>
    # first with pad_value, the collator's per-cell binning and sampling, padded to the longest
    gene_ids = np.array([vocab.get(s, -1) for s in symbols])
    rng = np.random.RandomState(a.seed)
    cells = rng.permutation(x.shape[0])
    items, used = [], []
    for want in p["lengths"]:
        for c in cells:
            if c in used:
                continue
            row = x[c]
            cols = row.indices[(row.data != 0) & (gene_ids[row.indices] >= 0)]
            if len(cols) + 1 < want:
                continue
            used.append(c)
            cols = np.sort(rng.choice(cols, want - 1, replace=False))  # vary the lengths
            vals = np.asarray(row[:, cols].todense()).ravel().astype(np.float32)
            items.append({"id": int(c),
                          "genes": torch.from_numpy(np.insert(gene_ids[cols], 0, cls_id)).long(),
                          "expressions": torch.from_numpy(np.insert(vals, 0, -2.0)).float()})
            break
    collator = DataCollator(do_padding=True, pad_token_id=pad_id, pad_value=-2, do_mlm=False,
                            do_binning=True, max_length=p["max_length"], sampling=True, keep_first_n_tokens=1)
    batch = collator(items)
    genes, values = batch["gene"], batch["expr"]
    padding = genes.eq(pad_id)

    with torch.no_grad():
        o = model(genes, values, src_key_padding_mask=padding, CLS=True, MVC=True)
        gene_embs = model.encoder(genes)
        h = gene_embs + model.value_encoder(values)
        res = {"embed": h, "gene_embs": gene_embs}
        for i, layer in enumerate(model.transformer_encoder.layers):
            h = layer(h, src_key_padding_mask=padding)
            res[f"layer_{i}"] = h
        keep = ~padding
        last = res[f"layer_{p['nlayers'] - 1}"]
        enc = model._encode(genes, values, padding)
        diff = (enc - last)[keep].abs().max().item()
        assert diff < 1e-4, f"layer-by-layer run disagrees with _encode: {diff}"
    res.update(cell_emb=o["cell_emb"], mlm_output=o["mlm_output"], mvc_output=o["mvc_output"],
               cls_output=o["cls_output"])
    arrays = {k: v.detach().numpy().astype(np.float32) for k, v in res.items()}
    arrays["genes"] = genes.numpy().astype(np.int64)
    arrays["values"] = values.numpy().astype(np.float32)
    arrays["padding"] = padding.numpy().astype(np.uint8)
    arrays["cells"] = np.array([it["id"] for it in items], dtype=np.int64)

    sd = released_state_dict(model, d)
    torch.save(sd, os.path.join(out, "best_model.pt"))
    json.dump(vocab, open(os.path.join(out, "vocab.json"), "w"), indent=0)
    json.dump(args_json(p, len(vocab)), open(os.path.join(out, "args.json"), "w"), indent=2)
    write_safetensors(os.path.join(out, "outputs.safetensors"), arrays)
    meta = {"preset": a.preset, "data": os.path.relpath(a.data, ROOT) if a.data.startswith(ROOT) else a.data,
            "seed": a.seed, "torch": torch.__version__, "n_cls": p["n_cls"], "ntoken": len(vocab),
            "batch_lengths": [int(v) for v in keep.sum(1)], "n_params": sum(t.numel() for t in model.parameters())}
    json.dump(meta, open(os.path.join(out, "fixture.json"), "w"), indent=2)

    if a.preset == "tiny":
        bad_checkpoints(sd, out)
    print(json.dumps(meta))


def bad_checkpoints(sd, out):
    """What users hand over by mistake, next to the tiny model (all load against its args.json)."""
    bad = os.path.join(out, "bad")
    os.makedirs(bad, exist_ok=True)
    # the other two attention spellings: torch's own MHA, and the 2026 flash-attn-2 wrapper
    torch.save({k.replace("self_attn.Wqkv.weight", "self_attn.in_proj_weight")
                 .replace("self_attn.Wqkv.bias", "self_attn.in_proj_bias"): v for k, v in sd.items()},
               os.path.join(bad, "in_proj.pt"))
    torch.save({k.replace("self_attn.", "self_attn._impl."): v for k, v in sd.items()},
               os.path.join(bad, "impl.pt"))
    # a LayerNorm weight missing
    torch.save({k: v for k, v in sd.items() if k != "transformer_encoder.layers.0.norm1.weight"},
               os.path.join(bad, "missing_key.pt"))
    # a wrong shape: value_encoder.linear2.weight transposed-and-cut
    w = dict(sd)
    w["value_encoder.linear2.weight"] = torch.randn(w["value_encoder.linear2.weight"].shape[0] + 1,
                                                    w["value_encoder.linear2.weight"].shape[1])
    torch.save(w, os.path.join(bad, "wrong_shape.pt"))
    # a foreign spelling: DataParallel's `module.` prefix on every key
    torch.save({"module." + k: v for k, v in sd.items()}, os.path.join(bad, "foreign_prefix.pt"))
    # a malicious pickle: unpickling it in Python would call os.system; it must be refused

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/scllm_pwned",))

    evil = dict(sd)
    evil["encoder.embedding.weight"] = Evil()
    torch.save(evil, os.path.join(bad, "malicious.pt"))
    # not a checkpoint at all
    with open(os.path.join(bad, "not_a_checkpoint.pt"), "w") as f:
        f.write("this is not a checkpoint\n")


if __name__ == "__main__":
    main()
