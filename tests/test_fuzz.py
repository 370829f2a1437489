"""Fuzzing every input boundary (issue "Reliability"): artifact manifests and relabel.json,
safetensors files (artifacts, relabels, checkpoints, imports), recipe and protocol TOML, and data
folders. Whatever the input, a loader either works or raises one one-line LaddError (the CLI: exit
code 2 and one `error:` line), never another exception, and writes nothing.

Structured inputs are generated with hypothesis (LADD_FUZZ_EXAMPLES examples per test, default
40; derandomized, so CI sees the same examples every run); data folders are explicit cases.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import math
import os
import re
import resource
import shutil
import struct
import sys
import tempfile
import zlib
from functools import partial
from importlib import resources
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import make_dataset
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save as safetensors_bytes

from ladd import pipeline
from ladd.artifact import MANIFEST, load_artifact, save_artifact
from ladd.artifact.relabel import INFO, RELABEL_DIR, epoch_file
from ladd.core.checkpoint import load_state, restore_weights, state_meta
from ladd.core.errors import LaddError
from ladd.core.io import load_metadata, load_safetensors, sha256
from ladd.core.runtime import Runtime
from ladd.data import load_dataset
from ladd.eval.protocol import default_methods
from ladd.eval.protocols import Protocol, load_protocol
from ladd.experts import ExpertConfig
from ladd.images import ImageRequest
from ladd.images.imported import import_images, read_image_folder, read_tensors
from ladd.images.recipes import load_recipe, params_model
from ladd.labels.relabel import RelabelConfig

EXAMPLES = int(os.environ.get("LADD_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


# --- what every case must end in -------------------------------------------------------------------


def outcome(call):
    """The loader's result, or the LaddError it raised (checked to be one non-empty line); any
    other exception propagates and fails the test with its traceback."""
    try:
        result = call()
    except LaddError as e:
        assert len(str(e).splitlines()) == 1 and str(e).strip(), repr(str(e))
        result = e
    with contextlib.suppress(Exception):  # what the examples reached: `pytest --hypothesis-show-statistics`
        what = re.sub(r"/\S+/", "", str(result))[:50] if isinstance(result, LaddError) else "loaded"
        event(f"{getattr(call, '__name__', '')}: {what}")
    return result


def cli(*args) -> tuple[int, str]:
    """`ladd ARGS` in this process through `cli.main`: exit code 0, or 2 with exactly one `error:` line."""
    from ladd.cli import main

    err = io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["ladd", *map(str, args)]),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code or 0
    text = err.getvalue()
    assert "Traceback" not in text
    if code:
        lines = [line for line in text.splitlines() if line.strip()]
        assert code in (2, 3, 4, 5) and lines and lines[-1].startswith("error: "), text  # one of the LaddError kinds
        assert sum(line.startswith("error:") for line in lines) == 1, text
    return code, text


def siblings(path: Path) -> list[str]:
    """What a command left beside and at `path` (nothing, after a refused write)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name == path.name or p.name.startswith(f".{path.name}."))


# --- a small artifact with every component: labels, soft + dense labels, a stored relabel -----------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LADD_CACHE", str(root / "cache"))
        mp.setenv("LADD_NO_PROGRESS", "1")
        toy = make_dataset(n_per_class=4, classes=2, size=8)
        art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=2))
        g = torch.Generator().manual_seed(0)
        n = len(art.images)
        soft, dense = torch.rand(n, 2, generator=g).softmax(-1), torch.rand(n, 4, 2, generator=g).softmax(-1)
        labeler = {"model": "convnet", "epoch": 1.0, "test_acc": 0.5, "ensemble": 1, "temperature": 1.0, "top_k": None}
        labels = {"method": "ladd", "dtype": "float32", "top_k": None, "subsample": {"n": 2, "r": 0.5}, "labeler": labeler, "config": {}}
        art = art.with_labels(soft, dense, labels, {"unit": "FLOPs", "labeler_train": 1, "label_generation": 2})
        path = root / "art"
        save_artifact(path, art)
        cfg = RelabelConfig(epochs=2, batch_size=4, teacher=ExpertConfig(model="convnet-w32", epochs=1, batch_size=4), dtype="float32")
        save_artifact(path, pipeline.relabel(load_artifact(path), path, toy, cfg, Runtime()))
    assert load_artifact(path).relabel is not None
    return path


@contextlib.contextmanager
def copy_of(base: Path):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "art"
        shutil.copytree(base, path)
        yield path


def use(art) -> None:
    """Read an artifact the way ladd's commands do, past loading (every manifest field they use)."""
    assert art.geometry is None or len(art.geometry) == 2
    default_methods(art)
    pipeline.source_of(art)


def _replay_one(art) -> None:
    """What a student replaying the stored relabel reads: every epoch's inputs and targets."""
    from ladd.augment.fkd import render

    store = art.relabel
    rows = torch.arange(store.samples)
    for e in range(store.epochs):
        render(art.images.float(), (0.5,), (0.25,), store.epoch(e), rows)
        store.targets(e, rows)
    store.storage()


# --- JSON documents (manifest.json, relabel.json) mutated at every level ------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _nasty(value):
    """Values of every other JSON type and edge values, for `value`'s place."""
    return (
        st.sampled_from(
            [
                None,
                True,
                False,
                0,
                -1,
                1,
                2**63,
                2**64 + 1,
                0.5,
                -0.0,
                1e308,
                float("nan"),
                float("inf"),
                "",
                "x",
                "1",
                "../../x",
                "a\nb",
                [],
                {},
                [value],
                {"k": value},
                str(value)[:20],
            ]
        )
        | JSON
    )


def mutate(data, doc):
    """1–3 random edits of `doc` (a JSON object): delete an entry, replace a value anywhere (by
    another type, an edge value or any JSON), or add an unknown key."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        where = data.draw(st.sampled_from(list(_paths(doc))[1:]), label="path")
        op = data.draw(st.sampled_from(["replace", "delete", "add"]), label="op")
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        value = parent[where[-1]]
        if op == "delete":
            del parent[where[-1]]
        elif op == "replace":
            parent[where[-1]] = data.draw(_nasty(value), label="value")
        elif isinstance(value, dict):
            value[data.draw(st.text(max_size=8), label="key")] = data.draw(JSON, label="extra")
        else:
            parent[where[-1]] = data.draw(_nasty(value), label="value")
    return doc


@FUZZ
@given(data=st.data())
def test_manifest_fuzz(base, data):
    manifest = json.loads((base / MANIFEST).read_text())
    doc = mutate(data, manifest)
    with copy_of(base) as path:
        (path / MANIFEST).write_text(json.dumps(doc))
        art = outcome(lambda: load_artifact(path))  # the Python API: provenance may be missing
        if not isinstance(art, LaddError):
            use(art)
        full = outcome(lambda: load_artifact(path, complete=True))  # the CLI's commands: it must be there
        assert not isinstance(full, LaddError) or isinstance(art, LaddError) or "Field required" in str(full)
        code, _ = cli("info", path)
        assert code == (4 if isinstance(full, LaddError) else 0)  # 4: ArtifactError


@FUZZ
@given(data=st.data())
def test_relabel_info_fuzz(base, data):
    info = json.loads((base / RELABEL_DIR / INFO).read_text())
    doc = mutate(data, info)
    with copy_of(base) as path:
        (path / RELABEL_DIR / INFO).write_text(json.dumps(doc))
        art = outcome(lambda: load_artifact(path))
        if not isinstance(art, LaddError):
            use(art)
            _replay_one(art)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "null",
        "1",
        '"x"',
        "{",
        "\xff\xfe",
        "[" * 100_000,
        '{"schema_version": 1}',
        '{"schema_version": 2}',
        '{"schema_version": "1"}',
    ],
)
def test_manifest_that_is_not_a_manifest(base, text):
    with copy_of(base) as path:
        (path / MANIFEST).write_bytes(text.encode("latin-1"))
        assert isinstance(outcome(lambda: load_artifact(path)), LaddError)
        assert cli("info", path)[0] == 4


def test_api_artifacts_may_record_less_provenance_than_the_cli_needs(tmp_path):
    from ladd.artifact import Artifact

    images, labels = torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1])
    save_artifact(tmp_path / "a", Artifact(images, labels, {"source": {"class_names": ["x", "y"]}}))
    assert load_artifact(tmp_path / "a").manifest["source"] == {"class_names": ["x", "y"]}
    with pytest.raises(LaddError, match=r"manifest.json is malformed at source.dataset: Field required"):
        load_artifact(tmp_path / "a", complete=True)
    code, err = cli("info", tmp_path / "a")
    assert code == 4 and "source.dataset: Field required" in err


# --- safetensors: hostile headers, truncated and malformed files -----------------------------------

DTYPES = [
    "BOOL",
    "U8",
    "I8",
    "I16",
    "U16",
    "I32",
    "U32",
    "I64",
    "U64",
    "F16",
    "BF16",
    "F32",
    "F64",
    "F8_E4M3",
    "F8_E5M2",
    "C64",
    "F4",
    "XX",
    "",
]
SIZES = st.integers(0, 6) | st.sampled_from([2**31, 2**32 + 1, 2**40, 2**63, 2**64 - 1, 2**64, -1])
NAMES = st.sampled_from(
    [
        "images",
        "labels",
        "soft_labels",
        "dense_labels",
        "weight",
        "bias",
        "generator",
        "torch_rng",
        "order",
        "crop",
        "labels",
        "t.x",
        "opt.0.momentum_buffer",
        "__metadata__",
        "",
    ]
) | st.text(max_size=6)
TENSOR_DTYPES = [
    torch.uint8,
    torch.int64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.bool,
    torch.int16,
    torch.float64,
    torch.int8,
    torch.int32,
]


@st.composite
def hostile_safetensors(draw) -> bytes:
    kind = draw(st.sampled_from(["header", "valid", "truncated", "flipped", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=64))
    if kind in ("valid", "truncated", "flipped"):
        tensors = {
            draw(NAMES.filter(lambda n: n and n != "__metadata__"), label="name"): torch.zeros(
                draw(st.lists(st.integers(0, 4), max_size=4), label="shape"), dtype=draw(st.sampled_from(TENSOR_DTYPES), label="dtype")
            )
            for _ in range(draw(st.integers(1, 3)))
        }
        blob = safetensors_bytes(tensors, metadata=draw(st.none() | st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)))
        if kind == "truncated":
            return blob[: draw(st.integers(0, max(0, len(blob) - 1)), label="cut")]
        if kind == "flipped":
            at = draw(st.integers(0, len(blob) - 1), label="at")
            return blob[:at] + bytes([blob[at] ^ draw(st.integers(1, 255), label="xor")]) + blob[at + 1 :]
        return blob
    # a header built field by field: wrong types, shapes that overflow or do not fit the bytes
    entry = (
        st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(DTYPES) | JSON,
                "shape": st.lists(SIZES, max_size=4) | JSON,
                "data_offsets": st.lists(SIZES, min_size=2, max_size=2) | JSON,
            }
        )
        | JSON
    )
    header = draw(st.dictionaries(NAMES, entry, max_size=3) | JSON, label="header")
    raw = draw(st.sampled_from([json.dumps(header).encode(), json.dumps(header).encode()[:-1], b"\xff\xfe{}", b"{" * 10_000]), label="text")
    payload = draw(st.binary(max_size=64), label="payload")
    length = draw(st.sampled_from(["exact", "short", "long", "huge", "zero"]), label="length")
    n = {"exact": len(raw), "short": max(0, len(raw) - 1), "long": len(raw) + len(payload) + 1, "huge": 2**64 - 1, "zero": 0}[length]
    return struct.pack("<Q", n) + raw + payload


ODD_VALUES = [float("nan"), float("inf"), -1.0, 0.0, 0.5, 1.0, 2.0, 255.0, 256.0, 1e30, -(2.0**40)]


@st.composite
def mutated_tensors(draw, original: dict[str, torch.Tensor]) -> bytes:
    """`original` (the tensors of a good file) with one or two edits: a tensor's values (NaN,
    out of range, negative), its dtype, its shape, or a tensor dropped or added."""
    tensors = {k: v.clone() for k, v in original.items()}
    for _ in range(draw(st.integers(1, 2), label="edits")):
        name = draw(st.sampled_from(sorted(tensors)), label="tensor") if tensors else None
        op = draw(st.sampled_from(["value", "dtype", "shape", "drop", "add"]) if name else st.just("add"), label="op")
        if op == "value" and tensors[name].numel():
            t = tensors[name].double()
            at = draw(st.integers(0, t.numel() - 1), label="at")
            t.view(-1)[at] = draw(st.sampled_from(ODD_VALUES), label="odd value")
            tensors[name] = t.to(tensors[name].dtype) if t.isfinite().all() or tensors[name].is_floating_point() else t
        elif op == "dtype":
            tensors[name] = tensors[name].to(draw(st.sampled_from(TENSOR_DTYPES), label="new dtype"))
        elif op == "shape":
            tensors[name] = torch.zeros(draw(st.lists(st.integers(0, 5), max_size=4), label="new shape"), dtype=tensors[name].dtype)
        elif op == "drop":
            del tensors[name]
        else:
            tensors[draw(NAMES, label="new name") or "x"] = torch.zeros(2, dtype=draw(st.sampled_from(TENSOR_DTYPES)))
    tensors.pop("__metadata__", None)
    return safetensors_bytes({k: v.contiguous() for k, v in tensors.items()})


def _declared(blob: bytes) -> dict:
    """The tensors a safetensors header declares (name → (shape, dtype)), when it parses."""
    try:
        header = json.loads(blob[8 : 8 + struct.unpack("<Q", blob[:8])[0]])
        from safetensors.torch import _getdtype

        return {k: (v["shape"], str(_getdtype(v["dtype"])).removeprefix("torch.")) for k, v in header.items() if k != "__metadata__"}
    except Exception:  # noqa: BLE001  (any header: this only picks what to write into the manifest)
        return {}


@FUZZ
@given(data=st.data())
def test_artifact_safetensors_fuzz(base, data):
    """A hostile component file (malformed, or a good one with edited tensors) with the manifest's
    hash (and, where the header declares one, its shape and dtype) updated to match, so the parser
    and the checks behind it run."""
    component = data.draw(st.sampled_from(["images", "labels", "soft_labels", "dense_labels"]), label="component")
    with copy_of(base) as path:
        file = path / f"{component}.safetensors"
        blob = data.draw(hostile_safetensors() | mutated_tensors(load_safetensors(file)), label="file")
        file.write_bytes(blob)
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["files"][file.name]["sha256"] = sha256(file)
        declared = _declared(blob)
        if declared and data.draw(st.booleans(), label="match manifest"):
            shape, dtype = next(iter(declared.values()))
            manifest["files"][file.name].update(shape=shape, dtype=dtype)
        (path / MANIFEST).write_text(json.dumps(manifest))
        art = outcome(lambda: load_artifact(path))
        if not isinstance(art, LaddError):
            use(art)


@FUZZ
@given(data=st.data())
def test_relabel_epoch_safetensors_fuzz(base, data):
    with copy_of(base) as path:
        file = path / RELABEL_DIR / epoch_file(0)
        blob = data.draw(hostile_safetensors() | mutated_tensors(load_safetensors(file)), label="file")
        file.write_bytes(blob)
        info = json.loads((path / RELABEL_DIR / INFO).read_text())
        info["files"][0] = sha256(file)
        (path / RELABEL_DIR / INFO).write_text(json.dumps(info))
        art = outcome(lambda: load_artifact(path))
        if not isinstance(art, LaddError):
            _replay_one(art)


@FUZZ
@given(blob=hostile_safetensors())
def test_safetensors_loaders_fuzz(blob):
    """Every other reader of safetensors: the parser itself, its header-only reader, `--images
    import`, weights checkpoints (experts, observers, resumed training) and trainer states."""
    toy = make_dataset(n_per_class=2, classes=2, size=4)
    with tempfile.TemporaryDirectory() as d:
        file = Path(d) / "x.safetensors"
        file.write_bytes(blob)
        whole, header = outcome(lambda: load_safetensors(file, metadata=True)), outcome(lambda: load_metadata(file))
        if not isinstance(whole, LaddError) and not isinstance(header, LaddError):
            assert whole[1] == header  # the header-only read sees what the full parse sees
        mapped = outcome(lambda: load_safetensors(file, mapped=True))  # relabel epochs: memory-mapped
        if not isinstance(whole, LaddError) and not isinstance(mapped, LaddError):  # the same tensors either way
            assert mapped.keys() == whole[0].keys() and all(torch.equal(mapped[k], whole[0][k]) for k in mapped)
        outcome(lambda: state_meta(file))
        outcome(lambda: read_tensors(file))
        outcome(lambda: import_images(ImageRequest(toy, 1, path=file)))
        model = torch.nn.Linear(2, 2)
        outcome(lambda: restore_weights(model, file))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        outcome(lambda: load_state(file, opt, torch.Generator(), "cpu"))


def _npy(shape, descr: str, payload: bytes, version: int = 1) -> bytes:
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (63 - len(text) % 64) + "\n"
    size = len(text).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode("latin-1") + payload


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's own, while it reads a hostile header
@FUZZ
@given(
    shape=st.lists(SIZES, max_size=3).map(tuple) | st.sampled_from(["()", "(-1,)", "'x'", "(1,"]),
    descr=st.sampled_from(["<f4", "|u1", "<i8", "|O", "<U3", "|b1", "<c8", "xx", "V8"]),
    payload=st.binary(max_size=32),
    version=st.sampled_from([1, 2, 3, 7]),
    compress=st.booleans(),
)
def test_npz_import_fuzz(shape, descr, payload, version, compress):
    """`--images import` of an .npz: hostile member headers (a shape of terabytes, object arrays,
    bad versions) are refused before numpy allocates anything."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as d:
        file = Path(d) / "x.npz"
        import zipfile

        with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
            z.writestr("images.npy", _npy(shape, descr, payload, version))
            z.writestr("labels.npy", _npy((2,), "<i8", bytes(16)))
        outcome(lambda: read_tensors(file))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_a_huge_declared_shape_is_refused_without_allocating(tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for shape, end in (([2**20, 2**20, 4], 2**44), ([2**32, 2**32, 2**32], 16), ([2**62], 2**64 - 1)):
        header = json.dumps({"images": {"dtype": "F32", "shape": shape, "data_offsets": [0, end]}}).encode()
        file = tmp_path / "huge.safetensors"
        file.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
        for read in (load_safetensors, load_metadata, partial(load_safetensors, mapped=True)):
            with pytest.raises(LaddError, match="huge.safetensors is not a readable safetensors file"):
                read(file)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: nothing was allocated


def test_a_header_length_beyond_the_file_and_a_missing_file_are_one_line(tmp_path):
    file = tmp_path / "x.safetensors"
    file.write_bytes(struct.pack("<Q", 10**6) + b"{}")
    for read in (load_safetensors, load_metadata, partial(load_safetensors, mapped=True)):
        with pytest.raises(LaddError, match=r"x.safetensors is not a readable safetensors file"):
            read(file)
        with pytest.raises(LaddError, match=r"cannot read .*missing.safetensors"):
            read(tmp_path / "missing.safetensors")


def test_weights_of_another_model_are_one_line(tmp_path):
    file = tmp_path / "w.safetensors"
    file.write_bytes(safetensors_bytes({"weight": torch.zeros(3, 2), "bias": torch.zeros(3)}))
    with pytest.raises(LaddError, match=r"weight has shape \(3, 2\), not \(2, 2\)"):
        restore_weights(torch.nn.Linear(2, 2), file)
    file.write_bytes(safetensors_bytes({"weight": torch.zeros(2, 2)}))
    with pytest.raises(LaddError, match="missing bias"):
        restore_weights(torch.nn.Linear(2, 2), file)


@pytest.mark.parametrize("damage", ["truncated", "other model"])
def test_a_damaged_expert_checkpoint_is_one_line(base, damage):
    """Epoch checkpoints of an expert (labelers, teachers, MTT's buffer) other than the final one are
    not hashed, so the loader itself must refuse a damaged one."""
    from ladd.experts import load_expert

    with tempfile.TemporaryDirectory() as d:
        expert = Path(d) / "expert"
        shutil.copytree(next(p for p in (base.parent / "cache" / "experts").iterdir() if p.is_dir()), expert)
        file = expert / "epoch_000.safetensors"
        good = file.read_bytes()
        file.write_bytes(good[: len(good) // 2] if damage == "truncated" else safetensors_bytes({"weight": torch.zeros(2)}))
        toy = make_dataset(n_per_class=4, classes=2, size=8)
        assert isinstance(outcome(lambda: load_expert(expert, 0, toy, Runtime())), LaddError)


# --- recipe and protocol TOML ----------------------------------------------------------------------


def _toml_string(s: str) -> str:
    return '"' + "".join("\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in s) + '"'


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_string(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def toml(doc: dict) -> str:
    """TOML text for `doc` (tables written inline: tomllib reads them as [sections])."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


TOML_VALUE = st.recursive(
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
    | st.dates()
    | st.datetimes(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=6,
)


def mutate_table(data, doc: dict, keys: list[str]) -> dict:
    """1–3 edits of a TOML document: delete a key, give a known or unknown key (at the top or in a
    table) any TOML value, or make a table a scalar."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        tables = [
            doc,
            *[v for v in doc.values() if isinstance(v, dict)],
            *[v for t in doc.values() if isinstance(t, dict) for v in t.values() if isinstance(v, dict)],
        ]
        table = data.draw(st.sampled_from(tables), label="table")
        op = data.draw(st.sampled_from(["set", "delete"]) if table else st.just("set"), label="op")
        if op == "delete":
            del table[data.draw(st.sampled_from(sorted(table)), label="key")]
        else:
            key = data.draw(st.sampled_from(keys) | st.text(max_size=6), label="key")
            table[key] = data.draw(TOML_VALUE, label="value")
    return doc


def _shipped(package: str, name: str) -> dict:
    import tomllib

    return tomllib.loads(resources.files(package).joinpath(f"{name}.toml").read_text())


PROTOCOLS = ["dc", "dc-cpu", "glad", "fkd", "lic"]
RECIPES = ["dm-paper", "dc-paper", "dsa-digits", "mtt-paper", "lic-digits", "lpld-digits", "herding-paper", "rded-digits"]


@FUZZ
@given(data=st.data())
def test_protocol_toml_fuzz(data, tmp_path):
    doc = mutate_table(data, _shipped("ladd.eval.protocols", data.draw(st.sampled_from(PROTOCOLS))), list(Protocol.model_fields))
    file = tmp_path / "p.toml"
    file.write_text(toml(doc), encoding="utf-8")
    got = outcome(lambda: load_protocol(str(file)))
    assert isinstance(got, (Protocol, LaddError))
    if isinstance(got, LaddError):
        assert str(file) in str(got)


@FUZZ
@given(data=st.data())
def test_recipe_toml_fuzz(data, tmp_path):
    name = data.draw(st.sampled_from(RECIPES))
    doc = _shipped("ladd.recipes", name)
    method = doc["method"]
    keys = ["method", "budget", "source", "extends", "params", "ipc", *params_model(method).model_fields]
    doc = mutate_table(data, doc, keys)
    file = tmp_path / "r.toml"
    file.write_text(toml(doc), encoding="utf-8")
    ipc = data.draw(st.sampled_from([1, 10, 50]), label="ipc")
    got = outcome(lambda: load_recipe(method, "digits", ipc, str(file)))
    if isinstance(got, LaddError):
        assert str(file) in str(got)
    else:  # what the method will validate again, after the data are read, must pass now
        params_model(method)(**got["params"])


@FUZZ
@given(data=st.data())
def test_toml_bytes_fuzz(data, tmp_path):
    """Byte-level damage: cuts, insertions (non-UTF-8 bytes, brackets, quotes), deep nesting."""
    kind = data.draw(st.sampled_from(["protocol", "recipe"]))
    package, name = ("ladd.eval.protocols", "dc") if kind == "protocol" else ("ladd.recipes", "mtt-paper")
    raw = resources.files(package).joinpath(f"{name}.toml").read_bytes()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)), label="at")
        insert = data.draw(
            st.sampled_from([b"\xff", b"\xc3", b"[", b"]", b'"', b"=", b"\n[params]\n", b"x = [" * 2000, b"\x00"]) | st.binary(max_size=8),
            label="insert",
        )
        cut = data.draw(st.integers(0, 16), label="cut")
        raw = raw[:at] + insert + raw[at + cut :]
    file = tmp_path / "t.toml"
    file.write_bytes(raw)
    if kind == "protocol":
        outcome(lambda: load_protocol(str(file)))
    else:
        outcome(lambda: load_recipe("mtt", "digits", 10, str(file)))


@pytest.mark.parametrize(
    "text,match",
    [
        ('name=1\nbudget="b"\nsource="s"\nepochs=10\nlr=0.1\n', r"p.toml: name: Input should be a valid string"),
        ('name="x"\nbudget="b"\nsource="s"\nepochs=10\nlr=0.1\ncolour="red"\n', r"p.toml: colour: Extra inputs are not permitted"),
        ('name="x"\nbudget="b"\nsource="s"\nepochs="10"\nlr=0.1\n', r"p.toml: epochs: Input should be a valid integer"),
        ('name="x"\nbudget="b"\nsource="s"\nepochs=true\nlr=0.1\n', r"p.toml: epochs: Input should be a valid integer"),
        ('name="x"\nbudget="b"\nsource="s"\nepochs=10\nlr=0.1\n[milestones]\na=1\n', r"p.toml: milestones: "),
        ("name = [\n", r"p.toml is not valid TOML"),
        ('name = "caf\xe9"\n', r"p.toml is not UTF-8 text"),
    ],
)
def test_protocol_errors_name_the_file_and_key(tmp_path, text, match):
    file = tmp_path / "p.toml"
    file.write_bytes(text.encode("latin-1"))
    with pytest.raises(LaddError, match=match):
        load_protocol(str(file))


@pytest.mark.parametrize(
    "text,match",
    [
        ('method = "dm"\ncolour = 1\n', r"r.toml: colour: Extra inputs are not permitted"),
        ('method = "dm"\nparams = 3\n', r"r.toml: params: Input should be a table"),
        ('method = "dm"\n[params]\nlr_img = "fast"\n', r"r.toml: params.lr_img: Input should be a valid number"),
        ('method = "dm"\n[params]\nlr_imag = 1.0\n', r"r.toml: params.lr_imag: Extra inputs are not permitted"),
        ('method = "dm"\n[ipc.50]\nlr_img = "x"\n', r"r.toml: ipc.50.lr_img: Input should be a valid number"),
        ('method = "dm"\n[ipc.fifty]\nlr_img = 1.0\n', r"r.toml: ipc.fifty.\[key\]: String should match pattern"),
        ('method = "dm"\nipc = [1]\n', r"r.toml: ipc: Input should be a table"),
        ('method = "dm"\nextends = 3\n', r"r.toml: extends: Input should be a valid string"),
        ("method = 3\n", r"r.toml: method: Input should be a valid string"),
        ('method = "dm"\n[params\n', r"r.toml is not valid TOML"),
        ('method = "dm"\nsource = "\xff"\n', r"r.toml is not UTF-8 text"),
    ],
)
def test_recipe_errors_name_the_file_and_key_before_any_data_is_read(tmp_path, text, match):
    file = tmp_path / "r.toml"
    file.write_bytes(text.encode("latin-1"))
    with pytest.raises(LaddError, match=match):
        load_recipe("dm", "digits", 10, str(file))


def test_cli_refuses_a_bad_recipe_in_one_line_and_writes_nothing(tmp_path):
    file = tmp_path / "r.toml"
    file.write_text('method = "dm"\n[params]\niterations = "many"\n')
    out = tmp_path / "out"
    code, err = cli("distill", "--dataset", "digits", "--ipc", "1", "--images", "dm", "--recipe", file, "--out", out)
    assert code == 2 and "params.iterations" in err
    assert siblings(out) == []


# --- data folders ----------------------------------------------------------------------------------


def _png(size=(4, 4), color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width×height pixels (a decompression bomb's header), with one tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _folder(root: Path, train: dict, val: dict | None = None) -> Path:
    """train/<class>/<file> and val/<class>/<file> from {class: {file: bytes}} (names may be bytes)."""
    for split, classes in (("train", train), ("val", train if val is None else val)):
        split_dir = os.path.join(os.fsencode(root), split.encode())
        os.makedirs(split_dir, exist_ok=True)
        for name, files in classes.items():
            class_dir = os.path.join(split_dir, os.fsencode(name))
            os.makedirs(class_dir, exist_ok=True)
            for fname, content in files.items():
                with open(os.path.join(class_dir, os.fsencode(fname)), "wb") as f:
                    f.write(content)
    return root


GOOD = {"a": {"1.png": _png(), "2.png": _png(color=(0, 0, 0))}, "b": {"1.png": _png(color=(0, 255, 0)), "2.jpg": _jpeg()}}


def _with(cls: str, fname, content: bytes) -> dict:
    classes = copy.deepcopy(GOOD)
    classes[cls][fname] = content
    return classes


FOLDERS = {
    "good": (GOOD, None, True),
    "no classes": ({}, None, False),
    "empty class": ({**GOOD, "c": {}}, None, False),
    "class missing from val": (GOOD, {"a": GOOD["a"]}, False),
    "extra class in val": (GOOD, {**GOOD, "z": GOOD["a"]}, False),
    "1-pixel image": (_with("a", "tiny.png", _png((1, 1))), None, True),
    "1×300 image": (_with("a", "thin.png", _png((1, 300))), None, True),
    "100-megapixel image": (_with("a", "big.png", _png_declaring(10_000, 10_000)), None, False),
    "400-megapixel image": (_with("a", "bomb.png", _png_declaring(20_000, 20_000)), None, False),
    "text with an image extension": (_with("a", "notes.jpg", b"hello, not an image"), None, False),
    "empty file": (_with("a", "empty.png", b""), None, False),
    "truncated JPEG": (_with("a", "cut.jpg", _jpeg()[:200]), None, False),
    "truncated PNG": (_with("b", "cut.png", _png((64, 64))[:60]), None, False),
    "PNG header only": (_with("b", "head.png", _png()[:33]), None, False),
    "non-UTF-8 file name": (_with("a", b"caf\xe9.png", _png()), None, True),
    "non-UTF-8 class name": ({**GOOD, b"cl\xffss": {"x.png": _png()}}, {**GOOD, b"cl\xffss": {"x.png": _png()}}, True),
    "newline in a file name": (_with("a", "bad\nname.jpg", b"junk"), None, False),
}


@pytest.mark.parametrize("skip", [False, True], ids=["strict", "skip-unreadable"])
@pytest.mark.parametrize("case", list(FOLDERS))
def test_data_folder_cases(tmp_path, case, skip):
    train, val, loads = FOLDERS[case]
    root = _folder(tmp_path / "data", train, val)
    got = outcome(lambda: load_dataset("imagefolder", data_dir=root, resolution=8, skip_unreadable=skip))
    bad_file = not loads and case not in ("no classes", "empty class", "class missing from val", "extra class in val")
    assert isinstance(got, LaddError) != (loads or (skip and bad_file)), got
    if not isinstance(got, LaddError):
        assert got.train.images.shape[1:] == (3, 8, 8)
        json.dumps(list(got.class_names))  # class names can always be stored (and printed)
        str(got.class_names).encode("utf-8")
    outcome(lambda: read_image_folder(root / "train"))  # `--images import` of an image folder


def test_symlink_loops_are_not_followed(tmp_path):
    root = _folder(tmp_path / "data", GOOD)
    os.symlink("..", root / "train" / "a" / "up")  # a directory loop
    os.symlink("self.png", root / "train" / "a" / "self.png")  # a file loop
    os.symlink(root / "train", root / "train" / "b" / "train")
    ds = outcome(lambda: load_dataset("imagefolder", data_dir=root, resolution=8))
    assert not isinstance(ds, LaddError) and len(ds.train) == 4
    os.symlink("loop", root / "train" / "loop")  # a class "folder" that is a symlink loop: not a class
    assert len(outcome(lambda: load_dataset("imagefolder", data_dir=root, resolution=8)).class_names) == 2


def test_unreadable_files_and_folders_are_one_line(tmp_path, monkeypatch):
    """Root reads everything, so permission errors are injected where the OS would raise them."""
    root = _folder(tmp_path / "data", GOOD)
    real_open = Image.open

    def denied(path, *a, **kw):
        if str(path).endswith("2.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(LaddError, match=r"cannot read image .*2.jpg \(PermissionError\)"):
        load_dataset("imagefolder", data_dir=root, resolution=8)
    assert len(load_dataset("imagefolder", data_dir=root, resolution=8, skip_unreadable=True).train) == 3
    monkeypatch.setattr(Image, "open", real_open)
    real_iterdir = Path.iterdir

    def no_listing(self):
        if self.name == "b":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    real_scandir = os.scandir

    def no_scandir(path):
        if os.path.basename(path) == "b":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(Path, "iterdir", no_listing)
    monkeypatch.setattr(os, "scandir", no_scandir)
    with pytest.raises(LaddError, match=r"cannot list .*b \(Permission denied\)"):
        load_dataset("imagefolder", data_dir=root, resolution=8)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_chmod_000_file_is_one_line(tmp_path):
    root = _folder(tmp_path / "data", GOOD)
    (root / "train" / "a" / "1.png").chmod(0)
    with pytest.raises(LaddError, match="1.png"):
        load_dataset("imagefolder", data_dir=root, resolution=8)


def test_tiny_imagenet_annotations_that_are_not_utf8(tmp_path):
    root = _folder(tmp_path / "data", GOOD, {})
    (root / "val" / "images").mkdir()
    (root / "val" / "val_annotations.txt").write_bytes(b"x.png\ta\xff\n")
    with pytest.raises(LaddError, match=r"val_annotations.txt \(UnicodeDecodeError\)"):
        load_dataset("imagefolder", data_dir=root, resolution=8)


def test_cli_refuses_a_bad_data_folder_in_one_line_and_writes_nothing(tmp_path):
    root = _folder(tmp_path / "data", _with("a", "bomb.png", _png_declaring(20_000, 20_000)))
    out = tmp_path / "out"
    code, err = cli("distill", "--dataset", "imagefolder", "--data-dir", root, "--resolution", "8", "--ipc", "1", "--out", out)
    assert code == 3 and "bomb.png (too many pixels)" in err
    assert siblings(out) == []
