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


def test_registry_lists_provenance_and_a_changed_checkpoint_is_refused(toy, tmp_path):
    from ladd.core.io import sha256
    from ladd.experts import registry
    from ladd.train.loop import checkpoint_path

    cfg = ExpertConfig(model="convnet-w32", epochs=1, batch_size=8, seed=3)
    train_expert(toy, cfg, tmp_path / "nets" / "a", Runtime())
    (row,) = registry([tmp_path / "nets"])
    final = checkpoint_path(tmp_path / "nets" / "a", 1)
    assert row["final_sha256"] == sha256(final) and row["seed"] == 3 and row["class_names"] == list(toy.class_names)
    _, prov = load_expert(tmp_path / "nets" / "a", 1, toy, Runtime())
    assert row["test_acc"] == prov["test_acc"] and row["mean"] == list(toy.mean) and row["complete"]
    final.write_bytes(checkpoint_path(tmp_path / "nets" / "a", 0).read_bytes())  # weights swapped after training
    with pytest.raises(LaddError, match="does not match the checksum"):
        load_expert(tmp_path / "nets" / "a", 1, toy, Runtime())
