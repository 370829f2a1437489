"""TOML files ladd ships (recipes, evaluation protocols) named by a bare word, or the user's own
file named by a path. The two never mix: a file called `dc` in the working directory does not
shadow the shipped `dc` protocol, because only text that looks like a path is read from disk."""

from __future__ import annotations

import difflib
import os
import tomllib
from importlib import resources
from pathlib import Path

from ladd.core.errors import ConfigError


def looks_like_path(text: str) -> bool:
    """`./dc.toml`, `cfg/x.toml`, `x.toml`, `~/x.toml` are paths; `dc` and `dm-paper` are names."""
    return "/" in text or os.sep in text or text.startswith("~") or text.endswith(".toml")


def names(package: str) -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files(package).iterdir() if p.name.endswith(".toml"))


def read(package: str, name: str, kind: str) -> tuple[Path, dict]:
    """(path shown in messages, parsed TOML) of the shipped file `name` or of the file at a path."""
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"{kind} file {path} does not exist")
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read {kind} file {path}: {e.strerror or e}") from e
    else:
        shipped = names(package)
        if name not in shipped:
            close = difflib.get_close_matches(name, shipped, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"unknown {kind} {name!r}{hint}: shipped {kind}s are {', '.join(shipped)}, or pass a file as a path such as ./{name}.toml"
            )
        path = Path(name + ".toml")
        raw = resources.files(package).joinpath(path.name).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{kind} {path} is not UTF-8 text (byte {e.start}): save it as UTF-8 TOML") from e
    try:
        return path, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{kind} {path} is not valid TOML: {e}") from e
    except RecursionError as e:
        raise ConfigError(f"{kind} {path} is not valid TOML: arrays or tables nested too deeply") from e


def validate(model, data: dict, path: Path, kind: str, table: str = ""):
    """`data` (a parsed TOML file, or its `table`) as `model`, typed strictly (a string is not a
    number, a bool not an int; TOML dates are text): an unknown key, a wrong type or a bad value
    is one line naming the file and the key."""
    import json

    from pydantic import ValidationError

    try:
        return model.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join([*([table] if table else []), *map(str, err["loc"])]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ").replace("an object", "a table")  # TOML's word for it
        raise ConfigError(f"{kind} {path}: {loc}: {msg}") from None
