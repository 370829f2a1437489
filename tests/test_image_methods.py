"""Image methods: every registered method runs on a tiny fixture; learned ones improve their own
objective and resume exactly; recipes load as data."""

import itertools

import pytest
import torch

from ladd.core.errors import LaddError
from ladd.core.runtime import seeded
from ladd.core.types import normalize
from ladd.images import IMAGE_METHODS, ImageRequest, make_images
from ladd.images.dm import dm_objective
from ladd.images.herding import herd
from ladd.images.recipes import load_recipe, shipped
from ladd.models import build_model

TINY = {"dm": {"iterations": 3, "batch_real": 4}, "herding": {"expert_epochs": 1}}


@pytest.mark.parametrize("method", [m for m in IMAGE_METHODS.names() if m != "import"])
def test_every_method_gives_ipc_images_per_class(toy, method):
    out = make_images(method, ImageRequest(toy, 2, seed=0, model="convnet-w32", params=TINY.get(method, {})))
    assert out.images.dtype == torch.uint8 and out.images.shape == (6, 1, 8, 8)
    assert torch.bincount(out.labels).tolist() == [2, 2, 2]


def test_herding_matches_brute_force_greedy():
    feats = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    chosen = herd(feats, 4)
    mu, picked = feats.mean(0), []
    for _ in range(4):
        best = min((i for i in range(12) if i not in picked),
                   key=lambda i: float(((mu - feats[picked + [i]].mean(0)) ** 2).sum()))
        picked.append(best)
    assert chosen == picked and len(set(chosen)) == 4


def _dm_loss_over_fixed_nets(toy, images, labels, nets):
    real = normalize(toy.train.images, toy.mean, toy.std)
    syn = normalize(images, toy.mean, toy.std)
    with torch.no_grad():
        return sum(float(dm_objective(n.embed(real), toy.train.labels, n.embed(syn), labels, 3)) for n in nets)


def test_dm_lowers_its_matching_objective(toy):
    params = {"iterations": 30, "batch_real": 6, "lr_img": 0.1}
    start = make_images("random", ImageRequest(toy, 1, seed=0))
    out = make_images("dm", ImageRequest(toy, 1, seed=0, model="convnet-w32", params=params))
    nets = []
    for s in range(5):
        with seeded(100 + s):
            nets.append(build_model("convnet-w32", channels=1, num_classes=3, im_size=(8, 8)))
    before = _dm_loss_over_fixed_nets(toy, start.images, start.labels, nets)
    after = _dm_loss_over_fixed_nets(toy, out.images, out.labels, nets)
    assert torch.equal(out.labels, start.labels) and after < 0.7 * before


def test_dm_resume_equals_uninterrupted(toy, tmp_path, monkeypatch):
    params = {"iterations": 6, "batch_real": 4, "checkpoint_every": 2}
    req = dict(seed=1, model="convnet-w32", params=params)
    full = make_images("dm", ImageRequest(toy, 1, checkpoint_dir=tmp_path / "a", **req))

    import ladd.images.optimize as opt_mod

    real_save = opt_mod.save_state
    counter = itertools.count(1)

    def crash_after_second_checkpoint(*args, **kw):
        real_save(*args, **kw)
        if next(counter) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(opt_mod, "save_state", crash_after_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        make_images("dm", ImageRequest(toy, 1, checkpoint_dir=tmp_path / "b", **req))
    monkeypatch.setattr(opt_mod, "save_state", real_save)
    resumed = make_images("dm", ImageRequest(toy, 1, checkpoint_dir=tmp_path / "b", resume=True, **req))
    assert torch.equal(full.images, resumed.images)
    with pytest.raises(LaddError, match="no checkpoint"):
        make_images("dm", ImageRequest(toy, 1, checkpoint_dir=tmp_path / "c", resume=True, **req))


def test_recipes_are_data_with_ipc_overrides(tmp_path):
    assert {"dm-paper", "dm-mnist5k", "herding-paper"} <= set(shipped())
    assert load_recipe("dm", "mnist5k", 10)["budget"] == "cpu"
    paper = load_recipe("dm", "cifar10", 10)
    assert paper["name"] == "dm-paper" and paper["params"]["iterations"] == 20000
    assert load_recipe("dm", "cifar10", 100)["params"]["lr_img"] == 10.0
    own = tmp_path / "mine.toml"
    own.write_text('method = "dm"\n[params]\niterations = 7\n[ipc.1]\niterations = 3\n')
    assert load_recipe("dm", "x", 1, str(own))["params"] == {"iterations": 3}
    with pytest.raises(LaddError, match="not 'herding'"):
        load_recipe("herding", "x", 1, str(own))
    with pytest.raises(LaddError, match="shipped recipes are"):
        load_recipe("dm", "x", 1, "dm-nope")


def test_unknown_recipe_parameter_is_refused(toy):
    with pytest.raises(Exception, match="iteratons"):
        make_images("dm", ImageRequest(toy, 1, params={"iteratons": 3}))
