import dataclasses
import hashlib
import json
import struct
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.artifact.relabel import RELABEL_DIR, epoch_file
from ladd.augment.fkd import Epoch, crop_pixels, render, sample_crops, sample_epoch
from ladd.core.errors import LaddError
from ladd.core.io import sha256
from ladd.core.runtime import Runtime, generator
from ladd.core.types import normalize
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig
from ladd.labels import LabelConfig
from ladd.labels.methods import build_teacher
from ladd.labels.relabel import PARTIAL, RelabelConfig
from ladd.labels.replay import Pruning, Replay, prune_units, sample_scores, units
from ladd.train.loop import Recipe, TrainData, train

TEACHER = ExpertConfig(model="convnet-w32", epochs=1, batch_size=6)


def _relabelled(toy, tmp_path, name="art", **kw):
    """The toy set (18 images, 3 classes) as an artifact with a stored relabel: 4 epochs of 3 batches of 6."""
    art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=6))
    path = tmp_path / name
    save_artifact(path, art)
    cfg = RelabelConfig(**{"epochs": 4, "batch_size": 6, "teacher": TEACHER, "dtype": "float32", **kw})
    save_artifact(path, pipeline.relabel(load_artifact(path), path, toy, cfg, Runtime()))
    return path, load_artifact(path)


def _replay(art, toy, kept=None, per_epoch=1, seed=0, batches="stored"):
    store = art.relabel
    return Replay(store, art.images, toy.mean, toy.std, kept or units(store, "epoch"), per_epoch, batches).for_seed(seed)


def test_render_is_crop_resize_flip_then_paste_from_the_partner_view(toy):
    images = toy.train.images[:4]
    x = normalize(images, toy.mean, toy.std)
    full = torch.tensor([0.0, 0.0, 1.0, 1.0])
    crop = torch.stack([full, torch.tensor([0.25, 0.125, 0.5, 0.75]), full, full])
    ep = Epoch(
        order=torch.tensor([2, 0, 1, 3]),
        crop=crop,
        flip=torch.tensor([False, False, True, False]),
        mix_index=torch.tensor([2, 0, 1, 1]),
        mix_lambda=torch.tensor([1.0, 1.0, 1.0, 0.75]),
        mix_box=torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 4, 4]], dtype=torch.int16),
    )
    out = render(images, toy.mean, toy.std, ep, torch.arange(4))
    close = partial(torch.testing.assert_close, rtol=0, atol=RENDER_TOL)
    close(out[0], x[2])  # whole image, no flip, empty box: the image itself
    direct = F.interpolate(x[0:1, :, 2:6, 1:7], size=(8, 8), mode="bilinear", align_corners=False)[0]
    close(out[1], direct)  # rows 2..5, columns 1..6 resized back to 8×8
    close(out[2], x[1].flip(-1))
    # row 3 is image 3 with the top-left 4×4 pasted from image 1's view (row 2: flipped)
    close(out[3][:, :4, :4], x[1].flip(-1)[:, :4, :4])
    close(out[3][:, 4:], x[3][:, 4:])


# render samples through grid_sample, whose float32 normalized coordinates move a tap by about
# 1e-7 · side pixels: up to 1.2e-5 at 32 px on inputs of std 0.25 (1.4e-4 at 224 px), under 1% of
# a uint8 step (1 / (255 · std))
RENDER_TOL = 2e-5


def _interpolate_each(images, mean, std, epoch, rows):
    """render as ladd wrote it before batching: one F.interpolate per view, a partner view per row."""
    _, _, height, width = images.shape
    position = torch.empty_like(epoch.order)
    position[epoch.order] = torch.arange(len(epoch.order))

    def view(row):
        top, left, h, w = crop_pixels(epoch.crop[row], height, width).tolist()
        x = normalize(images[epoch.order[row], None, :, top : top + h, left : left + w], mean, std)
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0]
        return x.flip(-1) if epoch.flip[row] else x

    out = []
    for row, (y1, x1, y2, x2) in zip(rows.tolist(), epoch.mix(rows)[1].tolist()):
        x = view(row)
        x[:, y1:y2, x1:x2] = view(int(position[epoch.mix_index[row]]))[:, y1:y2, x1:x2]
        out.append(x)
    return torch.stack(out)


@pytest.mark.parametrize("size", [8, 28, 32])
def test_batched_render_equals_one_interpolate_per_view_whatever_shares_its_batch(size):
    gen = generator(size)
    images = torch.randint(0, 256, (40, 3, size, size), dtype=torch.uint8, generator=gen)
    mean, std = (0.5, 0.4, 0.45), (0.25, 0.3, 0.25)
    for kw in ({}, {"mix_per": "sample"}, {"cutmix": False}):
        ep = sample_epoch(40, 8, size, size, gen, **kw)
        rows = torch.randperm(40, generator=gen)[:24]
        y1, x1, y2, x2 = ep.mix(rows)[1].unbind(1)
        assert ep.flip[rows].any() and not ep.flip[rows].all() and ((y2 > y1) & (x2 > x1)).any() != ("cutmix" in kw)
        out = render(images, mean, std, ep, rows)
        torch.testing.assert_close(out, _interpolate_each(images, mean, std, ep, rows), rtol=0, atol=RENDER_TOL)
        assert torch.equal(torch.cat([render(images, mean, std, ep, r[None]) for r in rows]), out)  # bitwise, row by row


def test_sampled_crops_are_the_ones_stored_relabels_were_made_with():
    a, b = sample_crops(1000, 32, 32, generator(0)), sample_crops(1000, 28, 40, generator(1))
    assert a[:3].tolist() == [[0, 0, 32, 31], [9, 10, 23, 22], [15, 2, 16, 17]] and b[:2].tolist() == [[4, 4, 12, 13], [5, 7, 23, 27]]
    assert hashlib.sha256(a.numpy().tobytes() + b.numpy().tobytes()).hexdigest()[:16] == "d7942aee3f080c7a"  # ladd 0.1.0's


def test_sampled_crops_fit_and_follow_the_scale_range():
    boxes = sample_crops(2000, 32, 32, generator(0))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = (h * w).float() / 1024
    assert area.min() >= 0.06 and area.max() <= 1 and 0.4 < area.mean() < 0.65  # scale U(0.08, 1), rounded sides
    for mix_per, draws in (("sample", 10), ("batch", 3)):
        ep = sample_epoch(10, 4, 32, 32, generator(1), mix_per=mix_per)
        assert torch.equal(crop_pixels(ep.crop, 32, 32), sample_crops(10, 32, 32, _after_randperm(1, 10)))
        # CutMix partners come from the sample's own relabel batch of 4 (positions 0-3, 4-7, 8-9)
        pos = {int(img): k for k, img in enumerate(ep.order)}
        assert all(pos[int(p)] // 4 == k // 4 for k, p in enumerate(ep.mix_index))
        assert ep.mix_lambda.shape == (draws,) and ep.mix_box.shape == (draws, 4)
        kept = 1 - ((ep.mix_box[:, 2] - ep.mix_box[:, 0]) * (ep.mix_box[:, 3] - ep.mix_box[:, 1])).float() / 1024
        torch.testing.assert_close(ep.mix_lambda, kept)  # λ is the area share actually kept
    lam, box = ep.mix(torch.tensor([0, 3, 4, 9]))  # one draw per relabel batch (the reference's one λ and box per batch)
    assert lam.tolist() == ep.mix_lambda[[0, 0, 1, 2]].tolist() and torch.equal(box, ep.mix_box[[0, 0, 1, 2]])


def _after_randperm(seed, n):
    g = generator(seed)
    torch.randperm(n, generator=g)
    return g


def test_replaying_the_stored_augmentation_reproduces_the_teachers_input_exactly(toy, tmp_path):
    _, art = _relabelled(toy, tmp_path)
    teacher, _, _ = build_teacher(toy, LabelConfig(method="soft", labeler=TEACHER), Runtime())
    replay = _replay(art, toy)
    positions = torch.arange(4 * 18)
    with torch.no_grad():  # the teacher's batches at relabel time: 6 rows of one epoch
        logits = torch.cat([teacher.logits(replay.inputs(p)) for p in positions.split(6)])
    assert torch.equal(logits, art.relabel.gather("labels"))  # float32 store: bit-exact inputs
    torch.testing.assert_close(replay.targets(positions), (logits / 20).softmax(-1))


def test_students_step_through_the_stored_relabel_batches_each_with_its_one_cutmix_draw(toy, tmp_path):
    _, art = _relabelled(toy, tmp_path)
    store = art.relabel
    steps = []

    class Record:
        def __call__(self, model, batch):
            steps.append(batch.stored)
            return (model(batch.x) * 0).sum(), len(batch.x)

    kept = prune_units(store, art.labels, Pruning(rho=2, pool="batch"))
    data = TrainData(art.images, art.labels, toy.mean, toy.std, replay=_replay(art, toy, kept, per_epoch=3))
    train(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)),
        data,
        {"r": Record()},
        Recipe(epochs=4, batch_size=5),
        seed=0,
        runtime=Runtime(),
    )
    assert len(steps) == 12 and all(any(torch.equal(s, u) for u in kept) for s in steps)  # each step is one kept relabel batch
    for s in steps:
        e, rows = s // 18, s % 18
        assert len(e.unique()) == 1 and rows.tolist() == list(range(int(rows[0]), int(rows[0]) + 6))
        lam, box = store.epoch(int(e[0])).mix(rows)
        assert len(lam.unique()) == 1 and len(box.unique(dim=0)) == 1  # the batch's one λ and box


def test_shuffled_replay_gives_the_same_inputs_and_labels_at_any_batch_size(toy, tmp_path):
    _, art = _relabelled(toy, tmp_path)
    replay = _replay(art, toy, units(art.relabel, "batch"), per_epoch=3, batches="shuffled")
    positions = torch.cat(replay.batches(0, generator(5), 18))
    assert len(positions) == 18
    whole_x, whole_y = replay.inputs(positions), replay.targets(positions)
    for size in (1, 4, 7):
        parts = positions.split(size)
        assert torch.equal(torch.cat([replay.inputs(p) for p in parts]), whole_x)
        assert torch.equal(torch.cat([replay.targets(p) for p in parts]), whole_y)

    seen = {}

    class Record:
        def __call__(self, model, batch):
            for p, x, t in zip(batch.stored.tolist(), batch.replay.inputs(batch.stored), batch.replay.targets(batch.stored)):
                seen.setdefault(size, {})[p] = (x, t)
            return (model(batch.x) * 0).sum(), len(batch.x)

    for size in (4, 18):
        data = TrainData(art.images, art.labels, toy.mean, toy.std, replay=replay)
        train(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)),
            data,
            {"r": Record()},
            Recipe(epochs=2, batch_size=size),
            seed=0,
            runtime=Runtime(),
        )
    assert seen[4].keys() == seen[18].keys() and len(seen[4]) == 36  # the trainer visits the same stored samples
    assert all(torch.equal(seen[4][p][0], seen[18][p][0]) and torch.equal(seen[4][p][1], seen[18][p][1]) for p in seen[4])


def test_pruning_keeps_exactly_one_over_rho_and_batch_pools_mix_epochs(toy, tmp_path):
    _, art = _relabelled(toy, tmp_path, epochs=10)
    store = art.relabel
    for pool, total in (("epoch", 10), ("batch", 30)):
        kept = prune_units(store, art.labels, Pruning(rho=10, pool=pool))
        assert len(kept) == total // 10 and sum(len(u) for u in kept) == 18  # 180 stored labels / 10
        assert len(torch.cat(kept).unique()) == 18
    assert len(prune_units(store, art.labels, Pruning(rho=1, pool="batch"))) == 30
    kept = prune_units(store, art.labels, Pruning(rho=5, pool="batch"))  # 6 batch units
    epochs_of = {int(u[0]) // 18 for u in kept}
    assert len(epochs_of) > 1  # the pool holds batches of several stored epochs
    replay = _replay(art, toy, kept, per_epoch=3)
    drawn = [torch.cat(replay.batches(e, generator(0), 18)) for e in range(4)]
    assert all(len(d) == 18 and set(d.tolist()) <= set(torch.cat(kept).tolist()) for d in drawn)
    assert any(len({int(p) // 18 for p in d}) > 1 for d in drawn)  # a new epoch made of batches from different epochs
    # two passes over the pool use every kept unit exactly twice
    assert sorted(torch.cat(drawn).tolist()) == sorted(torch.cat(kept).tolist() * 2)
    with pytest.raises(LaddError, match=r"--prune 0.5 must be >= 1"):
        Pruning(rho=0.5)
    with pytest.raises(LaddError, match="keeps 0 of the 10 stored epoch units"):
        prune_units(store, art.labels, Pruning(rho=20, pool="epoch"))
    with pytest.raises(LaddError, match="--pool 'step' is not one of epoch, batch"):
        Pruning(rho=2, pool="step")


def test_metric_pruning_ranks_units_by_their_labels(toy, tmp_path):
    _, art = _relabelled(toy, tmp_path, epochs=6)
    store = art.relabel
    conf = sample_scores(store, art.labels, "confidence")
    p0 = store.targets(0, torch.arange(18))
    torch.testing.assert_close(conf[0], p0.max(1).values.double())
    correct = sample_scores(store, art.labels, "correct")
    assert torch.equal(correct[0], (p0.argmax(1) == art.labels[store.files[0]["order"]]).double())
    lam = torch.stack([store.epoch(e).mix(torch.arange(18))[0] for e in range(6)])
    torch.testing.assert_close(sample_scores(store, art.labels, "cut_ratio"), lam.double() - 1)
    every = units(store, "batch")
    means = torch.tensor([conf.flatten()[u].mean().item() for u in every])
    easy = prune_units(store, art.labels, Pruning(rho=6, pool="batch", metric="confidence", keep="easy"))
    hard = prune_units(store, art.labels, Pruning(rho=6, pool="batch", metric="confidence", keep="hard"))

    def index(kept):
        return {next(i for i, u in enumerate(every) if torch.equal(u, k)) for k in kept}

    assert index(easy) == set(means.argsort(descending=True)[:3].tolist())
    assert index(hard) == set(means.argsort()[:3].tolist())
    assert len(prune_units(store, art.labels, Pruning(rho=6, pool="batch", metric="diff", keep="uniform"))) == 3
    with pytest.raises(LaddError, match="prune metric 'loss' is not one of"):
        sample_scores(store, art.labels, "loss")


def test_top_k_stores_values_and_indices(toy, tmp_path):
    _, art = _relabelled(toy, tmp_path, kind="probs", top_k=2, epochs=2)
    t = art.relabel.files
    assert len(t) == 2 and t[1]["label_values"].shape == (18, 2) and t[0]["label_index"].dtype == torch.int16 and "labels" not in t[0]
    target = art.relabel.targets(0, torch.arange(18))
    assert ((target > 0).sum(1) <= 2).all() and (target.sum(1) <= 1 + 1e-6).all()
    assert art.manifest["relabel"]["storage"]["labels"]["raw"] == 2 * 18 * 2 * (4 + 2)
    with pytest.raises(LaddError, match="add --label-kind probs"):
        RelabelConfig(top_k=2)


def test_storage_accounting_adds_up_to_the_bytes_on_disk(toy, tmp_path):
    path, art = _relabelled(toy, tmp_path, dtype="float16")
    storage = art.manifest["relabel"]["storage"]
    assert list(storage) == ["crop", "flip", "mix_index", "mix_lambda", "mix_box", "labels"]
    assert storage["labels"]["raw"] == 4 * 18 * 3 * 2 and storage["crop"]["raw"] == 4 * 18 * 4 * 4
    on_disk = 0
    for e in range(4):
        file = path / RELABEL_DIR / epoch_file(e)
        header = struct.unpack("<Q", file.read_bytes()[:8])[0]
        on_disk += file.stat().st_size - 8 - header  # tensor bytes of the file
    order = 4 * 18 * 8  # the sample order: a permutation, not one of the six components
    assert on_disk == sum(b["raw"] for b in storage.values()) + order
    assert art.manifest["relabel"]["label_to_image_ratio"] == sum(b["raw"] for b in storage.values()) / art.images.numel()
    assert art.manifest["relabel"]["soft_label_to_image_ratio"] == storage["labels"]["raw"] / art.images.numel()


def test_stored_files_are_validated_on_load(toy, tmp_path):
    path, _ = _relabelled(toy, tmp_path)
    directory = path / RELABEL_DIR
    info_path = directory / "relabel.json"
    info = json.loads(info_path.read_text())

    def rewrite(change):
        file = directory / epoch_file(1)
        tensors = load_file(file)
        change(tensors)
        save_file(tensors, file)
        info["files"][1] = sha256(file)
        info_path.write_text(json.dumps(info))

    original = load_file(directory / epoch_file(1))
    rewrite(lambda t: t.update(labels=t["labels"][:, :2].contiguous()))
    with pytest.raises(LaddError, match=r"labels is torch.float32 \(18, 2\), expected torch.float32 \(18, 3\)"):
        load_artifact(path)
    rewrite(lambda t: t.update(original, labels=original["labels"].clone().index_put_((torch.tensor([3]),), torch.tensor(float("nan")))))
    with pytest.raises(LaddError, match="labels contain NaN or infinite values"):
        load_artifact(path)
    rewrite(lambda t: t.update(original))
    load_artifact(path)
    info_path.write_text(json.dumps({k: v for k, v in info.items() if k != "mix_per"}))  # as an older ladd wrote it
    with pytest.raises(
        LaddError, match=r"relabel.json is malformed at mix_per: Field required \(run `ladd relabel` on the artifact again\)"
    ):
        load_artifact(path)
    info_path.write_text(json.dumps(info))
    (directory / epoch_file(2)).write_bytes((directory / epoch_file(3)).read_bytes())
    with pytest.raises(LaddError, match="does not match the SHA-256"):
        load_artifact(path)
    info["epochs"] = 5
    info_path.write_text(json.dumps(info))
    with pytest.raises(LaddError, match="lists 4 epoch files for 5 epochs"):
        load_artifact(path)


def test_resumed_relabel_equals_an_uninterrupted_one(toy, tmp_path, monkeypatch):
    import ladd.labels.relabel as mod

    full, _ = _relabelled(toy, tmp_path, "full")
    real = mod.write_epoch
    calls = iter(range(100))

    def stop_after_two(*args):
        if next(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mod, "write_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _relabelled(toy, tmp_path, "cut")
    assert len(json.loads((tmp_path / "cut" / PARTIAL / "relabel.json").read_text())["files"]) == 2
    monkeypatch.setattr(mod, "write_epoch", real)
    cut = tmp_path / "cut"
    art = pipeline.relabel(load_artifact(cut), cut, toy, RelabelConfig(epochs=4, batch_size=6, teacher=TEACHER, dtype="float32"), Runtime())
    save_artifact(cut, art)
    for e in range(4):
        assert (full / RELABEL_DIR / epoch_file(e)).read_bytes() == (cut / RELABEL_DIR / epoch_file(e)).read_bytes()
    with pytest.raises(LaddError, match="made with other settings or images: pass --overwrite"):
        pipeline.relabel(load_artifact(cut), cut, toy, RelabelConfig(epochs=5, batch_size=6, teacher=TEACHER), Runtime())


def test_fkd_students_train_on_the_pruned_pool_and_relabel_survives_relabelling(toy, tmp_path):
    path, art = _relabelled(toy, tmp_path)
    cfg = EvalConfig(
        methods=("fkd",), models=("convnet-w32",), seeds=1, protocol="fkd", epochs=2, lr=1e-3, pruning=Pruning(rho=2, pool="batch")
    )
    row = evaluate(art, toy, cfg, Runtime())[0]
    assert row["relabel_kept_samples"] == 36 and row["terms"] == ["replay"]
    assert row["batch_size"] == 6 and row["replay_batches"] == "stored"  # the relabel batches, not the protocol's 256
    with pytest.raises(LaddError, match="--batch-size 5: the student replays the stored relabel batches of 6 .*--replay-batches shuffled"):
        evaluate(art, toy, cfg.model_copy(update={"batch_size": 5}), Runtime())
    shuffled = cfg.model_copy(update={"batch_size": 5, "pruning": Pruning(rho=2, pool="batch", batches="shuffled")})
    assert evaluate(art, toy, shuffled, Runtime())[0]["batch_size"] == 5
    assert row["label_bytes_raw"] == sum(b["raw"] for b in art.relabel.storage().values()) // 2
    assert row["flops_labels"] > 0 and 0 <= row["acc_mean"] <= 1
    whole = evaluate(art, toy, cfg.model_copy(update={"pruning": Pruning()}), Runtime())[0]  # ρ = 1 reuses the relabel's measured bytes
    assert whole["relabel_storage"] == art.relabel.storage() and whole["relabel_kept_samples"] == 72
    # random pruning is charged the teacher forwards of the kept half; a metric reads every label to choose
    made = art.relabel.info["flops"]
    assert row["flops_labels"] == made["teacher_train"] + made["label_generation"] // 2 and whole["flops_labels"] == sum(
        made[k] for k in ("teacher_train", "label_generation")
    )
    scored = cfg.model_copy(update={"pruning": Pruning(rho=2, pool="batch", metric="confidence", keep="easy")})
    assert evaluate(art, toy, scored, Runtime())[0]["flops_labels"] == whole["flops_labels"]
    with pytest.raises(LaddError, match=r"--prune 0.5 must be >= 1"):
        EvalConfig(pruning={"rho": 0.5})
    bare = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=2))
    with pytest.raises(LaddError, match="run `ladd relabel ARTIFACT` first"):
        evaluate(bare, toy, cfg, Runtime())
    # `ladd label` re-saves the artifact: the stored relabel moves along and still validates
    labelled = pipeline.label(art, toy, LabelConfig(method="soft", labeler=TEACHER), Runtime())
    save_artifact(path, labelled)
    again = load_artifact(path)
    assert again.soft_labels is not None and torch.equal(again.relabel.gather("labels"), art.relabel.gather("labels"))


def test_a_method_on_a_labelers_labels_and_a_relabel_by_the_same_expert_pays_its_training_once(toy, tmp_path):
    """The labeler and the relabel teacher as checkpoints of one expert run (epoch 1 and 2): the
    training to epoch 2 includes epoch 1's, so `global-soft+replay` is not charged both."""
    run = TEACHER.model_copy(update={"epochs": 2})
    path, _ = _relabelled(toy, tmp_path, teacher=run)
    art = load_artifact(path)
    save_artifact(path, pipeline.label(art, toy, LabelConfig(method="soft", labeler=run, epoch=1), Runtime()))
    art = load_artifact(path)
    assert art.manifest["labels"]["labeler"]["directory"] == art.relabel.info["teacher"]["directory"]
    cfg = EvalConfig(methods=("global-soft", "fkd", "global-soft+replay"), models=("convnet-w32",), seeds=1, protocol="fkd", epochs=1)
    soft, fkd, both = evaluate(art, toy, cfg, Runtime())
    labeler_train, teacher_train = art.manifest["flops"]["labeler_train"], art.relabel.info["flops"]["teacher_train"]
    assert 0 < labeler_train < teacher_train  # to epoch 1, to epoch 2
    assert both["flops_labels"] == soft["flops_labels"] + fkd["flops_labels"] - labeler_train
    # another expert run (another seed) is charged in full
    other = TEACHER.model_copy(update={"epochs": 2, "seed": 1})
    save_artifact(path, pipeline.label(art, toy, LabelConfig(method="soft", labeler=other, epoch=1), Runtime()))
    soft, fkd, both = evaluate(load_artifact(path), toy, cfg, Runtime())
    assert both["flops_labels"] == soft["flops_labels"] + fkd["flops_labels"]


def test_deployment_flops_of_an_uneven_batch_pool_are_the_seeds_mean(toy, tmp_path):
    """18 images in relabel batches of 4 make units of 4 and 2 samples: a student's seed decides which
    it draws, so seeds forward different numbers of inputs; a row's FLOPs are one student's, the mean."""
    from ladd.cost import flops
    from ladd.eval.protocol import _relabel_pool, mean_count
    from ladd.experts import build_for

    _, art = _relabelled(toy, tmp_path, batch_size=4)
    cfg = EvalConfig(methods=("fkd",), models=("convnet-w32",), seeds=3, protocol="fkd", epochs=3, pruning=Pruning(rho=2, pool="batch"))
    pool = _relabel_pool(art, cfg, 1)
    replay = Replay(art.relabel, art.images, toy.mean, toy.std, pool["kept"], pool["per_epoch"], "stored")
    counts = []
    for seed in range(3):
        mine = replay.for_seed(seed)
        counts.append(sum(len(b) for epoch in range(3) for b in mine.batches(epoch, torch.Generator(), 4)))
    assert mean_count(counts) != counts[-1], counts  # the seeds differ, and the last is not their mean: the case this checks
    (row,) = evaluate(art, toy, cfg, Runtime())
    per_input = flops.training(build_for(toy, "convnet-w32", 0), toy.shape, 1)
    assert row["flops_deploy"] == per_input * mean_count(counts)


def test_digit_datasets_are_relabelled_without_flips_as_their_students_are_augmented(toy, tmp_path):
    """A flipped digit is another digit (DSA drops flip for them): their stored relabel flips none by
    default, records that, and draws everything else as a flipped relabel would."""
    on, off = sample_epoch(30, 6, 8, 8, generator(3)), sample_epoch(30, 6, 8, 8, generator(3), flip=False)
    assert on.flip.any() and not off.flip.any()
    for field in ("order", "crop", "mix_index", "mix_lambda", "mix_box"):
        assert torch.equal(getattr(on, field), getattr(off, field)), field
    assert RelabelConfig().flips("cifar10") and not RelabelConfig().flips("mnist5k") and RelabelConfig(flip=True).flips("digits")
    assert "flip" not in RelabelConfig().settings("cifar10") and RelabelConfig().settings("digits")["flip"] is False
    digits = dataclasses.replace(toy, name="digits")
    path, _ = _relabelled(toy, tmp_path)  # "toy" is not a digit set: flipped as the reference
    assert load_artifact(path).relabel.gather("flip").any()
    cfg = RelabelConfig(epochs=4, batch_size=6, teacher=TEACHER, dtype="float32")
    with pytest.raises(LaddError, match="holds a relabel made with other settings or images: pass --overwrite"):
        pipeline.relabel(load_artifact(path), path, digits, cfg, Runtime())
    save_artifact(path, pipeline.relabel(load_artifact(path), path, digits, cfg, Runtime(), overwrite=True))
    art = load_artifact(path)
    assert not art.relabel.gather("flip").any() and art.relabel.info["config"]["flip"] is False


def test_a_relabel_made_at_another_precision_is_not_reused(toy, tmp_path):
    """The teacher labels under the runtime's autocast: bf16 labels are not fp32's, so a stored fp32
    relabel is not taken for a bf16 one (nor resumed with bf16 epochs)."""
    from ladd.core.runtime import Speed

    path, _ = _relabelled(toy, tmp_path)
    cfg = RelabelConfig(epochs=4, batch_size=6, teacher=TEACHER, dtype="float32")
    bf16 = Runtime.from_name("cpu", Speed(precision="bf16"))
    with pytest.raises(LaddError, match="holds a relabel made with other settings or images: pass --overwrite"):
        pipeline.relabel(load_artifact(path), path, toy, cfg, bf16)
    save_artifact(path, pipeline.relabel(load_artifact(path), path, toy, cfg, bf16, overwrite=True))
    assert load_artifact(path).relabel.info["config"]["precision"] == "bf16"


def test_a_replayed_relabel_trains_the_same_in_micro_batches(toy, tmp_path):
    """Micro-batches of a replayed step read their slice of the step's stored positions: the
    weights equal one pass over each whole stored batch."""
    from ladd.core.runtime import Speed
    from ladd.train.terms import ReplayTerm

    _, art = _relabelled(toy, tmp_path)
    weights, samples, passes = [], [], []
    for micro_batch in (None, 4):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        torch.manual_seed(0)
        model[1].reset_parameters()
        start = model[1].weight.detach().clone()
        model.register_forward_hook(lambda m, i, o: passes.append((micro_batch, len(i[0]))))
        data = TrainData(art.images, art.labels, toy.mean, toy.std, replay=_replay(art, toy))
        log = train(
            model,
            data,
            {"replay": ReplayTerm()},
            Recipe(epochs=2, batch_size=6),
            seed=0,
            runtime=Runtime(speed=Speed(micro_batch=micro_batch)),
        )
        weights.append(model.state_dict())
        samples.append(log.samples)
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6, rtol=0) for k in weights[0])
    assert not torch.allclose(weights[0]["1.weight"], start)  # it trained
    assert samples[0] == samples[1] == {"replay": 2 * 18}  # each stored position forwarded once per epoch
    assert sorted({rows for m, rows in passes if m == 4}) == [2, 4] and {rows for m, rows in passes if m is None} == {6}


def test_the_store_maps_its_epoch_files_and_gathers_positions_across_epochs(toy, tmp_path):
    """Every process maps the epoch files (page cache shared by a node's ranks) instead of holding
    a copy; `gather` reads flat positions (epoch · K + row) in any order across epochs."""
    _, art = _relabelled(toy, tmp_path)
    store = art.relabel
    maps = Path("/proc/self/maps").read_text()
    assert all(str(store.directory / epoch_file(e)) in maps for e in range(store.epochs))
    every = torch.cat([store.files[e]["labels"] for e in range(store.epochs)])
    assert torch.equal(store.gather("labels"), every)
    at = torch.tensor([70, 3, 18, 71, 0, 40])  # epochs 3, 0, 1, 3, 0, 2 of 18 rows
    assert torch.equal(store.gather("labels", at), every[at])
    assert torch.equal(store.gather("order", at), torch.stack([store.files[int(p) // 18]["order"][int(p) % 18] for p in at]))


def test_storage_is_what_the_concatenated_tensors_compress_to(toy, tmp_path, monkeypatch):
    """Each tensor is counted as one zip entry of its epochs (or its kept rows, gathered a few at a
    time) streamed through DEFLATE: the same bytes as writing the concatenated tensor whole."""
    import io
    import zipfile

    import ladd.artifact.relabel as rel

    def whole(t, name):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, t.contiguous().numpy().tobytes())
        return len(buf.getvalue())

    _, art = _relabelled(toy, tmp_path)
    store = art.relabel
    monkeypatch.setattr(rel, "CHUNK", 40)  # a few rows per gathered chunk
    at = torch.tensor([70, 3, 18, 71, 0, 40, 41])
    for positions in (None, at):
        got = store.storage(positions)
        for name in ("crop", "flip", "mix_index", "labels"):
            t = store.gather(name, positions)
            assert got[name] == {"raw": t.numel() * t.element_size(), "zip": whole(t, name)}, name
