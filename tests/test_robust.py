import dataclasses
import math

import numpy as np

import pytest
import torch

from ladd import pipeline
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.eval import robust
from ladd.eval.protocol import EvalConfig, evaluate, robustness
from ladd.pipeline import ImagesConfig, SourceConfig

from conftest import make_dataset


def test_normalization_maps_minus_one_to_one_onto_zero_to_one():
    assert robust.normalize(-1) == pytest.approx(0) and robust.normalize(1) == pytest.approx(1)
    assert robust.normalize(0) == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))  # 0.2689


def test_scores_equal_hand_computed_values():
    # real 90 %, syn hard 60 % → HLR 0.30; syn soft 80 %, random soft 70 % → IOR 0.10
    # α = 0.5·0.10 − 0.5·0.30 = −0.10; LRS = (e^−0.1 − e^−1)/(e − e^−1) = (0.904837 − 0.367879)/2.350402 = 0.228454
    assert robust.lrs(robust.hlr(0.9, 0.6), robust.ior(0.8, 0.7)) == pytest.approx(0.228454, abs=1e-6)
    # β = 0.5·(0.8 − 0.7) + 0.5·(0.5 − 0.2) = 0.2;
    # ARS = (e^0.2 − e^−1)/(e − e^−1) = (1.221403 − 0.367879)/2.350402 = 0.363140
    assert robust.ars(0.8, 0.7, 0.5, 0.2) == pytest.approx(0.363140, abs=1e-6)
    # weights move the balance: w = 1 scores IOR alone
    assert robust.lrs(0.3, 0.1, w=1.0) == pytest.approx(robust.normalize(0.1))
    s = robust.scores(
        {
            "real_hard": [0.9, 0.9],
            "syn_hard": [0.6, 0.7],
            "syn_any": [0.8, 0.8],
            "random_any": [0.7, 0.6],
            "syn_any_no_aug": [0.5, 0.5],
            "random_any_no_aug": [0.2, 0.2],
        }
    )
    assert s["hlr"] == pytest.approx([0.3, 0.2]) and s["ior"] == pytest.approx([0.1, 0.2])
    assert s["hlr_mean"] == pytest.approx(0.25) and s["hlr_std"] == pytest.approx(0.05)
    assert s["lrs_mean"] == pytest.approx((robust.normalize(-0.1) + robust.normalize(0.0)) / 2)


def test_robustness_trains_each_configuration_and_reuses_finished_rows():
    ds = dataclasses.replace(make_dataset(n_per_class=8), name="digits")
    art = pipeline.distill(ds, SourceConfig(dataset="digits"), ImagesConfig(method="random", ipc=2, seed=0), Runtime())
    rnd = pipeline.random_counterpart(art, ds, Runtime())
    assert rnd.manifest["ipc"] == 2 and rnd.manifest["images"]["seed"] == 1 and not rnd.images.equal(art.images)
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=2, epochs=2)
    rows = evaluate(art, ds, cfg, Runtime())
    s = robustness(art, rnd, ds, cfg, Runtime(), real_epochs=1, rows=rows)
    assert s["accs"]["syn_hard"] == rows[0]["accs"] == s["accs"]["syn_any"]  # hard-label artifact: "any" = hard
    assert s["runs"] == 2 and len(s["lrs"]) == 2 and all(0 <= v <= 1 for v in s["lrs"] + s["ars"])
    assert s["hlr"][0] == pytest.approx(s["accs"]["real_hard"][0] - s["accs"]["syn_hard"][0])


def test_robustness_reuses_reference_accuracies_and_retrains_the_rest(monkeypatch):
    ds = dataclasses.replace(make_dataset(n_per_class=8), name="digits")
    art = pipeline.distill(ds, SourceConfig(dataset="digits"), ImagesConfig(method="random", ipc=2, seed=0), Runtime())
    rnd = pipeline.random_counterpart(art, ds, Runtime())
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=2, epochs=1)
    first = robustness(art, rnd, ds, cfg, Runtime(), real_epochs=1)
    trained = []
    real_evaluate = evaluate
    monkeypatch.setattr("ladd.eval.protocol.evaluate", lambda a, *r, **k: trained.append(a) or real_evaluate(a, *r, **k))
    again = robustness(art, rnd, ds, cfg, Runtime(), real_epochs=1, reference={**first["accs"], "syn_hard": [0.0, 0.0]})
    assert again["reused"] == ["random_any", "random_any_no_aug", "real_hard"]
    assert all(again["accs"][k] == first["accs"][k] for k in again["reused"])
    assert again["accs"]["syn_hard"] == first["accs"]["syn_hard"]  # an artifact's own accuracy is never taken from `reference`
    assert trained and all(a is art for a in trained)  # only the artifact's own configurations were retrained


def test_equal_cost_rows_match_bytes_and_flops_budgets():
    from ladd.eval.protocol import equal_cost, evaluate_all, plus_one_config

    ds = dataclasses.replace(make_dataset(n_per_class=8), name="digits")
    art = pipeline.distill(ds, SourceConfig(dataset="digits"), ImagesConfig(method="random", ipc=2, seed=0), Runtime())
    plus = pipeline.plus_one(art, ds, Runtime())
    assert plus.manifest["ipc"] == 3 and plus.manifest["images"]["method"] == "random"
    assert {x.numpy().tobytes() for x in art.images} < {x.numpy().tobytes() for x in plus.images}  # the same images + one per class
    # a stand-in label method: global soft labels (one-hot), so its FLOPs are a known multiple
    soft = torch.nn.functional.one_hot(art.labels, 3).float()
    labelled = art.with_labels(soft, None, {"method": "soft"}, {"labeler_train": 0, "label_generation": 0})
    made = 10**15  # pretend the images cost this much: both rows pay it, so it does not buy epochs
    labelled = dataclasses.replace(labelled, manifest={**labelled.manifest, "images": {**labelled.manifest["images"], "flops": made}})
    cfg = EvalConfig(methods=("baseline", "soft"), models=("convnet-w32",), seeds=1, epochs=2)
    # baseline++'s students train in the main evaluation's call, with the rows of an evaluation of their own
    rows, plus_rows = evaluate_all([(labelled, cfg), (plus, plus_one_config(cfg))], ds, Runtime())
    alone = evaluate(plus, ds, plus_one_config(cfg), Runtime())
    run = ("seconds", "trained_by")  # how long, and how many students shared the call
    assert [{k: v for k, v in r.items() if k not in run} for r in plus_rows] == [
        {k: v for k, v in r.items() if k not in run} for r in alone
    ]
    assert all(r["flops"] == made + r["flops_labels"] + r["flops_deploy"] for r in rows)
    rows[1]["flops_labels"] = 2 * rows[0]["flops_deploy"]  # pretend the labels cost twice a student's training
    extra = equal_cost(labelled, plus_rows, ds, cfg, Runtime(), rows)
    assert [r["method"] for r in extra] == ["baseline++", "baseline=flops"]
    assert extra[0]["ipc"] == 3 and extra[1]["epochs"] == 6 and extra[1]["flops_deploy"] == pytest.approx(3 * rows[0]["flops_deploy"])


def test_baseline_plus_plus_of_an_imported_set_is_refused_before_any_training(tmp_path):
    from typer.testing import CliRunner

    from ladd.artifact import save_artifact
    from ladd.cli import app

    ds = pipeline.load_source(SourceConfig(dataset="digits"))
    rnd = pipeline.distill(ds, SourceConfig(dataset="digits"), ImagesConfig(ipc=1))
    npz = tmp_path / "set.npz"
    np.savez(npz, images=rnd.images.numpy(), labels=rnd.labels.numpy())
    art = pipeline.distill(ds, SourceConfig(dataset="digits"), ImagesConfig(method="import", ipc=1, import_path=str(npz)))
    with pytest.raises(LaddError, match="baseline\\+\\+ needs one more image per class .* an imported set has none to give"):
        pipeline.plus_one(art, ds, Runtime())
    save_artifact(tmp_path / "art", art)
    res = CliRunner().invoke(
        app, ["eval", str(tmp_path / "art"), "--equal-cost", "bytes", "--epochs", "1", "--seeds", "1", "--out", str(tmp_path / "ev")]
    )
    assert isinstance(res.exception, LaddError) and "imported set" in str(res.exception)
    assert [p.name for p in (tmp_path / "ev").iterdir()] == ["ladd.log"]  # no results, only the log saying why


def test_flops_curves_end_at_the_final_students_and_the_paper_comparison_reads_them_at_the_baselines_flops(tmp_path, capsys):
    from ladd.eval.protocol import at_flops, equal_cost
    from ladd.report.results import write_results

    ds = dataclasses.replace(make_dataset(n_per_class=8), name="digits")
    art = pipeline.distill(ds, SourceConfig(dataset="digits"), ImagesConfig(method="random", ipc=2, seed=0), Runtime())
    soft = torch.nn.functional.one_hot(art.labels, 3).float()
    labelled = art.with_labels(soft, None, {"method": "soft"}, {"labeler_train": 0, "label_generation": 0})
    cfg = EvalConfig(methods=("baseline", "global-both"), models=("convnet-w32",), seeds=2, epochs=4, curve_every=2)
    base, both = evaluate(labelled, ds, cfg, Runtime())
    for row in (base, both):
        assert [p["epoch"] for p in row["curve"]] == [2, 4]
        assert row["curve"][-1]["accs"] == row["accs"] and row["curve"][-1]["flops_deploy"] == row["flops_deploy"]
        assert row["curve"][0]["flops_deploy"] * 2 == row["flops_deploy"]  # the same inputs every epoch
    assert both["flops_deploy"] == 2 * base["flops_deploy"]  # global-both forwards every image twice per step
    (read,) = equal_cost(
        labelled,
        None,
        ds,
        cfg.model_copy(update={"methods": ("baseline", "soft")}),
        Runtime(),
        [base, {**both, "method": "soft"}],
        ("curve",),
    )
    assert read["method"] == "soft @ baseline FLOPs" and read["flops_deploy"] == base["flops_deploy"]
    assert read["accs"] == both["curve"][0]["accs"] and "after 2.0 of its 4 epochs" in read["budget"]  # half its FLOPs: epoch 2
    written = write_results(tmp_path, [base, both, read], {}, [], "t")
    assert (tmp_path / "flops_curve.png") in written

    row = {
        "method": "m",
        "epochs": 10,
        "flops_distill": None,
        "flops_labels": 5,
        "class_acc_mean": [1.0],
        "curve": [{"epoch": 2, "flops_deploy": 100, "accs": [0.2, 0.4]}, {"epoch": 4, "flops_deploy": 200, "accs": [0.6, 0.4]}],
    }
    r = at_flops(row, 150, "baseline")
    assert r["accs"] == pytest.approx([0.4, 0.4]) and r["flops"] == 155 and "after 3.0 of its 10 epochs" in r["budget"]
    with pytest.raises(LaddError, match=r"m cannot be read at baseline's 50 deployment FLOPs: its first recorded point is at 100 FLOPs"):
        at_flops(row, 50, "baseline")
    with pytest.raises(LaddError, match=r"m cannot be read at baseline's 500 deployment FLOPs: its students spent 200 in all"):
        at_flops(row, 500, "baseline")  # not held at the last point
    # in an evaluation its students are trained by then: the reading is left out with a warning, the rows kept
    unread = {**both, "method": "soft", "curve": [{**p, "flops_deploy": base["flops_deploy"] + 1} for p in both["curve"]]}
    args = (labelled, None, ds, cfg.model_copy(update={"methods": ("baseline", "soft")}), Runtime(), [base, unread], ("curve",))
    assert equal_cost(*args) == []
    assert "warning: soft cannot be read at baseline's" in capsys.readouterr().err
    with pytest.raises(LaddError, match="choose the lr with --select-lr first"):
        EvalConfig(select_lr=(0.01, 0.1), curve_every=1)
