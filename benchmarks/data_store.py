"""The dataset store (ladd.data.store): build time with 1 vs all decode workers, read-back speed in
training order, and the peak resident memory of a command that trains on the store.

1. A synthetic ImageNet-like folder: `--images` training JPEGs (default 50,000) in `--classes`
   class folders (default 100) plus a tenth as many in val/, each a random size between 120 and
   500 pixels a side (both aspect ratios), smooth class-tinted content with noise, JPEG quality 90.
   Generated once in parallel into `--folder` (default runs/bench/data_store_folder) and reused.
2. Build: `ladd data prepare --workers 1` and `--workers N` (N = `--workers`, default every CPU),
   each in a fresh process and an empty cache: wall seconds, the store's decode seconds, the
   child's peak RSS.
3. Read back one epoch in training order (a random permutation in `--batch-size` batches) from the
   store, page cache warm (just built): images/s of
   - `stream.batches`: what the trainer uses, pread gathers sorted by offset, a background thread
     reading ahead;
   - `stream.gather` on the main thread (no read-ahead);
   - indexing the memory-mapped tensor (`images[idx]`): what a plain tensor consumer does; every
     page it touches stays mapped, so it also reports the RSS this adds;
   - a torch DataLoader (`--loader-workers` worker processes, whole batches per `__getitem__`).
4. Peak RSS (VmHWM: anonymous and file-backed pages, so mapped store pages would count) of a child
   doing what `ladd label` does with the data: open the source, train a labeler one epoch on the
   whole training split through the trainer, predict the test split; `--rss-model` (default
   convnet-w32) at `--rss-batch` (default 64), so the model's activations stay well under the
   goal; and the same child with the splits first copied into memory (the old loader's footprint).
   Goal: peak RSS < 2 GB while the store is > 2 GB (at 128 px, 50,000 images are 2.46 GB).
   `--cli` also runs `ladd distill --images random --ipc 1`, `ladd label --labels soft
   --labeler-epochs 1` and `ladd eval` as children (peak RSS from wait4): at their fixed batch
   sizes (256 to train, 512 to test) a ConvNet's activations at 128 px alone take several GB on
   CPU, so those numbers measure the model, not the data.

    python benchmarks/data_store.py --out runs/bench/data_store.json              # full size (minutes)
    python benchmarks/data_store.py --images 2000 --out runs/bench/data_store_2k.json  # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

GB = 1e9


# --- 1. the folder ---------------------------------------------------------------------------------------


def _write_images(job: tuple[str, int, int, int]) -> int:
    """Write `count` JPEGs of class `label` into `folder`; returns their bytes."""
    from PIL import Image

    folder, label, count, seed = job
    rng = np.random.default_rng(seed)
    base = np.array([(label * 37) % 256, (label * 91) % 256, (label * 151) % 256], np.float32)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(count):
        w, h = (int(v) for v in rng.integers(120, 501, 2))
        coarse = (rng.random((8, 8, 3)) * 120 + base * 0.5).clip(0, 255).astype(np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32)
        image = (image + rng.normal(0, 12, image.shape)).clip(0, 255).astype(np.uint8)
        path = out / f"img_{i:06d}.JPEG"
        Image.fromarray(image).save(path, quality=90)
        total += path.stat().st_size
    return total


def make_folder(root: Path, images: int, classes: int, seed: int, workers: int) -> dict:
    """The synthetic folder at `root` (reused when its recipe matches), and what it holds."""
    recipe = {"images": images, "classes": classes, "seed": seed, "val_images": max(classes, images // 10)}
    marker = root / "folder.json"
    if marker.is_file() and json.loads(marker.read_text()).get("recipe") == recipe:
        return json.loads(marker.read_text())
    shutil.rmtree(root, ignore_errors=True)
    jobs = []
    for split, count in (("train", images), ("val", recipe["val_images"])):
        per = [count // classes + (k < count % classes) for k in range(classes)]
        jobs += [(str(root / split / f"n{k:08d}"), k, per[k], seed * 1_000_003 + k * 2 + (split == "val")) for k in range(classes)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        total = sum(pool.map(_write_images, jobs, chunksize=1))
    info = {
        "recipe": recipe,
        "root": str(root),
        "files": images + recipe["val_images"],
        "bytes": total,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    marker.write_text(json.dumps(info, indent=2) + "\n")
    return info


# --- child processes -------------------------------------------------------------------------------------


def run_child(args: list[str], env: dict) -> dict:
    """Run a child to the end: wall seconds, peak RSS (MB, from wait4), exit status and output tail."""
    t0 = time.perf_counter()
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "exit": child.returncode}
    if child.returncode:
        result["output"] = output[-3000:]
        print(output[-3000:], file=sys.stderr)
    return result


def ladd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ladd", *args]


# --- 3. reading back ---------------------------------------------------------------------------------------


def _rss_file_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Batches:
    """A torch Dataset whose items are whole batches, read from the store's .npy in each worker
    (opened there, memory-mapped; a mapped tensor itself must not be pickled to workers: torch would
    move it into shared memory, copying the whole split)."""

    def __init__(self, path: str, order):
        self.path, self.order, self.images = path, order, None

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        import torch

        if self.images is None:
            self.images = np.load(self.path, mmap_mode="r")
        idx = self.order[i]
        rows, inverse = np.unique(idx.numpy(), return_inverse=True)  # sorted reads, then the batch's order
        return torch.from_numpy(self.images[rows][inverse])


def read_speeds(cache: Path, folder: Path, resolution: int, batch_size: int, loader_workers: int) -> dict:
    os.environ["LADD_CACHE"] = str(cache)
    import torch
    from torch.utils.data import DataLoader

    from ladd.data import load_dataset, stream

    t0 = time.perf_counter()
    ds = load_dataset("imagefolder", data_dir=folder, resolution=resolution)
    opened = time.perf_counter() - t0
    images = ds.train.images
    n = len(images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).split(batch_size)

    def timed(batches) -> float:
        t = time.perf_counter()
        count = 0
        for b in batches:
            count += len(b)
        assert count == n
        return round(n / (time.perf_counter() - t), 1)

    speeds = {"open_seconds": round(opened, 3), "images": n, "batch_size": batch_size}
    speeds["prefetch_pread_images_per_s"] = timed(stream.batches(images, order, torch.device("cpu")))
    speeds["pread_gather_images_per_s"] = timed(stream.gather(images, idx) for idx in order)
    from ladd.data.store import store_of

    loader = DataLoader(
        _Batches(str(store_of(ds) / "train.images.npy"), order),
        batch_size=None,
        shuffle=False,
        num_workers=loader_workers,
        multiprocessing_context="spawn" if loader_workers else None,
        prefetch_factor=4 if loader_workers else None,
    )
    t = time.perf_counter()
    batches = iter(loader)
    first = next(batches)  # the workers' start, timed apart
    speeds["dataloader_workers"] = loader_workers
    speeds["dataloader_start_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    rest = sum(len(b) for b in batches)
    speeds["dataloader_images_per_s"] = round(rest / (time.perf_counter() - t), 1) if rest else None
    del first, batches
    before = _rss_file_mb()
    speeds["mmap_index_images_per_s"] = timed(images[idx] for idx in order)
    speeds["mmap_index_rss_file_added_mb"] = round(_rss_file_mb() - before, 1)
    return speeds


# --- 4. peak RSS of training on the store ------------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def train_probe(cache: Path, folder: Path, resolution: int, model_name: str, batch: int, device: str, in_ram: bool) -> dict:
    """What `ladd label` does with the data, in one process: open the source, train a labeler one
    epoch on the whole training split (the trainer's data path), then its accuracy on the test split;
    with `in_ram` the splits are first copied into memory (the old loader's footprint)."""
    os.environ["LADD_CACHE"] = str(cache)
    from dataclasses import replace

    from ladd.core.runtime import Runtime
    from ladd.core.types import ImageSet
    from ladd.data import load_dataset
    from ladd.experts import build_for
    from ladd.train.loop import Recipe, TrainData, predict, train
    from ladd.train.terms import method_terms

    ds = load_dataset("imagefolder", data_dir=folder, resolution=resolution)
    if in_ram:
        ds = replace(ds, train=ImageSet(ds.train.images.clone(), ds.train.labels), test=ImageSet(ds.test.images.clone(), ds.test.labels))
    opened = _status_mb("VmRSS")
    model = build_for(ds, model_name, 0)
    runtime = Runtime.from_name(device)
    t0 = time.perf_counter()
    train(
        model,
        TrainData(ds.train.images, ds.train.labels, ds.mean, ds.std),
        method_terms("baseline"),
        Recipe(epochs=1, batch_size=batch, milestones=()),
        seed=0,
        runtime=runtime,
        description="labeler (probe)",
    )
    seconds = time.perf_counter() - t0
    acc = (predict(model, ds.test.images, ds.mean, ds.std, batch_size=batch).argmax(1).cpu() == ds.test.labels).float().mean().item()
    return {
        "in_ram": in_ram,
        "model": model_name,
        "batch_size": batch,
        "rss_after_open_mb": opened,
        "peak_rss_mb": _status_mb("VmHWM"),
        "rss_file_mb": _status_mb("RssFile"),
        "train_images_per_s": round(len(ds.train) / seconds, 1),
        "test_acc": round(acc, 4),
    }


def probe(kind: str, *args) -> dict:
    """One measurement in its own process (its peak RSS is its own); the result is its last stdout line."""
    run = subprocess.run(
        [sys.executable, __file__, f"--_{kind}", *map(str, args)],
        env={**os.environ, "LADD_NO_PROGRESS": "1"},
        capture_output=True,
        text=True,
    )
    if run.returncode:
        print(run.stdout[-3000:], run.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the {kind} probe failed")
    return json.loads(run.stdout.strip().splitlines()[-1])


# --- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    cpus = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50_000, help="training images (val/ gets a tenth as many)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--workers", type=int, default=cpus, help="decode workers of the parallel build (default every CPU)")
    parser.add_argument("--loader-workers", type=int, default=min(4, cpus), help="DataLoader worker processes in the read test")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--folder", type=Path, default=None, help="the synthetic folder (generated there unless it holds one of this recipe)"
    )
    parser.add_argument("--work", type=Path, default=None, help="caches and artifacts of the run (default: a temporary folder, removed)")
    parser.add_argument("--skip-serial", action="store_true", help="skip the 1-worker build")
    parser.add_argument(
        "--rss-model", default="convnet-w32", help="the probe labeler's model (activation memory grows with width × pixels)"
    )
    parser.add_argument("--rss-batch", type=int, default=64, help="the probe labeler's batch size")
    parser.add_argument("--skip-in-ram", action="store_true", help="skip the in-memory contrast of the RSS probe")
    parser.add_argument(
        "--cli",
        action="store_true",
        help="also run ladd distill/label/eval as children (their default batches: "
        "256 to train, 512 to test, whose activations at 128 px dominate their RSS; slow on CPU at full size)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = parser.parse_args()

    from ladd.core.io import command_line, write_json

    folder = a.folder or Path("runs/bench") / f"data_store_folder_{a.images}"
    result = {"command": command_line(), "config": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}, "cpus": cpus}}
    print(f"folder {folder} …", flush=True)
    result["folder"] = make_folder(folder, a.images, a.classes, a.seed, a.workers)
    print(f"  {result['folder']['files']} JPEGs, {result['folder']['bytes'] / GB:.2f} GB", flush=True)

    work = Path(tempfile.mkdtemp(prefix="ladd-data-store-")) if a.work is None else a.work
    work.mkdir(parents=True, exist_ok=True)
    base_env = {**os.environ, "LADD_NO_PROGRESS": "1"}
    try:
        builds = {}
        for workers in ([] if a.skip_serial else [1]) + [a.workers]:
            cache = work / f"cache-w{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            print(f"build with {workers} worker(s) …", flush=True)
            run = run_child(
                ladd(
                    "data",
                    "prepare",
                    "--dataset",
                    "imagefolder",
                    "--data-dir",
                    str(folder),
                    "--resolution",
                    str(a.resolution),
                    "--workers",
                    str(workers),
                ),
                {**base_env, "LADD_CACHE": str(cache)},
            )
            [store] = [p for p in (cache / "data").iterdir() if not p.name.startswith(".")]
            info = json.loads((store / "store.json").read_text())
            builds[f"workers_{workers}"] = {
                **run,
                "decode_seconds": info["decode_seconds"],
                "workers": info["workers"],
                "images_per_s": round((info["splits"]["train"]["count"] + info["splits"]["test"]["count"]) / info["decode_seconds"], 1),
                "store_bytes": sum(f["bytes"] for f in info["files"].values()),
            }
            print(f"  {builds[f'workers_{workers}']}", flush=True)
        if "workers_1" in builds and a.workers != 1:
            builds["speedup"] = round(builds["workers_1"]["decode_seconds"] / builds[f"workers_{a.workers}"]["decode_seconds"], 2)
        result["build"] = builds
        cache = work / f"cache-w{a.workers}"
        store_bytes = builds[f"workers_{a.workers}"]["store_bytes"]

        print("read back one epoch in training order …", flush=True)
        result["read"] = probe("read", cache, folder, a.resolution, a.batch_size, a.loader_workers)
        print(f"  {result['read']}", flush=True)

        print(f"peak RSS: a labeler ({a.rss_model}, batch {a.rss_batch}) trained one epoch on the store, then tested …", flush=True)
        rss = {"store": probe("train", cache, folder, a.resolution, a.rss_model, a.rss_batch, a.device, 0)}
        print(f"  from the store: {rss['store']}", flush=True)
        if not a.skip_in_ram:
            rss["in_ram"] = probe("train", cache, folder, a.resolution, a.rss_model, a.rss_batch, a.device, 1)
            print(f"  in memory:      {rss['in_ram']}", flush=True)
        rss.update(
            {
                "store_gb": round(store_bytes / GB, 3),
                "goal": "peak RSS < 2 GB while the store is > 2 GB",
                "store_over_2gb": store_bytes > 2 * GB,
                "peak_under_2gb": rss["store"]["peak_rss_mb"] < 2048,
            }
        )
        if a.cli:  # the commands themselves, at their default batch sizes (256 to train, 512 to test)
            env = {**base_env, "LADD_CACHE": str(cache)}
            art = work / "artifact"
            common = ["--data-dir", str(folder), "--device", a.device]
            cli = {
                "distill": run_child(
                    ladd(
                        "distill",
                        "--dataset",
                        "imagefolder",
                        "--resolution",
                        str(a.resolution),
                        "--ipc",
                        "1",
                        "--images",
                        "random",
                        "--out",
                        str(art),
                        *common,
                    ),
                    env,
                )
            }
            cli["label"] = run_child(
                ladd("label", str(art), "--labels", "soft", "--labeler-epochs", "1", "--labeler-model", a.rss_model, *common), env
            )
            cli["eval"] = run_child(
                ladd(
                    "eval",
                    str(art),
                    "--methods",
                    "soft",
                    "--seeds",
                    "1",
                    "--epochs",
                    "2",
                    "--model",
                    a.rss_model,
                    "--out",
                    str(work / "eval"),
                    *common,
                ),
                env,
            )
            for name, r in cli.items():
                print(f"  ladd {name}: {r}", flush=True)
            rss["cli"] = cli
        result["rss"] = rss
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if a.out is not None:
        write_json(a.out, result)
        print(f"wrote {a.out}")
    print(json.dumps({k: result[k] for k in ("build", "read", "rss") if k in result}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_read":
        cache, folder, resolution, batch, loader_workers = sys.argv[2:7]
        print(json.dumps(read_speeds(Path(cache), Path(folder), int(resolution), int(batch), int(loader_workers))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--_train":
        cache, folder, resolution, model, batch, device, in_ram = sys.argv[2:9]
        print(json.dumps(train_probe(Path(cache), Path(folder), int(resolution), model, int(batch), device, bool(int(in_ram)))))
    else:
        main()
