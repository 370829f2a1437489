"""Experiment tracking: per-epoch training curves and final result rows sent to CSV, TensorBoard or
Weights & Biases through one small `Tracker` interface (`--track csv|tensorboard|wandb`).

The tracker of a command is installed with `using(tracker)` around its work and found by the code
that trains and writes rows through `current()`, so the many callers between the CLI and the
trainer (evaluate, robustness, equal-cost rows, benchmarks) need no extra argument. Only rank 0
gets one (`make_tracker` returns None elsewhere), so under torchrun one process writes its files.
TensorBoard and W&B are optional extras, imported only when chosen; W&B runs offline (no network,
no account), and `wandb sync` uploads the run later.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
from pathlib import Path
from typing import Iterator, Literal, Protocol

from ladd.core import dist
from ladd.core.errors import ConfigError

Kind = Literal["csv", "tensorboard", "wandb"]
KINDS: tuple[str, ...] = ("csv", "tensorboard", "wandb")
CURVES = "curves.csv"
ROWS = "rows.csv"
CURVE_COLUMNS = ("run", "student", "epoch", "loss", "lr", "test_acc")

_current: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar("ladd_tracker", default=None)


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        """Scalars of one training curve (`prefix` names the student) at `step` (epochs done)."""

    def row(self, row: dict) -> None:
        """One final result row (its scalar fields are tracked)."""

    def close(self) -> None: ...


def _scalars(row: dict) -> dict[str, float | int | str]:
    """A row's flat fields: nested ones (per-seed lists, layouts, curves) stay in results.json."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


class CsvTracker:
    """`curves.csv` (one line per student epoch, flushed as it comes, so a run can be followed with
    `tail -f`) and `rows.csv` (the final rows' scalar fields, written at close: rows differ in
    which fields they have)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.folder / CURVES, "w", newline="")
        self._curves = csv.DictWriter(self._file, CURVE_COLUMNS)
        self._curves.writeheader()
        self._rows: list[dict] = []

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        self._curves.writerow({"run": self.folder.name, "student": prefix, "epoch": step, **values})
        self._file.flush()

    def row(self, row: dict) -> None:
        self._rows.append(_scalars(row))

    def close(self) -> None:
        self._file.close()
        if self._rows:
            columns = list(dict.fromkeys(k for r in self._rows for k in r))
            with open(self.folder / ROWS, "w", newline="") as f:
                writer = csv.DictWriter(f, ["run", *columns])
                writer.writeheader()
                writer.writerows({"run": self.folder.name, **r} for r in self._rows)


class TensorBoardTracker:
    """Event files under `<run folder>/tensorboard` (`tensorboard --logdir <run folder>`): one
    scalar tag per student and value; each row's numbers under `rows/<method> · <model>`."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--track tensorboard needs the tensorboard package: pip install 'ladd[tensorboard]'") from None
        self._writer = SummaryWriter(log_dir=str(Path(folder) / "tensorboard"))

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def row(self, row: dict) -> None:
        for name, value in _scalars(row).items():
            if not isinstance(value, str):
                self._writer.add_scalar(f"rows/{row.get('method')} · {row.get('model')}/{name}", value, 0)

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    """An offline W&B run under `<run folder>/wandb`: each student's curve against its own epoch
    axis (W&B's global step only grows, and every student starts at epoch 1), the rows as a table."""

    def __init__(self, folder: Path):
        try:
            import wandb
        except ImportError:
            raise ConfigError("--track wandb needs the wandb package: pip install 'ladd[wandb]'") from None
        self._wandb = wandb
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(mode="offline", dir=str(folder), project="ladd", name=folder.name, settings=wandb.Settings(silent=True))
        self._axes: set[str] = set()
        self._rows: list[dict] = []

    def log(self, step: int, values: dict[str, float], prefix: str) -> None:
        if prefix not in self._axes:
            self._run.define_metric(f"{prefix}/epoch")
            self._run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/epoch")
            self._axes.add(prefix)
        self._run.log({f"{prefix}/epoch": step, **{f"{prefix}/{k}": v for k, v in values.items()}})

    def row(self, row: dict) -> None:
        self._rows.append(_scalars(row))

    def close(self) -> None:
        if self._rows:
            columns = list(dict.fromkeys(k for r in self._rows for k in r))
            self._run.log({"rows": self._wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in self._rows])})
        self._run.finish()


def make_tracker(kind: str | None, folder: Path) -> Tracker | None:
    """The tracker `--track KIND` asks for, writing into the run folder; None when none is asked
    for and on every rank but 0."""
    if kind is None or not dist.main():
        return None
    if kind not in KINDS:
        raise ConfigError(f"--track {kind}: choose one of {', '.join(KINDS)}")
    return {"csv": CsvTracker, "tensorboard": TensorBoardTracker, "wandb": WandbTracker}[kind](Path(folder))


@contextlib.contextmanager
def using(tracker: Tracker | None) -> Iterator[Tracker | None]:
    """Make `tracker` the current one for the block, and close it after (also on an error, so the
    curves up to a failure are kept)."""
    token = _current.set(tracker)
    try:
        yield tracker
    finally:
        _current.reset(token)
        if tracker is not None:
            tracker.close()


def current() -> Tracker | None:
    return _current.get()
