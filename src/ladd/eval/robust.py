"""DD-Ranking's robustness scores, so ladd numbers can be read next to DD-Ranking's.

Definitions (NUS-HPC-AI-Lab/DD-Ranking README "Label-Robust Score" / "Augmentation-Robust Score",
ddranking/metrics/hard_label.py, soft_label.py, aug_robust.py), with accuracies as fractions:

    HLR = Acc(real, hard) − Acc(syn, hard)                 hard-label recovery (lower is better)
    IOR = Acc(syn, any) − Acc(random, any)                 improvement over a random real subset
                                                           at the same IPC, same labels/training
    LRS = norm(w·IOR − (1 − w)·HLR),         w = 0.5 by default
    ARS = norm(γ·(Acc(syn, aug) − Acc(random, aug)) + (1 − γ)·(Acc(syn, no aug) − Acc(random, no aug))),  γ = 0.5
    norm(α) = (e^α − e^−1) / (e − e^−1)                    maps α ∈ [−1, 1] onto [0, 1]

"any" is the artifact's own label method (ladd's dense labels, soft labels, or hard labels).
DD-Ranking scores every evaluation run and reports mean ± std over runs; so does `scores`, pairing
student seed i of every configuration.
"""

from __future__ import annotations

import math

import numpy as np


def normalize(alpha: float) -> float:
    return (math.exp(alpha) - math.exp(-1)) / (math.e - math.exp(-1))


def hlr(real_hard: float, syn_hard: float) -> float:
    return real_hard - syn_hard


def ior(syn_any: float, random_any: float) -> float:
    return syn_any - random_any


def lrs(hlr_: float, ior_: float, w: float = 0.5) -> float:
    return normalize(w * ior_ - (1 - w) * hlr_)


def ars(syn_aug: float, random_aug: float, syn_no_aug: float, random_no_aug: float, gamma: float = 0.5) -> float:
    return normalize(gamma * (syn_aug - random_aug) + (1 - gamma) * (syn_no_aug - random_no_aug))


def scores(accs: dict[str, list[float]], w: float = 0.5, gamma: float = 0.5) -> dict:
    """Per-run HLR, IOR, LRS, ARS from per-seed accuracies keyed real_hard, syn_hard, syn_any,
    random_any, syn_any_no_aug, random_any_no_aug (seed i paired across keys); mean ± std of each."""
    runs = min(len(v) for v in accs.values())
    per = {"hlr": [], "ior": [], "lrs": [], "ars": []}
    for i in range(runs):
        a = {k: v[i] for k, v in accs.items()}
        h, g = hlr(a["real_hard"], a["syn_hard"]), ior(a["syn_any"], a["random_any"])
        per["hlr"].append(h)
        per["ior"].append(g)
        per["lrs"].append(lrs(h, g, w))
        per["ars"].append(ars(a["syn_any"], a["random_any"], a["syn_any_no_aug"], a["random_any_no_aug"], gamma))
    out = {"w": w, "gamma": gamma, "runs": runs, "accs": accs}
    for k, v in per.items():
        out[k] = v
        out[f"{k}_mean"], out[f"{k}_std"] = float(np.mean(v)), float(np.std(v))
    return out
