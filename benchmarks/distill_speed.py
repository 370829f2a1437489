"""Seconds per distillation iteration and peak memory of ladd's learned image methods (DM, DC, DSA, MTT),
next to re-implementations of the reference loop structures, run on the same machine:

- DM (main_DM.py): a fresh frozen network per iteration; per class, the real and the synthetic
  batch go through it in separate calls.
- DC (main.py): a fresh network per iteration; in each of `outer_loop` rounds, per class: forward
  of a real batch and of the class's synthetic images in separate calls, the gradient of each, the
  layer-wise `match_loss`, summed over classes, one image step; between rounds the network trains
  `inner_loop` epochs on the synthetic set (through a DataLoader, as main.py's `epoch`).
- DSA (main.py with `--method DSA`): DC's loops, a shared augmentation draw for each class's real
  and synthetic batch, augmented inner-loop batches.
- MTT (distill.py): a fresh student whose parameters are one flat vector (reparam_module.py);
  `syn_steps` SGD steps on `batch_syn`-image chunks of a permutation, every step's vector kept
  (the graph holds all steps); then SGD on the images and on the learnable lr.

Both sides get the same data, initial images, network and hyperparameters: the method's default
recipe for the dataset and IPC (what `ladd distill` runs) for `--iterations` + 2 iterations, the
first two left out of the median: ladd counts the first iteration's FLOPs (eagerly) and compiles in
the second; both sides allocate on first touch. One DC/DSA iteration is one
network: `outer_loop` rounds and the inner training between them. MTT runs with all images per
student step, with the recipe's `batch_syn` and with `--batch-syn` (each distinct setting once),
ladd compiled (the default) and eager (`compile = false`), as DM and DC/DSA get their eager rows.
It reads the experts of `--buffer DIR` (`ladd experts --out DIR`), else those in the cache
(`ladd experts` for the recipe), else a stand-in buffer: one expert trained on 20 images per class
(the cost of an iteration does not depend on the expert's weights).

Every measurement runs in a fresh process, so each peak is its own. Peak memory = what the process
holds at its peak during distillation above what it held before (data loaded): on CPU the resident
set's high-water mark (VmHWM, reset through /proc/self/clear_refs; tensors, allocator caches and
compiled code alike), on CUDA the allocator's peak of allocated tensors.

    python benchmarks/distill_speed.py --ipc 10 --iterations 2 --out runs/bench/distill_speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from ladd import pipeline
from ladd.augment.dsa import DSA, strategy_for
from ladd.core.errors import LaddError
from ladd.core.io import command_line, write_json
from ladd.core.runtime import Runtime, generator, seeded
from ladd.core.types import normalize
from ladd.experts import ExpertConfig, build_for, ensure_expert, in_buffer
from ladd.images import ImageRequest, dm, gradient_matching, make_images, mtt
from ladd.images.dm import DMParams, initial_images
from ladd.images.gradient_matching import GradientMatchingParams, match_loss
from ladd.images.mtt import MTTParams
from ladd.images.recipes import load_recipe
from ladd.models import build_model
from ladd.train.loop import checkpoint_path


WARMUP = 2  # untimed iterations: FLOPs counting (eager), then compilation


# --- the reference loop structures -------------------------------------------------------------
def reference_dm(req: ImageRequest) -> list[float]:
    """main_DM.py: per class, real and synthetic batches through the network separately."""
    data, p, device = req.dataset, DMParams(**req.params), req.runtime.device
    syn, labels = initial_images(req, p.init)
    syn.requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=p.lr_img, momentum=p.momentum)
    dsa, gen = DSA(strategy_for(data.name)), generator(0)
    c, h, w = data.shape
    images_all = normalize(data.train.images, data.mean, data.std).to(device)  # main_DM.py keeps the set in memory
    by_class = [(data.train.labels == k).nonzero().flatten() for k in range(data.num_classes)]
    times = []
    for it in range(p.iterations):
        t0 = time.perf_counter()
        with seeded(it):
            net = build_model(req.model, channels=c, num_classes=data.num_classes, im_size=(h, w)).to(device)
        net.train()
        net.requires_grad_(False)
        loss = torch.zeros((), device=device)
        for k, members in enumerate(by_class):
            real = images_all[members[torch.randperm(len(members), generator=gen)[: p.batch_real]]]
            params = dsa.sample(1, (h, w), gen, shared=True)
            out_real = net.embed(dsa.apply(real, params)).detach()
            out_syn = net.embed(dsa.apply(syn[labels == k], params))
            loss = loss + ((out_real.mean(0) - out_syn.mean(0)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(_elapsed(t0, device))
    return times


def reference_dc(req: ImageRequest, augment: bool = False) -> list[float]:
    """main.py: per class, a real and a synthetic forward, their gradients, `match_loss`; the
    network trains on the synthetic set between outer rounds. DSA (`augment`): one shared draw per
    class for the real and the synthetic batch, and augmented inner-loop batches (main.py's
    `epoch(..., aug=True)`)."""
    data, p, device = req.dataset, GradientMatchingParams(**req.params), req.runtime.device
    syn, labels = initial_images(req, p.init)
    syn.requires_grad_(True)
    opt_img = torch.optim.SGD([syn], lr=p.lr_img, momentum=p.momentum)
    dsa, gen = DSA(strategy_for(data.name)), generator(0)
    torch.manual_seed(0)  # the DataLoader shuffles with the global RNG
    c, h, w = data.shape
    images_all = normalize(data.train.images, data.mean, data.std).to(device)
    by_class = [(data.train.labels == k).nonzero().flatten() for k in range(data.num_classes)]
    times = []
    for it in range(p.iterations):
        t0 = time.perf_counter()
        with seeded(it):
            net = build_model(req.model, channels=c, num_classes=data.num_classes, im_size=(h, w)).to(device)
        net.train()
        net_params = list(net.parameters())
        opt_net = torch.optim.SGD(net.parameters(), lr=p.lr_net)
        for ol in range(p.outer_loop):
            loss = torch.zeros((), device=device)
            for k, members in enumerate(by_class):
                real = images_all[members[torch.randperm(len(members), generator=gen)[: p.batch_real]]]
                mine = syn[labels == k]
                if augment:
                    draw = dsa.sample(1, (h, w), gen, shared=True)
                    real, mine = dsa.apply(real, draw), dsa.apply(mine, draw)
                target = torch.full((len(real),), k, device=device)
                gw_real = [g.detach().clone() for g in torch.autograd.grad(F.cross_entropy(net(real), target), net_params)]
                gw_syn = torch.autograd.grad(F.cross_entropy(net(mine), target[: len(mine)]), net_params, create_graph=True)
                loss = loss + match_loss(gw_syn, gw_real)
            opt_img.zero_grad()
            loss.backward()
            opt_img.step()
            if ol == p.outer_loop - 1:
                break
            loader = DataLoader(TensorDataset(syn.detach().clone(), labels.clone()), batch_size=p.batch_train, shuffle=True)
            for _ in range(p.inner_loop):
                for x, y in loader:
                    out = net(dsa(x, gen) if augment else x)
                    step_loss = F.cross_entropy(out, y)
                    step_loss.item(), (out.argmax(-1) == y).sum().item()  # main.py's epoch() logs loss and accuracy
                    opt_net.zero_grad()
                    step_loss.backward()
                    opt_net.step()
        times.append(_elapsed(t0, device))
    return times


def reference_mtt(req: ImageRequest) -> list[float]:
    """distill.py: a fresh student per iteration run on one flat parameter vector, `syn_steps` steps
    on `batch_syn` chunks of a permutation, the whole unrolled graph kept until the update."""
    data, p, device = req.dataset, MTTParams(**req.params), req.runtime.device
    syn, labels = initial_images(req, "real")
    syn.requires_grad_(True)
    syn_lr = torch.tensor(p.lr_teacher, device=device, requires_grad=True)
    opt_img = torch.optim.SGD([syn], lr=p.lr_img, momentum=p.momentum)
    opt_lr = torch.optim.SGD([syn_lr], lr=p.lr_lr, momentum=p.momentum)
    epochs = range(p.max_start_epoch + p.expert_epochs)
    buffer = [[load_file(checkpoint_path(d, e)) for e in epochs] for d in mtt.buffer_dirs(req, p)]  # held in memory, as distill.py does
    dsa, gen = DSA(strategy_for(data.name)), generator(0)
    batch = p.batch_syn or len(syn)
    times = []
    for it in range(p.iterations):
        t0 = time.perf_counter()
        student = build_for(data, req.model, it).to(device)
        names = [n for n, _ in student.named_parameters()]
        shapes = [q.shape for _, q in student.named_parameters()]
        numels = [s.numel() for s in shapes]
        trajectory = buffer[int(torch.randint(len(buffer), (1,), generator=gen))]
        start_epoch = int(torch.randint(p.max_start_epoch, (1,), generator=gen))

        def flat(state):
            return torch.cat([state[n].to(device).reshape(-1) for n in names])

        target, start = flat(trajectory[start_epoch + p.expert_epochs]), flat(trajectory[start_epoch])
        student_params = [start.clone().requires_grad_(True)]
        chunks: list[torch.Tensor] = []
        for _ in range(p.syn_steps):
            if not chunks:
                chunks = list(torch.randperm(len(syn), generator=gen).split(batch))
            idx = chunks.pop().to(device)
            x = dsa(syn[idx], gen)
            views = {n: t.view(s) for n, t, s in zip(names, student_params[-1].split(numels), shapes)}
            out = functional_call(student, views, (x,))
            grad = torch.autograd.grad(F.cross_entropy(out, labels[idx]), student_params[-1], create_graph=True)[0]
            student_params.append(student_params[-1] - syn_lr * grad)
        num_params = sum(numels)
        param_loss = F.mse_loss(student_params[-1], target, reduction="sum") / num_params
        param_dist = F.mse_loss(start, target, reduction="sum") / num_params
        loss = param_loss / param_dist
        opt_img.zero_grad()
        opt_lr.zero_grad()
        loss.backward()
        opt_img.step()
        opt_lr.step()
        times.append(_elapsed(t0, device))
    return times


# --- ladd, timed inside its own loop -----------------------------------------------------------
def ladd_times(method: str):
    """ladd's own `make_images`, timed per iteration (step, backward, image update): the method's
    call of `optimize_images` is wrapped to mark when each step starts."""

    def run(req: ImageRequest) -> list[float]:
        module = {"dm": dm, "dc": gradient_matching, "dsa": gradient_matching, "mtt": mtt}[method]
        real_optimize, marks = module.optimize_images, []

        def marked(syn, step, **kw):
            def step_marked(it, s, gen):
                marks.append(_now(req.runtime.device))
                return step(it, s, gen)

            out = real_optimize(syn, step_marked, **kw)
            marks.append(_now(req.runtime.device))
            return out

        module.optimize_images = marked
        try:
            make_images(method, req)
        finally:
            module.optimize_images = real_optimize
        steps = [b - a for a, b in zip(marks, marks[1:])]
        per = GradientMatchingParams(**req.params).outer_loop if method in ("dc", "dsa") else 1  # DC/DSA: a step is one outer round
        return [sum(steps[i : i + per]) for i in range(0, len(steps), per)]

    return run


IMPLS = {
    "reference-dm": reference_dm,
    "reference-dc": reference_dc,
    "reference-dsa": partial(reference_dc, augment=True),
    "reference-mtt": reference_mtt,
    "ladd-dm": ladd_times("dm"),
    "ladd-dc": ladd_times("dc"),
    "ladd-dsa": ladd_times("dsa"),
    "ladd-mtt": ladd_times("mtt"),
}


# --- measuring -----------------------------------------------------------------------------------
def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _elapsed(t0: float, device: torch.device) -> float:
    return _now(device) - t0


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


class PeakMemory:
    """Peak memory above the start of the block, in MB (None where it cannot be read)."""

    def __init__(self, device: torch.device):
        self.device, self.mb = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
                self.start = _status_bytes("VmRSS")
            except OSError:
                self.start = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        elif self.start is not None:
            self.mb = (_status_bytes("VmHWM") - self.start) / 2**20


def measure(spec: dict) -> dict:
    """One implementation of one method, in a fresh process: seconds of each iteration, peak memory."""
    os.environ["LADD_NO_PROGRESS"] = "1"
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    runtime = Runtime.from_name(spec["device"])
    data = pipeline.load_source(pipeline.SourceConfig(dataset=spec["dataset"]))
    buffer = None if spec["buffer"] is None else Path(spec["buffer"])
    req = ImageRequest(data, spec["ipc"], 0, None, spec["model"], runtime, spec["params"], buffer=buffer)
    with PeakMemory(runtime.device) as mem:
        times = IMPLS[spec["impl"]](req)
    return {"seconds_per_iteration": statistics.median(times[WARMUP:]), "iterations_timed": len(times) - WARMUP, "peak_mb": mem.mb}


def in_fresh_process(spec: dict) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (spec,))


def mtt_experts(args, params: dict, runtime: Runtime, root: Path) -> tuple[str | None, dict, str]:
    """(buffer folder or None for the cache, MTT params, what was used): `--buffer`, else the cache
    when it holds the recipe's experts, else a one-expert stand-in trained in seconds on 20 images
    per class, in batches of 16 so that an epoch still moves the weights by a dozen SGD steps."""
    if args.buffer is not None:
        return str(args.buffer), params, f"--buffer {args.buffer}"
    data = pipeline.load_source(pipeline.SourceConfig(dataset=args.dataset))
    try:
        mtt.buffer_dirs(ImageRequest(data, args.ipc, model=args.model), MTTParams(**params))
        return None, params, "the expert cache (ladd experts)"
    except LaddError:
        needed = params["max_start_epoch"] + params["expert_epochs"]
        idx = torch.cat([(data.train.labels == k).nonzero().flatten()[:20] for k in range(data.num_classes)])
        small = dataclasses.replace(data, train=data.train.subset(idx))
        ensure_expert(small, ExpertConfig(model=args.model, epochs=needed, batch_size=16), in_buffer(root, 0), runtime)
        return str(root), {**params, "num_experts": 1, "expert_train_epochs": needed}, "stand-in: one expert trained on 20 images per class"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--model", default="convnet")
    p.add_argument("--methods", nargs="+", default=["dm", "dc", "mtt"], choices=["dm", "dc", "dsa", "mtt"])
    p.add_argument("--iterations", type=int, default=2, help=f"timed iterations per row ({WARMUP} more run first, untimed)")
    p.add_argument("--batch-syn", type=int, default=20, help="MTT: images per student step, timed beside all images and the recipe's value")
    p.add_argument("--buffer", type=Path, help="MTT experts from `ladd experts --out DIR` (default: the expert cache, else a stand-in)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/bench/distill_speed.json"))
    args = p.parse_args()
    runtime = Runtime.from_name(args.device)
    base = {
        "dataset": args.dataset,
        "ipc": args.ipc,
        "model": args.model,
        "device": str(runtime.device),
        "threads": args.threads,
        "buffer": None,
    }

    def recipe(method: str) -> dict:
        return {**load_recipe(method, args.dataset, args.ipc)["params"], "iterations": args.iterations + WARMUP}

    rows = []  # (method, implementation, reference it is compared with, spec)
    if "dm" in args.methods:
        dm_p = recipe("dm")
        rows += [
            ("dm", "ladd (recipe: bf16 real branch, compiled)", "dm", {"impl": "ladd-dm", "params": dm_p}),
            ("dm", "ladd (float32, eager)", "dm", {"impl": "ladd-dm", "params": {**dm_p, "real_precision": "float32", "compile": False}}),
            ("dm", "reference structure", "dm", {"impl": "reference-dm", "params": dm_p}),
        ]
    for m in ("dc", "dsa"):
        if m in args.methods:
            gm_p = recipe(m)
            rows += [
                (m, "ladd (recipe: compiled)", m, {"impl": f"ladd-{m}", "params": gm_p}),
                (m, "ladd (eager)", m, {"impl": f"ladd-{m}", "params": {**gm_p, "compile": False}}),
                (m, "reference structure", m, {"impl": f"reference-{m}", "params": gm_p}),
            ]
    summary = {
        "dataset": args.dataset,
        "ipc": args.ipc,
        "model": args.model,
        "device": str(runtime.device),
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "timed_iterations": args.iterations,
        "memory": ("peak allocated CUDA tensor memory" if runtime.device.type == "cuda" else "peak resident set (VmHWM)")
        + " above the start of distillation, one fresh process per row",
        "speedup_vs_reference": "the reference structure's seconds per iteration / this row's",
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if "mtt" in args.methods:
            buffer, mtt_p, summary["mtt_experts"] = mtt_experts(args, recipe("mtt"), runtime, Path(tmp) / "buffer")
            for batch_syn in dict.fromkeys(
                (None, mtt_p.get("batch_syn"), args.batch_syn)
            ):  # all images per step, the recipe's, --batch-syn
                q, tag = {**mtt_p, "batch_syn": batch_syn}, f"batch_syn {batch_syn or 'all'}"
                rows += [
                    ("mtt", f"ladd ({tag}, compiled)", f"mtt {tag}", {"impl": "ladd-mtt", "params": q, "buffer": buffer}),
                    (
                        "mtt",
                        f"ladd ({tag}, eager)",
                        f"mtt {tag}",
                        {"impl": "ladd-mtt", "params": {**q, "compile": False}, "buffer": buffer},
                    ),
                    ("mtt", f"reference structure ({tag})", f"mtt {tag}", {"impl": "reference-mtt", "params": q, "buffer": buffer}),
                ]
        for method, impl, group, spec in rows:
            print(f"measuring {method}: {impl} …", flush=True)
            row = {"method": method, "implementation": impl, "group": group, "params": spec["params"]}
            try:
                row.update(in_fresh_process({**base, **spec}))
            except Exception as e:  # a failed row (e.g. a diverging recipe) is reported, the others still run
                row["error"] = f"{type(e).__name__}: {e}"
                print(f"  failed: {row['error']}", flush=True)
            results.append(row)
            _write(args.out, results, summary)
    reference = {r["group"]: r.get("seconds_per_iteration") for r in results if r["implementation"].startswith("reference")}
    print(f"\n{'method':<6} {'implementation':<44} {'s/iteration':>11} {'peak MB':>9} {'speed-up':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['method']:<6} {r['implementation']:<44} failed: {r['error']}")
            continue
        ref = reference.get(r["group"])
        r["speedup_vs_reference"] = None if ref is None else ref / r["seconds_per_iteration"]
        mb = "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        speedup = "n/a" if ref is None else f"{r['speedup_vs_reference']:.2f}×"
        print(f"{r['method']:<6} {r['implementation']:<44} {r['seconds_per_iteration']:>11.3f} {mb:>9} {speedup:>9}")
    _write(args.out, results, summary)
    print(f"wrote {args.out}")


def _write(path: Path, results: list[dict], summary: dict) -> None:
    """After every row, so a long run that is stopped keeps what it measured."""
    write_json(path, {"command": command_line(), "results": results, "summary": summary})


if __name__ == "__main__":
    main()
