"""What a newcomer meets on the command line: no silent overwrite, one set of defaults (the stages
one by one make what `ladd run` makes), presets, an expected duration, what to do after Ctrl-C, and
errors that say what to do instead. Students are not trained where only their settings matter."""

import json
import shutil
from pathlib import Path

import pytest
import typer

from ladd import pipeline
from ladd import cli
from ladd.cli import options, stages
from ladd.artifact import load_artifact
from ladd.core.errors import ConfigError, LaddError
from ladd.core.runtime import Runtime
from ladd.eval import protocol
from ladd.eval.protocol import EvalConfig, protocol_for

from conftest import ladd_main, make_dataset


def _students_not_trained(monkeypatch) -> list:
    """Students keep their initial weights; their recipes are recorded."""
    import ladd.eval.protocol as protocol_mod
    from ladd.train.loop import TrainLog

    recipes = []
    monkeypatch.setattr(
        protocol_mod, "train", lambda model, data, terms, recipe, **kw: recipes.append(recipe) or TrainLog({n: 1 for n in terms})
    )
    return recipes


@pytest.fixture
def art(tmp_path, capsys) -> Path:
    path = tmp_path / "a"
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", path)
    assert code == 0, err
    return path


def _one_line(code: int, err: str, *parts: str) -> None:
    assert code in (2, 3, 4, 5) and err.startswith("error: ") and err.count("\n") == 1, err  # a LaddError kind, never 1 (unexpected)
    for part in parts:
        assert part in err, err


def test_out_never_replaces_an_artifact_unless_told_to(tmp_path, capsys, art, monkeypatch):
    before = (art / "manifest.json").read_bytes()
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--seed", "1", "--out", art)
    _one_line(code, err, f"{art} already holds an artifact", "--overwrite")
    assert (art / "manifest.json").read_bytes() == before
    monkeypatch.setattr(pipeline, "load_source", lambda *a: pytest.fail("data loaded before the refusal"))
    for command in (["recover", "--dataset", "digits"], ["label", tmp_path / "other", "--labeler-epochs", "1"]):
        if command[0] == "label":
            shutil.copytree(art, tmp_path / "other")
        _one_line(*ladd_main(capsys, *command, "--out", art), f"{art} already holds an artifact", "--overwrite")
    run = tmp_path / "run"
    shutil.copytree(art, run / "artifact")
    _one_line(
        *ladd_main(capsys, "run", "--dataset", "digits", "--out", run), f"{run / 'artifact'} already holds an artifact", "--overwrite"
    )
    monkeypatch.undo()
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--seed", "1", "--out", art, "--overwrite")
    assert code == 0 and (art / "manifest.json").read_bytes() != before, err
    code, err = ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--seed", "1", "--out", art, "--resume")
    assert code == 0, err  # the same command continued (as Ctrl-C advises) replaces what it wrote


def test_results_name_their_artifact_absolutely_with_its_images_hash(tmp_path, capsys, art, monkeypatch):
    _students_not_trained(monkeypatch)
    monkeypatch.chdir(art.parent)
    code, err = ladd_main(capsys, "eval", art.name, "--methods", "baseline", "--seeds", "1", "--out", tmp_path / "ev")
    assert code == 0, err
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    sha = load_artifact(art).manifest["files"]["images.safetensors"]["sha256"]
    assert results["config"]["artifact"] == str(art.resolve()) and results["config"]["preset"] == "quick"
    assert [(r["artifact"], r["artifact_sha256"]) for r in results["rows"]] == [(str(art.resolve()), sha)]
    assert options.source_config("digits", "data/here", None, False).data_dir == str(art.parent / "data" / "here")  # --data-dir absolute


def test_the_stages_one_by_one_make_and_score_what_run_does(tmp_path, capsys, monkeypatch):
    recipes = _students_not_trained(monkeypatch)
    tiny = ["--labeler-epochs", "1"]
    assert ladd_main(capsys, "run", "--dataset", "digits", "--ipc", "1", *tiny, "--out", tmp_path / "run")[0] == 0
    staged = tmp_path / "stages" / "artifact"
    assert ladd_main(capsys, "distill", "--dataset", "digits", "--ipc", "1", "--out", staged)[0] == 0
    assert ladd_main(capsys, "label", staged, *tiny)[0] == 0
    assert ladd_main(capsys, "eval", staged, "--out", tmp_path / "stages")[0] == 0
    made = [json.loads((tmp_path / d / "artifact" / "manifest.json").read_text())["files"] for d in ("run", "stages")]
    assert made[0] == made[1]  # the same images and labels, byte for byte
    run, stages = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("run", "stages"))
    assert run["config"]["eval"] == stages["config"]["eval"]

    def same(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "artifact")} for r in rows]

    assert same(run["rows"]) == same(stages["rows"])
    assert {(r.epochs, r.lr) for r in recipes} == {(150, 0.01)} and len(recipes) == 2 * 2 * 3  # dc-cpu, baseline and ladd, 3 seeds
    assert {(r["model"], r["protocol"], r["n_seeds"]) for r in run["rows"]} == {("convnet-w64", "dc-cpu", 3)}


def test_a_preset_sets_the_defaults_and_every_option_given_wins(monkeypatch, tmp_path, capsys, art):
    quick = stages.eval_config({"preset": "quick"}, ("baseline",))
    assert (quick.models, quick.seeds, quick.crops_per_step, quick.default_protocol, quick.protocol) == (
        ("convnet-w64",),
        3,
        "auto",
        "dc-cpu",
        None,
    )
    paper = stages.eval_config({"preset": "paper"}, ("baseline",))
    assert (paper.models, paper.seeds, paper.crops_per_step, paper.default_protocol) == (("convnet",), 5, "all", "dc")
    given = stages.eval_config(
        {"preset": "paper", "model": "convnet-w32,alexnet", "seeds": 2, "crops_per_step": "3", "protocol": "glad"}, ("baseline",)
    )
    assert (given.models, given.seeds, given.crops_per_step, protocol_for(given, "baseline").name) == (
        ("convnet-w32", "alexnet"),
        2,
        3,
        "glad",
    )
    both = EvalConfig(methods=("baseline", "fkd"), default_protocol="dc-cpu")  # a replaying method still gets the protocol it needs
    assert [protocol_for(both, m).name for m in both.methods] == ["dc-cpu", "fkd"]
    recipes = _students_not_trained(monkeypatch)
    code, err = ladd_main(capsys, "eval", art, "--preset", "paper", "--methods", "baseline", "--out", tmp_path / "ev")
    assert code == 0, err
    (row,) = json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]
    assert (row["model"], row["protocol"], row["n_seeds"], row["epochs"]) == ("convnet", "dc", 5, 1000) and len(recipes) == 5


def test_an_evaluation_says_how_long_it_will_take_and_one_seed_shows_no_spread(tmp_path, capsys, art, monkeypatch):
    args = ("eval", art, "--methods", "baseline", "--model", "convnet-w32", "--seeds", "1", "--epochs", "60")
    code, err = ladd_main(capsys, *args, "--out", tmp_path / "quiet")  # LADD_NO_PROGRESS (conftest): nothing timed
    assert code == 0 and "expected ≈" not in err, err
    monkeypatch.delenv("LADD_NO_PROGRESS")
    code, err = ladd_main(capsys, *args, "--out", tmp_path / "told")
    assert code == 0, err
    assert sum("expected ≈" in line and line.endswith("for 1 student × 60 epochs") for line in err.splitlines()) == 1, err
    assert "± 0.00" not in err
    rows = [json.loads((tmp_path / d / "results.json").read_text())["rows"][0] for d in ("quiet", "told")]
    assert rows[0]["accs"] == rows[1]["accs"]  # the timing run leaves the students as they were


@pytest.mark.parametrize(
    "command,patch,advice",
    [
        (["distill", "--dataset", "digits", "--ipc", "1", "--out", "OUT"], "distill", "re-run the same command with --resume to continue"),
        (["eval", "ART", "--seeds", "1", "--out", "OUT"], "evaluate_all", "re-run the same command to continue"),
        (["eval", "ART", "--seeds", "1"], "evaluate_all", "re-run the same command with --out runs/"),  # its students resume from there
    ],
)
def test_ctrl_c_says_how_to_continue_and_exits_130(tmp_path, capsys, art, monkeypatch, command, patch, advice):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline if patch == "distill" else protocol, patch, interrupt)
    monkeypatch.chdir(tmp_path)
    args = [{"ART": art, "OUT": tmp_path / "o"}.get(a, a) for a in command]
    code, err = ladd_main(capsys, *args)
    assert code == 130 and err.strip().splitlines()[-1].startswith(f"interrupted — {advice}"), err


def test_errors_say_what_to_use_instead(tmp_path, capsys, art, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(art, run / "artifact")
    for command in ("eval", "label", "info", "export"):
        _one_line(*ladd_main(capsys, command, run), f"{run} is a run folder, not an artifact: pass {run / 'artifact'}")
    _one_line(
        *ladd_main(capsys, "distill", "--dataset", "mnist", "--out", tmp_path / "m"), "'mnist-idx'", "--data-dir", "--dataset mnist5k"
    )
    _one_line(
        *ladd_main(capsys, "recover", "--dataset", "digits", "--param", "iteratons=2", "--out", tmp_path / "r"),
        "--param iteratons=2",
        "parameters of lpld:",
        "iterations",
    )
    seen = []

    def stop(data, src, cfg, runtime):
        seen.append(cfg.params)
        raise ConfigError("stopped here")

    monkeypatch.setattr(pipeline, "distill", stop)
    assert ladd_main(capsys, "recover", "--dataset", "digits", "--param", "iterations=2", "--out", tmp_path / "r")[0] == 2
    assert ladd_main(capsys, "run", "--dataset", "digits", "--images", "dm", "--param", "iterations=3", "--out", tmp_path / "r")[0] == 2
    assert seen == [{"iterations": 2}, {"iterations": 3}]


def test_an_artifact_and_other_data_say_what_differs():
    data = make_dataset(classes=3)
    art = pipeline.distill(data, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=1))
    pipeline.check_same_data(art, data)
    cases = {
        "it has 3 classes, toy has 4": make_dataset(classes=4),
        "its class 0 is 'c0', toy's is 'c1' (the same classes in another order)": data.__class__(
            data.name, data.train, data.test, ("c1", "c0", "c2"), data.mean, data.std
        ),
        "its images are 1×8×8, toy's are 1×12×12 (another --resolution?)": make_dataset(classes=3, size=12),
        "its training images' mean/std are [0.5]/[0.25], toy's are [0.4]/[0.25]": data.__class__(
            data.name, data.train, data.test, data.class_names, (0.4,), data.std
        ),
    }
    for reason, other in cases.items():
        with pytest.raises(LaddError, match="the artifact says it was made from toy, but this toy differs: ") as e:
            pipeline.check_same_data(art, other)
        assert reason in str(e.value)
    other = make_dataset(classes=4)
    with pytest.raises(LaddError, match="the artifact was made from toy and cannot be used with digits: it has 3 classes"):
        pipeline.check_same_data(art, other.__class__("digits", other.train, other.test, other.class_names, other.mean, other.std))


def test_a_reused_expert_is_announced_once(toy, capsys):
    from ladd.experts import ExpertConfig, ensure_expert

    cfg = ExpertConfig(model="convnet-w32", epochs=1, batch_size=4)
    for _ in range(3):
        ensure_expert(toy, cfg, None, Runtime())
    assert capsys.readouterr().err.count("reusing the expert") == 1


def test_each_model_option_says_what_its_command_does_with_it():
    commands = typer.main.get_command(cli.app).commands
    helps = {
        name: next(p.help for p in commands[name].params if p.name == "model") for name in ("distill", "label", "experts", "eval", "run")
    }
    assert not any("Evaluation model" in h for h in helps.values())
    assert "distills with" in helps["distill"] and "Labeler" in helps["label"] and "Expert" in helps["experts"]
    assert "Student" in helps["eval"] and len(set(helps.values())) == 4  # eval and run share theirs
    assert "fkd" in next(p.help for p in commands["eval"].params if p.name == "methods")
    default = {
        name: next(p.default for p in commands[name].params if p.name == "model") for name in ("distill", "label", "experts", "gradcam")
    }
    assert set(default.values()) == {"convnet-w64"}  # the quick preset's, which `ladd run` students default to
