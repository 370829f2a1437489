"""Pretrained weights (`ladd.models.weights`) and teachers made from them (`ladd.experts.pretrained`):
torchvision/timm ResNet-18 state dicts load into `resnet18-imagenet` tensor for tensor, bad files are
one-line errors, head rows are picked, and every teacher role (squeeze/recover, relabel, labeler,
observer) takes a weights file."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ladd import cli, pipeline
from ladd.cli import sre2l, stages
from ladd.artifact import load_artifact, save_artifact
from ladd.core.errors import LaddError
from ladd.core.io import sha256
from ladd.core.runtime import Runtime
from ladd.core.types import normalize
from ladd.experts import load_expert
from ladd.experts.pretrained import PretrainedConfig, checkpoint_digest, load_pretrained, prepare, pretrained_config
from ladd.images.observer import ObserverParams, load_observer
from ladd.images.squeeze import STATS, load_teacher, squeeze, teacher_dir
from ladd.images.squeeze import SqueezeConfig
from ladd.labels import LabelConfig
from ladd.labels.relabel import RelabelConfig
from ladd.models import build_model
from ladd.models.weights import IMAGENET_MEAN, IMAGENET_STD, infer_model, load_weights, renormalize, torchvision_names
from conftest import make_dataset

# torchvision.models.resnet18().state_dict(): every name and shape, in order. timm's resnet18 has exactly these names
# (its act1, maxpool and global_pool hold no tensors); files saved before PyTorch 0.4.1 lack the 20 num_batches_tracked.
TORCHVISION_RESNET18 = [
    ("conv1.weight", (64, 3, 7, 7)),
    ("bn1.weight", (64,)),
    ("bn1.bias", (64,)),
    ("bn1.running_mean", (64,)),
    ("bn1.running_var", (64,)),
    ("bn1.num_batches_tracked", ()),
    ("layer1.0.conv1.weight", (64, 64, 3, 3)),
    ("layer1.0.bn1.weight", (64,)),
    ("layer1.0.bn1.bias", (64,)),
    ("layer1.0.bn1.running_mean", (64,)),
    ("layer1.0.bn1.running_var", (64,)),
    ("layer1.0.bn1.num_batches_tracked", ()),
    ("layer1.0.conv2.weight", (64, 64, 3, 3)),
    ("layer1.0.bn2.weight", (64,)),
    ("layer1.0.bn2.bias", (64,)),
    ("layer1.0.bn2.running_mean", (64,)),
    ("layer1.0.bn2.running_var", (64,)),
    ("layer1.0.bn2.num_batches_tracked", ()),
    ("layer1.1.conv1.weight", (64, 64, 3, 3)),
    ("layer1.1.bn1.weight", (64,)),
    ("layer1.1.bn1.bias", (64,)),
    ("layer1.1.bn1.running_mean", (64,)),
    ("layer1.1.bn1.running_var", (64,)),
    ("layer1.1.bn1.num_batches_tracked", ()),
    ("layer1.1.conv2.weight", (64, 64, 3, 3)),
    ("layer1.1.bn2.weight", (64,)),
    ("layer1.1.bn2.bias", (64,)),
    ("layer1.1.bn2.running_mean", (64,)),
    ("layer1.1.bn2.running_var", (64,)),
    ("layer1.1.bn2.num_batches_tracked", ()),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)),
    ("layer2.0.bn1.weight", (128,)),
    ("layer2.0.bn1.bias", (128,)),
    ("layer2.0.bn1.running_mean", (128,)),
    ("layer2.0.bn1.running_var", (128,)),
    ("layer2.0.bn1.num_batches_tracked", ()),
    ("layer2.0.conv2.weight", (128, 128, 3, 3)),
    ("layer2.0.bn2.weight", (128,)),
    ("layer2.0.bn2.bias", (128,)),
    ("layer2.0.bn2.running_mean", (128,)),
    ("layer2.0.bn2.running_var", (128,)),
    ("layer2.0.bn2.num_batches_tracked", ()),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    ("layer2.0.downsample.1.weight", (128,)),
    ("layer2.0.downsample.1.bias", (128,)),
    ("layer2.0.downsample.1.running_mean", (128,)),
    ("layer2.0.downsample.1.running_var", (128,)),
    ("layer2.0.downsample.1.num_batches_tracked", ()),
    ("layer2.1.conv1.weight", (128, 128, 3, 3)),
    ("layer2.1.bn1.weight", (128,)),
    ("layer2.1.bn1.bias", (128,)),
    ("layer2.1.bn1.running_mean", (128,)),
    ("layer2.1.bn1.running_var", (128,)),
    ("layer2.1.bn1.num_batches_tracked", ()),
    ("layer2.1.conv2.weight", (128, 128, 3, 3)),
    ("layer2.1.bn2.weight", (128,)),
    ("layer2.1.bn2.bias", (128,)),
    ("layer2.1.bn2.running_mean", (128,)),
    ("layer2.1.bn2.running_var", (128,)),
    ("layer2.1.bn2.num_batches_tracked", ()),
    ("layer3.0.conv1.weight", (256, 128, 3, 3)),
    ("layer3.0.bn1.weight", (256,)),
    ("layer3.0.bn1.bias", (256,)),
    ("layer3.0.bn1.running_mean", (256,)),
    ("layer3.0.bn1.running_var", (256,)),
    ("layer3.0.bn1.num_batches_tracked", ()),
    ("layer3.0.conv2.weight", (256, 256, 3, 3)),
    ("layer3.0.bn2.weight", (256,)),
    ("layer3.0.bn2.bias", (256,)),
    ("layer3.0.bn2.running_mean", (256,)),
    ("layer3.0.bn2.running_var", (256,)),
    ("layer3.0.bn2.num_batches_tracked", ()),
    ("layer3.0.downsample.0.weight", (256, 128, 1, 1)),
    ("layer3.0.downsample.1.weight", (256,)),
    ("layer3.0.downsample.1.bias", (256,)),
    ("layer3.0.downsample.1.running_mean", (256,)),
    ("layer3.0.downsample.1.running_var", (256,)),
    ("layer3.0.downsample.1.num_batches_tracked", ()),
    ("layer3.1.conv1.weight", (256, 256, 3, 3)),
    ("layer3.1.bn1.weight", (256,)),
    ("layer3.1.bn1.bias", (256,)),
    ("layer3.1.bn1.running_mean", (256,)),
    ("layer3.1.bn1.running_var", (256,)),
    ("layer3.1.bn1.num_batches_tracked", ()),
    ("layer3.1.conv2.weight", (256, 256, 3, 3)),
    ("layer3.1.bn2.weight", (256,)),
    ("layer3.1.bn2.bias", (256,)),
    ("layer3.1.bn2.running_mean", (256,)),
    ("layer3.1.bn2.running_var", (256,)),
    ("layer3.1.bn2.num_batches_tracked", ()),
    ("layer4.0.conv1.weight", (512, 256, 3, 3)),
    ("layer4.0.bn1.weight", (512,)),
    ("layer4.0.bn1.bias", (512,)),
    ("layer4.0.bn1.running_mean", (512,)),
    ("layer4.0.bn1.running_var", (512,)),
    ("layer4.0.bn1.num_batches_tracked", ()),
    ("layer4.0.conv2.weight", (512, 512, 3, 3)),
    ("layer4.0.bn2.weight", (512,)),
    ("layer4.0.bn2.bias", (512,)),
    ("layer4.0.bn2.running_mean", (512,)),
    ("layer4.0.bn2.running_var", (512,)),
    ("layer4.0.bn2.num_batches_tracked", ()),
    ("layer4.0.downsample.0.weight", (512, 256, 1, 1)),
    ("layer4.0.downsample.1.weight", (512,)),
    ("layer4.0.downsample.1.bias", (512,)),
    ("layer4.0.downsample.1.running_mean", (512,)),
    ("layer4.0.downsample.1.running_var", (512,)),
    ("layer4.0.downsample.1.num_batches_tracked", ()),
    ("layer4.1.conv1.weight", (512, 512, 3, 3)),
    ("layer4.1.bn1.weight", (512,)),
    ("layer4.1.bn1.bias", (512,)),
    ("layer4.1.bn1.running_mean", (512,)),
    ("layer4.1.bn1.running_var", (512,)),
    ("layer4.1.bn1.num_batches_tracked", ()),
    ("layer4.1.conv2.weight", (512, 512, 3, 3)),
    ("layer4.1.bn2.weight", (512,)),
    ("layer4.1.bn2.bias", (512,)),
    ("layer4.1.bn2.running_mean", (512,)),
    ("layer4.1.bn2.running_var", (512,)),
    ("layer4.1.bn2.num_batches_tracked", ()),
    ("fc.weight", (1000, 512)),
    ("fc.bias", (1000,)),
]


def random_state(seed: int = 0, drop_tracked: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of torchvision's resnet18 shapes, scaled so activations stay O(1) through 18 layers."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in TORCHVISION_RESNET18:
        leaf = name.rpartition(".")[2]
        if leaf == "num_batches_tracked":
            if not drop_tracked:
                state[name] = torch.tensor(7 + len(state))
        elif leaf == "running_var":
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 4:
            state[name] = torch.randn(shape, generator=g) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        elif name == "fc.weight":
            state[name] = torch.randn(shape, generator=g) * 0.05
        else:
            state[name] = torch.randn(shape, generator=g) * 0.1 + (1.0 if leaf == "weight" else 0.0)
    return state


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's resnet18 in eval mode, written out with torch.nn.functional on the state dict."""

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"], False, 0.0, 1e-5)

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    for layer in range(1, 5):
        for block in range(2):
            p, stride = f"layer{layer}.{block}", 2 if layer > 1 and block == 0 else 1
            out = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            skip = (
                bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
                if f"{p}.downsample.0.weight" in sd
                else x
            )
            x = F.relu(out + skip)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.fixture(scope="module")
def tv(tmp_path_factory):
    """(state, .pth path, .safetensors path) of one random torchvision-layout resnet18."""
    folder = tmp_path_factory.mktemp("weights")
    state = random_state()
    torch.save(state, folder / "resnet18.pth")
    save_file(state, str(folder / "resnet18.safetensors"))
    return state, folder / "resnet18.pth", folder / "resnet18.safetensors"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def imagenet_resnet(classes: int = 1000, channels: int = 3) -> torch.nn.Module:
    return build_model("resnet18-imagenet", channels=channels, num_classes=classes, im_size=(32, 32))


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(LaddError) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


def test_the_table_is_torchvisions_resnet18_and_ladd_has_the_same_architecture():
    assert len(TORCHVISION_RESNET18) == 122 and len({n for n, _ in TORCHVISION_RESNET18}) == 122
    assert sum(1 for n, _ in TORCHVISION_RESNET18 if not n.endswith("num_batches_tracked")) == 102
    params = sum(
        torch.Size(s).numel() for n, s in TORCHVISION_RESNET18 if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert params == 11_689_512  # torchvision's documented parameter count for resnet18
    model = imagenet_resnet()
    assert sum(p.numel() for p in model.parameters()) == params
    names = torchvision_names(model)
    want = model.state_dict()
    assert sorted(names.values()) == sorted(n for n, _ in TORCHVISION_RESNET18)  # a bijection onto the table
    assert all(tuple(want[k].shape) == dict(TORCHVISION_RESNET18)[v] for k, v in names.items())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_files_load_tensor_for_tensor_and_compute_torchvisions_function(tv, suffix):
    state, pth, st = tv
    path = pth if suffix == ".pth" else st
    model = imagenet_resnet()
    assert load_weights(model, path) == sha256(path)
    loaded = model.state_dict()
    for key, ext in torchvision_names(model).items():
        assert torch.equal(loaded[key], state[ext]), (key, ext)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference_forward(state, x), rtol=1e-4, atol=1e-4)
    assert infer_model(path) == "resnet18-imagenet"


def test_files_without_num_batches_tracked_load_as_torchvisions_own_do(tmp_path):
    state = random_state(drop_tracked=True)  # as in files saved before PyTorch 0.4.1
    save_file(state, str(tmp_path / "old.safetensors"))
    model = imagenet_resnet()
    load_weights(model, tmp_path / "old.safetensors")
    assert torch.equal(model.state_dict()["features.0.weight"], state["conv1.weight"])
    assert infer_model(tmp_path / "old.safetensors") == "resnet18-imagenet"


def test_bad_files_are_one_line_errors_naming_the_key(tv, tmp_path):
    state = tv[0]
    model = imagenet_resnet()
    wrong = {**state, "layer2.0.downsample.0.weight": torch.zeros(128, 64, 3, 3)}
    torch.save(wrong, tmp_path / "wrong.pth")
    msg = one_line_error(load_weights, model, tmp_path / "wrong.pth")
    assert "layer2.0.downsample.0.weight has shape (128, 64, 3, 3), ResNet18 needs (128, 64, 1, 1)" in msg
    missing = {k: v for k, v in state.items() if k != "layer3.1.bn2.running_var"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    assert "has no layer3.1.bn2.running_var (shape (256,))" in one_line_error(load_weights, model, tmp_path / "missing.safetensors")
    torch.save({**state, "layer5.0.conv1.weight": torch.zeros(2, 2)}, tmp_path / "extra.pt")
    assert "has layer5.0.conv1.weight (shape (2, 2)), which ResNet18 does not" in one_line_error(load_weights, model, tmp_path / "extra.pt")
    # the CIFAR-stem resnet18-bn cannot take ImageNet weights: conv1 is 3×3 there
    cifar = build_model("resnet18-bn", channels=3, num_classes=1000, im_size=(32, 32))
    assert "conv1.weight has shape (64, 3, 7, 7), ResNet18 needs (64, 3, 3, 3)" in one_line_error(load_weights, cifar, tv[1])
    assert "does not exist" in one_line_error(load_weights, model, tmp_path / "nope.pth")
    save_file({"head.w": torch.zeros(2)}, str(tmp_path / "alien.safetensors"))
    assert "none of its 1 names (the first: head.w) is a ResNet18 name in ladd or torchvision layout" in one_line_error(
        load_weights, model, tmp_path / "alien.safetensors"
    )
    (tmp_path / "w.ckpt").write_bytes(b"x")
    assert "is not .pth, .pt, .bin, .safetensors" in one_line_error(load_weights, model, tmp_path / "w.ckpt")


def test_pickles_with_other_objects_are_refused_by_weights_only(tmp_path):
    model = imagenet_resnet()
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "args": argparse.Namespace(lr=0.1)}, tmp_path / "obj.pth")
    msg = one_line_error(load_weights, model, tmp_path / "obj.pth")
    assert "holds objects other than tensors (argparse.Namespace), which are not loaded (torch.load weights_only refuses them)" in msg
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "epoch": 3}, tmp_path / "int.pth")  # allowed by weights_only, not a tensor
    assert "entry 'epoch' is a int, not a tensor" in one_line_error(load_weights, model, tmp_path / "int.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip or pickle")
    assert "is not a readable torch weights file" in one_line_error(load_weights, model, tmp_path / "junk.pth")


def test_wrapped_and_dataparallel_checkpoints_are_unwrapped(tv, tmp_path):
    torch.save({"state_dict": {f"module.{k}": v for k, v in tv[0].items()}, "epoch": 90}, tmp_path / "ckpt.pth")
    model = imagenet_resnet()
    load_weights(model, tmp_path / "ckpt.pth")
    assert torch.equal(model.classifier.bias, tv[0]["fc.bias"])


def test_head_rows_pick_the_subsets_classes(tv):
    state, _, pth = tv  # the safetensors copy: quicker to read five times
    rows = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)  # ImageNette's WNIDs in sorted ImageNet order
    model = imagenet_resnet(classes=10)
    load_weights(model, pth, rows)
    assert torch.equal(model.classifier.weight, state["fc.weight"][list(rows)])
    assert torch.equal(model.classifier.bias, state["fc.bias"][list(rows)])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference_forward(state, x)[:, list(rows)], rtol=1e-4, atol=1e-4)
    msg = one_line_error(load_weights, imagenet_resnet(classes=10), pth)
    assert "fc.weight has shape (1000, 512), ResNet18 needs (10, 512): its head has 1000 classes, the dataset 10" in msg
    assert "3 head rows were picked for 10 dataset classes" in one_line_error(load_weights, imagenet_resnet(classes=10), pth, (1, 2, 3))
    assert "head row 1000 is outside 0..999" in one_line_error(load_weights, imagenet_resnet(classes=2), pth, (0, 1000))
    assert "repeat a row" in one_line_error(load_weights, imagenet_resnet(classes=2), pth, (5, 5))


def test_renormalize_feeds_the_weights_imagenet_normalized_inputs(tv):
    model = imagenet_resnet()
    load_weights(model, tv[1])
    model.eval()
    mean, std = (0.3, 0.5, 0.6), (0.2, 0.3, 0.25)
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        want = model(normalize(pixels, IMAGENET_MEAN, IMAGENET_STD))
        renormalize(model, mean, std)
        torch.testing.assert_close(model(normalize(pixels, mean, std)), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.classifier(model.embed(normalize(pixels, mean, std))), want, rtol=1e-4, atol=1e-4)
    assert "input_scale" not in str(list(model.state_dict()))  # stays out of saved state


def test_a_pretrained_teacher_squeezes_and_loads_like_a_trained_one(tv):
    toy = make_dataset(n_per_class=4, classes=3, size=32, channels=3)
    cfg = PretrainedConfig(weights=str(tv[1]), model="resnet18-imagenet", classes=(3, 1, 4))
    directory = prepare(toy, cfg)
    assert directory.parent.name == "teachers" and prepare(toy, cfg) == directory
    assert teacher_dir(toy, directory, "convnet-bn", 1, Runtime()) == directory  # complete: used as it is
    model, prov = load_teacher(directory, toy, Runtime())
    assert prov["checkpoint_sha256"] == checkpoint_digest(sha256(tv[1]), (3, 1, 4)) != sha256(tv[1])
    assert prov["weights_sha256"] == sha256(tv[1]) and prov["layout"] == "torchvision" and prov["epoch"] == 0
    assert prov["input_normalization"]["mean"] == list(IMAGENET_MEAN) and 0 <= prov["test_acc"] <= 1
    x = normalize(toy.test.images[:2], toy.mean, toy.std)
    direct = reference_forward(tv[0], normalize(toy.test.images[:2], IMAGENET_MEAN, IMAGENET_STD))[:, [3, 1, 4]]
    with torch.no_grad():
        torch.testing.assert_close(model(x), direct, rtol=1e-4, atol=1e-4)
    squeeze(toy, directory, SqueezeConfig(), Runtime())
    info = json.loads((directory / "expert.json").read_text())
    assert (directory / STATS).exists() and info["kind"] == "ladd-pretrained" and "test_acc" in info
    assert load_expert(directory, 0, toy, Runtime())[1]["checkpoint_sha256"] == prov["checkpoint_sha256"]
    other = PretrainedConfig(weights=str(tv[1]), model="resnet18-imagenet", classes=(0, 1, 2))
    assert "describes another pretrained teacher" in one_line_error(prepare, toy, other, directory)
    assert "set up for toy" in one_line_error(load_pretrained, replace(toy, class_names=("a", "b", "c")), cfg, Runtime(), directory)


def _convnet_file(tmp_path, toy, name="convnet-w32"):
    """A ladd-layout weights file (a model's own state dict, as ladd saves it) for the toy set."""
    torch.manual_seed(3)
    model = build_model(name, channels=1, num_classes=3, im_size=(8, 8))
    save_file(model.state_dict(), str(tmp_path / f"{name}.safetensors"))
    return tmp_path / f"{name}.safetensors", model.eval()


def test_labeler_and_relabel_teacher_from_weights(toy, tmp_path):
    path, model = _convnet_file(tmp_path, toy)
    cfg = pretrained_config(path, "convnet-w32", None, option="--labeler-weights", model_option="--labeler-model")
    art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=2))
    labelled = pipeline.label(art, toy, LabelConfig(method="soft", labeler_weights=cfg), Runtime())
    with torch.no_grad():
        want = model(normalize(art.images, toy.mean, toy.std)).softmax(-1)
    torch.testing.assert_close(labelled.soft_labels, want, rtol=1e-5, atol=1e-6)
    lab = labelled.manifest["labels"]
    assert lab["labeler"]["checkpoint_sha256"] == sha256(path) and lab["labeler"]["weights"] == str(path.resolve())
    assert lab["config"]["labeler_weights"]["model"] == "convnet-w32" and labelled.manifest["flops"]["labeler_train"] == 0
    assert "labeler_weights" not in LabelConfig().model_dump() and "teacher_weights" not in RelabelConfig().model_dump()
    with pytest.raises(LaddError, match="no epochs and no ensemble"):
        pipeline.label(art, toy, LabelConfig(method="soft", labeler_weights=cfg, ensemble=2), Runtime())
    save_artifact(tmp_path / "art", art)
    rel = RelabelConfig(epochs=1, batch_size=6, dtype="float32", teacher_weights=cfg)
    done = pipeline.relabel(load_artifact(tmp_path / "art"), tmp_path / "art", toy, rel, Runtime())
    assert done.manifest["relabel"]["teacher"]["checkpoint_sha256"] == sha256(path)


def test_observer_from_weights(toy, tmp_path, monkeypatch):
    import ladd.images.observer as observer

    path, model = _convnet_file(tmp_path, toy, "convnet-bn")
    monkeypatch.setattr(observer, "observer_check", lambda *a: 1.0)  # random weights: the at-chance check is not the point
    net, prov = load_observer(toy, ObserverParams(observer_weights=str(path), observer_model="convnet-bn"), Runtime())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.state_dict().values()))
    assert prov["checkpoint_sha256"] == sha256(path) and prov["samples_seen"] == 0 and prov["model"] == "convnet-bn"
    with pytest.raises(LaddError, match="not both"):
        load_observer(toy, ObserverParams(observer_weights=str(path), observer_checkpoint=str(path)), Runtime())


def test_cli_squeeze_and_recover_from_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model("convnet-bn", channels=1, num_classes=10, im_size=(8, 8))
    save_file(model.state_dict(), str(tmp_path / "teacher.safetensors"))
    weights = tmp_path / "teacher.safetensors"
    sre2l.squeeze(dataset="digits", teacher_weights=str(weights), teacher_model="convnet-bn", teacher_dir=str(tmp_path / "t"), device="cpu")
    assert (tmp_path / "t" / STATS).exists()
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('method = "lpld"\n[params]\niterations = 1\njitter = 1\n')
    sre2l.recover(
        images="lpld", dataset="digits", ipc=1, recipe=str(recipe), teacher_dir=str(tmp_path / "t"), out=tmp_path / "art", device="cpu"
    )
    teacher = load_artifact(tmp_path / "art").manifest["images"]["learned"]["teacher"]
    assert teacher["checkpoint_sha256"] == sha256(weights) and teacher["epoch"] == 0
    stages.label(tmp_path / "art", labels="soft", labeler_weights=str(weights), labeler_model="convnet-bn", device="cpu")
    sre2l.relabel(tmp_path / "art", epochs=1, batch_size=10, teacher_weights=str(weights), teacher_model="convnet-bn", device="cpu")
    manifest = load_artifact(tmp_path / "art").manifest
    assert manifest["labels"]["labeler"]["checkpoint_sha256"] == manifest["relabel"]["teacher"]["checkpoint_sha256"] == sha256(weights)


def test_cli_refuses_imagenet_weights_for_grayscale_digits_in_one_line(tv, capsys, monkeypatch):
    """`ladd squeeze --dataset digits --teacher-weights resnet18.safetensors`, in this process as `python -m ladd` runs it."""
    monkeypatch.setattr(sys, "argv", ["ladd", "squeeze", "--dataset", "digits", "--teacher-weights", str(tv[2]), "--device", "cpu"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "conv1.weight has shape (64, 3, 7, 7), ResNet18 needs (64, 1, 7, 7)" in lines[0], lines
