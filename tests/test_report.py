import csv
import json

import pytest
import torch

from ladd.artifact import Artifact, save_artifact
from ladd.core.errors import LaddError
from ladd.core.io import write_json
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate, rounding_rows
from ladd.report.build import build_report
from ladd.report.plots import pareto

from conftest import make_dataset


def _ladd_artifact(ds):
    images, labels = ds.train.images[::3], ds.train.labels[::3]
    g = torch.Generator().manual_seed(0)
    soft = torch.softmax(torch.randn(len(labels), 3, generator=g), 1)
    dense = torch.softmax(torch.randn(len(labels), 4, 3, generator=g), 2)
    manifest = {"source": {"class_names": list(ds.class_names)}, "ipc": 2, "images": {"method": "random"},
                "labels": {"method": "ladd", "subsample": {"n": 2, "r": 0.75}}}
    return Artifact(images, labels, manifest, soft_labels=soft, dense_labels=dense)


def _run(tmp_path, name, methods, ds):
    art = _ladd_artifact(ds)
    save_artifact(tmp_path / name / "artifact", art)
    rows = evaluate(art, ds, EvalConfig(methods=methods, models=("convnet-w32",), seeds=2, epochs=1), Runtime())
    robust = {"method": methods[-1], "model": "convnet-w32", **{f"{k}_mean": v for k, v in
              {"hlr": 0.1, "ior": 0.2, "lrs": 0.4, "ars": 0.5}.items()}}
    write_json(tmp_path / name / "results.json", {"rows": rows, "config": {}, "robustness": robust})
    return rows


def test_report_files_are_produced_and_match_results_json(tmp_path):
    ds = make_dataset()
    a = _run(tmp_path, "a", ("baseline", "ladd"), ds)
    b = _run(tmp_path, "b", ("soft",), ds)
    written = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "rep")
    names = {p.name for p in written}
    assert {"report.md", "report.csv", "report.json", "acc_vs_ipc.png", "acc_vs_bytes.png", "acc_vs_flops.png",
            "per_class.png", "images_a.png", "crops_a.png", "images_b.png"} <= names
    assert all(p.stat().st_size > 0 for p in written)
    with (tmp_path / "rep" / "report.csv").open() as f:
        table = list(csv.DictReader(f))
    sources = a + b
    assert [(r["run"], r["method"]) for r in table] == [("a", "baseline"), ("a", "ladd"), ("b", "soft")]
    for got, want in zip(table, sources):
        assert float(got["acc_mean"]) == pytest.approx(want["acc_mean"]) and int(got["image_bytes_zip"]) == want["image_bytes_zip"]
        assert float(got["flops"]) == pytest.approx(want["flops"]) and got["protocol"] == "dc"
    assert table[1]["lrs"] == "0.4" and table[0]["lrs"] == ""  # scores join only their own method
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"{100 * a[1]['acc_mean']:.2f} ± {100 * a[1]['acc_std']:.2f}" in md and "| 40.00 | 50.00 |" in md
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["rows"][2]["acc_mean"] == b[0]["acc_mean"]


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 50.0), (2.0, 60.0), (2.0, 55.0), (3.0, 58.0), (4.0, 70.0), (0.5, 40.0)]
    assert pareto(points) == [5, 0, 1, 4]


def test_report_refuses_folders_without_results(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LaddError, match="no results.json"):
        build_report([tmp_path / "empty"], tmp_path / "rep")


def test_cross_architecture_map_appears_with_several_models(tmp_path):
    ds = make_dataset()
    art = _ladd_artifact(ds)
    art.manifest["images"]["model"] = "convnet-w32"
    rows = evaluate(art, ds, EvalConfig(methods=("baseline",), models=("convnet-w32", "convnet-d1"), seeds=1, epochs=1), Runtime())
    assert [r["distilled_with"] for r in rows] == ["convnet-w32", "convnet-w32"]
    write_json(tmp_path / "x" / "results.json", {"rows": rows, "config": {}})
    assert "cross_arch.png" in {p.name for p in build_report([tmp_path / "x"], tmp_path / "rep")}


def test_results_writer_notes_what_rounding_float_images_costs(tmp_path):
    from dataclasses import replace

    from ladd.report.results import eval_notes, write_results

    ds = make_dataset(n_per_class=6)
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=1, epochs=1)
    art = _ladd_artifact(ds)
    floats = replace(art, images=art.images.float() + 0.25)
    rows = {kind: evaluate(a, ds, cfg, Runtime()) + rounding_rows(a, ds, cfg, Runtime()) for kind, a in (("uint8", art), ("float", floats))}
    notes = {kind: eval_notes(a, cfg, rows[kind]) for kind, a in (("uint8", art), ("float", floats))}
    assert not any("float32" in n for n in notes["uint8"]) and any("rounded to the uint8 pixels" in n for n in notes["float"])
    written = write_results(tmp_path, evaluate(art, ds, cfg, Runtime()), {"x": 1}, notes["uint8"], "t")
    assert all(p.stat().st_size > 0 for p in written) and json.loads(written[0].read_text())["config"] == {"x": 1}
