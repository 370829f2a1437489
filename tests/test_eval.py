import torch

from ladd.artifact import Artifact
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, crops_for, evaluate, rounding_rows
from ladd.report.results import eval_notes


def _artifact(toy, learned):
    manifest = {"source": {"class_names": list(toy.class_names)}, "images": {"learned": learned}}
    return Artifact(toy.train.images[::3], toy.train.labels[::3], manifest)


def test_learned_lr_is_used_and_reported_unless_an_lr_is_given(toy):
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=2, epochs=2)
    row = evaluate(_artifact(toy, {"lr": 0.05}), toy, cfg, Runtime())[0]
    assert row["lr"] == 0.05 and row["lr_source"].startswith("learned")
    cfg = cfg.model_copy(update={"lr": 0.01})
    row = evaluate(_artifact(toy, {"lr": 0.05}), toy, cfg, Runtime())[0]
    assert row["lr"] == 0.01 and row["lr_source"] == "eval config"
    assert len(row["accs"]) == 2 and row["acc_mean"] == torch.tensor(row["accs"]).double().mean().item()
    assert row["image_bytes_zip"] > 0  # storage computed even for an artifact never saved


def test_auto_crops_bound_views_per_epoch():
    assert crops_for("all", 100, 5) is None
    assert crops_for("auto", 10, 5) == 25  # IPC 1 × 10 classes: every view
    assert crops_for("auto", 100, 5) == 5  # IPC 10 × 10 classes: 500 views per epoch
    assert crops_for("auto", 1000, 5) == 5  # never fewer than 5
    assert crops_for("auto", 50, 3) == 9  # never more than N²
    assert crops_for(7, 100, 5) == 7
    assert crops_for(50, 100, 5) == 25  # at most N²: what a row records is the K its local term draws


def test_float_images_are_also_evaluated_rounded_to_uint8_and_the_notes_say_the_difference(toy):
    cfg = EvalConfig(methods=("baseline", "soft"), models=("convnet-w32",), seeds=1, epochs=1, lr=0.01)
    art = _artifact(toy, {})
    assert rounding_rows(art, toy, cfg, Runtime()) == []  # uint8 images: nothing to compare
    floats = Artifact(art.images.float() + 0.3, art.labels, art.manifest)  # off the uint8 grid by 0.3
    rows = evaluate(floats, toy, cfg.model_copy(update={"methods": ("baseline",)}), Runtime())
    rounded = rounding_rows(floats, toy, cfg, Runtime())
    assert [r["method"] for r in rounded] == ["baseline (uint8)"]  # the first method only
    assert rounded[0]["image_bytes_raw"] == art.images.numel() < rows[0]["image_bytes_raw"]  # 1 byte per pixel, not 4
    assert rounded[0]["accs"] == evaluate(art, toy, cfg.model_copy(update={"methods": ("baseline",)}), Runtime())[0]["accs"]
    note = next(n for n in eval_notes(floats, cfg, rows + rounded) if "rounded to the uint8" in n)
    assert f"{100 * rounded[0]['acc_mean']:.2f} instead of {100 * rows[0]['acc_mean']:.2f}" in note
