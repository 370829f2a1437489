import pytest
import torch

import ladd.train.loop as loop
from ladd.core.runtime import Runtime
from ladd.experts import build_for
from ladd.train.loop import Recipe, TrainData, accuracy, train
from ladd.train.terms import method_terms

RECIPE = Recipe(epochs=4, lr=0.05, batch_size=8, dsa="color_crop_cutout_scale_rotate")


def _data(toy):
    return TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_learns_the_toy_task_and_counts_samples(toy):
    model = build_for(toy, "convnet-w32", 0)
    log = train(model, _data(toy), method_terms("baseline"), Recipe(epochs=15, lr=0.05, batch_size=6), seed=0, runtime=Runtime())
    assert log.samples == {"global-hard": 15 * 18}
    assert accuracy(model, toy.test.images, toy.test.labels, toy.mean, toy.std) > 0.9


def test_same_seed_same_weights(toy):
    runs = []
    for _ in range(2):
        model = build_for(toy, "convnet-w32", 0)
        train(model, _data(toy), method_terms("baseline"), RECIPE, seed=1, runtime=Runtime())
        runs.append(_weights(model))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k])


def test_resume_equals_uninterrupted(toy, tmp_path, monkeypatch):
    full = build_for(toy, "convnet-w32", 0)
    train(full, _data(toy), method_terms("baseline"), RECIPE, seed=2, runtime=Runtime(), checkpoint_dir=tmp_path / "a")

    real_save = loop._save

    def crash_after_epoch_2(directory, epoch, *args):
        real_save(directory, epoch, *args)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(build_for(toy, "convnet-w32", 0), _data(toy), method_terms("baseline"), RECIPE, seed=2, runtime=Runtime(), checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(loop, "_save", real_save)
    resumed = build_for(toy, "convnet-w32", 5)  # different init: it must come from the checkpoint
    log = train(resumed, _data(toy), method_terms("baseline"), RECIPE, seed=2, runtime=Runtime(), checkpoint_dir=tmp_path / "b")
    assert len(log.epoch_loss) == 4
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*")) == [f"epoch_00{i}.safetensors" for i in range(5)]


def test_crash_between_weights_and_state_resumes_consistently(toy, tmp_path, monkeypatch):
    full = build_for(toy, "convnet-w32", 0)
    train(full, _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime())
    import ladd.core.checkpoint as ckpt

    real = ckpt.save_tensors

    def crash_on_state_of_epoch_2(path, tensors, metadata=None):
        if path.name == loop.STATE and metadata and '"epoch": 2' in metadata["ladd"]:
            raise KeyboardInterrupt  # epoch_002 weights are written, its state is not
        return real(path, tensors, metadata)

    monkeypatch.setattr(ckpt, "save_tensors", crash_on_state_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(build_for(toy, "convnet-w32", 0), _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime(), checkpoint_dir=tmp_path)
    monkeypatch.setattr(ckpt, "save_tensors", real)
    resumed = build_for(toy, "convnet-w32", 0)
    train(resumed, _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime(), checkpoint_dir=tmp_path)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_lr_schedule_decays_once_at_half():
    r = Recipe(epochs=10, lr=0.1)
    assert [r.lr_at(e) for e in (0, 4, 5, 9)] == [0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]
    assert Recipe(epochs=10, lr=0.1, milestones=()).lr_at(9) == 0.1
    lic = Recipe(epochs=12, lr=1.0, milestones=(2 / 3, 5 / 6), gamma=0.2)  # LIC's MultiStepLR
    assert [lic.lr_at(e) for e in (7, 8, 9, 10, 11)] == pytest.approx([1.0, 0.2, 0.2, 0.04, 0.04])
    with pytest.raises(ValueError, match=r"milestones \[0.8, 0.5\] must be increasing fractions"):
        Recipe(milestones=(0.8, 0.5))
    assert Recipe(epochs=1, lr=0.1).lr_at(0) == 0.1  # a 1-epoch run is not decayed from the start


def test_importing_ladd_keeps_large_blocks_in_the_heap():
    """ladd raises glibc's mmap threshold on import, so a 64 MB tensor (above glibc's largest default
    threshold, 32 MB) comes from the heap, where a freed block is reused, not from its own mapping."""
    from pathlib import Path

    from ladd.core.allocator import keep_large_blocks

    assert keep_large_blocks()
    t = torch.empty(64 * 2**20, dtype=torch.uint8)
    heap = [line.split()[0].split("-") for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith("[heap]")]
    assert any(int(lo, 16) <= t.data_ptr() < int(hi, 16) for lo, hi in heap)
