"""Soft-label experiments: the held-out split, the pure pieces (fit, removals, CE quantiles),
selection that never reads the test split, resumable cells, and every command end to end."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ladd import pipeline
from ladd.cli import app
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.data import holdout
from ladd.experiments import common, expert_epoch
from ladd.experiments.ce_selection import quantile_members
from ladd.experiments.removal import without_class, without_knowledge
from ladd.experiments.scaling import fit, ipc_needed, law
from ladd.experts import ExpertConfig
from ladd.labels import LabelConfig
from ladd.labels.bptt import BpttConfig


def test_holdout_carves_a_stratified_validation_split_from_train(toy):
    val = holdout(toy, 2, seed=0)
    assert val.test.labels.bincount().tolist() == [2, 2, 2] and val.train.labels.bincount().tolist() == [4, 4, 4]
    both = torch.cat([val.train.images, val.test.images]).flatten(1)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, toy.train.images.flatten(1).tolist()))
    assert val.mean == toy.mean and val.name != toy.name  # same normalization, separate expert cache
    with pytest.raises(LaddError, match="leaves none to train on"):
        holdout(toy, 6)


class _Poison:
    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")


TINY = common.Setup(
    teacher=LabelConfig(method="soft", labeler=ExpertConfig(model="convnet-w32", epochs=2, batch_size=4, saves_per_epoch=2)),
    student_model="convnet-w32",
    student_epochs=2,
    seeds=1,
    val_per_class=2,
)


def test_epoch_selection_never_reads_the_test_split_and_resumes(toy, tmp_path, monkeypatch):
    blind = replace(toy, test=_Poison())
    chosen = expert_epoch.run(blind, TINY, [1, 2], Runtime(), tmp_path)
    assert set(chosen) == {1, 2} and all(e in (0.5, 1.0, 1.5, 2.0) for e in chosen.values())
    report = json.loads((tmp_path / "expert_epoch.json").read_text())
    assert [r["epoch"] for r in report["rows"] if r["ipc"] == 1] == [0.5, 1.0, 1.5, 2.0]
    assert (tmp_path / "expert_epoch.png").stat().st_size > 0 and "✓" in (tmp_path / "expert_epoch.md").read_text()
    monkeypatch.setattr(expert_epoch, "students", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    assert expert_epoch.run(blind, TINY, [1, 2], Runtime(), tmp_path) == chosen
    # a subset of candidates reuses the same cells and reports only those epochs
    subset = TINY.model_copy(update={"candidate_epochs": (2.0, 1.0)})
    expert_epoch.run(blind, subset, [1], Runtime(), tmp_path)
    assert [r["epoch"] for r in json.loads((tmp_path / "expert_epoch.json").read_text())["rows"]] == [1.0, 2.0]
    with pytest.raises(LaddError, match=r"epoch\(s\) 3 were not saved: choose among 0.5, 1, 1.5, 2"):
        expert_epoch.run(blind, TINY.model_copy(update={"candidate_epochs": (3.0,)}), [1], Runtime(), tmp_path)


def test_best_epoch_is_the_earliest_of_the_best():
    rows = [{"epoch": 1.0, "acc_mean": 0.5}, {"epoch": 2.0, "acc_mean": 0.7}, {"epoch": 3.0, "acc_mean": 0.7}]
    assert expert_epoch.best(rows) == 2.0


def test_scaling_fit_recovers_a_known_law_and_inverts():
    ipcs = [1, 2, 5, 10, 20, 50]
    accs = law(ipcs, 3.0, 0.15, 0.6)
    p = fit(ipcs, list(accs))
    assert p["rmse"] < 1e-4
    np.testing.assert_allclose(law(ipcs, p["a"], p["c"], p["d"]), accs, atol=1e-4)
    assert ipc_needed(float(law([7], 3.0, 0.15, 0.6)[0]), {"a": 3.0, "c": 0.15, "d": 0.6}) == pytest.approx(7)
    with pytest.raises(LaddError, match="at least 4 IPC values"):
        fit([1, 2, 3], [0.1, 0.2, 0.3])


def test_shared_scaling_fit_recovers_one_exponent_and_constant_data_factors():
    from ladd.experiments.scaling import fit_shared

    ipcs = [1, 2, 5, 10, 20]
    curves = {
        "hard": law(ipcs, 0.5, 0.2, 0.3),
        "top1": law([6 * i for i in ipcs], 0.5, 0.2, 0.3),
        "top2": law([2.5 * i for i in ipcs], 0.5, 0.2, 0.3),
    }
    p = fit_shared(ipcs, {k: list(v) for k, v in curves.items()})
    assert p["rmse"] < 1e-5 and p["c"] == pytest.approx(0.2, rel=1e-3)
    assert p["factor"] == pytest.approx({"top1": 6.0, "top2": 2.5}, rel=1e-3) and p["reference"] == "hard"


def test_top_k_labels_are_charged_their_own_bytes(toy):
    from ladd.labels.soft import keep_top_k

    art = pipeline.distill(toy, pipeline.SourceConfig(), pipeline.ImagesConfig(ipc=2))
    soft = torch.rand(6, 3, generator=torch.Generator().manual_seed(0)).softmax(-1)
    art = common.relabeled(art, soft)
    cfg = EvalConfig(methods=("soft",), models=("convnet-w32",), seeds=1, epochs=1)
    full = evaluate(art, toy, cfg, Runtime())[0]["label_bytes_zip"]
    top1 = evaluate(common.relabeled(art, keep_top_k(soft, 1)), toy, cfg, Runtime())[0]["label_bytes_zip"]
    assert top1 < full


def test_removals_drop_images_or_zero_knowledge_of_one_class(toy):
    art = pipeline.distill(toy, pipeline.SourceConfig(), pipeline.ImagesConfig(ipc=2))
    art = common.relabeled(art, torch.full((6, 3), 1 / 3))
    gone = without_class(art, 1)
    assert gone.labels.tolist() == [0, 0, 2, 2] and gone.soft_labels.shape == (4, 3)
    cut = without_knowledge(art, 1)
    assert (cut.soft_labels[art.labels != 1, 1] == 0).all()
    assert torch.equal(cut.soft_labels[art.labels == 1], art.soft_labels[art.labels == 1])  # c's own labels keep c


def test_ce_quantiles_partition_each_class_in_ascending_ce():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    ce = torch.tensor([4.0, 1.0, 3.0, 2.0, 2.0, 3.0, 1.0, 4.0])
    q = quantile_members(ce, labels, 2, 2)
    assert q[0][0].tolist() == [6, 4] and q[1][0].tolist() == [2, 0]
    assert q[0][1].tolist() == [1, 3] and q[1][1].tolist() == [5, 7]


def test_bptt_label_method_learns_distributions_and_resumes_from_its_cache(toy, monkeypatch):
    import ladd.labels.bptt as bptt

    art = pipeline.distill(toy, pipeline.SourceConfig(), pipeline.ImagesConfig(ipc=2))
    cfg = LabelConfig(
        method="bptt", bptt=BpttConfig(model="convnet-w32", iterations=2, unroll=2, backprop=1, batch_target=6, checkpoint_every=1)
    )
    first = pipeline.label(art, toy, cfg, Runtime())
    assert first.dense_labels is None and first.soft_labels.shape == (6, 3)
    torch.testing.assert_close(first.soft_labels.sum(-1), torch.ones(6))
    assert first.manifest["labels"]["method"] == "bptt" and "final_loss" in first.manifest["labels"]["bptt"]
    monkeypatch.setattr(bptt, "unrolled_label_loss", lambda *a, **k: pytest.fail("a finished BPTT run was learned again"))
    again = pipeline.label(art, toy, cfg, Runtime())  # finds the finished checkpoint: same labels, no re-learning
    torch.testing.assert_close(again.soft_labels, first.soft_labels)


FAST = [
    "--dataset",
    "digits",
    "--expert-model",
    "convnet-w32",
    "--expert-epochs",
    "1",
    "--model",
    "convnet-w32",
    "--epochs",
    "1",
    "--seeds",
    "1",
    "--val-per-class",
    "5",
    "--device",
    "cpu",
]
DIGITS = pipeline.SourceConfig(dataset="digits")


def _direct_accs(art, method: str) -> list[float]:
    """Students as FAST trains them (convnet-w32, 1 epoch, lr 0.01, soft CE), through `evaluate` directly."""
    cfg = EvalConfig(methods=(method,), models=("convnet-w32",), seeds=1, epochs=1, lr=0.01, soft_loss="ce")
    return evaluate(art, pipeline.load_source(DIGITS), cfg, Runtime())[0]["accs"]


def _random_images(ipc: int):
    return pipeline.distill(pipeline.load_source(DIGITS), DIGITS, pipeline.ImagesConfig(ipc=ipc, seed=0))


def _soft_labelled(art, epoch: float, saves_per_epoch: int = 1, data=None, **options):
    expert = ExpertConfig(model="convnet-w32", epochs=1, saves_per_epoch=saves_per_epoch, seed=options.pop("seed", 0))
    data = data or pipeline.load_source(DIGITS)
    return pipeline.label(art, data, LabelConfig(method="soft", labeler=expert, epoch=epoch, **options), Runtime())


def check_soft_vs_hard(p):
    assert p["rows"][0]["hard"]["accs"] == _direct_accs(_random_images(1), "baseline")


def check_swap(p):
    rows = p["rows"]  # the last rank swaps the smallest probability with itself: the unswapped labels
    assert [r["rank"] for r in rows] == list(range(11)) and rows[-1]["accs"] == rows[0]["accs"] and rows[-1]["relative"] == 1.0
    assert rows[0]["accs"] == _direct_accs(_soft_labelled(_random_images(1), p["epoch"]), "soft")


def check_scaling(p):
    from ladd.experiments.scaling import ipc_needed, stored_kb

    cells = [(name, int(i), c) for name, by_ipc in p["grid"].items() for i, c in by_ipc.items()]
    front = p["pareto"]  # no cell is cheaper and at least as accurate as a front cell
    assert front and all(not any(stored_kb(c) < f["stored_kb"] and c["acc_mean"] >= f["acc_mean"] for _, _, c in cells) for f in front)

    accs = [p["grid"]["hard"][str(i)]["acc_mean"] for i in p["ipcs"]]
    hard = p["fits"]["hard"]
    assert hard["rmse"] == pytest.approx(float(np.sqrt(np.mean((law(p["ipcs"], hard["a"], hard["c"], hard["d"]) - np.array(accs)) ** 2))))
    soft = p["grid"]["top10"]["2"]["acc_mean"]  # top-10 of 10 classes keeps every probability
    assert p["reduction"]["top10"]["2"] == pytest.approx(ipc_needed(soft, hard) / 2)
    assert p["grid"]["top10"]["1"]["accs"] == _direct_accs(_soft_labelled(_random_images(1), p["grid"]["top10"]["1"]["epoch"]), "soft")


def check_removal(p):
    control = next(r for r in p["rows"] if r["variant"] == "control (soft)")
    assert control["accs"] == _direct_accs(_soft_labelled(_random_images(1), p["epoch"]), "soft")
    assert all(r["class_acc"] == r["class_acc_mean"][p["target"]] for r in p["rows"])


def check_ce_selection(p):
    assert p["rows"][0]["variant"] == "random"
    assert p["rows"][0]["accs"] == _direct_accs(_soft_labelled(_random_images(1), p["epoch"]), "soft")


def check_bptt(p):
    from scipy.spatial.distance import jensenshannon

    art = _random_images(1)
    cfg = LabelConfig(method="bptt", bptt=BpttConfig(**p["bptt"]))
    learned = pipeline.label(art, pipeline.load_source(DIGITS), cfg, Runtime()).soft_labels.double().numpy()  # from its checkpoint
    by_epoch = [_soft_labelled(art, e, saves_per_epoch=2).soft_labels.double().numpy() for e in p["epochs"]]
    assert p["epochs"] == [0.5, 1.0]
    jsd = np.array([[jensenshannon(learned[i], e[i]) for e in by_epoch] for i in range(len(learned))])
    lo, hi = jsd.min(1, keepdims=True), jsd.max(1, keepdims=True)
    np.testing.assert_allclose(p["mean_normalized_jsd"], ((jsd - lo) / np.maximum(hi - lo, 1e-12)).mean(0), atol=1e-5)
    # the expert-pair baseline: expert seed 2 against the 2-expert ensemble, epoch by epoch
    ensemble = [_soft_labelled(art, e, saves_per_epoch=2, ensemble=2).soft_labels.double().numpy() for e in p["epochs"]]
    other = [_soft_labelled(art, e, saves_per_epoch=2, seed=2).soft_labels.double().numpy() for e in p["epochs"]]
    pair = [np.mean([jensenshannon(o[i], e[i]) for i in range(len(o))]) for o, e in zip(other, ensemble)]
    np.testing.assert_allclose(p["expert_pair_mean_jsd"], pair, atol=1e-5)


def check_epoch_temperature(p):
    from ladd.data import holdout
    from ladd.labels.soft import entropy

    val = holdout(pipeline.load_source(DIGITS), 5)
    art = pipeline.distill(val, DIGITS, pipeline.ImagesConfig(ipc=1, seed=0))
    row = next(r for r in p["rows"] if (r["epoch"], r["temperature"]) == (0.5, 2.0))
    hot = _soft_labelled(art, 0.5, saves_per_epoch=2, data=val, temperature=2.0).soft_labels.float()
    assert row["label_entropy"] == pytest.approx(float(entropy(hot).mean()), rel=1e-6)
    assert p["best"]["1"]["acc_mean"] == max(r["acc_mean"] for r in p["rows"])


def check_lic_ablation(p):
    first = p["rows"][0]
    assert (first["row"], first["students"]) == ("random real", "baseline")
    assert first["accs"] == _direct_accs(_random_images(1), "baseline")


def check_lpld_pruning(p):
    for r in p["rows"]:  # 20 images × 2 stored epochs in relabel batches of 10: ρ keeps ⌊units/ρ⌋ units
        units, size = (2, 20) if r["pool"] in ("epoch", "all") else (4, 10)
        assert r["relabel_kept_samples"] == int(units // r["rho"]) * size
        assert r["label_to_image_ratio"] == pytest.approx(r["label_bytes_raw"] / r["image_bytes_raw"])


@pytest.mark.parametrize(
    "command, extra, outputs",
    [
        ("soft-vs-hard", ["--ipc", "1,2", "--expert-epoch", "1", "--ensemble", "2"], "soft_vs_hard"),
        ("swap", ["--ipc", "1"], "swap"),
        ("scaling-law", ["--ipc", "1,2,3,4", "--top-k", "1,10"], "scaling"),
        ("removal", ["--ipc", "1", "--target-class", "3"], "removal"),
        ("ce-selection", ["--ipc", "1", "--quantiles", "2"], "ce_selection"),
        (
            "bptt",
            [
                "--ipc",
                "1",
                "--bptt-iterations",
                "2",
                "--bptt-unroll",
                "2",
                "--bptt-backprop",
                "1",
                "--expert-saves-per-epoch",
                "2",
                "--ensemble",
                "2",
            ],
            "bptt",
        ),
        ("epoch-temperature", ["--ipc", "1", "--temperatures", "1,2", "--expert-saves-per-epoch", "2"], "epoch_temperature"),
        ("lic-ablation", ["--ipc", "1", "--iterations", "2", "--expert-lr", "0.05"], "lic_ablation"),
        (
            "lpld-pruning",
            ["--ipc", "2", "--iterations", "2", "--rho", "1,2", "--relabel-epochs", "2", "--relabel-batch", "10"],
            "lpld_pruning",
        ),
    ],
)
def test_every_experiment_command_writes_json_markdown_and_png_and_a_number_checks_out(tmp_path, command, extra, outputs):
    result = CliRunner().invoke(app, ["experiment", command, *FAST, *extra, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"{outputs}.{suffix}").stat().st_size > 0
    payload = json.loads((tmp_path / f"{outputs}.json").read_text())
    assert payload["experiment"] == outputs and payload["setup"]["seeds"] == 1
    globals()[f"check_{outputs}"](payload)  # one computed number against a direct computation


def test_experiment_bad_input_is_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["experiment", "scaling-law", "--ipc", "1,x", *FAST, "--out", str(tmp_path)])
    assert isinstance(result.exception, LaddError) and "whole numbers" in str(result.exception)
    result = runner.invoke(app, ["experiment", "removal", "--target-class", "10", *FAST, "--out", str(tmp_path)])
    assert isinstance(result.exception, LaddError) and "class index in 0..9" in str(result.exception)


def test_experiment_select_lr_chooses_each_cells_lr_on_the_validation_split(tmp_path):
    result = CliRunner().invoke(
        app, ["experiment", "soft-vs-hard", "--ipc", "1", "--expert-epoch", "1", "--select-lr", "0.003,0.03", *FAST, "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "soft_vs_hard.json").read_text())["rows"][0]
    for cell in (row["hard"], row["soft"]):
        scores = cell["lr_selection"]["val_acc_by_lr"]
        assert set(scores) == {"0.003", "0.03"} and cell["lr"] == float(max(scores, key=scores.get))
    assert "chosen per cell among 0.003, 0.03" in (tmp_path / "soft_vs_hard.md").read_text()


def test_an_auto_expert_epoch_records_the_curve_it_was_chosen_from(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "experiment",
            "soft-vs-hard",
            "--ipc",
            "1",
            "--expert-epoch",
            "auto",
            "--expert-saves-per-epoch",
            "2",
            *FAST,
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "soft_vs_hard.json").read_text())["rows"][0]
    curve = row["selection"]
    assert [c["epoch"] for c in curve] == [0.5, 1.0]
    assert row["expert_epoch"] == max(curve, key=lambda c: (c["acc_mean"], -c["epoch"]))["epoch"]
