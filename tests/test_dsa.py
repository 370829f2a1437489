import pytest
import torch

from ladd.augment.dsa import DSA, OPS, strategy_for
from ladd.core.errors import LaddError


@pytest.mark.parametrize("op", OPS)
def test_shared_params_transform_two_batches_identically(op):
    dsa = DSA(op)
    a, b = torch.randn(4, 3, 16, 16), torch.randn(2, 3, 16, 16)
    params = dsa.sample(1, (16, 16), torch.Generator().manual_seed(1), shared=True)
    out_ab = dsa.apply(torch.cat([a, b]), params)
    torch.testing.assert_close(out_ab[:4], dsa.apply(a, params))
    torch.testing.assert_close(out_ab[4:], dsa.apply(b, params))
    # the same image in two batches gets the same transform (siamese)
    torch.testing.assert_close(dsa.apply(a[:1], params), dsa.apply(a, params)[:1])


@pytest.mark.parametrize("op", OPS)
def test_gradient_reaches_the_images(op):
    x = torch.randn(3, 1, 12, 12, requires_grad=True)
    DSA(op)(x, torch.Generator().manual_seed(0)).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_same_generator_seed_replays_exactly():
    x = torch.randn(5, 3, 16, 16)
    dsa = DSA()
    outs = [dsa(x, torch.Generator().manual_seed(7)) for _ in range(2)]
    torch.testing.assert_close(outs[0], outs[1])


def test_crop_is_integer_shift_with_zero_fill():
    dsa = DSA("crop")
    x = torch.arange(64.0).view(1, 1, 8, 8)
    params = dsa.sample(1, (8, 8), torch.Generator().manual_seed(0))
    params.values["ty"][:] = 1
    params.values["tx"][:] = -1
    out = dsa.apply(x, params)[0, 0]
    assert torch.equal(out[:7, 1:], x[0, 0, 1:, :7]) and out[7].abs().sum() == 0 and out[:, 0].abs().sum() == 0


def test_cutout_zeroes_a_square_of_the_reference_size():
    dsa = DSA("cutout")
    x = torch.ones(1, 1, 16, 16)
    params = dsa.sample(1, (16, 16), torch.Generator().manual_seed(0))
    params.values["cy"][:] = 8
    params.values["cx"][:] = 8
    out = dsa.apply(x, params)
    assert (out == 0).sum() == 8 * 8  # cutout 0.5 of 16 px, centred, fully inside


def test_per_sample_params_differ_in_training_mode():
    p = DSA("scale").sample(6, (8, 8), torch.Generator().manual_seed(0))
    assert p.values["sx"].unique().numel() == 6


def test_bad_strategy_and_digit_default():
    with pytest.raises(LaddError, match="bad DSA strategy"):
        DSA("color_zoom")
    assert "flip" not in strategy_for("mnist5k") and "flip" in strategy_for("cifar10")
