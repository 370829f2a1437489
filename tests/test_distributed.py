"""torchrun: the trainer under DDP equals one process, experts train with every rank, a killed
rank stops the job and a re-launch continues, two 'nodes' on localhost give the same result, and
a rank's exit (without the interpreter's teardown) keeps its code, exit hooks and output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed import ENV, free_port, ladd, spawn, torchrun
from conftest import make_dataset
from ladd.core import dist

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _train(batch_size: int, term_weights: str = "fixed", micro_batch: int | None = None) -> dict:
    """A ConvNet trained 2 epochs on a toy set with DSA and LADD's two terms (global + K drawn
    sub-images against dense labels): weights, log, and how many rows this rank forwarded, in
    forward passes of at most `micro_batch` images."""
    from ladd.core.runtime import Runtime, Speed
    from ladd.experts import build_for
    from ladd.train.loop import Recipe, TrainData, train
    from ladd.train.terms import method_terms

    toy = make_dataset(n_per_class=10, classes=3, size=16)
    g = torch.Generator().manual_seed(0)
    dense = torch.softmax(torch.randn(len(toy.train), 4, 3, generator=g), -1)
    data = TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std, dense=dense, geometry=(2, 0.5))
    model = build_for(toy, "convnet", 0)
    rows = []
    model.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    recipe = Recipe(epochs=2, batch_size=batch_size, lr=0.01, dsa="color_crop_cutout_scale_rotate", term_weights=term_weights)
    runtime = Runtime.from_name("cpu", Speed(micro_batch=micro_batch))
    log = train(model, data, method_terms("ladd", crops_per_step=2), recipe, seed=0, runtime=runtime)
    return {
        "state": model.state_dict(),
        "samples": log.samples,
        "loss": log.epoch_loss,
        "weights": log.term_weights,
        "rows": sum(rows),
        "images_per_pass": max(rows) // 2,  # the largest pass is a sub-image pass: 2 crops per image
        "world": dist.world(),
    }


@pytest.mark.parametrize(
    "term_weights,batch_size,micro_batch", [("fixed", 7, None), ("learned", 7, None), ("fixed", 29, None), ("learned", 7, 3)]
)
def test_ddp_training_equals_one_process(term_weights, batch_size, micro_batch):
    """Batch 7 over 30 images: shares of 3 and 4 rows, and a last batch of 2 (one row per rank).
    Batch 29: a last batch of one row, so rank 1 has none: it forwards a stand-in row weighted 0 (it
    skipped DDP's gradient all-reduce and the augmentation draws, and the ranks parted ways).
    Micro-batches of 3: rank 0 forwards its 3 rows at once, rank 1 its 4 in two parts, and each rank
    still takes part in one gradient all-reduce per step."""
    one = _train(batch_size, term_weights)
    ranks = spawn(_train, batch_size, term_weights, micro_batch)
    # only the gradient sums' order differs; ten SGD steps carry that rounding to ~3e-6 when this
    # process runs one OpenMP thread (OMP_NUM_THREADS=1); a wrong average or share is ~1e-2
    tol = 1e-5
    assert [r["world"] for r in ranks] == [2, 2] and one["world"] == 1
    for r in ranks:
        for k, v in one["state"].items():
            assert torch.allclose(r["state"][k], v, atol=tol, rtol=0), k
        assert r["samples"] == one["samples"]  # inputs forwarded by all ranks together
        assert r["loss"] == pytest.approx(one["loss"], abs=tol)
        assert (r["weights"] is None) == (term_weights == "fixed")
        assert r["weights"] == (None if r["weights"] is None else pytest.approx(one["weights"], abs=tol))
    stand_in = 0 if batch_size == 7 else 2 * (1 + 2)  # per epoch one row: its global view and 2 sub-images
    assert ranks[0]["rows"] + ranks[1]["rows"] == one["rows"] + stand_in  # each rank forwarded only its share
    assert 0 < ranks[1]["rows"] < one["rows"]
    assert max(r["images_per_pass"] for r in ranks) == (micro_batch or -(-batch_size // 2))  # the larger share, or a part


@pytest.mark.parametrize("micro_batch", [1, 3])
def test_micro_batches_give_the_whole_batch_step(micro_batch):
    """A step's batch of 7 in parts of at most `micro_batch` images (with DSA, K drawn crops and
    learned term weights) trains the weights one pass over the whole batch trains."""
    whole, parts = _train(7, "learned"), _train(7, "learned", micro_batch)
    assert parts["images_per_pass"] == micro_batch and whole["images_per_pass"] == 7
    for k, v in whole["state"].items():
        assert torch.allclose(parts["state"][k], v, atol=1e-5, rtol=0), k
    assert parts["samples"] == whole["samples"] and parts["rows"] == whole["rows"]
    assert parts["loss"] == pytest.approx(whole["loss"], abs=1e-5)
    assert parts["weights"] == pytest.approx(whole["weights"], abs=1e-5)


def _weights(directory: Path, epoch: int) -> dict:
    return load_file(directory / f"epoch_{epoch:03d}.safetensors")


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)


def test_experts_train_with_every_rank_and_a_killed_rank_resumes(tmp_path):
    epochs = 16
    args = ("experts", "--dataset", "digits", "--num-experts", "1", "--epochs", epochs)
    assert ladd(*args, "--out", tmp_path / "one").returncode == 0
    # a launch whose rank 1 is killed mid-training: the job fails, naming the lost rank
    launch = [*dist.launch_command(2), *map(str, args), "--out", str(tmp_path / "two")]
    job = subprocess.Popen(launch, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expert = tmp_path / "two" / "expert_000"
    deadline = time.monotonic() + 120
    while not (expert / "epoch_003.safetensors").exists():
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before it could be killed"
        time.sleep(0.05)
    victim = _worker(job.pid, rank=1)
    os.kill(victim, signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0
    assert "Signal 9" in err or "SIGKILL" in err, err[-2000:]
    done = max(int(p.stem.removeprefix("epoch_")) for p in expert.glob("epoch_*.safetensors"))
    assert done < epochs  # stopped part-way
    # the same command again continues from the last checkpoint and ends where one process ends
    again = torchrun(*args, "--out", tmp_path / "two")
    assert again.returncode == 0, again.stderr[-8000:]  # enough to hold a rank's own error above the launcher's report
    assert "resuming from" in again.stderr and "epoch 0/" not in again.stderr
    for epoch in range(epochs + 1):
        assert _close(_weights(expert, epoch), _weights(tmp_path / "one" / "expert_000", epoch)), epoch


def _worker(agent: int, rank: int) -> int:
    """The pid of torchrun's worker process of `rank`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} under {agent}")


def test_two_nodes_on_localhost_give_the_one_process_result(tmp_path):
    args = ("experts", "--dataset", "digits", "--num-experts", "1", "--epochs", "2")
    assert ladd(*args, "--out", tmp_path / "one").returncode == 0
    port = free_port()

    def node(i):
        return (
            "--nnodes",
            "2",
            "--node_rank",
            str(i),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"127.0.0.1:{port}",
            "--rdzv_id",
            "ladd-test",
        )

    second = subprocess.Popen(
        [*dist.launch_command(1, node(1)), *map(str, args), "--out", str(tmp_path / "two")],
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = torchrun(*args, "--out", tmp_path / "two", nproc=1, launcher=node(0))
    _, err = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + err[-2000:]
    for epoch in (1, 2):
        assert _close(_weights(tmp_path / "two" / "expert_000", epoch), _weights(tmp_path / "one" / "expert_000", epoch))


def test_an_expert_on_a_dataset_store_trains_under_torchrun_and_the_store_is_built_once(tmp_path):
    from test_store import write_folder

    data = write_folder(tmp_path / "data", train=6)
    args = ("experts", "--dataset", "imagefolder", "--data-dir", data, "--resolution", "12", "--num-experts", "1", "--epochs", "2")
    two = torchrun(*args, "--out", tmp_path / "two")  # both ranks open the folder: one decodes it, the other waits
    assert two.returncode == 0, two.stderr[:4000] + "\n…\n" + two.stderr[-2000:]  # a rank's own error comes before the launcher's
    stores = list((Path(os.environ["LADD_CACHE"]) / "data").iterdir())
    assert len([s for s in stores if not s.name.startswith(".")]) == 1
    one = ladd(*args, "--out", tmp_path / "one")  # reuses that store: each rank read its share of it by index
    assert one.returncode == 0, one.stderr[-2000:]
    for epoch in (1, 2):
        assert _close(_weights(tmp_path / "two" / "expert_000", epoch), _weights(tmp_path / "one" / "expert_000", epoch))


def _helpers() -> dict:
    from ladd.core.errors import LaddError

    out = {
        "mine": list(dist.mine(5)),
        "part": dist.part(7),
        "merged": dist.merge({u: u * u for u in dist.mine(5)}),
        "summed": dist.all_sum(torch.tensor([dist.rank() + 1.0])).item(),
        "first": dist.first(lambda: dist.rank()),
    }
    with dist.alone():
        out["alone"] = (dist.world(), list(dist.mine(3)))

    def fail():
        raise LaddError("bad input on rank 0")

    try:
        dist.first(fail)
    except LaddError as e:
        out["error"] = str(e)
    return out


def test_rank_helpers_divide_work_and_share_rank_zeros_outcome():
    r0, r1 = spawn(_helpers)
    assert (r0["mine"], r1["mine"]) == ([0, 2, 4], [1, 3])
    assert (r0["part"], r1["part"]) == (slice(0, 3), slice(3, 7))
    assert r0["merged"] == r1["merged"] == {u: u * u for u in range(5)}
    assert r0["summed"] == r1["summed"] == 3.0 and r0["first"] == r1["first"] == 0
    assert r0["alone"] == r1["alone"] == (1, [0, 1, 2])  # inside alone() each rank is one process
    assert r0["error"] == "bad input on rank 0"
    assert r1["error"] == "rank 0 failed (LaddError: bad input on rank 0), so this rank stops too"


def test_a_launch_command_reads_as_typed():
    assert dist.typed([*dist.launch_command(2), "eval", "a b"]) == "torchrun --standalone --nproc_per_node 2 -m ladd eval 'a b'"
    assert dist.typed([sys.executable, "-m", "ladd", "eval", "x"]) == "ladd eval x"
    assert dist.typed(["other", "x"]) == "other x"


def _dropout_run(folder: str, stop_after: int | None) -> dict:
    """A ViT (dropout) trained 4 epochs under DDP on shares of 3 and 4 rows, checkpointing into
    `folder`; `stop_after` E: every rank stops after epoch E's checkpoint, as a kill would."""
    from ladd.core.runtime import Runtime
    from ladd.experts import build_for
    from ladd.train.loop import Recipe, TrainData, train
    from ladd.train.terms import method_terms

    toy = make_dataset(n_per_class=5, classes=2, size=8)
    data = TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std)
    model = build_for(toy, "vit", 0)

    def stop(epoch, *_):
        if epoch == stop_after:
            raise KeyboardInterrupt

    try:
        train(model, data, method_terms("baseline"), Recipe(epochs=4, batch_size=7, lr=0.01), seed=0, runtime=Runtime.from_name("cpu"),
              checkpoint_dir=Path(folder), after_epoch=stop)  # fmt: skip
    except KeyboardInterrupt:
        return {}
    return model.state_dict()


def test_each_rank_resumes_its_own_dropout_stream(tmp_path):
    """Ranks draw their global RNG unequally (dropout over shares of 3 and 4 rows): the state keeps
    every rank's, so a DDP run killed after epoch 2 resumes to the uninterrupted weights."""
    whole, _ = spawn(_dropout_run, str(tmp_path / "whole"), None)
    assert spawn(_dropout_run, str(tmp_path / "killed"), 2) == [{}, {}]
    resumed, _ = spawn(_dropout_run, str(tmp_path / "killed"), None)
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)


def _speaking() -> tuple:
    """Whether progress is silenced, and a run-log line, outside and inside a unit of this rank's own."""
    from ladd.core import progress

    os.environ.pop("LADD_NO_PROGRESS")
    rank = dist.rank()  # inside alone() every rank is rank 0 of 1
    progress.log(f"shared line from rank {rank}")
    with dist.alone():
        progress.log(f"own unit of rank {rank}")
        return progress.quiet(), dist.own_work()


def test_a_rank_reports_the_progress_of_the_units_it_trains_alone(capfd):
    """Rank 0 speaks for the job; another rank speaks only of its own units (a student it trains
    alone), prefixed with its rank, since rank 0 cannot see their progress."""
    r0, r1 = spawn(_speaking)
    assert r0 == r1 == (False, True)
    err = capfd.readouterr().err.splitlines()
    assert "shared line from rank 0" in err and "own unit of rank 0" in err
    assert "rank 1 of 2: own unit of rank 1" in err
    assert not any("shared line from rank 1" in line for line in err)


EXIT = """
import atexit, sys
from pathlib import Path
from ladd.core import dist
atexit.register(lambda: Path(sys.argv[1]).write_text("hooks ran"))
print("unterminated", end="")
dist.exit(3)
print("never")
"""


@pytest.mark.parametrize("world", ["1", "2"])
def test_exit_keeps_the_code_runs_the_exit_hooks_and_flushes_output(tmp_path, world):
    """A rank ends through `dist.exit` without the interpreter's teardown (os._exit): its exit
    code, the exit hooks (log files, temporary folders) and buffered output must survive that."""
    done = subprocess.run(
        [sys.executable, "-c", EXIT, str(tmp_path / "hook")],
        env={**os.environ, **ENV, "WORLD_SIZE": world},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unterminated"
    assert (tmp_path / "hook").read_text() == "hooks ran"
