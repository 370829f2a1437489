import io
import zipfile

import pytest
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


def test_a_vit_forward_without_gradients_counts_its_attention():
    """Without gradients nn.MultiheadAttention runs a fused fast path and SDPA a CPU flash kernel, both
    opaque to torch's counter (a ViT labeler's label generation counted ≈ 0.3% of its FLOPs): the
    count equals the one through SDPA's math path, whose matmuls torch counts directly."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from ladd.models import build_model

    vit = build_model("vit", channels=1, num_classes=3, im_size=(16, 16)).eval().requires_grad_(False)
    x = torch.zeros(2, 1, 16, 16)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as direct, torch.no_grad():
            vit(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    want = direct.get_total_flops()
    assert flops.per_sample(vit, (1, 16, 16), backward=False) == want // 2
    with torch.no_grad():
        assert flops.count(vit, x)[1] == want
    assert torch.backends.mha.get_fastpath_enabled()  # restored after counting


def test_each_method_is_charged_the_label_forwards_it_trains_on():
    """LADD's labeler runs N² + 1 forwards per image: one makes the global soft label, N² the dense
    ones. A global-soft student pays the labeler and one forward, LADD's the labeler and N², one on
    both the labeler and all; hard labels nothing."""
    from ladd import api, pipeline
    from ladd.core.runtime import Runtime
    from ladd.experts import ExpertConfig

    src = pipeline.SourceConfig(dataset="digits")
    data = pipeline.load_source(src)
    art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=1))
    n = 2
    cfg = pipeline.LabelConfig(n=n, r=0.75, labeler=ExpertConfig(model="convnet-w32", epochs=1))
    labelled = pipeline.label(art, data, cfg, Runtime())
    made = labelled.manifest["flops"]
    assert made["dense_generation"] * (n * n + 1) == made["label_generation"] * n * n > 0
    methods = ("baseline", "global-soft", "ladd", "global-soft+local-dense")
    rows = api.evaluate(labelled, data, api.eval_config(methods=methods, seeds=1, epochs=1))
    charged = {r["method"]: r["flops_labels"] for r in rows}
    train, total, dense = made["labeler_train"], made["label_generation"], made["dense_generation"]
    assert charged == {
        "baseline": 0,
        "global-soft": train + total - dense,
        "ladd": train + dense,
        "global-soft+local-dense": train + total,
    }


def test_label_flops_not_split_by_kind_are_charged_whole_and_a_split_larger_than_its_total_is_refused():
    from ladd.artifact.manifest import Flops
    from ladd.eval.protocol import label_cost

    old = {"labeler_train": 3, "label_generation": 10}
    assert label_cost(old, ["images", "soft_labels"]) == label_cost(old, ["images", "dense_labels"]) == 13
    assert label_cost(old, ["images", "labels"]) == 0
    kept = {**old, "dense_generation": 10}  # --keep-soft-labels: the soft labels are not the labeler's
    assert label_cost(kept, ["soft_labels"]) == 0 and label_cost(kept, ["dense_labels"]) == 13
    with pytest.raises(ValueError, match="dense_generation must not exceed"):
        Flops(labeler_train=0, label_generation=1, dense_generation=2)


def test_zip_bytes_counts_the_archive_writestr_makes_without_copying_the_tensor(monkeypatch):
    """Compressed a chunk at a time into a sink that keeps only the size, in parts or whole, and
    for dtypes numpy lacks (bf16): the bytes zipfile's writestr gives for the whole tensor."""
    import ladd.cost.storage as storage

    def whole(data: bytes, name: str) -> int:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        return len(buf.getvalue())

    monkeypatch.setattr(storage, "CHUNK", 1000)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 4, (30, 3, 17, 11), dtype=torch.uint8, generator=g)  # 16,830 bytes: 17 chunks
    assert storage.zip_bytes(t, "images") == whole(t.numpy().tobytes(), "images")
    assert storage.zip_bytes(list(t.split(7)), "images") == whole(t.numpy().tobytes(), "images")
    assert storage.zip_bytes(iter(t.split(7)), "images", nbytes=t.numel()) == whole(t.numpy().tobytes(), "images")
    soft = torch.randn(40, 10, generator=g).softmax(-1)
    assert storage.zip_bytes(soft.bfloat16(), "soft") == whole(soft.bfloat16().view(torch.int16).numpy().tobytes(), "soft")
