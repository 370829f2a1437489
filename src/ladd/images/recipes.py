"""Recipes: a method's hyperparameters for one setting, as data (TOML files in ladd/recipes/).

A recipe names its method and budget (`paper` = the reference setting, `cpu` = a budget that
finishes in minutes on 2 cores) and cites where each default comes from. `[params]` applies to
every IPC; `[ipc.N]` tables override it for IPC N. An IPC no table of the recipe (or of those it
extends) names runs the setting of the nearest named IPC below it (baseline++'s IPC 2 runs IPC 1's
loops), not the method's defaults, which are a paper's largest setting. `extends = "NAME"` starts from a shipped
recipe's parameters for that IPC (its method may differ: DSA uses DC's), so a setting that differs
in a few values states only those. The default recipe for (method, dataset) is
`{method}-{dataset}.toml` when ladd ships one, else `{method}-paper.toml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ladd.core import shipped as files
from ladd.core.errors import ConfigError

PACKAGE = "ladd.recipes"


class RecipeFile(BaseModel):
    """The keys a recipe file may hold; `params` and `[ipc.N]` are checked against the method's parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    method: str
    budget: str = "?"
    source: str = ""
    extends: str | None = None
    params: dict[str, Any] = {}
    ipc: dict[Annotated[str, Field(pattern=r"^[1-9][0-9]{0,8}$")], dict[str, Any]] = {}


def params_model(method: str) -> type[BaseModel] | None:
    """The pydantic model a method validates its recipe parameters with (None: a method without recipes)."""
    from ladd.images import dm, gradient_matching, herding, lic, mtt, rded, recover

    return {
        "dm": dm.DMParams,
        "dc": gradient_matching.GradientMatchingParams,
        "dsa": gradient_matching.GradientMatchingParams,
        "herding": herding.HerdingParams,
        "lic": lic.LICParams,
        "mtt": mtt.MTTParams,
        "rded": rded.RDEDParams,
        "sre2l": recover.RecoverParams,
        "lpld": recover.RecoverParams,
    }.get(method)


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
            raise ConfigError(
                f"no recipe {' or '.join(candidates)} for --images {method}: "
                f"shipped recipes are {', '.join(shipped())}, or pass a .toml file"
            )
    path, data = files.read(PACKAGE, name, "recipe")
    recipe = files.validate(RecipeFile, data, path, "recipe")
    if recipe.method != method:
        raise ConfigError(f"recipe {path} is for method {recipe.method!r}, not {method!r}")
    chain = _chain(path, data)
    setting = max((int(n) for d in chain for n in d.get("ipc", {}) if int(n) <= ipc), default=ipc)  # the nearest named IPC
    params = _params(chain, setting)
    model = params_model(method)
    if model is not None:  # every IPC the file sets, so a typo in [ipc.50] fails at IPC 10 too, before any data is read
        for n in sorted({str(setting), *recipe.ipc}, key=int):
            merged = _params(chain, int(n))
            files.validate(model, {k: v for k, v in merged.items() if k not in recipe.ipc.get(n, {})}, path, "recipe", "params")
            files.validate(model, merged, path, "recipe", f"ipc.{n}")
    return {"name": path.stem, "method": method, "budget": recipe.budget, "source": recipe.source, "params": params}


def _chain(path: Path, data: dict) -> list[dict]:
    """The recipe's data after that of the recipes it extends, each file read once."""
    if "extends" not in data:
        return [data]
    if data["extends"] not in shipped():
        raise ConfigError(f"recipe {path} extends {data['extends']!r}, which is not shipped: shipped recipes are {', '.join(shipped())}")
    return [*_chain(*files.read(PACKAGE, data["extends"], "recipe")), data]


def _params(chain: list[dict], ipc: int) -> dict:
    """The parameters for `ipc`: per file of the chain, the extended one first, `[params]` then `[ipc.N]`."""
    params: dict = {}
    for data in chain:
        params |= {**data.get("params", {}), **data.get("ipc", {}).get(str(ipc), {})}
    return params
