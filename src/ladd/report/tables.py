"""Result tables: one row per trained variant, as markdown (results.md) and for the terminal.

Columns: test accuracy mean ± std over seeds (the mean alone for one seed); image and label bytes after zip DEFLATE (KB = 1024 B);
label bytes as a percentage of image bytes; FLOPs of making the images and the labels + one student's training;
wall seconds per seed."""

from __future__ import annotations

from rich.table import Table

COLUMNS = (
    ("method", "method"),
    ("model", "model"),
    ("ipc", "IPC"),
    ("acc", "acc %"),
    ("seeds", "seeds"),
    ("image_kb", "img KB"),
    ("label_kb", "lbl KB"),
    ("overhead", "lbl/img %"),
    ("flops", "FLOPs"),
    ("seconds", "s/seed"),
)


# `ladd report`: several runs side by side, with the protocol and DD-Ranking's scores.
CHANGED = "†"  # after the run of a row whose artifact no longer holds the images it was evaluated on
REPORT_COLUMNS = (("run", "run"), ("protocol", "protocol")) + COLUMNS[:-1] + (("lrs", "LRS %"), ("ars", "ARS %"))


def pm(mean: float, std: float, n: int | None = None) -> str:
    """A fraction's mean ± std in percent, as every table prints it; over n = 1 run the mean alone
    (a "± 0.00" would claim a spread that was never measured)."""
    return f"{100 * mean:.2f}" if n == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}"


def pm_of(row: dict) -> str:
    """`pm` of a result's acc_mean/acc_std, over its seeds (`accs` or `n_seeds`, when it records them)."""
    n = len(row["accs"]) if "accs" in row else row.get("n_seeds")
    return pm(row["acc_mean"], row["acc_std"], n)


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def cells(row: dict) -> dict[str, str]:
    return {
        "run": row.get("run", "") + (f" {CHANGED}" if row.get("artifact_changed") else ""),
        "protocol": row.get("protocol", "—"),
        "lrs": _pct(row.get("lrs")),
        "ars": _pct(row.get("ars")),
        "method": row["method"] + (f" ρ={row['prune']:g} {row['pool']}" if "prune" in row else ""),  # stored-relabel pool
        "model": row["model"],
        "ipc": str(row["ipc"]),
        "acc": pm(row["acc_mean"], row["acc_std"], row["n_seeds"]),
        "seeds": str(row["n_seeds"]),
        "image_kb": f"{row['image_bytes_zip'] / 1024:.1f}",
        "label_kb": f"{row['label_bytes_zip'] / 1024:.2f}",
        "overhead": f"{row['label_overhead_pct']:.1f}",
        "flops": f"{row['flops']:.3g}",
        "seconds": f"{row['seconds']:.1f}",
    }


def markdown(rows: list[dict], notes: list[str] = (), columns=COLUMNS) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        c = cells(row)
        lines.append("| " + " | ".join(c[key] for key, _ in columns) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def rich_table(rows: list[dict], title: str = "") -> Table:
    table = Table(title=title)
    for key, t in COLUMNS:
        table.add_column(t, justify="left" if key in ("method", "model") else "right")
    for row in rows:
        c = cells(row)
        table.add_row(*(c[key] for key, _ in COLUMNS))
    return table
