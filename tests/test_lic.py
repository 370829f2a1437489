"""LIC and RDED: the squeeze geometry is LADD's sub-sampler, selection keeps the top scores,
compensation lowers its objective and resumes exactly, region labels are dense labels that the
`local-dense` term reads as Eq. 9, and an observer at chance is refused."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import make_dataset
from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.augment.subsample import crop_geometry
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime, generator, seeded
from ladd.core.types import normalize
from ladd.eval.protocol import EvalConfig, default_methods, evaluate
from ladd.experts import ExpertConfig
from ladd.images import ImageRequest, make_images
from ladd.images.lic import compensation_loss, pick_per_class
from ladd.images.observer import ObserverParams, load_observer, observer_ce
from ladd.images.rded import zero_pad
from ladd.images.optimize import optimize_images
from ladd.images.mosaic import expand, grid_side, shrink, squeeze, untile
from ladd.labels.relabel import RelabelConfig
from ladd.models import build_model
from ladd.train.terms import Batch, LocalTerm

OBSERVER = {"observer_model": "convnet-w32", "observer_epochs": 3}  # 67% on the toy set (chance 33%)


@pytest.fixture
def toy12():
    return make_dataset(n_per_class=12)


@pytest.mark.parametrize("size,n", [(28, 2), (28, 4), (8, 2), (32, 4)])
def test_tile_grid_is_the_ladd_subsampler_with_r_one_over_n(size, n):
    crop, offsets = crop_geometry(size, n, 1.0 / n)
    assert crop == size // n and offsets == [k * size // n for k in range(n)]


def test_squeeze_then_expand_returns_the_resized_originals():
    x = torch.rand(3, 4, 2, 8, 8, generator=generator(0))
    small = shrink(x.flatten(0, 1), (4, 4)).view(3, 4, 2, 4, 4)
    sq = squeeze(x)
    assert sq.shape == (3, 2, 8, 8)
    assert torch.equal(untile(sq, 2), small)  # tile k = row·2 + col holds original k, resized
    assert torch.equal(sq[1, :, :4, 4:], small[1, 1])
    up = F.interpolate(small.flatten(0, 1), size=(8, 8), mode="bilinear", align_corners=False).view(3, 4, 2, 8, 8)
    torch.testing.assert_close(expand(sq, 2), up)


def test_tiles_that_do_not_divide_the_image_are_refused_with_the_valid_choices():
    with pytest.raises(LaddError, match=r"N=9 does not tile 28×28 .*valid N here: 4, 16, 49"):
        grid_side(9, (1, 28, 28))
    with pytest.raises(LaddError, match="valid N here: 4, 16"):
        grid_side(5, (3, 32, 32))


def test_selection_keeps_exactly_the_top_scoring_candidates(toy12):
    scores = torch.rand(len(toy12.train), generator=generator(5))
    picked = pick_per_class(toy12, 3, 8, lambda idx: scores[idx], generator(1))
    gen = generator(1)
    for c in range(3):
        members = (toy12.train.labels == c).nonzero().flatten()
        pool = members[torch.randperm(len(members), generator=gen)][:8]
        assert set(picked[c].tolist()) == set(pool[scores[pool].topk(3).indices].tolist())
        assert scores[picked[c]].tolist() == sorted(scores[picked[c]].tolist(), reverse=True)
    with pytest.raises(LaddError, match="fewer than tiles × IPC = 9"):
        pick_per_class(toy12, 9, 8, lambda idx: scores[idx], generator(1))


def test_compensation_lowers_the_feature_matching_loss(toy12):
    with seeded(0):
        observer = build_model("convnet-w32", channels=1, num_classes=3, im_size=(8, 8)).requires_grad_(False)
    originals = toy12.train.images[:8].view(2, 4, 1, 8, 8).float() / 255
    x0 = squeeze(originals)

    def loss(x):
        return compensation_loss(observer, "features.2", x, originals, toy12.mean, toy12.std, None, generator(0))

    out = optimize_images(x0, lambda it, s, g: loss(s), iterations=20, lr=0.01, momentum=0, seed=0, betas=(0.9, 0.999))
    assert loss(out.images).item() < 0.9 * loss(x0).item() and out.losses[-1] < out.losses[0]


def test_lic_end_to_end_stores_one_region_distribution_per_tile(toy12, tmp_path):
    req = ImageRequest(toy12, 2, seed=0, params={**OBSERVER, "iterations": 3, "candidates": 10})
    out = make_images("lic", req)
    assert out.images.dtype == torch.uint8 and out.images.shape == (6, 1, 8, 8)
    assert out.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert out.regions.shape == (6, 4, 3)
    torch.testing.assert_close(out.regions.sum(-1), torch.ones(6, 4))
    observer, _ = load_observer(toy12, ObserverParams(**OBSERVER), Runtime())
    tiles = F.interpolate(untile(normalize(out.images, toy12.mean, toy12.std), 2).flatten(0, 1), size=(8, 8), mode="bilinear")
    torch.testing.assert_close(out.regions, observer(tiles).softmax(-1).view(6, 4, 3))
    # stored as LADD dense labels with the tile geometry; the default evaluation reads them as Eq. 9
    art = pipeline.with_region_labels(
        pipeline.Artifact(out.images, out.labels, {"source": {"class_names": list(toy12.class_names)}}),
        out.regions,
        out.info["observer"],
        out.info["flops"],
    )
    save_artifact(tmp_path / "a", art)
    back = load_artifact(tmp_path / "a")
    assert back.geometry == (2, 0.5) and torch.equal(back.dense_labels, out.regions)
    assert default_methods(back) == ("local-hard", "local-dense")
    # LIC's evaluation: its protocol, and Eq. 9's sum over the tiles unless another reduction is asked for
    ev = EvalConfig(methods=("local-dense",), models=("convnet-w32",), seeds=1, epochs=1, protocol="lic")
    (row,) = evaluate(back, toy12, ev, Runtime())
    assert (row["local_reduction"], row["optimizer"], row["batch_size"], row["protocol"]) == ("sum", "adamw", 10, "lic")
    assert evaluate(back, toy12, ev.model_copy(update={"local_reduction": "mean"}), Runtime())[0]["local_reduction"] == "mean"


def test_eq9_region_loss_equals_a_direct_computation():
    torch.manual_seed(0)
    model = build_model("convnet-w32", channels=1, num_classes=3, im_size=(8, 8))
    x = torch.randn(2, 1, 8, 8)
    regions = torch.rand(2, 4, 3).softmax(-1)
    batch = Batch(x, torch.tensor([0, 1]), None, regions, (2, 0.5), lambda v, g: v, generator(0))
    loss, forwarded = LocalTerm("dense", reduction="sum")(model, batch)
    direct = 0.0
    for j in range(2):  # Σ_j Σ_k CE(f(region k of image j, upsampled), y_jk), averaged over the batch
        for k in range(4):
            r, c = divmod(k, 2)
            tile = F.interpolate(x[j : j + 1, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], size=(8, 8), mode="bilinear")
            direct = direct - (regions[j, k] * model(tile).log_softmax(-1)[0]).sum()
    assert forwarded == 8
    torch.testing.assert_close(loss, direct / 2)


def test_observer_at_chance_is_refused(toy12, tmp_path):
    observer, prov = load_observer(toy12, ObserverParams(**OBSERVER), Runtime())
    assert prov["train_check_acc"] >= 0.5
    state = {k: v.clone() for k, v in observer.state_dict().items()}
    for key in ("classifier.weight", "classifier.bias"):  # the class order of another data folder
        state[key] = state[key][[1, 2, 0]]
    save_file(state, tmp_path / "shuffled.safetensors")
    params = {**OBSERVER, "observer_checkpoint": str(tmp_path / "shuffled.safetensors"), "iterations": 1, "candidates": 10}
    with pytest.raises(LaddError, match="at chance .* class order"):
        make_images("lic", ImageRequest(toy12, 1, params=params))
    with pytest.raises(LaddError, match="at chance"):
        make_images("rded", ImageRequest(toy12, 1, params={k: v for k, v in params.items() if k != "iterations"}))


def test_bad_layer_and_tiles_get_one_line_errors_with_valid_choices(toy12):
    with pytest.raises(LaddError, match=r"layer 'conv9' is not in the observer .*valid layers are embed, pad, features, features.0"):
        make_images("lic", ImageRequest(toy12, 1, params={**OBSERVER, "layer": "conv9"}))
    with pytest.raises(LaddError, match="valid N here: 4, 16"):
        make_images("rded", ImageRequest(toy12, 1, params={**OBSERVER, "tiles": 9}))


def test_lic_resume_equals_uninterrupted_and_is_deterministic(toy12, tmp_path, interrupted):
    req = dict(seed=1, params={**OBSERVER, "iterations": 4, "candidates": 10, "checkpoint_every": 1})
    full = make_images("lic", ImageRequest(toy12, 1, checkpoint_dir=tmp_path / "a", **req))
    again = make_images("lic", ImageRequest(toy12, 1, **req))
    with interrupted(2):
        make_images("lic", ImageRequest(toy12, 1, checkpoint_dir=tmp_path / "b", **req))
    resumed = make_images("lic", ImageRequest(toy12, 1, checkpoint_dir=tmp_path / "b", resume=True, **req))
    assert torch.equal(full.images, resumed.images) and torch.equal(full.images, again.images)
    assert torch.equal(full.regions, resumed.regions)
    assert full.flops == resumed.flops == again.flops > 0  # selection scoring + every compensation iteration


def test_rded_tiles_the_lowest_ce_patches_in_rank_order(toy12, monkeypatch):
    """Every patch scored is recorded: per class the best patch of each image, then the N·IPC
    lowest of those, tiled so that image j holds ranks j, IPC + j, … (RDED's mix_images); the
    stored tiles, scored again, give those CEs back (up to uint8 rounding of the pixels)."""
    import ladd.images.rded as rded

    scored = []
    monkeypatch.setattr(rded, "observer_ce", lambda *a, **k: scored.append(observer_ce(*a, **k)) or scored[-1])
    ipc, crops = 2, 5
    out = make_images("rded", ImageRequest(toy12, ipc, seed=0, params={**OBSERVER, "candidates": 10, "crops": crops}))
    observer, _ = load_observer(toy12, ObserverParams(**OBSERVER), Runtime())
    for cls, ce in enumerate(scored):
        lowest = ce.view(10, crops).min(1).values.sort().values[: 4 * ipc]  # best patch per image, then the 4·IPC lowest
        assert out.info["mean_patch_ce"][cls] == pytest.approx(lowest.mean().item(), rel=1e-5)
        tiles = untile(normalize(out.images[out.labels == cls], toy12.mean, toy12.std), 2)  # ipc × 4 tiles
        rescored = observer_ce(observer, zero_pad(tiles.flatten(0, 1), (8, 8)), torch.full((4 * ipc,), cls))
        torch.testing.assert_close(rescored.view(ipc, 4).T.flatten(), lowest, atol=0.05, rtol=0)  # rank t·IPC + j in tile t of image j


def test_rded_tiles_the_lowest_ce_patches_with_region_labels(toy12):
    out = make_images("rded", ImageRequest(toy12, 2, seed=0, params={**OBSERVER, "candidates": 10}))
    assert out.images.shape == (6, 1, 8, 8) and out.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert out.regions.shape == (6, 4, 3)
    torch.testing.assert_close(out.regions.sum(-1), torch.ones(6, 4))
    again = make_images("rded", ImageRequest(toy12, 2, seed=0, params={**OBSERVER, "candidates": 10}))
    assert torch.equal(out.images, again.images)
    plain = make_images("rded", ImageRequest(toy12, 2, seed=0, params={**OBSERVER, "candidates": 10, "relabel": False}))
    assert plain.regions is None and torch.equal(plain.images, out.images)
    assert plain.flops == out.flops > 0  # the scoring passes; region labels are charged to the labels


def test_distill_stores_region_labels_as_dense_labels_and_params_override_the_recipe(toy12):
    src = pipeline.SourceConfig(dataset="mnist5k")
    params = {**OBSERVER, "iterations": 2, "candidates": 10}
    art = pipeline.distill(toy12, src, pipeline.ImagesConfig(method="lic", ipc=1, params=params))
    assert art.geometry == (2, 0.5) and art.dense_labels.shape == (3, 4, 3) and art.soft_labels is None
    assert art.manifest["labels"]["method"] == "region" and art.manifest["images"]["recipe"]["name"] == "lic-paper"
    assert art.manifest["flops"]["label_generation"] > 0
    plain = pipeline.distill(toy12, src, pipeline.ImagesConfig(method="lic", ipc=1, params={**params, "relabel": False}))
    assert plain.dense_labels is None and torch.equal(plain.images, art.images)
    assert plain.geometry == (2, 0.5)  # the tile grid, so students can train on the expanded tiles (local-hard)
    with pytest.raises(LaddError, match="--param is for image methods with recipes"):
        pipeline.distill(toy12, src, pipeline.ImagesConfig(method="random", ipc=1, params={"select": False}))


def test_region_labels_and_a_stored_relabel_train_one_student_together(toy12, tmp_path):
    """LIC's optional extra: Eq. 9 on the tiles plus FKD-style stored augmentation labels, `local-dense+replay`."""
    art = pipeline.distill(
        toy12, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(method="rded", ipc=2, params={**OBSERVER, "candidates": 10})
    )
    path = tmp_path / "rded"
    save_artifact(path, art)
    cfg = RelabelConfig(epochs=2, batch_size=3, teacher=ExpertConfig(model="convnet-w32", epochs=1, batch_size=6))
    save_artifact(path, pipeline.relabel(load_artifact(path), path, toy12, cfg, Runtime()))
    art = load_artifact(path)
    assert art.dense_labels is not None and art.relabel is not None  # relabelling keeps the region labels
    ev = EvalConfig(methods=("local-dense", "local-dense+replay"), models=("convnet-w32",), seeds=1, protocol="fkd", epochs=2, batch_size=3)
    region, both = evaluate(art, toy12, ev, Runtime())
    assert both["terms"] == ["local-dense", "replay"] and both["relabel_kept_samples"] == 12
    stored = art.relabel.storage()
    assert both["label_bytes_raw"] == region["label_bytes_raw"] + sum(b["raw"] for b in stored.values())
    made = art.relabel.info["flops"]
    assert both["flops_labels"] == region["flops_labels"] + made["teacher_train"] + made["label_generation"]
    assert both["flops_deploy"] > region["flops_deploy"]  # the replayed views are forwarded too
