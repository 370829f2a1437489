"""One generic name → object registry for sources, models, image methods, label methods, loss
terms and protocols. Each registry names the modules that hold its built-ins and imports them on
first use, so registration is stated where the registry is made rather than by imports placed at
the bottom of a package (and plugins, `ladd.core.plugins`, register after the built-ins)."""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Callable, Generic, TypeVar

from ladd.core.errors import ConfigError

T = TypeVar("T")


def normalize(name: str) -> str:
    """Fold the field's spellings together: `ResNet-18-BN`, `resnet18_bn` and `ResNet18BN` match."""
    return re.sub(r"[\s_\-.]", "", name).lower()


class NameTaken(ValueError):
    """A name or alias registered twice: a programming error in ladd, a refused plugin outside it."""


class Registry(Generic[T]):
    """Explicit names (plus aliases); registering a name twice raises; unknown names list the valid ones."""

    def __init__(self, kind: str, builtins: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._names: dict[str, str] = {}  # normalized name or alias -> canonical name
        self._builtins = builtins  # registers the built-ins: run once, before the first lookup

    def load_builtins(self) -> None:
        """Register the built-ins now if they are not yet (every lookup does so first; a plugin
        registers after them, so taking one of their names is refused)."""
        if self._builtins is not None:
            builtins, self._builtins = (
                self._builtins,
                None,
            )  # cleared first: a built-in looking a name up as it is imported does not start over
            builtins()

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def add(obj: T) -> T:
            for key in (name, *aliases):
                norm = normalize(key)
                if norm in self._names:
                    raise NameTaken(f"{self.kind} name {key!r} is already registered (as {self._names[norm]!r})")
                self._names[norm] = name
            self._items[name] = obj
            return obj

        return add

    def canonical(self, name: str) -> str:
        self.load_builtins()
        norm = normalize(name)
        if norm not in self._names:
            valid = ", ".join(self.names())
            close = difflib.get_close_matches(norm, list(self._names), n=1)
            hint = f" Did you mean {self._names[close[0]]!r}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {valid}")
        return self._names[norm]

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        self.load_builtins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self.load_builtins()
        return normalize(name) in self._names


def modules(package: str, *names: str) -> Callable[[], None]:
    """The built-ins of a registry: importing these modules of `package` runs their `register` decorators."""

    def load() -> None:
        for name in names:
            importlib.import_module(f"{package}.{name}")

    return load
