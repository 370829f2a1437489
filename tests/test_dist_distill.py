"""torchrun: DM, DC and DSA split their classes over the ranks and still learn one process's images
(bit for bit: each class's terms are computed the same way, and the ranks' image gradients touch
disjoint pixels); rank 0 alone writes the checkpoints, which every rank resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_dataset
from distributed import ladd, spawn, torchrun

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# few iterations, eager (no compile); DC/DSA: 2 rounds per network, so rounds 2-3 (a new network)
# come after the counted first cycle, which every rank runs whole
PARAMS = {
    "dm": {"iterations": 3, "batch_real": 4, "compile": False},
    "dc": {"iterations": 2, "outer_loop": 2, "inner_loop": 1, "batch_real": 4, "batch_train": 4, "compile": False},
}
PARAMS["dsa"] = PARAMS["dc"]


def _distill(root: str) -> dict:
    """DM, DC and DSA at IPC 2 on 5 toy classes (rank 0: 0, 2, 4; rank 1: 1, 3), and DM again
    stopped after 2 of 3 iterations and resumed: the float images, the logged losses, FLOPs, and
    the classes whose real images this rank read outside the counted (whole) iterations."""
    import ladd.images.dm as dm
    import ladd.images.gradient_matching as gm
    import ladd.images.optimize as opt_mod
    from ladd.core import dist
    from ladd.images import ImageRequest, make_images

    toy = make_dataset(n_per_class=6, classes=5)
    read: set[int] = set()
    saves = []

    def gather(images, idx):
        if dist.active():  # a split iteration, not a counted one
            read.update(toy.train.labels[idx].flatten().tolist())
        return images[idx]

    dm.gather = gm.gather = gather
    real_save = opt_mod.save_state
    opt_mod.save_state = lambda *a, **k: (saves.append(dist.rank()), real_save(*a, **k))
    out = {"world": dist.world()}
    for method in ("dm", "dc", "dsa"):
        read.clear()
        got = make_images(method, ImageRequest(toy, 2, params=PARAMS[method], float_images=True))
        out[method] = {"images": got.images, "flops": got.flops, "read": sorted(read)}
    folder = Path(root) / f"world{dist.world()}"
    request = ImageRequest(toy, 2, params={**PARAMS["dm"], "iterations": 2}, checkpoint_dir=folder, float_images=True)
    make_images("dm", request)
    dist.barrier()  # rank 0 has written the checkpoint of iteration 2
    resumed = make_images("dm", ImageRequest(toy, 2, params=PARAMS["dm"], checkpoint_dir=folder, resume=True, float_images=True))
    out["resumed"], out["saves"] = resumed.images, len(saves)
    return out


def test_classes_split_over_ranks_give_one_process_images(tmp_path):
    one, *_ = spawn(_distill, str(tmp_path), world=1)  # a fresh process on one thread, as each rank
    ranks = spawn(_distill, str(tmp_path))
    assert one["world"] == 1 and [r["world"] for r in ranks] == [2, 2]
    for r in ranks:
        for method in ("dm", "dc", "dsa"):
            assert torch.equal(r[method]["images"], one[method]["images"]), method
            assert r[method]["flops"] == one[method]["flops"]  # counted whole, as one process
        assert torch.equal(r["resumed"], one["dm"]["images"])  # resumed from rank 0's checkpoint
    for method in ("dm", "dc", "dsa"):  # each rank read only its own classes' real images
        assert ranks[0][method]["read"] == [0, 2, 4] and ranks[1][method]["read"] == [1, 3]
    assert ranks[0]["saves"] == one["saves"] == 2 and ranks[1]["saves"] == 0  # only rank 0 writes checkpoints


def test_torchrun_dm_equals_one_process(tmp_path):
    """The CLI: `torchrun … ladd distill --images dm` writes one process's artifact and checkpoint."""
    args = (
        "distill",
        "--dataset",
        "digits",
        "--ipc",
        "1",
        "--images",
        "dm",
        "--float-images",
        "--param",
        "iterations=4",
        "--param",
        "checkpoint_every=2",
        "--param",
        "compile=false",
    )
    one = ladd(*args, "--out", tmp_path / "one", env={"LADD_CACHE": str(tmp_path / "c1")})
    two = torchrun(*args, "--out", tmp_path / "two", env={"LADD_CACHE": str(tmp_path / "c2")})
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    for name in ("images.safetensors", "labels.safetensors", "manifest.json"):  # manifest: FLOPs included
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert two.stderr.count("checkpoint: iteration 4/4") == 1  # rank 0 writes and says so, once
    states = [load_file(next((tmp_path / c).rglob("images_state.safetensors"))) for c in ("c1", "c2")]
    # plus each rank's own global RNG, which a resume under torchrun restores per rank (rank 0's is the global one)
    assert set(states[1]) - set(states[0]) == {"t.rng.0.cpu", "t.rng.1.cpu"} and set(states[0]) <= set(states[1])
    assert torch.equal(states[1]["t.rng.0.cpu"], states[1]["torch_rng"])
    for k in states[0]:  # images, momentum, generator and RNG states: the one-process checkpoint
        if k == "t.losses":  # the ranks' loss shares are summed in another order: equal to rounding
            torch.testing.assert_close(states[0][k], states[1][k], rtol=1e-6, atol=0)
        else:
            assert torch.equal(states[0][k], states[1][k]), k
