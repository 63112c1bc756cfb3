"""Build tests/fixtures/cellplm/pretrain.safetensors: the pretraining loss of PyPI `cellplm`
0.1.0.post2's own `OmicsFormer` (the small random checkpoint of tests/fixtures/cellplm, made by
tools/make_cellplm_fixture.py, with its NB-MLP decoder and covariate layers) on the cells of
cells.h5ad, every sample one set, with the randomness fixed (docs/models/cellplm.md §3.4-3.6):

- the model in eval mode (no dropout, no cell dropping), the GMVAE's Gumbel noise and Gaussian
  noise at zero (the cluster is the argmax, z is the mean), the decoder without covariate labels
  (the reference then adds each covariate table's sum over rows);
- the input in gene-list space (the released NB objective indexes input and output with one
  `gene_mask` and multiplies the input mask into the full output, so it runs only with every gene
  of the list: genes a file lacks count as zeros); the input mask given: `mask` (1 = a masked
  entry, `[cells, genes of the list]`), the embedder reading the counts with those entries
  zeroed, the NB objective in training mode (so its denoising term counts);
- outputs in input order: `dec_mean`, `dec_disp` `[cells, genes]`; per set (`obs['batch']`
  sorted) `latent_loss_{i}`, `nb_loss_{i}` (1-element tensors), `latent_raw_{i}` (the latent
  loss with the `lamda` floor off); `mask` itself.

Run: .venv-ref/bin/python tools/make_cellplm_pretrain_fixture.py
"""

import json
import os

import anndata as ad
import numpy as np
import torch
from safetensors.torch import save_file

import CellPLM.latent.autoencoders as gm
from CellPLM.model import OmicsFormer

FIX = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "cellplm")
PREFIX = "tiny"


def main():
    gm.GumbelSoftmax.sample_gumbel = lambda self, logits, eps=1e-20: torch.zeros_like(logits)
    gm.Gaussian.reparameterize = lambda self, mu, var: mu
    with open(os.path.join(FIX, f"{PREFIX}.config.json")) as f:
        config = json.load(f)
    model = OmicsFormer(**config)
    state = torch.load(os.path.join(FIX, f"{PREFIX}.best.ckpt"))["model_state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["embedder.pe_enc.pe_enc.weight"] and not unexpected, (missing, unexpected)
    model.eval()

    cells = ad.read_h5ad(os.path.join(FIX, "cells.h5ad"))
    gl = config["gene_list"]
    pos = {g: i for i, g in enumerate(gl)}
    cols = [j for j, g in enumerate(cells.var.index) if g in pos]
    # the released objective indexes the input and the decoder's output with one `gene_mask`, and
    # multiplies the input mask with the full output: it only runs with every gene of the list
    gene_mask = torch.arange(len(gl))
    # counts in gene-list space (the pretraining input: every column of the gene list)
    x = np.zeros((cells.n_obs, len(gl)), dtype=np.float32)
    dense = np.asarray(cells.X.todense(), dtype=np.float32)
    for j in cols:
        x[:, pos[cells.var.index[j]]] = dense[:, j]
    rng = np.random.default_rng(5)
    # 3 of every 4 cells masked, each entry (of the whole gene list) with probability 0.25
    masked_cells = rng.random(cells.n_obs) < 0.75
    mask_full = ((rng.random(x.shape) < 0.25) & masked_cells[:, None]).astype(np.float32)

    out = {"mask": torch.from_numpy(mask_full)}
    labels = cells.obs["batch"].astype(str).values
    means = np.zeros((cells.n_obs, len(gl)), dtype=np.float32)
    disps = np.zeros_like(means)
    for i, b in enumerate(sorted(set(labels))):
        rows = np.where(labels == b)[0]
        xs = torch.from_numpy(x[rows]).to_sparse()
        m = torch.from_numpy(mask_full[rows])
        masked = torch.from_numpy(np.where(mask_full[rows] > 0, 0.0, x[rows]).astype(np.float32))
        x_dict = {"x_seq": xs, "masked_x_seq": masked.to_sparse(), "input_mask": m,
                  "gene_mask": gene_mask, "coord": torch.zeros(len(rows), 2)}
        with torch.no_grad():
            h = model.embedder(x_dict)
            h = model.encoder({"h": h})["hidden"]
            h = model.pre_latent_norm({"h": h})
            z, latent_loss = model.latent({"h": h})
            # the same terms without the `lamda` floor (the config's 5 hides both here)
            gl_layer = model.latent.layers[1]
            floor, gl_layer.lamda = gl_layer.lamda, float("-inf")
            _, latent_raw = model.latent({"h": h})
            gl_layer.lamda = floor
            dec = model.decoder({"h": z})
            model.objective.train()
            nb = model.objective(dec, x_dict)
            model.objective.eval()
        means[rows] = dec["mean"].numpy()
        disps[rows] = dec["disp"].numpy()
        out[f"latent_loss_{i}"] = torch.tensor([float(latent_loss)])
        out[f"latent_raw_{i}"] = torch.tensor([float(latent_raw)])
        out[f"nb_loss_{i}"] = torch.tensor([float(nb)])
    out["dec_mean"] = torch.from_numpy(means)
    out["dec_disp"] = torch.from_numpy(disps)
    save_file({k: v.contiguous() for k, v in out.items()},
              os.path.join(FIX, "pretrain.safetensors"))
    for k, v in out.items():
        print(k, tuple(v.shape), float(v.float().abs().mean()))


if __name__ == "__main__":
    main()
