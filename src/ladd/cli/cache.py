"""`ladd cache ls|verify|prune`: see, re-hash and clean the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ladd.core.errors import ConfigError
from ladd.core.io import write_json
from ladd.core.progress import console


app = typer.Typer(help="See, re-hash and clean the cache ($LADD_CACHE, default ~/.cache/ladd).", no_args_is_help=True)
Kind = Annotated[
    Optional[list[str]],
    typer.Option("--kind", help="Only entries of this kind (experts, distill, labels, selection, teachers, data); repeatable."),
]


def _entries(kind: list[str] | None):
    from ladd.core import cache

    unknown = sorted(set(kind or []) - set(cache.FORMATS))
    if unknown:
        raise ConfigError(f"--kind {unknown[0]} is not a cache kind: choose from {', '.join(cache.FORMATS)}")
    return cache.entries(kind)


def _entry_table(entries, title: str, why: dict | None = None):
    from rich.table import Table

    table = Table(title=title)
    for col in ("kind", "entry", "MB", "age (days)", "status", *(["problem"] if why is not None else [])):
        table.add_column(col)
    for e in entries:
        r = e.row()
        table.add_row(
            r["kind"],
            r["entry"],
            f"{r['size_mb']:.2f}",
            f"{r['age_days']:.1f}",
            r["status"],
            *([why.get(e.path, "")] if why is not None else []),
        )
    console.print(table)


@app.command("ls")
def cache_ls(
    kind: Kind = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the listing as JSON to this file.")] = None,
):
    """Every cache entry: kind, size, age, and whether it is complete, incomplete, stale (made by an
    older format of its kind, never reused) or the leftover of a killed write."""
    from ladd.core.cache import cache_root

    entries = _entries(kind)
    _entry_table(entries, f"{len(entries)} entries, {sum(e.bytes for e in entries) / 1e6:.1f} MB in {cache_root()}")
    if json_out is not None:
        write_json(json_out, {"root": str(cache_root()), "entries": [{**e.row(), "path": str(e.path)} for e in entries]})


@app.command("verify")
def cache_verify(kind: Kind = None):
    """Re-hash and re-read every entry (experts' final weights against their recorded SHA-256, every
    safetensors and JSON file parsed); exit 1 when one is broken (`ladd cache prune --broken` removes it)."""
    from ladd.core.cache import verify

    entries = _entries(kind)
    why = {e.path: problem for e in entries if (problem := verify(e)) is not None}
    _entry_table([e for e in entries if e.path in why], f"{len(entries)} entries verified, {len(why)} broken", why)
    if why:
        raise typer.Exit(1)


@app.command("prune")
def cache_prune(
    kind: Kind = None,
    stale: Annotated[bool, typer.Option("--stale", help="Entries of an older format, and leftovers of killed writes.")] = False,
    incomplete: Annotated[bool, typer.Option("--incomplete", help="Experts whose training never finished.")] = False,
    broken: Annotated[bool, typer.Option("--broken", help="Entries `ladd cache verify` finds broken.")] = False,
    older_than: Annotated[
        Optional[float], typer.Option("--older-than", min=0, max=1e6, help="Entries not written for this many days.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every entry (of --kind).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
):
    """Remove cache entries: choose which with --stale, --incomplete, --broken, --older-than or --all
    (combined: any of them). Entries a running ladd process holds are skipped."""
    import time as clock

    from ladd.core.cache import prune, verify

    if not (stale or incomplete or broken or all_ or older_than is not None):
        raise ConfigError("say what to prune: --stale, --incomplete, --broken, --older-than DAYS or --all (try --dry-run first)")
    chosen = [
        e
        for e in _entries(kind)
        if all_
        or (stale and e.status in ("stale", "leftover"))
        or (incomplete and e.status == "incomplete")
        or (older_than is not None and clock.time() - e.modified > older_than * 86400)
        or (broken and verify(e) is not None)
    ]
    removed, busy = prune(chosen, dry_run)
    verb = "would remove" if dry_run else "removed"
    _entry_table(removed, f"{verb} {len(removed)} entries, {sum(e.bytes for e in removed) / 1e6:.1f} MB")
    for e in busy:
        console.print(f"skipped {e.path}: a running ladd process holds it")
