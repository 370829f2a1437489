import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ladd.augment.subsample import views
from ladd.core.errors import LaddError
from ladd.train.terms import Batch, GlobalTerm, LearnedWeights, LocalTerm, method_terms


def _batch(b=3, c=4, size=8, n=3, r=0.5, with_labels=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 1, size, size, generator=g)
    dense = torch.rand(b, n * n, c, generator=g).softmax(-1)
    soft = torch.rand(b, c, generator=g).softmax(-1)
    return Batch(
        x=x,
        hard=torch.randint(c, (b,), generator=g),
        soft=soft if with_labels else None,
        dense=dense if with_labels else None,
        geometry=(n, r),
        augment=lambda t, gen: t,
        gen=g,
    )


def _model(c=4, size=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(size * size, c))


def _eq5(model, batch, weight):
    """Eq. 5 written out: CE(h(x_i), y_i) + weight · Σ_j CE(h(S_j(x_i)), y^d_ij), mean over i."""
    n, r = batch.geometry
    total = 0.0
    for i in range(batch.x.shape[0]):
        xi = batch.x[i : i + 1]
        total = total + F.cross_entropy(model(xi), batch.hard[i : i + 1])
        v = views(xi, n, r)[0]
        for j in range(n * n):
            logp = model(v[j : j + 1]).log_softmax(-1)[0]
            total = total - weight * (batch.dense[i, j] * logp).sum()
    return total / batch.x.shape[0]


@pytest.mark.parametrize(
    "reduction,local_weight,weight", [("sum", 1.0, 1.0), ("mean", 1.0, 1 / 9), ("sum", 2.5, 2.5), ("mean", 0.5, 0.5 / 9)]
)
def test_ladd_loss_equals_direct_eq5(reduction, local_weight, weight):
    """Eq. 5, with `--local-weight λ` on the local term (the global term keeps weight 1)."""
    model, batch = _model(), _batch()
    terms = method_terms("ladd", local_reduction=reduction, local_weight=local_weight)
    assert list(terms) == ["global-hard", "local-dense"]
    loss = sum(term(model, batch)[0] for term in terms.values())
    torch.testing.assert_close(loss, _eq5(model, batch, weight))


def test_learned_weights_sum_each_term_scaled_by_exp_minus_its_log_variance_plus_it():
    """Uncertainty weighting: Σ_t exp(−s_t)·L_t + s_t; s = 0 is Eq. 5's plain sum."""
    weighting = LearnedWeights(("global-hard", "local-dense"))
    losses = [torch.tensor(0.7), torch.tensor(2.5)]
    torch.testing.assert_close(weighting(losses), torch.tensor(3.2))
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.3, -1.2]))
    direct = math.exp(-0.3) * 0.7 + 0.3 + math.exp(1.2) * 2.5 - 1.2
    torch.testing.assert_close(weighting(losses), torch.tensor(direct))
    assert weighting.weights() == pytest.approx({"global-hard": math.exp(-0.3), "local-dense": math.exp(1.2)})
    # at the optimum of s_t for fixed losses, the weight is 1 / L_t
    weighting(losses).backward()
    torch.testing.assert_close(weighting.log_vars.grad, torch.tensor([1 - math.exp(-0.3) * 0.7, 1 - math.exp(1.2) * 2.5]))


def test_sampled_crops_are_an_unbiased_estimate_of_the_full_sum():
    model, batch = _model(), _batch()
    full, forwarded = LocalTerm("dense", None, "sum")(model, batch)
    assert forwarded == 3 * 9
    term = LocalTerm("dense", 2, "sum")
    draws = torch.stack([term(model, batch)[0] for _ in range(3000)])
    assert term(model, batch)[1] == 3 * 2
    assert abs(draws.mean() - full) < 4 * draws.std() / 3000**0.5 + 1e-6
    assert draws.std() > 0  # it really samples


def test_local_hard_uses_the_image_label_for_every_crop():
    model, batch = _model(), _batch()
    loss, _ = LocalTerm("hard", None, "mean")(model, batch)
    v = views(batch.x, 3, 0.5).flatten(0, 1)
    direct = F.cross_entropy(model(v), batch.hard.repeat_interleave(9))
    torch.testing.assert_close(loss, direct)


def test_global_soft_is_soft_target_cross_entropy():
    model, batch = _model(), _batch()
    loss, n = GlobalTerm("soft")(model, batch)
    direct = -(batch.soft * model(batch.x).log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(loss, direct)
    assert n == 3


def test_methods_need_their_labels():
    with pytest.raises(LaddError, match="dense labels"):
        method_terms("ladd")["local-dense"](_model(), _batch(with_labels=False))
    with pytest.raises(LaddError, match="unknown method"):
        method_terms("ladx")
    assert list(method_terms("global-soft+local-hard")) == ["global-soft", "local-hard"]
    assert list(method_terms("global-hard")) == ["global-hard"]  # a single term is a method too
