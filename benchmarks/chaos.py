"""Chaos benchmark: does every long ladd command survive SIGKILL at random moments, resume, and
end with the bytes an uninterrupted run writes? And do two identical commands started at once on
one cache both finish, agree, and train what they share only once?

Each stage is a `ladd` subprocess in its own process group (`start_new_session`), with its own
$LADD_CACHE and working folder under `--work`:

1. `distill`: DM images on digits (`ladd distill --images dm`, fewer iterations via --param)
2. `label`: labeler training + dense labels (`ladd label A`)
3. `relabel`: BN teacher + stored FKD relabel (`ladd relabel A`)
4. `eval`: students of a labelled artifact, 3 seeds (`ladd eval A --out R`; accuracies compared)
5. `recover`: SRe²L recover (`ladd recover --images sre2l`)
6. `experiment`: one soft-vs-hard experiment (`ladd experiment soft-vs-hard --out E`)

For each stage: an uninterrupted reference run in a fresh folder (its wall time is T); then, in
another fresh folder, the same command killed (`os.killpg`, SIGKILL) at `--kills` moments drawn
uniformly over the middle 80% of the work each attempt has left (`kill_moments`), and run again (with `--resume` where the
command needs it to continue; `--same-command` passes it from the first attempt on) until it
finishes uninterrupted. Then the outputs are compared with the reference: SHA-256 of every
artifact file, JSON files (manifests, experiment cells) with volatile fields (commands, wall
times, timestamps) left out and the run's own folders replaced by placeholders; an evaluation by
its accuracies. Lost work = wall time of all attempts − T.

Concurrency: two identical commands started at once on one shared cache (`label`: two copies of
an artifact; `relabel`: one artifact; `distill`, `recover`: two output folders; `experiment`: one
--out). Both must exit 0 with valid (`ladd info`), identical results equal to the reference; and
what they share must be computed once: a watcher counts the file versions written (inode and
mtime) of expert checkpoints, distillation checkpoints, relabel epochs and experiment cells,
which must not exceed what the single reference run wrote.

    python benchmarks/chaos.py --kills 3 --out runs/chaos.json
    python benchmarks/chaos.py --stages distill,label --kills 1 --work runs/chaos_try
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ladd.core.io import command_line, write_json

LADD = [sys.executable, "-m", "ladd"]
POLL_S = 0.01
VOLATILE = {
    "command",
    "seconds",
    "wall_s",
    "wall_time",
    "time",
    "timestamp",
    "created",
    "created_at",
    "started",
    "finished",
    "elapsed",
    "elapsed_s",
    "date",
    "duration",
    "hostname",
    "host",
    "pid",
}
ERROR_WORDS = ("error", "traceback", "exception", "refus", "corrupt", "invalid", "no checkpoint", "killed")

# a kill moment: seconds after the attempt's start, or a factory called at its start that returns
# a predicate polled while it runs (kill when it turns true), for tests that need a precise point
Kill = float | Callable[[], Callable[[], bool]]


# --- the stages ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    args: tuple[str, ...]  # after `ladd`, paths relative to the run's working folder
    output: str  # what the command makes, relative to the working folder
    kind: str  # artifact | eval | experiment: how outputs are compared
    needs: str | None = None  # fixture copied to `output`'s input ("art") first: random | labelled
    resume: str | None = None  # the flag that continues an interrupted run, if the command needs one
    input: str = "art"


def distill_stage(ipc: int = 10, iterations: int = 200, every: int = 20) -> Stage:
    return Stage(
        "distill",
        (
            "distill",
            "--dataset",
            "digits",
            "--images",
            "dm",
            "--ipc",
            str(ipc),
            "--param",
            f"iterations={iterations}",
            "--param",
            f"checkpoint_every={every}",
            "--device",
            "cpu",
            "--out",
            "art",
        ),
        "art",
        "artifact",
        resume="--resume",
    )


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        distill_stage(),
        Stage("label", ("label", "art", "--grid", "4", "--labeler-epochs", "60", "--device", "cpu"), "art", "artifact", needs="random"),
        Stage("relabel", ("relabel", "art", "--epochs", "40", "--device", "cpu"), "art", "artifact", needs="random"),
        Stage(
            "eval",
            ("eval", "art", "--seeds", "3", "--epochs", "30", "--protocol", "dc-cpu", "--device", "cpu", "--out", "result"),
            "result",
            "eval",
            needs="labelled",
        ),
        Stage(
            "recover",
            ("recover", "--images", "sre2l", "--dataset", "digits", "--ipc", "10", "--device", "cpu", "--out", "art"),
            "art",
            "artifact",
            resume="--resume",
        ),
        Stage(
            "experiment",
            (
                "experiment",
                "soft-vs-hard",
                "--dataset",
                "digits",
                "--ipc",
                "1,10,20",
                "--expert-epochs",
                "20",
                "--epochs",
                "100",
                "--seeds",
                "3",
                "--expert-epoch",
                "10",
                "--device",
                "cpu",
                "--out",
                "exp",
            ),
            "exp",
            "experiment",
        ),
    ]
}

# concurrency cases: stage → whether both processes share one working folder (one artifact / --out)
CONCURRENT = {"label": False, "relabel": True, "distill": False, "recover": False, "experiment": True}

FIXTURES = {
    "random": [("distill", "--dataset", "digits", "--images", "random", "--ipc", "10", "--device", "cpu", "--out", "art")],
    "labelled": [
        ("distill", "--dataset", "digits", "--images", "random", "--ipc", "10", "--device", "cpu", "--out", "art"),
        ("label", "art", "--grid", "4", "--labeler-epochs", "10", "--device", "cpu"),
    ],
}


def shown(args) -> str:
    return " ".join(["ladd", *args])


# --- running and killing -------------------------------------------------------------------------
def environment(cache: Path, threads: int) -> dict:
    env = dict(os.environ)
    env.update(LADD_CACHE=str(cache), LADD_NO_PROGRESS="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), COLUMNS="200")
    return env


@dataclasses.dataclass
class Attempt:
    args: list[str]
    rc: int | None
    wall_s: float
    killed_at: float | None
    log: Path

    def tail(self, lines: int = 6) -> list[str]:
        """The error lines of its output (else its last lines)."""
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        errors = [line.strip() for line in text if any(w in line.lower() for w in ERROR_WORDS) and line.strip()]
        return (errors or [line.strip() for line in text if line.strip()])[-lines:]

    def summary(self) -> dict:
        return {
            "rc": self.rc,
            "wall_s": round(self.wall_s, 2),
            "killed_at_s": None if self.killed_at is None else round(self.killed_at, 2),
            "resume": any(a.startswith("--resume") for a in self.args),
            "log": str(self.log),
        }


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start(args, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as f:
        return subprocess.Popen([*LADD, *args], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def attempt(args, cwd: Path, env: dict, log: Path, kill: Kill | None = None, timeout: float = 1800) -> Attempt:
    """Run `ladd args` once; SIGKILL its whole process group at `kill` (if it is still running)."""
    when = kill() if callable(kill) else None
    t0 = time.monotonic()
    proc = start(args, cwd, env, log)
    killed_at = None
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            due = when() if when is not None else kill is not None and elapsed >= kill
            if due or elapsed > timeout:
                _kill_group(proc)
                proc.wait()
                killed_at = elapsed
                if not due:
                    with open(log, "a") as f:
                        f.write(f"\n[chaos] timed out after {timeout:.0f} s: killed\n")
                    return Attempt(list(args), -9, time.monotonic() - t0, None, log)
                break
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    return Attempt(list(args), proc.returncode, time.monotonic() - t0, killed_at, log)


def after_write(root: Path, pattern: str, count: int = 1) -> Callable[[], Callable[[], bool]]:
    """A kill point for tests: once `count` new versions of files matching `pattern` under `root`
    (e.g. a checkpoint) were written after the attempt started."""

    def arm():
        seen = _versions(root, pattern)
        return lambda: len(_versions(root, pattern) - seen) >= count

    return arm


def _versions(root: Path, pattern: str) -> set:
    out = set()
    for p in Path(root).rglob(pattern) if Path(root).exists() else []:
        try:
            st = p.stat()
        except OSError:
            continue
        out.add((st.st_ino, st.st_mtime_ns))
    return out


# --- what was written: a watcher of file versions --------------------------------------------------
CATEGORIES = {  # name → (where: cache | cwd, test on the relative path, whether each file is written once)
    "expert checkpoints": ("cache", lambda p: p.name.startswith("epoch_") and p.suffix == ".safetensors", True),
    "image checkpoints": (
        "cache",
        lambda p: p.suffix == ".safetensors" and not p.name.startswith("epoch_") and "experts" not in p.parts,
        False,
    ),
    "relabel epochs": ("cwd", lambda p: p.name.startswith("epoch_") and p.suffix == ".safetensors" and "relabel.partial" in p.parts, True),
    "experiment cells": ("cwd", lambda p: p.suffix == ".json" and "cells" in p.parts, True),
}


class Watcher:
    """Counts the distinct versions (inode, mtime) of the files of each category written while it
    runs: a file trained twice shows up twice, whatever folder it was built in."""

    def __init__(self, cache: Path, cwds: list[Path]):
        self.roots = {"cache": [Path(cache)], "cwd": [Path(c) for c in cwds]}
        self.seen = {name: set() for name in CATEGORIES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _scan(self) -> None:
        for name, (where, test, _) in CATEGORIES.items():
            for root in self.roots[where]:
                for dirpath, _, files in os.walk(root):
                    for f in files:
                        p = Path(dirpath, f)
                        if f.endswith((".lock", ".tmp")) or not test(p.relative_to(root)):
                            continue
                        try:
                            st = p.stat()
                        except OSError:
                            continue
                        self.seen[name].add((str(root), st.st_ino, st.st_mtime_ns))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._scan()
            time.sleep(POLL_S)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._scan()

    def counts(self) -> dict[str, int]:
        """Versions per category, per working folder summed (separate folders each make their own)."""
        return {name: len(v) for name, v in self.seen.items()}


def compare_counts(single: dict[str, int], both: dict[str, int], cwds: int) -> tuple[bool, list[str]]:
    """Whether two processes wrote no more than one run did (files written once: exactly; files
    rewritten during a run, such as image checkpoints: at most 25% more, polling misses some)."""
    ok, notes = True, []
    for name, (where, _, once) in CATEGORIES.items():
        ref, got = single.get(name, 0), both.get(name, 0)
        allowed = ref * (cwds if where == "cwd" else 1)
        if not once:
            allowed = math.ceil(allowed * 1.25)
        if ref or got:
            notes.append(f"{name}: {got} file versions written (one run: {ref})")
        if got > allowed:
            ok = False
    return ok, notes


# --- comparing outputs -----------------------------------------------------------------------------
def normalized(obj, places: list[tuple[str, str]]):
    if isinstance(obj, dict):
        return {k: normalized(v, places) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [normalized(v, places) for v in obj]
    if isinstance(obj, str):
        for path, name in places:
            obj = obj.replace(path, name)
        return obj
    return obj


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(kind: str, output: Path, places: list[tuple[str, str]]) -> dict[str, str]:
    """relative path → SHA-256 of what must not differ between runs."""
    output = Path(output)
    if kind == "eval":
        rows = json.loads((output / "results.json").read_text())["rows"]
        return {f"results.json:{r['method']}/{r['model']}": json.dumps([r.get("accs"), r.get("acc_mean")]) for r in rows}
    out = {}
    for p in sorted(output.rglob("*")):
        rel = p.relative_to(output)
        if not p.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix == ".json":
            out[str(rel)] = _digest(json.dumps(normalized(json.loads(p.read_text()), places), sort_keys=True).encode())
        elif kind == "artifact" or p.suffix == ".safetensors":  # experiments: the JSON (plots and markdown are rendered from it)
            out[str(rel)] = _digest(p.read_bytes())
    return out


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    names = sorted(set(a) | set(b))
    return [n + ("" if n in a and n in b else " (only in one)") for n in names if a.get(n) != b.get(n)]


def places_of(root: Path, cwd: Path) -> list[tuple[str, str]]:
    """The run's own folders, replaced by placeholders before JSON is compared (longest first)."""
    pairs = [(str(cwd.resolve()), "<cwd>"), (str(root.resolve()), "<root>"), (str(cwd), "<cwd>"), (str(root), "<root>")]
    return sorted(set(pairs), key=lambda p: -len(p[0]))


def valid(stage: Stage, cwd: Path, env: dict) -> tuple[bool, str]:
    """Loadable: `ladd info` for an artifact, readable JSON for results."""
    out = cwd / stage.output
    if stage.kind == "artifact":
        r = subprocess.run([*LADD, "info", stage.output], cwd=cwd, env=env, capture_output=True, text=True, check=False)
        return r.returncode == 0, "" if r.returncode == 0 else f"ladd info: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    try:
        name = "results.json" if stage.kind == "eval" else next(p.name for p in out.glob("*.json"))
        json.loads((out / name).read_text())
        return True, ""
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return False, f"results unreadable: {e}"


# --- fixtures, reference, chaos --------------------------------------------------------------------
class Bench:
    def __init__(self, work: Path, threads: int = 1, log: Callable[[str], None] = print, timeout: float = 1800):
        self.work, self.threads, self.say, self.timeout = Path(work).resolve(), threads, log, timeout
        self.fixtures: dict[str, Path | str] = {}
        self.references: dict[str, dict] = {}

    def fixture(self, name: str) -> Path:
        """A finished input artifact (made once per benchmark run, in its own cache)."""
        if name not in self.fixtures:
            root = self.work / "fixtures" / name
            shutil.rmtree(root, ignore_errors=True)
            env = environment(root / "cache", self.threads)
            for i, args in enumerate(FIXTURES[name]):
                a = attempt(args, root, env, root / "logs" / f"{i}.log", timeout=self.timeout)
                if a.rc != 0:
                    self.fixtures[name] = f"fixture {name!r}: `{shown(args)}` exited {a.rc}: " + " | ".join(a.tail())
                    break
            else:
                self.fixtures[name] = root / "art"
        made = self.fixtures[name]
        if isinstance(made, str):
            raise RuntimeError(made)
        return made

    def prepare(self, stage: Stage, cwd: Path) -> None:
        if stage.needs:
            shutil.copytree(self.fixture(stage.needs), cwd / stage.input)

    def fresh(self, *parts) -> Path:
        root = self.work.joinpath(*parts)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        return root

    def args(self, stage: Stage, resume: bool) -> list[str]:
        return [*stage.args, *([stage.resume] if resume and stage.resume else [])]

    def reference(self, stage: Stage, same_command: bool = False) -> dict:
        """One uninterrupted run in a fresh folder: its wall time, outputs and what it wrote."""
        if stage.name in self.references:
            return self.references[stage.name]
        root = self.fresh(stage.name, "reference")
        cwd, cache = root / "run", root / "cache"
        self.prepare(stage, cwd)
        env = environment(cache, self.threads)
        with Watcher(cache, [cwd]) as w:
            a = attempt(self.args(stage, same_command), cwd, env, root / "logs" / "reference.log", timeout=self.timeout)
        ref = {"attempt": a, "counts": w.counts(), "cwd": cwd, "root": root}
        if a.rc == 0:
            ref["fingerprint"] = fingerprint(stage.kind, cwd / stage.output, places_of(root, cwd))
        self.references[stage.name] = ref
        return ref

    def chaos(self, stage: Stage, kills: list[Kill], same_command: bool = False) -> dict:
        """Reference, then the same command killed at each of `kills` and run again until it
        finishes; the stage's row of the results."""
        row = {
            "stage": stage.name,
            "command": shown(self.args(stage, same_command)),
            "reference_s": None,
            "kills": 0,
            "kills_planned": len(kills),
            "survived": False,
            "identical": None,
            "lost_s": None,
            "notes": [],
            "attempts": [],
        }
        try:
            ref = self.reference(stage, same_command)
        except RuntimeError as e:
            row["notes"].append(str(e))
            return row
        r = ref["attempt"]
        row["reference_s"] = round(r.wall_s, 2)
        if r.rc != 0:
            row["notes"].append(f"reference run exited {r.rc}: " + " | ".join(r.tail()))
            return row
        self.say(f"[{stage.name}] reference {r.wall_s:.1f} s")
        root = self.fresh(stage.name, "chaos")
        cwd, cache = root / "run", root / "cache"
        self.prepare(stage, cwd)
        env = environment(cache, self.threads)
        attempts: list[Attempt] = []
        resume, fallbacks = same_command, 0
        while len(attempts) < len(kills) + 4:
            k = row["kills"]
            kill = kills[k] if k < len(kills) else None
            a = attempt(self.args(stage, resume), cwd, env, root / "logs" / f"attempt_{len(attempts) + 1}.log", kill, self.timeout)
            attempts.append(a)
            what = f"killed at {a.killed_at:.1f} s" if a.killed_at is not None else f"exit {a.rc} after {a.wall_s:.1f} s"
            self.say(f"[{stage.name}] attempt {len(attempts)}{' --resume' if resume and stage.resume else ''}: {what}")
            if a.killed_at is not None:
                row["kills"] += 1
                resume = True
                continue
            if a.rc == 0:
                row["survived"] = True
                break
            tail = a.tail()
            row["notes"].append(f"attempt {len(attempts)} (after {row['kills']} kill(s)) exited {a.rc}: " + " | ".join(tail))
            if resume and stage.resume and any("no checkpoint" in line for line in tail) and not same_command and fallbacks == 0:
                fallbacks += 1
                resume = False  # killed before its first checkpoint: a user starts over without --resume
                row["notes"].append("re-ran without --resume (killed before the first checkpoint)")
                continue
            break
        row["attempts"] = [a.summary() for a in attempts]
        row["lost_s"] = round(sum(a.wall_s for a in attempts) - r.wall_s, 2)
        if row["kills"] < len(kills) and row["survived"]:
            row["notes"].append(f"only {row['kills']} of {len(kills)} kills landed: an attempt finished before its kill moment")
        if row["survived"]:
            got = fingerprint(stage.kind, cwd / stage.output, places_of(root, cwd))
            diff = differences(ref["fingerprint"], got)
            row["identical"] = not diff
            if diff:
                row["notes"].append("differs from the reference: " + ", ".join(diff[:8]))
            ok, why = valid(stage, cwd, env)
            if not ok:
                row["notes"].append(why)
        return row

    def concurrent(self, stage: Stage, shared_cwd: bool) -> dict:
        """Two identical commands at once on one cache (one working folder or two)."""
        how = "one working folder" if shared_cwd else "two working folders"
        row = {
            "case": stage.name,
            "command": shown(stage.args),
            "how": f"2 processes, one cache, {how}",
            "ok": False,
            "identical": None,
            "trained_once": None,
            "notes": [],
        }
        try:
            ref = self.reference(stage)
        except RuntimeError as e:
            row["notes"].append(str(e))
            return row
        if ref["attempt"].rc != 0:
            row["notes"].append("no reference run: " + " | ".join(ref["attempt"].tail()))
        root = self.fresh(stage.name, "concurrent")
        cache = root / "cache"
        cwds = [root / "run"] * 2 if shared_cwd else [root / "run1", root / "run2"]
        for c in dict.fromkeys(cwds):
            self.prepare(stage, c)
        env = environment(cache, self.threads)
        t0 = time.monotonic()
        with Watcher(cache, list(dict.fromkeys(cwds))) as w:
            procs = [start(stage.args, c, env, root / "logs" / f"process_{i + 1}.log") for i, c in enumerate(cwds)]
            try:
                for p in procs:
                    p.wait(timeout=max(1.0, self.timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                row["notes"].append(f"timed out after {self.timeout:.0f} s")
            finally:
                for p in procs:
                    if p.poll() is None:
                        _kill_group(p)
                        p.wait()
        wall = time.monotonic() - t0
        rcs = [p.returncode for p in procs]
        logs = [root / "logs" / f"process_{i + 1}.log" for i in range(2)]
        for i, (rc, log) in enumerate(zip(rcs, logs)):
            if rc != 0:
                row["notes"].append(f"process {i + 1} exited {rc}: " + " | ".join(Attempt([], rc, 0, None, log).tail()))
        valid_all = True
        prints = []
        for c in dict.fromkeys(cwds):
            if all(rc == 0 for rc in rcs):
                ok, why = valid(stage, c, env)
                valid_all &= ok
                if not ok:
                    row["notes"].append(why)
                try:
                    prints.append(fingerprint(stage.kind, c / stage.output, places_of(root, c)))
                except Exception as e:  # noqa: BLE001
                    valid_all = False
                    row["notes"].append(f"unreadable output in {c.name}: {e}")
        row["ok"] = all(rc == 0 for rc in rcs) and valid_all
        if row["ok"]:
            diff = [] if len(prints) < 2 else differences(prints[0], prints[1])
            if "fingerprint" in ref:
                diff += [f"{d} vs reference" for d in differences(ref["fingerprint"], prints[0])]
            row["identical"] = not diff
            if diff:
                row["notes"].append("results differ: " + ", ".join(diff[:8]))
        once, notes = compare_counts(ref["counts"], w.counts(), len(set(cwds)))
        row["trained_once"] = once
        text = [log.read_text(errors="replace") if log.exists() else "" for log in logs]
        reuse = [t.count("reusing the expert") for t in text]
        waits = [t.count("waiting for another ladd process") for t in text]
        row["notes"] += [
            *notes,
            (
                f"'reusing the expert' lines per process: {reuse}; 'waiting for another ladd process' lines: {waits}; "
                f"wall {wall:.1f} s (one run: {ref['attempt'].wall_s:.1f} s)"
            ),
        ]
        return row


# --- output ----------------------------------------------------------------------------------------
def _mark(v) -> str:
    return "–" if v is None else ("yes" if v else "**no**")


def table(head: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def tables(data: dict) -> str:
    parts = []
    if data["stages"]:
        parts.append(
            table(
                ["stage", "reference s", "kills", "survived", "identical", "lost s"],
                [
                    [
                        s["stage"],
                        s["reference_s"] if s["reference_s"] is not None else "–",
                        f"{s['kills']}/{s['kills_planned']}",
                        _mark(s["survived"]),
                        _mark(s["identical"]),
                        s["lost_s"] if s["lost_s"] is not None else "–",
                    ]
                    for s in data["stages"]
                ],
            )
        )
    if data["concurrent"]:
        parts.append(
            table(
                ["case", "both ok", "identical", "trained once"],
                [[c["case"], _mark(c["ok"]), _mark(c["identical"]), _mark(c["trained_once"])] for c in data["concurrent"]],
            )
        )
    return "\n\n".join(parts)


def conditions(threads: int) -> dict:
    import torch

    import ladd

    return {
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ladd": ladd.__version__,
        "platform": platform.platform(),
    }


def _names(text: str, known, option: str) -> list[str]:
    if text in ("none", ""):
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        raise SystemExit(f"{option} {bad[0]!r}: choose from {', '.join(known)} (comma-separated), or none")
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("runs/chaos_work"), help="scratch folder (emptied per stage)")
    p.add_argument("--out", type=Path, default=Path("runs/chaos.json"), help="results JSON")
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs per stage")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    p.add_argument("--concurrent", default=None, help=f"concurrency cases ({', '.join(CONCURRENT)}, or none); default: those of --stages")
    p.add_argument("--same-command", action="store_true", help="pass --resume from the first attempt on (the same command line every time)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the ladd processes")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before one ladd process counts as hung")
    args = p.parse_args(argv)
    stages = _names(args.stages, STAGES, "--stages")
    cases = _names(args.concurrent, CONCURRENT, "--concurrent") if args.concurrent is not None else [s for s in stages if s in CONCURRENT]
    t0 = time.monotonic()
    bench = Bench(args.work, args.threads, log=lambda m: print(m, flush=True), timeout=args.timeout)
    data = {
        "command": command_line(),
        "conditions": conditions(args.threads),
        "kills": args.kills,
        "seed": args.seed,
        "same_command": args.same_command,
        "stages": [],
        "concurrent": [],
    }

    def save():
        data["conditions"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        data["wall_s"] = round(time.monotonic() - t0, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, data)

    startup = startup_s()
    data["conditions"]["startup_s"] = round(startup, 2)
    for name in stages:
        rng = random.Random(f"{args.seed}:{name}")
        try:
            t = bench.reference(STAGES[name], args.same_command)["attempt"].wall_s
        except RuntimeError:  # no fixture: bench.chaos says why
            t = 0.0
        moments = kill_moments(rng, t, startup, args.kills)
        row = bench.chaos(STAGES[name], moments, args.same_command)
        row["kill_moments_s"] = [round(m, 2) for m in moments]
        data["stages"].append(row)
        print(
            f"[{name}] survived {row['survived']}, identical {row['identical']}, lost {row['lost_s']} s"
            + "".join(f"\n    {n}" for n in row["notes"]),
            flush=True,
        )
        save()
    for name in cases:
        if args.same_command:
            bench.references.pop(name, None)  # the concurrent commands run without --resume
        row = bench.concurrent(STAGES[name], CONCURRENT[name])
        data["concurrent"].append(row)
        print(
            f"[concurrent {name}] ok {row['ok']}, identical {row['identical']}, trained once {row['trained_once']}"
            + "".join(f"\n    {n}" for n in row["notes"]),
            flush=True,
        )
        save()
    save()
    print()
    print(tables(data))
    print(f"\nwrote {args.out} ({time.monotonic() - t0:.0f} s)")
    return 0


def startup_s() -> float:
    """Seconds a `ladd` process takes before it does any work (interpreter, torch and ladd imports)."""
    t0 = time.monotonic()
    subprocess.run([*LADD, "--help"], capture_output=True, check=True)
    return time.monotonic() - t0


def kill_moments(rng: random.Random, t: float, startup: float, kills: int) -> list[float]:
    """When to kill each attempt: uniform over the middle 80% of the work it has left. A resumed
    attempt redoes only what the last checkpoint had not saved, so drawing every kill from the
    whole run's (0.1 T, 0.9 T) lets most resumed attempts finish first; here attempt i's window is
    what remains of T after the work (time past start-up) the earlier kills allowed."""
    moments, left = [], max(t - startup, 0.0)
    for _ in range(kills):
        work = rng.uniform(0.1 * left, 0.9 * left)
        moments.append(startup + work)
        left -= work
    return moments


if __name__ == "__main__":
    sys.exit(main())
