import dataclasses
import math
import re

import pytest
import torch

from ladd import pipeline
from ladd.artifact import Artifact, load_artifact, save_artifact
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.cost.storage import component_bytes
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.eval.protocols import DEFAULT, load_protocol, shipped
from ladd.experts import ExpertConfig
from ladd.labels.relabel import RelabelConfig
from ladd.train.loop import Recipe, _Ema

from conftest import make_dataset


def test_shipped_protocols_load_and_dc_is_the_reference_recipe():
    assert {"dc", "dc-cpu", "glad", "fkd"} <= set(shipped())
    dc = load_protocol("dc").recipe("convnet", "flip")
    # DatasetCondensation utils.evaluate_synset + main.py: SGD lr 0.01, momentum 0.9, wd 5e-4, batch 256,
    # lr ×0.1 once at half of 1000 epochs (with DSA), no EMA
    assert (dc.optimizer, dc.lr, dc.momentum, dc.weight_decay, dc.batch_size, dc.epochs) == ("sgd", 0.01, 0.9, 5e-4, 256, 1000)
    assert (dc.schedule, dc.milestones, dc.gamma, dc.ema, dc.dsa) == ("step", (0.5,), 0.1, None, "flip")
    glad = load_protocol("glad")
    assert glad.lr_for("VGG-11") == 1e-4 and glad.lr_for("convnet-w64") == 1e-3 and glad.ema == 0.995
    fkd = load_protocol("fkd").recipe("alexnet", None)
    assert (fkd.optimizer, fkd.schedule, fkd.lr, fkd.weight_decay) == ("adamw", "cosine", 1e-4, 0.01)
    # no-distillation softlabel/utils.evaluate_synset: StepLR(step_size = epochs // 4, gamma 0.3) over 3000 epochs
    soft = load_protocol("softlabel").recipe("convnet", "flip")
    step = soft.epochs // 4
    assert (soft.optimizer, soft.lr, soft.momentum, soft.weight_decay, soft.batch_size, soft.epochs) == ("sgd", 0.01, 0.9, 5e-4, 256, 3000)
    assert [soft.lr_at(e) for e in range(soft.epochs)] == pytest.approx([0.01 * 0.3 ** (e // step) for e in range(soft.epochs)])


def test_unknown_or_bad_protocol_is_refused(tmp_path):
    with pytest.raises(LaddError, match="shipped evaluation protocols are .*dc"):
        load_protocol("dcc")
    bad = tmp_path / "p.toml"
    bad.write_text('name = "x"\nbudget = "cpu"\nsource = "here"\nepochs = 5\nlr = 0.1\nschedule = "linear"\n')
    with pytest.raises(LaddError, match="schedule"):
        load_protocol(str(bad))
    with pytest.raises(LaddError, match="--lr .* or --select-lr"):
        EvalConfig(lr=0.01, select_lr=(0.01, 0.1))


def test_schedules_follow_their_formulas():
    cos = Recipe(epochs=10, lr=1.0, schedule="cosine")
    assert [cos.lr_at(e) for e in range(10)] == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 10)) for e in range(10)])
    warm = Recipe(epochs=10, lr=1.0, schedule="warmup-cosine", warmup=0.5)
    lrs = [warm.lr_at(e) for e in range(10)]
    assert lrs[:5] == pytest.approx([(e + 1) / 6 for e in range(5)])  # linear warmup over the first half
    assert lrs[5] == pytest.approx(1.0) and lrs[5:] == sorted(lrs[5:], reverse=True) and lrs[-1] < 0.1
    step = Recipe(epochs=10, lr=1.0)
    assert [step.lr_at(e) for e in (4, 5)] == [1.0, pytest.approx(0.1)]


def test_ema_is_glads_a_mean_of_the_epochs_weights_until_the_decay_reaches_beta():
    """ema_pytorch's EMA(beta, power=1, update_after_step=0) updated after each epoch: the first update
    copies the weights, the k-th uses decay min(1 − 1/k, β); the initial weights never count."""
    model = torch.nn.Linear(2, 1)
    ema = _Ema(model, 0.6)
    weights = []
    for k in range(1, 5):
        with torch.no_grad():
            model.weight.copy_(torch.full_like(model.weight, float(k * k)))  # the weights after epoch k
        weights.append(float(k * k))
        ema.update(k)
    # k = 1 copies (1), k = 2 averages (decay 1/2: 2.5), then β = 0.6 caps 2/3 and 3/4
    want = 1.0
    for k, w in enumerate(weights[1:], start=2):
        decay = min(1 - 1 / k, 0.6)
        want = decay * want + (1 - decay) * w
    ema.copy_to(model)
    assert want == pytest.approx(0.6 * (0.6 * 2.5 + 0.4 * 9) + 0.4 * 16)
    assert torch.allclose(model.weight, torch.full_like(model.weight, want))


def _split_dataset():
    train, test = make_dataset(n_per_class=12, seed=0), make_dataset(n_per_class=6, seed=1)
    return dataclasses.replace(train, test=test.test)


def _artifact(ds):
    manifest = {"source": {"class_names": list(ds.class_names)}, "images": {}}
    return Artifact(ds.train.images[::4], ds.train.labels[::4], manifest)


def test_rows_record_protocol_and_lr_selection_never_reads_the_test_split():
    ds = _split_dataset()
    cfg = EvalConfig(
        methods=("baseline",), models=("convnet-w32",), seeds=1, protocol="fkd", epochs=2, select_lr=(1e-4, 3e-3), val_per_class=3
    )
    row = evaluate(_artifact(ds), ds, cfg, Runtime())[0]
    assert (row["protocol"], row["optimizer"], row["schedule"], row["soft_loss"]) == ("fkd", "adamw", "cosine", "kl")
    assert row["protocol_overrides"] == {"epochs": 2} and row["reported"].startswith("final epoch")
    sel = row["lr_selection"]
    assert set(sel["val_acc_by_lr"]) == {"0.0001", "0.003"} and row["lr"] == sel["chosen"]
    assert sel["on"].startswith("toy-holdout3") and "validation split" in row["selected_on"]["student lr"]
    # a test split with scrambled labels changes the test accuracy, never the choice
    scrambled = dataclasses.replace(ds, test=dataclasses.replace(ds.test, labels=(ds.test.labels + 1) % 3))
    again = evaluate(_artifact(scrambled), scrambled, cfg, Runtime())[0]
    assert again["lr_selection"] == sel and again["acc_mean"] != row["acc_mean"]


def test_selected_lr_students_are_the_students_a_fixed_lr_trains():
    ds = _split_dataset()
    base = dict(methods=("baseline",), models=("convnet-w32",), seeds=2, protocol="fkd", epochs=2, val_per_class=3)
    selected = evaluate(_artifact(ds), ds, EvalConfig(**base, select_lr=(1e-4, 3e-3)), Runtime())[0]
    fixed = evaluate(_artifact(ds), ds, EvalConfig(**base, lr=selected["lr"]), Runtime())[0]
    assert selected["accs"] == fixed["accs"] and selected["class_acc_mean"] == fixed["class_acc_mean"]


def test_validation_split_drops_the_artifacts_own_images():
    from ladd.eval.protocol import validation_split

    ds = _split_dataset()
    full = validation_split(ds, 4, torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    reused = full.test.images[:3]
    val = validation_split(ds, 4, reused)
    assert len(full.test) == 12 and len(val.test) == 9
    stored = {x.numpy().tobytes() for x in reused}
    assert not any(x.numpy().tobytes() in stored for x in val.test.images)
    train = {x.numpy().tobytes() for x in ds.train.images}
    assert all(x.numpy().tobytes() in train for x in val.test.images)  # carved from the training split, not test


def test_a_diverging_lr_candidate_loses_the_selection_instead_of_ending_it():
    ds = _split_dataset()
    base = dict(methods=("baseline",), models=("convnet-w32",), seeds=1, protocol="dc", epochs=2, val_per_class=3)
    row = evaluate(_artifact(ds), ds, EvalConfig(**base, select_lr=(1e30, 0.01)), Runtime())[0]
    assert row["lr_selection"]["val_acc_by_lr"]["1e+30"] is None and row["lr"] == 0.01
    with pytest.raises(LaddError, match=r"diverged at every candidate \(1e\+30, 1e\+31\): add smaller ones"):
        evaluate(_artifact(ds), ds, EvalConfig(**base, select_lr=(1e30, 1e31)), Runtime())


def test_a_file_named_like_a_shipped_protocol_or_recipe_does_not_shadow_it(tmp_path, monkeypatch):
    from ladd.images.recipes import load_recipe

    monkeypatch.chdir(tmp_path)
    mine = 'name = "mine"\nbudget = "cpu"\nsource = "here"\nepochs = 7\nlr = 0.5\n'
    for name in ("dc", "dc.toml"):
        (tmp_path / name).write_text(mine)
    (tmp_path / "dm-paper").write_text('method = "dm"\n[params]\niterations = 3\n')
    assert load_protocol("dc").epochs == 1000 and load_recipe("dm", "mnist5k", 10, "dm-paper")["params"]["iterations"] != 3
    assert load_protocol("./dc.toml").epochs == 7 and load_protocol("dc.toml").epochs == 7  # a path reads the file
    assert load_recipe("dm", "mnist5k", 10, "./dm-paper")["params"]["iterations"] == 3
    with pytest.raises(
        LaddError, match=r"unknown evaluation protocol 'dcx' \(did you mean dc\?\).* or pass a file as a path such as ./dcx.toml"
    ):
        load_protocol("dcx")
    with pytest.raises(LaddError, match="evaluation protocol file missing.toml does not exist"):
        load_protocol("missing.toml")
    with pytest.raises(LaddError, match="unknown recipe 'dm-papr'"):
        load_recipe("dm", "mnist5k", 10, "dm-papr")


def test_lic_protocol_is_cims_evaluator_with_the_batch_chosen_by_set_size():
    lic = load_protocol("lic")
    recipe = lic.recipe("convnet", "flip", images=100)
    # LINs-lab/CIM data/utils/evaluator.py: AdamW 1e-3, wd 1e-4, MultiStepLR ×0.2 at 2·E//3 and 5·E//6, 1000 epochs
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.epochs, recipe.gamma) == ("adamw", 1e-3, 1e-4, 1000, 0.2)
    assert [int(1000 * m) for m in recipe.milestones] == [2 * 1000 // 3, 5 * 1000 // 6]
    assert [lic.batch_for(n) for n in (10, 11, 500, 501, 20000, 20001)] == [10, 50, 50, 100, 100, 200]
    assert recipe.batch_size == 50 and lic.recipe("convnet", None, images=10, batch_size=7).batch_size == 7
    assert load_protocol("dc").batch_for(10) == 256  # no batch_sizes: always batch_size


def test_replaying_methods_default_to_the_fkd_protocol_and_refuse_an_sgd_one(toy, tmp_path, capsys):
    """SGD protocols train a replayed relabel to chance (its KL at T = 20 has tiny gradients), so
    fkd's rows use the fkd protocol unless one is given, and a given SGD protocol is refused."""
    path = tmp_path / "art"
    save_artifact(path, pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=6)))
    relabel = RelabelConfig(epochs=1, batch_size=6, teacher=ExpertConfig(model="convnet-w32", epochs=1, batch_size=6))
    save_artifact(path, pipeline.relabel(load_artifact(path), path, toy, relabel, Runtime()))
    cfg = EvalConfig(methods=("baseline", "fkd"), models=("convnet-w32",), seeds=1, epochs=1)
    rows = evaluate(load_artifact(path), toy, cfg, Runtime())
    assert [(r["method"], r["protocol"], r["optimizer"]) for r in rows] == [
        ("baseline", DEFAULT, load_protocol(DEFAULT).optimizer),
        ("fkd", "fkd", "adamw"),
    ]
    assert "method fkd: protocol fkd, the default for replaying a stored relabel" in capsys.readouterr().err
    for method, protocol in (("fkd", "dc-cpu"), ("sre2l", "glad"), ("local-dense+replay", "dc")):
        with pytest.raises(
            LaddError,
            match=rf"--protocol {protocol} trains method {re.escape(method)} to chance: .* needs AdamW, not sgd; "
            rf"give an AdamW protocol \(fkd, lic\), or leave --protocol out to train \S+ under protocol fkd$",
        ):
            EvalConfig(methods=("baseline", method), protocol=protocol)
    assert EvalConfig(methods=("relabel",), protocol="lic").protocol == "lic"  # AdamW: accepted as given
    assert EvalConfig(methods=("baseline",), protocol="dc-cpu").protocol == "dc-cpu"


def test_ema_and_local_weight_overrides_reach_the_recipe_and_the_rows(tmp_path):
    """`--ema` overrides the protocol's EMA (0 = none) and `--local-weight` weighs the local terms; both are recorded."""
    from ladd import api

    glad, dc = load_protocol("glad"), load_protocol("dc")
    assert glad.recipe("convnet", "flip").ema == 0.995 and glad.recipe("convnet", "flip", ema=0).ema is None
    assert dc.recipe("convnet", "flip").ema is None and dc.recipe("convnet", "flip", ema=0.9).ema == 0.9
    src = api.SourceConfig(dataset="digits")
    data = api.load_dataset(src)
    art_labeler = api.ExpertConfig(epochs=1)
    art = api.label(api.distill(data, api.ImagesConfig(ipc=1), src), data, api.LabelConfig(n=2, labeler=art_labeler))
    cfg = api.eval_config(methods=("baseline", "ladd"), seeds=1, epochs=1, local_weight=0.5, ema=0.9)
    rows = {r["method"]: r for r in api.evaluate(art, data, cfg)}
    assert rows["ladd"]["local_weight"] == 0.5 and rows["baseline"]["local_weight"] is None
    # labelled in memory after a load: the labels' bytes are the new ones', not the loaded manifest's
    reloaded = api.label(api.load_artifact(api.save_artifact(tmp_path / "a", art)), data, api.LabelConfig(n=3, labeler=art_labeler))
    stored = component_bytes(reloaded.components())
    row = api.evaluate(reloaded, data, cfg.model_copy(update={"methods": ("ladd",)}))[0]
    assert row["label_bytes_zip"] == stored["labels"]["zip"] + stored["dense_labels"]["zip"]
    assert all(r["ema"] == 0.9 and r["protocol_overrides"]["ema"] == 0.9 for r in rows.values())
    with pytest.raises(ValueError):
        api.eval_config(local_weight=0)


def test_learned_local_weight_trains_the_two_term_methods_weights_and_records_them():
    """`--local-weight learned` gives methods with a local term and another term learned weights
    (recorded per row); a one-term method trains as it would without it."""
    from ladd.cli.stages import eval_config

    assert eval_config({"local_weight": "learned"}, ("ladd",)).local_weight == "learned"
    assert eval_config({"local_weight": "0.5"}, ("ladd",)).local_weight == 0.5
    assert eval_config({}, ("ladd",)).local_weight == 1.0
    from ladd import api

    src = api.SourceConfig(dataset="digits")
    data = api.load_dataset(src)
    art = api.label(api.distill(data, api.ImagesConfig(ipc=1), src), data, api.LabelConfig(n=2, labeler=api.ExpertConfig(epochs=1)))
    cfg = EvalConfig(methods=("baseline", "ladd", "local-dense"), models=("convnet-w32",), seeds=1, epochs=2, local_weight="learned")
    rows = {r["method"]: r for r in evaluate(art, data, cfg, Runtime())}
    assert rows["ladd"]["local_weight"] == "learned" and set(rows["ladd"]["learned_weights"]) == {"global-hard", "local-dense"}
    assert rows["baseline"]["learned_weights"] is None and rows["local-dense"]["learned_weights"] is None
    assert rows["local-dense"]["local_weight"] == 1.0 and rows["baseline"]["local_weight"] is None
    plain = evaluate(art, data, cfg.model_copy(update={"methods": ("baseline",), "local_weight": 1.0}), Runtime())[0]
    assert plain["accs"] == rows["baseline"]["accs"]


def test_an_interrupted_evaluation_resumes_its_students_to_the_same_rows(toy, tmp_path, monkeypatch):
    """Under `checkpointing(folder)` a killed evaluation, run again, reloads the finished students,
    resumes the interrupted one and gives the rows of an uninterrupted run; the folder is removed once
    the evaluation ends."""
    import ladd.eval.protocol as protocol
    import ladd.train.loop as loop
    from ladd.eval.protocol import checkpointing

    real_left = protocol.epochs_left

    art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=2))
    cfg = EvalConfig(methods=("baseline",), models=("convnet-w32",), seeds=2, epochs=20)
    want = evaluate(art, toy, cfg, Runtime())
    real_save, calls = loop._save, []

    def counted(directory, epoch, *args):
        real_save(directory, epoch, *args)
        calls.append((directory.name[-5:], epoch))
        if calls == KILL:
            raise KeyboardInterrupt

    # saves every 20 // STUDENT_SAVES = 2 epochs: seed 0's 11 (epochs 0, 2, …, 20), seed 1's first 7 (0 … 12)
    KILL = [("seed0", e) for e in range(0, 21, 2)] + [("seed1", e) for e in range(0, 13, 2)]
    monkeypatch.setattr(loop, "_save", counted)
    with pytest.raises(KeyboardInterrupt), checkpointing(tmp_path / "students"):
        evaluate(art, toy, cfg, Runtime())
    students = sorted(p.name for p in (tmp_path / "students").iterdir())
    assert len(students) == 2 and students[0].endswith("seed0") and students[1].endswith("seed1")
    calls.clear()
    left = []
    monkeypatch.setattr(protocol, "epochs_left", lambda *a: left.append(real_left(*a)) or left[-1])
    monkeypatch.delenv("LADD_NO_PROGRESS")  # the time estimate counts the epochs left
    with checkpointing(tmp_path / "students"):
        got = evaluate(art, toy, cfg, Runtime())
    assert left == [[0, 8]]
    assert calls == [("seed1", e) for e in range(14, 21, 2)]  # seed 0 reloaded, seed 1 resumed at epoch 12
    assert [r["accs"] for r in got] == [r["accs"] for r in want] and got[0]["class_acc_mean"] == want[0]["class_acc_mean"]
    assert not (tmp_path / "students").exists()


def test_methods_are_checked_against_what_a_built_in_label_stage_makes_and_a_plugins_is_left_to_its_artifact():
    from ladd.eval.protocol import check_label_stage

    check_label_stage("ladd", ("baseline", "ladd", "global-soft"), "random")
    with pytest.raises(LaddError, match="--methods ladd trains on dense labels, which --labels soft does not make"):
        check_label_stage("soft", ("baseline", "ladd"), "rded")
    check_label_stage("my-plugin-labels", ("ladd",), "random")  # what a plugin makes is known once it has run
    # local views are cut by LADD's geometry or by squeezed images' tile grid: other images with soft labels have neither
    check_label_stage("soft", ("local-hard", "soft"), "rded")
    check_label_stage("soft", ("local-hard",), "my-plugin-images")
    with pytest.raises(LaddError, match="--methods local-hard trains on the sub-sampling geometry .* nor --images dm makes"):
        check_label_stage("soft", ("soft", "local-hard"), "dm")


def test_every_built_in_image_method_says_whether_its_images_carry_a_tile_grid():
    from ladd.eval.protocol import TILED_IMAGES
    from ladd.images import IMAGE_METHODS

    builtins = {n for n in IMAGE_METHODS.names() if IMAGE_METHODS.get(n).__module__.startswith("ladd.images.")}
    assert builtins and builtins <= set(TILED_IMAGES), builtins - set(TILED_IMAGES)


def test_students_go_longest_first_to_the_least_loaded_rank():
    from ladd.eval.protocol import assign

    assert assign([1.0] * 5, 2) == [0, 1, 0, 1, 0] and assign([3.0] * 4, 3) == [0, 1, 2, 0]  # equal: round-robin
    # 5 → r0, 4 → r1, then the 1s to the lighter rank each time, the finished student (0) last: 6 s | 5 s
    assert assign([5.0, 1.0, 0.0, 1.0, 4.0], 2) == [0, 1, 1, 0, 1]
    # the paper cell's resume: two long students half done beside fresh ones and cheap baseline++ students
    seconds = [1.3, 3.0, 3.5, 3.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    owners = assign(seconds, 2)
    loads = [sum(s for s, o in zip(seconds, owners) if o == r) for r in (0, 1)]
    assert max(loads) < 7.25 < max(sum(seconds[r::2]) for r in (0, 1))  # round-robin leaves 7.7 s on one rank


def test_the_time_estimate_takes_the_busiest_rank():
    """Students assigned to ranks end when the busiest rank's share ends; under DDP (or one
    process) every student's time is split evenly over the ranks."""
    from ladd.eval.protocol import busiest

    seconds = [5.0, 1.0, 0.0, 1.0, 4.0]
    assert busiest(seconds, {"layout": "assignment", "ranks": 2}) == 6.0  # 5, 1 | 4, 1, 0
    assert busiest(seconds, {"layout": "assignment", "ranks": 3}) == 5.0  # 5 | 4 | 1, 1, 0
    assert busiest(seconds, {"layout": "ddp", "ranks": 2}) == 5.5
    assert busiest(seconds, {"layout": "one process", "ranks": 1}) == 11.0


def test_students_on_bfloat16_labels_are_checkpointed_and_their_folders_named_by_the_bits(toy, tmp_path):
    """The folder key hashed each tensor through numpy, which has no bfloat16: an evaluation of an
    artifact with bf16 soft labels (the schema accepts them) died before training; other dtypes
    hash the bytes numpy gives, so their folder names did not change."""
    from ladd.eval.protocol import Plan, _raw_bytes, checkpointing, student_keys, train_data
    from ladd.train.terms import method_terms

    art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=2))
    soft = torch.softmax(torch.randn(len(art.images), 3, generator=torch.Generator().manual_seed(0)), -1)
    for t in (art.images, soft, soft.half()):
        assert _raw_bytes(t) == t.contiguous().numpy().tobytes()
    keys = []
    for labels in (soft.bfloat16(), soft):
        data = train_data(art.with_labels(labels, None, {"method": "soft"}, {}), toy)
        plan = Plan(data, method_terms("soft"), Recipe(epochs=1), "convnet-w32", 1, "soft")
        with checkpointing(tmp_path / "students"):
            keys += student_keys([plan], Runtime())
    assert None not in keys and keys[0] != keys[1]


def test_a_student_folder_is_named_by_the_speed_settings_that_decide_its_weights(toy, tmp_path):
    """Micro-batches (BatchNorm statistics, summation order) and precision give other weights, so
    another folder; how often the loss is checked for NaN does not, so a resume finds the student."""
    from ladd.core.runtime import Speed
    from ladd.eval.protocol import Plan, checkpointing, student_keys, train_data
    from ladd.train.terms import method_terms

    art = pipeline.distill(toy, pipeline.SourceConfig(dataset="toy"), pipeline.ImagesConfig(ipc=2))
    plan = Plan(train_data(art, toy), method_terms("baseline"), Recipe(epochs=1), "convnet-w32", 1, "baseline")
    speeds = {"plain": {}, "check_every": {"check_every": 5}, "micro_batch": {"micro_batch": 4}, "bf16": {"precision": "bf16"}}
    with checkpointing(tmp_path / "students"):
        key = {name: student_keys([plan], Runtime(speed=Speed(**given)))[0] for name, given in speeds.items()}
    assert key["plain"] == key["check_every"] and len({key["plain"], key["micro_batch"], key["bf16"]}) == 3


@pytest.mark.parametrize(
    "given,message",
    [
        ({"methods": ("baseline", "global-hard")}, "--methods baseline and global-hard train the same terms (global-hard): give one"),
        ({"methods": ("ladd", "local-dense+global-hard")}, "train the same terms (global-hard+local-dense)"),
        ({"models": ("convnet", "ConvNet")}, "--model convnet,ConvNet names a model twice"),
        ({"select_lr": (0.01, 0.01)}, "--select-lr 0.01,0.01 names a learning rate twice"),
    ],
)
def test_the_same_students_twice_are_refused(given, message):
    """Two names for the same students trained into one checkpoint folder at once (under torchrun's
    assignment, on two ranks), and would say nothing a single one does not."""
    with pytest.raises(LaddError, match=re.escape(message)):
        EvalConfig(**given)
