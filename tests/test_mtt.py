"""MTT: the unrolled trajectory gradient against finite differences, the missing-buffer error,
and a tiny end-to-end run whose learned lr reaches the artifact and the evaluation."""

import pytest
import torch
from torch import nn

from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.experts import ExpertConfig, cache_dir, train_expert
from ladd.images import ImageRequest, make_images
from ladd.images.mtt import trajectory_loss


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
        return trajectory_loss(net, start, target, x, labels, r, batches, lambda t: t)

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


TINY = {"iterations": 3, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 1, "lr_img": 10.0,
        "num_experts": 2, "expert_train_epochs": 2}


def test_mtt_without_a_buffer_says_how_to_make_one(toy):
    with pytest.raises(LaddError, match="ladd experts --dataset toy --model convnet-w32 --num-experts 2 --epochs 2"):
        make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params=TINY))


def test_mtt_end_to_end_learns_the_student_lr(toy):
    for seed in range(2):
        cfg = ExpertConfig(model="convnet-w32", epochs=2, seed=seed)
        train_expert(toy, cfg, cache_dir(toy, cfg), Runtime())
    out = make_images("mtt", ImageRequest(toy, 2, model="convnet-w32", params=TINY))
    assert out.images.shape == (6, 1, 8, 8) and out.images.dtype == torch.uint8
    assert out.info["lr"] != 0.01  # the student lr moved
    with pytest.raises(LaddError, match="exceeds"):
        make_images("mtt", ImageRequest(toy, 1, model="convnet-w32", params={**TINY, "max_start_epoch": 2}))
