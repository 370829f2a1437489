"""Recipes: a method's hyperparameters for one setting, as data (TOML files in ladd/recipes/).

A recipe names its method and budget (`paper` = the reference setting, `cpu` = a budget that
finishes in minutes on 2 cores) and cites where each default comes from. `[params]` applies to
every IPC; `[ipc.N]` tables override it for IPC N. `extends = "NAME"` starts from a shipped
recipe's parameters for that IPC (its method may differ: DSA uses DC's), so a setting that differs
in a few values states only those. The default recipe for (method, dataset) is
`{method}-{dataset}.toml` when ladd ships one, else `{method}-paper.toml`.
"""

from __future__ import annotations

from pathlib import Path

from ladd.core import shipped as files
from ladd.core.errors import LaddError

PACKAGE = "ladd.recipes"


def shipped() -> list[str]:
    return files.names(PACKAGE)


def has_recipes(method: str) -> bool:
    """Methods with hyperparameters ship at least `{method}-paper.toml`; random/import have none."""
    return f"{method}-paper" in shipped()


def load_recipe(method: str, dataset: str, ipc: int, name: str | None = None) -> dict:
    """{"name", "method", "budget", "source", "params"} for this method, dataset and IPC. `name` is a
    shipped recipe or a path (`./my.toml`); None = `{method}-{dataset}` if shipped, else `{method}-paper`."""
    if name is None:
        candidates = [f"{method}-{dataset}", f"{method}-paper"]
        name = next((c for c in candidates if c in shipped()), None)
        if name is None:
            raise LaddError(f"no recipe {' or '.join(candidates)} for --images {method}: shipped recipes are {', '.join(shipped())}, or pass a .toml file")
    path, data = files.read(PACKAGE, name, "recipe")
    if data.get("method") != method:
        raise LaddError(f"recipe {path} is for method {data.get('method')!r}, not {method!r}")
    return {"name": path.stem, "method": method, "budget": data.get("budget", "?"), "source": data.get("source", ""),
            "params": _params(path, data, ipc)}


def _params(path: Path, data: dict, ipc: int) -> dict:
    """The recipe's parameters for `ipc`: the extended recipe's, then `[params]`, then `[ipc.N]`."""
    base = {}
    if "extends" in data:
        if data["extends"] not in shipped():
            raise LaddError(f"recipe {path} extends {data['extends']!r}, which is not shipped: shipped recipes are {', '.join(shipped())}")
        base_path, base_data = files.read(PACKAGE, data["extends"], "recipe")
        base = _params(base_path, base_data, ipc)
    return {**base, **data.get("params", {}), **data.get("ipc", {}).get(str(ipc), {})}
