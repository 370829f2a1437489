"""A replay student step with `ladd.augment.fkd.render` batched (one grid_sample for the batch)
against the per-sample loop it replaced (one F.interpolate per view, ladd before this change).

The step is the trainer's for the `fkd` method: render the stored relabel batch (crop, flip,
CutMix pasted from the partner's view), forward the student, the `replay` term's KL to the stored
targets, backward, AdamW. 64 stored rows of an epoch of 640 random uint8 images, 10 classes,
ConvNet (width 128, depth by resolution) at 32 and 64 px. Other processes may share the machine:
each round times the two renders alternately (A B, then B A), `--steps` steps each, after an untimed
warm-up; medians over `--rounds` rounds are reported with the load average before and after.
`max_abs_diff` is the largest difference between the two renders' inputs over every timed batch.

    python benchmarks/replay_render.py --out docs/results/replay_render.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ladd.augment.fkd import crop_pixels, render, sample_epoch
from ladd.core.io import command_line, write_json
from ladd.core.runtime import Runtime, generator
from ladd.core.types import normalize
from ladd.models import build_model
from ladd.train.terms import Batch, ReplayTerm

IMAGES, ROWS, CLASSES = 640, 64, 10


def loop_render(images, mean, std, epoch, rows):
    """The render this change replaced: one F.interpolate per view, partner views for every row."""
    _, _, height, width = images.shape
    position = torch.empty_like(epoch.order)
    position[epoch.order] = torch.arange(len(epoch.order))
    partner_rows = position[epoch.mix_index[rows]]
    own = normalize(images[epoch.order[rows].to(images.device)], mean, std)
    partners = normalize(images[epoch.mix_index[rows].to(images.device)], mean, std)
    crops, partner_crops = (crop_pixels(epoch.crop[r], height, width).tolist() for r in (rows, partner_rows))
    flips, partner_flips = epoch.flip[rows].tolist(), epoch.flip[partner_rows].tolist()

    def view(image, crop, flip):
        top, left, h, w = crop
        out = F.interpolate(image[None, :, top : top + h, left : left + w], size=(height, width), mode="bilinear", align_corners=False)[0]
        return out.flip(-1) if flip else out

    out = []
    for i, (y1, x1, y2, x2) in enumerate(epoch.mix(rows)[1].tolist()):
        x = view(own[i], crops[i], flips[i])
        if y2 > y1 and x2 > x1:
            x[:, y1:y2, x1:x2] = view(partners[i], partner_crops[i], partner_flips[i])[:, y1:y2, x1:x2]
        out.append(x)
    return torch.stack(out)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def case(size: int, device: torch.device, steps: int, rounds: int) -> dict:
    gen = generator(size)
    images = torch.randint(0, 256, (IMAGES, 3, size, size), dtype=torch.uint8, generator=gen).to(device)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    epoch = sample_epoch(IMAGES, ROWS, size, size, gen)
    targets = torch.softmax(torch.randn(IMAGES, CLASSES, generator=gen), -1).to(device)
    model = build_model("convnet", channels=3, num_classes=CLASSES, im_size=(size, size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    term = ReplayTerm()
    batches = [torch.arange(b * ROWS, (b + 1) * ROWS) for b in range(IMAGES // ROWS)]
    diff = 0.0

    def step(fn, rows):
        replay = SimpleNamespace(inputs=lambda r: fn(images, mean, std, epoch, r), targets=lambda r: targets[r], temperature=1.0)
        batch = Batch(x=None, hard=None, soft=None, dense=None, geometry=None, augment=None, gen=gen, replay=replay, stored=rows)
        loss, _ = term(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn, what):
        sync(device)
        t0 = time.perf_counter()
        for k in range(steps):
            rows = batches[k % len(batches)]
            fn(rows) if what == "render" else step(fn, rows)
        sync(device)
        return (time.perf_counter() - t0) / steps * 1e3

    renders = {"loop": lambda r: loop_render(images, mean, std, epoch, r), "batched": lambda r: render(images, mean, std, epoch, r)}
    for rows in batches:
        diff = max(diff, (renders["loop"](rows) - renders["batched"](rows)).abs().max().item())
    times = {f"{what}_{name}": [] for what in ("step", "render") for name in renders}
    for fn in (loop_render, render):  # warm-up: oneDNN primitives, allocator
        step(fn, batches[0])
    for r in range(rounds):
        for name in ("loop", "batched") if r % 2 == 0 else ("batched", "loop"):
            times[f"render_{name}"].append(timed(renders[name], "render"))
            times[f"step_{name}"].append(timed(loop_render if name == "loop" else render, "step"))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "image_px": size,
        "rows": ROWS,
        "model": "convnet",
        "max_abs_diff": diff,
        **{f"{k}_ms_median": round(v, 3) for k, v in med.items()},
        "render_speedup": round(med["render_loop"] / med["render_batched"], 2),
        "render_share_of_step_loop": round(med["render_loop"] / med["step_loop"], 4),
        "step_speedup": round(med["step_loop"] / med["step_batched"], 3),
        "rounds_ms": {k: [round(t, 3) for t in v] for k, v in times.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", default="32,64", help="comma-separated image sides")
    p.add_argument("--steps", type=int, default=10, help="timed steps (renders) per round and implementation")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/replay_render.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = Runtime.from_name(args.device).device
    cpu = (
        next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    conditions = {
        "torch": torch.__version__,
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "loadavg_start": os.getloadavg(),
        "load": "a shared machine: other processes may run meanwhile, so A/B alternate within each round "
        "and medians over rounds are reported, with the load average before and after",
    }
    results = []
    header = f"{'px':>4} {'render loop':>12} {'batched':>8} {'×':>5} {'step loop':>10} {'batched':>8} {'×':>6} {'max |Δ|':>9}"
    print(f"{header}  (ms, medians)")
    for size in (int(s) for s in args.sizes.split(",")):
        res = case(size, device, args.steps, args.rounds)
        results.append(res)
        print(
            f"{size:>4} {res['render_loop_ms_median']:>12.2f} {res['render_batched_ms_median']:>8.2f} {res['render_speedup']:>5.2f} "
            f"{res['step_loop_ms_median']:>10.2f} {res['step_batched_ms_median']:>8.2f} "
            f"{res['step_speedup']:>6.3f} {res['max_abs_diff']:>9.2e}",
            flush=True,
        )
    conditions["loadavg_end"] = os.getloadavg()
    write_json(args.out, {"command": command_line(), "conditions": conditions, "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
