"""TOML files ladd ships (recipes, evaluation protocols) named by a bare word, or the user's own
file named by a path. The two never mix: a file called `dc` in the working directory does not
shadow the shipped `dc` protocol, because only text that looks like a path is read from disk."""

from __future__ import annotations

import difflib
import os
import tomllib
from importlib import resources
from pathlib import Path

from ladd.core.errors import LaddError


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
            raise LaddError(f"{kind} file {path} does not exist")
        text = path.read_text()
    else:
        shipped = names(package)
        if name not in shipped:
            close = difflib.get_close_matches(name, shipped, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise LaddError(f"unknown {kind} {name!r}{hint}: shipped {kind}s are {', '.join(shipped)}, "
                            f"or pass a file as a path such as ./{name}.toml")
        path = Path(name + ".toml")
        text = resources.files(package).joinpath(path.name).read_text()
    try:
        return path, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LaddError(f"{kind} {path} is not valid TOML: {e}") from e
