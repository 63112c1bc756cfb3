#!/usr/bin/env python3
"""Random-weight Geneformer V1-shaped model folders for benchmarks (never committed).

Writes, under --out, one Hugging Face-layout folder per shape with the FULL V1 dictionary
(25,426 tokens, ../shared/data/resources):

    gf-6L-256/   6 layers, d 256, 4 heads, intermediate 512   (the V1 "10M" shape)
    gf-12L-512/  12 layers, d 512, 8 heads, intermediate 1024 (geneformer-12L-30M)

each with config.json (the key set of the released Geneformer-V1-10M/config.json),
pytorch_model.bin (torch pickle with `bert.embeddings.position_ids` and the tied decoder keys, as
the 2021 files) and/or model.safetensors (save_pretrained; the Geneformer-V1-10M folder ships
both), plus token_dictionary.pkl and gene_median_dictionary.pkl copied from the resources so the
folder is self-contained. Weights are random (seeded; every tensor non-trivial, as in
tools/make_geneformer_fixture.py), so only speed and memory mean anything.

    .venv-ref/bin/python tools/make_geneformer_bench_model.py --out /tmp/gf_bench [--shapes 12L] [--format both]

Needs torch and transformers (WITH_TORCH=1 bash tools/setup_reference_env.sh).
"""
import argparse
import os
import pickle
import shutil
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_geneformer_fixture import config_json, randomize, write_config  # noqa: E402

SHAPES = {
    "6L": dict(name="gf-6L-256", num_hidden_layers=6, hidden_size=256, num_attention_heads=4, intermediate_size=512),
    "12L": dict(name="gf-12L-512", num_hidden_layers=12, hidden_size=512, num_attention_heads=8, intermediate_size=1024),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", nargs="+", default=["6L", "12L"], choices=sorted(SHAPES))
    ap.add_argument("--format", default="both", choices=["bin", "safetensors", "both"])
    ap.add_argument("--resources", default=os.path.join(ROOT, "..", "shared", "data", "resources"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import transformers
    from transformers import BertConfig, BertForMaskedLM

    with open(os.path.join(args.resources, "token_dictionary.pkl"), "rb") as f:
        vocab = len(pickle.load(f))
    assert vocab == 25426, vocab
    for key in args.shapes:
        s = SHAPES[key]
        folder = os.path.join(args.out, s["name"])
        os.makedirs(folder, exist_ok=True)
        cfg = config_json("v1", s, vocab, transformers.__version__)
        kw = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "gradient_checkpointing", "use_cache")}
        torch.manual_seed(args.seed)
        model = BertForMaskedLM(BertConfig(**kw)).eval()
        randomize(model, torch.Generator().manual_seed(args.seed))
        if args.format in ("safetensors", "both"):
            model.save_pretrained(folder)
        if args.format in ("bin", "both"):
            sd = {"bert.embeddings.position_ids": torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)}
            sd.update({k: v for k, v in model.state_dict().items() if k != "bert.embeddings.token_type_ids"})
            torch.save(sd, os.path.join(folder, "pytorch_model.bin"))
        write_config(folder, cfg)
        for name in ("token_dictionary.pkl", "gene_median_dictionary.pkl"):
            shutil.copyfile(os.path.join(args.resources, name), os.path.join(folder, name))
        n = sum(p.numel() for p in model.parameters())
        print(f"{folder}: {n / 1e6:.1f}M parameters, files {sorted(os.listdir(folder))}")


if __name__ == "__main__":
    main()
