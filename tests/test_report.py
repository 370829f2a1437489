import csv
import json

import pytest
import torch

from ladd.artifact import Artifact, load_artifact, save_artifact
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
    soft = torch.softmax(torch.randn(len(labels), ds.num_classes, generator=g), 1)
    dense = torch.softmax(torch.randn(len(labels), 4, ds.num_classes, generator=g), 2)
    manifest = {
        "source": {"class_names": list(ds.class_names)},
        "ipc": 2,
        "images": {"method": "random"},
        "labels": {"method": "ladd", "subsample": {"n": 2, "r": 0.75}},
    }
    return Artifact(images, labels, manifest, soft_labels=soft, dense_labels=dense)


def _run(tmp_path, name, methods, ds):
    art = _ladd_artifact(ds)
    save_artifact(tmp_path / name / "artifact", art)
    rows = evaluate(art, ds, EvalConfig(methods=methods, models=("convnet-w32",), seeds=2, epochs=1), Runtime())
    robust = {
        "method": methods[-1],
        "model": "convnet-w32",
        **{f"{k}_mean": v for k, v in {"hlr": 0.1, "ior": 0.2, "lrs": 0.4, "ars": 0.5}.items()},
    }
    write_json(tmp_path / name / "results.json", {"rows": rows, "config": {}, "robustness": robust})
    return rows


def test_report_files_are_produced_and_match_results_json(tmp_path):
    ds = make_dataset()
    a = _run(tmp_path, "a", ("baseline", "ladd"), ds)
    b = _run(tmp_path, "b", ("soft",), ds)
    written = build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "rep")
    names = {p.name for p in written}
    assert {
        "report.md",
        "report.csv",
        "report.json",
        "acc_vs_ipc.png",
        "acc_vs_bytes.png",
        "acc_vs_flops.png",
        "per_class.png",
        "images_a.png",
        "crops_a.png",
        "images_b.png",
    } <= names
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


def _figures(monkeypatch) -> dict:
    """Capture every figure the report module saves, by file name, before it is closed."""
    from ladd.report import plots

    saved, real = {}, plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (saved.__setitem__(path.name, fig), real(fig, path))[1])
    return saved


def test_report_of_runs_with_different_classes_draws_a_panel_per_class_set_named_by_class(tmp_path, monkeypatch):
    three, five = make_dataset(classes=3), make_dataset(classes=5)
    _run(tmp_path, "a", ("baseline",), three)
    _run(tmp_path, "b", ("baseline",), five)
    figures = _figures(monkeypatch)
    build_report([tmp_path / "a", tmp_path / "b"], tmp_path / "rep")
    panels = [ax for ax in figures["per_class.png"].axes if ax.get_images() and ax.get_yticklabels()]
    assert [[t.get_text() for t in ax.get_xticklabels()] for ax in panels] == [list(three.class_names), list(five.class_names)]


def test_per_class_map_names_and_thins_many_classes(tmp_path, monkeypatch):
    from ladd.report.plots import per_class

    figures = _figures(monkeypatch)
    names = [f"class-{k}" for k in range(1000)]
    per_class([{"dataset": "big", "class_names": names, "class_acc_mean": [0.5] * 1000}], ["run"], tmp_path / "p.png")
    labels = [t.get_text() for t in figures["p.png"].axes[0].get_xticklabels()]
    assert labels[0] == "class-0" and set(labels) <= set(names) and 20 <= len(labels) < 1000


def test_a_failing_report_writes_nothing(tmp_path, monkeypatch):
    from ladd.report import plots

    _run(tmp_path, "a", ("baseline",), make_dataset())
    monkeypatch.setattr(plots, "artifact_figures", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_report([tmp_path / "a"], tmp_path / "rep")
    assert not any(p.name.startswith((".rep", "rep")) for p in tmp_path.iterdir())  # no report, no staging leftovers


def _eval_folder(tmp_path, artifact: str, sha: str | None) -> None:
    """An evaluation folder as `ladd eval` writes it: config.artifact as given, rows with the images' SHA-256."""
    ds = make_dataset()
    save_artifact(tmp_path / "arts" / "dm", _ladd_artifact(ds))
    rows = evaluate(
        load_artifact(tmp_path / "arts" / "dm"),
        ds,
        EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=1, epochs=1),
        Runtime(),
    )
    write_json(
        tmp_path / "evals" / "dm" / "results.json",
        {"rows": [{**r, **({"artifact_sha256": sha} if sha else {})} for r in rows], "config": {"artifact": artifact}},
    )


def test_report_refuses_the_images_of_an_artifact_replaced_since_evaluation(tmp_path, capsys):
    _eval_folder(tmp_path, str(tmp_path / "arts" / "dm"), "0" * 64)
    written = {p.name for p in build_report([tmp_path / "evals" / "dm"], tmp_path / "rep")}
    assert "images_dm.png" not in written and not (tmp_path / "rep" / "images_dm.png").exists()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| dm † |" in md and "changed since evaluation" in md and "images not shown" in md
    assert "changed since evaluation" in capsys.readouterr().err
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["rows"][0]["artifact_changed"] is True


def test_report_finds_an_artifact_recorded_relative_to_where_eval_ran_and_checks_its_hash(tmp_path, monkeypatch):
    _eval_folder(tmp_path, "arts/dm", None)  # older results: relative to the folder `ladd eval` ran in, no hash
    sha = json.loads((tmp_path / "arts" / "dm" / "manifest.json").read_text())["files"]["images.safetensors"]["sha256"]
    monkeypatch.chdir(tmp_path / "evals")
    assert "images_dm.png" in {p.name for p in build_report([tmp_path / "evals" / "dm"], tmp_path / "rep")}
    _eval_folder(tmp_path, str(tmp_path / "arts" / "dm"), sha)  # absolute, with the matching hash
    written = {p.name for p in build_report([tmp_path / "evals" / "dm"], tmp_path / "rep2")}
    assert "images_dm.png" in written and "†" not in (tmp_path / "rep2" / "report.md").read_text()


def test_one_seed_shows_the_mean_alone():
    from ladd.report.tables import cells, pm

    assert pm(0.5, 0.0, 1) == "50.00" and pm(0.5, 0.01, 3) == "50.00 ± 1.00"
    row = {
        "method": "baseline",
        "model": "convnet",
        "ipc": 1,
        "acc_mean": 0.5,
        "acc_std": 0.0,
        "n_seeds": 1,
        "image_bytes_zip": 1024,
        "label_bytes_zip": 0,
        "label_overhead_pct": 0.0,
        "flops": 1.0,
        "seconds": 1.0,
    }
    assert cells(row)["acc"] == "50.00"


@pytest.mark.parametrize("flops", [(3.1e12, 3.9e12, 5.3e12), (1e8, 3e14)])
def test_flops_tick_labels_are_engineering_and_do_not_overlap(tmp_path, monkeypatch, flops):
    from ladd.report.plots import accuracy_vs_cost

    figures = _figures(monkeypatch)
    rows = [
        {
            "method": f"m{i}",
            "model": "convnet",
            "ipc": 10,
            "dataset": "digits",
            "acc_mean": 0.5,
            "acc_std": 0.01,
            "n_seeds": 3,
            "image_bytes_zip": 4000,
            "label_bytes_zip": 100,
            "flops": f,
        }
        for i, f in enumerate(flops)
    ]
    accuracy_vs_cost(rows, tmp_path / "results.png")
    fig = figures["results.png"]
    fig.canvas.draw()
    for ax in fig.axes:
        shown = [
            t
            for t in ax.get_xticklabels(which="both")
            if t.get_text() and t.get_visible() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]
        ]
        boxes = sorted((t.get_window_extent() for t in shown), key=lambda b: b.x0)
        assert len(boxes) >= 2 and all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
        assert not any("10^" in t.get_text() or "times" in t.get_text() for t in shown)
    assert any(t.get_text().endswith(("T", "G")) for t in fig.axes[1].get_xticklabels())


def test_plots_leave_matplotlib_state_alone(tmp_path):
    """ladd draws on bare Figures: importing its plotting and experiments and writing a figure neither
    imports pyplot nor selects a backend, so a notebook or GUI program keeps its own."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, matplotlib, ladd.experiments.common, ladd.report.gradcam\n"
        "from ladd.report.plots import save_figure, subplots\n"
        "fig, ax = subplots(figsize=(2, 2)); ax.plot([0, 1]); save_figure(fig, __import__('pathlib').Path(sys.argv[1]))\n"
        "print('matplotlib.pyplot' in sys.modules, matplotlib.rcParams._get_backend_or_none())"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # a backend the user chose is not ladd's choice
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.png")], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "None"] and (tmp_path / "f.png").stat().st_size > 0
