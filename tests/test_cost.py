import io
import zipfile

import torch
from torch import nn

from ladd.cost import flops
from ladd.cost.storage import component_bytes, zip_bytes


def test_zip_bytes_equals_a_direct_zipfile_size():
    t = torch.arange(1000, dtype=torch.float32) % 7
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x", t.numpy().tobytes())
    assert zip_bytes(t, "x") == len(buf.getvalue())
    parts = component_bytes({"images": torch.zeros(10, 1, 4, 4, dtype=torch.uint8), "labels": t})
    assert parts["images"]["raw"] == 160 and parts["labels"]["raw"] == 4000
    assert parts["images"]["zip"] < parts["images"]["raw"]


def test_flops_of_two_linear_layers_match_hand_count():
    a, b, c = 12, 7, 5
    model = nn.Sequential(nn.Flatten(), nn.Linear(a, b, bias=False), nn.Linear(b, c, bias=False))
    fwd = flops.per_sample(model, (1, 3, 4), backward=False)
    assert fwd == 2 * (a * b + b * c)
    # backward: weight grads of both layers, input grad of the second (the input needs none)
    assert flops.per_sample(model, (1, 3, 4), backward=True) == fwd + 2 * (a * b + b * c) + 2 * b * c
    assert all(p.grad is None for p in model.parameters())  # measured on a copy


def test_a_compiled_function_is_counted_eagerly_and_still_compiles_afterwards():
    """Counting the first call must neither hide its FLOPs nor leave the function uncompiled for good."""
    from torch._dynamo.utils import counters

    w = torch.randn(6, 4)
    f = flops.compiled(lambda x: (x @ w).relu())
    x = torch.randn(3, 6)
    counters.clear()
    out, counted = flops.count(f, x)
    assert counted == 2 * 3 * 6 * 4 and not counters["frames"]  # eager under the counter
    torch.testing.assert_close(f(x), out)
    assert counters["frames"]["ok"] == 1  # then compiled
    assert flops.count(f, x)[1] == counted  # and counted eagerly again
