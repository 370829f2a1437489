"""The cache: format versions in every key, locks that make a second process wait and reuse, and
`ladd cache ls|verify|prune`."""

import json
import threading

import pytest
from typer.testing import CliRunner

import ladd.experts as experts
from ladd.cli import app
from ladd.core import cache
from ladd.core.errors import ConfigError, LaddError
from ladd.core.io import lock
from ladd.core.runtime import Runtime
from ladd.experiments.common import Cells, Setup
from ladd.experts import ExpertConfig, cache_dir, ensure_expert
from ladd.train.loop import checkpoint_path

from conftest import ladd_main

CFG = ExpertConfig(model="convnet-w32", epochs=1, batch_size=6)


def _in_threads(fn, n=2):
    out, errors = [], []

    def run():
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return out


def test_two_processes_wanting_one_expert_train_it_once(toy, monkeypatch, capsys):
    trained = []
    real = experts.train_expert
    monkeypatch.setattr(experts, "train_expert", lambda *a: (trained.append(1), real(*a))[1])
    dirs = _in_threads(lambda: ensure_expert(toy, CFG, None, Runtime())[0])
    assert len(trained) == 1 and dirs[0] == dirs[1]
    err = capsys.readouterr()
    assert "waiting for another ladd process training" in err.err and "reusing the expert" in err.out + err.err


def test_a_cell_computed_by_two_processes_at_once_is_computed_once(tmp_path):
    calls = []
    cells = Cells(tmp_path, Setup())
    results = _in_threads(lambda: cells.run({"cell": 1}, lambda: calls.append(1) or {"acc": 0.5}))
    assert calls == [1] and results == [{"acc": 0.5}] * 2


def test_a_format_bump_changes_every_key_so_old_entries_are_not_reused(toy, monkeypatch):
    old = cache_dir(toy, CFG)
    assert old.name.split("-")[-2] == f"f{cache.FORMATS['experts']}"
    monkeypatch.setitem(cache.FORMATS, "experts", cache.FORMATS["experts"] + 1)
    new = cache_dir(toy, CFG)
    assert new != old and new.parent == old.parent
    assert cache_dir(toy, CFG, "bf16") != new == cache_dir(toy, CFG, "fp32")  # a bf16-trained expert is never reused for fp32


def _cli(*args):
    return CliRunner().invoke(app, ["cache", *args])


def test_cache_ls_verify_and_prune(toy, monkeypatch, tmp_path):
    good, _ = ensure_expert(toy, CFG, None, Runtime())
    broken, _ = ensure_expert(toy, CFG.model_copy(update={"seed": 1}), None, Runtime())
    final = checkpoint_path(broken, 1)
    final.write_bytes(final.read_bytes()[:-8] + b"\0" * 8)  # bit rot after training
    (good.parent / f".{good.name}.abcd1234.tmp").mkdir()  # a killed write's staging folder
    monkeypatch.setitem(cache.FORMATS, "experts", cache.FORMATS["experts"] - 1)
    ensure_expert(toy, CFG, None, Runtime())  # an entry of the previous format
    monkeypatch.setitem(cache.FORMATS, "experts", cache.FORMATS["experts"] + 1)
    rows = {e.path.name: e.status for e in cache.entries()}
    assert sorted(rows.values()) == ["complete", "complete", "leftover", "stale"]

    listing = _cli("ls", "--json", str(tmp_path / "ls.json"))
    assert listing.exit_code == 0 and "4 entries" in listing.output
    assert len(json.loads((tmp_path / "ls.json").read_text())["entries"]) == 4

    res = _cli("verify")
    assert res.exit_code == 1 and "1 broken" in res.output
    problems = {e.path: cache.verify(e) for e in cache.entries()}
    assert problems.pop(broken) == "epoch_001.safetensors does not match the SHA-256 in expert.json"
    assert set(problems.values()) == {None}

    assert isinstance(_cli("prune").exception, LaddError)  # says what to choose
    res = _cli("prune", "--broken", "--dry-run")
    assert res.exit_code == 0 and "would remove 1 entries" in res.output and final.exists()
    res = _cli("prune", "--stale")
    assert res.exit_code == 0 and "removed 2 entries" in res.output  # the old format's entry and the leftover
    assert sorted(e.status for e in cache.entries()) == ["complete", "complete"]
    with lock(good):  # a running process holds it: prune skips it
        res = _cli("prune", "--all", "--kind", "experts")
    assert "skipped" in res.output and good.exists() and not broken.exists()
    with pytest.raises(LaddError, match="--kind nope is not a cache kind: choose from experts, distill"):
        _cli("ls", "--kind", "nope").exception and (_ for _ in ()).throw(_cli("ls", "--kind", "nope").exception)


def test_an_entry_whose_digest_reads_as_a_format_tag_keeps_its_own_format(tmp_path, monkeypatch):
    """A hex digest such as f285438223 once read as format 285438223: a fresh store listed as `newer`."""
    monkeypatch.setenv("LADD_CACHE", str(tmp_path))
    fmt = cache.FORMATS["data"]
    for digest in ("f285438223", "0123abcdef"):
        (tmp_path / "data" / f"imagefolder-12px-f{fmt}-{digest}").mkdir(parents=True)
        (tmp_path / "data" / f"imagefolder-12px-f{fmt}-{digest}" / "store.json").write_text("{}")
    (tmp_path / "data" / "imagefolder-12px-f999999").mkdir()  # an older ladd's layout, no digest
    (tmp_path / "data" / f"imagefolder-12px-f{fmt + 1}-0123abcdef").mkdir()
    rows = {e.path.name: e.status for e in cache.entries(["data"])}
    assert rows == {
        f"imagefolder-12px-f{fmt}-0123abcdef": "complete",
        f"imagefolder-12px-f{fmt}-f285438223": "complete",
        "imagefolder-12px-f999999": "stale",
        f"imagefolder-12px-f{fmt + 1}-0123abcdef": "newer",
    }


def test_every_entry_name_reads_back_its_own_format(tmp_path, monkeypatch):
    """`entry` writes the layout `_format` reads, for every kind, even for a name that carries `-f<n>-`."""
    monkeypatch.setenv("LADD_CACHE", str(tmp_path))
    for kind, fmt in cache.FORMATS.items():
        for name in ("mnist5k-convnet-seed0-ep10", "odd-f7-name"):
            path = cache.entry(kind, name, [kind, name])
            assert path.parent == tmp_path / kind and path.name.startswith(f"{name}-f{fmt}-")
            assert cache._format(path.name) == fmt


def test_an_empty_ladd_cache_means_the_default(tmp_path, monkeypatch):
    """An empty LADD_CACHE used the current folder as the cache; unset or empty, it is ~/.cache/ladd."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LADD_CACHE", "")
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "ladd"


@pytest.mark.parametrize("under", ["", "/sub"])
def test_a_file_as_ladd_cache_is_refused_naming_the_variable(tmp_path, monkeypatch, capsys, under):
    """Was `Not a directory: somefile/experts`, naming neither LADD_CACHE nor a fix."""
    (tmp_path / "somefile").write_text("mine")
    monkeypatch.setenv("LADD_CACHE", f"{tmp_path / 'somefile'}{under}")
    code, err = ladd_main(capsys, "cache", "ls")
    assert code == ConfigError.exit_code and err.startswith("error: ") and err.count("\n") == 1, err
    assert f"LADD_CACHE={tmp_path / 'somefile'}{under}" in err and "is a file" in err, err
    with pytest.raises(ConfigError, match="LADD_CACHE"):
        cache.entry("experts", "x", [1])
