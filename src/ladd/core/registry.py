"""One generic name → object registry for sources, models, image methods and label methods."""

from __future__ import annotations

import difflib
import re
from typing import Callable, Generic, TypeVar

from ladd.core.errors import LaddError

T = TypeVar("T")


def normalize(name: str) -> str:
    """Fold the field's spellings together: `ResNet-18-BN`, `resnet18_bn` and `ResNet18BN` match."""
    return re.sub(r"[\s_\-.]", "", name).lower()


class Registry(Generic[T]):
    """Explicit names (plus aliases); registering a name twice raises; unknown names list the valid ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._names: dict[str, str] = {}  # normalized name or alias -> canonical name

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def add(obj: T) -> T:
            for key in (name, *aliases):
                norm = normalize(key)
                if norm in self._names:
                    raise ValueError(f"{self.kind} name {key!r} is already registered (as {self._names[norm]!r})")
                self._names[norm] = name
            self._items[name] = obj
            return obj

        return add

    def canonical(self, name: str) -> str:
        norm = normalize(name)
        if norm not in self._names:
            valid = ", ".join(self.names())
            close = difflib.get_close_matches(norm, list(self._names), n=1)
            hint = f" Did you mean {self._names[close[0]]!r}?" if close else ""
            raise LaddError(f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {valid}")
        return self._names[norm]

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return normalize(name) in self._names
