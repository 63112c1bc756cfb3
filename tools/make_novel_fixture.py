#!/usr/bin/env python3
"""Fixture for scllm-eval's novel-type metrics, calibration and conformal sets: the reference
implementations' numbers on synthetic, seeded scores.

Run with the reference environment (numpy, scikit-learn; crepes for the conformal cross-check):

    .venv-ref/bin/python tools/make_novel_fixture.py

Writes tests/fixtures/novel/novel_reference.json. Every float32 input is stored as its IEEE bit
pattern (`*_bits`, uint32) so both sides read exactly the same values; expected outputs are
plain float64 numbers.

What each reference is:
* ranking / novel report: scikit-learn `roc_auc_score`, `average_precision_score`,
  `accuracy_score` and `f1_score(average="macro", labels=<known types present>)` with novel
  cells scored by 1 - confidence; the Unknown threshold is `np.quantile(held_out_conf, 0.05)`
  (numpy's default linear interpolation).
* ECE: the numpy computation below (15 equal-width bins ((b-1)/M, b/M], bin =
  clip(ceil(c*M) - 1, 0, M-1), ECE = sum_b n_b/n |acc_b - conf_b|; Guo et al. 2017).
* Conformal sets: a numpy implementation of class-conditional split-conformal with the APS score
  of Romano, Sesia & Candes 2020 (randomised: the probability of the classes ranked above the
  label plus U times the label's own, one U ~ Uniform(0, 1) per cell, given to scllm as input;
  classes sorted by probability descending with ties by index, `np.argsort(-p, kind="stable")`),
  q_k = the ceil((n_k+1)*coverage)-th smallest true-label score
  of class k's calibration cells (+inf beyond n_k). Cross-checked against crepes 0.9.1
  (`ConformalClassifier` with Mondrian bins = the label, non-smoothed p-values, same APS scores):
  crepes includes a label when (#{cal >= s} + 1)/(n_k + 1) >= 1 - coverage, which is the same
  rule whenever (n_k + 1)(1 - coverage) is not an integer, as here (n_k = 100). crepes does not
  compute APS scores itself (it takes any non-conformity scores), so the APS part is the numpy
  code; no PyPI package computes this exact combination (MAPIE's APS is marginal, not
  class-conditional).
* Similarity scores (the correlation baseline): the same class-conditional rule on 1 - s.
"""
import json
import os

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score,
                             roc_auc_score)

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "novel")
rng = np.random.default_rng(20240514)


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.uint32).tolist()


def bits64(a):
    return np.asarray(a, dtype=np.float64).view(np.uint64).tolist()


def f64(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# ---------------------------------------------------------------- ranking with many ties
n = 300
is_novel = rng.random(n) < 0.3
conf = np.where(is_novel, rng.beta(2, 3, n), rng.beta(5, 2, n))
conf_tied = np.round(conf, 1).astype(np.float32)  # heavy ties
score = 1.0 - f64(conf_tied)
ranking = {
    "confidence_bits": bits(conf_tied),
    "novel": is_novel.tolist(),
    "auroc": float(roc_auc_score(is_novel, score)),
    "average_precision": float(average_precision_score(is_novel, score)),
}

# ---------------------------------------------------------------- a novel-type report
known_types = ["alpha", "beta", "delta"]
novel_types = ["gamma"]
nq = 400
truth = rng.choice(known_types + novel_types, size=nq, p=[0.35, 0.3, 0.15, 0.2])
pred = []
conf_q = np.empty(nq, dtype=np.float32)
for i, t in enumerate(truth):
    if t in novel_types:
        pred.append(str(rng.choice(known_types)))
        conf_q[i] = rng.beta(2.5, 2.5)
    else:
        pred.append(t if rng.random() < 0.85 else str(rng.choice(known_types)))
        conf_q[i] = rng.beta(6, 1.5)
held = rng.beta(6, 1.5, 120).astype(np.float32)
q = 0.05
thr = float(np.quantile(f64(held), q))
known = np.array([t not in novel_types for t in truth])
kt = truth[known]
kp = np.array(pred)[known]
labels_known = sorted(set(kt))
rejected = f64(conf_q) < thr
kp_rej = np.where(rejected[known], "Unknown", kp)
score_q = 1.0 - f64(conf_q)
report = {
    "truth": truth.tolist(),
    "pred": pred,
    "confidence_bits": bits(conf_q),
    "novel_types": novel_types,
    "held_out_confidence_bits": bits(held),
    "quantile": q,
    "threshold": thr,
    "known_accuracy": float(accuracy_score(kt, kp)),
    "known_f1_macro": float(f1_score(kt, kp, average="macro", labels=labels_known,
                                     zero_division=0)),
    "auroc": float(roc_auc_score(~known, score_q)),
    "average_precision": float(average_precision_score(~known, score_q)),
    "novel_recall": float(rejected[~known].mean()),
    "false_unknown_rate": float(rejected[known].mean()),
    "known_accuracy_at_threshold": float(accuracy_score(kt, kp_rej)),
    "known_f1_macro_at_threshold": float(f1_score(kt, kp_rej, average="macro",
                                                  labels=labels_known, zero_division=0)),
}

# ---------------------------------------------------------------- expected calibration error
M = 15
ne = 500
conf_e = rng.beta(4, 1.5, ne).astype(np.float32)
conf_e[:5] = [0.0, 1.0, 1.0 / 15, 0.5, 2.0 / 15]  # edges: c = 0, c = 1, bin boundaries
correct = rng.random(ne) < np.clip(f64(conf_e) - 0.1, 0, 1)  # over-confident on purpose
c = f64(conf_e)
b = np.clip(np.ceil(c * M).astype(int) - 1, 0, M - 1)
ece, mce, counts = 0.0, 0.0, []
for k in range(M):
    m = b == k
    counts.append(int(m.sum()))
    if m.any():
        gap = abs(correct[m].mean() - c[m].mean())
        ece += m.sum() / ne * gap
        mce = max(mce, gap)
calib = {"confidence_bits": bits(conf_e), "correct": correct.tolist(), "n_bins": M,
         "ece": float(ece), "mce": float(mce), "counts": counts}


# ---------------------------------------------------------------- conformal sets
def aps(p, u):
    """Randomised APS scores of every class for each row of p (float32 -> float64 sums) and its
    draw u: the mass of the classes ranked above the label + u * the label's own."""
    p = f64(p)
    out = np.empty_like(p)
    for i in range(p.shape[0]):
        order = np.argsort(-p[i], kind="stable")
        ps = p[i, order]
        before = np.concatenate([[0.0], np.cumsum(ps)[:-1]])
        out[i, order] = before + u[i] * ps
    return out


def class_quantiles(scores, labels, k, coverage):
    qs = []
    for c in range(k):
        s = np.sort(scores[labels == c])
        n = len(s)
        r = int(np.ceil((n + 1) * coverage - 1e-9))
        qs.append(float(s[r - 1]) if r <= n else float("inf"))
    return qs


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


K = 4
coverage = 0.9
classes = ["a", "b", "c", "d"]


def draw(n_per_class, novel=0):
    """Cells whose labels are drawn from their own probabilities: a calibrated model, so
    calibration and test cells are exchangeable within a class."""
    ps, ys = [], []
    got = np.zeros(K, dtype=int)
    while got.min() < n_per_class:
        centre = rng.integers(K)
        z = rng.normal(0, 1, K)
        z[centre] += rng.uniform(1.5, 5.0)
        p = softmax(z[None, :])[0].astype(np.float32)
        y = rng.choice(K, p=f64(p) / f64(p).sum())
        if got[y] < n_per_class:
            got[y] += 1
            ps.append(p)
            ys.append(y)
    ps, ys = np.array(ps, dtype=np.float32), np.array(ys)
    if novel:
        # cells of a type the model lacks: flat-ish probabilities
        z = rng.normal(0, 0.4, (novel, K))
        pn = softmax(z).astype(np.float32)
        ps = np.vstack([ps, pn])
        ys = np.concatenate([ys, np.full(novel, -1)])
    return ps, ys


cal_p, cal_y = draw(100)
test_p, test_y = draw(300, novel=150)
cal_u = rng.random(len(cal_y))
test_u = rng.random(len(test_y))
cal_s = aps(cal_p, cal_u)
qs = class_quantiles(cal_s[np.arange(len(cal_y)), cal_y], cal_y, K, coverage)
test_s = aps(test_p, test_u)
member = test_s <= np.array(qs)[None, :]
sets = [np.flatnonzero(r).tolist() for r in member]
cov, size = [], []
for c in range(K):
    m = test_y == c
    cov.append(float(member[m, c].mean()))
    size.append(float(member[m].sum(axis=1).mean()))
    # nominal coverage within binomial error of the test cells and of the calibration draw
    se = np.sqrt(coverage * (1 - coverage) / m.sum() + coverage * (1 - coverage) / 102)
    assert cov[-1] >= coverage - 3 * se, (c, cov[-1])

# cross-check with crepes (Mondrian = class-conditional, non-smoothed p-values)
import crepes  # noqa: E402
from crepes import ConformalClassifier  # noqa: E402

cc = ConformalClassifier()
cc.fit(cal_s[np.arange(len(cal_y)), cal_y], bins=cal_y)
member_crepes = np.zeros_like(member)
for c in range(K):
    pv = cc.predict_p(test_s, bins=np.full(len(test_y), c), smoothing=False)[:, c]
    member_crepes[:, c] = pv >= 1 - coverage
assert (member_crepes == member).all(), "crepes and the numpy reference disagree"

conformal = {
    "classes": classes, "coverage": coverage,
    "cal_prob_bits": bits(cal_p.ravel()), "cal_labels": cal_y.tolist(),
    "cal_u_bits": bits64(cal_u),
    "test_prob_bits": bits(test_p.ravel()), "test_labels": test_y.tolist(),
    "test_u_bits": bits64(test_u),
    "quantiles": [q if np.isfinite(q) else None for q in qs],
    "sets": sets, "coverage_per_class": cov, "mean_set_size_per_class": size,
    "novel_share_empty": float((member[test_y == -1].sum(axis=1) == 0).mean()),
}

# similarity scores (correlation): 1 - s, a class with too few calibration cells (+inf)
ns = 60
sim = rng.uniform(-0.2, 0.9, (ns, 3)).astype(np.float32)
sim_y = rng.choice(3, size=ns, p=[0.5, 0.45, 0.05])
sim_y[:2] = 2  # at least two cells of the rare class, fewer than the 9 a finite q needs
nc_sim = 1.0 - f64(sim)
qs_sim = class_quantiles(nc_sim[np.arange(ns), sim_y], sim_y, 3, coverage)
sim_test = rng.uniform(-0.2, 0.9, (40, 3)).astype(np.float32)
mem_sim = (1.0 - f64(sim_test)) <= np.array(qs_sim)[None, :]
similarity = {
    "classes": ["x", "y", "z"], "coverage": coverage,
    "cal_score_bits": bits(sim.ravel()), "cal_labels": sim_y.tolist(),
    "test_score_bits": bits(sim_test.ravel()),
    "quantiles": [q if np.isfinite(q) else None for q in qs_sim],
    "sets": [np.flatnonzero(r).tolist() for r in mem_sim],
}

os.makedirs(OUT, exist_ok=True)
doc = {
    "generator": "tools/make_novel_fixture.py",
    "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__,
                 "crepes": crepes.__version__},
    "ranking": ranking, "novel_report": report, "calibration": calib,
    "conformal": conformal, "conformal_similarity": similarity,
}
path = os.path.join(OUT, "novel_reference.json")
with open(path, "w") as f:
    json.dump(doc, f, separators=(",", ":"))
print(f"wrote {path} ({os.path.getsize(path)} bytes); per-class coverage {cov}, sizes {size}")
