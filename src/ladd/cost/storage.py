"""Stored bytes, counted as the LADD paper does: each component's raw tensor bytes, and its size
after DEFLATE compression with Python's zipfile (archive headers included)."""

from __future__ import annotations

import io
import zipfile

import torch


def raw_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def zip_bytes(t: torch.Tensor, name: str = "tensor") -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, t.detach().cpu().contiguous().numpy().tobytes())
    return len(buf.getvalue())


def component_bytes(components: dict[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    """{name: {"raw": bytes, "zip": bytes}} for each stored tensor."""
    return {name: {"raw": raw_bytes(t), "zip": zip_bytes(t, name)} for name, t in components.items()}
