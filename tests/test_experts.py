import dataclasses

import pytest

from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.experts import ExpertConfig, load_expert, train_expert


def test_expert_saves_every_epoch_and_refuses_other_data(toy, tmp_path):
    cfg = ExpertConfig(model="convnet-w32", epochs=2, batch_size=8)
    train_expert(toy, cfg, tmp_path / "lab", Runtime())
    model, prov = load_expert(tmp_path / "lab", 1, toy, Runtime())
    assert prov["epoch"] == 1 and 0 <= prov["test_acc"] <= 1 and len(prov["checkpoint_sha256"]) == 64
    with pytest.raises(LaddError, match=r"epoch 7 was not saved.*saved epochs: 0, 1, 2$"):
        load_expert(tmp_path / "lab", 7, toy, Runtime())
    permuted = dataclasses.replace(toy, class_names=tuple(reversed(toy.class_names)))
    with pytest.raises(LaddError, match="different classes or class order"):
        load_expert(tmp_path / "lab", 1, permuted, Runtime())
    renormed = dataclasses.replace(toy, mean=(0.1,))
    with pytest.raises(LaddError, match="normalization"):
        load_expert(tmp_path / "lab", 1, renormed, Runtime())
