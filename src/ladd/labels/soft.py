"""Soft labels as knowledge ("A Label is Worth a Thousand Images", Qin, Deng & Alvarez-Melis):
pure functions on logits and probabilities, and the teacher that applies them.

Temperature is a true temperature: softmax(logits / T), T > 1 flattens. The reference code's
`--temp` *multiplies* the logits (softlabel/nodistill.py), so its temp t equals ladd's T = 1/t.
Top-k keeps the k largest probabilities and zeroes the rest *without* renormalizing, as the
reference's data_knowledge_scaling experiment does: rows then sum to at most 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ladd.core.errors import ConfigError


def soften(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    if temperature <= 0:
        raise ConfigError(f"temperature {temperature} must be > 0 (softmax(logits / T))")
    return (logits / temperature).softmax(-1)


def keep_top_k(probs: torch.Tensor, k: int | None) -> torch.Tensor:
    """Zero all but the k largest entries of each row (ties broken by position); no renormalization."""
    classes = probs.shape[-1]
    if k is None or k == classes:
        return probs
    if not 1 <= k <= classes:
        raise ConfigError(f"top-k {k} must be between 1 and the number of classes ({classes})")
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, probs.topk(k, dim=-1).indices, True)
    return probs * keep


def swap_kth(probs: torch.Tensor, i: int) -> torch.Tensor:
    """Swap each row's i-th largest probability (i = 1 is the top) with its smallest (the label
    swap test, Fig. 4): a permutation of each row, so knowledge is moved, not removed."""
    classes = probs.shape[-1]
    if not 1 <= i <= classes:
        raise ConfigError(f"swap rank {i} must be between 1 and the number of classes ({classes})")
    order = probs.argsort(dim=-1, descending=True)
    kth, smallest = order[..., i - 1 : i], order[..., -1:]
    out = probs.clone()
    out.scatter_(-1, kth, probs.gather(-1, smallest))
    out.scatter_(-1, smallest, probs.gather(-1, kth))
    return out


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def js_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon distance (square root of the divergence, natural log) between rows."""
    m = (p + q) / 2

    def kl(a):
        return (torch.special.xlogy(a, a) - torch.special.xlogy(a, m)).sum(-1)

    return ((kl(p) + kl(q)) / 2).clamp_min(0).sqrt()


class Teacher(nn.Module):
    """One expert or an ensemble: logits averaged over members (then one softmax), at a
    temperature, optionally cut to top-k. Used for global soft labels and LADD's dense labels
    alike. A module, so accuracy, FLOP counting and `.to(device)` treat it like any model."""

    def __init__(self, members: list[nn.Module], temperature: float = 1.0, top_k: int | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.temperature = temperature
        self.top_k = top_k

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 logits, also when the members run under autocast (`Runtime.autocast`)."""
        return torch.stack([m(x).float() for m in self.members]).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return keep_top_k(soften(self.logits(x), self.temperature), self.top_k)
