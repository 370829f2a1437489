"""BPTT labels: the unrolled label gradient against finite differences and against an explicitly
truncated unroll, a tiny end-to-end run (valid, deterministic, resumable), and config errors."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.labels.bptt import BpttConfig, initial_logits, learn_labels, to_probabilities, unrolled_label_loss


def _toy_problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 3)).double()
    init = {k: v.detach().clone() for k, v in net.named_parameters()}
    syn = torch.randn(4, 2, 2, 2, dtype=torch.float64)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    target_x = torch.randn(6, 2, 2, 2, dtype=torch.float64)
    target_y = torch.tensor([0, 1, 2, 0, 1, 2])
    batches = [torch.tensor([0, 1, 2]), torch.tensor([1, 3]), torch.tensor([0, 2, 3]), torch.tensor([3, 0])]
    return net, init, syn, logits, target_x, target_y, batches


LR = 0.8


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a busy 2-core machine thread hand-offs cost ~50× the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_full_backprop_gradient_matches_finite_differences():
    net, init, syn, logits, tx, ty, batches = _toy_problem()

    def loss(z):
        return unrolled_label_loss(net, init, syn, z, tx, ty, LR, batches, len(batches))

    (grad,) = torch.autograd.grad(loss(logits), [logits])
    eps = 1e-6
    for i in [(0, 0), (1, 2), (2, 1), (3, 0), (3, 2)]:
        plus, minus = logits.detach().clone(), logits.detach().clone()
        plus[i] += eps
        minus[i] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert float(grad[i]) == pytest.approx(float(numeric.detach()), rel=1e-5, abs=1e-10)


def test_truncated_gradient_equals_full_backprop_from_a_detached_midpoint():
    net, init, syn, logits, tx, ty, batches = _toy_problem()
    m = 2
    truncated = unrolled_label_loss(net, init, syn, logits, tx, ty, LR, batches, m)
    (g_trunc,) = torch.autograd.grad(truncated, [logits])

    # the first T−M steps by hand, with the labels as constants
    probs = to_probabilities(logits).detach()
    params = {k: v.clone() for k, v in init.items()}
    for idx in batches[:-m]:
        ps = {k: v.requires_grad_(True) for k, v in params.items()}
        loss = F.cross_entropy(torch.func.functional_call(net, ps, (syn[idx],)), probs[idx])
        grads = torch.autograd.grad(loss, list(ps.values()))
        params = {k: (v - LR * g).detach() for (k, v), g in zip(ps.items(), grads)}
    from_mid = unrolled_label_loss(net, params, syn, logits, tx, ty, LR, batches[-m:], m)
    (g_mid,) = torch.autograd.grad(from_mid, [logits])

    assert truncated.item() == pytest.approx(from_mid.item(), rel=1e-12)
    torch.testing.assert_close(g_trunc, g_mid, rtol=1e-10, atol=1e-12)
    full = unrolled_label_loss(net, init, syn, logits, tx, ty, LR, batches, len(batches))
    assert full.item() == pytest.approx(truncated.item(), rel=1e-12)  # truncation changes gradients only
    (g_full,) = torch.autograd.grad(full, [logits])
    assert not torch.allclose(g_full, g_trunc)


TINY = dict(model="convnet-w32", iterations=4, unroll=3, backprop=2, batch_syn=4, batch_target=8, checkpoint_every=2)


def _run(toy, seed=1, **kw):
    images, hard = toy.train.images[::3], toy.train.labels[::3]
    return learn_labels(images, hard, toy.train, toy, BpttConfig(**TINY), Runtime(), seed=seed, **kw)


def test_learn_labels_gives_distributions_that_moved_and_is_deterministic(toy, monkeypatch):
    import ladd.labels.bptt as bptt

    seeds = []
    real_build = bptt.build_for

    def recording_build(ds, model, seed):
        seeds.append(seed)
        return real_build(ds, model, seed)

    monkeypatch.setattr(bptt, "build_for", recording_build)
    probs, info = _run(toy)
    assert len(set(seeds[1:])) == 4  # a fresh student init every iteration (seeds[0] is the skeleton)
    hard = toy.train.labels[::3]
    assert probs.shape == (6, 3) and probs.dtype == torch.float32
    assert (probs >= 0).all() and torch.allclose(probs.sum(1), torch.ones(6))
    start = to_probabilities(initial_logits(hard, 3, 0.9))
    assert torch.allclose(start.gather(1, hard.view(-1, 1)), torch.full((6, 1), 0.9))
    assert (probs - start).abs().max() > 1e-3
    assert info["iterations"] == 4 and info["final_loss"] == info["loss_curve"]["3"]
    again, _ = _run(toy)
    assert torch.equal(probs, again)
    other, _ = _run(toy, seed=2)
    assert not torch.equal(probs, other)


def test_learned_labels_lower_the_objective_they_are_learned_for(toy):
    """The real-data loss of fresh students after T steps on the labels (Algorithm 1's objective),
    averaged over 8 students and the same fixed batches, no augmentation: lower with the learned
    labels than with the labels they started from."""
    from ladd.core.types import normalize
    from ladd.experts import build_for

    cfg = BpttConfig(**{**TINY, "iterations": 20, "dsa": False})
    images, hard = toy.train.images[::3], toy.train.labels[::3]
    probs, _ = learn_labels(images, hard, toy.train, toy, cfg, Runtime(), seed=1)
    start = to_probabilities(initial_logits(hard, 3, cfg.init_confidence))
    syn, real = normalize(images, toy.mean, toy.std), normalize(toy.train.images, toy.mean, toy.std)
    net = build_for(toy, cfg.model, 0)

    def objective(p: torch.Tensor) -> float:
        losses = []
        for s in range(8):
            init = {n: w.detach() for n, w in build_for(toy, cfg.model, 100 + s).named_parameters()}
            batches = [torch.arange(len(syn))] * cfg.unroll
            losses.append(unrolled_label_loss(net, init, syn, p.log(), real, toy.train.labels, cfg.student_lr, batches, 1).item())
        return sum(losses) / len(losses)

    assert objective(probs) < objective(start) - 0.01


def test_resume_equals_uninterrupted(toy, tmp_path, monkeypatch):
    full, _ = _run(toy, checkpoint_dir=tmp_path / "a")

    import ladd.images.optimize as opt_mod

    real_save = opt_mod.save_state
    counter = itertools.count(1)

    def crash_after_first_checkpoint(*args, **kw):
        real_save(*args, **kw)
        if next(counter) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(opt_mod, "save_state", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _run(toy, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(opt_mod, "save_state", real_save)
    resumed, _ = _run(toy, checkpoint_dir=tmp_path / "b", resume=True)
    assert torch.equal(full, resumed)


@pytest.mark.parametrize("backprop", [0, -1, 4])
def test_backprop_outside_one_to_unroll_is_refused(backprop):
    with pytest.raises(LaddError, match=r"backprop must be between 1 and unroll \(3\), got"):
        BpttConfig(unroll=3, backprop=backprop)
    net, init, syn, logits, tx, ty, batches = _toy_problem()
    with pytest.raises(LaddError, match=r"between 1 and unroll \(4\)"):
        unrolled_label_loss(net, init, syn, logits, tx, ty, LR, batches, 5)


def test_labels_that_do_not_fit_the_images_are_refused(toy):
    cfg = BpttConfig(**TINY)
    with pytest.raises(LaddError, match=r"6 int64 class indices in 0\.\.2"):
        learn_labels(toy.train.images[:6], torch.full((6,), 3), toy.train, toy, cfg, Runtime())
    with pytest.raises(LaddError, match=r"images must be N×1×8×8 for toy"):
        learn_labels(toy.train.images[:6, :, :4], toy.train.labels[:6], toy.train, toy, cfg, Runtime())
