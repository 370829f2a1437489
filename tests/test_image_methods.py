"""Image methods: every registered method runs on a tiny fixture; learned ones improve their own
objective and resume exactly; recipes load as data."""

import json

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors import safe_open

from ladd.core.errors import LaddError
from ladd.core.io import save_tensors
from ladd.core.runtime import seeded
from ladd.core.types import normalize
from ladd.images import IMAGE_METHODS, ImageRequest, make_images
from ladd.images.dm import RealFeatures, dm_objective
from ladd.images.gradient_matching import NetworkLoss, layer_distance, match_loss
from ladd.images.herding import herd
from ladd.images.optimize import STATE, optimize_images
from ladd.images.recipes import load_recipe, shipped
from ladd.models import build_model

TINY = {
    "dm": {"iterations": 3, "batch_real": 4, "compile": False},
    "herding": {"expert_epochs": 1},
    "dc": {"iterations": 2, "outer_loop": 2, "inner_loop": 1, "batch_real": 4, "compile": False},
    "dsa": {"iterations": 2, "outer_loop": 2, "inner_loop": 1, "batch_real": 4, "compile": False},
    "sre2l": {"teacher_model": "convnet-bn", "teacher_epochs": 1, "iterations": 2},
    "lpld": {"teacher_model": "convnet-bn", "teacher_epochs": 1, "iterations": 2},
}


# `import` needs a file (test_images.py), `mtt` an expert buffer (test_mtt.py runs it end to end),
# `lic`/`rded` N·IPC real images per class and a trained observer (test_lic.py runs them end to end).
@pytest.mark.parametrize("method", [m for m in IMAGE_METHODS.names() if m not in ("import", "mtt", "lic", "rded")])
def test_every_method_gives_ipc_images_per_class(toy, method):
    out = make_images(method, ImageRequest(toy, 2, seed=0, model="convnet-w32", params=TINY.get(method, {})))
    assert out.images.dtype == torch.uint8 and out.images.shape == (6, 1, 8, 8)
    assert torch.bincount(out.labels).tolist() == [2, 2, 2]
    assert (out.flops == 0) == (method == "random")  # every other method computes something to make its images


def test_herding_matches_brute_force_greedy():
    feats = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    chosen = herd(feats, 4)
    mu, picked = feats.mean(0), []
    for _ in range(4):
        best = min((i for i in range(12) if i not in picked), key=lambda i: float(((mu - feats[picked + [i]].mean(0)) ** 2).sum()))
        picked.append(best)
    assert chosen == picked and len(set(chosen)) == 4


def _fixed_nets(first_seed: int, count: int) -> list:
    """Networks held fixed across a before/after comparison (independent of the method's own draws)."""
    nets = []
    for s in range(count):
        with seeded(first_seed + s):
            nets.append(build_model("convnet-w32", channels=1, num_classes=3, im_size=(8, 8)))
    return nets


def _dm_loss_over_fixed_nets(toy, images, labels, nets):
    real = normalize(toy.train.images, toy.mean, toy.std)
    syn = normalize(images, toy.mean, toy.std)
    with torch.no_grad():
        return sum(float(dm_objective(n.embed(real), toy.train.labels, n.embed(syn), labels, 3)) for n in nets)


def test_dm_lowers_its_matching_objective(toy):
    params = {"iterations": 30, "batch_real": 6, "lr_img": 0.1, "compile": False}
    start = make_images("random", ImageRequest(toy, 1, seed=0))
    out = make_images("dm", ImageRequest(toy, 1, seed=0, model="convnet-w32", params=params))
    nets = _fixed_nets(100, 5)
    before = _dm_loss_over_fixed_nets(toy, start.images, start.labels, nets)
    after = _dm_loss_over_fixed_nets(toy, out.images, out.labels, nets)
    assert torch.equal(out.labels, start.labels) and after < 0.7 * before


def test_layer_distance_is_sum_of_one_minus_cosine_over_output_rows():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, 3, 3, generator=g), torch.randn(4, 3, 3, 3, generator=g)
    direct = sum(1 - F.cosine_similarity(a[i].flatten(), b[i].flatten(), dim=0) for i in range(4))
    torch.testing.assert_close(layer_distance(a, b), direct, atol=1e-5, rtol=1e-5)
    assert layer_distance(torch.ones(5), torch.zeros(5)) == 0  # biases and norm scales do not count
    assert float(layer_distance(a, a)) == pytest.approx(0, abs=1e-5)


def _gradient_mismatch(toy, images, labels, nets):
    real = normalize(toy.train.images, toy.mean, toy.std)
    syn = normalize(images, toy.mean, toy.std)
    total = 0.0
    for net in nets:
        params = list(net.parameters())
        for k in range(3):
            g_real = torch.autograd.grad(F.cross_entropy(net(real[toy.train.labels == k]), toy.train.labels[toy.train.labels == k]), params)
            g_syn = torch.autograd.grad(F.cross_entropy(net(syn[labels == k]), labels[labels == k]), params)
            total += float(match_loss(g_syn, g_real))
    return total


def test_dc_lowers_its_gradient_matching_objective(toy):
    params = {"iterations": 10, "outer_loop": 1, "inner_loop": 0, "batch_real": 6, "lr_img": 0.1, "compile": False}
    start = make_images("random", ImageRequest(toy, 1, seed=0))
    out = make_images("dc", ImageRequest(toy, 1, seed=0, model="convnet-w32", params=params))
    nets = _fixed_nets(200, 3)
    assert _gradient_mismatch(toy, out.images, out.labels, nets) < _gradient_mismatch(toy, start.images, start.labels, nets)


@pytest.mark.parametrize(
    "method,params",
    [
        ("dm", {"iterations": 6, "batch_real": 4, "checkpoint_every": 2, "compile": False}),
        ("dsa", {"iterations": 3, "outer_loop": 2, "inner_loop": 1, "batch_real": 4, "checkpoint_every": 1, "compile": False}),
    ],
)
def test_resume_equals_uninterrupted(toy, tmp_path, interrupted, method, params):
    req = dict(seed=1, model="convnet-w32", params=params)
    full = make_images(method, ImageRequest(toy, 1, checkpoint_dir=tmp_path / "a", **req))
    with interrupted(2):
        make_images(method, ImageRequest(toy, 1, checkpoint_dir=tmp_path / "b", **req))
    resumed = make_images(method, ImageRequest(toy, 1, checkpoint_dir=tmp_path / "b", resume=True, **req))
    assert torch.equal(full.images, resumed.images) and resumed.flops == full.flops > 0
    # --resume before any checkpoint exists (a requeue after an early kill) starts fresh: the same images
    fresh = make_images(method, ImageRequest(toy, 1, checkpoint_dir=tmp_path / "c", resume=True, **req))
    assert torch.equal(full.images, fresh.images) and fresh.flops == full.flops


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
    child = tmp_path / "child.toml"
    child.write_text('method = "dm"\nextends = "dm-mnist5k"\n[params]\nbatch_real = 8\n[ipc.1]\niterations = 3\n')
    base = load_recipe("dm", "mnist5k", 1)["params"]
    assert load_recipe("dm", "x", 1, str(child))["params"] == {**base, "batch_real": 8, "iterations": 3}
    at10 = {**load_recipe("dm", "mnist5k", 10)["params"], "batch_real": 8, "iterations": 3}  # no table names 10: IPC 1's
    assert load_recipe("dm", "x", 10, str(child))["params"] == at10
    gm = {m: load_recipe(m, "mnist5k", 1)["params"] for m in ("dc", "dsa")}  # both list IPC 1 and 10 only
    assert gm["dc"]["iterations"] == 200 and gm["dc"]["outer_loop"] == gm["dc"]["inner_loop"] == 1
    for m in ("dc", "dsa"):  # an IPC no table names runs the nearest named IPC's setting below it
        assert load_recipe(m, "mnist5k", 2)["params"] == gm[m]
        assert load_recipe(m, "digits", 11)["params"] == load_recipe(m, "digits", 10)["params"]
    assert load_recipe("dc", "cifar10", 25)["params"]["outer_loop"] == 20  # the paper's table: IPC 20's loops
    child.write_text('method = "dm"\nextends = "dm-nope"\n')
    with pytest.raises(LaddError, match="extends 'dm-nope', which is not shipped"):
        load_recipe("dm", "x", 1, str(child))


@pytest.mark.parametrize("dataset", ["mnist5k", "digits"])
@pytest.mark.parametrize("method", ["dm", "dc", "dsa", "mtt"])
@pytest.mark.parametrize("ipc", [1, 10])
def test_embedded_datasets_have_valid_cpu_recipes(method, dataset, ipc):
    """The paper recipes are GPU budgets: each embedded dataset gets its own, and it parses."""
    from ladd.images.dm import DMParams
    from ladd.images.gradient_matching import GradientMatchingParams
    from ladd.images.mtt import MTTParams

    recipe = load_recipe(method, dataset, ipc)
    assert (recipe["name"], recipe["budget"]) == (f"{method}-{dataset}", "cpu")
    model = {"dm": DMParams, "dc": GradientMatchingParams, "dsa": GradientMatchingParams, "mtt": MTTParams}[method]
    model(**recipe["params"])


def test_real_branch_precision_and_compilation_keep_the_features(toy):
    """The bf16 and compiled real branch is a faster way to the same targets, and one compiled graph
    serves fresh networks."""
    x = normalize(toy.train.images, toy.mean, toy.std)
    nets = _fixed_nets(0, 2)
    exact = RealFeatures(nets[0], torch.float32, compile=False)
    fast = RealFeatures(nets[0], torch.bfloat16, compile=True)
    for net in nets:
        ref = net.embed(x).detach()
        torch.testing.assert_close(exact(net, x), ref)
        assert ((fast(net, x) - ref).norm() / ref.norm()) < 0.02


def test_compiled_network_loss_keeps_the_gradients():
    """DC's compiled loss is a faster way to the same gradients, and one graph serves fresh networks."""
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    nets = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)) for _ in range(2)]
    exact, fast = NetworkLoss(nets[0], compile=False), NetworkLoss(nets[0], compile=True)
    for net in nets:
        ref = torch.autograd.grad(F.cross_entropy(net(x), y), list(net.parameters()))
        for loss_of in (exact, fast):
            for g, r in zip(torch.autograd.grad(loss_of(net, x, y), list(net.parameters())), ref):
                torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_float_images_are_the_unrounded_uint8_images(toy, tmp_path):
    from ladd.artifact import Artifact, load_artifact, save_artifact

    params = {"iterations": 3, "batch_real": 4, "compile": False}
    as_uint8 = make_images("dm", ImageRequest(toy, 1, seed=0, model="convnet-w32", params=params))
    as_float = make_images("dm", ImageRequest(toy, 1, seed=0, model="convnet-w32", params=params, float_images=True))
    assert as_float.images.dtype == torch.float32 and 0 <= as_float.images.min() and as_float.images.max() <= 255
    assert torch.equal(as_float.images.round().to(torch.uint8), as_uint8.images)
    save_artifact(tmp_path / "a", Artifact(as_float.images, as_float.labels, {"source": {"class_names": ["a", "b", "c"]}}))
    assert torch.equal(load_artifact(tmp_path / "a").images, as_float.images)


def test_unknown_recipe_parameter_is_refused(toy):
    with pytest.raises(ValidationError, match=r"iteratons\n  Extra inputs are not permitted"):
        make_images("dm", ImageRequest(toy, 1, params={"iteratons": 3}))


def test_float_images_share_the_checkpoint_of_the_uint8_run(toy):
    from ladd.pipeline import ImagesConfig, checkpoint_dir

    cfg = ImagesConfig(method="dm", ipc=1)
    params = {"iterations": 2}
    assert checkpoint_dir(toy, cfg, params) == checkpoint_dir(toy, cfg.model_copy(update={"float_images": True}), params)
    assert checkpoint_dir(toy, cfg, params) != checkpoint_dir(toy, cfg.model_copy(update={"seed": 1}), params)


def test_continuing_turns_resume_on_once_a_learned_run_left_checkpoints(toy):
    import dataclasses

    from ladd import pipeline
    from ladd.core.runtime import Runtime

    ds = dataclasses.replace(toy, name="digits")
    cfg = pipeline.ImagesConfig(method="dm", ipc=1, model="convnet-w32", params={"iterations": 2, "checkpoint_every": 1, "batch_real": 4})
    assert pipeline.continuing(ds, cfg).resume is False
    first = pipeline.distill(ds, pipeline.SourceConfig(dataset="digits"), cfg, Runtime())
    again = pipeline.continuing(ds, cfg)
    assert again.resume is True
    assert torch.equal(pipeline.distill(ds, pipeline.SourceConfig(dataset="digits"), again, Runtime()).images, first.images)
    assert pipeline.continuing(ds, pipeline.ImagesConfig(method="random", ipc=1)).resume is False


def test_baseline_plus_plus_of_learned_images_continues_the_ipc_plus_one_run_an_earlier_sitting_left(toy, monkeypatch):
    import dataclasses

    from ladd import pipeline
    from ladd.core.runtime import Runtime

    ds = dataclasses.replace(toy, name="digits")
    cfg = pipeline.ImagesConfig(method="dm", ipc=1, model="convnet-w32", params={"iterations": 2, "checkpoint_every": 1, "batch_real": 4})
    art = pipeline.distill(ds, pipeline.SourceConfig(dataset="digits"), cfg, Runtime())
    first = pipeline.plus_one(art, ds, Runtime())
    assert first.manifest["ipc"] == 2
    asked, distill = [], pipeline.distill
    monkeypatch.setattr(pipeline, "distill", lambda d, s, c, r: asked.append(c) or distill(d, s, c, r))
    again = pipeline.plus_one(art, ds, Runtime())
    assert [c.resume for c in asked] == [True]  # the IPC 2 run's checkpoints are read, not redone
    assert torch.equal(again.images, first.images)


def test_loop_flops_add_up_every_iteration_also_after_resume(tmp_path, interrupted):
    w = torch.randn(6, 5)

    # odd iterations do a second matmul, as DC's later rounds also train their network
    def step(it, syn, gen):
        return (w @ syn).square().sum() * (1 if it % 2 == 0 else (w @ syn).sum())

    x0 = torch.randn(5, 3)
    one = 2 * (2 * 6 * 5 * 3)  # a 6×5 @ 5×3 matmul (2 FLOPs per multiply-add) and its gradient for syn (w needs none)
    want = 3 * one + 3 * 2 * one  # 6 iterations, 3 of each kind

    def run(**kw):
        return optimize_images(x0, step, iterations=6, lr=1e-3, seed=0, checkpoint_dir=tmp_path, every=2, cycle=2, **kw)

    full = run()
    assert full.flops == want and len(full.losses) == 6
    with interrupted(1):
        run()
    resumed = run(resume=True)
    assert resumed.flops == want and resumed.losses == full.losses
    # the finished run's state as the previous layout held it (its losses in the JSON header) resumes the same
    with safe_open(tmp_path / STATE, "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    header = json.loads(meta["ladd"])
    header["losses"] = tensors.pop("t.losses").tolist()
    save_tensors(tmp_path / STATE, tensors, {**meta, "ladd": json.dumps(header)})
    assert run(resume=True).losses == full.losses


def test_resume_refuses_a_checkpoint_of_another_format_in_one_line(tmp_path):
    def run(**kw):
        return optimize_images(
            torch.randn(5, 3),
            lambda it, syn, gen: syn.square().sum(),
            iterations=2,
            lr=1e-3,
            seed=0,
            checkpoint_dir=tmp_path,
            every=1,
            **kw,
        )

    run()
    with safe_open(tmp_path / STATE, "pt") as f:  # as an older ladd wrote it: no format in the metadata
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()["ladd"]
    save_tensors(tmp_path / STATE, tensors, {"ladd": meta})
    with pytest.raises(LaddError, match="checkpoint of another ladd version .*no format.*delete it") as e:
        run(resume=True)
    assert str(tmp_path / STATE) in str(e.value) and "\n" not in str(e.value)
