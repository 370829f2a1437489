"""Scaling of the heavy stages under torchrun: 1 process vs `--nproc` processes (Gloo, one thread
each) on this machine, for expert training, LADD evaluation over 4 seeds, dense labels and
relabel; and, from FLOPs counted here, how ImageNet-1K's stages divide over GPUs.

Each stage runs as `python -m ladd …` and as `torchrun --standalone --nproc_per_node P -m ladd …`
on mnist5k, after an untimed set-up (the artifact, the cached labeler and teacher). Reported per
stage: wall seconds, the work (images, samples or student epochs) per second, the speed-up and
scaling efficiency (speed-up / P), and the peak RSS of the largest process (a rank; torchrun's agent
is smaller). A launch's fixed cost (interpreter, imports, the process group) is measured with
`ladd cache ls` and reported beside, not subtracted.

The capacity table counts the FLOPs of each ImageNet-1K stage with `torch.utils.flop_counter`
(ResNet-18, torchvision's stem, 224 px) and divides them by an assumed sustained rate per GPU
(`--gpu-tflops`, an assumption, not a measurement: no GPU is timed here).

    OMP_NUM_THREADS=1 python benchmarks/distributed.py --out docs/results/distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ladd.core import dist

ROOT = Path(__file__).resolve().parents[1]


def launch(args: list[str], procs: int, env: dict) -> dict:
    """Run `ladd ARGS` as one process or under torchrun; wall seconds and peak RSS (MB) of the
    largest process it started."""
    head = [sys.executable, "-m", "ladd"] if procs == 1 else dist.launch_command(procs)
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: wait4 below reads nothing until the child ends
        start = time.perf_counter()
        child = subprocess.Popen(head + args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"`{dist.typed(head + args)}` failed:\n{err.read().decode(errors='replace')[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # the child or its largest descendant


def stages(work: Path, args) -> list[dict]:
    """Each stage: its command (a function of the output folder) and the work it does."""
    art = str(work / "artifact")
    train = 4000  # mnist5k's training images
    return [
        {
            "stage": "expert training (DDP)",
            "unit": "images",
            "amount": train * args.expert_epochs,
            "command": lambda out: [
                "experts",
                "--dataset",
                "mnist5k",
                "--model",
                "convnet",
                "--num-experts",
                "1",
                "--epochs",
                str(args.expert_epochs),
                "--out",
                out,
            ],
        },
        {
            "stage": f"LADD evaluation, {args.seeds} seeds (assignment)",
            "unit": "student epochs",
            "amount": args.seeds * args.eval_epochs,
            "command": lambda out: [
                "eval",
                art,
                "--methods",
                "ladd",
                "--model",
                "convnet",
                "--protocol",
                "dc",
                "--seeds",
                str(args.seeds),
                "--epochs",
                str(args.eval_epochs),
                "--crops-per-step",
                str(args.crops),
                "--out",
                out,
            ],
        },
        {
            "stage": "dense + global labels (chunks)",
            "unit": "images",
            "amount": 10 * args.ipc,
            "command": lambda out: [
                "label",
                art,
                "--labels",
                "ladd",
                "--model",
                "convnet",
                "--grid",
                str(args.grid),
                "--labeler-epochs",
                "2",
                "--out",
                out,
            ],
        },
        {
            "stage": "relabel (epochs)",
            "unit": "samples",
            "in_place": True,  # relabels the artifact at `out`
            "amount": 10 * args.ipc * args.relabel_epochs,
            "command": lambda out: [
                "relabel",
                out,
                "--epochs",
                str(args.relabel_epochs),
                "--teacher-model",
                "convnet",
                "--teacher-epochs",
                "2",
            ],
        },
    ]


def imagenet_capacity(gpu_tflops: float, gpus: list[int]) -> dict:
    """FLOPs of ImageNet-1K's heavy stages (ResNet-18 at 224 px, counted) and the hours they take
    on G GPUs at an assumed sustained rate; what each stage shards."""
    from ladd.cost import flops
    from ladd.models import build_model

    net = build_model("resnet18-imagenet", channels=3, num_classes=1000, im_size=(224, 224))
    shape = (3, 224, 224)
    forward = flops.per_sample(net, shape, backward=False)
    step = flops.per_sample(net, shape, backward=True)
    n, ipc = 1_281_167, 50
    work = {
        "teacher, 90 epochs on 1.28 M images (DDP)": step * n * 90,
        "relabel, 300 epochs × 50,000 images (epochs over ranks)": forward * 50 * 1000 * 300,
        "student, 300 epochs on 50 IPC (DDP)": step * ipc * 1000 * 300,
        "recover, 50,000 images × 1,000 iterations (batches over ranks)": step * 50_000 * 1000,
    }
    rate = gpu_tflops * 1e12
    return {
        "gpu_tflops_assumed": gpu_tflops,
        "forward_flops": forward,
        "train_step_flops": step,
        "train_images_per_s_per_gpu": rate / step,
        "stages": [{"stage": k, "flops": v, "hours": {str(g): v / (rate * g) / 3600 for g in gpus}} for k, v in work.items()],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--expert-epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--eval-epochs", type=int, default=10)
    p.add_argument("--crops", type=int, default=4, help="LADD's local views per image per student step")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--relabel-epochs", type=int, default=100)
    p.add_argument(
        "--gpu-tflops",
        type=float,
        default=40.0,
        help="assumed sustained TFLOP/s per GPU for the ImageNet-1K estimate "
        "(40: ~3,800 ResNet-18 training images/s, A100-class mixed precision)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench/distributed.json"))
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "LADD_NO_PROGRESS": "1", "LADD_CACHE": str(work / "cache")}
        # set-up, untimed: the artifact, the cached labeler and teacher (and a labelled artifact to relabel and evaluate)
        launch(["distill", "--dataset", "mnist5k", "--ipc", str(args.ipc), "--images", "random", "--out", str(work / "base")], 1, env)
        shutil.copytree(work / "base", work / "artifact")
        launch(
            [
                "label",
                str(work / "artifact"),
                "--labels",
                "ladd",
                "--model",
                "convnet",
                "--grid",
                str(args.grid),
                "--labeler-epochs",
                "2",
                "--out",
                str(work / "artifact"),
            ],
            1,
            env,
        )
        launch(
            ["relabel", str(work / "artifact"), "--epochs", "1", "--teacher-model", "convnet", "--teacher-epochs", "2", "--overwrite"],
            1,
            env,
        )
        overhead = {str(k): launch(["cache", "ls"], k, env)["seconds"] for k in (1, args.nproc)}
        rows = []
        for s in stages(work, args):
            row = {"stage": s["stage"], "unit": s["unit"], "amount": s["amount"]}
            for procs in (1, args.nproc):
                out = work / f"out-{len(rows)}-{procs}"
                if s.get("in_place"):
                    shutil.copytree(work / "base", out)
                r = launch(s["command"](str(out)), procs, env)
                row[f"p{procs}"] = {**r, "per_s": s["amount"] / r["seconds"]}
                print(
                    f"{s['stage']:<45} {procs} process(es): {r['seconds']:7.1f} s, {s['amount'] / r['seconds']:9.1f} {s['unit']}/s, "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
            row["speedup"] = row["p1"]["seconds"] / row[f"p{args.nproc}"]["seconds"]
            row["efficiency"] = row["speedup"] / args.nproc
            rows.append(row)
            print(f"{'':<45} speed-up {row['speedup']:.2f}×, efficiency {row['efficiency']:.0%}", flush=True)
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/distributed.py " + shlex.join(sys.argv[1:]),
        "config": {
            **{k: v for k, v in vars(args).items() if k != "out"},
            "cpus": os.cpu_count(),
            "dataset": "mnist5k",
            "backend": "gloo",
            "threads_per_process": 1,
        },
        "launch_overhead_s": overhead,
        "stages": rows,
        "imagenet": imagenet_capacity(args.gpu_tflops, [8, 16, 32, 64]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
