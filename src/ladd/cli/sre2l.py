"""SRe²L / LPLD: `ladd squeeze`, `recover`, `relabel` (stored FKD labels) and `diversity`, with their BN teacher options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional, get_args

import typer

from ladd.cli.options import (
    ArtifactArg,
    DataDir,
    Device,
    FloatImages,
    Ipc,
    ArtifactOut,
    Overwrite,
    Param,
    Recipe,
    Resume,
    Seed,
    check_pretrained,
    checked,
    model_names,
    one_of,
    recipe_params,
    trains,
)
from ladd.cli.common import default_out, log_beside, new_artifact, open_artifact
from ladd.cli.options import reads_source
from ladd.core import logs
from ladd.core.progress import log
from ladd.pipeline import SourceConfig
from ladd.core.errors import ConfigError
from ladd.core.io import write_json
from ladd.core.limits import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_SEED,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
)
from ladd.core.progress import console
from ladd.core.runtime import Runtime, Speed
from ladd.experts import ExpertConfig
from ladd.images import IMAGE_METHODS, check_params
from ladd.images.recipes import load_recipe
from ladd.labels.relabel import RelabelConfig
from ladd import pipeline
from ladd.pipeline import ImagesConfig


app = typer.Typer()

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
        parser=checked("--teacher-model", model_names, "--teacher-model"),
        help=(
            "Teacher architecture (batch norm for squeeze/recover), e.g. convnet-bn (small sets) or resnet18-bn. Default: the "
            "dataset's lpld recipe."
        ),
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
        help=(
            "Pretrained teacher instead of a trained one: a weights file (.pth/.pt, read with torch.load weights_only; or "
            ".safetensors) in torchvision's or timm's ResNet-18 layout (recognized as resnet18-imagenet, input normalization converted"
            " to ImageNet's) or ladd's (name the model with --teacher-model). See README 'Pretrained teachers'. With --teacher-dir: "
            "the folder that records it (and squeeze's statistics)."
        ),
    ),
]
TeacherClasses = Annotated[
    Optional[str],
    typer.Option(
        "--teacher-classes",
        help=(
            "With --teacher-weights: the head row of each dataset class, in the dataset's class order (an ImageNet subset's ImageNet "
            "class indices), e.g. ImageNette: 0,217,482,491,497,566,569,571,574,701."
        ),
    ),
]


def relabel_choices(option: str, field: str):
    """A typer `parser=` refusing a value outside RelabelConfig's `field` choices, naming the CLI option."""
    return checked(option, one_of, option, get_args(RelabelConfig.model_fields[field].annotation))


def teacher_weights_config(weights, model, classes):
    from ladd.experts.pretrained import pretrained_config

    return None if weights is None else pretrained_config(weights, model, classes)


def teacher_config(data, teacher_model, teacher_epochs, ipc: int) -> ExpertConfig:
    """The teacher given, else the dataset's lpld recipe teacher: one default for squeeze, recover, relabel and diversity."""
    params = load_recipe("lpld", data.name, ipc)["params"]
    return ExpertConfig(model=teacher_model or params["teacher_model"], epochs=teacher_epochs or params["teacher_epochs"])


# --- SRe²L / LPLD: `ladd squeeze`, `ladd recover`, `ladd diversity` -----------------------------
RecoverImages = Annotated[
    str,
    typer.Option(
        "--images",
        help=(
            "Recover method: sre2l (global BN statistics, batches mixing classes) or lpld (class-wise BN statistics, one class per batch)."
        ),
    ),
]


def teacher_folder(data, teacher_dir, teacher_model, teacher_epochs, ipc: int, runtime: Runtime, weights=None, classes=None) -> str:
    """The teacher folder: --teacher-weights set up (in --teacher-dir or the cache), else --teacher-dir as is,
    else the model/epochs given or the dataset's lpld recipe, trained or reused."""
    from ladd.experts.pretrained import prepare
    from ladd.images.squeeze import teacher_dir as resolve

    if weights is not None:
        return str(prepare(data, teacher_weights_config(weights, teacher_model, classes), teacher_dir))
    teacher = teacher_config(data, teacher_model, teacher_epochs, ipc)
    return str(resolve(data, teacher_dir, teacher.model, teacher.epochs, runtime))


@app.command()
@trains
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
        str,
        typer.Option(
            "--label-kind",
            parser=relabel_choices("--label-kind", "kind"),
            help="Store teacher logits (softened by T at replay) or probabilities at T.",
        ),
    ] = "logits",
    label_dtype: Annotated[
        str,
        typer.Option(
            "--label-dtype", parser=relabel_choices("--label-dtype", "dtype"), help="float16 (the reference's --use-fp16) or float32."
        ),
    ] = "float16",
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
    flip: Annotated[
        Optional[bool],
        typer.Option(
            "--flip/--no-flip",
            help="Flip half the samples horizontally, as the reference. Default: unless the dataset's augmentation has no flip (digits).",
        ),
    ] = None,
    cutmix_per: Annotated[
        str,
        typer.Option(
            "--cutmix-per",
            parser=relabel_choices("--cutmix-per", "mix_per"),
            help="One CutMix λ and box per relabel batch (batch, the reference) or per sample.",
        ),
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
    check_pretrained("teacher", teacher_weights, teacher_classes, epoch=teacher_epoch, epochs=teacher_epochs)
    art, _, dataset = open_artifact(artifact, data_dir)
    teacher = teacher_config(dataset, teacher_model, teacher_epochs, art.manifest["ipc"])
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
        flip=flip,
        mix_per=cutmix_per,
        seed=seed,
        teacher_weights=teacher_weights_config(teacher_weights, teacher_model, teacher_classes),
    )
    from ladd import api

    with logs.to_file(log_beside(artifact)):
        art = api.relabel(artifact, dataset, cfg, api.runtime(device, speed), overwrite=overwrite)
        rel = art.manifest["relabel"]
        log(
            f"wrote {epochs} relabel epochs × {rel['samples']} images to {artifact / 'relabel'} "
            f"({sum(b['raw'] for b in rel['storage'].values()):,} B, {rel['label_to_image_ratio']:.2f}× the images)"
        )


@app.command()
@trains
@reads_source
def squeeze(
    source: SourceConfig,
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

    check_pretrained("teacher", teacher_weights, teacher_classes, epochs=teacher_epochs)

    data, runtime = pipeline.load_source(source), Runtime.from_name(device, speed)
    cfg = SqueezeConfig(batch_size=batch_size, momentum=momentum, seed=seed)
    directory = Path(teacher_folder(data, teacher_dir, teacher_model, teacher_epochs, 1, runtime, teacher_weights, teacher_classes))
    run_squeeze(data, directory, cfg, runtime)
    log(f"teacher and class-wise statistics in {directory} (use --teacher-dir {directory})")


@app.command()
@trains
@reads_source
def recover(
    source: SourceConfig,
    images: RecoverImages = "lpld",
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
    out: ArtifactOut = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """SRe²L/LPLD recover: synthesize IPC images per class from a BN teacher (the same image
    methods `ladd distill --images sre2l|lpld` runs); checkpointed per batch (LPLD: per class).
    Under torchrun the batches are shared out over the ranks; --resume continues each from its checkpoint."""
    from ladd.images.recover import METHODS

    check_pretrained("teacher", teacher_weights, teacher_classes, epochs=teacher_epochs)
    method = IMAGE_METHODS.canonical(images)
    if method not in METHODS:
        raise ConfigError(f"--images {images}: recover runs {' or '.join(METHODS)}; other methods run through `ladd distill`")
    out = new_artifact(out or default_out() / "artifact", overwrite or resume)
    params = recipe_params(param or [])
    check_params(method, params)  # before any data is loaded
    from ladd import api

    data, runtime = api.load_dataset(source), api.runtime(device, speed)
    with logs.to_file(log_beside(out)):
        if teacher_weights is not None or (teacher_dir is None and (teacher_model or teacher_epochs)):
            teacher_dir = teacher_folder(data, teacher_dir, teacher_model, teacher_epochs, ipc, runtime, teacher_weights, teacher_classes)
        cfg = ImagesConfig(
            method=method, ipc=ipc, seed=seed, recipe=recipe, resume=resume, float_images=float_images, teacher=teacher_dir, params=params
        )
        art = api.distill(data, cfg, source, runtime)
        api.save_artifact(out, art)
        log(f"wrote artifact {out} ({len(art.images)} images, {method})")


@app.command()
@trains
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
    """Diversity of an artifact in a teacher's feature space: within-class cosine similarity and MMD² to the real data.

    The mean within-class cosine similarity is LPLD's Table 1; MMD² to the real data its Eq. 5."""
    from ladd.eval.diversity import diversity as measure
    from ladd.images.squeeze import load_teacher

    check_pretrained("teacher", teacher_weights, teacher_classes, epochs=teacher_epochs)
    art, _, data = open_artifact(artifact, data_dir)
    runtime = Runtime.from_name(device, speed)
    directory = Path(
        teacher_folder(data, teacher_dir, teacher_model, teacher_epochs, art.manifest["ipc"], runtime, teacher_weights, teacher_classes)
    )
    model, prov = load_teacher(directory, data, runtime, need_bn=False)
    result = {
        "artifact": str(artifact.resolve()),
        "teacher": {k: prov[k] for k in ("directory", "model", "epoch", "checkpoint_sha256", "test_acc")},
        **measure(model, art.images, art.labels, data, real_per_class, seed),
    }
    out = out or default_out() / "diversity.json"
    write_json(out, result)
    cos = result["within_class_cosine"]
    console.print(
        f"{artifact}: within-class cosine similarity {'n/a (IPC 1)' if cos is None else f'{cos:.4f}'} "
        f"(real images {result['real_within_class_cosine']:.4f}) · MMD² to real {result['mmd2']:.4f} · wrote {out}"
    )
