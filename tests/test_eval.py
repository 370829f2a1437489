import torch

from ladd.artifact import Artifact
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, crops_for, evaluate


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
