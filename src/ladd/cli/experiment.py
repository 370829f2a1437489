"""`ladd experiment NAME`: the soft-label paper's experiments, resumable, into --out."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from ladd.cli.options import (
    BpttBackprop,
    BpttIterations,
    BpttUnroll,
    DEFAULT_MODEL,
    DataDir,
    Dataset_,
    Device,
    Epochs,
    Ipc,
    Lr,
    QUICK_EPOCHS,
    Seed,
    Seeds,
    SelectLr,
    SoftLoss,
    checked,
    epoch_value,
    floats,
    ints,
    model_names,
    pool_names,
)
from ladd.cli.options import absolute, config_default, option_group, trains
from ladd.core import logs
from ladd.core.runtime import Speed
from ladd.core.limits import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_ENSEMBLE,
    MAX_QUANTILES,
    MAX_RHO,
    MAX_SAVES,
    MAX_STEPS,
    MAX_TEMPERATURE,
    MAX_LR,
    MIN_LR,
    MIN_TEMPERATURE,
)
from ladd.core.runtime import Runtime
from ladd.experts import ExpertConfig
from ladd.labels.bptt import BpttConfig
from ladd import pipeline
from ladd.pipeline import LabelConfig, SourceConfig


app = typer.Typer(
    help="Soft-label experiments (A Label is Worth a Thousand Images): JSON + markdown + PNG into --out, resumable.", no_args_is_help=True
)

ExpertModel = Annotated[
    str,
    typer.Option("--expert-model", parser=checked("--expert-model", model_names, "--expert-model"), help="Expert (teacher) architecture."),
]
ExpertEpochs = Annotated[
    int,
    typer.Option(
        "--expert-epochs", min=1, max=MAX_COUNT, help="Epochs the expert trains (SGD, no momentum/weight decay, DSA); a checkpoint each."
    ),
]
ExpertLr = Annotated[
    float,
    typer.Option(
        "--expert-lr",
        min=MIN_LR,
        max=MAX_LR,
        help="Expert learning rate (the reference uses a small one for fine-grained early checkpoints).",
    ),
]
ExpertSaves = Annotated[
    int, typer.Option("--expert-saves-per-epoch", min=1, max=MAX_SAVES, help="Also checkpoint the expert at 1/f fractions of each epoch.")
]
ExpertDecay = Annotated[
    bool,
    typer.Option(
        "--expert-decay/--expert-constant-lr",
        help="Expert lr ×0.1 after half its epochs (buffer.py --decay of MTT and the soft-label paper) instead of constant.",
    ),
]
ExpertEpoch = Annotated[
    Optional[str],
    typer.Option(
        "--expert-epoch",
        parser=checked("--expert-epoch", epoch_value),
        help=(
            "Checkpoint that labels: a number, 'auto' (selected per IPC on a validation split carved from the training set), default "
            "the last."
        ),
    ),
]
StudentModel = Annotated[str, typer.Option("--model", parser=checked("--model", model_names, "--model"), help="Student architecture.")]
ValPerClass = Annotated[
    int,
    typer.Option(
        "--val-per-class", min=1, max=MAX_COUNT, help="Training images per class held out as the validation split for epoch selection."
    ),
]
CandidateEpochs = Annotated[
    Optional[str],
    typer.Option(
        "--candidate-epochs",
        parser=checked("--candidate-epochs", floats, "--candidate-epochs", 0.0, MAX_COUNT),
        help="Comma-separated expert epochs that 'auto' selection tries (default: every saved one).",
    ),
]
IpcList = Annotated[str, typer.Option("--ipc", parser=checked("--ipc", ints, "--ipc"), help="Comma-separated images per class.")]
ExpOut = Annotated[Path, typer.Option("--out", help="Output folder; re-running with the same folder resumes.")]


def _setup(
    dataset,
    data_dir,
    expert_model,
    expert_epochs,
    expert_lr,
    expert_saves_per_epoch,
    expert_decay,
    model,
    epochs,
    lr,
    seeds,
    soft_loss,
    seed,
    val_per_class,
    candidate_epochs,
    select_lr,
):
    from ladd.experiments.common import Setup

    expert = ExpertConfig(
        model=expert_model, epochs=expert_epochs, lr=expert_lr, saves_per_epoch=expert_saves_per_epoch, decay=expert_decay
    )
    return Setup(
        source=SourceConfig(dataset=dataset, data_dir=absolute(data_dir)),
        teacher=LabelConfig(method="soft", labeler=expert),
        student_model=model,
        student_epochs=epochs,
        student_lr=lr,
        seeds=seeds,
        soft_loss=soft_loss,
        image_seed=seed,
        val_per_class=val_per_class,
        candidate_epochs=None if candidate_epochs is None else tuple(floats(candidate_epochs, "--candidate-epochs", 0.0, MAX_COUNT)),
        select_lr=tuple(floats(select_lr, "--select-lr", MIN_LR, MAX_LR)) if select_lr else (),
    )


def _shared_options(
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    expert_model: ExpertModel = DEFAULT_MODEL,
    expert_epochs: ExpertEpochs = config_default(ExpertConfig, "epochs"),
    expert_lr: ExpertLr = config_default(ExpertConfig, "lr"),
    expert_saves_per_epoch: ExpertSaves = config_default(ExpertConfig, "saves_per_epoch"),
    expert_decay: ExpertDecay = config_default(ExpertConfig, "decay"),
    model: StudentModel = DEFAULT_MODEL,
    epochs: Epochs = QUICK_EPOCHS,
    lr: Lr = 0.01,
    seeds: Seeds = 3,
    soft_loss: SoftLoss = "ce",
    seed: Seed = 0,
    val_per_class: ValPerClass = 50,
    candidate_epochs: CandidateEpochs = None,
    select_lr: SelectLr = None,
    out: ExpOut = Path("runs/experiments"),
    device: Device = "auto",
):
    """The options every experiment takes (this function only declares them)."""


def _experiment(name: str):
    """Register `ladd experiment NAME`: the body's own options (after data, setup, runtime, out)
    followed by the shared ones; the body receives the loaded dataset and the built Setup, and
    logs to OUT/ladd.log."""

    def wrap(body):
        own = list(inspect.signature(body, eval_str=True).parameters.values())[4:]

        def command(shared: dict, speed: Speed, **kw):
            runtime = Runtime.from_name(shared["device"], speed)
            setup = _setup(**{k: v for k, v in shared.items() if k not in ("out", "device")})
            data = pipeline.load_source(setup.source)
            with logs.to_file(shared["out"] / "ladd.log"):
                body(data, setup, runtime, shared["out"], **kw)

        groups = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in ("shared", "speed")]
        command.__signature__ = inspect.Signature([*own, *groups])
        command.__doc__ = body.__doc__
        app.command(name)(trains(option_group(_shared_options, "shared")(command)))
        return body

    return wrap


@_experiment("expert-epoch")
def _expert_epoch(data, setup, runtime, out, ipc: IpcList = "1,10"):
    """Which expert checkpoint makes the best soft labels for each IPC? (Fig. 2)

    Students are scored on a validation split carved from the training set (never the test
    split); plots expert accuracy, label entropy and student accuracy against the expert epoch."""
    from ladd.experiments import expert_epoch

    expert_epoch.run(data, setup, ints(ipc, "--ipc"), runtime, out)


@_experiment("soft-vs-hard")
def _soft_vs_hard(
    data,
    setup,
    runtime,
    out,
    ipc: IpcList = "1,10,50",
    expert_epoch: ExpertEpoch = "auto",
    ensemble: Annotated[
        int, typer.Option("--ensemble", min=1, max=MAX_ENSEMBLE, help="Also evaluate an ensemble of K experts' averaged logits (1 = no).")
    ] = 1,
):
    """Random real images with hard labels vs the expert's soft labels (and an ensemble's), across IPC."""
    from ladd.experiments import soft_vs_hard

    soft_vs_hard.run(data, setup, ints(ipc, "--ipc"), epoch_value(expert_epoch), ensemble, runtime, out)


@_experiment("epoch-temperature")
def _epoch_temperature(
    data,
    setup,
    runtime,
    out,
    ipc: IpcList = "1,10",
    temperatures: Annotated[
        str,
        typer.Option(
            "--temperatures",
            parser=checked("--temperatures", floats, "--temperatures", MIN_TEMPERATURE, MAX_TEMPERATURE),
            help="Comma-separated label temperatures T of softmax(z / T).",
        ),
    ] = "0.5,1,2,4",
):
    """Expert epoch × label temperature: student validation accuracy on the grid, best pair per IPC (Fig. 5)."""
    from ladd.experiments import epoch_temperature

    values = floats(temperatures, "--temperatures", MIN_TEMPERATURE, MAX_TEMPERATURE)
    epoch_temperature.run(data, setup, ints(ipc, "--ipc"), sorted(set(values)), runtime, out)


@_experiment("swap")
def _swap(data, setup, runtime, out, ipc: Ipc = 10, expert_epoch: ExpertEpoch = None):
    """Label swap test: swap each label's i-th largest probability with its smallest, i = 1..C (Fig. 4)."""
    from ladd.experiments import swap

    swap.run(data, setup, ipc, epoch_value(expert_epoch), runtime, out)


@_experiment("scaling-law")
def _scaling(
    data,
    setup,
    runtime,
    out,
    ipc: IpcList = "1,2,5,10,20",
    top_k: Annotated[
        str, typer.Option("--top-k", parser=checked("--top-k", ints, "--top-k"), help="Comma-separated k of the top-k soft labels.")
    ] = "1,2,3,5,10",
    expert_epoch: ExpertEpoch = None,
):
    """Data-knowledge scaling: IPC × top-k grid, fits acc = (a·IPC)^c − d, data-size reduction factor (Fig. 6)."""
    from ladd.experiments import scaling

    scaling.run(data, setup, ints(ipc, "--ipc"), ints(top_k, "--top-k"), epoch_value(expert_epoch), runtime, out)


@_experiment("removal")
def _removal(
    data,
    setup,
    runtime,
    out,
    ipc: Ipc = 10,
    target_class: Annotated[
        int, typer.Option("--target-class", min=0, max=MAX_COUNT, help="Index of the class whose images or label knowledge is removed.")
    ] = 0,
    expert_epoch: ExpertEpoch = None,
):
    """Remove a class's images vs remove its knowledge from the labels: zero-shot accuracy on that class (Fig. 7)."""
    from ladd.experiments import removal

    removal.run(data, setup, ipc, target_class, epoch_value(expert_epoch), runtime, out)


@_experiment("ce-selection")
def _ce_selection(
    data,
    setup,
    runtime,
    out,
    ipc: Ipc = 10,
    quantiles: Annotated[int, typer.Option("--quantiles", min=1, max=MAX_QUANTILES, help="CE quantiles per class (0 = easiest).")] = 5,
    expert_epoch: ExpertEpoch = None,
):
    """Students on the easiest … hardest expert-CE quantile of real images vs random images (Appendix B)."""
    from ladd.experiments import ce_selection

    ce_selection.run(data, setup, ipc, quantiles, epoch_value(expert_epoch), runtime, out)


@_experiment("lic-ablation")
def _lic_ablation(
    data,
    setup,
    runtime,
    out,
    ipc: IpcList = "1,10",
    ladd_labels: Annotated[
        bool, typer.Option("--ladd-labels/--no-ladd-labels", help="Also LADD's dense labels (5×5, R 62.5%) on the LIC images.")
    ] = True,
    iterations: Annotated[
        Optional[int],
        typer.Option(
            "--iterations",
            min=1,
            max=MAX_STEPS,
            help="LIC compensation iterations M and SRe²L recover iterations (default: each recipe's).",
        ),
    ] = None,
):
    """LIC's stages one by one (Table 7): squeezed random → + selection → + compensation → + region relabel; vs random and RDED.

    The observer is the expert (--expert-model/--expert-epochs/--expert-lr)."""
    from ladd.experiments import lic_ablation

    lic_ablation.run(data, setup, ints(ipc, "--ipc"), ladd_labels, runtime, out, iterations)


@_experiment("lpld-pruning")
def _lpld_pruning(
    data,
    setup,
    runtime,
    out,
    ipc: IpcList = "10,50",
    rho: Annotated[
        str,
        typer.Option(
            "--rho",
            parser=checked("--rho", floats, "--rho", 1.0, MAX_RHO),
            help="Comma-separated pruning factors: keep 1/ρ of the stored labels (LPLD: 10 … 100).",
        ),
    ] = "1,10,40",
    pools: Annotated[
        str,
        typer.Option(
            "--pools", parser=checked("--pools", pool_names), help="Comma-separated label pools: epoch and/or batch (LPLD's improved pool)."
        ),
    ] = "epoch,batch",
    relabel_epochs: Annotated[
        int,
        typer.Option(
            "--relabel-epochs", min=1, max=MAX_COUNT, help="Stored relabel epochs, also the students' epochs (ρ = 1 replays each once)."
        ),
    ] = 200,
    relabel_batch: Annotated[
        int, typer.Option("--relabel-batch", min=1, max=MAX_BATCH, help="Relabel batch (the unit of the batch pool) and student batch.")
    ] = 25,
    iterations: Annotated[
        Optional[int], typer.Option("--iterations", min=1, max=MAX_STEPS, help="Recover iterations (default: the recipes').")
    ] = None,
):
    """SRe²L vs LPLD end to end: squeeze, recover both sets, relabel (stored), diversity, and students replaying 1/ρ of the labels.

    The BN teacher is the dataset's lpld recipe teacher; --model/--seeds set the students, --expert-* do not apply."""
    from ladd.experiments import lpld_pruning

    lpld_pruning.run(
        data,
        setup,
        ints(ipc, "--ipc"),
        floats(rho, "--rho", 1.0, MAX_RHO),
        pool_names(pools),
        relabel_epochs,
        relabel_batch,
        iterations,
        runtime,
        out,
    )


@_experiment("bptt")
def _bptt(
    data,
    setup,
    runtime,
    out,
    ipc: Ipc = 10,
    bptt_iterations: BpttIterations = config_default(BpttConfig, "iterations"),
    bptt_unroll: BpttUnroll = config_default(BpttConfig, "unroll"),
    bptt_backprop: BpttBackprop = config_default(BpttConfig, "backprop"),
    expert_epoch: ExpertEpoch = None,
    ensemble: Annotated[
        int,
        typer.Option(
            "--ensemble",
            min=1,
            max=MAX_ENSEMBLE,
            help=(
                "Experts (seeds 0..K-1) whose averaged labels the learned ones are also compared with; seed K is the expert-pair baseline."
            ),
        ),
    ] = 3,
):
    """Labels learned by truncated BPTT vs each expert epoch's, one expert's and an ensemble's labels (JSD), and students (Fig. 8, 12).

    The expert-pair baseline (two experts' labels) shows how far apart labels of equal quality lie."""
    from ladd.experiments import bptt

    cfg = BpttConfig(model=setup.student_model, iterations=bptt_iterations, unroll=bptt_unroll, backprop=bptt_backprop)
    bptt.run(data, setup, ipc, cfg, epoch_value(expert_epoch), runtime, out, ensemble)
