"""FLOPs with torch.utils.flop_counter. Unit: FLOPs as torch counts them — 2 per multiply-add,
matmuls and convolutions only (elementwise ops, norms and activations are not counted)."""

from __future__ import annotations

import contextlib
import contextvars
import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

UNIT = "FLOPs (torch.utils.flop_counter: 2 per multiply-add; conv/matmul only)"
_counting = contextvars.ContextVar("ladd_counting_flops", default=False)

_aten = torch.ops.aten
# attention kernels torch's counter has no formula for: the CPU flash kernel that SDPA takes without
# gradients (a ViT labeler, observer or teacher), counted as the SDPA it computes
_ATTENTION = {
    _aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, out_shape=None, **__: sdpa_flop_count(q, k, v),
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda g, q, k, v, *_, out_shape=None, **__: sdpa_backward_flop_count(g, q, k, v)
    ),
}


@contextlib.contextmanager
def _counter():
    """A FlopCounterMode that sees every matmul of a transformer: nn.MultiheadAttention's inference
    fast path (one fused op per encoder layer, opaque to the counter) is off while it counts."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=_ATTENTION) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def count(fn, *args, **kwargs) -> tuple[object, int]:
    """`fn(*args, **kwargs)` and the FLOPs it ran (forward and any backward inside it)."""
    token = _counting.set(True)
    try:
        with _counter() as counter:
            out = fn(*args, **kwargs)
    finally:
        _counting.reset(token)
    return out, counter.get_total_flops()


def compiled(fn, **options):
    """`torch.compile(fn)` that runs `fn` eagerly inside `count`. The counter cannot see into a
    compiled graph, and dynamo gives up on a function for good when its first call comes under
    the counter's dispatch mode, so counting the first iteration would otherwise leave every later
    one uncompiled."""
    fast = torch.compile(fn, **options)

    def call(*args, **kwargs):
        return (fn if _counting.get() else fast)(*args, **kwargs)

    return call


def per_sample(model: nn.Module, shape: tuple[int, int, int], *, backward: bool) -> int:
    """FLOPs for one input of `shape` (C, H, W): forward only, or forward + backward.

    Measured on a copy with a batch of 2 (batch-norm needs > 1) and halved: costs are linear in
    the batch for every model here, so training costs are samples seen × this number.
    """
    model = copy.deepcopy(model).requires_grad_(backward)  # a frozen model (an observer) is still costed as trained
    x = torch.zeros(2, *shape, device=next(model.parameters()).device)
    model.train(backward)
    with _counter() as counter:
        if backward:
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops() // 2


def training(model: nn.Module, shape: tuple[int, int, int], samples: int) -> int:
    """FLOPs of training `model` on `samples` inputs (forward + backward each): what an expert, a
    labeler, a teacher or a student cost, from the samples its training log counted."""
    return per_sample(model, shape, backward=True) * samples
