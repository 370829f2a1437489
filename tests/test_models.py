"""Model registry: every registered model builds, trains and embeds at every supported size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ladd.core.errors import LaddError
from ladd.models import MODELS, build_model

NAMES = MODELS.names()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-2 models gain nothing from intra-op threads, and spinning threads make this file ~15× slower
    whenever another torch process shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32, 64])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_embed(name, size, channels):
    torch.manual_seed(0)
    model = build_model(name, channels=channels, num_classes=3, im_size=(size, size))
    x = torch.randn(2, channels, size, size)
    out = model(x)
    assert out.shape == (2, 3)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert isinstance(model.classifier, nn.Linear)
    model.eval()  # dropout/batch statistics off, so both paths see the same function
    with torch.no_grad():
        features = model.embed(x)
        assert features.shape == (2, model.classifier.in_features)
        torch.testing.assert_close(model.classifier(features), model(x))


@pytest.mark.parametrize(
    "name, channels, classes, size, expected",
    [
        ("convnet", 1, 10, 28, 317_706),  # MNIST: 28 px padded to 32 in the first conv
        ("convnet", 3, 10, 32, 320_010),
        ("convnet-w64", 1, 10, 28, 85_130),
        ("ConvNetD4", 3, 200, 64, 857_160),
        ("ConvNetD5", 3, 10, 128, 615_690),
        ("convnet", 3, 10, 128, 615_690),  # depth 5 picked from the resolution
        ("resnet18", 3, 10, 32, 11_173_962),
        ("vgg11-bn", 3, 10, 32, 9_231_114),
    ],
)
def test_reference_parameter_counts(name, channels, classes, size, expected):
    assert n_params(build_model(name, channels=channels, num_classes=classes, im_size=(size, size))) == expected


def test_convnet_reproduces_the_mnist_padding():
    first = build_model("convnet", channels=1, num_classes=10, im_size=(28, 28)).features[0]
    assert first.padding == (3, 3)


@pytest.mark.parametrize("name", ["convnet", "alexnet", "vgg11", "vit"])
def test_odd_and_non_square_sizes(name):
    model = build_model(name, channels=3, num_classes=4, im_size=(29, 40))
    assert isinstance(model.pad, nn.ZeroPad2d)  # 29 px needs an odd pad: the extra pixel goes bottom/right
    assert model(torch.randn(2, 3, 29, 40)).shape == (2, 4)


def test_convnet_depth_follows_resolution():
    def depth(size):
        model = build_model("convnet", channels=3, num_classes=2, im_size=(size, size))
        return sum(isinstance(m, nn.Conv2d) for m in model.modules())

    assert {s: depth(s) for s in (8, 16, 28, 32, 64, 128)} == {8: 1, 16: 2, 28: 3, 32: 3, 64: 4, 128: 5}
    model = build_model("convnet", channels=3, num_classes=2, im_size=(128, 128))
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 2)


def test_vgg_skips_pools_that_do_not_fit():
    def pools(size):
        model = build_model("vgg11", channels=3, num_classes=2, im_size=(size, size))
        return sum(isinstance(m, nn.MaxPool2d) for m in model.modules())

    assert (pools(8), pools(28), pools(32)) == (3, 5, 5)


def test_vit_size_rules():
    small = build_model("vit", channels=3, num_classes=2, im_size=(32, 32))
    large = build_model("vit", channels=3, num_classes=2, im_size=(128, 128))
    assert (small.patch.kernel_size, len(small.encoder.layers)) == ((4, 4), 6)
    assert (large.patch.kernel_size, len(large.encoder.layers)) == ((16, 16), 10)
    w = [layer.linear1.weight for layer in small.encoder.layers]
    assert not torch.equal(w[0], w[1])  # layers are drawn independently, not deep copies


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights(name):
    def build():
        torch.manual_seed(123)
        return build_model(name, channels=3, num_classes=5, im_size=(32, 32)).state_dict()

    a, b = build(), build()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "alias, canonical",
    [("ConvNet", "convnet"), ("ConvNet-3", "convnet-d3"), ("ConvNetD3", "convnet-d3"), ("convnet_w64", "convnet-w64"),
     ("ResNet-18-BN", "resnet18-bn"), ("ResNet-18", "resnet18"), ("VGG-11", "vgg11"), ("VGG11_BN", "vgg11-bn"),
     ("ViT-Small", "vit"), ("AlexNet-BN", "alexnet-bn")],
)  # fmt: skip
def test_aliases(alias, canonical):
    assert MODELS.canonical(alias) == canonical


def test_unknown_name_lists_valid_names():
    with pytest.raises(LaddError, match="unknown model 'resnet50'") as err:
        build_model("resnet50", channels=3, num_classes=10, im_size=(32, 32))
    assert all(name in str(err.value) for name in NAMES)


@pytest.mark.parametrize(
    "kwargs", [dict(im_size=(4, 32)), dict(im_size=(32, 1024)), dict(im_size=(32,)), dict(channels=0), dict(num_classes=0)]
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(LaddError):
        build_model("convnet", **{**dict(channels=3, num_classes=10, im_size=(32, 32)), **kwargs})
