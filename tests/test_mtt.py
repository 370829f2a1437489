"""MTT: the unrolled trajectory gradient against finite differences, the missing-buffer error,
a tiny end-to-end run whose learned lr moves, exact resume, and explicit buffer folders."""

import pytest
import torch
from conftest import make_dataset
from torch import nn

from ladd import pipeline
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.experts import ensure_buffer
from ladd.images import ImageRequest, make_images
from ladd.images.mtt import StudentGradient, trajectory_loss


def test_unrolled_gradient_matches_finite_differences():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 3)).double()
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    target = {k: v + 0.1 * torch.randn_like(v) for k, v in start.items()}
    syn = torch.randn(4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    lr = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    batches = [torch.tensor([0, 1, 2]), torch.tensor([1, 3]), torch.tensor([0, 2, 3])]

    def loss(x, r):
        return trajectory_loss(StudentGradient(net, compile=False), start, target, x, labels, r, batches, lambda t: t)

    g_syn, g_lr = torch.autograd.grad(loss(syn, lr), [syn, lr])
    eps = 1e-6
    for i in [(0, 0, 0, 0), (1, 1, 0, 1), (3, 0, 1, 1)]:
        plus, minus = syn.detach().clone(), syn.detach().clone()
        plus[i] += eps
        minus[i] -= eps
        numeric = (loss(plus, lr) - loss(minus, lr)) / (2 * eps)
        assert float(g_syn[i]) == pytest.approx(float(numeric.detach()), rel=1e-5, abs=1e-9)
    numeric_lr = (loss(syn, lr + eps) - loss(syn, lr - eps)) / (2 * eps)
    assert float(g_lr) == pytest.approx(float(numeric_lr.detach()), rel=1e-5)


@pytest.mark.parametrize("norm", ["instancenorm", "batchnorm"])
def test_compiled_student_gradient_keeps_the_trajectory_gradient(norm):
    """The compiled student gradient is a faster way to the same outer gradients (images and lr)
    through a convolutional student, instance- or batch-normed, and one graph serves every step."""
    from torch._dynamo.utils import counters

    from ladd.models.convnet import ConvNet

    torch.manual_seed(0)
    torch._dynamo.reset()  # compiled graphs are cached per function: count this test's own
    counters.clear()
    net = ConvNet(channels=1, num_classes=3, im_size=(8, 8), width=8, depth=2, norm=norm)
    start = {k: v.detach().clone() for k, v in net.named_parameters()}
    target = {k: v + 0.05 * torch.randn_like(v) for k, v in start.items()}
    syn, labels = torch.randn(6, 1, 8, 8, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2])
    lr = torch.tensor(0.1, requires_grad=True)
    batches = [torch.tensor([0, 1, 2, 3]), torch.tensor([2, 3, 4, 5]), torch.tensor([5, 0, 1, 4])]
    grads = [
        torch.autograd.grad(
            trajectory_loss(StudentGradient(net, compile=c), start, target, syn, labels, lr, batches, lambda t: t), [syn, lr]
        )
        for c in (False, True)
    ]
    for eager, compiled in zip(*grads):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-7)
    assert grads[0][0].abs().sum() > 0
    assert counters["frames"]["ok"] == 1  # compiled once, reused by the other two steps


TINY = {
    "iterations": 3,
    "syn_steps": 2,
    "expert_epochs": 1,
    "max_start_epoch": 1,
    "lr_img": 10.0,
    "num_experts": 2,
    "expert_train_epochs": 2,
}


def test_mtt_without_a_buffer_says_how_to_make_one(toy):
    with pytest.raises(LaddError, match="ladd experts --dataset toy --model convnet-w32 --num-experts 2 --epochs 2"):
        make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params=TINY))


def _train_experts(dataset, buffer=None, count=2, model="convnet-w32"):
    """What `ladd experts --model M --num-experts COUNT --epochs 2 [--out BUFFER]` does."""
    ensure_buffer(dataset, model, count, 2, Runtime(), buffer)


def test_mtt_end_to_end_lowers_the_trajectory_matching_loss(toy):
    """Images and student lr learned by MTT match the expert trajectories better than the real
    images and lr they started from: the normalized distance (its objective), from every start
    epoch of both experts, the same fixed batches, no augmentation."""
    from safetensors.torch import load_file

    from ladd.core.types import normalize
    from ladd.experts import build_for
    from ladd.images.mtt import MTTParams, buffer_dirs
    from ladd.images.random import random_images
    from ladd.train.loop import checkpoint_path

    _train_experts(toy)
    params = {**TINY, "iterations": 10}
    req = ImageRequest(toy, 2, model="convnet-w32", params=params, float_images=True)
    out = make_images("mtt", req)
    assert out.images.shape == (6, 1, 8, 8)
    assert make_images("mtt", ImageRequest(toy, 2, model="convnet-w32", params=params)).images.dtype == torch.uint8
    gradient = StudentGradient(build_for(toy, "convnet-w32", 0), compile=False)
    batches = [torch.arange(6)] * TINY["syn_steps"]

    def objective(images: torch.Tensor, lr: float) -> float:
        syn, lr = normalize(images, toy.mean, toy.std), torch.tensor(lr)
        losses = [
            trajectory_loss(
                gradient, load_file(checkpoint_path(d, t)), load_file(checkpoint_path(d, t + 1)), syn, out.labels, lr, batches, lambda x: x
            ).item()
            for d in buffer_dirs(req, MTTParams(**params))
            for t in range(2)
        ]
        return sum(losses) / len(losses)

    start = random_images(req)  # MTT's initialization
    assert torch.equal(start.labels, out.labels)
    assert objective(out.images, out.info["lr"]) < 0.95 * objective(start.images, 0.01)
    with pytest.raises(LaddError, match="exceeds"):
        make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params={**TINY, "max_start_epoch": 2}))


def test_mtt_resume_equals_uninterrupted(toy, tmp_path, interrupted):
    _train_experts(toy)
    req = dict(seed=1, model="convnet-w32", params={**TINY, "iterations": 4, "checkpoint_every": 1}, float_images=True)
    full = make_images("mtt", ImageRequest(toy, 2, checkpoint_dir=tmp_path / "a", **req))
    with interrupted(2):
        make_images("mtt", ImageRequest(toy, 2, checkpoint_dir=tmp_path / "b", **req))
    resumed = make_images("mtt", ImageRequest(toy, 2, checkpoint_dir=tmp_path / "b", resume=True, **req))
    assert torch.equal(full.images, resumed.images)
    assert resumed.info == full.info and full.info["lr"] != 0.01  # same learned lr, and it moved
    assert resumed.flops == full.flops > 0


def test_explicit_buffer_is_used_and_equals_the_cache(toy, tmp_path):
    _train_experts(toy, tmp_path / "buf")  # the cache stays empty: only the buffer can serve this run
    from_buffer = make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params=TINY, buffer=tmp_path / "buf"))
    _train_experts(toy)
    from_cache = make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params=TINY))
    assert torch.equal(from_buffer.images, from_cache.images) and from_buffer.info == from_cache.info


def test_buffer_from_another_dataset_is_refused(toy, tmp_path):
    _train_experts(make_dataset(classes=4), tmp_path / "buf")
    with pytest.raises(LaddError, match=r"trained on toy with 4 classes .* not toy's 3 classes"):
        make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params=TINY, buffer=tmp_path / "buf"))


def test_buffer_of_another_architecture_or_too_short_is_refused(toy, tmp_path):
    buf = tmp_path / "buf"
    _train_experts(toy, buf)

    def distill(model="convnet-w32", buffer=buf, **params):
        make_images("mtt", ImageRequest(toy, 1, model=model, params={**TINY, **params}, buffer=buffer))

    with pytest.raises(LaddError, match="is a convnet-w32, but MTT distills with convnet-w64: pass --model convnet-w32"):
        distill(model="convnet-w64")
    with pytest.raises(LaddError, match="holds 2 finished experts, the recipe needs num_experts 3: .* --num-experts 3 --epochs 2 --out"):
        distill(num_experts=3)
    with pytest.raises(LaddError, match="trained for 2 epochs, but the recipe matches up to epoch 3"):
        distill(max_start_epoch=2, expert_train_epochs=3)
    with pytest.raises(LaddError, match="is not a folder: .*ladd experts"):
        distill(buffer=tmp_path / "none")


def test_buffer_is_part_of_the_checkpoint_key_and_only_for_mtt(toy, tmp_path):
    def key(**kw):
        return pipeline.checkpoint_dir(toy, pipeline.ImagesConfig(method="mtt", **kw), {})

    assert len({key(), key(buffer=str(tmp_path / "a")), key(buffer=str(tmp_path / "b"))}) == 3
    src = pipeline.SourceConfig(dataset="toy")
    with pytest.raises(LaddError, match="--buffer is for --images mtt, not dm"):
        pipeline.distill(toy, src, pipeline.ImagesConfig(method="dm", buffer=str(tmp_path)))


def test_learned_soft_labels_start_at_the_expert_logits_move_and_compose_with_dense_labels(toy):
    """`learn_labels`: global soft labels learned with the images (TESLA/DATM) start as a buffer
    expert's softmax at max_start_epoch, receive the trajectory gradient, land in the artifact as its
    soft labels, and `ladd label --keep-soft-labels` keeps them beside new dense labels."""
    from ladd import pipeline
    from ladd.experts import build_for
    from ladd.images.mtt import MTTParams, _initial_logits, buffer_dirs
    from ladd.images.random import random_images
    from ladd.core.types import normalize
    from ladd.experts import ExpertConfig
    from ladd.labels import LabelConfig

    _train_experts(toy)
    # lr_lr set: the recipe pipeline.distill reads (mtt-paper's IPC 1 row, which IPC 2 runs) has its own
    params = {**TINY, "iterations": 3, "learn_labels": True, "lr_label": 10.0, "lr_lr": 1e-5, "compile": False}
    req = ImageRequest(toy, 2, model="convnet-w32", params=params, float_images=True)
    out = make_images("mtt", req)
    start = random_images(req)
    first = _initial_logits(
        build_for(toy, "convnet-w32", 0),
        buffer_dirs(req, MTTParams(**params))[0],
        TINY["max_start_epoch"],
        normalize(start.images, toy.mean, toy.std),
        "cpu",
    ).softmax(-1)
    assert out.soft.shape == (6, 3) and torch.allclose(out.soft.sum(-1), torch.ones(6))
    assert not torch.allclose(out.soft, first, atol=1e-4)  # learned: moved from the expert's labels
    frozen = make_images("mtt", ImageRequest(toy, 2, model="convnet-w32", params={**params, "lr_label": 1e-12}, float_images=True))
    torch.testing.assert_close(frozen.soft, first, atol=1e-5, rtol=0)  # a vanishing lr keeps the initialization
    assert make_images("mtt", ImageRequest(toy, 2, model="convnet-w32", params=TINY)).soft is None

    src = pipeline.SourceConfig(dataset="toy")
    art = pipeline.distill(toy, src, pipeline.ImagesConfig(method="mtt", ipc=2, model="convnet-w32", params=params))
    assert art.manifest["labels"]["method"] == pipeline.LEARNED_SOFT and art.dense_labels is None
    torch.testing.assert_close(art.soft_labels, out.soft.float())
    cfg = LabelConfig(n=2, labeler=ExpertConfig(model="convnet-w32", epochs=1))
    both = pipeline.label(art, toy, cfg.model_copy(update={"keep_soft": True}), Runtime())
    assert torch.equal(both.soft_labels, art.soft_labels) and both.dense_labels.shape == (6, 4, 3)
    assert both.manifest["labels"]["soft_from"] == pipeline.LEARNED_SOFT
    assert not torch.equal(pipeline.label(art, toy, cfg, Runtime()).soft_labels, art.soft_labels)  # without it, the labeler's
    with pytest.raises(LaddError, match="use it with --labels ladd, not soft"):
        LabelConfig(method="soft", keep_soft=True)
    with pytest.raises(LaddError, match="holds no global soft labels"):
        pipeline.label(both.with_labels(None, None, {"method": "ladd"}, {}), toy, cfg.model_copy(update={"keep_soft": True}), Runtime())
