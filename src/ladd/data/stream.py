"""Reading a dataset split batch by batch, whether it lives in memory or in a dataset store.

A split opened from the store (`ladd.data.store`) is a memory-mapped uint8 tensor. Indexing it
works like any tensor, but every page it touches stays mapped into the process and counts in its
resident memory (RSS) until the process ends: one pass over a 2.4 GB split "costs" 2.4 GB of RSS.
The readers here read such a split with `pread` instead (into a fresh buffer, straight from the
page cache), so what a pass over it holds is one batch:

- `gather(images, idx)` = `images[idx]` as a new tensor;
- `chunks(images, size)` = `images.split(size)`, each chunk a new tensor;
- `batches(images, index_batches, device)` = `images[idx]` for each idx of an epoch, on `device`,
  read ahead by a background thread into pinned memory on CUDA (the trainer's data path);
- `rows(images, index)` = the rows `index` of a split without copying them: an `IndexView` for a
  stored split (`holdout`'s training remainder), a plain copy for an in-memory one.

An in-memory tensor goes through the same calls unchanged (`images[idx]`, `images.split`), so small
sets keep their fast path and every result is the same either way.
"""

from __future__ import annotations

import collections
import itertools
import os
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ladd.core.errors import ArtifactError

PREFETCH = 6  # batches `batches` reads ahead of the trainer
READERS = 3  # threads reading them


@dataclass(frozen=True)
class _Mapped:
    """One memory-mapped store array: where its bytes are in memory and in its file."""

    start: int  # address of its first byte
    nbytes: int
    path: Path
    offset: int  # file offset of its first byte (after the .npy header)
    fd: int  # kept open: reads keep working even if `ladd cache prune` removes the store


_MAPS: dict[int, _Mapped] = {}  # by start address; an entry goes when its array is freed


def _forget(start: int, fd: int) -> None:
    _MAPS.pop(start, None)
    os.close(fd)


def register(array: np.memmap, path: Path) -> torch.Tensor:
    """The tensor of a memory-mapped .npy array (`np.load(mmap_mode="c")`), registered so the readers
    here can find its file and read it with pread (until the last tensor over it is freed)."""
    tensor = torch.from_numpy(array)
    if array.nbytes:
        start, fd = tensor.data_ptr(), os.open(path, os.O_RDONLY)
        _MAPS[start] = _Mapped(start, array.nbytes, Path(path), int(array.offset), fd)
        weakref.finalize(array, _forget, start, fd)  # torch's tensors keep `array` alive
    return tensor


def _located(images) -> tuple[_Mapped, int] | None:
    """(the mapped array holding `images`, byte offset of images[0] in its file), or None when
    `images` is not a contiguous slice of a stored array."""
    if not isinstance(images, torch.Tensor) or images.device.type != "cpu" or images.numel() == 0 or not images.is_contiguous():
        return None
    ptr = images.data_ptr()
    for m in list(_MAPS.values()):
        if m.start <= ptr < m.start + m.nbytes:
            return m, m.offset + (ptr - m.start)
    return None


def stored(images) -> bool:
    """Whether `images` is read from a dataset store (then it must never be copied whole)."""
    return isinstance(images, IndexView) or _located(images) is not None


def _as_index(idx, n: int) -> torch.Tensor:
    if isinstance(idx, slice):
        return torch.arange(n)[idx]
    idx = torch.as_tensor(idx).cpu()
    if idx.dtype == torch.bool:
        return idx.nonzero().flatten()
    return idx.long()


def _pread_rows(fd: int, offset: int, row: int, rows: np.ndarray, out: np.ndarray, path: Path) -> None:
    """out[j] = bytes of row rows[j] (rows in range), read in ascending file order; runs of
    consecutive rows landing in consecutive slots are one read."""
    flat = out.reshape(len(rows), row)
    order = np.argsort(rows, kind="stable")
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and rows[order[j]] == rows[order[j - 1]] + 1 and order[j] == order[j - 1] + 1:
            j += 1
        first, run = int(order[i]), j - i
        want = row * run
        view = memoryview(flat[first : first + run]).cast("B")
        got = os.preadv(fd, [view], offset + int(rows[order[i]]) * row)
        while 0 < got < want:  # a short read of a regular file: rare, finish it
            more = os.preadv(fd, [view[got:]], offset + int(rows[order[i]]) * row + got)
            if more == 0:
                break
            got += more
        if got != want:
            raise ArtifactError(
                f"{path} is shorter than its header says (a damaged dataset store): remove it with "
                "`ladd cache prune --kind data --broken` and load the dataset again"
            )
        i = j


def gather(images, idx, out: torch.Tensor | None = None) -> torch.Tensor:
    """`images[idx]` (idx: int indices of any shape, a bool mask or a slice) as a new tensor; read
    with pread for a stored split. `out` (optional): a buffer of the result's shape to read into."""
    if isinstance(images, IndexView):
        return gather(images.base, images.index[_as_index(idx, len(images))], out)
    located = _located(images)
    if located is None:
        got = images[idx.to(images.device) if isinstance(idx, torch.Tensor) else idx]
        return got if out is None else out.copy_(got)
    mapped, offset = located
    idx = _as_index(idx, len(images))
    n = len(images)
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"index {int(idx.max()) if int(idx.max()) >= n else int(idx.min())} is out of bounds for {n} images")
    flat = torch.where(idx < 0, idx + n, idx).reshape(-1)
    shape = (*idx.shape, *images.shape[1:])
    if out is None:
        out = torch.empty(shape, dtype=images.dtype)
    row = images[0].numel() * images.element_size()
    _pread_rows(mapped.fd, offset, row, flat.numpy(), out.numpy(), mapped.path)
    return out


def chunks(images, size: int):
    """Consecutive chunks of at most `size` images, in order (`images.split(size)`); each chunk of a
    stored split is a new tensor read with pread."""
    if not stored(images):
        yield from images.split(size)
        return
    for start in range(0, len(images), size):
        yield gather(images, slice(start, min(start + size, len(images))))


def rows(images, index: torch.Tensor):
    """The rows `index` of a split: a lazy `IndexView` of a stored split (nothing copied), a copy of
    an in-memory one (as `images[index]`)."""
    if isinstance(images, IndexView):
        return IndexView(images.base, images.index[index.cpu().long()])
    if stored(images):
        return IndexView(images, index.cpu().long())
    return images[index]


def batches(images, index_batches, device: torch.device):
    """`images[idx]` on `device` for each idx of `index_batches`, in order. An in-memory tensor is
    indexed on its device as it is (the trainer's fast path for small sets); a stored split is read
    by READERS threads (pread sorted by file offset; the GIL is released while the kernel copies)
    up to PREFETCH batches ahead, into pinned memory when `device` is CUDA, then copied without blocking."""
    if not stored(images):
        for idx in index_batches:
            yield images[idx.to(images.device)]
        return
    device = torch.device(device)
    pin = device.type == "cuda"
    index_batches = list(index_batches)
    if any(idx.device.type != "cpu" for idx in index_batches):  # indices already on the device: one copy back per epoch
        index_batches = list(torch.cat(index_batches).cpu().split([len(idx) for idx in index_batches]))
    shape = tuple(images.shape[1:])

    def read(idx: torch.Tensor) -> torch.Tensor:
        return gather(images, idx, torch.empty((len(idx), *shape), dtype=images.dtype, pin_memory=pin))

    pool = ThreadPoolExecutor(READERS, thread_name_prefix="ladd-read")
    pending: collections.deque = collections.deque()
    todo = iter(index_batches)
    try:
        for idx in itertools.islice(todo, PREFETCH):
            pending.append(pool.submit(read, idx))
        while pending:
            batch = pending.popleft().result()
            idx = next(todo, None)
            if idx is not None:
                pending.append(pool.submit(read, idx))
            yield batch.to(device, non_blocking=pin)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class IndexView:
    """Rows `index` of a stored images tensor, read only when asked for: what `holdout` keeps of a
    stored training split. It answers what a split's readers ask (shape, dtype, len, `view[idx]`,
    `split`), reading with pread; anything else (a torch function, another tensor method) works on
    the rows gathered into a tensor, i.e. copies them, as `images[index]` would have."""

    def __init__(self, base: torch.Tensor, index: torch.Tensor):
        self.base, self.index = base, index

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.base.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def dim(self) -> int:
        return self.base.ndim

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def element_size(self) -> int:
        return self.base.element_size()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key):
        if isinstance(key, tuple):  # rows first, then the rest of the key on them
            return self[key[0]][key[1:]] if isinstance(key[0], int) else gather(self, key[0])[(slice(None), *key[1:])]
        if isinstance(key, int):
            return gather(self, torch.tensor([key]))[0]
        return gather(self, key)

    def __iter__(self):
        for chunk in chunks(self, 256):
            yield from chunk

    def split(self, size: int):
        """Lazily: one chunk is read per step of the iteration."""
        return chunks(self, size)

    def materialize(self) -> torch.Tensor:
        return gather(self.base, self.index)

    def __getattr__(self, name):  # any other tensor method: on the gathered rows
        return getattr(self.materialize(), name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def swap(a):
            return a.materialize() if isinstance(a, IndexView) else [swap(b) for b in a] if isinstance(a, (list, tuple)) else a

        return func(*swap(args), **{k: swap(v) for k, v in (kwargs or {}).items()})

    def __repr__(self) -> str:
        return f"IndexView({len(self.index)} of {len(self.base)} stored images {tuple(self.shape[1:])})"
