"""Labels under torchrun: dense and global soft labels, `ladd relabel` and BPTT labels on 2 ranks
give one process's bytes, with the chunks (relabel: the epochs) divided between the ranks."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from conftest import make_dataset
from distributed import ladd, spawn, torchrun
from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.runtime import Runtime
from ladd.experts import ExpertConfig
from ladd.labels import LABEL_METHODS, LabelConfig
from ladd.labels.bptt import BpttConfig
from ladd.labels.relabel import PARTIAL, RelabelConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TEACHER = ExpertConfig(model="convnet-w32", epochs=1, batch_size=6)
RELABEL = RelabelConfig(epochs=4, batch_size=6, teacher=TEACHER, dtype="float32")
BPTT = LabelConfig(method="bptt", bptt=BpttConfig(iterations=2, unroll=2, backprop=1, batch_target=6, checkpoint_every=1))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(tmp: Path, name: str) -> dict:
    """Dense, global and BPTT labels of the toy artifact `tmp/name`, and its relabel resumed there;
    with what this process computed: teacher rows forwarded, relabel epochs written, BPTT runs."""
    import ladd.labels.methods as methods
    import ladd.labels.relabel as rel
    from ladd.core import dist
    from ladd.labels.dense import dense_labels, global_labels

    toy, runtime, path = make_dataset(), Runtime.from_name("cpu"), tmp / name
    art = load_artifact(path)
    teacher = methods.build_teacher(toy, LabelConfig(labeler=TEACHER), runtime)[0]
    rows = []
    teacher.register_forward_hook(lambda m, i, o: rows.append(len(i[0])))
    dense, soft = dense_labels(teacher, art.images, toy.mean, toy.std, 2, 0.5, per_pass=8, runtime=runtime)  # 9 chunks of 2
    whole = global_labels(teacher, art.images, toy.mean, toy.std, batch_size=4, runtime=runtime)  # 5 chunks
    epochs, learned = [], []
    write_epoch, learn_labels, cache = rel.write_epoch, methods.learn_labels, os.environ["LADD_CACHE"]
    load_store = pipeline.load_store
    rel.write_epoch = lambda d, e, *a: (epochs.append(e), write_epoch(d, e, *a))[1]
    methods.learn_labels = lambda *a, **k: (learned.append(1), learn_labels(*a, **k))[1]
    # rank 1 reads the finished relabel late: rank 0 must not move relabel.partial/ into place before
    pipeline.load_store = lambda *a: (time.sleep(1.0 if dist.rank() == 1 else 0), load_store(*a))[1]
    try:
        pipeline.relabel_artifact(path, toy, RELABEL, runtime)
        os.environ["LADD_CACHE"] = str(tmp / f"cache-{name}")  # BPTT learns from scratch here
        bptt = LABEL_METHODS.get("bptt")(art, toy, BPTT, runtime).soft
    finally:
        rel.write_epoch, methods.learn_labels, os.environ["LADD_CACHE"] = write_epoch, learn_labels, cache
        pipeline.load_store = load_store
    return {
        "dense": dense,
        "soft": soft,
        "global": whole,
        "bptt": bptt,
        "rows": sum(rows),
        "epochs": epochs,
        "learned": len(learned),
        "world": dist.world(),
    }


def test_label_chunks_and_relabel_epochs_divide_between_ranks(tmp_path):
    toy, runtime = make_dataset(), Runtime.from_name("cpu")
    art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=6))  # 18 images
    save_artifact(tmp_path / "one", art)
    import ladd.labels.relabel as rel

    write_epoch = rel.write_epoch

    def first_only(directory, e, *args):
        if e > 0:
            raise KeyboardInterrupt
        return write_epoch(directory, e, *args)

    rel.write_epoch = first_only
    try:
        with pytest.raises(KeyboardInterrupt):  # trains the teacher, stops after epoch 0
            pipeline.relabel_artifact(tmp_path / "one", toy, RELABEL, runtime)
    finally:
        rel.write_epoch = write_epoch
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    assert len(list((tmp_path / "two" / PARTIAL).glob("epoch_*"))) == 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank
    try:
        one = _labels(tmp_path, "one")
    finally:
        torch.set_num_threads(threads)
    ranks = spawn(_labels, tmp_path, "two")
    assert one["world"] == 1 and [r["world"] for r in ranks] == [2, 2]
    for r in ranks:  # every rank holds one process's bytes
        for k in ("dense", "soft", "global", "bptt"):
            assert torch.equal(r[k], one[k]), k
    # dense: 9 chunks of 2 images (2×2 crops + the image each) → ranks 0 and 1 forward 5 and 4 chunks;
    # global: chunks 0, 2, 4 (4+4+2 images) and 1, 3
    assert one["rows"] == 18 * 5 + 18 and [r["rows"] for r in ranks] == [5 * 2 * 5 + 10, 4 * 2 * 5 + 8]
    assert one["epochs"] == [1, 2, 3] and [r["epochs"] for r in ranks] == [[1, 3], [2]]  # resumed after epoch 0
    assert one["learned"] == 1 and [r["learned"] for r in ranks] == [1, 0]  # BPTT: rank 0 learns, rank 1 takes its labels
    assert _files(tmp_path / "one") == _files(tmp_path / "two")  # relabel epochs, relabel.json and manifest


def test_cli_label_and_relabel_under_torchrun_store_one_process_bytes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    source = pipeline.SourceConfig(dataset="digits")
    save_artifact(one, pipeline.distill(pipeline.load_source(source), source, pipeline.ImagesConfig(ipc=1)))
    shutil.copytree(one, two)
    label = ("--labels", "ladd", "--labeler-epochs", "1")  # 10 images in 5 chunks of 2
    relabel = ("--epochs", "3", "--batch-size", "4", "--teacher-model", "convnet", "--teacher-epochs", "1")  # the same expert
    for args in (("label", *label), ("relabel", *relabel)):
        run = ladd(args[0], one, *args[1:])  # trains the labeler (DDP would round it differently: tests/test_distributed.py)
        assert run.returncode == 0, run.stderr
        run = torchrun(args[0], two, *args[1:])
        assert run.returncode == 0, run.stderr
        assert "reusing the expert" in run.stderr
    files = _files(one)
    assert {"dense_labels.safetensors", "soft_labels.safetensors", "relabel/relabel.json", "relabel/epoch_0002.safetensors"} <= set(files)
    assert files == _files(two)


def _concat() -> list:
    """`dist.concat` of units that hold −0.0, NaN and infinities in three dtypes, with 3 units
    (rank 0 does 0 and 2) and with 1 (rank 1 has none)."""
    from ladd.core import dist

    units = {
        dtype: [torch.tensor([[-0.0, float("nan")], [float("-inf"), 1.5]] * (u + 1)).to(dtype) * (u + 1) for u in range(3)]
        for dtype in (torch.float32, torch.float16, torch.bfloat16)
    }
    units[torch.bool] = [torch.tensor([[True, False]] * (u + 1)) for u in range(3)]
    return [dist.concat({u: ts[u] for u in dist.mine(count)}, count) for ts in units.values() for count in (3, 1)]


def test_concat_gives_every_rank_one_process_bytes():
    one = _concat()
    for rank in spawn(_concat):
        assert [(t.dtype, t.shape) for t in rank] == [(t.dtype, t.shape) for t in one]
        assert all(torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)) for a, b in zip(rank, one))
