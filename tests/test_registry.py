import pytest

from ladd.core.errors import LaddError
from ladd.core.registry import Registry


def test_register_lookup_aliases_and_normalization():
    reg = Registry("thing")
    reg.register("resnet18-bn", aliases=("rn18bn",))(1)
    assert reg.get("ResNet-18-BN") == 1 and reg.get("RN18_BN") == 1
    assert reg.canonical("resnet_18_bn") == "resnet18-bn"
    assert reg.names() == ["resnet18-bn"]


def test_duplicate_name_raises():
    reg = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("A")(2)


def test_unknown_name_lists_valid_and_suggests():
    reg = Registry("model")
    reg.register("convnet")(1)
    reg.register("alexnet")(2)
    with pytest.raises(LaddError, match=r"unknown model 'convnt'\. Did you mean 'convnet'\?.*alexnet, convnet"):
        reg.get("convnt")
