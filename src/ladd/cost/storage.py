"""Stored bytes, counted as the LADD paper does: each component's raw tensor bytes, and its size
after DEFLATE compression with Python's zipfile (archive headers included).

The archive is written to a sink that keeps only its size, from the tensor's memory in chunks:
counting a 30 GB relabel store takes no copy of it (the count equals `ZipFile.writestr`'s)."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Iterable

import torch

CHUNK = 1 << 26  # bytes handed to DEFLATE at a time


def raw_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _Size(io.RawIOBase):
    """A seekable sink that keeps only the size of what is written (zipfile seeks back to finish
    the entry's header, as it does in a file)."""

    def __init__(self):
        self.pos = self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = memoryview(b).nbytes
        self.pos += n
        self.size = max(self.size, self.pos)
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


def zip_bytes(t: torch.Tensor | Iterable[torch.Tensor], name: str = "tensor", nbytes: int | None = None) -> int:
    """Bytes of a zip archive holding the tensor's memory (or the parts' memories one after the
    other, as one entry) DEFLATE-compressed. With their total `nbytes` given, the parts are made
    one at a time as they are compressed (an iterator that gathers rows holds one chunk)."""
    parts = [t] if isinstance(t, torch.Tensor) else t if nbytes is not None else list(t)
    info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = sum(raw_bytes(p) for p in parts) if nbytes is None else nbytes  # decides zip64, as writestr's length does
    sink = _Size()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(info, "w") as entry:
        for part in parts:
            flat = part.detach().cpu().contiguous().view(-1).view(torch.uint8)
            for start in range(0, len(flat), CHUNK):
                entry.write(flat[start : start + CHUNK].numpy())
    return sink.size


def component_bytes(components: dict[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    """{name: {"raw": bytes, "zip": bytes}} for each stored tensor."""
    return {name: {"raw": raw_bytes(t), "zip": zip_bytes(t, name)} for name, t in components.items()}
