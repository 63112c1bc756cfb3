#!/usr/bin/env python3
"""Geneformer parity fixtures (V1 and V2), produced by Geneformer's own code.

Writes tests/fixtures/geneformer/:

    cells.h5ad        8 pbmc3k cells (raw counts, float32 CSR), the genes expressed in them except the
                      5 most counted ones outside the dictionary, plus a few all-zero genes; obs
                      n_counts (float64: total counts over ALL 32,738 pbmc3k genes, computed before
                      the genes were subset, so it differs from the file's row sums) and cell_type;
                      var gene_symbol and ensembl_id
    v1/               token_dictionary.pkl, gene_median_dictionary.pkl (V1 names and pickle format),
                      config.json + pytorch_model.bin (a random BertForMaskedLM, torch pickle, with the
                      old `bert.embeddings.position_ids` buffer and the tied decoder keys),
                      classifier/ (BertForSequenceClassification, 3 labels, save_pretrained),
                      expected.safetensors, fixture.json
    v2/               token_dictionary_gc104M.pkl (<pad> <mask> <cls> <eos> first),
                      gene_median_dictionary_gc104M.pkl, ensembl_mapping_dict_gc104M.pkl (collapses
                      two expressed genes onto one id, renames one, maps one to an id outside the
                      vocabulary), gene_name_id_dict_gc104M.pkl, config.json + model.safetensors,
                      classifier/, expected.safetensors, fixture.json

expected.safetensors (B cells in cells.h5ad order, L = longest tokenized cell):
    input_ids [B,L] i64   TranscriptomeTokenizer output padded with <pad> (0) to the longest cell
    lengths [B] i64       its `length` column (V2: includes <cls> and <eos>)
    n_vocab_genes [B] i64 the cell's tokens before truncation (and before <cls>/<eos>)
    hidden_{i} [B,K,d] f32 outputs.hidden_states[i] of the MLM model (0 = embedding output,
                          i = output of layer i), eval mode, attention_mask 1 on real tokens; only the
                          first K = min(L, --hidden-positions) positions are stored (the fixture-size
                          budget) and only non-pad positions are meaningful
    emb_cell_m1 [B,d]     EmbExtractor(emb_mode="cell", emb_layer=-1): mean of
                          hidden_states[num_layers-1] over real tokens (V2: positions 1..length-2,
                          i.e. without <cls> and <eos>)
    emb_cell_0 [B,d]      the same with emb_layer=0 (hidden_states[num_layers], the last layer)
    emb_cls_m1, emb_cls_0 V2 only: emb_mode="cls", hidden_states[...][:, 0, :]
    logits [B,3] f32      classifier/ (BertForSequenceClassification) in eval mode on the same batch

Which Geneformer code. ctheodoris/Geneformer (Hugging Face) @ 05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28
(2026-02-06, the V1+V2 package with `model_version`), read from its GitHub mirror
explorerwjy/Geneformer (whose later commits touch only their own analysis scripts). The package
is imported from a checkout outside this repository without its __init__.py (which imports the
classifier stack); the dictionary-path constants __init__ would define are set on the package
stub to the fixture's files. Functions used:
  tokenization  tokenizer.TranscriptomeTokenizer(...).tokenize_data(dir, out, prefix, "h5ad")
                (-> sum_ensembl_ids, tokenize_anndata, rank_genes, create_dataset); V1 with
                model_version="V1" (2048, no special tokens; the gc30M dictionary-path constants
                point at v1/*.pkl and the gc30M mapping file at None, i.e. the identity mapping the
                tokenizer builds from the token dictionary: V1 had no mapping file); V2 with
                model_version="V2" (4096, <cls>/<eos>, collapse_gene_ids=True) and v2/*.pkl
  embeddings    emb_extractor.EmbExtractor(...).extract_embs(...) (-> perturber_utils.load_model,
                downsample_and_sort, get_embs, pad_tensor_list, gen_attention_mask,
                mean_nonpadding_embs) with forward_batch_size = B (one padded batch). get_embs and
                gen_attention_mask hard-code device="cuda": they run on the CPU through a shim
                (the module-level `torch` of emb_extractor/perturber_utils is a proxy whose
                torch.tensor maps device "cuda" to "cpu"; Tensor.to/Module.to do the same while
                get_embs runs). EmbExtractor returns cells sorted by length; rows are mapped back
                to cells.h5ad order through a `cell_index` column added to the tokenized dataset.
                The same numbers are recomputed with get_embs on the unsorted dataset and from
                the hidden states (mean over positions), and asserted equal (1e-5).
  hidden/logits perturber_utils.load_model("Pretrained"/"CellClassifier", ...) (from_pretrained,
                output_hidden_states, eval()), inputs padded with pad_tensor_list and
                gen_attention_mask exactly as get_embs builds them.
Every tokenized cell is also re-derived by an independent numpy implementation (x = count /
n_counts * 10000 / median in float64, zeros dropped, STABLE sort descending, truncate, specials),
which must agree exactly: it is the specification the Rust tokenizer follows.

Optional cross-check (--classic DIR): lcrawlab/Geneformer @ a6b04af1f287ac74b11b69dce8ea1e53848d384e
(a fork of the V1-era upstream b2bbd7cc), whose V1 tokenizer (tokenize_anndata on an AnnData object,
create_dataset) and get_embs must give the same V1 input_ids and cell embeddings.

Models: random BertForMaskedLM (transformers), seeded; every weight matrix N(0, 1/fan_in), biases
and LayerNorm weights/biases noised, so a loader that skips any tensor fails. config.json carries
the key set of the released files (V1: Geneformer-V1-10M/config.json; V2:
Geneformer-V2-104M/config.json, whose dropouts are 0.1), with the preset's sizes; the classifier
folders keep the config.json that save_pretrained writes.

Presets:
  small  d 16, 4 heads, intermediate 32, 3 layers, hidden_{i} for the first 256 positions
         (committed; 4.7 MB)
  brief  d 32, 4 heads, intermediate 64, 3 layers, every hidden position (not committed; 24 MB)

Regenerate (reference venv; the Geneformer checkout from its git mirror, never committed):

    WITH_TORCH=1 bash tools/setup_reference_env.sh
    git --git-dir=/work/.mirror/explorerwjy+Geneformer/repo archive \\
        05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28 geneformer | (mkdir -p /tmp/geneformer-ref && tar -x -C /tmp/geneformer-ref)
    git --git-dir=/work/.mirror/lcrawlab+Geneformer/repo archive \\
        a6b04af1f287ac74b11b69dce8ea1e53848d384e geneformer | (mkdir -p /tmp/geneformer-lcrawlab && tar -x -C /tmp/geneformer-lcrawlab)
    GENEFORMER_REF=/tmp/geneformer-ref .venv-ref/bin/python tools/make_geneformer_fixture.py \\
        --classic /tmp/geneformer-lcrawlab

Versions used for the committed files: Python 3.11.7, numpy 2.4.6, scipy 1.17.1, pandas 2.3.3,
anndata 0.12.19, scanpy 1.11.5, torch 2.15.0+cu132 (the PyPI wheel, run on the CPU), transformers 5.24.0, datasets 5.2.0,
safetensors 0.8.0, peft 0.21.2, tdigest 0.5.2.2, loompy 3.0.8 (the last three only because
Geneformer's modules import them). pandas must be < 3 (tokenize_anndata indexes a Series by position).
"""
import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import pickle
import platform
import shutil
import sys
import tempfile
import types
import warnings

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the reference runs on the CPU, always
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_scgpt_fixture import write_safetensors  # noqa: E402

REF = os.environ.get("GENEFORMER_REF", "/tmp/geneformer-ref")
GENEFORMER = dict(
    upstream="huggingface.co/ctheodoris/Geneformer",
    mirror="github.com/explorerwjy/Geneformer",
    commit="05fcbeb8a27d49e0a7a4349152202ee2c1cbfd28",
    date="2026-02-06",
)
CLASSIC = dict(mirror="github.com/lcrawlab/Geneformer", commit="a6b04af1f287ac74b11b69dce8ea1e53848d384e")

PRESETS = {
    "small": dict(hidden_size=16, num_attention_heads=4, intermediate_size=32, num_hidden_layers=3,
                  hidden_positions=256),
    "brief": dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=3,
                  hidden_positions=0),
}

# pbmc3k cells (barcodes), chosen with a pass over all 2,700 cells (V1 dictionary, float64 x_norm):
# no pbmc3k cell has two equal x_norm values among its first 2,048 ranks, so every choice is tie-free.
CELLS = [
    "ACGAACTGGCTATG-1",  # Platelet, 2,377 V1-vocabulary genes: the least deep cell over 2,048 (V1 truncates)
    "CTAATAGAGCTATG-1",  # Naive CD4 T, 236 genes: shallow
    "ACCCAAGATTCACT-1",  # B, 650
    "GACCAAACGTATCG-1",  # CD14+ Mono, 900
    "AAACCGTGTATGCG-1",  # NK, 513
    "CGAGATTGGCCATA-1",  # CD8 T, 447
    "AGCTGAACCATACG-1",  # FCGR3A+ Mono, 1,101
    "AAGGTCTGGTATGC-1",  # unlabeled (cell_type NaN), 344
]
N_LEFT_OUT = 5  # expressed non-dictionary genes left out of cells.h5ad (n_counts keeps them)
N_EXTRA_IDS = 300  # real dictionary ids not in cells.h5ad, so the vocabulary is not just the input genes
N_LABELS = 3
V2_SPECIALS = ["<pad>", "<mask>", "<cls>", "<eos>"]  # ids 0..3 (see README: order is an assumption)

DICT_CONSTANTS = [
    "GENE_MEDIAN_FILE", "TOKEN_DICTIONARY_FILE", "ENSEMBL_DICTIONARY_FILE", "ENSEMBL_MAPPING_FILE",
    "GENE_MEDIAN_FILE_30M", "TOKEN_DICTIONARY_FILE_30M", "ENSEMBL_DICTIONARY_FILE_30M",
    "ENSEMBL_MAPPING_FILE_30M",
]


# ----------------------------------------------------------------------------------------------
# reference loading


def load_geneformer(root):
    """Geneformer's modules without geneformer/__init__.py; returns (package stub, modules)."""
    for k in list(sys.modules):
        if k == "geneformer" or k.startswith("geneformer."):
            del sys.modules[k]
    pkg = types.ModuleType("geneformer")
    pkg.__path__ = [os.path.join(root, "geneformer")]
    for name in DICT_CONSTANTS:
        setattr(pkg, name, None)
    sys.modules["geneformer"] = pkg
    mods = types.SimpleNamespace(
        tk=importlib.import_module("geneformer.tokenizer"),
        pu=importlib.import_module("geneformer.perturber_utils"),
        ee=importlib.import_module("geneformer.emb_extractor"),
    )
    mods.ee.torch = mods.pu.torch = _CpuTorch()
    return pkg, mods


def _cpu(x):
    return "cpu" if isinstance(x, str) and x.startswith("cuda") else x


class _CpuTorch(types.ModuleType):
    """`torch` as Geneformer's emb_extractor and perturber_utils see it: torch.tensor(...,
    device="cuda") lands on the CPU. (Patching torch.tensor itself is not an option: transformers'
    from_pretrained then leaves the non-persistent `position_ids` buffer uninitialised.)"""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def tensor(*a, **k):
        if "device" in k:
            k["device"] = _cpu(k["device"])
        return torch.tensor(*a, **k)


@contextlib.contextmanager
def cuda_on_cpu():
    """get_embs and gen_attention_mask hard-code device="cuda"; run them on the CPU: besides the
    module-level `torch` of emb_extractor/perturber_utils (see _CpuTorch), Tensor.to and Module.to
    map the device string "cuda" to "cpu" while this is active."""
    orig_to, orig_mto = torch.Tensor.to, torch.nn.Module.to

    def to(self, *a, **k):
        a = tuple(_cpu(x) for x in a)
        if "device" in k:
            k["device"] = _cpu(k["device"])
        return orig_to(self, *a, **k)

    def mto(self, *a, **k):
        a = tuple(_cpu(x) for x in a)
        if "device" in k:
            k["device"] = _cpu(k["device"])
        return orig_mto(self, *a, **k)

    torch.Tensor.to, torch.nn.Module.to = to, mto
    try:
        yield
    finally:
        torch.Tensor.to, torch.nn.Module.to = orig_to, orig_mto


def check_positions(model):
    """position_ids must be arange (a broken load leaves garbage or zeros: silent wrong outputs)."""
    p = model.bert.embeddings.position_ids
    assert torch.equal(p[0], torch.arange(p.shape[1])), "position_ids buffer not initialised"


# ----------------------------------------------------------------------------------------------
# pickles in Geneformer's format

try:
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import scalar as _np_scalar


class GeneformerPickler(pickle._Pickler):
    """Protocol-4 pickles as Geneformer ships them: numpy scalars reduce to
    `numpy.core.multiarray.scalar(dtype, bytes)` (the numpy 1.x module name; numpy 2 would write
    `numpy._core.multiarray`). Re-pickling the real V1 dictionaries with it is byte-identical."""

    def save_global(self, obj, name=None):
        if obj is _np_scalar and self.proto >= 4:
            self.save("numpy.core.multiarray")
            self.save("scalar")
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        return super().save_global(obj, name)


def dumps(obj):
    b = io.BytesIO()
    GeneformerPickler(b, protocol=4).dump(obj)
    return b.getvalue()


def write_pickle(path, obj):
    with open(path, "wb") as f:
        f.write(dumps(obj))


def check_pickler(resources):
    for name in ["token_dictionary.pkl", "gene_median_dictionary.pkl", "gene_name_id_dict.pkl"]:
        with open(os.path.join(resources, name), "rb") as f:
            raw = f.read()
        assert dumps(pickle.loads(raw)) == raw, f"re-pickling {name} is not byte-identical"


def value_types(d):
    out = {}
    for k, v in d.items():
        t = type(v)
        key = f"{type(k).__name__} -> {t.__module__}.{t.__name__}"
        if isinstance(v, np.generic):
            key += f" (dtype {v.dtype.str})"
        out[key] = out.get(key, 0) + 1
    return out


# ----------------------------------------------------------------------------------------------
# inputs


def build_cells(shared, tok1):
    src = ad.read_h5ad(os.path.join(shared, "pbmc3k.h5ad"))
    X = src.X.tocsr()
    X.eliminate_zeros()
    n_counts_all = np.asarray(X.astype(np.float64).sum(axis=1)).ravel()
    rows = np.array(sorted(src.obs_names.get_indexer(CELLS)))
    assert (rows >= 0).all()
    Xs = X[rows]
    expressed = np.asarray((Xs != 0).sum(axis=0)).ravel() > 0
    ens = src.var["ensembl_id"].astype(str).to_numpy()
    in_dict = np.array([e in tok1 for e in ens])
    zero_in = np.where(~expressed & in_dict)[0]
    zero_out = np.where(~expressed & ~in_dict)[0]
    rng = np.random.default_rng(0)
    zeros = np.concatenate([rng.choice(zero_in, 4, replace=False), rng.choice(zero_out, 3, replace=False)])
    # leave out the 5 most counted expressed genes outside the dictionary, so that n_counts (all
    # pbmc3k genes) differs from this file's row sums: a port that recomputes n_counts fails
    total = np.asarray(Xs.sum(axis=0)).ravel()
    out_expr = np.where(expressed & ~in_dict)[0]
    left_out = out_expr[np.argsort(-total[out_expr], kind="stable")[:N_LEFT_OUT]]
    keep = np.sort(np.concatenate([np.setdiff1d(np.where(expressed)[0], left_out), zeros]))
    obs = pd.DataFrame(
        {"n_counts": n_counts_all[rows], "cell_type": src.obs["cell_type"].iloc[rows].to_numpy()},
        index=src.obs_names[rows].to_numpy(),
    )
    obs["cell_type"] = pd.Categorical(obs["cell_type"], categories=src.obs["cell_type"].cat.categories)
    var = src.var.iloc[keep][["gene_symbol", "ensembl_id"]].copy()
    Xk = sp.csr_matrix(Xs[:, keep], dtype=np.float32)
    Xk.sort_indices()
    a = ad.AnnData(X=Xk, obs=obs, var=var)
    a.uns["source"] = "subset of ../shared/data/pbmc3k.h5ad (tools/make_geneformer_fixture.py): " + str(src.uns["source"])
    a.uns["license"] = str(src.uns["license"])
    a.uns["citation"] = str(src.uns["citation"])
    a.uns["x_kind"] = "counts"
    return a


def pick_v2_changes(cells, tok1):
    """Genes whose V2 mapping is not the identity (deterministic, in column order): a pair A, B
    collapsed onto A with some cells expressing both, some only A and some only B (all three cases
    of the summed count), a gene C renamed to an id outside cells.h5ad, two genes D1, D2 left out
    of the V2 vocabulary, and a gene E mapped to an id that is not in the V2 token dictionary."""
    X = (cells.X.tocsr() != 0).toarray()
    ens = cells.var["ensembl_id"].astype(str).to_numpy()
    deep = int(np.argmax(X.sum(1)))
    ok = [j for j in range(X.shape[1]) if ens[j] in tok1 and X[deep, j]]
    pair = None
    for ia, a in enumerate(ok):
        for b in ok[ia + 1:]:
            both, only_a, only_b = (X[:, a] & X[:, b]).sum(), (X[:, a] & ~X[:, b]).sum(), (~X[:, a] & X[:, b]).sum()
            if both >= 2 and only_a >= 1 and only_b >= 1:
                pair = (a, b)
                break
        if pair:
            break
    rest = [j for j in ok if j not in pair and X[:, j].sum() >= 4]
    c_, d1, d2, e_ = rest[:4]
    return dict(collapse_into=str(ens[pair[0]]), collapsed=str(ens[pair[1]]), renamed=str(ens[c_]),
                dropped=[str(ens[d1]), str(ens[d2])], unmapped_target=str(ens[e_]))


def build_dictionaries(cells, tok1_real, med_real, names_real):
    ens = cells.var["ensembl_id"].astype(str).to_numpy()
    genes1 = sorted({e for e in ens if e in tok1_real})
    rng = np.random.default_rng(1)
    others = sorted(set(k for k in tok1_real if k.startswith("ENSG")) - set(ens))
    extra1 = [str(x) for x in rng.choice(others, N_EXTRA_IDS, replace=False)]
    v1_ids = sorted(set(genes1) | set(extra1))
    tok1 = {"<pad>": 0, "<mask>": 1}
    tok1.update({g: np.int16(i + 2) for i, g in enumerate(v1_ids)})
    med1 = {g: med_real[g] for g in v1_ids}

    ch = pick_v2_changes(cells, tok1_real)
    pool = sorted(set(others) - set(extra1))
    rename_to, outside = [str(x) for x in rng.choice(pool, 2, replace=False)]
    extra2 = sorted(set(extra1[: N_EXTRA_IDS // 2]) | {str(x) for x in rng.choice(pool, N_EXTRA_IDS // 2, replace=False)})
    removed = {ch["collapsed"], ch["renamed"], ch["unmapped_target"], *ch["dropped"]}
    v2_ids = sorted((set(genes1) - removed) | {rename_to} | set(extra2) - {outside})
    tok2 = {s: i for i, s in enumerate(V2_SPECIALS)}
    tok2.update({g: np.int16(i + len(V2_SPECIALS)) for i, g in enumerate(v2_ids)})
    med2 = {g: med_real[g] for g in v2_ids}
    mapping = {g: g for g in v2_ids}
    mapping[ch["collapsed"]] = ch["collapse_into"]
    mapping[ch["renamed"]] = rename_to
    mapping[ch["unmapped_target"]] = outside  # target not in the token dictionary: gene dropped
    mapping = dict(sorted(mapping.items()))
    v2_set = set(v2_ids)
    names2 = {s: e for s, e in names_real.items() if e in v2_set}
    ch.update(rename_to=rename_to, outside_target=outside)
    return (tok1, med1), (tok2, med2, mapping, names2), ch


# ----------------------------------------------------------------------------------------------
# the specification, independently of Geneformer's code


def rank_value_encode(cells, tok, med, mapping, max_len, special):
    """x = count / n_counts * 10000 / median (float64), zeros dropped, stable descending sort."""
    X = cells.X.tocsr()
    ens = cells.var["ensembl_id"].astype(str).str.upper().to_numpy()
    if mapping is None:
        mapped = [e if e in tok else None for e in ens]
    else:
        mapping = {k: v for k, v in mapping.items() if v in tok}
        mapped = [mapping.get(e) for e in ens]
    ids = sorted({m for m in mapped if m is not None})
    col = {m: i for i, m in enumerate(ids)}
    M = sp.csr_matrix(
        (np.ones(sum(m is not None for m in mapped)),
         ([j for j, m in enumerate(mapped) if m is not None], [col[m] for m in mapped if m is not None])),
        shape=(X.shape[1], len(ids)),
    )
    C = (X.astype(np.float64) @ M).tocsr()  # collapsed (summed) counts
    C.eliminate_zeros()
    medv = np.array([med[m] for m in ids], dtype=np.float64)
    tokv = np.array([int(tok[m]) for m in ids], dtype=np.int64)
    n_counts = cells.obs["n_counts"].to_numpy(dtype=np.float64)
    out, n_genes, ties = [], [], []
    for i in range(X.shape[0]):
        s, e = C.indptr[i], C.indptr[i + 1]
        c, j = C.data[s:e], C.indices[s:e]
        x = c / n_counts[i] * 10000 / medv[j]
        order = np.argsort(-x, kind="stable")
        n_genes.append(len(order))
        keep = max_len - 2 if special else max_len
        xs = x[order][: keep + 1]
        ties.append(int(np.sum(np.diff(xs) == 0)))
        t = tokv[j][order][:keep]
        if special:
            t = np.concatenate([[int(tok["<cls>"])], t, [int(tok["<eos>"])]])
        out.append(t.astype(np.int64))
    return out, np.array(n_genes), np.array(ties)


def pbmc3k_tie_scan(shared, tok_real, med_real, max_len=2048):
    """Over all pbmc3k cells (the real V1 dictionary): ties among the kept ranks, and cells whose
    kept order changes when n_counts is float32 (then count / n_counts * 10000 runs in float32)."""
    src = ad.read_h5ad(os.path.join(shared, "pbmc3k.h5ad"))
    ens = src.var["ensembl_id"].astype(str).to_numpy()
    inv = np.where([e in tok_real for e in ens])[0]
    X = src.X.tocsr()
    n32 = np.asarray(X.sum(axis=1), dtype=np.float32).ravel()
    Xv = X[:, inv].tocsr()
    med = np.array([med_real[e] for e in ens[inv]])
    tied = differs = 0
    for i in range(X.shape[0]):
        s, e = Xv.indptr[i], Xv.indptr[i + 1]
        c, j = Xv.data[s:e], Xv.indices[s:e]
        x64 = c.astype(np.float64) / np.float64(n32[i]) * 10000 / med[j]
        x32 = (c / n32[i] * np.float32(10000)) / med[j]
        o64 = np.argsort(-x64, kind="stable")[:max_len]
        tied += bool(np.any(np.diff(np.sort(-x64)[: max_len + 1]) == 0))
        differs += not np.array_equal(o64, np.argsort(-x32, kind="stable")[:max_len])
    return {"cells": int(X.shape[0]), "cells_with_tied_x_norm_in_first_2048": int(tied),
            "cells_whose_first_2048_order_changes_with_float32_n_counts": int(differs)}


# ----------------------------------------------------------------------------------------------
# models


def randomize(model, gen):
    """Non-trivial weights everywhere: a loader that skips any tensor fails a parity test."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif p.dim() == 2 and "embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(p.shape[1]))
        we = model.bert.embeddings.word_embeddings
        we.weight[we.padding_idx].zero_()  # as trained: padding_idx 0 keeps a zero row


def config_json(version, p, vocab_size, tf_version):
    """The key set of the released config.json (V1: Geneformer-V1-10M, V2: Geneformer-V2-104M)."""
    c = {
        "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.02 if version == "v1" else 0.1,
        "hidden_act": "relu",
        "hidden_dropout_prob": 0.02 if version == "v1" else 0.1,
        "hidden_size": p["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": p["intermediate_size"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 2048 if version == "v1" else 4096,
        "model_type": "bert",
        "num_attention_heads": p["num_attention_heads"],
        "num_hidden_layers": p["num_hidden_layers"],
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "transformers_version": tf_version,
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if version == "v1":
        c["gradient_checkpointing"] = False
    else:
        c["classifier_dropout"] = None
        c["torch_dtype"] = "float32"
    return dict(sorted(c.items()))


def write_config(folder, c):
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(c, indent=2, sort_keys=True) + "\n")


def build_models(version, folder, p, vocab_size, seed):
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification
    import transformers

    cfg = config_json(version, p, vocab_size, transformers.__version__)
    kw = {k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version", "torch_dtype", "gradient_checkpointing", "use_cache")}
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mlm = BertForMaskedLM(BertConfig(**kw)).eval()
    randomize(mlm, gen)
    if version == "v1":
        # the 2021 layout: torch zip pickle of the full state dict, `bert.embeddings.position_ids`
        # first, the tied `cls.predictions.decoder.{weight,bias}` included (sharing storage)
        sd = {"bert.embeddings.position_ids": torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)}
        sd.update({k: v for k, v in mlm.state_dict().items() if k != "bert.embeddings.token_type_ids"})
        torch.save(sd, os.path.join(folder, "pytorch_model.bin"))
    else:
        mlm.save_pretrained(folder)  # model.safetensors (tied decoder keys left out)
    write_config(folder, cfg)
    loaded, info = BertForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"], info
    for k, v in mlm.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k

    cdir = os.path.join(folder, "classifier")
    torch.manual_seed(seed + 1)
    clf = BertForSequenceClassification.from_pretrained(folder, num_labels=N_LABELS)
    with torch.no_grad():
        d = cfg["hidden_size"]
        for lin in (clf.bert.pooler.dense, clf.classifier):
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) / np.sqrt(d))
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen) * 0.1)
    clf.save_pretrained(cdir)
    return cfg


# ----------------------------------------------------------------------------------------------
# running the reference


def tokenize(mods, cells_path, version, dicts_dir, workdir):
    tk = mods.tk
    indir = os.path.join(workdir, f"in_{version}")
    os.makedirs(indir, exist_ok=True)
    shutil.copy(cells_path, os.path.join(indir, "cells.h5ad"))
    if version == "v1":
        t = tk.TranscriptomeTokenizer(nproc=1, model_version="V1")
    else:
        t = tk.TranscriptomeTokenizer(
            nproc=1, model_version="V2",
            gene_median_file=os.path.join(dicts_dir, "gene_median_dictionary_gc104M.pkl"),
            token_dictionary_file=os.path.join(dicts_dir, "token_dictionary_gc104M.pkl"),
            gene_mapping_file=os.path.join(dicts_dir, "ensembl_mapping_dict_gc104M.pkl"),
        )
    t.tokenize_data(indir, workdir, f"cells_{version}", file_format="h5ad")
    from datasets import load_from_disk

    ds = load_from_disk(os.path.join(workdir, f"cells_{version}.dataset"))
    settings = dict(model_version=t.model_version, model_input_size=t.model_input_size,
                    special_token=t.special_token, collapse_gene_ids=t.collapse_gene_ids)
    return ds, settings


def run_reference(mods, version, folder, ds, cfg, workdir, hidden_positions):
    pu, ee = mods.pu, mods.ee
    B = len(ds)
    ds = ds.add_column("cell_index", list(range(B)))
    dpath = os.path.join(workdir, f"indexed_{version}.dataset")
    ds.save_to_disk(dpath)
    out = {}
    with cuda_on_cpu():
        # EmbExtractor, as a user runs it
        modes = [("cell", -1), ("cell", 0)] + ([("cls", -1), ("cls", 0)] if version == "v2" else [])
        for mode, layer in modes:
            ex = ee.EmbExtractor(
                model_type="Pretrained", emb_mode=mode, emb_layer=layer, max_ncells=None,
                emb_label=["cell_index"], forward_batch_size=B, nproc=1,
                model_version="V1" if version == "v1" else "V2",
                token_dictionary_file=None if version == "v1" else os.path.join(folder, "token_dictionary_gc104M.pkl"),
            )
            df, embs = ex.extract_embs(folder, dpath, workdir, f"emb_{version}_{mode}_{layer}", output_torch_embs=True)
            order = df["cell_index"].to_numpy()
            e = np.zeros((B, cfg["hidden_size"]), np.float32)
            e[order] = embs.numpy()
            out[f"emb_{mode}_{'m1' if layer == -1 else layer}"] = e

        # the same through get_embs on the unsorted dataset, plus hidden states and logits
        model = pu.load_model("Pretrained", 0, folder, mode="eval")
        check_positions(model)
        n_layers = pu.quant_layers(model)
        assert n_layers == cfg["num_hidden_layers"]
        with open(os.path.join(folder, "token_dictionary.pkl" if version == "v1" else "token_dictionary_gc104M.pkl"), "rb") as f:
            gtd = pickle.load(f)
        tgd = {v: k for k, v in gtd.items()}
        for mode, layer in modes:
            e = mods.ee.get_embs(model, ds, mode, n_layers + layer, gtd["<pad>"], B, tgd, silent=True)
            np.testing.assert_allclose(e.numpy(), out[f"emb_{mode}_{'m1' if layer == -1 else layer}"], rtol=1e-5, atol=1e-5)
        mb = ds.select(range(B))
        max_len = int(max(mb["length"]))
        mb.set_format(type="torch")
        ids = pu.pad_tensor_list(mb["input_ids"], max_len, gtd["<pad>"], pu.get_model_input_size(model))
        mask = pu.gen_attention_mask(mb)
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask)
        K = max_len if hidden_positions <= 0 else min(max_len, hidden_positions)
        for i, h in enumerate(o.hidden_states):
            out[f"hidden_{i}"] = h[:, :K, :].numpy().astype(np.float32)
        # the pooling, recomputed from the hidden states (what the Rust side does)
        lens = np.array(ds["length"])
        for layer in (-1, 0):
            h = o.hidden_states[n_layers + layer].numpy()
            lo = 1 if version == "v2" else 0
            ref = np.stack([h[b, lo: lens[b] - lo].mean(0) for b in range(B)])
            np.testing.assert_allclose(ref, out[f"emb_cell_{'m1' if layer == -1 else layer}"], rtol=1e-5, atol=1e-5)
        clf = pu.load_model("CellClassifier", N_LABELS, os.path.join(folder, "classifier"), mode="eval")
        check_positions(clf)
        with torch.no_grad():
            out["logits"] = clf(input_ids=ids, attention_mask=mask).logits.numpy().astype(np.float32)
    out["input_ids"] = ids.numpy().astype(np.int64)
    out["lengths"] = lens.astype(np.int64)
    return out, max_len, K


def v1_cls_behaviour(mods, v1_folder, ds_path, workdir):
    """What EmbExtractor does with emb_mode="cls" and a dictionary without <cls>."""
    ee = mods.ee
    res = {}
    ex = ee.EmbExtractor(emb_mode="cls", model_version="V1", max_ncells=None, forward_batch_size=8, nproc=1)
    res["model_version_V1"] = f"emb_mode silently becomes {ex.emb_mode!r} (warning logged)"
    ex = ee.EmbExtractor(emb_mode="cls", model_version="V2", max_ncells=None, forward_batch_size=8, nproc=1,
                         token_dictionary_file=os.path.join(v1_folder, "token_dictionary.pkl"))
    try:
        with cuda_on_cpu():
            ex.extract_embs(v1_folder, ds_path, workdir, "v1cls")
        res["model_version_V2"] = "no error (unexpected)"
    except AssertionError as e:
        res["model_version_V2"] = f"AssertionError: {e}"
    return res


def classic_crosscheck(classic_root, cells, v1_folder, expected, n_layers):
    """lcrawlab/Geneformer (V1-era upstream) tokenizer and get_embs give the same V1 numbers."""
    pkg, mods = load_geneformer(classic_root)
    t = mods.tk.TranscriptomeTokenizer(
        nproc=1, gene_median_file=os.path.join(v1_folder, "gene_median_dictionary.pkl"),
        token_dictionary_file=os.path.join(v1_folder, "token_dictionary.pkl"))
    cells_, meta = t.tokenize_anndata(cells)
    ds = t.create_dataset(cells_, meta)
    for b, row in enumerate(ds):
        n = expected["lengths"][b]
        assert row["length"] == n and list(row["input_ids"]) == list(expected["input_ids"][b, :n]), b
    with open(os.path.join(v1_folder, "token_dictionary.pkl"), "rb") as f:
        gtd = pickle.load(f)
    with cuda_on_cpu():  # this fork's load_model moves the model to "cuda" unconditionally
        model = mods.pu.load_model("Pretrained", 0, v1_folder, mode="eval")
        check_positions(model)
        for layer, key in ((-1, "emb_cell_m1"), (0, "emb_cell_0")):
            e = mods.ee.get_embs(model, ds, "cell", n_layers + layer, 0, len(ds), {v: k for k, v in gtd.items()}, silent=True)
            np.testing.assert_allclose(e.numpy(), expected[key], rtol=1e-5, atol=1e-5)
    return "V1 input_ids, lengths, emb_cell_m1 and emb_cell_0 identical (embeddings within 1e-5)"


# ----------------------------------------------------------------------------------------------


def versions():
    import anndata
    import datasets
    import safetensors
    import scanpy
    import scipy
    import transformers

    return {
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "pandas": pd.__version__, "anndata": anndata.__version__, "scanpy": scanpy.__version__,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "datasets": datasets.__version__, "safetensors": safetensors.__version__,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "geneformer"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--classic", default=os.environ.get("GENEFORMER_CLASSIC_REF"),
                    help="lcrawlab/Geneformer checkout for the optional V1 cross-check")
    ap.add_argument("--hidden-positions", type=int, default=None,
                    help="positions of hidden_{i} to store (0 = all; default from the preset)")
    args = ap.parse_args()
    p = dict(PRESETS[args.preset])
    if args.hidden_positions is not None:
        p["hidden_positions"] = args.hidden_positions
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)

    resources = os.path.join(args.shared, "resources")
    check_pickler(resources)
    with open(os.path.join(resources, "token_dictionary.pkl"), "rb") as f:
        tok1_real = pickle.load(f)
    with open(os.path.join(resources, "gene_median_dictionary.pkl"), "rb") as f:
        med_real = pickle.load(f)
    with open(os.path.join(resources, "gene_name_id_dict.pkl"), "rb") as f:
        names_real = pickle.load(f)

    out = args.out
    v1, v2 = os.path.join(out, "v1"), os.path.join(out, "v2")
    for d in (v1, v2):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    cells = build_cells(args.shared, tok1_real)
    assert cells.X.nnz == np.count_nonzero(cells.X.data), "explicit zeros would become tokens (scipy >= 1.11 path)"
    cells_path = os.path.join(out, "cells.h5ad")
    cells.write_h5ad(cells_path)
    cells = ad.read_h5ad(cells_path)

    (tok1, med1), (tok2, med2, mapping, names2), changes = build_dictionaries(cells, tok1_real, med_real, names_real)
    write_pickle(os.path.join(v1, "token_dictionary.pkl"), tok1)
    write_pickle(os.path.join(v1, "gene_median_dictionary.pkl"), med1)
    write_pickle(os.path.join(v2, "token_dictionary_gc104M.pkl"), tok2)
    write_pickle(os.path.join(v2, "gene_median_dictionary_gc104M.pkl"), med2)
    write_pickle(os.path.join(v2, "ensembl_mapping_dict_gc104M.pkl"), mapping)
    write_pickle(os.path.join(v2, "gene_name_id_dict_gc104M.pkl"), names2)

    pkg, mods = load_geneformer(REF)
    pkg.TOKEN_DICTIONARY_FILE_30M = os.path.join(v1, "token_dictionary.pkl")
    pkg.GENE_MEDIAN_FILE_30M = os.path.join(v1, "gene_median_dictionary.pkl")
    pkg.ENSEMBL_MAPPING_FILE_30M = None  # V1 shipped no mapping: the tokenizer's identity mapping

    meta = {
        "generator": "tools/make_geneformer_fixture.py",
        "preset": args.preset,
        "geneformer": GENEFORMER,
        "versions": versions(),
        "cells": list(cells.obs_names),
        "cell_type": [None if pd.isna(x) else str(x) for x in cells.obs["cell_type"]],
        "n_counts": [float(x) for x in cells.obs["n_counts"]],
    }
    with tempfile.TemporaryDirectory() as work:
        for version, folder in (("v1", v1), ("v2", v2)):
            tok = tok1 if version == "v1" else tok2
            med = med1 if version == "v1" else med2
            cfg = build_models(version, folder, p, len(tok), seed=11 if version == "v1" else 22)
            ds, settings = tokenize(mods, cells_path, version, folder, work)
            spec, n_genes, ties = rank_value_encode(
                cells, tok, med, None if version == "v1" else mapping,
                settings["model_input_size"], settings["special_token"])
            for b in range(len(ds)):
                assert list(ds[b]["input_ids"]) == list(spec[b]), f"{version} cell {b}: reference != specification"
            expected, max_len, K = run_reference(mods, version, folder, ds, cfg, work, p["hidden_positions"])
            expected["n_vocab_genes"] = n_genes.astype(np.int64)
            if version == "v1" and args.classic:
                meta_classic = classic_crosscheck(args.classic, cells, v1, expected, cfg["num_hidden_layers"])
                pkg, mods = load_geneformer(REF)
                pkg.TOKEN_DICTIONARY_FILE_30M = os.path.join(v1, "token_dictionary.pkl")
                pkg.GENE_MEDIAN_FILE_30M = os.path.join(v1, "gene_median_dictionary.pkl")
                pkg.ENSEMBL_MAPPING_FILE_30M = None
            if version == "v1":
                v1_cls = v1_cls_behaviour(mods, v1, os.path.join(work, "indexed_v1.dataset"), work)
                scan = pbmc3k_tie_scan(args.shared, tok1_real, med_real)
            write_safetensors(os.path.join(folder, "expected.safetensors"), expected)

            fx = dict(meta)
            fx["version"] = version
            fx["config"] = cfg
            fx["tokenizer"] = dict(settings, n_counts_dtype=str(cells.obs["n_counts"].dtype),
                                   formula="ids upper-cased and mapped (V2: ensembl_mapping_dict filtered to targets in the "
                                           "token dictionary; V1: identity), counts of ids mapped onto the same id summed; "
                                           "x = count / n_counts * 10000 / median[id] (float64 because n_counts is float64), "
                                           "zeros dropped, argsort(-x) (numpy default kind), truncate to model_input_size "
                                           "(V2: model_input_size - 2, then <cls> first and <eos> last)")
            fx["special_tokens"] = {k: int(v) for k, v in tok.items() if k.startswith("<")}
            fx["vocab_size"] = len(tok)
            fx["lengths"] = [int(x) for x in expected["lengths"]]
            fx["n_vocab_genes"] = [int(x) for x in n_genes]
            fx["padded_length"] = max_len
            fx["hidden_positions_stored"] = K
            fx["embedding_layers"] = {"emb_layer -1": f"hidden_{cfg['num_hidden_layers'] - 1}",
                                      "emb_layer 0": f"hidden_{cfg['num_hidden_layers']}"}
            fx["ties"] = {
                "ranks_checked": settings["model_input_size"] - (2 if settings["special_token"] else 0),
                "tied_neighbours_per_cell": [int(x) for x in ties],
                "cells_whose_order_depends_on_tie_breaking": int(sum(ties > 0)),
                "note": "equal float64 x_norm values among the kept ranks (including the first dropped one); "
                        "numpy's argsort is not stable, Rust breaks ties by column order",
            }
            files = {}
            for name in sorted(os.listdir(folder)):
                if name.endswith(".pkl"):
                    with open(os.path.join(folder, name), "rb") as f:
                        d = pickle.load(f)
                    files[name] = {"entries": len(d), "value_types": value_types(d)}
            fx["dictionaries"] = files
            if version == "v2":
                fx["mapping_changes"] = changes
                fx["medians_note"] = "V2 medians are the real V1 (Genecorpus-30M) medians of the same ids"
                fx["special_token_ids_note"] = ("Geneformer's code reads the ids by name (gene_token_dict['<cls>'] ...); "
                                                "the released gc104M pickle is stored in git LFS in every mirror found, so the "
                                                "order <pad> <mask> <cls> <eos> = 0..3 is assumed (pad 0 is fixed by config)")
            else:
                fx["v1_emb_mode_cls"] = v1_cls
                fx["pbmc3k_tie_scan"] = scan
                if args.classic:
                    fx["classic_crosscheck"] = dict(CLASSIC, result=meta_classic)
            with open(os.path.join(folder, "fixture.json"), "w") as f:
                json.dump(fx, f, indent=1)
                f.write("\n")
            print(version, "lengths", fx["lengths"], "vocab", len(tok), "padded", max_len, "ties", fx["ties"]["cells_whose_order_depends_on_tie_breaking"])
    total = 0
    for dirpath, _, names in os.walk(out):
        for n in names:
            total += os.path.getsize(os.path.join(dirpath, n))
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
