"""The README's and docs/results.md's result tables say what the committed JSON under docs/results/ says."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documents_show_every_committed_result_as_it_is():
    assert _tables().main(["--check"]) == 0


def test_a_number_typed_into_a_table_by_hand_is_caught(tmp_path, monkeypatch, capsys):
    tables = _tables()
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- results: ladd-run -->\n(.*?)<!-- /results -->", text, re.S)
    assert block and "93.97" in block[1]  # the block is filled from ladd_run_ipc10.json
    copy = tmp_path / "README.md"
    copy.write_text(text.replace("93.97 ± 0.29", "95.97 ± 0.29", 1))
    monkeypatch.setattr(tables, "DOCUMENTS", (copy, ROOT / "docs" / "results.md"))
    assert tables.main(["--check"]) == 1
    assert "out of date with docs/results" in capsys.readouterr().err
    assert "93.97" not in copy.read_text().split("<!-- results: ladd-run -->")[1].split("<!-- /results -->")[0]  # --check writes nothing
