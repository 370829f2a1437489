"""The README's result tables, generated from the JSON files under docs/results/: each table sits
between `<!-- results: NAME -->` and `<!-- /results -->` in README.md and is rewritten from its
JSON, with the command that wrote the JSON beside it, so every number there can be checked and
re-made. The test suite runs `--check`: the README must equal what the JSON says.

    python benchmarks/readme_tables.py           # rewrite the tables in README.md
    python benchmarks/readme_tables.py --check   # exit 1 (and say which) if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from ladd.report.tables import markdown, pm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def source(*names: str) -> str:
    """The JSON files a table comes from and the command that wrote each."""
    lines = []
    for name in names:
        lines.append(f"`{load(name)['command']}` → [docs/results/{name}](docs/results/{name})")
    return "\n".join(f"{'Made by' if i == 0 else 'and'} {line}" + ("" if i == len(lines) - 1 else ";")
                     for i, line in enumerate(lines)) + "."


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows])


def lr_choice(row: dict) -> str:
    """The validation accuracy of every lr candidate, the chosen one in bold."""
    sel = row["lr_selection"]
    scores = sel["val_acc_by_lr"]
    return ", ".join((f"**{lr}: {100 * acc:.1f}**" if float(lr) == sel["chosen"] else f"{lr}: {'diverged' if acc is None else f'{100 * acc:.1f}'}")
                     for lr, acc in scores.items())


# --- one renderer per table ---------------------------------------------------------------------

def ladd_run() -> str:
    files = ("ladd_run_ipc10.json", "ladd_run_ipc1.json")
    rows = [r for f in files for r in load(f)["rows"]]
    return markdown(rows).rstrip("\n") + "\n\n" + source(*files)


def local_reduction() -> str:
    data = load("local_reduction.json")
    rows = [[str(r["ipc"]), r["method"], r["local_reduction"] or "–", pm(r["acc_mean"], r["acc_std"]), f"{r['lr']:g}", lr_choice(r)]
            for r in data["rows"]]
    head = ["IPC", "method", "local views", "test acc % (3 seeds)", "lr", "validation acc % per lr candidate (chosen in bold)"]
    return table(head, rows) + "\n\n" + source("local_reduction.json")


RENDERERS = {
    "ladd-run": ladd_run,
    "local-reduction": local_reduction,
}


def render(readme: str) -> tuple[str, list[str]]:
    """The README with every results block regenerated, and the names of unknown blocks."""
    unknown = []

    def fill(m: re.Match) -> str:
        name = m["name"]
        if name not in RENDERERS:
            unknown.append(name)
            return m[0]
        return m[1] + RENDERERS[name]() + "\n" + m[4]

    return BLOCK.sub(fill, readme), unknown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if README.md differs from the JSON")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    new, unknown = render(text)
    if unknown:
        print(f"unknown results block(s) in {args.readme}: {', '.join(unknown)}", file=sys.stderr)
        return 1
    used = set(re.findall(r"docs/results/([\w.-]+\.json)", new))
    orphans = sorted(p.name for p in RESULTS.glob("*.json") if p.name not in used)
    if orphans:
        print(f"docs/results holds JSON no README table shows: {', '.join(orphans)}", file=sys.stderr)
        return 1
    if args.check:
        if new != text:
            print(f"{args.readme} is out of date with docs/results: run python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    print(f"rewrote {len(BLOCK.findall(new))} result tables in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
