"""The typed result row (`ladd.eval.rows`): real rows fit it, results.json carries its version,
`ladd report` reads version 0 files and refuses malformed rows and newer versions in one line."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ladd.core.errors import LaddError
from ladd.core.io import write_json
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, at_flops, evaluate, rounding_rows
from ladd.eval.rows import SCHEMA_VERSION, Row, checked_rows, row_schema
from ladd.report.build import build_report, load_run
from ladd.report.results import write_results

from conftest import make_dataset
from test_report import _ladd_artifact

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "results.schema.json"


@pytest.fixture(scope="module")
def rows():
    """Real rows: the ladd method with a recorded curve, read off it at the baseline's FLOPs, and a rounding row."""
    ds = make_dataset()
    art = _ladd_artifact(ds)
    cfg = EvalConfig(methods=("baseline", "ladd"), models=("convnet-w32",), seeds=2, epochs=2, curve_every=1)
    made = evaluate(art, ds, cfg, Runtime())
    made += [at_flops(made[1], made[1]["curve"][-1]["flops_deploy"], "baseline")]
    made += rounding_rows(replace(art, images=art.images.float() + 0.25), ds, cfg, Runtime())
    return [{**r, "artifact": "/a", "artifact_sha256": "0" * 64} for r in made]


def test_a_real_row_round_trips_through_the_model(rows):
    assert {"curve", "rounded_of", "equal_flops_of"} <= {k for r in rows for k in r}
    for row in rows:
        again = Row.model_validate(json.loads(json.dumps(row))).model_dump(exclude_unset=True)
        assert json.dumps(again) == json.dumps(row)  # as text: the NaNs of a row read off a curve compare equal


def test_results_json_carries_the_schema_version_and_report_reads_it(rows, tmp_path):
    write_results(tmp_path / "run", rows, {}, ["n"], "t")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["schema_version"] == SCHEMA_VERSION and json.dumps(results["rows"]) == json.dumps(rows)
    assert [r["method"] for r in load_run(tmp_path / "run").rows] == [r["method"] for r in rows]


def test_an_old_results_json_without_schema_version_still_reports(rows, tmp_path):
    old = [
        {k: v for k, v in r.items() if k not in ("trained_by", "images_method", "batch_size", "artifact", "artifact_sha256")}
        | {"dropped_key": 1}
        for r in rows
    ]  # older ladd lacked some keys and wrote others since dropped
    write_json(tmp_path / "old" / "results.json", {"rows": old, "config": {}})
    assert len(load_run(tmp_path / "old").rows) == len(rows)
    assert (tmp_path / "rep" / "report.md") in build_report([tmp_path / "old"], tmp_path / "rep")


def test_a_malformed_row_is_refused_in_one_line_naming_the_field(rows, tmp_path):
    bad = [rows[0], {**rows[1], "acc_mean": "high"}]
    write_json(tmp_path / "bad" / "results.json", {"schema_version": SCHEMA_VERSION, "rows": bad, "config": {}})
    with pytest.raises(LaddError, match=r"row 1 \(ladd · convnet-w32\): acc_mean:") as e:
        load_run(tmp_path / "bad")
    assert "\n" not in str(e.value)
    with pytest.raises(LaddError, match=r"trained_by.ranks:"):
        checked_rows([{**rows[0], "trained_by": {"layout": "one process", "students": 1}}])
    with pytest.raises(LaddError, match="surprise: Extra inputs"):  # a current row may not carry undeclared keys
        write_results(tmp_path / "w", [{**rows[0], "surprise": 1}], {}, [], "t")
    assert not (tmp_path / "w").exists()


def test_a_newer_schema_version_is_refused_in_one_line(rows, tmp_path):
    write_json(tmp_path / "new" / "results.json", {"schema_version": SCHEMA_VERSION + 1, "rows": rows, "config": {}})
    with pytest.raises(LaddError, match=f"schema_version {SCHEMA_VERSION + 1}.*upgrade ladd") as e:
        load_run(tmp_path / "new")
    assert "\n" not in str(e.value)


def test_the_committed_schema_is_current():
    assert SCHEMA_FILE.read_text() == row_schema(), "regenerate it: ladd report --schema > docs/results.schema.json"
    assert json.loads(row_schema())["required"][:3] == ["method", "terms", "model"]


def test_ladd_report_prints_the_schema(tmp_path, monkeypatch):
    """Also beside a file named `runs`, in the way of the report's default --out: --schema writes nothing."""
    from typer.testing import CliRunner

    from ladd.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("mine")
    res = CliRunner().invoke(app, ["report", "--schema"])
    assert res.exit_code == 0 and res.output == row_schema()
