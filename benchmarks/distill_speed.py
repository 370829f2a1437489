"""Seconds per distillation iteration and peak memory of ladd's learned image methods, next to a
re-implementation of the reference DM loop structure (main_DM.py: one forward call per class,
class by class, same network, same 256 real images per class) timed on the same machine.

    python benchmarks/distill_speed.py --ipc 10 --iterations 5 --out runs/bench/distill_speed.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from ladd import pipeline
from ladd.augment.dsa import DSA, strategy_for
from ladd.core.runtime import Runtime, generator, seeded
from ladd.core.types import normalize
from ladd.images import ImageRequest, make_images
from ladd.images import dm as dm_module
from ladd.images.dm import DMParams, initial_images
from ladd.models import build_model


def reference_style_dm(data, req, iterations: int, batch_real: int) -> float:
    """main_DM.py's loop structure: per class, real and synthetic go through the network separately."""
    syn, labels = initial_images(req, "real")
    syn.requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=1.0, momentum=0.5)
    dsa, gen = DSA(strategy_for(data.name)), generator(0)
    c, h, w = data.shape
    by_class = [(data.train.labels == k).nonzero().flatten() for k in range(data.num_classes)]
    times = []
    for it in range(iterations + 1):
        t0 = time.perf_counter()
        with seeded(it):
            net = build_model(req.model, channels=c, num_classes=data.num_classes, im_size=(h, w))
        net.train()
        net.requires_grad_(False)
        loss = torch.zeros(())
        for k, members in enumerate(by_class):
            real = normalize(data.train.images[members[torch.randperm(len(members), generator=gen)[:batch_real]]], data.mean, data.std)
            mine = syn[labels == k]
            params = dsa.sample(1, (h, w), gen, shared=True)
            out_real = net.embed(dsa.apply(real, params)).detach()
            out_syn = net.embed(dsa.apply(mine, params))
            loss = loss + ((out_real.mean(0) - out_syn.mean(0)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it:  # the first iteration warms up allocators
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--model", default="convnet")
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/bench/distill_speed.json"))
    args = p.parse_args()
    runtime = Runtime.from_name(args.device)
    data = pipeline.load_source(pipeline.SourceConfig(dataset=args.dataset))
    req = ImageRequest(data, args.ipc, seed=0, model=args.model, runtime=runtime)
    batch_real = DMParams().batch_real
    results = []

    def per_iteration(params: dict) -> float:
        """Median seconds of one iteration (image update included), the first one (compilation,
        first-touch allocation) left out: every call of the method's step is timed in one run."""
        times = []
        real_optimize = dm_module.optimize_images

        def timed(syn, step, **kw):
            def step_timed(it, s, gen):
                t0 = time.perf_counter()
                loss = step(it, s, gen)
                loss.backward(retain_graph=True)  # include the backward pass the loop will run
                times.append(time.perf_counter() - t0)
                return loss
            return real_optimize(syn, step_timed, **kw)

        dm_module.optimize_images = timed
        try:
            make_images("dm", ImageRequest(data, args.ipc, 0, None, args.model, runtime, {**params, "iterations": args.iterations + 1}))
        finally:
            dm_module.optimize_images = real_optimize
        steady = sorted(times[1:])
        return steady[len(steady) // 2]

    ladd_dm = per_iteration({})
    results.append({"method": "dm", "impl": "ladd (bf16 + compiled real branch)", "seconds_per_iteration": ladd_dm})
    eager = per_iteration({"real_precision": "float32", "compile": False})
    results.append({"method": "dm", "impl": "ladd (float32, eager)", "seconds_per_iteration": eager})
    ref = reference_style_dm(data, req, args.iterations, batch_real)
    results.append({"method": "dm", "impl": "reference-structure", "seconds_per_iteration": ref})
    for r in results:
        print(f"{r['method']:<4} {r['impl']:<36} {r['seconds_per_iteration']:.3f} s/iteration")
    summary = {
        "dataset": args.dataset, "ipc": args.ipc, "model": args.model, "batch_real": batch_real,
        "device": str(runtime.device), "threads": torch.get_num_threads(),
        "dm_speedup_vs_reference_structure": ref / ladd_dm,
        "dm_float32_eager_speedup_vs_reference_structure": ref / eager,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "summary": summary}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
