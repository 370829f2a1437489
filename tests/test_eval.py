import torch

from ladd.artifact import Artifact
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate


def _artifact(toy, learned):
    manifest = {"source": {"class_names": list(toy.class_names)}, "images": {"learned": learned}}
    return Artifact(toy.train.images[::3], toy.train.labels[::3], manifest)


def test_learned_lr_is_used_and_reported(toy):
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=2, epochs=2, lr=0.01)
    row = evaluate(_artifact(toy, {"lr": 0.05}), toy, cfg, Runtime())[0]
    assert row["lr"] == 0.05 and row["lr_source"].startswith("learned")
    row = evaluate(_artifact(toy, {}), toy, cfg, Runtime())[0]
    assert row["lr"] == 0.01 and row["lr_source"] == "eval config"
    assert len(row["accs"]) == 2 and row["acc_mean"] == torch.tensor(row["accs"]).double().mean().item()
    assert row["image_bytes_zip"] > 0  # storage computed even for an artifact never saved
