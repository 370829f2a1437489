"""How much of the machine the one trainer (`ladd.train.loop.train`) uses: GFLOP/s of real
training runs against the fp32 matmul peak measured in the same run.

Cases (each through `train()`, the path `ladd run` / `ladd eval` students, labelers and experts take):

- `ladd run`'s students on mnist5k at IPC 10 (random real images): ConvNet-W64 with hard labels
  (baseline) and LADD (global + local dense terms, K = 5 of the N² = 25 views per image and step,
  as `--crops-per-step auto` picks), under the dc-cpu protocol's recipe (SGD, batch 256, DSA);
- a ConvNet-128 (`convnet`, the papers' width) student at IPC 10, baseline and LADD;
- a ResNet-18 training step at 64 px (random uint8 images, 10 classes; `--resnet-batches`).

Each case runs with every variant of `ladd.core.runtime.Speed`:
`plain` (a finiteness check every step: the host waits for the device each step, as the trainer
used to), `no-sync` (the default: the loss summed on the device, checked once per epoch),
`channels-last`, `bf16` and `compile` by default; `compile+bf16` and (CUDA) `fp16` on request
(`--variants`; each compiled variant adds a compile of every case's network). Dense labels are
uniform: a step's cost does not depend on their values.

FLOPs are `ladd.cost.flops.training` (torch's flop counter: convolutions and matmuls, 2 per
multiply-add, forward + backward) × the inputs the run forwarded, over its wall time after a
warm-up run (compilation, oneDNN primitive creation, heap growth); the compile time is the
warm-up's (`--repeats` R: the fastest of R timed runs). User and system CPU seconds (getrusage,
all threads) cover the timed run only. The matmul peak is measured at the start and at the end
and the higher counts. The conditions (threads, CPU, torch, load average before and after) are
recorded: numbers taken on a loaded machine say little.

    python benchmarks/trainer_speed.py --out runs/bench/trainer_speed.json
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import torch

from ladd import pipeline
from ladd.augment.dsa import strategy_for
from ladd.core.allocator import keep_large_blocks
from ladd.core.io import command_line, write_json
from ladd.core.runtime import Runtime, Speed
from ladd.core.types import Dataset, ImageSet
from ladd.data import build_dataset
from ladd.cost import flops
from ladd.eval.protocol import LADD_REDUCTION, crops_for
from ladd.eval.protocols import load_protocol
from ladd.experts import build_for
from ladd.train.loop import TrainData, train
from ladd.train.terms import method_terms

N, R = 5, 0.625  # `ladd run`'s sub-sampler
PROTOCOL = "dc-cpu"  # `ladd run`'s protocol
VARIANTS = {
    "plain": Speed(check_every=1),
    "no-sync": Speed(),
    "channels-last": Speed(channels_last=True),
    "bf16": Speed(precision="bf16"),
    "compile": Speed(compile=True),
    "compile+bf16": Speed(compile=True, precision="bf16"),
    "fp16": Speed(precision="fp16"),  # CUDA only
}
DEFAULT_VARIANTS = ("plain", "no-sync", "channels-last", "bf16", "compile")  # about 6 minutes on 2 quiet cores


def peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Best GFLOP/s of an n×n @ n×n matmul (2n³ FLOPs)."""
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def student_case(data: Dataset, model: str, method: str, epochs: int) -> dict:
    """`ladd run`'s student: the artifact's IPC 10 random images with (uniform) dense labels."""
    art = pipeline.distill(data, pipeline.SourceConfig(dataset=data.name), pipeline.ImagesConfig(ipc=10))
    n = len(art.images)
    soft = torch.full((n, data.num_classes), 1 / data.num_classes)
    train_data = TrainData(art.images, art.labels, data.mean, data.std, soft, soft[:, None].expand(-1, N * N, -1).contiguous(), (N, R))
    protocol = load_protocol(PROTOCOL)
    terms = method_terms(method, crops_for("auto", n, N), LADD_REDUCTION, protocol.soft_loss)
    recipe = protocol.recipe(model, strategy_for(data.name), epochs=epochs, images=n)
    return {
        "case": f"{model} {method} mnist5k IPC 10",
        "dataset": data,
        "data": train_data,
        "terms": terms,
        "recipe": recipe,
        "model": model,
        "unit": "epoch",
        "per": epochs,
    }


def resnet_case(batch: int, steps: int, px: int = 64) -> dict:
    """ResNet-18 steps on random 64 px images: `steps` epochs of one batch each."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, px, px), dtype=torch.uint8, generator=g)
    labels = torch.arange(batch) % 10
    split = ImageSet(images, labels)
    data = build_dataset("random64", split, split, tuple(str(c) for c in range(10)))
    protocol = load_protocol(PROTOCOL)
    recipe = protocol.recipe("resnet18", strategy_for(data.name), epochs=steps, batch_size=batch, images=batch)
    return {
        "case": f"resnet18 {px}px batch {batch}",
        "dataset": data,
        "data": TrainData(images, labels, data.mean, data.std),
        "terms": method_terms("baseline"),
        "recipe": recipe,
        "model": "resnet18",
        "unit": "step",
        "per": steps,
    }


def measure(case: dict, variant: str, runtime: Runtime, warm_epochs: int, repeats: int) -> dict:
    """The fastest of `repeats` timed runs after one warm-up run; CPU times are the fastest run's."""
    data, shape = case["dataset"], case["dataset"].shape

    def run(recipe):
        return train(
            build_for(data, case["model"], 0),
            case["data"],
            case["terms"],
            recipe,
            seed=0,
            runtime=runtime,
            description=f"{case['case']} · {variant}",
        )

    t0 = time.perf_counter()
    run(case["recipe"].model_copy(update={"epochs": warm_epochs}))
    sync(runtime.device)
    warm = time.perf_counter() - t0
    timed = []
    for _ in range(repeats):
        before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        log = run(case["recipe"])
        sync(runtime.device)
        timed.append((time.perf_counter() - t0, before, resource.getrusage(resource.RUSAGE_SELF), log))
    seconds, before, after, log = min(timed, key=lambda t: t[0])
    samples = sum(log.samples.values())
    total = flops.training(build_for(data, case["model"], 0).to(runtime.device), shape, samples)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "case": case["case"],
        "variant": variant,
        "speed": runtime.speed.model_dump(),
        "unit": case["unit"],
        "seconds": seconds,
        "seconds_per_unit": seconds / case["per"],
        "units": case["per"],
        "samples": samples,
        "flops": total,
        "gflops_per_s": total / seconds / 1e9,
        "warmup_seconds": warm,
        "user_s": user,
        "sys_s": system,
        "sys_pct": 100 * system / max(user + system, 1e-9),
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "final_loss": log.epoch_loss[-1],
    }


def conditions(device: torch.device) -> dict:
    cpu = (
        next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "torch": torch.__version__,
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
            if k in os.environ
        },
        "glibc_keep_large_blocks": keep_large_blocks(),  # ladd's mallopt (ladd.core.allocator), applied on import
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "loadavg_start": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated, from " + ", ".join(VARIANTS))
    p.add_argument(
        "--cases", default="w64,convnet,resnet18", help="comma-separated: w64 (ladd run's students), convnet (ConvNet-128), resnet18"
    )
    p.add_argument(
        "--epochs", type=int, default=20, help="timed epochs of the ConvNet-W64 baseline (LADD and ConvNet-128 run fewer: each is slower)"
    )
    p.add_argument("--resnet-batches", default="64", help="comma-separated ResNet-18 batch sizes, e.g. 64,128")
    p.add_argument("--resnet-steps", type=int, default=2, help="timed ResNet-18 steps per variant")
    p.add_argument("--warmup", type=int, default=1, help="epochs (steps) of the untimed warm-up run before each timed one")
    p.add_argument(
        "--repeats", type=int, default=1, help="timed runs per case and variant; the fastest counts (more resist a loaded machine)"
    )
    p.add_argument("--matmul", type=int, default=2048, help="n of the n×n matmul that measures the peak")
    p.add_argument("--out", type=Path, default=Path("runs/bench/trainer_speed.json"))
    args = p.parse_args()
    device = Runtime.from_name(args.device).device
    info = conditions(device)
    chosen = [v for v in args.variants.split(",") if v]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}")
    if device.type != "cuda":
        chosen = [v for v in chosen if VARIANTS[v].precision != "fp16"]  # refused on CPU (Runtime)

    def measure_peaks():
        return {"fp32": peak(device, torch.float32, args.matmul, 5), "bf16": peak(device, torch.bfloat16, args.matmul, 5)}

    peaks = measure_peaks()
    print(f"matmul peak ({args.matmul}³): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)

    cases = []
    wanted = set(args.cases.split(","))
    mnist = pipeline.load_source(pipeline.SourceConfig()) if wanted & {"w64", "convnet"} else None
    if "w64" in wanted:
        cases += [
            student_case(mnist, "convnet-w64", "baseline", args.epochs),
            student_case(mnist, "convnet-w64", "ladd", max(1, args.epochs // 4)),
        ]
    if "convnet" in wanted:
        cases += [
            student_case(mnist, "convnet", "baseline", max(1, args.epochs // 2)),
            student_case(mnist, "convnet", "ladd", max(1, args.epochs // 10)),
        ]
    if "resnet18" in wanted:
        cases += [resnet_case(int(b), args.resnet_steps) for b in args.resnet_batches.split(",")]

    results = []
    header = f"{'case':<34} {'variant':<14} {'s/unit':>8} {'GFLOP/s':>8} {'× plain':>7} {'user s':>7} {'sys s':>6} {'warm-up s':>9}"
    print(header, flush=True)
    for case in cases:
        plain = None
        for variant in chosen:
            res = measure(case, variant, Runtime.from_name(str(device), VARIANTS[variant]), args.warmup, args.repeats)
            plain = plain or (res if variant == "plain" else None)
            res["speedup_vs_plain"] = plain["seconds"] / res["seconds"] if plain else None
            results.append(res)
            speedup = f"{res['speedup_vs_plain']:.2f}" if res["speedup_vs_plain"] else "—"
            print(
                f"{res['case']:<34} {variant:<14} {res['seconds_per_unit']:>8.3f} {res['gflops_per_s']:>8.1f} "
                f"{speedup:>7} {res['user_s']:>7.1f} {res['sys_s']:>6.2f} {res['warmup_seconds']:>9.1f}",
                flush=True,
            )
    # the peak again at the end: a machine loaded at the start would otherwise inflate every percentage
    again = measure_peaks()
    best = {k: max(peaks[k], again[k]) for k in peaks}
    for res in results:
        res["pct_fp32_peak"] = 100 * res["gflops_per_s"] / best["fp32"]
    print(
        f"matmul peak at the end: fp32 {again['fp32']:.0f}, bf16 {again['bf16']:.0f} GFLOP/s; % of the fp32 peak against the best "
        f"({best['fp32']:.0f}):"
    )
    for res in results:
        print(f"  {res['case']:<34} {res['variant']:<14} {res['pct_fp32_peak']:>6.1f}%")
    info["loadavg_end"] = os.getloadavg()
    write_json(
        args.out,
        {
            "command": command_line(),
            "conditions": info,
            "matmul_peak_gflops": best,
            "matmul_peak_gflops_start_end": [peaks, again],
            "flops_unit": flops.UNIT,
            "results": results,
        },
    )
    print(
        f"load average before/after: {info['loadavg_start'][0]:.1f} / {info['loadavg_end'][0]:.1f} "
        f"on {info['affinity']} CPUs ({info['torch_threads']} torch threads)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
