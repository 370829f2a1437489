"""SRe²L / LPLD: class-wise BN statistics, the recover objective, per-unit resume, diversity
metrics, and the errors a user can hit (torchrun: tests/test_dist_images.py)."""

import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from pydantic import ValidationError
import torch.nn.functional as F
from torch import nn

from ladd.cli import sre2l
from ladd.augment.fkd import crop_boxes
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime, generator
from ladd.core.types import normalize
from ladd.eval.diversity import diversity, gaussian_mmd2, mean_pairwise_cosine
from ladd.images import ImageRequest, make_images
from ladd.images.recover import RecoverParams, bn_objective, jitter, plan_units, prepare, unit_seed
from ladd.images.squeeze import STATS, SqueezeConfig, class_statistics, squeeze, teacher_dir
from ladd.pipeline import ImagesConfig, SourceConfig, distill

TEACHER = {"teacher_model": "convnet-bn", "teacher_epochs": 1}
STILL = {"jitter": 0, "flip": False, "crop_scale": 1.0}  # no augmentation: the objective is a fixed function


def two_bn_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.BatchNorm2d(3))
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    return net.eval()


def test_class_statistics_equal_a_direct_per_class_computation(toy):
    net, cfg = two_bn_net(), SqueezeConfig(batch_size=4, momentum=0.3, seed=2)
    stats = class_statistics(net, toy, cfg, Runtime())
    # direct: the same batch order, each class's BN inputs, mean and biased variance, EMA from the first batch
    expect: dict[str, dict[int, torch.Tensor]] = {}
    with torch.no_grad():
        for idx in torch.randperm(len(toy.train), generator=generator(2)).split(4):
            x, y = normalize(toy.train.images[idx], toy.mean, toy.std), toy.train.labels[idx]
            a = net[0](x)
            b = net[3](net[2](net[1](a)))
            for layer, inp in (("1", a), ("4", b)):
                for c in y.unique().tolist():
                    v = inp[y == c].double()
                    for kind, value in (("mean", v.mean((0, 2, 3))), ("var", v.var((0, 2, 3), unbiased=False))):
                        table = expect.setdefault(f"{kind}.{layer}", {})
                        table[c] = value if c not in table else 0.7 * table[c] + 0.3 * value
    assert set(stats) == set(expect) | {"count"}
    for key, rows in expect.items():
        assert stats[key].shape == (3, 4 if key.endswith("1") else 3)
        for c, value in rows.items():
            torch.testing.assert_close(stats[key][c].double(), value, atol=1e-5, rtol=1e-5)
    assert stats["count"].tolist() == [6, 6, 6]


def test_bn_objective_is_zero_at_the_targets_and_weighs_the_first_layer():
    g = torch.Generator().manual_seed(0)
    stats = [(torch.randn(4, generator=g), torch.rand(4, generator=g)) for _ in range(3)]
    assert float(bn_objective(stats, stats, 10.0)) == 0.0
    moved = [(m + 1, v) for m, v in stats]  # every mean off by 1 in 4 channels: distance 2 per layer
    assert float(bn_objective(moved, stats, 10.0)) == pytest.approx(2 * 10 + 2 + 2)


def test_lpld_bn_term_vanishes_when_the_batch_statistics_are_the_class_statistics(toy):
    req = ImageRequest(toy, 2, params={**TEACHER, **STILL, "iterations": 1})
    rec, _ = prepare(req, "lpld")
    x = torch.randn(2, 1, 8, 8, generator=generator(3))
    labels = torch.tensor([1, 1])
    # make class 1's statistics exactly those of this batch
    rec.batch_stats.clear()
    with torch.no_grad():
        rec.teacher(x)
    for (name, _), (mu, var) in zip(rec.layers.items(), rec.batch_stats):
        rec.spec.class_stats[f"mean.{name}"][1] = mu
        rec.spec.class_stats[f"var.{name}"][1] = var
    ce = nn.functional.cross_entropy(rec.teacher(x), labels)
    assert float(rec.objective(x, labels) - ce) == pytest.approx(0.0, abs=1e-5)
    other = rec.objective(x, torch.tensor([0, 0])) - nn.functional.cross_entropy(rec.teacher(x), torch.tensor([0, 0]))
    assert float(other) > 0.01  # class 0's statistics differ


@pytest.mark.parametrize("method", ["sre2l", "lpld"])
def test_recover_lowers_its_objective(toy, method):
    req = ImageRequest(toy, 2, seed=0, params={**TEACHER, **STILL, "iterations": 15, "lr": 0.1})
    rec, _ = prepare(req, method)
    for unit, slots in enumerate(rec.units):
        labels = slots // 2
        x0 = torch.randn(len(slots), 1, 8, 8, generator=generator(unit_seed(0, unit, "init")))
        out = rec.run(unit)
        x, losses = out.images, out.losses
        with torch.no_grad():
            before, after = float(rec.objective(x0, labels)), float(rec.objective(x, labels))
        assert after < 0.8 * before, (unit, before, after)
        assert len(losses) == 15


def _clamped_box(u: list[float], h: int, w: int, scale: float) -> list[int]:
    """recover's crop as written before it shared fkd's sampler: one draw, each side cut to the image."""
    area = (scale + (1 - scale) * u[0]) * h * w
    ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[1])
    ch, cw = min(h, max(1, round(math.sqrt(area / ratio)))), min(w, max(1, round(math.sqrt(area * ratio))))
    return [int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1)), ch, cw]


@pytest.mark.parametrize(("h", "w"), [(32, 32), (28, 40), (224, 224)])
def test_recover_crops_are_the_ones_its_cached_images_were_made_with(h, w):
    for scale in (0.08, 0.5):
        u = torch.rand(3000, 5, generator=generator(h + w)).double()  # recover draws float32
        boxes = crop_boxes(u[:, :1], u[:, 1:2], u[:, 2:4], h, w, (scale, 1.0), fit="clamp")
        assert boxes.tolist() == [_clamped_box(row, h, w, scale) for row in u.tolist()]
    x, p = torch.randn(2, 3, h, w), RecoverParams(crop_scale=0.3, jitter=3)
    for seed in range(6):  # jitter's draws, in order: area, aspect, top, left, flip, then the roll
        g = generator(seed)
        u, roll = torch.rand(5, generator=g).tolist(), torch.randint(-3, 4, (2,), generator=g).tolist()
        top, left, ch, cw = _clamped_box(u, h, w, 0.3)
        want = F.interpolate(x[..., top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False)
        want = want.flip(-1) if u[4] < 0.5 else want
        assert torch.equal(jitter(x, p, generator(seed)), torch.roll(want, shifts=roll, dims=(2, 3)))


def test_units_cover_every_slot_once():
    for method, per_unit in (("lpld", [3] * 4), ("sre2l", [3, 1] * 3)):
        units = plan_units(method, 4, 3, classes_per_batch=3)
        assert [len(u) for u in units] == per_unit
        assert sorted(torch.cat(units).tolist()) == list(range(12))
    assert all(len(set((u // 3).tolist())) == 1 for u in plan_units("lpld", 4, 3, 3))  # one class per LPLD batch
    assert all(len(set((u // 3).tolist())) == len(u) for u in plan_units("sre2l", 4, 3, 3))  # distinct classes per SRe²L batch


@pytest.mark.parametrize("method", ["sre2l", "lpld"])
def test_resume_equals_uninterrupted(toy, tmp_path, interrupted, method, capsys):
    params = {**TEACHER, "iterations": 4, "checkpoint_every": 2, "jitter": 1, "crop_scale": 0.5}
    full = make_images(method, ImageRequest(toy, 2, seed=1, params=params))
    capsys.readouterr()
    with interrupted(3):  # in the second unit, halfway
        make_images(method, ImageRequest(toy, 2, seed=1, params=params, checkpoint_dir=tmp_path))
    assert capsys.readouterr().err.count(": checkpoint: iteration ") == 2  # logged once written (the 3rd: killed first)
    resumed = make_images(method, ImageRequest(toy, 2, seed=1, params=params, checkpoint_dir=tmp_path, resume=True))
    assert torch.equal(full.images, resumed.images) and torch.equal(full.labels, resumed.labels)
    log = capsys.readouterr().err  # every unit says where it starts: its checkpoint, or afresh
    assert "resuming from" in log and "(iteration 4/4)" in log and "(iteration 2/4)" in log
    assert log.count("resuming from") + log.count("no checkpoint in") == len(plan_units(method, 3, 2, params.get("classes_per_batch", 100)))


def test_cosine_and_mmd_equal_direct_computation():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(5, 3, generator=g, dtype=torch.float64)
    direct = sum(float(torch.dot(f[i], f[j]) / (f[i].norm() * f[j].norm())) for i in range(5) for j in range(5) if i != j) / 20
    assert mean_pairwise_cosine(f) == pytest.approx(direct)
    assert mean_pairwise_cosine(torch.eye(3, dtype=torch.float64)) == pytest.approx(0.0)
    assert mean_pairwise_cosine(torch.ones(4, 2, dtype=torch.float64)) == pytest.approx(1.0)
    x, y, s = f, torch.randn(4, 3, generator=g, dtype=torch.float64) + 1, 1.7

    def k(a, b):
        return float(torch.exp(-((a - b) ** 2).sum() / (2 * s**2)))

    def mean_k(A, B):
        return sum(k(a, b) for a in A for b in B) / (len(A) * len(B))

    assert gaussian_mmd2(x, y, s) == pytest.approx(mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y))
    assert gaussian_mmd2(x, x, s) == pytest.approx(0.0, abs=1e-12)


class Flatten(nn.Module):
    """A 'teacher' whose features are the normalized pixels, so the metrics can be computed by hand."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def embed(self, x):
        return x.flatten(1)


def test_diversity_of_an_artifact_matches_its_features(toy):
    images, labels = toy.train.images[[0, 1, 2, 6, 7, 12, 13, 14]], toy.train.labels[[0, 1, 2, 6, 7, 12, 13, 14]]
    out = diversity(Flatten(), images, labels, toy, real_per_class=6)
    feats = normalize(images, toy.mean, toy.std).flatten(1).double()
    per_class = [mean_pairwise_cosine(feats[labels == c]) for c in range(3)]
    assert out["within_class_cosine"] == pytest.approx(sum(per_class) / 3)
    assert [r["cosine"] for r in out["per_class"]] == pytest.approx(per_class)
    # the real sample is the whole class (6 of 6): a synthetic set equal to the real one has MMD² 0
    same = diversity(Flatten(), toy.train.images, toy.train.labels, toy, real_per_class=6)
    assert same["mmd2"] == pytest.approx(0.0, abs=1e-9) and out["mmd2"] > 0
    assert same["within_class_cosine"] == pytest.approx(same["real_within_class_cosine"])


def test_bad_inputs_give_one_line_errors(toy, tmp_path):
    with pytest.raises(LaddError, match="no BatchNorm.*convnet-bn.*resnet18-bn"):
        make_images("sre2l", ImageRequest(toy, 1, params={"teacher_model": "convnet", "teacher_epochs": 1, "iterations": 1}))
    # class statistics copied from another teacher are refused
    a = teacher_dir(toy, tmp_path / "a", "convnet-bn", 1, Runtime())
    b = teacher_dir(toy, tmp_path / "b", "convnet-bn", 2, Runtime())
    squeeze(toy, a, SqueezeConfig(), Runtime())
    (b / STATS).write_bytes((a / STATS).read_bytes())
    with pytest.raises(LaddError, match="another teacher checkpoint"):
        make_images("lpld", ImageRequest(toy, 1, params={**TEACHER, "iterations": 1}, teacher=b))
    with pytest.raises(LaddError, match="--teacher-dir is for --images sre2l or lpld"):
        distill(toy, SourceConfig(), ImagesConfig(method="random", ipc=1, teacher=str(a)))
    with pytest.raises(ValidationError, match=r"iteration\n  Extra inputs are not permitted"):
        RecoverParams(iteration=3)
    with safe_open(a / STATS, "pt") as f:  # the description travels in the statistics file itself
        info = json.loads(f.metadata()["ladd"])
    assert info["class_names"] == list(toy.class_names) and info["teacher"]["model"] == "convnet-bn"


def test_cli_squeeze_recover_diversity(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('method = "lpld"\n[params]\nteacher_model = "convnet-bn"\nteacher_epochs = 1\niterations = 2\njitter = 1\n')
    teacher = tmp_path / "teacher"

    def run(*a):
        return subprocess.run([sys.executable, "-m", "ladd", *map(str, a)], capture_output=True, text=True)

    res = run(
        "squeeze",
        "--dataset",
        "digits",
        "--teacher-dir",
        teacher,
        "--teacher-model",
        "convnet-bn",
        "--teacher-epochs",
        "1",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    assert (teacher / STATS).exists()
    res = run(
        "recover",
        "--images",
        "lpld",
        "--dataset",
        "digits",
        "--ipc",
        "2",
        "--recipe",
        recipe,
        "--teacher-dir",
        teacher,
        "--out",
        tmp_path / "art",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    res = run(
        "diversity", tmp_path / "art", "--teacher-dir", teacher, "--real-per-class", "20", "--out", tmp_path / "d.json", "--device", "cpu"
    )
    assert res.returncode == 0, res.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    assert len(d["per_class"]) == 10 and -1 <= d["within_class_cosine"] <= 1 and d["mmd2"] >= 0


def test_cli_refuses_other_methods():
    with pytest.raises(LaddError, match="recover runs sre2l or lpld"):
        sre2l.recover(images="dm")
