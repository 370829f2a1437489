"""Speed and memory of LADD's label and deployment stages on mnist5k IPC 10.

- dense-label generation throughput (crops/s): batched (all crops of a chunk of images in one
  forward; the device default and 2,048 crops per pass) vs a per-crop loop (one forward per crop,
  the naive reading of Algorithm 1);
- one deployment epoch: baseline (global view, hard labels) vs LADD with K = 5 and K = 25 crops;
- peak resident memory of each case (each runs in a fresh process; CPU: ru_maxrss, CUDA: also
  torch.cuda.max_memory_allocated).

    python benchmarks/dense_label_speed.py --out runs/bench/dense_label_speed.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

from ladd.core.io import command_line, write_json


def _case(name: str, model_name: str, device: str, repeats: int, queue) -> None:
    from ladd import pipeline
    from ladd.augment.subsample import views
    from ladd.core.runtime import Runtime
    from ladd.core.types import normalize
    from ladd.labels.dense import dense_labels
    from ladd.labels.soft import Teacher
    from ladd.experts import build_for
    from ladd.train.loop import Recipe, TrainData, train
    from ladd.train.terms import method_terms

    runtime = Runtime.from_name(device)
    src = pipeline.SourceConfig()
    data = pipeline.load_source(src)
    art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=10))
    model = build_for(data, model_name, 0).to(runtime.device).eval()
    n, r = 5, 0.625
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for _ in range(repeats):
        if name.startswith("dense-batched"):
            per_pass = int(name.split(":")[1]) if ":" in name else None
            dense_labels(Teacher([model]), art.images, data.mean, data.std, n, r, per_pass=per_pass)
        elif name == "dense-per-crop":
            with torch.no_grad():
                x = normalize(art.images.to(runtime.device), data.mean, data.std)
                for i in range(len(x)):
                    v = views(x[i : i + 1], n, r)[0]
                    for j in range(n * n):
                        model(v[j : j + 1]).softmax(-1)
        else:
            method, k = name.split(":")
            soft = torch.full((len(art.images), data.num_classes), 1 / data.num_classes)
            dense = soft[:, None].expand(-1, n * n, -1).contiguous()
            td = TrainData(art.images, art.labels, data.mean, data.std, soft, dense, (n, r))
            train(model, td, method_terms(method, int(k)), Recipe(epochs=1, dsa="color_crop_cutout_scale_rotate"), seed=0, runtime=runtime)
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / repeats
    crops = len(art.images) * n * n
    result = {
        "case": name,
        "model": model_name,
        "device": str(runtime.device),
        "seconds": seconds,
        "crops_per_s": crops / seconds if name.startswith("dense") else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if runtime.device.type == "cuda" else None,
    }
    queue.put(result)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="convnet-w64")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/bench/dense_label_speed.json"))
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    results = []
    for name in ("dense-batched", "dense-batched:2048", "dense-per-crop", "baseline:1", "ladd:5", "ladd:25"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_case, args=(name, args.model, args.device, args.repeats, queue))
        proc.start()
        res = queue.get()
        proc.join()
        results.append(res)
        rate = f"{res['crops_per_s']:.0f} crops/s" if res["crops_per_s"] else ""
        print(f"{name:<16} {res['seconds']:.3f} s {rate:>16}  peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    batched, big, loop, base, k5, k25 = results
    summary = {
        "batched_default_over_per_crop_loop": loop["seconds"] / batched["seconds"],
        "batched_2048_over_per_crop_loop": loop["seconds"] / big["seconds"],
        "ladd_k5_epoch_over_baseline": k5["seconds"] / base["seconds"],
        "ladd_k25_epoch_over_baseline": k25["seconds"] / base["seconds"],
    }
    print(json.dumps(summary, indent=2))
    write_json(
        args.out,
        {"command": command_line(), "torch": torch.__version__, "threads": torch.get_num_threads(), "results": results, "summary": summary},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
