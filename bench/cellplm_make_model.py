#!/usr/bin/env python3
"""A random-weight CellPLM checkpoint at the released 85M shape, built with PyPI `cellplm`'s own
OmicsFormer, for bench/cellplm_embed.sh: `20230926_85M.config.json`'s values
(docs/models/cellplm.md §1.2: flowformer 4 layers x 1024, 8 heads, GMVAE 16 clusters, latent
512, nbmlp decoder, batch_num 12 596, dataset_num 484) with a gene_list of 19,374 sorted Ensembl
ids: every Ensembl id of the data file (var['ensembl_id']) plus GENCODE v44 ids as filler.
Saved in the released layout (`{prefix}.config.json` + `{prefix}.best.ckpt`, weights under
`model_state_dict`, every tensor kept, the positional table included).

PyTorch's default init (seeded) leaves the gene table at 0.005 scale, which makes every cell's
embedder input nearly the same; as tools/make_cellplm_fixture.py does, the tensors are spread so
that the agreement check compares cell-specific embeddings (timing is unaffected).

    .venv-ref/bin/python bench/cellplm_make_model.py --data DATA --out DIR [--prefix bench85M]
"""

import argparse
import gzip
import json
from pathlib import Path

N_GENES = 19374


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prefix", default="bench85M")
    ap.add_argument("--gencode", type=Path,
                    default=Path(__file__).resolve().parent.parent
                    / "resources" / "GENCODEv44_Gene_id2name.csv.gz")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import anndata as ad
    import torch
    from CellPLM.model import OmicsFormer

    torch.manual_seed(a.seed)
    var = ad.read_h5ad(a.data, backed="r").var
    data_ids = {str(g) for g in var["ensembl_id"] if str(g).startswith("ENSG")}
    with gzip.open(a.gencode, "rt") as f:
        gencode = sorted({line.split(",")[0] for line in f if line.startswith("ENSG")})
    filler = [g for g in gencode if g not in data_ids][: N_GENES - len(data_ids)]
    gene_list = sorted(data_ids | set(filler))
    assert len(gene_list) == N_GENES, len(gene_list)

    config = {
        "enc_mod": "flowformer", "enc_hid": 1024, "enc_layers": 4, "post_latent_dim": 512,
        "dec_mod": "nbmlp", "dec_hid": 1024, "dec_layers": 2, "out_dim": N_GENES,
        "batch_num": 12596, "dataset_num": 484, "model_dropout": 0.2, "activation": "gelu",
        "norm": "groupnorm", "mask_node_rate": 0.75, "mask_feature_rate": 0.25,
        "drop_node_rate": 0.3, "max_batch_size": 4000, "pe_type": "sin", "cat_pe": False,
        "latent_mod": "gmvae", "num_clusters": 16, "w_li": 5.0, "w_en": 5.0, "lamda": 5.0,
        "mask_beta": True, "dsbn": False, "input_covariate": False, "dae": True,
        # enc_head left out: OmicsFormer's default 8 (head dim 128), as the released config
        "gene_list": gene_list,
    }
    model = OmicsFormer(**config)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k.endswith("feat_enc.emb"):
                p.copy_(torch.randn_like(p) * 0.3)
            elif p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
    n = sum(p.numel() for p in model.state_dict().values())
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.prefix}.config.json").write_text(json.dumps(config))
    torch.save({"epoch": 0, "model_state_dict": model.state_dict()},
               a.out / f"{a.prefix}.best.ckpt")
    print(f"wrote {a.out}/{a.prefix}.{{config.json,best.ckpt}}: {n:,} values, "
          f"{len(data_ids)} data genes + {len(gene_list) - len(data_ids)} filler ids")


if __name__ == "__main__":
    main()
