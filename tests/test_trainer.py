import shutil

import pytest
import torch
from torch import nn

import ladd.train.loop as loop
from ladd.core.errors import Diverged, LaddError
from ladd.core.runtime import Runtime, Speed
from ladd.experts import build_for
from ladd.train.loop import Recipe, TrainData, accuracy, train
from ladd.train.terms import method_terms

RECIPE = Recipe(epochs=4, lr=0.05, batch_size=8, dsa="color_crop_cutout_scale_rotate")


def _data(toy):
    return TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std)


def _crash_after_epoch(monkeypatch, crash: int = 2) -> list[int]:
    """Make the trainer's `_save` raise KeyboardInterrupt once epoch `crash` is written (a kill
    between epochs; `monkeypatch.undo()` ends it); returns the epochs saved."""
    real_save, saved = loop._save, []

    def save(directory, epoch, *args):
        real_save(directory, epoch, *args)
        saved.append(epoch)
        if epoch == crash:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save", save)
    return saved


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_learns_the_toy_task_and_counts_samples(toy):
    model = build_for(toy, "convnet-w32", 0)
    log = train(model, _data(toy), method_terms("baseline"), Recipe(epochs=15, lr=0.05, batch_size=6), seed=0, runtime=Runtime())
    assert log.samples == {"global-hard": 15 * 18}
    assert accuracy(model, toy.test.images, toy.test.labels, toy.mean, toy.std) > 0.9


def test_same_seed_same_weights(toy):
    runs = []
    for _ in range(2):
        model = build_for(toy, "convnet-w32", 0)
        train(model, _data(toy), method_terms("baseline"), RECIPE, seed=1, runtime=Runtime())
        runs.append(_weights(model))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k])


@pytest.mark.parametrize("ema", [None, 0.6], ids=["plain", "ema"])
def test_resume_equals_uninterrupted(toy, tmp_path, monkeypatch, ema):
    recipe = RECIPE.model_copy(update={"ema": ema})  # the EMA's average is in the state, its decay follows the epoch
    full = build_for(toy, "convnet-w32", 0)
    train(full, _data(toy), method_terms("baseline"), recipe, seed=2, runtime=Runtime(), checkpoint_dir=tmp_path / "a")

    _crash_after_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(
            build_for(toy, "convnet-w32", 0),
            _data(toy),
            method_terms("baseline"),
            recipe,
            seed=2,
            runtime=Runtime(),
            checkpoint_dir=tmp_path / "b",
        )
    monkeypatch.undo()
    resumed = build_for(toy, "convnet-w32", 5)  # different init: it must come from the checkpoint
    log = train(resumed, _data(toy), method_terms("baseline"), recipe, seed=2, runtime=Runtime(), checkpoint_dir=tmp_path / "b")
    assert len(log.epoch_loss) == 4
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*")) == [f"epoch_00{i}.safetensors" for i in range(5)]


def test_crash_between_weights_and_state_resumes_consistently(toy, tmp_path, monkeypatch):
    full = build_for(toy, "convnet-w32", 0)
    train(full, _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime())
    import ladd.core.checkpoint as ckpt

    real = ckpt.save_tensors

    def crash_on_state_of_epoch_2(path, tensors, metadata=None):
        if path.name == loop.STATE and metadata and '"epoch": 2' in metadata["ladd"]:
            raise KeyboardInterrupt  # epoch_002 weights are written, its state is not
        return real(path, tensors, metadata)

    monkeypatch.setattr(ckpt, "save_tensors", crash_on_state_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(
            build_for(toy, "convnet-w32", 0),
            _data(toy),
            method_terms("baseline"),
            RECIPE,
            seed=3,
            runtime=Runtime(),
            checkpoint_dir=tmp_path,
        )
    monkeypatch.setattr(ckpt, "save_tensors", real)
    resumed = build_for(toy, "convnet-w32", 0)
    train(resumed, _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime(), checkpoint_dir=tmp_path)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_ema_weights_are_glads_average_of_every_epochs_weights(toy):
    """GLaD's EMA: updated after every epoch k with decay min(1 − 1/k, β), so it starts from the
    weights after epoch 1 (the initial ones never count): parameters and BN running statistics
    averaged, num_batches_tracked copied; the model ends with the average."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 64, 3))
    states, seen = [], []  # the training weights after each epoch, and the weights after_epoch is shown

    beta = 0.6  # epoch 2 averages (decay 1/2), epoch 3 is capped (min(2/3, β))
    train(
        model,
        _data(toy),
        {"ce": lambda network, batch: (nn.functional.cross_entropy(network(batch.x), batch.hard), len(batch.x))},
        Recipe(epochs=3, lr=0.1, batch_size=6, ema=beta),
        seed=0,
        runtime=Runtime(),
        after_epoch=lambda epoch, m, log: (states.append(_weights(model)), seen.append(_weights(m))),
    )
    assert len(states) == 3
    average = {k: v.double() for k, v in states[0].items()}
    for k, state in enumerate(states[1:], start=2):
        decay = min(1 - 1 / k, beta)
        average = {n: decay * average[n] + (1 - decay) * v if v.is_floating_point() else v for n, v in state.items()}
        for n, v in seen[k - 1].items():  # a curve point tests the average, as the final row does
            torch.testing.assert_close(v.double(), average[n].double(), rtol=0, atol=1e-6, msg=n)
    assert int(model.state_dict()["1.num_batches_tracked"]) == 9
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v.double(), average[k].double(), rtol=0, atol=1e-6, msg=k)
        if v.is_floating_point():
            assert not torch.allclose(v, states[-1][k]), k  # not the last weights


def test_lr_schedule_decays_once_at_half():
    r = Recipe(epochs=10, lr=0.1)
    assert [r.lr_at(e) for e in (0, 4, 5, 9)] == [0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]
    assert Recipe(epochs=10, lr=0.1, milestones=()).lr_at(9) == 0.1
    lic = Recipe(epochs=12, lr=1.0, milestones=(2 / 3, 5 / 6), gamma=0.2)  # LIC's MultiStepLR
    assert [lic.lr_at(e) for e in (7, 8, 9, 10, 11)] == pytest.approx([1.0, 0.2, 0.2, 0.04, 0.04])
    with pytest.raises(ValueError, match=r"milestones \[0.8, 0.5\] must be increasing fractions"):
        Recipe(milestones=(0.8, 0.5))
    assert Recipe(epochs=1, lr=0.1).lr_at(0) == 0.1  # a 1-epoch run is not decayed from the start


def test_importing_ladd_keeps_large_blocks_in_the_heap():
    """ladd raises glibc's mmap threshold on import, so a 64 MB tensor (above glibc's largest default
    threshold, 32 MB) comes from the heap, where a freed block is reused, not from its own mapping."""
    from pathlib import Path

    from ladd.core.allocator import keep_large_blocks

    assert keep_large_blocks()
    t = torch.empty(64 * 2**20, dtype=torch.uint8)
    heap = [line.split()[0].split("-") for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith("[heap]")]
    assert any(int(lo, 16) <= t.data_ptr() < int(hi, 16) for lo, hi in heap)


# --- speed settings (ladd.core.runtime.Speed): the same training, computed faster -------------
SPEEDY = Recipe(epochs=2, lr=0.05, batch_size=8, dsa="color_crop_cutout_scale_rotate")


def _trained(toy, speed=None, recipe=SPEEDY, method="baseline", **kw):
    model = build_for(toy, "convnet-w32", 0)
    log = train(model, _data(toy), method_terms(method), recipe, seed=4, runtime=Runtime(speed=speed or Speed()), **kw)
    return model, log


class _Recorded:
    """A loss term that records each step's loss on the host (the test may sync; the trainer must not)."""

    def __init__(self, term, poison_at: int | None = None):
        self.term, self.poison_at, self.losses = term, poison_at, []

    def __call__(self, model, batch):
        loss, forwarded = self.term(model, batch)
        if len(self.losses) == self.poison_at:
            loss = loss * float("nan")
        self.losses.append(loss.item())
        return loss, forwarded


def test_epoch_loss_is_the_host_sum_of_step_losses_without_a_sync_per_step(toy):
    """The loss is summed on the device (float64) and read once per epoch: the logged mean is
    exactly what summing each step's `loss.item()` on the host gave; checking every step changes nothing."""
    recorded = _Recorded(method_terms("baseline")["global-hard"])
    model = build_for(toy, "convnet-w32", 0)
    log = train(model, _data(toy), {"global-hard": recorded}, SPEEDY, seed=4, runtime=Runtime())
    steps = len(recorded.losses) // SPEEDY.epochs  # 18 images, batch 8: 3 steps
    for epoch, logged in enumerate(log.epoch_loss):
        total = 0.0
        for value in recorded.losses[epoch * steps : (epoch + 1) * steps]:
            total = total + value
        assert logged == total / steps
    checked, checked_log = _trained(toy, Speed(check_every=1))
    assert checked_log.epoch_loss == log.epoch_loss
    for k, v in model.state_dict().items():
        assert torch.equal(v, checked.state_dict()[k]), k


@pytest.mark.parametrize("check_every", [0, 2])
def test_a_loss_turning_nan_mid_epoch_still_raises_diverged(toy, check_every):
    """Step 4 (the second of epoch 1) turns NaN: Diverged names epoch 1, whether the check runs at
    the end of the epoch or every 2 steps, so lr selection still scores the candidate as failed."""
    nan = _Recorded(method_terms("baseline")["global-hard"], poison_at=4)
    with pytest.raises(Diverged, match=r"loss became nan at epoch 1 .*lower the lr"):
        train(
            build_for(toy, "convnet-w32", 0),
            _data(toy),
            {"global-hard": nan},
            SPEEDY,
            seed=4,
            runtime=Runtime(speed=Speed(check_every=check_every)),
        )
    assert len(nan.losses) == (6 if check_every == 0 else 5)  # epoch 1 runs out, or stops at its check


def test_divergence_is_caught_before_a_nan_checkpoint_is_written(toy, tmp_path):
    nan = _Recorded(method_terms("baseline")["global-hard"], poison_at=3)  # the first step of epoch 1
    with pytest.raises(Diverged):
        train(
            build_for(toy, "convnet-w32", 0),
            _data(toy),
            {"global-hard": nan},
            SPEEDY,
            seed=4,
            runtime=Runtime(),
            checkpoint_dir=tmp_path,
            saves_per_epoch=2,
        )
    assert sorted(p.name for p in tmp_path.glob("epoch_*")) == [
        "epoch_000.500.safetensors",
        "epoch_000.safetensors",
        "epoch_001.safetensors",
    ]
    assert len(nan.losses) == 5  # stopped at epoch 1's half-epoch save (step 2), not at its end


def test_a_too_large_lr_diverges(toy):
    with pytest.raises(Diverged):
        _trained(toy, recipe=Recipe(epochs=3, lr=1e12, batch_size=6))


def _close(a: nn.Module, b: nn.Module, rtol: float, atol: float) -> None:
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=rtol, atol=atol, msg=k)
        assert b.state_dict()[k].is_contiguous(), k  # channels-last training gives the weights back contiguous


@pytest.mark.parametrize(
    "speed, rtol, atol, loss_rtol",
    [
        (Speed(channels_last=True), 1e-4, 1e-5, 1e-5),
        (Speed(precision="bf16"), 0.1, 0.02, 0.02),
        (Speed(precision="bf16", channels_last=True), 0.1, 0.02, 0.02),
    ],
    ids=["channels-last", "bf16", "bf16-channels-last"],
)
def test_faster_paths_train_the_same_model(toy, speed, rtol, atol, loss_rtol):
    """The LADD student (global + local dense terms) through each speed path lands where the plain
    fp32 path does: to float rounding, or to bf16's 8-bit mantissa."""
    dense = torch.softmax(torch.randn(18, 25, 3, generator=torch.Generator().manual_seed(0)), -1)
    data = TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std, dense=dense, geometry=(5, 0.625))
    runs = []
    for s in (Speed(), speed):
        model = build_for(toy, "convnet-w32", 0)
        log = train(model, data, method_terms("ladd", 3), SPEEDY, seed=4, runtime=Runtime(speed=s))
        runs.append((model, log))
    (plain, plain_log), (fast, fast_log) = runs
    _close(plain, fast, rtol, atol)
    torch.testing.assert_close(fast_log.epoch_loss, plain_log.epoch_loss, rtol=loss_rtol, atol=0)


def test_compiled_network_trains_the_same_model(toy, monkeypatch):
    """--compile runs the network through torch.compile (dynamo + AOT autograd; here the
    aot_eager backend, which skips inductor's code generation to keep the test fast) and shares
    the model's parameters: same weights as the eager path, to float rounding."""
    monkeypatch.setattr(loop.flops, "compiled", lambda fn: torch.compile(fn, backend="aot_eager"))
    plain, plain_log = _trained(toy)
    compiled, compiled_log = _trained(toy, Speed(compile=True, precision="bf16"))
    bf16, bf16_log = _trained(toy, Speed(precision="bf16"))
    _close(bf16, compiled, 1e-4, 1e-5)  # compiling changes nothing, at bf16 too
    _close(plain, compiled, 0.1, 0.02)
    torch.testing.assert_close(compiled_log.epoch_loss, bf16_log.epoch_loss, rtol=1e-5, atol=0)


def test_deterministic_runs_give_identical_weights_and_restore_the_global_switches(toy):
    speed = Speed(deterministic=True)
    first, log1 = _trained(toy, speed)
    second, log2 = _trained(toy, speed)
    assert log1.epoch_loss == log2.epoch_loss
    for k, v in first.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k
    assert not torch.are_deterministic_algorithms_enabled()  # switched on for the run only


def test_speed_settings_that_cannot_work_are_refused():
    with pytest.raises(LaddError, match="fp16 needs a CUDA device"):
        Runtime(speed=Speed(precision="fp16"))
    with pytest.raises(LaddError, match="--deterministic does not cover torch.compile"):
        Runtime.from_name("cpu", Speed(compile=True, deterministic=True))


def test_bf16_dense_labels_are_close_to_fp32(toy):
    from ladd.labels.dense import dense_labels
    from ladd.labels.soft import Teacher

    teacher = Teacher([build_for(toy, "convnet-w32", 0).eval()])
    plain = dense_labels(teacher, toy.train.images, toy.mean, toy.std, 3, 0.75)
    fast = dense_labels(teacher, toy.train.images, toy.mean, toy.std, 3, 0.75, runtime=Runtime(speed=Speed(precision="bf16")))
    for p, f in zip(plain, fast):
        assert f.dtype == torch.float32
        torch.testing.assert_close(f, p, rtol=0, atol=0.02)


def test_training_commands_take_the_speed_options(monkeypatch, tmp_path):
    """Every command with --device gets --precision/--compile/--channels-last/--deterministic/
    --micro-batch (one shared set) and hands them to the stage as the runtime's Speed."""
    from typer.testing import CliRunner

    import ladd.cli as cli
    import ladd.cli.stages as stages
    import ladd.experiments.swap as swap

    seen = []
    monkeypatch.setattr(stages, "ensure_buffer", lambda data, model, n, epochs, runtime, out: seen.append(runtime) or out)
    monkeypatch.setattr(swap, "run", lambda data, setup, ipc, epoch, runtime, out: seen.append(runtime))
    runner = CliRunner()
    res = runner.invoke(
        cli.app, ["experts", "--dataset", "digits", "--device", "cpu", "--precision", "bf16", "--channels-last", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        cli.app,
        ["experiment", "swap", "--dataset", "digits", "--device", "cpu", "--deterministic", "--micro-batch", "16", "--out", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    assert [r.speed for r in seen] == [Speed(precision="bf16", channels_last=True), Speed(deterministic=True, micro_batch=16)]
    res = runner.invoke(cli.app, ["eval", str(tmp_path / "none"), "--micro-batch", "0"])
    assert res.exit_code == 2 and "--micro-batch" in res.output
    res = runner.invoke(cli.app, ["eval", str(tmp_path / "none"), "--device", "cpu", "--precision", "fp16"])
    assert isinstance(res.exception, LaddError) and "fp16 needs a CUDA device" in str(res.exception)  # before the artifact is read


def test_prediction_batches_hold_a_fixed_number_of_pixels():
    from ladd.train.loop import predict

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(len(x))
            return x.mean((1, 2, 3))[:, None] + self.w

    for side, batch in ((8, 512), (32, 512), (64, 128), (128, 32)):
        seen.clear()
        images = torch.zeros(600, 1, side, side, dtype=torch.uint8)
        out = predict(Probe(), images, (0.5,), (0.5,))
        assert out.shape == (600, 1) and max(seen) == batch and sum(seen) == 600


def test_rolling_checkpoints_every_k_epochs_resume_an_ema_student_exactly(toy, tmp_path, monkeypatch):
    """Evaluation students' checkpoints: every k-th epoch, only the newest weights kept, the EMA's
    averages saved with the state, so an interrupted EMA student resumes to the same weights."""
    recipe = RECIPE.model_copy(update={"ema": 0.9})
    kw = dict(seed=3, runtime=Runtime(), save_every=2, rolling=True)
    full = build_for(toy, "convnet-w32", 0)
    train(full, _data(toy), method_terms("baseline"), recipe, checkpoint_dir=tmp_path / "a", **kw)
    assert sorted(p.name for p in (tmp_path / "a").glob("epoch_*")) == ["epoch_004.safetensors"]

    saved = _crash_after_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(build_for(toy, "convnet-w32", 0), _data(toy), method_terms("baseline"), recipe, checkpoint_dir=tmp_path / "b", **kw)
    assert saved == [0, 2] and sorted(p.name for p in (tmp_path / "b").glob("epoch_*")) == ["epoch_002.safetensors"]
    monkeypatch.undo()
    resumed = build_for(toy, "convnet-w32", 5)
    train(resumed, _data(toy), method_terms("baseline"), recipe, checkpoint_dir=tmp_path / "b", **kw)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    plain = build_for(toy, "convnet-w32", 0)  # the EMA state matters: without it the resumed weights would differ
    train(plain, _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime())
    assert not all(torch.equal(v, plain.state_dict()[k]) for k, v in full.state_dict().items())

    # a long student also saves once ROLLING_EVERY_S has passed since its last save (every epoch
    # here): killed after a save only the time asked for (epoch 3), it resumes from there exactly
    monkeypatch.setattr(loop, "ROLLING_EVERY_S", 0.0)
    saved = _crash_after_epoch(monkeypatch, crash=3)
    with pytest.raises(KeyboardInterrupt):
        train(build_for(toy, "convnet-w32", 0), _data(toy), method_terms("baseline"), recipe, checkpoint_dir=tmp_path / "c", **kw)
    assert saved == [0, 1, 2, 3] and loop.resumes_at(tmp_path / "c") == 3
    timed = build_for(toy, "convnet-w32", 5)
    train(timed, _data(toy), method_terms("baseline"), recipe, checkpoint_dir=tmp_path / "c", **kw)
    assert saved == [0, 1, 2, 3, 4] and all(torch.equal(v, timed.state_dict()[k]) for k, v in full.state_dict().items())
    # weights written by a save cut short before its state: a resume starts where the state says
    shutil.copy(tmp_path / "c" / "epoch_004.safetensors", tmp_path / "c" / "epoch_009.safetensors")
    assert loop.resumes_at(tmp_path / "c") == 4 and loop.resumes_at(tmp_path / "none") == 0


def test_learned_term_weights_train_with_the_network_and_resume_exactly(toy, tmp_path, monkeypatch):
    """`term_weights="learned"`: the terms' log-variances move with the network, their final weights
    are logged, and an interrupted run resumes them from the state to the uninterrupted result."""
    g = torch.Generator().manual_seed(0)
    dense = torch.softmax(torch.randn(len(toy.train), 4, toy.num_classes, generator=g), -1)
    data = TrainData(toy.train.images, toy.train.labels, toy.mean, toy.std, dense=dense, geometry=(2, 0.5))
    terms, learned = method_terms("ladd", crops_per_step=2), RECIPE.model_copy(update={"term_weights": "learned"})
    full = build_for(toy, "convnet-w32", 0)
    log = train(full, data, terms, learned, seed=4, runtime=Runtime(), checkpoint_dir=tmp_path / "a")
    assert list(log.term_weights) == ["global-hard", "local-dense"]
    assert all(w > 0 and abs(w - 1) > 1e-3 for w in log.term_weights.values())  # they moved from Eq. 5's 1
    fixed = build_for(toy, "convnet-w32", 0)
    assert train(fixed, data, terms, RECIPE, seed=4, runtime=Runtime()).term_weights is None
    assert not all(torch.equal(v, fixed.state_dict()[k]) for k, v in full.state_dict().items())

    _crash_after_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(build_for(toy, "convnet-w32", 0), data, terms, learned, seed=4, runtime=Runtime(), checkpoint_dir=tmp_path / "b")
    monkeypatch.undo()
    resumed = build_for(toy, "convnet-w32", 5)
    again = train(resumed, data, terms, learned, seed=4, runtime=Runtime(), checkpoint_dir=tmp_path / "b")
    assert again.term_weights == log.term_weights
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    train(build_for(toy, "convnet-w32", 0), data, terms, RECIPE, seed=4, runtime=Runtime(), checkpoint_dir=tmp_path / "c")
    longer = learned.model_copy(update={"epochs": 5})
    with pytest.raises(LaddError, match="no learned term weights"):  # a fixed-weight state is not resumed as learned
        train(build_for(toy, "convnet-w32", 0), data, terms, longer, seed=4, runtime=Runtime(), checkpoint_dir=tmp_path / "c")


def test_a_resumed_run_keeps_fp16s_loss_scale(toy, tmp_path, monkeypatch):
    """fp16's loss scaler (CUDA; a CPU scaler stands in) grows and backs off over the run: its
    scale and growth count are saved with the state, so a resumed run scales as the uninterrupted
    one did (restarting from the initial scale would skip or grow steps differently)."""
    scalers = []

    def scaler(self):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=7))
        return scalers[-1]

    def run(**kw):
        train(build_for(toy, "convnet-w32", 0), _data(toy), method_terms("baseline"), RECIPE, seed=3, runtime=Runtime(), **kw)

    monkeypatch.setattr(Runtime, "scaler", scaler)
    run()
    _crash_after_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint_dir=tmp_path)
    run(checkpoint_dir=tmp_path)
    full, _, resumed = (s.state_dict() for s in scalers)
    assert full["scale"] > 16.0 and full["_growth_tracker"] > 0  # it grew, and is part-way to growing again
    assert resumed == full
