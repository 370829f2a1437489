"""End to end through the command line, on the embedded `digits` set with tiny budgets."""

import json
import subprocess
import sys

import pytest

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.cli.stages import auto_epoch
from ladd.experts import ExpertConfig
from ladd.labels import LabelConfig

from conftest import ladd_main

TINY = ["--dataset", "digits", "--ipc", "1", "--model", "convnet-w32", "--labeler-epochs", "1"]


def ladd(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ladd", *map(str, args)], capture_output=True, text=True, env=env)


def test_run_end_to_end_writes_results_and_artifact(tmp_path):
    out = tmp_path / "run"
    res = ladd("run", *TINY, "--epochs", "2", "--seeds", "2", "--crops-per-step", "3", "--out", out)
    assert res.returncode == 0, res.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["baseline", "ladd"]
    for r in rows:
        for key in (
            "model",
            "ipc",
            "acc_mean",
            "acc_std",
            "n_seeds",
            "image_bytes_zip",
            "label_bytes_zip",
            "label_overhead_pct",
            "flops",
            "seconds",
        ):
            assert key in r
        assert r["n_seeds"] == 2 and len(r["accs"]) == 2 and r["ipc"] == 1
    base, ladd_row = rows
    assert ladd_row["label_bytes_zip"] > base["label_bytes_zip"]  # dense labels cost bytes
    assert ladd_row["flops_deploy"] > base["flops_deploy"]  # and compute: 1 + K views per image
    assert ladd_row["flops_labels"] > 0 and base["flops_labels"] == 0
    assert base["flops_distill"] == 0 and ladd_row["flops"] == ladd_row["flops_labels"] + ladd_row["flops_deploy"]  # random images are free
    assert "| ladd |" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    art = load_artifact(out / "artifact")
    assert art.dense_labels.shape == (10, 25, 10)
    info = ladd("info", out / "artifact")
    assert info.returncode == 0 and "hashes verified" in info.stderr + info.stdout


def test_stages_one_by_one(tmp_path):
    art = tmp_path / "art"
    assert ladd("distill", "--dataset", "digits", "--ipc", "2", "--out", art).returncode == 0
    res = ladd("label", art, "--model", "convnet-w32", "--labeler-epochs", "1", "--grid", "3", "--label-dtype", "float16")
    assert res.returncode == 0, res.stderr
    loaded = load_artifact(art)
    assert loaded.dense_labels.shape == (20, 9, 10) and str(loaded.dense_labels.dtype) == "torch.float16"
    res = ladd(
        "eval", art, "--model", "convnet-w32", "--seeds", "1", "--epochs", "1", "--methods", "baseline,local-both", "--out", tmp_path / "ev"
    )
    assert res.returncode == 0, res.stderr
    assert [r["method"] for r in json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]] == ["baseline", "local-both"]


def test_eval_in_micro_batches_gives_the_same_students_and_records_the_setting(tmp_path):
    """`--micro-batch 3` splits each step of LADD's students (every view) into parts of 3 images:
    the ConvNet (instance norm) trains the same weights up to float rounding, so the same test
    accuracy; the results record the setting."""
    art = tmp_path / "art"
    assert ladd("distill", "--dataset", "digits", "--ipc", "2", "--out", art).returncode == 0
    assert ladd("label", art, "--model", "convnet-w32", "--labeler-epochs", "1", "--grid", "2").returncode == 0
    results = {}
    for micro in (None, 3):
        out = tmp_path / f"ev-{micro}"
        given = [] if micro is None else ["--micro-batch", micro]
        res = ladd(
            "eval",
            art,
            "--model",
            "convnet-w32",
            "--seeds",
            "1",
            "--epochs",
            "3",
            "--methods",
            "ladd",
            "--batch-size",
            "8",
            *given,
            "--out",
            out,
        )
        assert res.returncode == 0, res.stderr
        results[micro] = json.loads((out / "results.json").read_text())
    assert results[3]["config"]["speed"]["micro_batch"] == 3 and results[None]["config"]["speed"]["micro_batch"] is None
    assert results[3]["rows"][0]["accs"] == pytest.approx(results[None]["rows"][0]["accs"], abs=1e-9)


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--dataset", "mnist6k"], "unknown dataset 'mnist6k'"),
        (["distill", "--dataset", "digits", "--ipc", "1000"], "--ipc 1000 is not possible"),
        (["run", *TINY, "--grid", "1"], "--grid 1 is not allowed: give a whole number from 2 to 64"),
        (["run", *TINY, "--coverage", "1.5"], "--coverage 1.5 is not allowed: give a number from 0.01 to 1"),
        (["run", *TINY, "--model", "convnett"], "unknown model 'convnett'"),
        (["distill", "--dataset", "cifar10"], "pass --data-dir"),
        (["run", *TINY, "--methods", "ladx"], "unknown method 'ladx'"),
        (["run", *TINY, "--model", ","], "--model is empty"),
        (["info", "/nonexistent/artifact"], "not a ladd artifact"),
        (["eval", "/nonexistent/artifact"], "not a ladd artifact"),
        (["run", *TINY, "--labels", "sof"], "unknown label method 'sof'"),
        (["run", *TINY, "--temperature", "0"], "--temperature 0 is not allowed: give a number from 0.001 to 1000"),
        (["run", *TINY, "--labeler-epoch", "late"], "--labeler-epoch 'late' is not a number or 'auto'"),
        (["run", *TINY, "--labeler-epoch", "3"], "--labeler-epoch 3 is outside the trained range 0..1"),
        (["run", *TINY, "--labels", "soft", "--top-k", "11"], "top-k 11 is larger than the number of classes (10)"),
        (
            ["distill", "--dataset", "digits", "--images", "lic", "--param", "tiles=9"],
            "N=9 does not tile 8×8 images into √N×√N equal squares: valid N here: 4, 16",
        ),
        (["distill", "--dataset", "digits", "--images", "rded", "--param", "tiles"], "--param 'tiles' is not KEY=VALUE"),
        (
            ["distill", "--dataset", "digits", "--images", "lic", "--param", "selekt=false"],
            "--param selekt=False: Extra inputs are not permitted (parameters of lic: ",
        ),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, capsys, args, message):
    # in this process (`python -m ladd`'s own entry point), as 18 interpreter start-ups cost a minute
    code, err = ladd_main(capsys, *args, "--out", tmp_path / "o") if args[0] in ("run", "distill") else ladd_main(capsys, *args)
    assert code == (4 if message == "not a ladd artifact" else 2), err  # 4: a missing artifact (ArtifactError)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    # nothing half-written: at most the run log, saying why the run stopped
    assert not (tmp_path / "o").exists() or [p.name for p in (tmp_path / "o").iterdir()] == ["ladd.log"]
    if (tmp_path / "o").exists():
        assert message in (tmp_path / "o" / "ladd.log").read_text().splitlines()[-1]


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """A digits artifact of random images, IPC 1, with no labels beyond the hard ones."""
    path, source = tmp_path_factory.mktemp("cli") / "art", pipeline.SourceConfig(dataset="digits")
    save_artifact(path, pipeline.distill(pipeline.load_source(source), source, pipeline.ImagesConfig(ipc=1)))
    return path


@pytest.mark.parametrize(
    "args,code,message",
    [
        # an option named as the user typed it, not as the config field it sets
        (["relabel", "ART", "--teacher-epoch", "99", "--teacher-epochs", "1"], 2, "--teacher-epoch 99 is outside the trained range 0..1"),
        (["relabel", "ART", "--label-kind", "foo"], 2, "--label-kind 'foo' is not one of logits, probs"),
        (["relabel", "ART", "--cutmix-per", "foo"], 2, "--cutmix-per 'foo' is not one of batch, sample"),
        (["relabel", "ART", "--label-dtype", "int8"], 2, "--label-dtype 'int8' is not one of float16, float32"),
        # an option that does nothing with the others given is refused, not ignored
        (["distill", "--dataset", "digits", "--recipe", "dm-digits"], 2, "--recipe is for image methods with recipes, not random"),
        (["distill", "--dataset", "digits", "--import-path", "x.npz"], 2, "--import-path is for --images import, not random: leave it out"),
        (["experts", "--dataset", "digits", "--data-dir", "."], 2, "'digits' is shipped with ladd and reads no folder: drop --data-dir"),
        (["label", "ART", "--labeler-classes", "1,2"], 2, "--labeler-classes is for --labeler-weights (a pretrained labeler's head rows)"),
        (["relabel", "ART", "--teacher-classes", "1,2,3"], 2, "--teacher-classes is for --teacher-weights (a pretrained"),
        (["diversity", "ART", "--teacher-classes", "1,2,3"], 2, "--teacher-classes is for --teacher-weights"),
        # a pretrained network has one checkpoint, trained already: options of a network ladd trains are refused beside it
        (["relabel", "ART", "--teacher-weights", "w.pth", "--teacher-epoch", "1"], 2, "--teacher-epoch picks a checkpoint of a teacher"),
        (["diversity", "ART", "--teacher-weights", "w.pth", "--teacher-epochs", "3"], 2, "--teacher-epochs sets how long ladd trains"),
        (["label", "ART", "--labeler-weights", "w.pth", "--labeler-epoch", "auto"], 2, "--labeler-weights is one trained labeler"),
        (["label", "ART", "--labeler-weights", "w.pth", "--ensemble", "2"], 2, "--ensemble averages several labelers ladd trains"),
        (["eval", "ART", "--prune", "2"], 2, "--prune is for method fkd (replaying a stored relabel), not baseline: leave it out"),
        (["eval", "ART", "--methods", "ladd", "--replay-batches", "shuffled"], 2, "--replay-batches is for method fkd"),
        (["eval", "ART", "--methods", ""], 2, "--methods is empty: give at least one name"),
        # a method that cannot train on the labels there will be, refused before any student trains
        (["eval", "ART", "--methods", "baseline,ladd"], 4, "method ladd trains on dense labels, which the artifact lacks: run `ladd label"),
        (["eval", "ART", "--methods", "local-hard"], 4, "method local-hard trains on the sub-sampling geometry (N, R), which the artifact"),
        (["run", *TINY, "--labels", "soft", "--methods", "ladd"], 2, "--methods ladd trains on dense labels, which --labels soft"),
        (["run", *TINY, "--labels", "soft", "--methods", "local-hard"], 2, "which neither --labels soft nor --images random makes"),
    ],
)
def test_options_that_do_not_fit_are_refused_before_any_work(unlabelled, tmp_path, monkeypatch, capsys, args, code, message):
    monkeypatch.chdir(tmp_path)  # --data-dir . is a folder; anything written lands here
    args = [unlabelled if a == "ART" else a for a in args]
    before = sorted(p.name for p in unlabelled.iterdir())
    got, err = ladd_main(capsys, *args, *(["--out", tmp_path / "o"] if args[0] != "relabel" else []))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert got == code and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    # nothing written: at most the run log, saying why the run stopped; the artifact as it was
    assert not (tmp_path / "o").exists() or [p.name for p in (tmp_path / "o").iterdir()] == ["ladd.log"]
    assert sorted(p.name for p in unlabelled.iterdir()) == before and sorted(p.name for p in tmp_path.iterdir()) in (["o"], [])


def test_auto_epoch_is_chosen_on_the_validation_split(toy):
    cfg = LabelConfig(method="ladd", n=2, r=0.75, labeler=ExpertConfig(model="convnet-w32", epochs=1, batch_size=4, saves_per_epoch=2))
    chosen = auto_epoch(
        cfg, toy, pipeline.SourceConfig(), 1, Runtime(), student_model="convnet-w32", student_epochs=2, seeds=1, val_per_class=2
    )
    assert chosen.epoch in (0.5, 1.0) and chosen.model_copy(update={"epoch": None}) == cfg


def test_soft_labels_then_default_eval(tmp_path):
    art = tmp_path / "art"
    assert ladd("distill", "--dataset", "digits", "--ipc", "1", "--out", art).returncode == 0
    res = ladd(
        "label",
        art,
        "--labels",
        "soft",
        "--model",
        "convnet-w32",
        "--labeler-epochs",
        "1",
        "--labeler-lr",
        "0.02",
        "--labeler-decay",
        "--labeler-saves-per-epoch",
        "2",
        "--labeler-epoch",
        "0.5",
        "--temperature",
        "2",
    )
    assert res.returncode == 0, res.stderr
    loaded = load_artifact(art)
    lab = loaded.manifest["labels"]
    assert loaded.dense_labels is None and loaded.soft_labels.shape == (10, 10)
    assert lab["method"] == "soft" and lab["labeler"]["epoch"] == 0.5 and lab["labeler"]["temperature"] == 2
    assert lab["config"]["labeler"]["lr"] == 0.02 and lab["config"]["labeler"]["decay"] is True
    res = ladd("eval", art, "--model", "convnet-w32", "--seeds", "1", "--epochs", "1", "--soft-loss", "kl", "--out", tmp_path / "ev")
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["baseline", "soft"] and rows[1]["soft_loss"] == "kl"
    info = ladd("info", art)
    assert "labels: soft" in info.stdout + info.stderr


def test_same_seed_gives_identical_artifacts(tmp_path):
    src = pipeline.SourceConfig(dataset="digits")
    data = pipeline.load_source(src)
    hashes = []
    for k in range(2):
        art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=2, seed=5))
        cfg = pipeline.LabelConfig(labeler=ExpertConfig(model="convnet-w32", epochs=1), labeler_dir=str(tmp_path / f"lab{k}"))
        art = pipeline.label(art, data, cfg, Runtime())
        from ladd.artifact import save_artifact

        save_artifact(tmp_path / f"a{k}", art)
        m = json.loads((tmp_path / f"a{k}" / "manifest.json").read_text())
        hashes.append({f: v["sha256"] for f, v in m["files"].items()})
    assert hashes[0] == hashes[1] and len(hashes[0]) == 4


def test_reusing_a_labeler_dir_with_other_settings_is_refused(tmp_path):
    src = pipeline.SourceConfig(dataset="digits")
    data = pipeline.load_source(src)
    art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=1))
    cfg = pipeline.LabelConfig(labeler=ExpertConfig(model="convnet-w32", epochs=1), labeler_dir=str(tmp_path / "lab"))
    pipeline.label(art, data, cfg, Runtime())
    other = cfg.model_copy(update={"labeler": ExpertConfig(model="convnet-w32", epochs=2)})
    with pytest.raises(LaddError, match=r"the expert in .*lab was trained with .*'epochs': 1.*, not .*'epochs': 2"):
        pipeline.label(art, data, other, Runtime())


def test_run_with_learned_images_and_a_recipe_file(tmp_path):
    recipe = tmp_path / "tiny-dm.toml"
    recipe.write_text('method = "dm"\nbudget = "test"\n[params]\niterations = 2\nbatch_real = 8\ncompile = false\n')
    out = tmp_path / "run"
    res = ladd("run", *TINY, "--images", "dm", "--recipe", recipe, "--epochs", "1", "--seeds", "1", "--out", out)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "artifact" / "manifest.json").read_text())
    assert manifest["images"]["method"] == "dm" and manifest["images"]["recipe"]["params"]["iterations"] == 2
    info = ladd("info", out / "artifact")
    assert "recipe tiny-dm" in info.stdout + info.stderr
    assert f"made with {manifest['images']['flops']:.3g} FLOPs" in " ".join((info.stdout + info.stderr).split())
    assert manifest["images"]["flops"] > 0


def test_experts_out_writes_a_buffer_that_mtt_reads(tmp_path):
    """In process (typer's runner): `ladd experts --out B` then `ladd distill --images mtt --buffer B`."""
    from typer.testing import CliRunner

    from ladd.cli import app

    recipe = tmp_path / "tiny-mtt.toml"
    recipe.write_text(
        'method = "mtt"\n[params]\niterations = 1\nsyn_steps = 1\nexpert_epochs = 1\nmax_start_epoch = 1\n'
        "num_experts = 1\nexpert_train_epochs = 2\n"
    )
    buf, art = tmp_path / "buf", tmp_path / "art"
    common = ["--dataset", "digits", "--model", "convnet-w32", "--device", "cpu"]
    res = CliRunner().invoke(app, ["experts", *common, "--num-experts", "1", "--epochs", "2", "--out", str(buf)])
    assert res.exit_code == 0, res.output
    assert (buf / "expert_000" / "epoch_002.safetensors").exists()
    res = CliRunner().invoke(
        app, ["distill", *common, "--ipc", "1", "--images", "mtt", "--recipe", str(recipe), "--buffer", str(buf), "--out", str(art)]
    )
    assert res.exit_code == 0, res.output
    assert load_artifact(art).manifest["images"]["buffer"] == str(buf)


def test_relabel_then_info_and_pruned_fkd_eval(tmp_path):
    art = tmp_path / "art"
    assert ladd("distill", "--dataset", "digits", "--ipc", "2", "--out", art).returncode == 0
    res = ladd("relabel", art, "--epochs", "2", "--batch-size", "10", "--teacher-model", "convnet-w32", "--teacher-epochs", "1")
    assert res.returncode == 0, res.stderr
    info = ladd("info", art)
    assert info.returncode == 0 and "relabel: 2 epochs × 20 samples" in info.stderr and "label-to-image ratio" in info.stderr
    out = tmp_path / "eval"
    res = ladd(
        "eval",
        art,
        "--methods",
        "fkd",
        "--model",
        "convnet-w32",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--protocol",
        "fkd",
        "--lr",
        "0.001",
        "--batch-size",
        "7",
        "--prune",
        "2",
        "--pool",
        "batch",
        "--replay-batches",
        "shuffled",
        "--out",
        out,
    )
    assert res.returncode == 0, res.stderr
    row = json.loads((out / "results.json").read_text())["rows"][0]
    assert row["relabel_kept_samples"] == 20 and row["pool"] == "batch" and "| fkd ρ=2 batch |" in (out / "results.md").read_text()
    res = ladd("eval", art, "--methods", "fkd", "--epochs", "1", "--prune", "0.5")
    assert (
        res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "--prune 0.5 is not allowed: give a number from 1 to" in res.stderr
    ), res.stderr


def test_eval_under_a_protocol_then_report_end_to_end(tmp_path):
    art = tmp_path / "run" / "artifact"
    assert ladd("distill", "--dataset", "digits", "--ipc", "1", "--out", art).returncode == 0
    res = ladd("eval", art, "--model", "convnet-w32", "--seeds", "1", "--protocol", "glad", "--epochs", "2", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    (row,) = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert (row["method"], row["protocol"], row["ema"], row["schedule"]) == ("baseline", "glad", 0.995, "warmup-cosine")
    assert row["protocol_overrides"] == {"epochs": 2} and row["lr"] == 1e-3 and row["lr_source"] == "protocol glad"
    res = ladd("report", tmp_path / "run", "--out", tmp_path / "rep")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "rep" / "images_run.png").is_file() and (tmp_path / "rep" / "report.csv").read_text().count("\n") == 2
    bad = ladd("eval", art, "--protocol", "dcc")
    assert bad.returncode == 2 and "unknown evaluation protocol 'dcc'" in bad.stderr and "glad" in bad.stderr


def _recorded_students(monkeypatch) -> list:
    """Replace the students' trainer by one that records its recipe and trains nothing."""
    import ladd.eval.protocol as protocol_mod
    from ladd.train.loop import TrainLog

    recipes = []

    def record(model, data, terms, recipe, **kw):
        recipes.append(recipe)
        return TrainLog(samples={name: 1 for name in terms})

    monkeypatch.setattr(protocol_mod, "train", record)
    return recipes


@pytest.mark.parametrize("protocol", ["dc", "dc-cpu", "glad", "fkd"])
def test_run_trains_students_as_its_protocol_says_unless_an_option_is_given(tmp_path, monkeypatch, protocol):
    from typer.testing import CliRunner

    from ladd.augment.dsa import strategy_for
    from ladd.cli import app
    from ladd.eval.protocols import load_protocol

    recipes = _recorded_students(monkeypatch)
    res = CliRunner().invoke(app, ["run", *TINY, "--seeds", "1", "--protocol", protocol, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    expected = load_protocol(protocol).recipe("convnet-w32", strategy_for("digits"))
    assert len(recipes) == 2 and all(r == expected for r in recipes)  # baseline and ladd
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert all(r["protocol_overrides"] == {} and r["lr_source"] == f"protocol {protocol}" for r in results["rows"])
    assert (
        f"students convnet-w32 (baseline, ladd): {expected.optimizer} lr {expected.lr:g} (protocol {protocol}), {expected.epochs} epochs"
        in " ".join(results["notes"])
    )
    recipes.clear()
    res = CliRunner().invoke(
        app,
        [
            "run",
            *TINY,
            "--seeds",
            "1",
            "--protocol",
            protocol,
            "--epochs",
            "3",
            "--lr",
            "0.5",
            "--soft-loss",
            "kl",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert all(r == expected.model_copy(update={"epochs": 3, "lr": 0.5}) for r in recipes)
    rows = json.loads((tmp_path / "b" / "results.json").read_text())["rows"]
    assert rows[1]["protocol_overrides"] == {"epochs": 3, "lr": 0.5, "soft_loss": "kl"} and rows[1]["soft_loss"] == "kl"


def test_run_and_eval_train_an_mtt_artifact_at_its_learned_lr_and_say_so(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ladd.cli import app
    from ladd.experts import ensure_buffer

    ensure_buffer(pipeline.load_source(pipeline.SourceConfig(dataset="digits")), "convnet-w32", 1, 2, Runtime())
    recipe = tmp_path / "tiny-mtt.toml"
    recipe.write_text(
        'method = "mtt"\n[params]\niterations = 2\nsyn_steps = 2\nexpert_epochs = 1\nmax_start_epoch = 1\n'
        "num_experts = 1\nexpert_train_epochs = 2\ncompile = false\n"
    )
    recipes = _recorded_students(monkeypatch)
    res = CliRunner().invoke(
        app, ["run", *TINY, "--images", "mtt", "--recipe", str(recipe), "--seeds", "1", "--out", str(tmp_path / "run")]
    )
    assert res.exit_code == 0, res.output
    learned = load_artifact(tmp_path / "run" / "artifact").manifest["images"]["learned"]["lr"]
    assert learned != 0.01 and [r.lr for r in recipes] == [learned, learned]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(r["lr"] == learned and r["lr_source"] == "learned by the image method" for r in results["rows"])
    assert f"sgd lr {learned:g} (learned by the image method)" in " ".join(results["notes"])
    recipes.clear()
    res = CliRunner().invoke(
        app,
        [
            "eval",
            str(tmp_path / "run" / "artifact"),
            "--model",
            "convnet-w32",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert [r.lr for r in recipes] == [learned, learned]
    assert f"lr {learned:g} (learned by the image method)" in " ".join(json.loads((tmp_path / "ev" / "results.json").read_text())["notes"])
    # an AdamW protocol keeps its own lr: the learned one is a step size of plain SGD
    recipes.clear()
    args = ["eval", str(tmp_path / "run" / "artifact"), "--model", "convnet-w32", "--seeds", "1", "--epochs", "1", "--protocol", "fkd"]
    res = CliRunner().invoke(app, [*args, "--methods", "baseline", "--out", str(tmp_path / "ev-fkd")])
    assert res.exit_code == 0, res.output
    (row,) = json.loads((tmp_path / "ev-fkd" / "results.json").read_text())["rows"]
    assert [r.lr for r in recipes] == [1e-3] and row["lr_source"] == "protocol fkd (the images' learned lr is an SGD step size)"


def test_npz_export_without_suffix_is_imported_back_by_distill(tmp_path):
    from typer.testing import CliRunner

    from ladd.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["distill", "--dataset", "digits", "--ipc", "1", "--out", str(tmp_path / "art")]).exit_code == 0
    res = runner.invoke(app, ["export", str(tmp_path / "art"), "--format", "npz", "--out", str(tmp_path / "set")])
    assert res.exit_code == 0 and "set.npz" in res.output.replace("\n", ""), res.output
    res = runner.invoke(
        app,
        [
            "distill",
            "--dataset",
            "digits",
            "--images",
            "import",
            "--import-path",
            str(tmp_path / "set.npz"),
            "--out",
            str(tmp_path / "back"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert load_artifact(tmp_path / "back").images.equal(load_artifact(tmp_path / "art").images)


def test_label_options_left_at_their_defaults_give_the_api_label_config():
    import inspect

    from ladd.cli.options import DEFAULT_MODEL, _label_options
    from ladd.cli.stages import label_config
    from ladd.labels import LabelConfig

    defaults = {name: p.default for name, p in inspect.signature(_label_options).parameters.items()}
    assert label_config((DEFAULT_MODEL,), **defaults) == LabelConfig()
