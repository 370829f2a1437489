"""Option values and the options shared by the commands: declared once each, range-checked and
parsed as they are read, so a bad value stops a command before any data is loaded."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path
from typing import Annotated, Optional

import typer

from ladd.artifact import MANIFEST
from ladd.core import track
from ladd.core.errors import ArtifactError, ConfigError, LaddError
from ladd.core.limits import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_ENSEMBLE,
    MAX_GRID,
    MAX_INDEX,
    MAX_PIXELS,
    MAX_RHO,
    MAX_SAVES,
    MAX_SEED,
    MAX_SEEDS,
    MAX_STEPS,
    MAX_TEMPERATURE,
    MAX_UNROLL,
    MAX_VIEWS,
    MAX_LR,
    MIN_LR,
    MIN_TEMPERATURE,
)
from ladd.core.runtime import Runtime, Speed
from ladd.eval.protocols import DEFAULT_PRESET, PRESETS, load_protocol
from ladd.experts import ExpertConfig
from ladd.labels import LABEL_METHODS, LabelConfig
from ladd.labels.replay import BATCHES, KEEPS, METRICS, POOLS
from ladd.pipeline import SourceConfig


QUICK = PRESETS[DEFAULT_PRESET]
DEFAULT_MODEL = QUICK.model
QUICK_EPOCHS = load_protocol(QUICK.protocol).epochs

# --- values: every numeric option is range-checked as it is read (typer's min/max, bounds from
# ladd.core.limits; NaN and ±inf fall outside every range), and options holding lists or special
# values are parsed by the functions below, also as they are read (`parser=checked(...)`), so a
# bad value stops the command before any data is loaded or anything written. `main` prints it on
# one line naming the option.


def checked(option: str, parse, *args):
    """A typer `parser=` for `option`: runs `parse(text, *args)` as the option is read (its error
    names the option) and hands the text on; the command parses it again where it uses it."""

    def check(text):
        if isinstance(text, str):
            try:
                parse(text, *args)
            except LaddError as e:
                raise (e if option in str(e) else type(e)(f"{option}: {e}")) from None
        return text

    return check


def split(text: str, option: str = "--model") -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise ConfigError(f"{option} is empty: give at least one name")
    return names


def whole_numbers(text: str, option: str, example: str, lo: int, hi: int) -> list[int]:
    try:
        values = [int(v) for v in split(text, option)]
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be comma-separated whole numbers, e.g. {example}") from None
    bad = next((v for v in values if not lo <= v <= hi), None)
    if bad is not None:
        raise ConfigError(f"{option} {text!r}: {bad} is out of range: give whole numbers from {lo} to {hi}, e.g. {example}")
    return values


def ints(text: str, option: str) -> list[int]:
    """Comma-separated counts (images per class, k of top-k)."""
    return whole_numbers(text, option, "1,10,50", 1, MAX_COUNT)


def ints_from_zero(text: str, option: str, size: int) -> list[int]:
    values = whole_numbers(text, option, "0,1,2", 0, MAX_INDEX)
    bad = [v for v in values if not 0 <= v < size]
    if bad:
        raise ConfigError(f"{option}: index {bad[0]} is outside the test split (0..{size - 1})")
    return values


def floats(text: str, option: str, lo: float, hi: float) -> list[float]:
    try:
        values = [float(v) for v in split(text, option)]
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be comma-separated numbers from {lo:g} to {hi:g}") from None
    bad = next((v for v in values if not lo <= v <= hi), None)  # NaN fails both comparisons
    if bad is not None:
        raise ConfigError(f"{option} {text!r}: {bad:g} is out of range: give numbers from {lo:g} to {hi:g}")
    return values


def epoch_value(text: str | None, option: str = "--expert-epoch") -> float | str | None:
    if text in (None, "auto"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a number or 'auto'") from None
    if not 0 <= value <= MAX_COUNT:
        raise ConfigError(f"{option} {text!r} is out of range: give a saved epoch (0 = the initialization, fractions if saved) or 'auto'")
    return value


def crops_value(text: str) -> int | str:
    if text in ("all", "auto"):
        return text
    if not text.isdigit() or not 1 <= int(text) <= MAX_VIEWS:
        raise ConfigError(f"--crops-per-step {text!r} is not a number from 1 to {MAX_VIEWS}, 'all' or 'auto'")
    return int(text)


def local_weight_value(text: str) -> float | str:
    """--local-weight: a positive number (λ) or 'learned'."""
    if text == "learned":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1e6:
        raise ConfigError(f"--local-weight {text!r} is not a number in (0, 1e6] or 'learned'")
    return value


def _param(pair: str) -> tuple[str, object]:
    """One --param KEY=VALUE; VALUE is read as TOML (true, 50, 0.01, "embed"), else as a string."""
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--param {pair!r} is not KEY=VALUE, e.g. --param compensate=false")
    try:
        return key.strip(), tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value.strip()


def recipe_params(pairs: list[str]) -> dict:
    return dict(_param(pair) for pair in pairs)


def equal_cost_kinds(text: str | None) -> tuple[str, ...]:
    from ladd.eval.protocol import EQUAL_COST

    if text is None:
        return ()
    kinds = EQUAL_COST if text == "all" else split(text, "--equal-cost")
    bad = [k for k in kinds if k not in EQUAL_COST]
    if bad:
        raise ConfigError(f"--equal-cost {bad[0]!r} is not one of {', '.join(EQUAL_COST)} or all")
    return tuple(kinds)


def one_of(text: str, option: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ConfigError(f"{option} {text!r} is not one of {', '.join(choices)}")
    return text


def model_names(text: str, option: str) -> tuple[str, ...]:
    """Comma-separated model names, each known to the model registry."""
    from ladd.models import MODELS

    names = split(text, option)
    for name in names:
        try:
            MODELS.canonical(name)
        except LaddError as e:
            raise type(e)(f"{option}: {e}") from None
    return names


def label_method(text: str) -> str:
    return LABEL_METHODS.canonical(text)


def pool_names(text: str) -> tuple[str, ...]:
    chosen = split(text, "--pools")
    if set(chosen) - {"epoch", "batch"}:
        raise ConfigError(f"--pools {text!r}: choose epoch and/or batch, e.g. epoch,batch")
    return chosen


# --- options shared by the subcommands: one name, one help text each -------------------------
Dataset_ = Annotated[
    str,
    typer.Option(
        "--dataset",
        help=(
            "Source dataset: mnist5k (5,000 MNIST images, shipped), digits (8×8 digits, shipped), cifar10, cifar100, imagefolder, "
            "mnist-idx, imagenet, imagenette, imagewoof, imagefruit, imagemeow, imagesquawk, imageyellow."
        ),
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
        help=(
            "imagefolder, imagenet and its subsets: centre-crop and resize to this many pixels (default: imagefolder the images' "
            "own size when they share one up to 128, else 128; imagenet 64; its subsets 128)."
        ),
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
        help=(
            "Hyperparameters of a learned image method: a shipped recipe name (e.g. dm-paper, dm-mnist5k) or a .toml file. Default: "
            "the method's recipe for the dataset, else its paper recipe."
        ),
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
        help=(
            "Continue a learned image method from its last checkpoint (same result as an uninterrupted run); with none saved yet, "
            "start afresh and say so."
        ),
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help=(
            "Replace the artifact already at --out (without it, or --resume continuing the command that wrote it, an existing artifact"
            " is never replaced)."
        ),
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
        parser=checked("--param", _param),
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
        parser=checked("--labeler-model", model_names, "--labeler-model"),
        help="Labeler architecture (default: the first --model).",
    ),
]
LabelerLr = Annotated[
    float, typer.Option("--labeler-lr", min=MIN_LR, max=MAX_LR, help="Labeler learning rate (SGD, no momentum; the expert recipe, 0.01).")
]
LabelerDecay = Annotated[
    bool,
    typer.Option(
        "--labeler-decay/--labeler-constant-lr",
        help="Labeler lr ×0.1 after half its epochs (the expert recipe's --decay) instead of constant.",
    ),
]
LabelerEpochs = Annotated[
    int, typer.Option("--labeler-epochs", min=1, max=MAX_COUNT, help="Epochs to train the labeler (a checkpoint is kept for each).")
]
LabelerEpoch = Annotated[
    Optional[str],
    typer.Option(
        "--labeler-epoch",
        parser=checked("--labeler-epoch", epoch_value, "--labeler-epoch"),
        help=(
            "Early-stopped checkpoint that labels: an epoch (fractions if saved, e.g. 2.5), 'auto' (the epoch whose labels train the "
            "best student on a validation split carved from the training set), default the last trained."
        ),
    ),
]
Labels_ = Annotated[
    str,
    typer.Option(
        "--labels",
        parser=checked("--labels", label_method),
        help=(
            "Label method: ladd (dense sub-image labels + global soft labels), soft (global soft labels only: the soft-label baseline)"
            " or bptt (labels learned by truncated BPTT, no teacher)."
        ),
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
        help=(
            "Pretrained labeler instead of a trained expert: a weights file (.pth/.pt, read with torch.load weights_only; or "
            ".safetensors) in torchvision's or timm's ResNet-18 layout (recognized as resnet18-imagenet, input normalization converted"
            " to ImageNet's) or ladd's (name the model with --labeler-model). See README 'Pretrained teachers'."
        ),
    ),
]
LabelerClasses = Annotated[
    Optional[str],
    typer.Option(
        "--labeler-classes",
        help=(
            "With --labeler-weights: the head row of each dataset class, in the dataset's class order (an ImageNet subset's ImageNet "
            "class indices), e.g. ImageNette: 0,217,482,491,497,566,569,571,574,701."
        ),
    ),
]
LabelDtype = Annotated[
    str,
    typer.Option(
        "--label-dtype",
        parser=checked("--label-dtype", one_of, "--label-dtype", ("float32", "float16")),
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
        parser=checked("--preset", one_of, "--preset", tuple(PRESETS)),
        help=(
            f"Evaluation budget, the defaults of --model, --protocol, --seeds and --crops-per-step (each given option wins): "
            f"{_PRESETS_HELP}. quick finishes in minutes on a CPU; paper is the LADD paper's protocol."
        ),
    ),
]
DistillModel = Annotated[
    str,
    typer.Option(
        "--model",
        parser=checked("--model", model_names, "--model"),
        help=(
            "Network the image method distills with: DM's and DC/DSA's random networks, MTT's expert trajectories (`ladd experts "
            "--model`), herding's feature expert. random, import, sre2l/lpld, lic and rded do not use it."
        ),
    ),
]
LabelModel = Annotated[
    str,
    typer.Option(
        "--model",
        parser=checked("--model", model_names, "--model"),
        help="Labeler architecture (unless --labeler-model is given); also the students of --labeler-epoch auto and of bptt labels.",
    ),
]
ExpertsModel = Annotated[
    str,
    typer.Option(
        "--model",
        parser=checked("--model", model_names, "--model"),
        help="Expert architecture; `ladd distill --images mtt` reads the experts of its own --model (the same default).",
    ),
]
EvalModel = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        parser=checked("--model", model_names, "--model"),
        help="Student architecture(s), comma-separated, e.g. convnet,alexnet,vgg11,resnet18,vit (default: the --preset's).",
    ),
]
Methods = Annotated[
    Optional[str],
    typer.Option(
        "--methods",
        help=(
            "Comma-separated: baseline, ladd, soft (= global-soft), global-both, local-hard, local-dense, local-both, fkd (replays a "
            "stored relabel: `ladd relabel`), or '+'-joined terms. Default: baseline plus the method the artifact's labels are for "
            "(LIC/RDED region labels: local-hard and local-dense)."
        ),
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
        parser=checked("--soft-loss", one_of, "--soft-loss", ("ce", "kl")),
        help="Student loss on soft/dense labels: ce or kl (default: the protocol's).",
    ),
]
Protocol_ = Annotated[
    str,
    typer.Option(
        "--protocol",
        parser=checked("--protocol", load_protocol),
        help=(
            "Protocol the students train under (optimizer, schedule, epochs, per-model lr, EMA, soft-label loss): dc-cpu (dc with 150 "
            "epochs), dc, glad, fkd, lic, softlabel, or a .toml file."
        ),
    ),
]
EvalProtocol = Annotated[
    Optional[str],
    typer.Option(
        "--protocol",
        parser=checked("--protocol", load_protocol),
        help=(
            "Evaluation protocol (optimizer, schedule, epochs, per-model lr, EMA, soft-label loss): dc-cpu (dc with 150 epochs), dc, "
            "glad, fkd, lic, softlabel, or a .toml file; --epochs, --lr and --soft-loss override it only when given. Default: the "
            "--preset's; fkd for methods that replay a stored relabel (fkd). Recorded in every result row."
        ),
    ),
]
SelectLr = Annotated[
    Optional[str],
    typer.Option(
        "--select-lr",
        parser=checked("--select-lr", floats, "--select-lr", MIN_LR, MAX_LR),
        help=(
            "Comma-separated student lr candidates, e.g. 0.003,0.01,0.03: the one whose students score best on a validation split "
            "carved from the training split is used; the test split is never read to choose."
        ),
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
        parser=checked("--crops-per-step", crops_value),
        help=(
            "K of the N² local views drawn per image and step, scaled by N²/K: a number, 'all', or 'auto' (all views for tiny sets, "
            "down to 5 so an epoch sees ~500 local views). Default: the --preset's."
        ),
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
        parser=checked("--soft-loss", one_of, "--soft-loss", ("ce", "kl")),
        help=(
            "Student loss on soft/dense labels: ce (soft-target cross-entropy, the reference) or kl (same gradients, reads 0 at a "
            "perfect fit)."
        ),
    ),
]
LocalReduction = Annotated[
    Optional[str],
    typer.Option(
        "--local-reduction",
        parser=checked("--local-reduction", one_of, "--local-reduction", ("mean", "sum")),
        help=(
            "How the N² local-view losses combine: mean or sum (LADD Eq. 5 and LIC Eq. 9 as written). Default: sum for region labels "
            "(LIC, RDED), mean for LADD's dense labels."
        ),
    ),
]
Out = Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: runs/<timestamp>/).")]
ArtifactOut = Annotated[Optional[Path], typer.Option("--out", help="Artifact folder to write (default: runs/<timestamp>/artifact).")]
Track = Annotated[
    Optional[str],
    typer.Option(
        "--track",
        parser=checked("--track", one_of, "--track", track.KINDS),
        help=(
            "Also send every student's per-epoch loss and lr (and test accuracy with --curve-every) and the final rows to csv "
            "(curves.csv, rows.csv), tensorboard (pip install 'ladd\\[tensorboard]'; tensorboard --logdir OUT) or wandb (pip install "
            "'ladd\\[wandb]'; an offline run under OUT/wandb, uploaded later by wandb sync), in the output folder."
        ),
    ),
]
Device = Annotated[str, typer.Option("--device", parser=checked("--device", Runtime.from_name), help="cpu, cuda, cuda:N or auto.")]
# the trainer's speed options (`ladd.core.runtime.Speed`): every command with --device takes them (`trains`)
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        parser=checked("--precision", one_of, "--precision", ("fp32", "bf16", "fp16")),
        help=(
            "Forward passes of training and labelling: fp32 (the default; every recorded result), bf16 (autocast; GPUs and CPUs with "
            "AVX-512 BF16/AMX) or fp16 (autocast + gradient scaler; CUDA only). Weights, optimizer and losses stay fp32."
        ),
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help=(
            "torch.compile the networks being trained (forward and backward): faster steps after a one-off compile of tens of seconds "
            "per process."
        ),
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
        help=(
            "Deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic, fixed cuBLAS workspace): the same seed "
            "gives the same weights on a GPU too (on CPU it already does). Not with --compile."
        ),
    ),
]

MicroBatchOpt = Annotated[
    Optional[int],
    typer.Option(
        "--micro-batch",
        min=1,
        max=MAX_BATCH,
        help=(
            "At most M images per forward pass (per rank under torchrun): each step's batch is split into parts whose gradients "
            "accumulate, so the step is the same in a part's memory (LADD's every-view students forward batch × N² sub-images). "
            "BatchNorm layers then normalize each part over its own images."
        ),
    ),
]


def _speed_options(
    precision: PrecisionOpt = "fp32",
    compile: CompileOpt = False,
    channels_last: ChannelsLastOpt = False,
    deterministic: DeterministicOpt = False,
    micro_batch: MicroBatchOpt = None,
):
    """The speed options every training command takes (this function only declares them)."""


SPEED_OPTIONS = inspect.signature(_speed_options, eval_str=True).parameters


def pop_speed(kw: dict) -> Speed:
    """The speed options, taken out of a command's keyword arguments."""
    return Speed(**{k: kw.pop(k) for k in SPEED_OPTIONS})


def option_group(declaration, name: str, build=dict, check=None):
    """A decorator giving a command the options `declaration` declares (a function that only
    declares them), after the command's own: the command's parameter `name` receives
    `build(**those options)`. `check(value, options)` runs on it first (before the body loads
    anything). Commands sharing options declare them once this way."""
    group = inspect.signature(declaration, eval_str=True).parameters

    def decorate(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != name]

        def wrapper(*args, **kw):
            bound = wrapper.__signature__.bind(*args, **kw)  # called from Python too: unnamed options take their defaults
            bound.apply_defaults()
            kw = dict(bound.arguments)
            value = build(**{k: kw.pop(k) for k in group})
            if check is not None:
                check(value, kw)
            return command(**kw, **{name: value})

        wrapper.__signature__ = inspect.Signature([*own, *group.values()])
        wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = command.__name__, command.__qualname__, command.__doc__
        return wrapper

    return decorate


# every command with --device takes the speed options: its `speed` (a `Speed`) is checked against the
# device before the body runs (fp16 on a CPU is refused before any data is loaded)
trains = option_group(_speed_options, "speed", Speed, check=lambda speed, kw: Runtime.from_name(kw["device"], speed))


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
        parser=checked("--pool", one_of, "--pool", POOLS),
        help=(
            "Method fkd: what pruning keeps and replays: whole stored epochs (epoch) or relabel batches from any epoch forming new "
            "epochs (batch, LPLD's improved label pool)."
        ),
    ),
]
PruneMetric = Annotated[
    str,
    typer.Option(
        "--prune-metric",
        parser=checked("--prune-metric", one_of, "--prune-metric", METRICS),
        help="Method fkd: which units pruning keeps: random (LPLD), or ranked by correct, confidence, diff, diff_signed, cut_ratio.",
    ),
]
PruneKeep = Annotated[
    str,
    typer.Option(
        "--prune-keep",
        parser=checked("--prune-keep", one_of, "--prune-keep", KEEPS),
        help="With a ranking --prune-metric: keep the easy, hard or uniformly spaced units.",
    ),
]
ReplayBatches = Annotated[
    str,
    typer.Option(
        "--replay-batches",
        parser=checked("--replay-batches", one_of, "--replay-batches", BATCHES),
        help=(
            "Method fkd: train on the stored relabel batches, one step each, at the relabel batch size (stored, as SRe²L/LPLD), or on "
            "the kept samples reshuffled into batches of --batch-size (shuffled)."
        ),
    ),
]


def _not_a_run_folder(path: Path | None) -> Path | None:
    """An artifact argument given a run folder (`ladd run --out DIR`): name the artifact inside it."""
    if path is not None and not (path / MANIFEST).is_file() and (path / "artifact" / MANIFEST).is_file():
        raise ArtifactError(f"{path} is a run folder, not an artifact: pass {path / 'artifact'}")
    return path


ArtifactArg = Annotated[
    Path,
    typer.Argument(
        callback=_not_a_run_folder,
        help="An artifact folder written by `ladd distill` or `ladd run` (`ladd run --out DIR` writes DIR/artifact).",
    ),
]


# --- option groups: the options several commands take, declared once each (`option_group`) -----


def absolute(data_dir: str | None) -> str | None:
    """--data-dir as recorded (artifacts, results): absolute, so it means the same from any folder."""
    return None if data_dir is None else str(Path(data_dir).expanduser().resolve())


def source_config(dataset: str, data_dir: str | None, resolution: int | None, skip_unreadable: bool) -> SourceConfig:
    return SourceConfig(dataset=dataset, data_dir=absolute(data_dir), resolution=resolution, skip_unreadable=skip_unreadable)


def _source_options(
    dataset: Dataset_ = "mnist5k", data_dir: DataDir = None, resolution: Resolution = None, skip_unreadable: SkipBad = False
):
    """Where the real data comes from (declares the options; the command receives a `SourceConfig`)."""


def _image_options(
    ipc: Ipc = 10,
    images: Images = "random",
    import_path: ImportPath = None,
    seed: Seed = 0,
    recipe: Recipe = None,
    resume: Resume = False,
    float_images: FloatImages = False,
    buffer: Buffer = None,
    param: Param = None,
):
    """The image stage's settings, `ladd distill`'s and `ladd run`'s (the command receives them as a dict)."""


KeepSoft = Annotated[
    bool,
    typer.Option(
        "--keep-soft-labels",
        help="--labels ladd: keep the artifact's global soft labels (learned with MTT's images: --param learn_labels=true) "
        "beside the new dense labels; train on both with --methods global-soft+local-dense.",
    ),
]


def config_default(config, field: str):
    """A config model's default, so an option's default cannot drift from the API's."""
    return config.model_fields[field].default


def _label_options(
    labels: Labels_ = config_default(LabelConfig, "method"),
    grid: Grid = config_default(LabelConfig, "n"),
    coverage: Coverage = config_default(LabelConfig, "r"),
    labeler_model: LabelerModel = None,
    labeler_epochs: LabelerEpochs = config_default(ExpertConfig, "epochs"),
    labeler_lr: LabelerLr = config_default(ExpertConfig, "lr"),
    labeler_decay: LabelerDecay = config_default(ExpertConfig, "decay"),
    labeler_epoch: LabelerEpoch = None,
    labeler_dir: LabelerDir = None,
    labeler_saves_per_epoch: SavesPerEpoch = config_default(ExpertConfig, "saves_per_epoch"),
    ensemble: Ensemble = config_default(LabelConfig, "ensemble"),
    temperature: Temperature = config_default(LabelConfig, "temperature"),
    top_k: TopK = None,
    labeler_weights: LabelerWeights = None,
    labeler_classes: LabelerClasses = None,
    label_dtype: LabelDtype = config_default(LabelConfig, "dtype"),
    keep_soft_labels: KeepSoft = False,
):
    """The label stage's settings, `ladd label`'s and `ladd run`'s (the command receives them as a dict)."""


LocalWeight = Annotated[
    Optional[str],
    typer.Option(
        "--local-weight",
        parser=checked("--local-weight", local_weight_value),
        help=(
            "λ in global + λ·local: the weight of the local-view terms (LADD Eq. 5: 1); sweep it and choose with `ladd leaderboard`. "
            "'learned': each term's weight trains with the student (uncertainty weighting)."
        ),
    ),
]
Ema = Annotated[
    Optional[float],
    typer.Option(
        "--ema",
        min=0.0,
        max=0.9999,
        help=(
            "Test an EMA of the student's weights with this β (GLaD's: updated once per epoch, decay min(1 − 1/k, β) after "
            "epoch k; GLaD: 0.995); 0 = none. Default: the protocol's."
        ),
    ),
]


def _student_options(
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
    local_weight: LocalWeight = None,
    ema: Ema = None,
    track_: Track = None,
):
    """How the students train, `ladd eval`'s and `ladd run`'s (the command receives them as a dict)."""


reads_source = option_group(_source_options, "source", source_config)
makes_images = option_group(_image_options, "imaging")
makes_labels = option_group(_label_options, "labelling")
trains_students = option_group(_student_options, "students")


def check_pretrained(who: str, weights, classes, *, epoch=None, epochs=None, ensemble: int = 1) -> None:
    """Options refused rather than ignored, before any work: --WHO-classes (a pretrained WHO's head
    rows) without --WHO-weights, and with them the options of a WHO that ladd trains: its
    checkpoint (--WHO-epoch), its training (--WHO-epochs) or several members (--ensemble)."""
    if weights is None:
        if classes is not None:
            raise ConfigError(f"--{who}-classes is for --{who}-weights (a pretrained {who}'s head rows): leave it out")
        return
    for given, option, what in (
        (epoch is not None, f"--{who}-epoch", f"picks a checkpoint of a {who} ladd trains"),
        (epochs is not None, f"--{who}-epochs", f"sets how long ladd trains a {who}"),
        (ensemble > 1, "--ensemble", f"averages several {who}s ladd trains"),
    ):
        if given:
            raise ConfigError(f"{option} {what}; --{who}-weights is one trained {who} already: leave {option} out")
