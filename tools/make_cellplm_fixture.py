"""Build tests/fixtures/cellplm: a small random CellPLM checkpoint in the released layout
(`{prefix}.config.json` + `{prefix}.best.ckpt`, weights under `model_state_dict`), made with
PyPI `cellplm` 0.1.0.post2 itself, a small real cell subset, and the reference's own
`CellEmbeddingPipeline` outputs (docs/models/cellplm.md §4.1).

The GMVAE draws Gumbel noise even in eval; the noise is fixed at zero here, i.e. the cluster is
the argmax of the logits, the path scllm takes (docs/models/cellplm.md §7).

Run: .venv-ref/bin/python tools/make_cellplm_fixture.py [--data ../shared/data/kang2018_ctrl_stim.h5ad]
"""

import argparse
import json
import os
import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from safetensors.torch import save_file

import CellPLM.latent.autoencoders as gm
from CellPLM.model import OmicsFormer
from CellPLM.pipeline.cell_embedding import CellEmbeddingPipeline

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "cellplm")
PREFIX = "tiny"


def zero_gumbel(self, logits, eps=1e-20):
    # the argmax path: no Gumbel noise (scllm's choice, docs/models/cellplm.md §7)
    return torch.zeros_like(logits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/kang2018_ctrl_stim.h5ad")
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    os.makedirs(OUT, exist_ok=True)

    src = ad.read_h5ad(args.data)
    # 3 samples x 12 cells, interleaved so that each group's cells are not contiguous in the file
    picks = []
    for s in ["ctrl101", "stim101", "ctrl107"]:
        idx = np.where(src.obs["sample"].astype(str).values == s)[0]
        picks.append(rng.choice(idx, 12, replace=False))
    order = np.stack(picks, 1).reshape(-1)
    rng.shuffle(order[:18])
    cells = src[order].copy()
    ens = cells.var["ensembl_id"].astype(str).values
    # 160 genes of the file with the most counts in these cells, 20 more of the file left out of the
    # model's list; the gene list adds 40 ids absent from the file, sorted like the release's
    tot = np.asarray(cells.X.sum(0)).ravel()
    top = np.argsort(-tot, kind="stable")[:180]
    keep_file = np.sort(top)
    in_list = set(ens[top[:160]])
    fake = [f"ENSG9{i:010d}" for i in range(40)]
    gene_list = sorted(in_list | set(fake))
    x = sp.csr_matrix(cells.X[:, keep_file].astype(np.float32))
    var = pd.DataFrame(index=pd.Index(ens[keep_file], name=None))
    var["gene_symbol"] = cells.var["gene_symbol"].astype(str).values[keep_file]
    obs = pd.DataFrame(index=cells.obs_names.astype(str))
    obs["batch"] = cells.obs["sample"].astype(str).values
    obs["cell_type"] = cells.obs["cell_type"].astype(str).values
    query = ad.AnnData(X=x, obs=obs, var=var)
    query.write_h5ad(os.path.join(OUT, "cells.h5ad"))

    config = {
        "enc_mod": "flowformer", "enc_hid": 32, "enc_layers": 2, "post_latent_dim": 16,
        "dec_mod": "nbmlp", "dec_hid": 32, "dec_layers": 2, "out_dim": len(gene_list),
        "batch_num": 5, "dataset_num": 3, "model_dropout": 0.2, "activation": "gelu",
        "norm": "groupnorm", "mask_node_rate": 0.75, "mask_feature_rate": 0.25,
        "drop_node_rate": 0.3, "max_batch_size": 4000, "pe_type": "sin", "cat_pe": False,
        "latent_mod": "gmvae", "num_clusters": 4, "w_li": 5.0, "w_en": 5.0, "lamda": 5.0,
        "mask_beta": True, "dsbn": False, "input_covariate": False, "dae": True,
        # enc_head left out: OmicsFormer's default 8 (head dim 4), as the released config
        "gene_list": gene_list,
    }
    model = OmicsFormer(**config)
    # the init leaves the gene table at 0.005 scale and the norms at identity: spread every
    # tensor so that each computation is exercised
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k.endswith("feat_enc.emb"):
                p.copy_(torch.randn_like(p) * 0.3)
            elif p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
            else:
                p.mul_(1.5)
    with open(os.path.join(OUT, f"{PREFIX}.config.json"), "w") as f:
        json.dump(config, f)
    state = model.state_dict()
    # the 2-D sinusoidal table (10 000 rows whatever the width) is a constant the model never
    # reads (`cat_pe` false adds 0): left out to keep the fixture small; the reference's loader
    # then keeps its own identical table
    del state["embedder.pe_enc.pe_enc.weight"]
    torch.save({"epoch": 3, "model_state_dict": state},
               os.path.join(OUT, f"{PREFIX}.best.ckpt"))

    gm.GumbelSoftmax.sample_gumbel = zero_gumbel
    pipe = CellEmbeddingPipeline(pretrain_prefix=PREFIX, pretrain_directory=OUT)
    m = pipe.model
    hooks = {}

    def keep(name):
        def f(_mod, _inp, out):
            hooks.setdefault(name, []).append((out[0] if isinstance(out, tuple) else out).detach())
        return f

    m.embedder.register_forward_hook(keep("embedder"))
    for i, layer in enumerate(m.encoder.layers):
        layer.register_forward_hook(keep(f"layer{i}"))
    m.latent.layers[1].inference.inference_qyx[0].register_forward_hook(
        lambda _m, _i, out: hooks.setdefault("logits", []).append(out[0].detach()))

    # the reference's set order: batch labels sorted, input order within a label
    labels = query.obs["batch"].values
    perm = np.concatenate([np.where(labels == b)[0] for b in sorted(set(labels))])

    def input_order(ts):
        t = torch.cat(ts).numpy()
        out = np.empty_like(t)
        out[perm] = t
        return torch.from_numpy(out)

    expected = {}
    expected["latent"] = pipe.predict(query.copy(), device="cpu").float().contiguous()
    for k, v in list(hooks.items()):
        expected[k] = input_order(v).float().contiguous()
    hooks.clear()
    # --batch-size 5: each group cut into sets of at most 5 consecutive cells
    expected["latent_bs5"] = pipe.predict(
        query.copy(), inference_config={"batch_size": 5}, device="cpu").float().contiguous()
    hooks.clear()
    # no batch column: all cells one set
    nob = query.copy()
    del nob.obs["batch"]
    expected["latent_one_set"] = pipe.predict(nob, device="cpu").float().contiguous()
    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    for k, v in expected.items():
        print(k, tuple(v.shape), float(v.abs().mean()))
    print("cells", query.shape, "gene_list", len(gene_list), file=sys.stderr)


if __name__ == "__main__":
    main()
