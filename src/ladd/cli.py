"""`ladd` command line: options → typed configs → pipeline stages. No logic of its own."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import torch.distributed as td
import typer
from pydantic import ValidationError
from typer._click.exceptions import MissingParameter, NoArgsIsHelpError, UsageError  # typer >= 0.29 carries its own click

from ladd.artifact import MANIFEST, describe, load_artifact, save_artifact
from ladd.core import dist, track
from ladd.core.errors import LaddError
from ladd.core.io import write_json
from ladd.core.limits import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_ENSEMBLE,
    MAX_EXPERTS,
    MAX_GRID,
    MAX_GRID_IMAGES,
    MAX_INDEX,
    MAX_PIXELS,
    MAX_QUANTILES,
    MAX_RHO,
    MAX_SAVES,
    MAX_SEED,
    MAX_SEEDS,
    MAX_STEPS,
    MAX_TEMPERATURE,
    MAX_UNROLL,
    MAX_VIEWS,
    MAX_WORKERS,
    MAX_LR,
    MIN_LR,
    MIN_TEMPERATURE,
)
from ladd.core.progress import console, log
from ladd.core.runtime import Runtime, Speed
from ladd.eval.protocol import EvalConfig, default_methods, evaluate, methods_for, rounding_rows
from ladd.eval.protocols import DEFAULT_PRESET, PRESETS, load_protocol
from ladd.core.cache import entry
from ladd.experts import ExpertConfig, ensure_buffer
from ladd.images import IMAGE_METHODS, check_params
from ladd.images.recipes import load_recipe
from ladd.labels import LABEL_METHODS
from ladd.labels.bptt import BpttConfig
from ladd.labels.relabel import RelabelConfig
from ladd.labels.replay import BATCHES, KEEPS, METRICS, POOLS, Pruning
from ladd import pipeline
from ladd.pipeline import ImagesConfig, LabelConfig, SourceConfig
from ladd.report.results import eval_notes, robustness_note, write_results
from ladd.report.tables import rich_table

app = typer.Typer(
    name="ladd",
    help="Label-centric dataset distillation: distill images, add LADD dense labels, evaluate fairly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One default network for every command: the default preset's (`ladd eval`/`ladd run --preset`),
# so the stages run one by one make what `ladd run` makes. The experiments' students train for
# the default preset's protocol epochs.
QUICK = PRESETS[DEFAULT_PRESET]
DEFAULT_MODEL = QUICK.model
QUICK_EPOCHS = load_protocol(QUICK.protocol).epochs

# --- values: every numeric option is range-checked as it is read (typer's min/max, bounds from
# ladd.core.limits; NaN and ±inf fall outside every range), and options holding lists or special
# values are parsed by the functions below, also as they are read (`parser=_checked(...)`), so a
# bad value stops the command before any data is loaded or anything written. `main` prints it on
# one line naming the option.


def _checked(option: str, parse, *args):
    """A typer `parser=` for `option`: runs `parse(text, *args)` as the option is read (its error
    names the option) and hands the text on; the command parses it again where it uses it."""

    def check(text):
        if isinstance(text, str):
            try:
                parse(text, *args)
            except LaddError as e:
                raise (e if option in str(e) else LaddError(f"{option}: {e}")) from None
        return text

    return check


def _split(text: str, option: str = "--model") -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise LaddError(f"{option} is empty: give at least one name")
    return names


def _whole_numbers(text: str, option: str, example: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(v) for v in _split(text, option)]
    except ValueError:
        raise LaddError(f"{option} {text!r} must be comma-separated whole numbers, e.g. {example}") from None
    bad = next((v for v in values if not lo <= v <= hi), None)
    if bad is not None:
        raise LaddError(f"{option} {text!r}: {bad} is out of range: give whole numbers from {lo} to {hi}, e.g. {example}")
    return values


def _ints(text: str, option: str) -> list[int]:
    """Comma-separated counts (images per class, k of top-k)."""
    return _whole_numbers(text, option, "1,10,50", 1, MAX_COUNT)


def _ints_from_zero(text: str, option: str, size: int) -> list[int]:
    values = _whole_numbers(text, option, "0,1,2", 0, MAX_INDEX)
    bad = [v for v in values if not 0 <= v < size]
    if bad:
        raise LaddError(f"{option}: index {bad[0]} is outside the test split (0..{size - 1})")
    return values


def _floats(text: str, option: str, lo: float, hi: float) -> list[float]:
    try:
        values = [float(v) for v in _split(text, option)]
    except ValueError:
        raise LaddError(f"{option} {text!r} must be comma-separated numbers from {lo:g} to {hi:g}") from None
    bad = next((v for v in values if not lo <= v <= hi), None)  # NaN fails both comparisons
    if bad is not None:
        raise LaddError(f"{option} {text!r}: {bad:g} is out of range: give numbers from {lo:g} to {hi:g}")
    return values


def _epoch(text: str | None, option: str = "--expert-epoch") -> float | str | None:
    if text in (None, "auto"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise LaddError(f"{option} {text!r} is not a number or 'auto'") from None
    if not 0 <= value <= MAX_COUNT:
        raise LaddError(f"{option} {text!r} is out of range: give a saved epoch (0 = the initialization, fractions if saved) or 'auto'")
    return value


def _crops(text: str) -> int | str:
    if text in ("all", "auto"):
        return text
    if not text.isdigit() or not 1 <= int(text) <= MAX_VIEWS:
        raise LaddError(f"--crops-per-step {text!r} is not a number from 1 to {MAX_VIEWS}, 'all' or 'auto'")
    return int(text)


def _param(pair: str) -> tuple[str, object]:
    """One --param KEY=VALUE; VALUE is read as TOML (true, 50, 0.01, "embed"), else as a string."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise LaddError(f"--param {pair!r} is not KEY=VALUE, e.g. --param compensate=false")
    try:
        return key.strip(), tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value.strip()


def _params(pairs: list[str]) -> dict:
    return dict(_param(pair) for pair in pairs)


def _equal_cost(text: str | None) -> tuple[str, ...]:
    from ladd.eval.protocol import EQUAL_COST

    if text is None:
        return ()
    kinds = EQUAL_COST if text == "all" else _split(text, "--equal-cost")
    bad = [k for k in kinds if k not in EQUAL_COST]
    if bad:
        raise LaddError(f"--equal-cost {bad[0]!r} is not one of {', '.join(EQUAL_COST)} or all")
    return tuple(kinds)


def _one_of(text: str, option: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise LaddError(f"{option} {text!r} is not one of {', '.join(choices)}")
    return text


def _models(text: str, option: str) -> tuple[str, ...]:
    """Comma-separated model names, each known to the model registry."""
    from ladd.models import MODELS

    names = _split(text, option)
    for name in names:
        try:
            MODELS.canonical(name)
        except LaddError as e:
            raise LaddError(f"{option}: {e}") from None
    return names


def _label_method(text: str) -> str:
    return LABEL_METHODS.canonical(text)


def _pools(text: str) -> tuple[str, ...]:
    chosen = _split(text, "--pools")
    if set(chosen) - {"epoch", "batch"}:
        raise LaddError(f"--pools {text!r}: choose epoch and/or batch, e.g. epoch,batch")
    return chosen


# --- options shared by the subcommands: one name, one help text each -------------------------
Dataset_ = Annotated[
    str,
    typer.Option(
        "--dataset",
        help="Source dataset: mnist5k (5,000 MNIST images, shipped), digits (8×8 digits, shipped), cifar10, cifar100, imagefolder, mnist-idx, imagenet, imagenette, imagewoof, imagefruit, imagemeow, imagesquawk, imageyellow.",
    ),
]
DataDir = Annotated[
    Optional[str],
    typer.Option("--data-dir", help="Folder of an on-disk dataset (cifar10/100, imagefolder, mnist-idx, imagenet and its subsets)."),
]
Resolution = Annotated[
    Optional[int],
    typer.Option(
        "--resolution",
        min=8,
        max=MAX_PIXELS,
        help="imagefolder, imagenet and its subsets: centre-crop and resize to this many pixels (default 128; imagenet 64).",
    ),
]
SkipBad = Annotated[
    bool,
    typer.Option(
        "--skip-unreadable", help="imagefolder, imagenet and its subsets: skip unreadable image files with a warning instead of stopping."
    ),
]
Ipc = Annotated[int, typer.Option("--ipc", min=1, max=MAX_COUNT, help="Images per class.")]
Images = Annotated[
    str,
    typer.Option(
        "--images", help="Image method: random, herding, dm, dc, dsa, mtt, sre2l, lpld, lic, rded, or import (a set made by another tool)."
    ),
]
Recipe = Annotated[
    Optional[str],
    typer.Option(
        "--recipe",
        help="Hyperparameters of a learned image method: a shipped recipe name (e.g. dm-paper, dm-mnist5k) or a .toml file. Default: the method's recipe for the dataset, else its paper recipe.",
    ),
]
FloatImages = Annotated[
    bool,
    typer.Option(
        "--float-images",
        help="Learned image methods: store float32 pixels instead of uint8 (4× the image bytes; compare both with `ladd eval`).",
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue a learned image method from its last checkpoint (same result as an uninterrupted run); with none saved yet, start afresh and say so.",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the artifact already at --out (without it, or --resume continuing the command that wrote it, an existing artifact is never replaced).",
    ),
]
Buffer = Annotated[
    Optional[str],
    typer.Option("--buffer", help="For --images mtt: the expert folder written by `ladd experts --out` (default: the expert cache)."),
]
Param = Annotated[
    Optional[list[str]],
    typer.Option(
        "--param",
        parser=_checked("--param", _param),
        help="Override one recipe parameter, KEY=VALUE (repeatable; TOML values), e.g. --param compensate=false --param iterations=50.",
    ),
]
ImportPath = Annotated[
    Optional[str], typer.Option("--import-path", help="For --images import: a .safetensors, .npz or .pt file with 'images' and 'labels'.")
]
Seed = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the image stage (which real images are drawn).")]
Grid = Annotated[int, typer.Option("--grid", min=2, max=MAX_GRID, help="LADD's N: each image is cut into N×N sub-images.")]
Coverage = Annotated[
    float, typer.Option("--coverage", min=0.01, max=1.0, help="LADD's R: the fraction of each axis a sub-image covers, in (0, 1].")
]
LabelerModel = Annotated[
    Optional[str],
    typer.Option(
        "--labeler-model",
        parser=_checked("--labeler-model", _models, "--labeler-model"),
        help="Labeler architecture (default: the first --model).",
    ),
]
LabelerLr = Annotated[
    float, typer.Option("--labeler-lr", min=MIN_LR, max=MAX_LR, help="Labeler learning rate (SGD, no momentum; the expert recipe, 0.01).")
]
LabelerEpochs = Annotated[
    int, typer.Option("--labeler-epochs", min=1, max=MAX_COUNT, help="Epochs to train the labeler (a checkpoint is kept for each).")
]
LabelerEpoch = Annotated[
    Optional[str],
    typer.Option(
        "--labeler-epoch",
        parser=_checked("--labeler-epoch", _epoch, "--labeler-epoch"),
        help="Early-stopped checkpoint that labels: an epoch (fractions if saved, e.g. 2.5), 'auto' (the epoch whose labels train the best student on a validation split carved from the training set), default the last trained.",
    ),
]
Labels_ = Annotated[
    str,
    typer.Option(
        "--labels",
        parser=_checked("--labels", _label_method),
        help="Label method: ladd (dense sub-image labels + global soft labels), soft (global soft labels only: the soft-label baseline) or bptt (labels learned by truncated BPTT, no teacher).",
    ),
]
Ensemble = Annotated[
    int, typer.Option("--ensemble", min=1, max=MAX_ENSEMBLE, help="Average the logits of K experts (seeds 0..K-1), then softmax.")
]
Temperature = Annotated[
    float,
    typer.Option(
        "--temperature",
        min=MIN_TEMPERATURE,
        max=MAX_TEMPERATURE,
        help="T in softmax(logits / T); >1 flattens. (The no-distillation code's --temp multiplies logits: its t is 1/T.)",
    ),
]
TopK = Annotated[
    Optional[int],
    typer.Option(
        "--top-k", min=1, max=MAX_COUNT, help="Keep the k largest probabilities of every label, zero the rest, no renormalization."
    ),
]
SavesPerEpoch = Annotated[
    int,
    typer.Option(
        "--labeler-saves-per-epoch",
        min=1,
        max=MAX_SAVES,
        help="Also checkpoint the labeler at 1/f fractions of each epoch (fine-grained early stopping).",
    ),
]
LabelerDir = Annotated[
    Optional[str],
    typer.Option("--labeler-dir", help="Labeler folder to train into or reuse (default: a cache under $LADD_CACHE or ~/.cache/ladd)."),
]
LabelerWeights = Annotated[
    Optional[str],
    typer.Option(
        "--labeler-weights",
        help="Pretrained labeler instead of a trained expert: a weights file (.pth/.pt, read with torch.load weights_only; or .safetensors) in torchvision's or timm's ResNet-18 layout (recognized as resnet18-imagenet, input normalization converted to ImageNet's) or ladd's (name the model with --labeler-model). See README 'Pretrained teachers'.",
    ),
]
LabelerClasses = Annotated[
    Optional[str],
    typer.Option(
        "--labeler-classes",
        help="With --labeler-weights: the head row of each dataset class, in the dataset's class order (an ImageNet subset's ImageNet class indices), e.g. ImageNette: 0,217,482,491,497,566,569,571,574,701.",
    ),
]
LabelDtype = Annotated[
    str,
    typer.Option(
        "--label-dtype",
        parser=_checked("--label-dtype", _one_of, "--label-dtype", ("float32", "float16")),
        help="Stored dtype of soft/dense labels: float32 or float16.",
    ),
]
_PRESETS_HELP = "; ".join(
    f"{n}: --model {p.model} --protocol {p.protocol} --seeds {p.seeds} --crops-per-step {p.crops_per_step}" for n, p in PRESETS.items()
)
Preset_ = Annotated[
    str,
    typer.Option(
        "--preset",
        parser=_checked("--preset", _one_of, "--preset", tuple(PRESETS)),
        help=f"Evaluation budget, the defaults of --model, --protocol, --seeds and --crops-per-step (each given option wins): {_PRESETS_HELP}. quick finishes in minutes on a CPU; paper is the LADD paper's protocol.",
    ),
]
DistillModel = Annotated[
    str,
    typer.Option(
        "--model",
        parser=_checked("--model", _models, "--model"),
        help="Network the image method distills with: DM's and DC/DSA's random networks, MTT's expert trajectories (`ladd experts --model`), herding's feature expert. random, import, sre2l/lpld, lic and rded do not use it.",
    ),
]
LabelModel = Annotated[
    str,
    typer.Option(
        "--model",
        parser=_checked("--model", _models, "--model"),
        help="Labeler architecture (unless --labeler-model is given); also the students of --labeler-epoch auto and of bptt labels.",
    ),
]
ExpertsModel = Annotated[
    str,
    typer.Option(
        "--model",
        parser=_checked("--model", _models, "--model"),
        help="Expert architecture; `ladd distill --images mtt` reads the experts of its own --model (the same default).",
    ),
]
EvalModel = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        parser=_checked("--model", _models, "--model"),
        help="Student architecture(s), comma-separated, e.g. convnet,alexnet,vgg11,resnet18,vit (default: the --preset's).",
    ),
]
Methods = Annotated[
    Optional[str],
    typer.Option(
        "--methods",
        help="Comma-separated: baseline, ladd, soft (= global-soft), global-both, local-hard, local-dense, local-both, fkd (replays a stored relabel: `ladd relabel`), or '+'-joined terms. Default: baseline plus the method the artifact's labels are for.",
    ),
]
Seeds = Annotated[
    int, typer.Option("--seeds", min=1, max=MAX_SEEDS, help="Students trained per method and model (seeds 0..K-1); mean ± std is reported.")
]
EvalSeeds = Annotated[
    Optional[int],
    typer.Option(
        "--seeds",
        min=1,
        max=MAX_SEEDS,
        help="Students trained per method and model (seeds 0..K-1); mean ± std is reported (default: the --preset's).",
    ),
]
Epochs = Annotated[
    int,
    typer.Option(
        "--epochs",
        min=1,
        max=MAX_COUNT,
        help="Student training epochs, lr ×0.1 at half (the DC/DSA/DM reference protocol uses 1000 with DSA).",
    ),
]
Lr = Annotated[
    float, typer.Option("--lr", min=MIN_LR, max=MAX_LR, help="Student SGD learning rate (momentum 0.9, weight decay 5e-4, batch 256).")
]
EvalEpochs = Annotated[
    Optional[int],
    typer.Option(
        "--epochs",
        min=1,
        max=MAX_COUNT,
        help="Student training epochs (default: the protocol's; dc = 1000, the DC/DSA/DM reference with DSA).",
    ),
]
EvalLr = Annotated[
    Optional[float],
    typer.Option(
        "--lr",
        min=MIN_LR,
        max=MAX_LR,
        help="Student learning rate (default: an MTT artifact's learned lr, else the protocol's, per model).",
    ),
]
EvalSoftLoss = Annotated[
    Optional[str],
    typer.Option(
        "--soft-loss",
        parser=_checked("--soft-loss", _one_of, "--soft-loss", ("ce", "kl")),
        help="Student loss on soft/dense labels: ce or kl (default: the protocol's).",
    ),
]
Protocol_ = Annotated[
    str,
    typer.Option(
        "--protocol",
        parser=_checked("--protocol", load_protocol),
        help="Protocol the students train under (optimizer, schedule, epochs, per-model lr, EMA, soft-label loss): dc-cpu (dc with 150 epochs), dc, glad, fkd, lic, or a .toml file.",
    ),
]
EvalProtocol = Annotated[
    Optional[str],
    typer.Option(
        "--protocol",
        parser=_checked("--protocol", load_protocol),
        help="Evaluation protocol (optimizer, schedule, epochs, per-model lr, EMA, soft-label loss): dc-cpu (dc with 150 epochs), dc, glad, fkd, lic, or a .toml file; --epochs, --lr and --soft-loss override it only when given. Default: the --preset's; fkd for methods that replay a stored relabel (fkd). Recorded in every result row.",
    ),
]
SelectLr = Annotated[
    Optional[str],
    typer.Option(
        "--select-lr",
        parser=_checked("--select-lr", _floats, "--select-lr", MIN_LR, MAX_LR),
        help="Comma-separated student lr candidates, e.g. 0.003,0.01,0.03: the one whose students score best on a validation split carved from the training split is used; the test split is never read to choose.",
    ),
]
EvalValPerClass = Annotated[
    int,
    typer.Option(
        "--val-per-class", min=1, max=MAX_COUNT, help="Training images per class held out as the validation split for --select-lr."
    ),
]
Crops = Annotated[
    Optional[str],
    typer.Option(
        "--crops-per-step",
        parser=_checked("--crops-per-step", _crops),
        help="K of the N² local views drawn per image and step, scaled by N²/K: a number, 'all', or 'auto' (all views for tiny sets, down to 5 so an epoch sees ~500 local views). Default: the --preset's.",
    ),
]
BpttIterations = Annotated[
    int, typer.Option("--bptt-iterations", min=1, max=MAX_STEPS, help="bptt labels: label updates (each unrolls a fresh student).")
]
BpttUnroll = Annotated[int, typer.Option("--bptt-unroll", min=1, max=MAX_UNROLL, help="bptt labels: T, student steps per update.")]
BpttBackprop = Annotated[
    int, typer.Option("--bptt-backprop", min=1, max=MAX_UNROLL, help="bptt labels: M <= T, last steps the label gradient flows through.")
]
SoftLoss = Annotated[
    str,
    typer.Option(
        "--soft-loss",
        parser=_checked("--soft-loss", _one_of, "--soft-loss", ("ce", "kl")),
        help="Student loss on soft/dense labels: ce (soft-target cross-entropy, the reference) or kl (same gradients, reads 0 at a perfect fit).",
    ),
]
LocalReduction = Annotated[
    Optional[str],
    typer.Option(
        "--local-reduction",
        parser=_checked("--local-reduction", _one_of, "--local-reduction", ("mean", "sum")),
        help="How the N² local-view losses combine: mean or sum (LADD Eq. 5 and LIC Eq. 9 as written). Default: sum for region labels (LIC, RDED), mean for LADD's dense labels.",
    ),
]
Out = Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: runs/<timestamp>/).")]
Track = Annotated[
    Optional[str],
    typer.Option(
        "--track",
        parser=_checked("--track", _one_of, "--track", track.KINDS),
        help="Also send every student's per-epoch loss and lr (and test accuracy with --curve-every) and the final rows to csv (curves.csv, rows.csv), tensorboard (pip install 'ladd[tensorboard]'; tensorboard --logdir OUT) or wandb (pip install 'ladd[wandb]'; an offline run under OUT/wandb, uploaded later by wandb sync), in the output folder.",
    ),
]
Device = Annotated[str, typer.Option("--device", parser=_checked("--device", Runtime.from_name), help="cpu, cuda, cuda:N or auto.")]
# the trainer's speed options (`ladd.core.runtime.Speed`): every command with --device takes them (`_trains`)
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        parser=_checked("--precision", _one_of, "--precision", ("fp32", "bf16", "fp16")),
        help="Forward passes of training and labelling: fp32 (the default; every recorded result), bf16 (autocast; GPUs and CPUs with AVX-512 BF16/AMX) or fp16 (autocast + gradient scaler; CUDA only). Weights, optimizer and losses stay fp32.",
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the networks being trained (forward and backward): faster steps after a one-off compile of tens of seconds per process.",
    ),
]
ChannelsLastOpt = Annotated[
    bool,
    typer.Option(
        "--channels-last", help="Train in the channels-last (NHWC) layout: cuDNN's fast layout on GPUs; slower for the ConvNets on CPU."
    ),
]
DeterministicOpt = Annotated[
    bool,
    typer.Option(
        "--deterministic",
        help="Deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic, fixed cuBLAS workspace): the same seed gives the same weights on a GPU too (on CPU it already does). Not with --compile.",
    ),
]


def _speed_options(
    precision: PrecisionOpt = "fp32",
    compile: CompileOpt = False,
    channels_last: ChannelsLastOpt = False,
    deterministic: DeterministicOpt = False,
):
    """The speed options every training command takes (this function only declares them)."""


SPEED_OPTIONS = inspect.signature(_speed_options, eval_str=True).parameters


def _pop_speed(kw: dict) -> Speed:
    """The speed options, taken out of a command's keyword arguments."""
    return Speed(**{k: kw.pop(k) for k in SPEED_OPTIONS})


def _trains(command):
    """Give a command with --device the speed options, after its own: they reach its body as
    `speed` (a `Speed`), checked against the device before the body runs (fp16 on a CPU is
    refused before any data is loaded)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "speed"]

    def wrapper(*args, **kw):
        bound = wrapper.__signature__.bind(*args, **kw)  # called from Python too: unnamed options take their defaults
        bound.apply_defaults()
        kw = dict(bound.arguments)
        speed = _pop_speed(kw)
        Runtime.from_name(kw["device"], speed)
        return command(**kw, speed=speed)

    wrapper.__signature__ = inspect.Signature([*own, *SPEED_OPTIONS.values()])
    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = command.__name__, command.__qualname__, command.__doc__
    return wrapper


EvalBatchSize = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        min=1,
        max=MAX_BATCH,
        help="Student batch size (default: the protocol's; method fkd: the relabel batch size unless --replay-batches shuffled).",
    ),
]
Prune = Annotated[
    float,
    typer.Option(
        "--prune",
        min=1.0,
        max=MAX_RHO,
        help="Method fkd: keep 1/ρ of the stored relabel labels (ρ >= 1; LPLD uses 10, 20, 30, 40, 50, 100).",
    ),
]
PoolOpt = Annotated[
    str,
    typer.Option(
        "--pool",
        parser=_checked("--pool", _one_of, "--pool", POOLS),
        help="Method fkd: what pruning keeps and replays: whole stored epochs (epoch) or relabel batches from any epoch forming new epochs (batch, LPLD's improved label pool).",
    ),
]
PruneMetric = Annotated[
    str,
    typer.Option(
        "--prune-metric",
        parser=_checked("--prune-metric", _one_of, "--prune-metric", METRICS),
        help="Method fkd: which units pruning keeps: random (LPLD), or ranked by correct, confidence, diff, diff_signed, cut_ratio.",
    ),
]
PruneKeep = Annotated[
    str,
    typer.Option(
        "--prune-keep",
        parser=_checked("--prune-keep", _one_of, "--prune-keep", KEEPS),
        help="With a ranking --prune-metric: keep the easy, hard or uniformly spaced units.",
    ),
]
ReplayBatches = Annotated[
    str,
    typer.Option(
        "--replay-batches",
        parser=_checked("--replay-batches", _one_of, "--replay-batches", BATCHES),
        help="Method fkd: train on the stored relabel batches, one step each, at the relabel batch size (stored, as SRe²L/LPLD), or on the kept samples reshuffled into batches of --batch-size (shuffled).",
    ),
]


def _not_a_run_folder(path: Path | None) -> Path | None:
    """An artifact argument given a run folder (`ladd run --out DIR`): name the artifact inside it."""
    if path is not None and not (path / MANIFEST).is_file() and (path / "artifact" / MANIFEST).is_file():
        raise LaddError(f"{path} is a run folder, not an artifact: pass {path / 'artifact'}")
    return path


ArtifactArg = Annotated[
    Path,
    typer.Argument(
        callback=_not_a_run_folder,
        help="An artifact folder written by `ladd distill` or `ladd run` (`ladd run --out DIR` writes DIR/artifact).",
    ),
]


def _default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def _new_artifact(path: Path, overwrite: bool) -> Path:
    """Where a command writes a new artifact, refused before any work when an artifact is there
    already and neither --overwrite nor --resume (the same command, continued) was given: results
    evaluated on it would silently describe other images."""
    if not overwrite and (path / MANIFEST).is_file():
        raise LaddError(f"{path} already holds an artifact: add --overwrite to replace it, or choose another --out")
    return path


def _evaluated(rows: list[dict], path: Path, art) -> list[dict]:
    """Rows naming the artifact they were evaluated on (absolute, so `ladd report` finds it from any
    folder) and its images' SHA-256 (so it notices when a later command replaced them)."""
    where = {"artifact": str(path.resolve()), "artifact_sha256": art.manifest["files"]["images.safetensors"]["sha256"]}
    return [{**row, **where} for row in rows]


def _eval_config(
    preset: str, methods: tuple[str, ...], model: str | None, seeds: int | None, crops_per_step: str | None, **given
) -> EvalConfig:
    """The students' config: every option given, the rest from the preset (`ladd.api.eval_config`)."""
    from ladd.api import (
        eval_config,
    )  # here, not at import: importing ladd.api loads the plugins, which `main` does inside its error handling

    options = {"models": model and _split(model), "seeds": seeds, "crops_per_step": crops_per_step and _crops(crops_per_step)}
    return eval_config(preset, methods=methods, **{k: v for k, v in options.items() if v}, **given)


def _label_config(
    models,
    labels,
    grid,
    coverage,
    labeler_model,
    labeler_epochs,
    labeler_epoch,
    labeler_dir,
    saves_per_epoch,
    ensemble,
    temperature,
    top_k,
    label_dtype,
    bptt: BpttConfig | None = None,
    labeler_lr: float = 0.01,
    labeler_weights: str | None = None,
    labeler_classes: str | None = None,
) -> LabelConfig:
    """The label stage's config; an 'auto' epoch is left unset here and chosen by `_auto_epoch`."""
    from ladd.experts.pretrained import pretrained_config

    epoch = _epoch(labeler_epoch, "--labeler-epoch")
    weights = (
        None
        if labeler_weights is None
        else pretrained_config(
            labeler_weights,
            labeler_model,
            labeler_classes,
            option="--labeler-weights",
            model_option="--labeler-model",
            classes_option="--labeler-classes",
        )
    )
    return LabelConfig(
        labeler_weights=weights,
        method=labels,
        n=grid,
        r=coverage,
        epoch=None if epoch == "auto" else epoch,
        labeler_dir=labeler_dir,
        dtype=label_dtype,
        ensemble=ensemble,
        temperature=temperature,
        top_k=top_k,
        bptt=bptt or BpttConfig(),
        labeler=ExpertConfig(model=labeler_model or models[0], epochs=labeler_epochs, lr=labeler_lr, saves_per_epoch=saves_per_epoch),
    )


def _auto_epoch(cfg: LabelConfig, data, src: SourceConfig, ipc: int, runtime: Runtime, **students) -> LabelConfig:
    """--labeler-epoch auto: the checkpoint whose labels train the best students on a validation
    split carved from the training set (cached under $LADD_CACHE/selection)."""
    from ladd.experiments.common import Setup
    from ladd.experiments.expert_epoch import select_epoch

    setup = Setup(source=src, teacher=cfg.model_copy(update={"epoch": None, "labeler_dir": None}), **students)
    epoch = select_epoch(data, setup, ipc, runtime, entry("selection", data.name, [data.name, list(data.class_names)]))
    console.print(f"--labeler-epoch auto: epoch {epoch:g} trains the best students on the validation split")
    return cfg.model_copy(update={"epoch": epoch})


def _write_results(out: Path, rows: list[dict], config: dict, notes: list[str], title: str, extra: dict | None = None) -> None:
    written = write_results(out, rows, config, notes, title, extra)
    console.print(rich_table(rows, title=title))
    for n in notes:
        console.print(f"- {n}")
    console.print(f"wrote {', '.join(str(p) for p in written)}")


def _open(artifact: Path, data_dir: str | None):
    """An artifact, its source config (with --data-dir where given) and that source's data,
    checked to be the data the artifact was made from."""
    art = load_artifact(artifact, complete=True)
    src = pipeline.source_of(art)
    if data_dir is not None:
        src = src.model_copy(update={"data_dir": _absolute(data_dir)})
    data = pipeline.load_source(src)
    pipeline.check_same_data(art, data)
    return art, src, data


def _absolute(data_dir: str | None) -> str | None:
    """--data-dir as recorded (artifacts, results): absolute, so it means the same from any folder."""
    return None if data_dir is None else str(Path(data_dir).expanduser().resolve())


def _source(dataset, data_dir, resolution, skip_unreadable) -> SourceConfig:
    return SourceConfig(dataset=dataset, data_dir=_absolute(data_dir), resolution=resolution, skip_unreadable=skip_unreadable)


@app.command()
@_trains
def distill(
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    resolution: Resolution = None,
    skip_unreadable: SkipBad = False,
    ipc: Ipc = 10,
    images: Images = "random",
    import_path: ImportPath = None,
    seed: Seed = 0,
    model: DistillModel = DEFAULT_MODEL,
    recipe: Recipe = None,
    resume: Resume = False,
    float_images: FloatImages = False,
    buffer: Buffer = None,
    param: Param = None,
    out: Out = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Image stage: select, learn or import IPC images per class; write an artifact (images + hard labels;
    LIC and RDED also store region labels)."""
    out = _new_artifact(out or _default_out() / "artifact", overwrite or resume)
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    cfg = ImagesConfig(
        method=images,
        ipc=ipc,
        seed=seed,
        import_path=import_path,
        model=_split(model)[0],
        recipe=recipe,
        resume=resume,
        float_images=float_images,
        buffer=buffer,
        params=_params(param or []),
    )
    check_params(IMAGE_METHODS.canonical(images), cfg.params)  # before any data is loaded
    art = pipeline.distill(pipeline.load_source(src), src, cfg, Runtime.from_name(device, speed))
    save_artifact(out, art)
    console.print(f"wrote artifact {out} ({len(art.images)} images)")


@app.command()
@_trains
def label(
    artifact: ArtifactArg,
    labels: Labels_ = "ladd",
    grid: Grid = 5,
    coverage: Coverage = 0.625,
    model: LabelModel = DEFAULT_MODEL,
    labeler_model: LabelerModel = None,
    labeler_epochs: LabelerEpochs = 10,
    labeler_lr: LabelerLr = 0.01,
    labeler_epoch: LabelerEpoch = None,
    labeler_dir: LabelerDir = None,
    labeler_saves_per_epoch: SavesPerEpoch = 1,
    ensemble: Ensemble = 1,
    labeler_weights: LabelerWeights = None,
    labeler_classes: LabelerClasses = None,
    temperature: Temperature = 1.0,
    top_k: TopK = None,
    label_dtype: LabelDtype = "float32",
    bptt_iterations: BpttIterations = 100,
    bptt_unroll: BpttUnroll = 20,
    bptt_backprop: BpttBackprop = 10,
    data_dir: DataDir = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the labelled artifact here instead of into ARTIFACT.")] = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Label stage: soft labels from an early-stopped expert (LADD's dense sub-image labels, or the
    soft-label baseline's global labels).

    Trains (or reuses from the cache) the labeler, then stores a soft label for each sub-image
    (ladd) and each whole image. Writes into the artifact unless --out is given."""
    if out is not None and out.resolve() != artifact.resolve():
        _new_artifact(out, overwrite)
    models = _split(model)
    bptt = BpttConfig(model=models[0], iterations=bptt_iterations, unroll=bptt_unroll, backprop=bptt_backprop)
    cfg = _label_config(
        models,
        labels,
        grid,
        coverage,
        labeler_model,
        labeler_epochs,
        labeler_epoch,
        labeler_dir,
        labeler_saves_per_epoch,
        ensemble,
        temperature,
        top_k,
        label_dtype,
        bptt,
        labeler_lr,
        labeler_weights,
        labeler_classes,
    )
    art, src, data = _open(artifact, data_dir)  # after every option is checked
    runtime = Runtime.from_name(device, speed)
    if labeler_epoch == "auto":
        cfg = _auto_epoch(cfg, data, src, art.manifest["ipc"], runtime, student_model=models[0])
    art = pipeline.label(art, data, cfg, runtime)
    save_artifact(out or artifact, art)
    lab = art.manifest["labels"]
    stored = ", ".join(f"{n} {tuple(t.shape)}" for n, t in art.components().items() if n.endswith("labels") and n != "labels")
    made_by = f" (labeler epoch {lab['labeler']['epoch']:g}, test acc {100 * lab['labeler']['test_acc']:.2f}%)" if "labeler" in lab else ""
    if lab.get("labeler", {}).get("pretrained"):
        made_by = f" (pretrained labeler {Path(lab['labeler']['weights']).name}, test acc {100 * lab['labeler']['test_acc']:.2f}%)"
    console.print(f"wrote {lab['method']} labels ({stored}) to {out or artifact}{made_by}")


@app.command("eval")
@_trains
def eval_(
    artifact: ArtifactArg,
    methods: Methods = None,
    preset: Preset_ = DEFAULT_PRESET,
    model: EvalModel = None,
    seeds: EvalSeeds = None,
    protocol: EvalProtocol = None,
    epochs: EvalEpochs = None,
    lr: EvalLr = None,
    select_lr: SelectLr = None,
    val_per_class: EvalValPerClass = 50,
    crops_per_step: Crops = None,
    local_reduction: LocalReduction = None,
    soft_loss: EvalSoftLoss = None,
    robust: Annotated[
        bool,
        typer.Option(
            "--robust",
            help="Also compute DD-Ranking's HLR, IOR, Label-Robust and Augmentation-Robust Scores against a random real subset at the same IPC, labelled the same way (first --model).",
        ),
    ] = False,
    equal_cost: Annotated[
        Optional[str],
        typer.Option(
            "--equal-cost",
            parser=_checked("--equal-cost", _equal_cost),
            help="LADD's equal-cost comparisons (Fig. 3), comma-separated: bytes (baseline++: hard labels at IPC + 1, re-running the image method), epochs (baseline=flops: hard labels for as many epochs as the label method's label + student FLOPs), curve (the paper's: same batch size and epochs, the label method read off its accuracy-over-FLOPs curve where it has spent the baseline's deployment FLOPs), or all.",
        ),
    ] = None,
    curve_every: Annotated[
        Optional[int],
        typer.Option(
            "--curve-every",
            min=1,
            max=MAX_COUNT,
            help="Record test accuracy every K epochs against the deployment FLOPs spent (flops_curve.png; default with --equal-cost curve: about 50 points).",
        ),
    ] = None,
    real_epochs: Annotated[
        int,
        typer.Option(
            "--real-epochs",
            min=1,
            max=MAX_COUNT,
            help="--robust: epochs of the students trained on the full training split (HLR's real-data accuracy).",
        ),
    ] = 30,
    batch_size: EvalBatchSize = None,
    prune: Prune = 1.0,
    pool: PoolOpt = "epoch",
    prune_metric: PruneMetric = "random",
    prune_keep: PruneKeep = "easy",
    replay_batches: ReplayBatches = "stored",
    data_dir: DataDir = None,
    out: Out = None,
    track_: Track = None,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Evaluate an artifact: accuracy mean ± std over seeds, stored bytes and FLOPs.

    Trains fresh students for each method × model × seed under a named protocol and tests each
    once, after its final epoch, on the real test split; anything tuned (--select-lr) is chosen
    on a validation split carved from the training split. The defaults are `ladd run`'s (--preset
    quick); --preset paper is the LADD paper's protocol."""
    art, _, dataset = _open(artifact, data_dir)
    chosen = _split(methods, "--methods") if methods else default_methods(art)
    candidates = tuple(_floats(select_lr, "--select-lr", MIN_LR, MAX_LR)) if select_lr else ()
    kinds = _equal_cost(equal_cost)
    if "curve" in kinds and curve_every is None:
        curve_every = max(1, (epochs or load_protocol(protocol or PRESETS[preset].protocol).epochs) // 50)
    cfg = _eval_config(
        preset,
        chosen,
        model,
        seeds,
        crops_per_step,
        protocol=protocol,
        epochs=epochs,
        lr=lr,
        select_lr=candidates,
        val_per_class=val_per_class,
        local_reduction=local_reduction,
        soft_loss=soft_loss,
        batch_size=batch_size,
        curve_every=curve_every,
        pruning=Pruning(rho=prune, pool=pool, metric=prune_metric, keep=prune_keep, batches=replay_batches),
    )
    runtime = Runtime.from_name(device, speed)
    plus_one = pipeline.plus_one(art, dataset, runtime) if "bytes" in kinds else None  # refused before any training if it cannot be made
    out = out or _default_out()
    with track.using(track.make_tracker(track_, out)):
        rows = evaluate(art, dataset, cfg, runtime) + rounding_rows(art, dataset, cfg, runtime)
        notes = eval_notes(art, cfg, rows)
        extra = {}
        if kinds:
            from ladd.eval.protocol import equal_cost as equal_cost_rows

            rows += equal_cost_rows(art, plus_one, dataset, cfg, runtime, rows, kinds)
        if robust:
            from ladd.eval.protocol import robustness

            scores = robustness(art, pipeline.random_counterpart(art, dataset, runtime), dataset, cfg, runtime, real_epochs, rows)
            extra["robustness"] = scores
            notes.append(robustness_note(scores))
        config = {
            "artifact": str(artifact.resolve()),
            "preset": preset,
            "eval": cfg.model_dump(),
            "device": str(runtime.device),
            "speed": runtime.speed.model_dump(),
        }
        _write_results(out, _evaluated(rows, artifact, art), config, notes, f"ladd eval · {dataset.name}", extra)


TeacherDir = Annotated[
    Optional[str],
    typer.Option(
        "--teacher-dir", help="BN teacher: an expert folder to reuse (its own config wins) or to train into. Default: the expert cache."
    ),
]
TeacherModel = Annotated[
    Optional[str],
    typer.Option(
        "--teacher-model",
        parser=_checked("--teacher-model", _models, "--teacher-model"),
        help="Teacher architecture (batch norm for squeeze/recover), e.g. convnet-bn (small sets) or resnet18-bn. Default: the dataset's lpld recipe.",
    ),
]
TeacherEpochs = Annotated[
    Optional[int],
    typer.Option(
        "--teacher-epochs", min=1, max=MAX_COUNT, help="Epochs the teacher trains (cached by config). Default: the dataset's lpld recipe."
    ),
]
TeacherWeights = Annotated[
    Optional[str],
    typer.Option(
        "--teacher-weights",
        help="Pretrained teacher instead of a trained one: a weights file (.pth/.pt, read with torch.load weights_only; or .safetensors) in torchvision's or timm's ResNet-18 layout (recognized as resnet18-imagenet, input normalization converted to ImageNet's) or ladd's (name the model with --teacher-model). See README 'Pretrained teachers'. With --teacher-dir: the folder that records it (and squeeze's statistics).",
    ),
]
TeacherClasses = Annotated[
    Optional[str],
    typer.Option(
        "--teacher-classes",
        help="With --teacher-weights: the head row of each dataset class, in the dataset's class order (an ImageNet subset's ImageNet class indices), e.g. ImageNette: 0,217,482,491,497,566,569,571,574,701.",
    ),
]


def _teacher_weights(weights, model, classes):
    from ladd.experts.pretrained import pretrained_config

    return None if weights is None else pretrained_config(weights, model, classes)


def _teacher_config(data, teacher_model, teacher_epochs, ipc: int) -> ExpertConfig:
    """The teacher given, else the dataset's lpld recipe teacher: one default for squeeze, recover, relabel and diversity."""
    params = load_recipe("lpld", data.name, ipc)["params"]
    return ExpertConfig(model=teacher_model or params["teacher_model"], epochs=teacher_epochs or params["teacher_epochs"])


@app.command()
@_trains
def relabel(
    artifact: ArtifactArg,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, max=MAX_COUNT, help="Relabel epochs: each stores one augmentation and soft label per image.")
    ] = 20,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=MAX_BATCH, help="Relabel batch: CutMix partners are drawn within it; the unit of --pool batch."
        ),
    ] = 50,
    teacher_model: TeacherModel = None,
    teacher_epochs: TeacherEpochs = None,
    teacher_epoch: Annotated[
        Optional[float], typer.Option("--teacher-epoch", min=0, max=MAX_COUNT, help="Teacher checkpoint that labels (default: the last).")
    ] = None,
    teacher_weights: TeacherWeights = None,
    teacher_classes: TeacherClasses = None,
    label_kind: Annotated[
        str, typer.Option("--label-kind", help="Store teacher logits (softened by T at replay) or probabilities at T.")
    ] = "logits",
    label_dtype: Annotated[str, typer.Option("--label-dtype", help="float16 (the reference's --use-fp16) or float32.")] = "float16",
    temperature: Annotated[
        float,
        typer.Option("--temperature", min=MIN_TEMPERATURE, max=MAX_TEMPERATURE, help="T of the student's KL loss (SRe²L: 20 with CutMix)."),
    ] = 20.0,
    top_k: Annotated[
        Optional[int],
        typer.Option(
            "--top-k",
            min=1,
            max=MAX_COUNT,
            help="FKD label quantization: store only the k largest probabilities and their indices (needs --label-kind probs).",
        ),
    ] = None,
    cutmix: Annotated[
        bool, typer.Option("--cutmix/--no-cutmix", help="CutMix (λ ~ Beta(1, 1)) after crop and flip, as the reference.")
    ] = True,
    cutmix_per: Annotated[
        str, typer.Option("--cutmix-per", help="One CutMix λ and box per relabel batch (batch, the reference) or per sample.")
    ] = "batch",
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the stored augmentations (the reference's --fkd-seed 42).")
    ] = 42,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a stored relabel made with other settings.")] = False,
    data_dir: DataDir = None,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Relabel stage (SRe²L/FKD, stored): per epoch and image, draw a RandomResizedCrop, flip and
    CutMix partner, store them with the teacher's soft label in ARTIFACT/relabel/ (safetensors, one
    file per epoch; an interrupted run resumes). Students replay them: `ladd eval --methods fkd`."""
    art, _, dataset = _open(artifact, data_dir)
    teacher = _teacher_config(dataset, teacher_model, teacher_epochs, art.manifest["ipc"])
    cfg = RelabelConfig(
        epochs=epochs,
        batch_size=batch_size,
        teacher=teacher,
        teacher_epoch=teacher_epoch,
        kind=label_kind,
        dtype=label_dtype,
        temperature=temperature,
        top_k=top_k,
        cutmix=cutmix,
        mix_per=cutmix_per,
        seed=seed,
        teacher_weights=_teacher_weights(teacher_weights, teacher_model, teacher_classes),
    )
    art = pipeline.relabel_artifact(artifact, dataset, cfg, Runtime.from_name(device, speed), overwrite=overwrite)
    rel = art.manifest["relabel"]
    console.print(
        f"wrote {epochs} relabel epochs × {rel['samples']} images to {artifact / 'relabel'} "
        f"({sum(b['raw'] for b in rel['storage'].values()):,} B, {rel['label_to_image_ratio']:.2f}× the images)"
    )


@app.command()
@_trains
def experts(
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    resolution: Resolution = None,
    skip_unreadable: SkipBad = False,
    model: ExpertsModel = DEFAULT_MODEL,
    num_experts: Annotated[
        int, typer.Option("--num-experts", min=1, max=MAX_EXPERTS, help="Experts to train (seeds 0..E-1); MTT samples among them.")
    ] = 100,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, max=MAX_COUNT, help="Epochs per expert; every epoch is checkpointed (the trajectory).")
    ] = 50,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Buffer folder: experts go to OUT/expert_000 … for `--images mtt --buffer OUT` (default: the expert cache)."
        ),
    ] = None,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Train expert trajectories (MTT's buffer): E experts, a checkpoint every epoch, cached and resumable."""
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    data = pipeline.load_source(src)
    runtime = Runtime.from_name(device, speed)
    folder = ensure_buffer(data, _split(model)[0], num_experts, epochs, runtime, out)
    console.print(f"{num_experts} experts of {epochs} epochs ready under {folder}")


@app.command()
def report(
    runs: Annotated[Optional[list[Path]], typer.Argument(help="Run folders holding results.json (from `ladd eval` or `ladd run`).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("runs/report"),
    images: Annotated[
        int, typer.Option("--images", min=1, max=MAX_GRID_IMAGES, help="Synthetic images shown per class in each run's image grid.")
    ] = 4,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema of a results.json row and exit (no RUNS).")] = False,
):
    """Compare runs side by side: markdown, CSV and JSON tables; accuracy vs IPC, bytes (Pareto front)
    and FLOPs; per-class accuracy; image grids with top soft labels and LADD's N×N dense labels."""
    from ladd.report.build import build_report

    if schema:
        from ladd.eval.rows import row_schema

        typer.echo(row_schema(), nl=False)
        return
    if not runs:
        raise LaddError("give the run folders to report (RUNS), or --schema")
    written = build_report(runs, out, images=images)
    console.print(f"wrote {len(written)} files to {out}: " + ", ".join(p.name for p in written))


@app.command()
@_trains
def gradcam(
    artifact: ArtifactArg,
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated evaluation methods; one student each (seed 0), e.g. baseline,ladd.")
    ] = "baseline,ladd",
    model: Annotated[
        str, typer.Option("--model", parser=_checked("--model", _models, "--model"), help="Student architecture.")
    ] = DEFAULT_MODEL,
    protocol: Protocol_ = QUICK.protocol,
    epochs: EvalEpochs = None,
    lr: EvalLr = None,
    test_images: Annotated[
        str,
        typer.Option(
            "--test-images",
            parser=_checked("--test-images", _whole_numbers, "--test-images", "0,1,2", 0, MAX_INDEX),
            help="Comma-separated indices into the real test split.",
        ),
    ] = "0,1,2,3,4,5,6,7",
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for gradcam_<method>.png.")] = Path("runs/gradcam"),
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Grad-CAM maps of students trained on the artifact, on chosen test images (LADD Fig. 4)."""
    from ladd.report.gradcam import student_figures

    art, _, dataset = _open(artifact, data_dir)
    runtime = Runtime.from_name(device, speed)
    index = _ints_from_zero(test_images, "--test-images", len(dataset.test))
    for path in student_figures(
        art, dataset, _split(methods, "--methods"), _split(model)[0], protocol, index, out, runtime, epochs=epochs, lr=lr
    ):
        console.print(f"wrote {path}")


@app.command("export")
def export_(
    artifact: ArtifactArg,
    format: Annotated[
        str, typer.Option("--format", help="pt (DD-Ranking images.pt + labels.pt), npz, or folder (class subfolders of PNGs).")
    ] = "pt",
    out: Annotated[Path, typer.Option("--out", help="File (npz) or folder (pt, folder) to create; must not exist.")] = Path("export"),
):
    """Export an artifact for other tools; `ladd distill --images import --import-path OUT` reads it back."""
    from ladd.artifact.export import export

    path = export(load_artifact(artifact), out, format)
    console.print(f"wrote {format} export of {artifact} to {path}")


@app.command()
def teachers(
    directory: Annotated[
        Optional[list[Path]], typer.Argument(help="Folders to search for trained networks (default: the expert cache).")
    ] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the listing as JSON to this file.")] = None,
):
    """List every trained teacher / labeler / expert: dataset, classes, normalization, seed, test accuracy, checksum."""
    from rich.table import Table

    from ladd.experts import registry

    rows = registry(directory)
    table = Table(title=f"{len(rows)} trained networks")
    for col in ("dataset", "model", "seed", "epochs", "classes", "mean / std", "test acc %", "sha256", "directory"):
        table.add_column(col)
    for r in rows:
        norm = "/".join(f"{m:.3f}" for m in r["mean"]) + " / " + "/".join(f"{s:.3f}" for s in r["std"])
        acc = "incomplete" if not r["complete"] else ("—" if r["test_acc"] is None else f"{100 * r['test_acc']:.2f}")
        table.add_row(
            r["dataset"],
            r["model"],
            str(r["seed"]),
            str(r["epochs"]),
            str(r["classes"]),
            norm,
            acc,
            (r["final_sha256"] or "—")[:12],
            r["directory"],
        )
    console.print(table)
    if json_out is not None:
        write_json(json_out, {"networks": rows})


@app.command()
def info(artifact: ArtifactArg):
    """Verify an artifact (hashes, shapes, label validity) and summarize what it stores."""
    header, *lines = describe(load_artifact(artifact, complete=True))
    console.print(f"[bold]{artifact}[/] · {header} · hashes verified")
    for line in lines:
        console.print(line)


@app.command()
@_trains
def run(
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    resolution: Resolution = None,
    skip_unreadable: SkipBad = False,
    ipc: Ipc = 10,
    images: Images = "random",
    import_path: ImportPath = None,
    seed: Seed = 0,
    recipe: Recipe = None,
    resume: Resume = False,
    float_images: FloatImages = False,
    buffer: Buffer = None,
    param: Param = None,
    labels: Labels_ = "ladd",
    grid: Grid = 5,
    coverage: Coverage = 0.625,
    labeler_model: LabelerModel = None,
    labeler_epochs: LabelerEpochs = 10,
    labeler_lr: LabelerLr = 0.01,
    labeler_epoch: LabelerEpoch = None,
    labeler_dir: LabelerDir = None,
    labeler_saves_per_epoch: SavesPerEpoch = 1,
    ensemble: Ensemble = 1,
    temperature: Temperature = 1.0,
    top_k: TopK = None,
    labeler_weights: LabelerWeights = None,
    labeler_classes: LabelerClasses = None,
    label_dtype: LabelDtype = "float32",
    preset: Preset_ = DEFAULT_PRESET,
    model: EvalModel = None,
    methods: Methods = None,
    seeds: EvalSeeds = None,
    protocol: EvalProtocol = None,
    epochs: EvalEpochs = None,
    lr: EvalLr = None,
    crops_per_step: Crops = None,
    local_reduction: LocalReduction = None,
    soft_loss: EvalSoftLoss = None,
    out: Out = None,
    overwrite: Overwrite = False,
    track_: Track = None,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Everything end to end: images → labeler → dense labels → baseline (hard labels) vs LADD.

    With no options: mnist5k, IPC 10, random real images, a 10-epoch ConvNet labeler, N=5,
    R=62.5%, students evaluated over 3 seeds under the dc-cpu protocol (--preset quick). The quick
    preset finishes in minutes on 2 CPU cores and trades away: width-64 ConvNets (the papers use
    width 128), 150 student epochs (the reference protocol uses 1000), 5 of the 25 local views per
    image and step on large sets (K=5 for IPC 10 on 10 classes, all 25 for IPC 1; scaled by 25/K,
    an unbiased estimate of the full loss), 3 seeds instead of 5; --preset paper restores all four.
    The first --model also distills (learned image methods) and labels (unless --labeler-model).
    """
    t0 = time.perf_counter()
    out = out or _default_out()
    _new_artifact(out / "artifact", overwrite or resume)
    runtime = Runtime.from_name(device, speed)
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    models = _split(model) if model else (PRESETS[preset].model,)
    label_cfg = _label_config(
        models,
        labels,
        grid,
        coverage,
        labeler_model,
        labeler_epochs,
        labeler_epoch,
        labeler_dir,
        labeler_saves_per_epoch,
        ensemble,
        temperature,
        top_k,
        label_dtype,
        labeler_lr=labeler_lr,
        labeler_weights=labeler_weights,
        labeler_classes=labeler_classes,
    )
    chosen = _split(methods, "--methods") if methods else methods_for(LABEL_METHODS.canonical(labels))
    # only what the user typed overrides the protocol (and an MTT artifact's learned lr)
    cfg = _eval_config(
        preset,
        chosen,
        model,
        seeds,
        crops_per_step,
        protocol=protocol,
        epochs=epochs,
        lr=lr,
        local_reduction=local_reduction,
        soft_loss=soft_loss,
    )  # fail before any training
    images_cfg = ImagesConfig(
        method=images,
        ipc=ipc,
        seed=seed,
        import_path=import_path,
        model=models[0],
        recipe=recipe,
        resume=resume,
        float_images=float_images,
        buffer=buffer,
        params=_params(param or []),
    )
    check_params(IMAGE_METHODS.canonical(images), images_cfg.params)
    data = pipeline.load_source(src)  # after every option is checked
    art = pipeline.distill(data, src, images_cfg, runtime)
    if labeler_epoch == "auto":
        chosen_protocol = load_protocol(protocol or cfg.default_protocol)  # the selection's students train as the final ones will
        label_cfg = _auto_epoch(
            label_cfg,
            data,
            src,
            art.manifest["ipc"],
            runtime,
            student_model=models[0],
            student_epochs=epochs or chosen_protocol.epochs,
            student_lr=lr or chosen_protocol.lr_for(models[0]),
            seeds=cfg.seeds,
            soft_loss=soft_loss or chosen_protocol.soft_loss,
        )
    art = pipeline.label(art, data, label_cfg, runtime)
    save_artifact(out / "artifact", art)
    art = load_artifact(out / "artifact")  # evaluate exactly what was stored (e.g. float16 labels)
    with track.using(track.make_tracker(track_, out)):  # the students (labelers and experts are cached, not tracked)
        rows = evaluate(art, data, cfg, runtime) + rounding_rows(art, data, cfg, runtime)
        notes = eval_notes(art, cfg, rows) + [
            f"total wall time {time.perf_counter() - t0:.0f} s, data loading and labeler training included (unless the labeler was reused from the cache)"
        ]
        config = {
            "artifact": str((out / "artifact").resolve()),
            "preset": preset,
            "source": src.model_dump(),
            "images": images_cfg.model_dump(),
            "labels": label_cfg.model_dump(),
            "eval": cfg.model_dump(),
            "device": str(runtime.device),
            "speed": runtime.speed.model_dump(),
        }
        _write_results(out, _evaluated(rows, out / "artifact", art), config, notes, f"ladd run · {data.name} · IPC {art.manifest['ipc']}")


# --- SRe²L / LPLD: `ladd squeeze`, `ladd recover`, `ladd diversity` -----------------------------
RecoverImages = Annotated[
    str,
    typer.Option(
        "--images",
        help="Recover method: sre2l (global BN statistics, batches mixing classes) or lpld (class-wise BN statistics, one class per batch).",
    ),
]


def _teacher(data, teacher_dir, teacher_model, teacher_epochs, ipc: int, runtime: Runtime, weights=None, classes=None) -> str:
    """The teacher folder: --teacher-weights set up (in --teacher-dir or the cache), else --teacher-dir as is,
    else the model/epochs given or the dataset's lpld recipe, trained or reused."""
    from ladd.experts.pretrained import prepare
    from ladd.images.squeeze import teacher_dir as resolve

    if weights is not None:
        return str(prepare(data, _teacher_weights(weights, teacher_model, classes), teacher_dir))
    teacher = _teacher_config(data, teacher_model, teacher_epochs, ipc)
    return str(resolve(data, teacher_dir, teacher.model, teacher.epochs, runtime))


@app.command()
@_trains
def squeeze(
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    resolution: Resolution = None,
    skip_unreadable: SkipBad = False,
    teacher_dir: TeacherDir = None,
    teacher_model: TeacherModel = None,
    teacher_epochs: TeacherEpochs = None,
    teacher_weights: TeacherWeights = None,
    teacher_classes: TeacherClasses = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=MAX_BATCH, help="Batch of the statistics pass.")] = 256,
    momentum: Annotated[
        float, typer.Option("--momentum", min=1e-6, max=1.0, help="EMA momentum of the class-wise statistics (LPLD Eq. 7; BN's 0.1).")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Order of the statistics pass.")] = 0,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """SRe²L/LPLD squeeze: train (or reuse) a BN teacher, then store its class-wise BN statistics beside it."""
    from ladd.images.squeeze import SqueezeConfig, squeeze as run_squeeze

    src = _source(dataset, data_dir, resolution, skip_unreadable)
    data, runtime = pipeline.load_source(src), Runtime.from_name(device, speed)
    cfg = SqueezeConfig(batch_size=batch_size, momentum=momentum, seed=seed)
    directory = Path(_teacher(data, teacher_dir, teacher_model, teacher_epochs, 1, runtime, teacher_weights, teacher_classes))
    run_squeeze(data, directory, cfg, runtime)
    console.print(f"teacher and class-wise statistics in {directory} (use --teacher-dir {directory})")


@app.command()
@_trains
def recover(
    images: RecoverImages = "lpld",
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    resolution: Resolution = None,
    skip_unreadable: SkipBad = False,
    ipc: Ipc = 10,
    seed: Seed = 0,
    recipe: Recipe = None,
    teacher_dir: TeacherDir = None,
    teacher_model: TeacherModel = None,
    teacher_epochs: TeacherEpochs = None,
    teacher_weights: TeacherWeights = None,
    teacher_classes: TeacherClasses = None,
    resume: Resume = False,
    float_images: FloatImages = False,
    param: Param = None,
    out: Out = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """SRe²L/LPLD recover: synthesize IPC images per class from a BN teacher (the same image
    methods `ladd distill --images sre2l|lpld` runs); checkpointed per batch (LPLD: per class).
    Under torchrun the batches are shared out over the ranks; --resume continues each from its checkpoint."""
    from ladd.images.recover import METHODS

    method = IMAGE_METHODS.canonical(images)
    if method not in METHODS:
        raise LaddError(f"--images {images}: recover runs {' or '.join(METHODS)}; other methods run through `ladd distill`")
    out = _new_artifact(out or _default_out() / "artifact", overwrite or resume)
    params = _params(param or [])
    check_params(method, params)  # before any data is loaded
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    data, runtime = pipeline.load_source(src), Runtime.from_name(device, speed)
    if teacher_weights is not None or (teacher_dir is None and (teacher_model or teacher_epochs)):
        teacher_dir = _teacher(data, teacher_dir, teacher_model, teacher_epochs, ipc, runtime, teacher_weights, teacher_classes)
    cfg = ImagesConfig(
        method=method, ipc=ipc, seed=seed, recipe=recipe, resume=resume, float_images=float_images, teacher=teacher_dir, params=params
    )
    art = pipeline.distill(data, src, cfg, runtime)
    save_artifact(out, art)
    console.print(f"wrote artifact {out} ({len(art.images)} images, {method})")


@app.command()
@_trains
def diversity(
    artifact: ArtifactArg,
    teacher_dir: TeacherDir = None,
    teacher_model: TeacherModel = None,
    teacher_epochs: TeacherEpochs = None,
    teacher_weights: TeacherWeights = None,
    teacher_classes: TeacherClasses = None,
    real_per_class: Annotated[
        int,
        typer.Option("--real-per-class", min=1, max=MAX_COUNT, help="Real training images per class the synthetic ones are compared with."),
    ] = 500,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Which real images are drawn.")] = 0,
    data_dir: DataDir = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="JSON file (default: runs/<timestamp>/diversity.json).")] = None,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Diversity of any artifact in a teacher's feature space: mean within-class cosine similarity (LPLD Table 1) and MMD² to the real data (Eq. 5)."""
    from ladd.eval.diversity import diversity as measure
    from ladd.images.squeeze import load_teacher

    art, _, data = _open(artifact, data_dir)
    runtime = Runtime.from_name(device, speed)
    directory = Path(
        _teacher(data, teacher_dir, teacher_model, teacher_epochs, art.manifest["ipc"], runtime, teacher_weights, teacher_classes)
    )
    model, prov = load_teacher(directory, data, runtime, need_bn=False)
    result = {
        "artifact": str(artifact.resolve()),
        "teacher": {k: prov[k] for k in ("directory", "model", "epoch", "checkpoint_sha256", "test_acc")},
        **measure(model, art.images, art.labels, data, real_per_class, seed),
    }
    out = out or _default_out() / "diversity.json"
    write_json(out, result)
    cos = result["within_class_cosine"]
    console.print(
        f"{artifact}: within-class cosine similarity {'n/a (IPC 1)' if cos is None else f'{cos:.4f}'} "
        f"(real images {result['real_within_class_cosine']:.4f}) · MMD² to real {result['mmd2']:.4f} · wrote {out}"
    )


# --- experiments: `ladd experiment NAME` ---------------------------------------------------------
experiment_app = typer.Typer(
    help="Soft-label experiments (A Label is Worth a Thousand Images): JSON + markdown + PNG into --out, resumable.", no_args_is_help=True
)
app.add_typer(experiment_app, name="experiment")

ExpertModel = Annotated[
    str, typer.Option("--expert-model", parser=_checked("--expert-model", _models, "--expert-model"), help="Expert (teacher) architecture.")
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
        parser=_checked("--expert-epoch", _epoch),
        help="Checkpoint that labels: a number, 'auto' (selected per IPC on a validation split carved from the training set), default the last.",
    ),
]
StudentModel = Annotated[str, typer.Option("--model", parser=_checked("--model", _models, "--model"), help="Student architecture.")]
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
        parser=_checked("--candidate-epochs", _floats, "--candidate-epochs", 0.0, MAX_COUNT),
        help="Comma-separated expert epochs that 'auto' selection tries (default: every saved one).",
    ),
]
IpcList = Annotated[str, typer.Option("--ipc", parser=_checked("--ipc", _ints, "--ipc"), help="Comma-separated images per class.")]
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
        source=SourceConfig(dataset=dataset, data_dir=_absolute(data_dir)),
        teacher=LabelConfig(method="soft", labeler=expert),
        student_model=model,
        student_epochs=epochs,
        student_lr=lr,
        seeds=seeds,
        soft_loss=soft_loss,
        image_seed=seed,
        val_per_class=val_per_class,
        candidate_epochs=None if candidate_epochs is None else tuple(_floats(candidate_epochs, "--candidate-epochs", 0.0, MAX_COUNT)),
        select_lr=tuple(_floats(select_lr, "--select-lr", MIN_LR, MAX_LR)) if select_lr else (),
    )


def _shared_options(
    dataset: Dataset_ = "mnist5k",
    data_dir: DataDir = None,
    expert_model: ExpertModel = DEFAULT_MODEL,
    expert_epochs: ExpertEpochs = 10,
    expert_lr: ExpertLr = 0.01,
    expert_saves_per_epoch: ExpertSaves = 1,
    expert_decay: ExpertDecay = False,
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
    followed by the shared ones; the body receives the loaded dataset and the built Setup."""
    shared = inspect.signature(_shared_options, eval_str=True).parameters

    def wrap(body):
        own = list(inspect.signature(body, eval_str=True).parameters.values())[4:]

        def command(**kw):
            opts = {k: kw.pop(k) for k in shared}
            runtime = Runtime.from_name(opts["device"], _pop_speed(kw))
            setup = _setup(**{k: v for k, v in opts.items() if k not in ("out", "device")})
            body(pipeline.load_source(setup.source), setup, runtime, opts["out"], **kw)

        command.__signature__ = inspect.Signature([*own, *shared.values(), *SPEED_OPTIONS.values()])
        command.__doc__ = body.__doc__
        experiment_app.command(name)(command)
        return body

    return wrap


@_experiment("expert-epoch")
def _expert_epoch(data, setup, runtime, out, ipc: IpcList = "1,10"):
    """Which expert checkpoint makes the best soft labels for each IPC? (Fig. 2)

    Students are scored on a validation split carved from the training set (never the test
    split); plots expert accuracy, label entropy and student accuracy against the expert epoch."""
    from ladd.experiments import expert_epoch

    expert_epoch.run(data, setup, _ints(ipc, "--ipc"), runtime, out)


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

    soft_vs_hard.run(data, setup, _ints(ipc, "--ipc"), _epoch(expert_epoch), ensemble, runtime, out)


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
            parser=_checked("--temperatures", _floats, "--temperatures", MIN_TEMPERATURE, MAX_TEMPERATURE),
            help="Comma-separated label temperatures T of softmax(z / T).",
        ),
    ] = "0.5,1,2,4",
):
    """Expert epoch × label temperature: student validation accuracy on the grid, best pair per IPC (Fig. 5)."""
    from ladd.experiments import epoch_temperature

    values = _floats(temperatures, "--temperatures", MIN_TEMPERATURE, MAX_TEMPERATURE)
    epoch_temperature.run(data, setup, _ints(ipc, "--ipc"), sorted(set(values)), runtime, out)


@_experiment("swap")
def _swap(data, setup, runtime, out, ipc: Ipc = 10, expert_epoch: ExpertEpoch = None):
    """Label swap test: swap each label's i-th largest probability with its smallest, i = 1..C (Fig. 4)."""
    from ladd.experiments import swap

    swap.run(data, setup, ipc, _epoch(expert_epoch), runtime, out)


@_experiment("scaling-law")
def _scaling(
    data,
    setup,
    runtime,
    out,
    ipc: IpcList = "1,2,5,10,20",
    top_k: Annotated[
        str, typer.Option("--top-k", parser=_checked("--top-k", _ints, "--top-k"), help="Comma-separated k of the top-k soft labels.")
    ] = "1,2,3,5,10",
    expert_epoch: ExpertEpoch = None,
):
    """Data-knowledge scaling: IPC × top-k grid, fits acc = (a·IPC)^c − d, data-size reduction factor (Fig. 6)."""
    from ladd.experiments import scaling

    scaling.run(data, setup, _ints(ipc, "--ipc"), _ints(top_k, "--top-k"), _epoch(expert_epoch), runtime, out)


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

    removal.run(data, setup, ipc, target_class, _epoch(expert_epoch), runtime, out)


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

    ce_selection.run(data, setup, ipc, quantiles, _epoch(expert_epoch), runtime, out)


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

    lic_ablation.run(data, setup, _ints(ipc, "--ipc"), ladd_labels, runtime, out, iterations)


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
            parser=_checked("--rho", _floats, "--rho", 1.0, MAX_RHO),
            help="Comma-separated pruning factors: keep 1/ρ of the stored labels (LPLD: 10 … 100).",
        ),
    ] = "1,10,40",
    pools: Annotated[
        str,
        typer.Option(
            "--pools", parser=_checked("--pools", _pools), help="Comma-separated label pools: epoch and/or batch (LPLD's improved pool)."
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
        _ints(ipc, "--ipc"),
        _floats(rho, "--rho", 1.0, MAX_RHO),
        _pools(pools),
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
    bptt_iterations: BpttIterations = 100,
    bptt_unroll: BpttUnroll = 20,
    bptt_backprop: BpttBackprop = 10,
    expert_epoch: ExpertEpoch = None,
    ensemble: Annotated[
        int,
        typer.Option(
            "--ensemble",
            min=1,
            max=MAX_ENSEMBLE,
            help="Experts (seeds 0..K-1) whose averaged labels the learned ones are also compared with; seed K is the expert-pair baseline.",
        ),
    ] = 3,
):
    """Labels learned by truncated BPTT: JSD to each expert epoch's labels, one expert's and an ensemble's, with the expert-pair baseline, and students (Fig. 8, 12)."""
    from ladd.experiments import bptt

    cfg = BpttConfig(model=setup.student_model, iterations=bptt_iterations, unroll=bptt_unroll, backprop=bptt_backprop)
    bptt.run(data, setup, ipc, cfg, _epoch(expert_epoch), runtime, out, ensemble)


# --- dataset stores: `ladd data prepare|info` (ladd.data.store) ---------------------------------------
data_app = typer.Typer(
    help="Decode on-disk datasets once into memory-mapped stores ($LADD_CACHE/data) and list them.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, max=MAX_WORKERS, help="Processes decoding the images (default: $LADD_WORKERS, else every CPU)."),
]


@data_app.command("prepare")
def data_prepare(
    dataset: Dataset_, data_dir: DataDir = None, resolution: Resolution = None, skip_unreadable: SkipBad = False, workers: Workers = None
):
    """Build a dataset's store now (other commands build it on first use) and print what it holds."""
    from ladd.data.store import prepare

    info = prepare(dataset, data_dir=data_dir, resolution=resolution, skip_unreadable=skip_unreadable, workers=workers)
    if info["path"] is None:
        console.print(f"{info['dataset']} is shipped in a package and read into memory: it has no store to prepare")
        return
    verb = (
        f"built in {info['decode_seconds']:.1f} s with {info['workers']} worker(s)"
        if info["built"]
        else f"reused (opened in {info['seconds']:.2f} s)"
    )
    skipped = f", {info['skipped']} unreadable images skipped" if info["skipped"] else ""
    console.print(
        f"{info['dataset']}: store {verb}\n  {info['path']}\n  {info['classes']} classes, images {'×'.join(map(str, info['shape']))}, "
        f"train {info['train']}, test {info['test']}, {info['bytes'] / 1e9:.3f} GB{skipped}\n  mean {info['mean']}, std {info['std']}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@data_app.command("info")
def data_info(json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the listing as JSON to this file.")] = None):
    """The dataset stores in the cache: dataset, image size, images per split, size on disk, decode time."""
    from rich.table import Table

    from ladd.core.cache import cache_root
    from ladd.data.store import stores

    rows = stores()
    table = Table(title=f"{len(rows)} dataset stores, {sum(r['bytes'] for r in rows) / 1e9:.2f} GB in {cache_root() / 'data'}")
    for col in ("dataset", "images", "train", "test", "GB", "decode s", "workers", "status", "entry"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *(
                str(v)
                for v in (
                    r.get("dataset"),
                    "×".join(map(str, r.get("shape") or [])),
                    r.get("train"),
                    r.get("test"),
                    f"{r['bytes'] / 1e9:.3f}",
                    r.get("decode_seconds"),
                    r.get("workers"),
                    r["status"],
                    r["entry"],
                )
            )
        )
    console.print(table)
    if json_out is not None:
        write_json(json_out, {"root": str(cache_root()), "stores": rows})


# --- the cache: `ladd cache ls|verify|prune` -------------------------------------------------------
cache_app = typer.Typer(help="See, re-hash and clean the cache ($LADD_CACHE, default ~/.cache/ladd).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
Kind = Annotated[
    Optional[list[str]],
    typer.Option("--kind", help="Only entries of this kind (experts, distill, labels, selection, teachers, data); repeatable."),
]


def _entries(kind: list[str] | None):
    from ladd.core import cache

    unknown = sorted(set(kind or []) - set(cache.FORMATS))
    if unknown:
        raise LaddError(f"--kind {unknown[0]} is not a cache kind: choose from {', '.join(cache.FORMATS)}")
    return cache.entries(kind)


def _entry_table(entries, title: str, why: dict | None = None):
    from rich.table import Table

    table = Table(title=title)
    for col in ("kind", "entry", "MB", "age (days)", "status", *(["problem"] if why is not None else [])):
        table.add_column(col)
    for e in entries:
        r = e.row()
        table.add_row(
            r["kind"],
            r["entry"],
            f"{r['size_mb']:.2f}",
            f"{r['age_days']:.1f}",
            r["status"],
            *([why.get(e.path, "")] if why is not None else []),
        )
    console.print(table)


@cache_app.command("ls")
def cache_ls(
    kind: Kind = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the listing as JSON to this file.")] = None,
):
    """Every cache entry: kind, size, age, and whether it is complete, incomplete, stale (made by an
    older format of its kind, never reused) or the leftover of a killed write."""
    from ladd.core.cache import cache_root

    entries = _entries(kind)
    _entry_table(entries, f"{len(entries)} entries, {sum(e.bytes for e in entries) / 1e6:.1f} MB in {cache_root()}")
    if json_out is not None:
        write_json(json_out, {"root": str(cache_root()), "entries": [{**e.row(), "path": str(e.path)} for e in entries]})


@cache_app.command("verify")
def cache_verify(kind: Kind = None):
    """Re-hash and re-read every entry (experts' final weights against their recorded SHA-256, every
    safetensors and JSON file parsed); exit 1 when one is broken (`ladd cache prune --broken` removes it)."""
    from ladd.core.cache import verify

    entries = _entries(kind)
    why = {e.path: problem for e in entries if (problem := verify(e)) is not None}
    _entry_table([e for e in entries if e.path in why], f"{len(entries)} entries verified, {len(why)} broken", why)
    if why:
        raise typer.Exit(1)


@cache_app.command("prune")
def cache_prune(
    kind: Kind = None,
    stale: Annotated[bool, typer.Option("--stale", help="Entries of an older format, and leftovers of killed writes.")] = False,
    incomplete: Annotated[bool, typer.Option("--incomplete", help="Experts whose training never finished.")] = False,
    broken: Annotated[bool, typer.Option("--broken", help="Entries `ladd cache verify` finds broken.")] = False,
    older_than: Annotated[
        Optional[float], typer.Option("--older-than", min=0, max=1e6, help="Entries not written for this many days.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every entry (of --kind).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
):
    """Remove cache entries: choose which with --stale, --incomplete, --broken, --older-than or --all
    (combined: any of them). Entries a running ladd process holds are skipped."""
    import time as clock

    from ladd.core.cache import prune, verify

    if not (stale or incomplete or broken or all_ or older_than is not None):
        raise LaddError("say what to prune: --stale, --incomplete, --broken, --older-than DAYS or --all (try --dry-run first)")
    chosen = [
        e
        for e in _entries(kind)
        if all_
        or (stale and e.status in ("stale", "leftover"))
        or (incomplete and e.status == "incomplete")
        or (older_than is not None and clock.time() - e.modified > older_than * 86400)
        or (broken and verify(e) is not None)
    ]
    removed, busy = prune(chosen, dry_run)
    verb = "would remove" if dry_run else "removed"
    _entry_table(removed, f"{verb} {len(removed)} entries, {sum(e.bytes for e in removed) / 1e6:.1f} MB")
    for e in busy:
        console.print(f"skipped {e.path}: a running ladd process holds it")


def _usage(e: UsageError) -> str:
    """Typer's own refusals (an unknown option, a value that does not parse or is out of range) as
    one line naming the option, with the range it takes."""
    param = getattr(e, "param", None)
    cause = e.__cause__
    if param is None or not getattr(param, "opts", None) or isinstance(e, MissingParameter):
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        return e.format_message() + hint
    name = "/".join(param.opts) if param.param_type_name == "option" else param.human_readable_name
    value = f" {cause.errors()[0]['input']}" if isinstance(cause, ValidationError) and cause.errors() else ""
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None and hi is not None:
        whole = isinstance(lo, int) and isinstance(hi, int)
        show = (lambda v: str(v)) if whole else (lambda v: f"{v:g}")
        return f"{name}{value} is not allowed: give a {'whole number' if whole else 'number'} from {show(lo)} to {show(hi)}"
    return f"invalid value for {name}{value}: {e.message.removeprefix('Value error, ')}"


@functools.cache
def _command():
    """The click command of `app`, built once (every command is registered at import)."""
    return typer.main.get_command(app)


def _run(args: list[str]) -> int:
    """Run the command line and return its exit code. Invoked here rather than through typer's
    `main`, which turns Ctrl-C into a silent exit 130: the KeyboardInterrupt reaches `main`."""
    command = _command()
    try:
        with command.make_context("ladd", args) as ctx:
            command.invoke(ctx)
    except typer.Exit as e:  # --help, `ladd cache verify` finding a broken entry
        return e.exit_code
    return 0


def _interrupted(args: list[str]) -> str:
    """What to do after Ctrl-C: re-run, with --resume where the command has it."""
    command = _command()
    for word in args:  # down the command groups (`ladd experiment NAME`) to the command that ran
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
    resumes = any("--resume" in p.opts for p in getattr(command, "params", []))
    return f"interrupted — re-run the same command{' with --resume' if resumes else ''} to continue"


def main() -> None:
    code = 0
    try:
        dist.init()
        from ladd.core import plugins

        plugins.load()  # third-party methods, datasets, models and protocols (entry points `ladd.plugins`)
        if dist.rank() > 0:  # under torchrun rank 0 prints the results; every rank prints its errors
            sys.stdout, console.quiet = open(os.devnull, "w"), True
        code = _run(sys.argv[1:])
        dist.barrier()  # every rank done before any tears the group down (Gloo aborts a rank that closes mid-exchange)
    except KeyboardInterrupt:
        log(f"\n{_interrupted(sys.argv[1:])}")  # once, by rank 0 under torchrun
        sys.exit(130)
    except NoArgsIsHelpError:  # `ladd` or `ladd experiment` alone: the help is already printed
        sys.exit(2)
    except UsageError as e:
        print(f"error: {_usage(e)}".replace("\n", " "), file=sys.stderr)
        sys.exit(2)
    except LaddError as e:
        print(f"error: {dist.where()}{e}".replace("\n", " "), file=sys.stderr)
        sys.exit(2)
    except td.DistError as e:  # a peer process of this torchrun job died or stopped answering
        print(
            f"error: {dist.where()}another process of this job stopped ({str(e).splitlines()[0][:200]}): "
            f"launch the same command again to continue from the last checkpoint (with --resume where the command has it)",
            file=sys.stderr,
        )
        sys.exit(3)
    except ValidationError as e:
        err = e.errors()[0]
        print(f"error: invalid value for {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # unwritable --out, a file where a folder should be, a full disk
        what = f"{e.strerror or e}: {e.filename}" if e.filename else f"{e.strerror or e}"
        print(f"error: {LaddError(what)}", file=sys.stderr)  # one line, whatever the file name holds
        sys.exit(2)
    finally:
        dist.close()
    sys.exit(code)
