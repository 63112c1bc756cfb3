"""Build tests/fixtures/cellplm/annotation.safetensors: PyPI `cellplm` 0.1.0.post2's own
`CellTypeAnnotationPipeline` on the small random checkpoint of tests/fixtures/cellplm
(tools/make_cellplm_fixture.py), its new `ae` latent and annotation head drawn with torch seed 1,
and what the pipeline computes with them in eval mode (docs/models/cellplm.md §4.2):

- `head.*` / `latent.*`: the new tensors (`latent.layers.1.lat_2lat.0.*`, `head.mlp.1.*`), as
  the pipeline's `state_dict` names them;
- `ae_latent`, `ann_logits`: the `ae` latent and the head's logits of every cell of cells.h5ad,
  by `obs['batch']` set, in input order (the pipeline's `predict` path with the model's gene
  list set to every matched gene);
- `hvg_genes`: the gene-list positions `common_preprocess` keeps with `hvg=100` (seurat_v3 on
  the cells' counts, then the model's genes), as a float32 vector.

Run: .venv-ref/bin/python tools/make_cellplm_annotation_fixture.py
"""

import os

import anndata as ad
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from CellPLM.pipeline.cell_type_annotation import (
    CellTypeAnnotationDefaultModelConfig,
    CellTypeAnnotationPipeline,
)

FIX = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "cellplm")
PREFIX = "tiny"
N_CLASSES = 3


def main():
    query = ad.read_h5ad(os.path.join(FIX, "cells.h5ad"))
    cfg = dict(CellTypeAnnotationDefaultModelConfig)
    cfg["out_dim"] = N_CLASSES
    torch.manual_seed(1)
    pipe = CellTypeAnnotationPipeline(
        pretrain_prefix=PREFIX, overwrite_config=cfg, pretrain_directory=FIX)
    m = pipe.model
    new = {}
    with torch.no_grad():
        for k, p in m.named_parameters():
            if k.startswith("latent.") or k.startswith("head."):
                p.mul_(3.0)
                new[k] = p.detach().clone().contiguous()
    assert sorted(new) == [
        "head.mlp.1.bias", "head.mlp.1.weight",
        "latent.layers.1.lat_2lat.0.bias", "latent.layers.1.lat_2lat.0.weight"], sorted(new)

    # the genes common_preprocess keeps at fine-tuning with hvg=100 (seurat_v3, then gene_set)
    gl = list(m.embedder.feat_enc.pretrained_gene_list)
    kept = pipe.common_preprocess(query.copy(), 100, None, False).var.index.tolist()
    hvg = torch.tensor([gl.index(g) for g in kept], dtype=torch.float32)

    hooks = {}
    m.latent.register_forward_hook(
        lambda _m, _i, out: hooks.setdefault("ae_latent", []).append(out[0].detach()))
    m.head.mlp.register_forward_hook(
        lambda _m, _i, out: hooks.setdefault("ann_logits", []).append(out.detach()))
    pipe.fitted = True
    pipe.gene_list = [g for g in query.var.index if g in m.gene_set]
    pipe.predict(query.copy(), device="cpu")

    labels = query.obs["batch"].values
    perm = np.concatenate([np.where(labels == b)[0] for b in sorted(set(labels))])

    def input_order(ts):
        t = torch.cat(ts).numpy()
        out = np.empty_like(t)
        out[perm] = t
        return torch.from_numpy(out).float().contiguous()

    out = dict(new)
    out["ae_latent"] = input_order(hooks["ae_latent"])
    out["ann_logits"] = input_order(hooks["ann_logits"])
    out["hvg_genes"] = hvg
    save_file(out, os.path.join(FIX, "annotation.safetensors"))
    for k, v in out.items():
        print(k, tuple(v.shape), v.dtype)
    # the file loads back
    assert set(load_file(os.path.join(FIX, "annotation.safetensors"))) == set(out)


if __name__ == "__main__":
    main()
