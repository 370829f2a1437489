import dataclasses

import pytest

from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.labels.labeler import LabelerConfig, load_labeler, train_labeler


def test_labeler_saves_every_epoch_and_refuses_other_data(toy, tmp_path):
    cfg = LabelerConfig(model="convnet-w32", epochs=2, batch_size=8)
    train_labeler(toy, cfg, tmp_path / "lab", Runtime())
    model, prov = load_labeler(tmp_path / "lab", 1, toy, Runtime())
    assert prov["epoch"] == 1 and 0 <= prov["test_acc"] <= 1 and len(prov["checkpoint_sha256"]) == 64
    with pytest.raises(LaddError, match=r"epoch 7 was not saved.*\[0, 1, 2\]"):
        load_labeler(tmp_path / "lab", 7, toy, Runtime())
    permuted = dataclasses.replace(toy, class_names=tuple(reversed(toy.class_names)))
    with pytest.raises(LaddError, match="different class order"):
        load_labeler(tmp_path / "lab", 1, permuted, Runtime())
    renormed = dataclasses.replace(toy, mean=(0.1,))
    with pytest.raises(LaddError, match="normalization"):
        load_labeler(tmp_path / "lab", 1, renormed, Runtime())
