"""The result tables of README.md and docs/results.md, generated from the JSON files under
docs/results/: each table sits between `<!-- results: NAME -->` and `<!-- /results -->` and is
rewritten from its JSON, with the command that wrote the JSON beside it, so every number can be
checked and made again. The test suite runs `--check`: the documents must say what the JSON says.

    python benchmarks/readme_tables.py           # rewrite the tables
    python benchmarks/readme_tables.py --check   # exit 1 (and say which) if a document is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ladd.report.tables import markdown, pm_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "results.md")
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def lr_choice(row: dict) -> str:
    """Validation accuracy % of every lr candidate, the chosen one in bold."""
    sel = row["lr_selection"]
    cells = []
    for lr, acc in sel["val_acc_by_lr"].items():
        text = f"{lr}: " + ("diverged" if acc is None else f"{100 * acc:.1f}")
        cells.append(f"**{text}**" if float(lr) == sel["chosen"] else text)
    return ", ".join(cells)


def ladd_run() -> tuple[str, list[str]]:
    files = ["ladd_run_ipc10.json", "ladd_run_ipc1.json"]
    rows = [r for f in files for r in load(f)["rows"]]
    walls = [
        next(n for n in load(f)["notes"] if n.startswith("total wall time")).split(",")[0].removeprefix("total wall time ") for f in files
    ]
    text = markdown(rows).rstrip("\n") + f"\n\nWall time, labeler training included: {walls[0]} (IPC 10), {walls[1]} (IPC 1)."
    return text, files


def local_reduction() -> tuple[str, list[str]]:
    data = load("local_reduction.json")
    rows = [[r["ipc"], r["method"], r["local_reduction"] or "–", pm_of(r), f"{r['lr']:g}", lr_choice(r)] for r in data["rows"]]
    head = ["IPC", "students", "local views", "test acc % (3 seeds)", "chosen lr", "validation acc % per lr (chosen in bold)"]
    return table(head, rows), ["local_reduction.json"]


def lic_reduction() -> tuple[str, list[str]]:
    files = [f"lic_reduction_ipc{ipc}-{red}.json" for ipc in (1, 10) for red in ("sum", "mean")]
    rows = []
    for f in files:
        r = load(f)["rows"][0]
        rows.append([r["ipc"], r["local_reduction"], pm_of(r), f"{r['lr']:g}", lr_choice(r)])
    head = ["IPC", "over the tiles", "test acc % (3 seeds)", "chosen lr", "validation acc % per lr (chosen in bold)"]
    return table(head, rows), files


def lpld_pruning() -> tuple[str, list[str]]:
    name = "lpld_pruning_ipc10.json"
    rows = [
        [
            r["ipc"],
            r["images"],
            f"{r['diversity']['within_class_cosine']:.4f}",
            f"{r['diversity']['mmd2']:.4f}",
            pm_of(r["hard"]),
            f"{r['rho']:g}",
            r["pool"],
            pm_of(r),
            f"{r['relabel_kept_samples']:,}",
            f"{r['label_bytes_raw']:,}",
            f"{r['label_to_image_ratio']:.2f}",
        ]
        for r in load(name)["rows"]
    ]
    head = [
        "IPC",
        "images",
        "cosine ↓",
        "MMD² ↓",
        "hard labels %",
        "ρ",
        "pool",
        "fkd students %",
        "labels kept",
        "label bytes kept",
        "labels / images",
    ]
    return table(head, rows), [name]


def equal_cost() -> tuple[str, list[str]]:
    name = "equal_cost_ipc10.json"
    rows = [
        [
            r["method"],
            r.get("ipc"),
            pm_of(r),
            r["epochs"],
            f"{r['flops_deploy']:.3g}",
            f"{r['flops_labels'] + r['flops_deploy']:.3g}",
            f"{(r['image_bytes_zip'] + r['label_bytes_zip']) / 1024:.1f}",
            r.get("budget", ""),
        ]
        for r in load(name)["rows"]
    ]
    head = ["students", "IPC", "test acc % (3 seeds)", "epochs", "deployment FLOPs", "labels + deployment FLOPs", "stored KB", "budget"]
    return table(head, rows), [name]


def scaling_law() -> tuple[str, list[str]]:
    name = "scaling_law.json"
    d = load(name)
    budgets = list(d["grid"])
    rows = [[ipc, *[pm_of(d["grid"][b][str(ipc)]) for b in budgets]] for ipc in d["ipcs"]]
    grid = table(["IPC", *[f"{b} %" for b in budgets]], rows)
    fits = table(
        ["labels", "free fit: a", "c", "d", "rmse (points)", "shared fit: data factor"],
        [
            [
                b,
                f"{p['a']:.3g}",
                f"{p['c']:.3g}",
                f"{p['d']:.3g}",
                f"{100 * p['rmse']:.2f}",
                "1 (reference)" if b == d["shared_fit"]["reference"] else f"{d['shared_fit']['factor'][b]:.2f}×",
            ]
            for b, p in d["fits"].items()
        ],
    )
    s = d["shared_fit"]
    shared = f"Shared fit: a = {s['a']:.3g}, c = {s['c']:.3g}, d = {s['d']:.3g}, rmse {100 * s['rmse']:.2f} points."
    front = (
        "Pareto front (stored KB → test accuracy): "
        + ", ".join(f"{p['labels']} at IPC {p['ipc']} ({p['stored_kb']:.1f} KB, {100 * p['acc_mean']:.2f}%)" for p in d["pareto"])
        + "."
    )
    return "\n\n".join([grid, fits, shared, front]), [name]


def epoch_temperature() -> tuple[str, list[str]]:
    name = "epoch_temperature.json"
    d = load(name)
    temps, parts = d["temperatures"], []
    for ipc in d["ipcs"]:
        rows = [
            [
                f"{e:g}",
                *[
                    f"{100 * next(r['acc_mean'] for r in d['rows'] if (r['ipc'], r['epoch'], r['temperature']) == (ipc, e, t)):.2f}"
                    for t in temps
                ],
            ]
            for e in d["epochs"]
        ]
        best = d["best"][str(ipc)]
        parts.append(
            f"IPC {ipc} (validation accuracy %, best: epoch {best['epoch']:g}, T {best['temperature']:g}):\n\n"
            + table(["expert epoch", *[f"T = {t:g}" for t in temps]], rows)
        )
    return "\n\n".join(parts), [name]


def bptt_ensemble() -> tuple[str, list[str]]:
    name = "bptt_vs_ensemble.json"
    d = load(name)
    rows = [
        [f"{e:g}", f"{a:.3f}", f"{b:.3f}", f"{c:.4f}", f"{p:.4f}"]
        for e, a, b, c, p in zip(
            d["epochs"], d["mean_normalized_jsd"], d["mean_normalized_jsd_ensemble"], d["mean_jsd_ensemble"], d["expert_pair_mean_jsd"]
        )
    ]
    head = [
        "expert epoch",
        "BPTT vs one expert (normalized)",
        f"BPTT vs ensemble of {d['ensemble']} (normalized)",
        "BPTT vs ensemble (JSD)",
        f"expert seed {d['ensemble']} vs ensemble (JSD)",
    ]
    students = ", ".join(f"{k}: {pm_of(v)}" for k, v in d["students"].items())
    return (
        table(head, rows) + f"\n\nClosest epoch: {d['closest_epoch']:g} (one expert), {d['closest_epoch_ensemble']:g} (ensemble). "
        f"Students (test acc %, {d['setup']['seeds']} seeds): {students}."
    ), [name]


def expert_decay() -> tuple[str, list[str]]:
    files = ["soft_vs_hard--expert-constant-lr.json", "soft_vs_hard--expert-decay.json"]
    rows = []
    for f, schedule in zip(files, ("constant", "×0.1 after half")):
        for r in load(f)["rows"]:
            rows.append([schedule, r["ipc"], f"{r['expert_epoch']:g}", pm_of(r["hard"]), pm_of(r["soft"])])
    return table(["expert lr", "IPC", "expert epoch (chosen on validation)", "hard labels %", "expert soft labels %"], rows), files


def lic_ablation() -> tuple[str, list[str]]:
    name = "lic_ablation_ipc1.json"
    rows = [[r["ipc"], r["row"], r["students"], pm_of(r), f"{r['label_bytes_zip'] / 1024:.1f}"] for r in load(name)["rows"]]
    return table(["IPC", "images / labels", "students", "test acc % (3 seeds)", "label KB (zip)"], rows), [name]


def chaos() -> tuple[str, list[str]]:
    """benchmarks/chaos.py: each long stage SIGKILLed at random moments and resumed, compared with an
    uninterrupted run; then two identical commands at once on one cache."""
    name = "chaos.json"
    d = load(name)

    def mark(v):
        return "–" if v is None else ("yes" if v else "**no**")

    def num(v):
        return "–" if v is None else f"{v:.1f}"

    stages = table(
        ["stage", "command", "uninterrupted s", "kills", "finished after the kills", "same bytes", "lost work s"],
        [
            [
                s["stage"],
                f"`{s['command']}`",
                num(s["reference_s"]),
                s["kills"],
                mark(s["survived"]),
                mark(s["identical"]),
                num(s["lost_s"]),
            ]
            for s in d["stages"]
        ],
    )
    parts = [stages]
    if d.get("concurrent"):
        parts.append(
            table(
                ["two at once", "both finish, valid", "identical", "trained once"],
                [[c["case"], mark(c["ok"]), mark(c["identical"]), mark(c["trained_once"])] for c in d["concurrent"]],
            )
        )
    c = d["conditions"]
    parts.append(
        f"{c['cpu_count']} CPU cores, {c['threads']} thread(s) per ladd process; each kill at a moment uniform over the middle "
        f"80% of the work its attempt had left (T, the uninterrupted wall time, less start-up and the work earlier "
        f"attempts kept; seed {d['seed']}). Lost work = all attempts' wall time − T."
    )
    return "\n\n".join(parts), [name]


def torchrun_exit() -> tuple[str, list[str]]:
    """benchmarks/torchrun_exit.py: launches of one small torchrun job beside busy loops, and how many failed."""
    name = "torchrun_exit.json"
    d = load(name)
    c = d["conditions"]
    body = table(
        ["job", "launches", "failed", "a rank aborted", "median s"],
        [[f"`{d['job']}`", d["launches"], d["failed"], d["aborted"], f"{d['median_s']:.1f}"]],
    )
    return body + f"\n\n{c['cpu_count']} CPU cores, {c['hogs']} busy-looping processes beside each launch, one thread per rank.", [name]


def trainer_speed() -> tuple[str, list[str]]:
    """benchmarks/trainer_speed.py: GFLOP/s per case and speed setting, against the matmul peak of the same run."""
    name = "trainer_speed.json"
    d = load(name)
    variants = list(dict.fromkeys(r["variant"] for r in d["results"]))
    cases = list(dict.fromkeys(r["case"] for r in d["results"]))
    cell = {(r["case"], r["variant"]): r for r in d["results"]}
    rows = [
        [
            case,
            *(
                f"{cell[case, v]['gflops_per_s']:.0f} ({cell[case, v]['pct_fp32_peak']:.0f}%)" if (case, v) in cell else "–"
                for v in variants
            ),
            f"{max(cell[case, v]['sys_s'] for v in variants if (case, v) in cell):.2f}",
        ]
        for case in cases
    ]
    peak, c = d["matmul_peak_gflops"], d["conditions"]
    text = table(["case", *[f"{v} GFLOP/s (% fp32 peak)" for v in variants], "max sys s"], rows)
    text += (
        f"\n\nMatmul peak measured in the same run: fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s "
        f"({c['cpu']}, {c['affinity']} cores, {c['torch_threads']} torch threads, {c['cpu_capability']}, torch {c['torch']}; "
        f"load average {c['loadavg_start'][0]:.1f} before, {c['loadavg_end'][0]:.1f} after). `plain` checks the loss on the host "
        f"every step, `no-sync` (the default) once per epoch."
    )
    return text, [name]


def data_store() -> tuple[str, list[str]]:
    """benchmarks/data_store.py: the store's build, read-back speed and the peak memory of training on it."""
    name = "data_store.json"
    d = load(name)
    f, r, rss = d["folder"], d["read"], d["rss"]
    builds = table(
        ["decode workers", "build s", "images/s", "peak RSS MB", "store GB"],
        [
            [b["workers"], f"{b['seconds']:.1f}", f"{b['images_per_s']:.0f}", f"{b['peak_rss_mb']:.0f}", f"{b['store_bytes'] / 1e9:.2f}"]
            for b in (v for k, v in d["build"].items() if k.startswith("workers_"))
        ],
    )
    reads = table(
        ["read one epoch, batches of " + str(r["batch_size"]), "images/s"],
        [
            ["trainer's read-ahead (pread, threads)", f"{r['prefetch_pread_images_per_s']:,.0f}"],
            ["`stream.gather` (pread)", f"{r['pread_gather_images_per_s']:,.0f}"],
            [f"DataLoader, {r['dataloader_workers']} workers", f"{r['dataloader_images_per_s']:,.0f}"],
            [f"indexing the memory map (+{r['mmap_index_rss_file_added_mb']:,.0f} MB resident)", f"{r['mmap_index_images_per_s']:,.0f}"],
        ],
    )
    builds += f"\n\nSpeed-up of the parallel build: {d['build']['speedup']:.2f}×."
    probe = table(
        ["labeler trained one epoch, then tested", "RSS after open MB", "peak RSS MB", "train images/s", "test acc"],
        [
            [label, f"{p['rss_after_open_mb']:.0f}", f"{p['peak_rss_mb']:.0f}", f"{p['train_images_per_s']:.0f}", f"{p['test_acc']:.4f}"]
            for label, p in (("from the store", rss["store"]), ("splits copied into memory", rss["in_ram"]))
        ],
    )
    c = d["config"]
    text = (
        f"A synthetic ImageNet-like folder: {f['files']:,} JPEGs ({f['bytes'] / 1e9:.2f} GB, {c['classes']} classes, "
        f"{c['images']:,} to train), stored at {c['resolution']} px; {c['cpus']} CPU cores. The store opened in "
        f"{r['open_seconds']:.2f} s (listing and stat-ing every file for its key).\n\n{builds}\n\n{reads}\n\n{probe}\n\n"
        f"The probe trains a {rss['store']['model']} at batch {rss['store']['batch_size']}: on the {rss['store_gb']:.2f} GB store its "
        f"peak RSS stays {'under' if rss['peak_under_2gb'] else 'over'} 2 GB."
    )
    return text, [name]


def speed_run() -> tuple[str, list[str]]:
    """`ladd run` (IPC 10, 3 seeds) with the default trainer and with `--compile --precision bf16`:
    accuracy and the students' GFLOP/s (deployment FLOPs over training seconds)."""
    files = ["speed_run_fp32.json", "speed_run_compile_bf16.json"]
    rows = []
    for name in files:
        d = load(name)
        speed = d["config"]["speed"]
        setting = (
            "fp32 (default)"
            if speed["precision"] == "fp32" and not speed["compile"]
            else " + ".join([*(["compile"] if speed["compile"] else []), speed["precision"]])
        )
        wall = next(n for n in d["notes"] if n.startswith("total wall time")).split(",")[0].removeprefix("total wall time ")
        rows += [
            [setting, r["method"], pm_of(r), f"{r['flops_deploy'] / r['seconds'] / 1e9:.0f}", f"{r['seconds']:.1f}", wall]
            for r in d["rows"]
        ]
    head = ["trainer", "students", "test acc % (3 seeds)", "student GFLOP/s", "s per student", "run wall time"]
    return table(head, rows), files


def distributed() -> tuple[str, list[str]]:
    """benchmarks/distributed.py: 1 vs P processes per stage, and ImageNet-1K's stages over GPUs."""
    name = "distributed.json"
    d = load(name)
    c, p = d["config"], d["config"]["nproc"]
    rows = [
        [
            s["stage"],
            f"{s['amount']:,} {s['unit']}",
            f"{s['p1']['seconds']:.1f}",
            f"{s[f'p{p}']['seconds']:.1f}",
            f"{s['speedup']:.2f}×",
            f"{s['efficiency']:.0%}",
            f"{s['p1']['peak_rss_mb']:,.0f}",
            f"{s[f'p{p}']['peak_rss_mb']:,.0f}",
        ]
        for s in d["stages"]
    ]
    head = [
        "stage (mnist5k)",
        "work",
        "1 process s",
        f"{p} processes s",
        "speed-up",
        "efficiency",
        "peak RSS MB, 1",
        f"peak RSS MB per rank, {p}",
    ]
    o = d["launch_overhead_s"]
    im = d["imagenet"]
    gpus = list(im["stages"][0]["hours"])

    def hm(h):
        return f"{round(h * 60) // 60}:{round(h * 60) % 60:02d}"

    cap = table(
        ["ImageNet-1K stage (ResNet-18, 224 px)", "PFLOP"] + [f"h:mm on {g} GPUs" for g in gpus],
        [[s["stage"], f"{s['flops'] / 1e15:,.0f}"] + [hm(s["hours"][g]) for g in gpus] for s in im["stages"]],
    )
    text = (
        f"{c['cpus']} CPU cores, {c['backend']}, {c['threads_per_process']} thread per process; wall time of the whole command, "
        f"start-up included (a launch alone: {o['1']:.1f} s for one process, {o[str(p)]:.1f} s under torchrun).\n\n"
        + table(head, rows)
        + f"\n\nImageNet-1K, counted FLOPs (a forward {im['forward_flops'] / 1e9:.2f} GFLOP, "
        f"a training step {im['train_step_flops'] / 1e9:.2f} "
        f"GFLOP per image) at an **assumed** {im['gpu_tflops_assumed']:g} TFLOP/s sustained per GPU, i.e. "
        f"{im['train_images_per_s_per_gpu']:,.0f} training images/s (not measured here; data loading not counted):\n\n" + cap
    )
    return text, [name]


def replay_render() -> tuple[str, list[str]]:
    """benchmarks/replay_render.py: the stored relabel's render, per-sample loop vs batched, and the student step around it."""
    name = "replay_render.json"
    d = load(name)
    c = d["conditions"]
    rows = [
        [
            r["image_px"],
            r["rows"],
            f"{r['render_loop_ms_median']:.2f}",
            f"{r['render_batched_ms_median']:.2f}",
            f"{r['render_speedup']:.2f}×",
            f"{r['step_loop_ms_median']:.0f}",
            f"{r['step_batched_ms_median']:.0f}",
            f"{r['render_share_of_step_loop']:.1%}",
            f"{r['max_abs_diff']:.1e}",
        ]
        for r in d["results"]
    ]
    head = [
        "px",
        "rows",
        "render ms, per-sample loop",
        "render ms, batched",
        "speed-up",
        "student step ms, loop",
        "student step ms, batched",
        "render share of the step",
        "max abs Δ (normalized)",
    ]
    return (
        table(head, rows)
        + f"\n\nMedians of interleaved rounds; {c['cpu_count']} CPU cores, {c['torch_threads']} torch thread, load average "
        f"{c['loadavg_start'][0]:.1f} before, {c['loadavg_end'][0]:.1f} after (other processes were running)."
    ), [name]


def levers() -> tuple[str, list[str]]:
    """benchmarks/accuracy_levers.py: one lever (or one combination) at a time around the base, per
    image artifact; the best cell per method (on validation accuracy, as `ladd leaderboard` chooses) in bold.
    A row already shown (the base cell that several sweeps of one run folder share) is shown once."""
    sweeps = sorted(((f.name, load(f.name)) for f in RESULTS.glob("levers_ipc*.json")), key=lambda s: (s[1]["ipc"], s[0]))
    rows = []
    for _, data in sweeps:
        best = {(b["method"], Path(b["run_dir"]).name) for b in data["best"]}
        for c in data["cells"]:
            mark = "**" if (c["method"], c["cell"]) in best else ""
            test = f"{100 * c['acc_mean']:.2f} ± {100 * c['acc_std']:.2f}"
            seconds = c.get("cell_seconds")  # sweeps written before cells recorded their wall time have none
            row = [
                data["ipc"],
                " ".join([data["image_method"], *(f"{k}={v}" for k, v in data["image_params"].items())]),
                data["base"]["label"]["labeler"]["epochs"],
                c["cell"],
                c["method"],
                f"{mark}{100 * c['val_acc']:.2f}{mark}",
                test,
                f"{c['bytes'] / 1024:.1f}",
                "–" if seconds is None else f"{seconds / 60:.0f}",
            ]
            if row not in rows:
                rows.append(row)
    head = [
        "IPC",
        "images",
        "labeler epochs",
        "cell (levers moved from the base)",
        "students",
        "validation acc %",
        "test acc % (mean ± std)",
        "stored KB",
        "cell min",
    ]
    return table(head, rows), [name for name, _ in sweeps]


def paper_protocol() -> tuple[str, list[str]]:
    """benchmarks/paper_protocol.py: baseline, baseline++ (same bytes) and LADD under the paper's protocol, per dataset."""
    files = sorted(f.name for f in RESULTS.glob("paper_protocol_*.json"))
    rows = []
    for name in files:
        data = load(name)
        for c in data["cells"]:
            by = {r["method"]: r for r in c["rows"]}
            seeds = by["baseline"]["n_seeds"]
            gain = 100 * (by["ladd"]["acc_mean"] - by["baseline"]["acc_mean"])
            cols = [pm_of(by[m]) if m in by else "–" for m in ("baseline", "baseline++", "ladd")]
            kb = "/".join(f"{(by[m]['image_bytes_zip'] + by[m]['label_bytes_zip']) / 1024:.1f}" for m in ("baseline++", "ladd") if m in by)
            cell = [data["dataset"], c["images"], c["ipc"], c["labeler_epochs"]]
            rows.append([*cell, *cols, f"{gain:+.2f}", kb, seeds, f"{c['wall_s'] / 60:.0f} min"])
    head = [
        "dataset",
        "images",
        "IPC",
        "labeler epochs",
        "baseline acc %",
        "baseline++ acc %",
        "LADD acc %",
        "LADD − baseline",
        "KB baseline++/LADD",
        "seeds",
        "wall",
    ]
    return table(head, rows), files


RENDERERS = {
    "paper-protocol": paper_protocol,
    "levers": levers,
    "ladd-run": ladd_run,
    "local-reduction": local_reduction,
    "lic-reduction": lic_reduction,
    "lpld-pruning": lpld_pruning,
    "equal-cost": equal_cost,
    "scaling-law": scaling_law,
    "epoch-temperature": epoch_temperature,
    "bptt-ensemble": bptt_ensemble,
    "expert-decay": expert_decay,
    "lic-ablation": lic_ablation,
    "chaos": chaos,
    "torchrun-exit": torchrun_exit,
    "trainer-speed": trainer_speed,
    "data-store": data_store,
    "speed-run": speed_run,
    "distributed": distributed,
    "replay-render": replay_render,
}


def render(text: str, document: Path) -> tuple[str, list[str]]:
    """The document with every results block regenerated, and the names of unknown blocks."""
    unknown = []
    prefix = Path("results") if document.parent == RESULTS.parent else Path("docs/results")  # links relative to the document

    def fill(m: re.Match) -> str:
        if m["name"] not in RENDERERS:
            unknown.append(m["name"])
            return m[0]
        body, files = RENDERERS[m["name"]]()
        made = "; ".join(f"`{load(f)['command']}` → [{prefix / f}]({prefix / f})" for f in files)
        return m[1] + body + f"\n\nMade by {made}.\n" + m[4]

    return BLOCK.sub(fill, text), unknown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if a document differs from the JSON")
    args = p.parse_args(argv)
    used, stale = set(), []
    for document in DOCUMENTS:
        text = document.read_text()
        new, unknown = render(text, document)
        if unknown:
            print(f"unknown results block(s) in {document}: {', '.join(unknown)}", file=sys.stderr)
            return 1
        used |= set(re.findall(r"results/([\w.-]+\.json)", new))
        if new != text:
            stale.append(document)
            if not args.check:
                document.write_text(new)
    orphans = sorted(f.name for f in RESULTS.glob("*.json") if f.name not in used)
    if orphans:
        print(f"docs/results holds JSON that no table shows: {', '.join(orphans)}", file=sys.stderr)
        return 1
    if args.check and stale:
        print(f"{', '.join(map(str, stale))} out of date with docs/results: run python benchmarks/readme_tables.py", file=sys.stderr)
        return 1
    if not args.check:
        print(f"rewrote the result tables of {', '.join(d.name for d in stale) or 'nothing (already current)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
