"""`ladd data prepare|info`: dataset stores ($LADD_CACHE/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ladd.cli.options import DataDir, Dataset_, Resolution, SkipBad
from ladd.core.io import write_json
from ladd.core.limits import (
    MAX_WORKERS,
)
from ladd.core.progress import console


app = typer.Typer(help="Decode on-disk datasets once into memory-mapped stores ($LADD_CACHE/data) and list them.", no_args_is_help=True)
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, max=MAX_WORKERS, help="Processes decoding the images (default: $LADD_WORKERS, else every CPU)."),
]


@app.command("prepare")
def data_prepare(
    dataset: Dataset_, data_dir: DataDir = None, resolution: Resolution = None, skip_unreadable: SkipBad = False, workers: Workers = None
):
    """Build a dataset's store now (other commands build it on first use) and print what it holds."""
    from ladd.data.store import prepare

    info = prepare(dataset, data_dir=data_dir, resolution=resolution, skip_unreadable=skip_unreadable, workers=workers)
    if info["path"] is None:
        console.print(f"{info['dataset']} is shipped in a package and read into memory: it has no store to prepare")
        return
    verb = (
        f"built in {info['decode_seconds']:.1f} s with {info['workers']} worker(s)"
        if info["built"]
        else f"reused (opened in {info['seconds']:.2f} s)"
    )
    skipped = f", {info['skipped']} unreadable images skipped" if info["skipped"] else ""
    console.print(
        f"{info['dataset']}: store {verb}\n  {info['path']}\n  {info['classes']} classes, images {'×'.join(map(str, info['shape']))}, "
        f"train {info['train']}, test {info['test']}, {info['bytes'] / 1e9:.3f} GB{skipped}\n  mean {info['mean']}, std {info['std']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command("info")
def data_info(json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the listing as JSON to this file.")] = None):
    """The dataset stores in the cache: dataset, image size, images per split, size on disk, decode time."""
    from rich.table import Table

    from ladd.core.cache import cache_root
    from ladd.data.store import stores

    rows = stores()
    table = Table(title=f"{len(rows)} dataset stores, {sum(r['bytes'] for r in rows) / 1e9:.2f} GB in {cache_root() / 'data'}")
    for col in ("dataset", "images", "train", "test", "GB", "decode s", "workers", "status", "entry"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *(
                str(v)
                for v in (
                    r.get("dataset"),
                    "×".join(map(str, r.get("shape") or [])),
                    r.get("train"),
                    r.get("test"),
                    f"{r['bytes'] / 1e9:.3f}",
                    r.get("decode_seconds"),
                    r.get("workers"),
                    r["status"],
                    r["entry"],
                )
            )
        )
    console.print(table)
    if json_out is not None:
        write_json(json_out, {"root": str(cache_root()), "stores": rows})
