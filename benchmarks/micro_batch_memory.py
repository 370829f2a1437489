"""Memory of one LADD student step that forwards every sub-image (`--preset paper`), by `--micro-batch`.

A step of B images with all N² sub-images forwards B·N² crops resized back to the full
resolution; their activations are what runs out of memory at 128 px. Each case trains one step
of a ConvNet-128 (depth from the resolution) on B random RGB images with dense labels and DSA,
in a fresh process, and reports the growth of its peak memory during the step (CPU: ru_maxrss;
CUDA: torch.cuda.max_memory_allocated) and the step's seconds. The growth per image of a part
(from the two largest parts) tells what a batch in one pass would need.

    python benchmarks/micro_batch_memory.py --out docs/results/micro_batch_memory.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

from ladd.core.io import command_line, write_json


def _peak_mb(cuda: bool) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _case(micro_batch: int | None, args, queue) -> None:
    from ladd.core.runtime import Runtime, Speed
    from ladd.core.types import Dataset, ImageSet
    from ladd.experts import build_for
    from ladd.train.loop import Recipe, TrainData, train
    from ladd.train.terms import method_terms

    runtime = Runtime.from_name(args.device, Speed(micro_batch=micro_batch))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(args.batch) % args.classes
    images = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    split = ImageSet(images, labels)
    data = Dataset("random", split, split, tuple(str(c) for c in range(args.classes)), (0.5,) * 3, (0.25,) * 3)
    dense = torch.softmax(torch.randn(args.batch, args.n**2, args.classes, generator=g), -1)
    td = TrainData(images, labels, data.mean, data.std, dense=dense, geometry=(args.n, args.r))
    model = build_for(data, args.model, 0)
    recipe = Recipe(epochs=1, batch_size=args.batch, dsa="color_crop_cutout_flip_scale_rotate")
    cuda = runtime.device.type == "cuda"
    before = _peak_mb(cuda)
    t0 = time.perf_counter()
    train(model, td, method_terms("ladd"), recipe, seed=0, runtime=runtime)
    if cuda:
        torch.cuda.synchronize()
    queue.put(
        {
            "micro_batch": micro_batch or args.batch,
            "crops_per_pass": (micro_batch or args.batch) * args.n**2,
            "seconds": time.perf_counter() - t0,
            "peak_growth_mb": _peak_mb(cuda) - before,
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="convnet")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--n", type=int, default=5, help="sub-images per axis (N)")
    p.add_argument("--r", type=float, default=0.625)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=8, help="images in the step")
    p.add_argument("--micro", default="1,2,4,8", help="micro-batch sizes to measure (the largest should be --batch)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/bench/micro_batch_memory.json"))
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    results = []
    for m in sorted(int(v) for v in args.micro.split(",")):
        queue = ctx.Queue()
        proc = ctx.Process(target=_case, args=(None if m == args.batch else m, args, queue))
        proc.start()
        res = queue.get()
        proc.join()
        results.append(res)
        print(
            f"micro-batch {res['micro_batch']:>4} ({res['crops_per_pass']:>5} crops per pass): "
            f"peak +{res['peak_growth_mb']:.0f} MB, {res['seconds']:.1f} s",
            flush=True,
        )
    a, b = results[-2], results[-1]
    per_image = (b["peak_growth_mb"] - a["peak_growth_mb"]) / (b["micro_batch"] - a["micro_batch"])
    summary = {"mb_per_image_of_a_part": per_image, "one_pass_of_256_images_gb": per_image * 256 / 1024}
    print(f"{per_image:.0f} MB per image of a part: a batch of 256 in one pass would need ≈ {summary['one_pass_of_256_images_gb']:.0f} GB")
    write_json(
        args.out,
        {
            "command": command_line(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "setting": {k: v for k, v in vars(args).items() if k != "out"},
            "results": results,
            "summary": summary,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
