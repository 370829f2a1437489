"""The run log: --quiet / --verbose on stderr, a log file beside every artifact and in every run
folder, and an unexpected exception as one line with its traceback in the log file."""

from __future__ import annotations

import logging

import pytest

from conftest import ladd_main
from ladd import api
from ladd.core import logs
from ladd.core.errors import RunError


@pytest.fixture(autouse=True)
def _normal_level():
    yield
    logs.setup(0)  # the level is process-wide: leave it as the next test expects


def test_log_file_beside_the_artifact_records_the_command_and_its_lines(tmp_path, capsys):
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "art")
    assert code == 0 and f"wrote artifact {tmp_path / 'art'}" in err
    text = (tmp_path / "art.log").read_text()
    lines = text.splitlines()
    assert lines[0].endswith(f"DEBUG   ladd distill --dataset digits --ipc 1 --out {tmp_path / 'art'}")
    assert f"INFO    wrote artifact {tmp_path / 'art'} (10 images)" in text
    assert not (tmp_path / "art" / "ladd.log").exists()  # the artifact folder holds only what its manifest lists


def test_quiet_hides_info_lines_but_the_log_file_keeps_them(tmp_path, capsys):
    code, err = ladd_main(capsys, "--quiet", "distill", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "art")
    assert code == 0 and err == ""
    assert "wrote artifact" in (tmp_path / "art.log").read_text()


def test_verbose_shows_debug_lines_and_quiet_with_verbose_is_refused(tmp_path, capsys):
    code, err = ladd_main(capsys, "-v", "distill", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "art")
    assert code == 0 and f"ladd -v distill --dataset digits --ipc 1 --out {tmp_path / 'art'}" in err.splitlines(), err
    assert any(line.startswith("images: {") for line in err.splitlines())  # the resolved config
    code, err = ladd_main(capsys, "-q", "-v", "info", tmp_path / "art")
    assert code == 2 and err == "error: --quiet and --verbose contradict each other: give one\n"


def test_an_error_ends_the_log_file(tmp_path, capsys, monkeypatch):
    def refuse(*a, **k):
        raise RunError("labeler refused")

    monkeypatch.setattr(api, "distill", refuse)
    code, err = ladd_main(capsys, "run", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "run")
    assert (code, err) == (5, "error: labeler refused\n")
    assert (tmp_path / "run" / "ladd.log").read_text().splitlines()[-1].endswith("ERROR   error: labeler refused")


def test_an_unexpected_exception_is_one_line_with_its_traceback_in_the_log(tmp_path, capsys, monkeypatch):
    def broken(*a, **k):
        raise KeyError("images")

    monkeypatch.setattr(api, "distill", broken)
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "art")
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("error: unexpected KeyError: 'images' (the traceback is in ") and str(tmp_path / "art.log") in err
    text = (tmp_path / "art.log").read_text()
    assert "ERROR   unexpected KeyError: 'images'" in text and "Traceback (most recent call last)" in text and "in broken" in text
    code, err = ladd_main(capsys, "--verbose", "distill", "--dataset", "digits", "--ipc", "1", "--out", tmp_path / "art")
    assert code == 1 and "Traceback (most recent call last)" in err  # --verbose prints it too


def test_library_lines_reach_the_ladd_logger_for_scripts(caplog):
    """Scripts configure ladd's lines with the standard logging API."""
    from ladd.core.progress import log

    with caplog.at_level(logging.INFO, logger="ladd"):
        log("checkpoint written")
    assert [r.getMessage() for r in caplog.records if r.name == "ladd"] == ["checkpoint written"]
