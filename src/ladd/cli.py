"""`ladd` command line: options → typed configs → pipeline stages. No logic of its own."""

from __future__ import annotations

import inspect
import sys
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

import ladd
from ladd.artifact import load_artifact, save_artifact
from ladd.core.errors import LaddError
from ladd.core.io import write_json, write_text
from ladd.core.progress import console
from ladd.core.runtime import Runtime
from ladd.cost.flops import UNIT
from ladd.eval.protocol import EvalConfig, default_methods, evaluate, methods_for
from ladd.experts import ExpertConfig, cache_root, ensure_expert, in_buffer
from ladd.labels import LABEL_METHODS
from ladd.labels.bptt import BpttConfig
from ladd import pipeline
from ladd.pipeline import ImagesConfig, LabelConfig, SourceConfig
from ladd.report.plots import accuracy_vs_cost
from ladd.report.tables import markdown, rich_table

app = typer.Typer(
    name="ladd",
    help="Label-centric dataset distillation: distill images, add LADD dense labels, evaluate fairly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Quick defaults of `ladd run` (see its help for what they trade away).
QUICK_MODEL = "convnet-w64"
QUICK_EPOCHS = 150

# --- options shared by the subcommands: one name, one help text each -------------------------
Dataset_ = Annotated[str, typer.Option("--dataset", help="Source dataset: mnist5k, digits, cifar10, cifar100, imagefolder, mnist-idx.")]
DataDir = Annotated[Optional[str], typer.Option("--data-dir", help="Folder of an on-disk dataset (cifar10/100, imagefolder, mnist-idx).")]
Resolution = Annotated[Optional[int], typer.Option("--resolution", help="imagefolder only: centre-crop and resize to this many pixels (default 128).")]
SkipBad = Annotated[bool, typer.Option("--skip-unreadable", help="imagefolder only: skip unreadable image files with a warning instead of stopping.")]
Ipc = Annotated[int, typer.Option("--ipc", help="Images per class.")]
Images = Annotated[str, typer.Option("--images", help="Image method: random, herding, dm, dc, dsa, mtt, lic, rded, or import (a set made by another tool).")]
Recipe = Annotated[Optional[str], typer.Option("--recipe", help="Hyperparameters of a learned image method: a shipped recipe name (e.g. dm-paper, dm-mnist5k) or a .toml file. Default: the method's recipe for the dataset, else its paper recipe.")]
FloatImages = Annotated[bool, typer.Option("--float-images", help="Learned image methods: store float32 pixels instead of uint8 (4× the image bytes; compare both with `ladd eval`).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue a learned image method from its last checkpoint (same result as an uninterrupted run).")]
Buffer = Annotated[Optional[str], typer.Option("--buffer", help="For --images mtt: the expert folder written by `ladd experts --out` (default: the expert cache).")]
Param = Annotated[Optional[list[str]], typer.Option("--param", help="Override one recipe parameter, KEY=VALUE (repeatable; TOML values), e.g. --param compensate=false --param iterations=50.")]
ImportPath = Annotated[Optional[str], typer.Option("--import-path", help="For --images import: a .safetensors, .npz or .pt file with 'images' and 'labels'.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the image stage (which real images are drawn).")]
Grid = Annotated[int, typer.Option("--grid", help="LADD's N: each image is cut into N×N sub-images.")]
Coverage = Annotated[float, typer.Option("--coverage", help="LADD's R: the fraction of each axis a sub-image covers, in (0, 1].")]
LabelerModel = Annotated[Optional[str], typer.Option("--labeler-model", help="Labeler architecture (default: the first --model).")]
LabelerEpochs = Annotated[int, typer.Option("--labeler-epochs", help="Epochs to train the labeler (a checkpoint is kept for each).")]
LabelerEpoch = Annotated[Optional[str], typer.Option("--labeler-epoch", help="Early-stopped checkpoint that labels: an epoch (fractions if saved, e.g. 2.5), 'auto' (the epoch whose labels train the best student on a validation split carved from the training set), default the last trained.")]
Labels_ = Annotated[str, typer.Option("--labels", help="Label method: ladd (dense sub-image labels + global soft labels), soft (global soft labels only: the soft-label baseline) or bptt (labels learned by truncated BPTT, no teacher).")]
Ensemble = Annotated[int, typer.Option("--ensemble", help="Average the logits of K experts (seeds 0..K-1), then softmax.")]
Temperature = Annotated[float, typer.Option("--temperature", help="T in softmax(logits / T); >1 flattens. (The no-distillation code's --temp multiplies logits: its t is 1/T.)")]
TopK = Annotated[Optional[int], typer.Option("--top-k", help="Keep the k largest probabilities of every label, zero the rest, no renormalization.")]
SavesPerEpoch = Annotated[int, typer.Option("--labeler-saves-per-epoch", help="Also checkpoint the labeler at 1/f fractions of each epoch (fine-grained early stopping).")]
LabelerDir = Annotated[Optional[str], typer.Option("--labeler-dir", help="Labeler folder to train into or reuse (default: a cache under $LADD_CACHE or ~/.cache/ladd).")]
LabelDtype = Annotated[str, typer.Option("--label-dtype", help="Stored dtype of soft/dense labels: float32 or float16.")]
Model = Annotated[str, typer.Option("--model", help="Evaluation model(s), comma-separated, e.g. convnet,alexnet,vgg11,resnet18,vit.")]
Methods = Annotated[Optional[str], typer.Option("--methods", help="Comma-separated: baseline, ladd, soft (= global-soft), global-both, local-hard, local-dense, local-both, or '+'-joined terms. Default: baseline plus the method the artifact's labels are for.")]
Seeds = Annotated[int, typer.Option("--seeds", help="Students trained per method and model (seeds 0..K-1); mean ± std is reported.")]
Epochs = Annotated[int, typer.Option("--epochs", help="Student training epochs, lr ×0.1 at half (the DC/DSA/DM reference protocol uses 1000 with DSA).")]
Lr = Annotated[float, typer.Option("--lr", help="Student SGD learning rate (momentum 0.9, weight decay 5e-4, batch 256).")]
Crops = Annotated[str, typer.Option("--crops-per-step", help="K of the N² local views drawn per image and step, scaled by N²/K: a number, 'all', or 'auto' (all views for tiny sets, down to 5 so an epoch sees ~500 local views).")]
BpttIterations = Annotated[int, typer.Option("--bptt-iterations", help="bptt labels: label updates (each unrolls a fresh student).")]
BpttUnroll = Annotated[int, typer.Option("--bptt-unroll", help="bptt labels: T, student steps per update.")]
BpttBackprop = Annotated[int, typer.Option("--bptt-backprop", help="bptt labels: M <= T, last steps the label gradient flows through.")]
SoftLoss = Annotated[str, typer.Option("--soft-loss", help="Student loss on soft/dense labels: ce (soft-target cross-entropy, the reference) or kl (same gradients, reads 0 at a perfect fit).")]
LocalReduction = Annotated[str, typer.Option("--local-reduction", help="How the N² local-view losses combine: mean (default; stable at lr 0.01) or sum (Eq. 5 literally).")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Output folder (default: runs/<timestamp>/).")]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
ArtifactArg = Annotated[Path, typer.Argument(help="An artifact folder written by `ladd distill` or `ladd run`.")]


def _crops(text: str) -> int | str:
    if text in ("all", "auto"):
        return text
    if not text.isdigit() or int(text) < 1:
        raise LaddError(f"--crops-per-step {text!r} is not a positive number, 'all' or 'auto'")
    return int(text)


def _params(pairs: list[str]) -> dict:
    """--param KEY=VALUE pairs; VALUE is read as TOML (true, 50, 0.01, "embed"), else as a string."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LaddError(f"--param {pair!r} is not KEY=VALUE, e.g. --param compensate=false")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


def _split(text: str, option: str = "--model") -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise LaddError(f"{option} is empty: give at least one name")
    return names


def _default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def _label_config(models, labels, grid, coverage, labeler_model, labeler_epochs, labeler_epoch, labeler_dir,
                  saves_per_epoch, ensemble, temperature, top_k, label_dtype, bptt: BpttConfig | None = None) -> LabelConfig:
    """The label stage's config; an 'auto' epoch is left unset here and chosen by `_auto_epoch`."""
    epoch = _epoch(labeler_epoch, "--labeler-epoch")
    return LabelConfig(
        method=labels, n=grid, r=coverage, epoch=None if epoch == "auto" else epoch, labeler_dir=labeler_dir, dtype=label_dtype,
        ensemble=ensemble, temperature=temperature, top_k=top_k, bptt=bptt or BpttConfig(),
        labeler=ExpertConfig(model=labeler_model or models[0], epochs=labeler_epochs, saves_per_epoch=saves_per_epoch),
    )


def _auto_epoch(cfg: LabelConfig, data, src: SourceConfig, ipc: int, runtime: Runtime, **students) -> LabelConfig:
    """--labeler-epoch auto: the checkpoint whose labels train the best students on a validation
    split carved from the training set (cached under $LADD_CACHE/selection)."""
    from ladd.experiments.common import Setup
    from ladd.experiments.expert_epoch import select_epoch

    setup = Setup(source=src, teacher=cfg.model_copy(update={"epoch": None, "labeler_dir": None}), **students)
    epoch = select_epoch(data, setup, ipc, runtime, cache_root() / "selection")
    console.print(f"--labeler-epoch auto: epoch {epoch:g} trains the best students on the validation split")
    return cfg.model_copy(update={"epoch": epoch})


def _write_results(out: Path, rows: list[dict], config: dict, notes: list[str], title: str) -> None:
    write_json(out / "results.json", {"ladd_version": ladd.__version__, "flops_unit": UNIT, "config": config, "rows": rows, "notes": notes})
    write_text(out / "results.md", f"# {title}\n\n" + markdown(rows, notes) + "\n![accuracy vs cost](results.png)\n")
    accuracy_vs_cost(rows, out / "results.png")
    console.print(rich_table(rows, title=title))
    for n in notes:
        console.print(f"- {n}")
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {out / 'results.png'}")


def _source(dataset, data_dir, resolution, skip_unreadable) -> SourceConfig:
    return SourceConfig(dataset=dataset, data_dir=data_dir, resolution=resolution, skip_unreadable=skip_unreadable)


@app.command()
def distill(
    dataset: Dataset_ = "mnist5k", data_dir: DataDir = None, resolution: Resolution = None,
    skip_unreadable: SkipBad = False, ipc: Ipc = 10, images: Images = "random",
    import_path: ImportPath = None, seed: Seed = 0, model: Model = "convnet", recipe: Recipe = None,
    resume: Resume = False, float_images: FloatImages = False, buffer: Buffer = None, param: Param = None,
    out: Out = None, device: Device = "auto",
):
    """Image stage: select, learn or import IPC images per class; write an artifact (images + hard labels;
    LIC and RDED also store region labels)."""
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    cfg = ImagesConfig(method=images, ipc=ipc, seed=seed, import_path=import_path, model=_split(model)[0], recipe=recipe,
                       resume=resume, float_images=float_images, buffer=buffer, params=_params(param or []))
    art = pipeline.distill(pipeline.load_source(src), src, cfg, Runtime.from_name(device))
    out = out or _default_out() / "artifact"
    save_artifact(out, art)
    console.print(f"wrote artifact {out} ({len(art.images)} images)")


@app.command()
def label(
    artifact: ArtifactArg, labels: Labels_ = "ladd", grid: Grid = 5, coverage: Coverage = 0.625, model: Model = "convnet",
    labeler_model: LabelerModel = None, labeler_epochs: LabelerEpochs = 10, labeler_epoch: LabelerEpoch = None,
    labeler_dir: LabelerDir = None, labeler_saves_per_epoch: SavesPerEpoch = 1, ensemble: Ensemble = 1,
    temperature: Temperature = 1.0, top_k: TopK = None, label_dtype: LabelDtype = "float32",
    bptt_iterations: BpttIterations = 100, bptt_unroll: BpttUnroll = 20, bptt_backprop: BpttBackprop = 10,
    data_dir: DataDir = None, out: Out = None, device: Device = "auto",
):
    """Label stage: soft labels from an early-stopped expert (LADD's dense sub-image labels, or the
    soft-label baseline's global labels).

    Trains (or reuses from the cache) the labeler, then stores a soft label for each sub-image
    (ladd) and each whole image. Writes into the artifact unless --out is given."""
    art = load_artifact(artifact)
    src = pipeline.source_of(art)
    if data_dir is not None:
        src = src.model_copy(update={"data_dir": data_dir})
    models = _split(model)
    bptt = BpttConfig(model=models[0], iterations=bptt_iterations, unroll=bptt_unroll, backprop=bptt_backprop)
    cfg = _label_config(models, labels, grid, coverage, labeler_model, labeler_epochs, labeler_epoch, labeler_dir,
                        labeler_saves_per_epoch, ensemble, temperature, top_k, label_dtype, bptt)
    data, runtime = pipeline.load_source(src), Runtime.from_name(device)
    if labeler_epoch == "auto":
        cfg = _auto_epoch(cfg, data, src, art.manifest["ipc"], runtime, student_model=models[0])
    art = pipeline.label(art, data, cfg, runtime)
    save_artifact(out or artifact, art)
    lab = art.manifest["labels"]
    stored = ", ".join(f"{n} {tuple(t.shape)}" for n, t in art.components().items() if n.endswith("labels") and n != "labels")
    made_by = f" (labeler epoch {lab['labeler']['epoch']:g}, test acc {100 * lab['labeler']['test_acc']:.2f}%)" if "labeler" in lab else ""
    console.print(f"wrote {lab['method']} labels ({stored}) to {out or artifact}{made_by}")


@app.command("eval")
def eval_(
    artifact: ArtifactArg, methods: Methods = None, model: Model = "convnet", seeds: Seeds = 5,
    epochs: Epochs = 1000, lr: Lr = 0.01, crops_per_step: Crops = "all", local_reduction: LocalReduction = "mean",
    soft_loss: SoftLoss = "ce", data_dir: DataDir = None,
    out: Out = None, device: Device = "auto",
):
    """Evaluate an artifact: accuracy mean ± std over seeds, stored bytes and FLOPs.

    Trains fresh students for each method × model × seed and tests each once, after its final
    epoch, on the real test split; nothing is selected on test data."""
    art = load_artifact(artifact)
    src = pipeline.source_of(art)
    if data_dir is not None:
        src = src.model_copy(update={"data_dir": data_dir})
    dataset = pipeline.load_source(src)
    pipeline.check_same_data(art, dataset)
    chosen = _split(methods, "--methods") if methods else default_methods(art)
    cfg = EvalConfig(methods=chosen, models=_split(model), seeds=seeds, epochs=epochs, lr=lr,
                     crops_per_step=_crops(crops_per_step), local_reduction=local_reduction, soft_loss=soft_loss)
    rows = evaluate(art, dataset, cfg, Runtime.from_name(device))
    out = out or _default_out()
    _write_results(out, rows, {"artifact": str(artifact), "eval": cfg.model_dump()}, _notes(art, cfg), f"ladd eval · {dataset.name}")


@app.command()
def experts(
    dataset: Dataset_ = "mnist5k", data_dir: DataDir = None, resolution: Resolution = None,
    skip_unreadable: SkipBad = False, model: Model = "convnet",
    num_experts: Annotated[int, typer.Option("--num-experts", help="Experts to train (seeds 0..E-1); MTT samples among them.")] = 100,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs per expert; every epoch is checkpointed (the trajectory).")] = 50,
    out: Annotated[Optional[Path], typer.Option("--out", help="Buffer folder: experts go to OUT/expert_000 … for `--images mtt --buffer OUT` (default: the expert cache).")] = None,
    device: Device = "auto",
):
    """Train expert trajectories (MTT's buffer): E experts, a checkpoint every epoch, cached and resumable."""
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    data = pipeline.load_source(src)
    runtime = Runtime.from_name(device)
    for seed in range(num_experts):
        cfg = ExpertConfig(model=_split(model)[0], epochs=epochs, seed=seed)
        directory, _ = ensure_expert(data, cfg, None if out is None else in_buffer(out, seed), runtime)
    console.print(f"{num_experts} experts of {epochs} epochs ready under {directory.parent}")


@app.command()
def info(artifact: ArtifactArg):
    """Verify an artifact (hashes, shapes, label validity) and summarize what it stores."""
    art = load_artifact(artifact)
    m = art.manifest
    console.print(f"[bold]{artifact}[/] · ladd {m['ladd_version']} · schema {m['schema_version']} · hashes verified")
    recipe = (m["images"].get("recipe") or {}).get("name")
    console.print(
        f"source {m['source']['dataset']} · {len(m['source']['class_names'])} classes · IPC {m['ipc']} · "
        f"images: {m['images']['method']}" + (f" (recipe {recipe})" if recipe else "")
    )
    for name, b in m["storage"].items():
        console.print(f"  {name:<13} {str(m['files'][name + '.safetensors']['shape']):<22} {b['raw']:>10,} B raw  {b['zip']:>10,} B zip")
    if "labels" in m:
        lab = m["labels"]
        geometry = f" · N={lab['subsample']['n']} R={lab['subsample']['r']}" if "subsample" in lab else ""
        teacher = lab.get("labeler")
        made_by = (f" · labeler {teacher['model']} epoch {teacher['epoch']:g}" + (f" × {teacher['ensemble']} experts" if teacher.get("ensemble", 1) > 1 else "")
                   + f" (test acc {100 * teacher['test_acc']:.2f}%)") if teacher else ""
        if "observer" in lab:  # region labels of squeezed images (LIC, RDED)
            made_by = f" · observer {lab['observer']['model']} ({100 * lab['observer']['train_check_acc']:.1f}% on training images)"
        console.print(f"labels: {lab['method']}{geometry}{made_by}")


@app.command()
def run(
    dataset: Dataset_ = "mnist5k", data_dir: DataDir = None, resolution: Resolution = None,
    skip_unreadable: SkipBad = False, ipc: Ipc = 10, images: Images = "random", import_path: ImportPath = None,
    seed: Seed = 0, recipe: Recipe = None, resume: Resume = False, float_images: FloatImages = False, buffer: Buffer = None,
    labels: Labels_ = "ladd", grid: Grid = 5, coverage: Coverage = 0.625, labeler_model: LabelerModel = None,
    labeler_epochs: LabelerEpochs = 10, labeler_epoch: LabelerEpoch = None, labeler_dir: LabelerDir = None,
    labeler_saves_per_epoch: SavesPerEpoch = 1, ensemble: Ensemble = 1, temperature: Temperature = 1.0, top_k: TopK = None,
    label_dtype: LabelDtype = "float32", model: Model = QUICK_MODEL, methods: Methods = None,
    seeds: Seeds = 3, epochs: Epochs = QUICK_EPOCHS, lr: Lr = 0.01, crops_per_step: Crops = "auto",
    local_reduction: LocalReduction = "mean", soft_loss: SoftLoss = "ce", out: Out = None, device: Device = "auto",
):
    """Everything end to end: images → labeler → dense labels → baseline (hard labels) vs LADD.

    With no options: mnist5k, IPC 10, random real images, a 10-epoch ConvNet labeler, N=5,
    R=62.5%, students evaluated over 3 seeds. The quick default finishes in minutes on 2 CPU cores
    and trades away: width-64 ConvNets (the papers use width 128: --model convnet), 150 student
    epochs (the reference protocol uses 1000: --epochs 1000), 5 of the 25 local views per image and
    step on large sets (K=5 for IPC 10 on 10 classes, all 25 for IPC 1; scaled by 25/K, an unbiased
    estimate of the full loss: --crops-per-step all), 3 seeds instead of 5.
    """
    t0 = time.perf_counter()
    runtime = Runtime.from_name(device)
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    models = _split(model)
    data = pipeline.load_source(src)
    label_cfg = _label_config(models, labels, grid, coverage, labeler_model, labeler_epochs, labeler_epoch, labeler_dir,
                              labeler_saves_per_epoch, ensemble, temperature, top_k, label_dtype)
    chosen = _split(methods, "--methods") if methods else methods_for(LABEL_METHODS.canonical(labels))
    cfg = EvalConfig(methods=chosen, models=models, seeds=seeds, epochs=epochs, lr=lr, crops_per_step=_crops(crops_per_step),
                     local_reduction=local_reduction, soft_loss=soft_loss)  # fail before any training
    images_cfg = ImagesConfig(method=images, ipc=ipc, seed=seed, import_path=import_path, model=models[0], recipe=recipe,
                              resume=resume, float_images=float_images, buffer=buffer)
    art = pipeline.distill(data, src, images_cfg, runtime)
    if labeler_epoch == "auto":
        label_cfg = _auto_epoch(label_cfg, data, src, art.manifest["ipc"], runtime, student_model=models[0],
                                student_epochs=epochs, student_lr=lr, seeds=seeds, soft_loss=soft_loss)
    art = pipeline.label(art, data, label_cfg, runtime)
    out = out or _default_out()
    save_artifact(out / "artifact", art)
    art = load_artifact(out / "artifact")  # evaluate exactly what was stored (e.g. float16 labels)
    rows = evaluate(art, data, cfg, runtime)
    notes = _notes(art, cfg) + [f"total wall time {time.perf_counter() - t0:.0f} s, data loading and labeler training included (unless the labeler was reused from the cache)"]
    config = {"source": src.model_dump(), "images": images_cfg.model_dump(), "labels": label_cfg.model_dump(), "eval": cfg.model_dump(), "device": str(runtime.device)}
    _write_results(out, rows, config, notes, f"ladd run · {data.name} · IPC {art.manifest['ipc']}")


# --- experiments: `ladd experiment NAME` ---------------------------------------------------------
experiment_app = typer.Typer(help="Soft-label experiments (A Label is Worth a Thousand Images): JSON + markdown + PNG into --out, resumable.",
                             no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")

ExpertModel = Annotated[str, typer.Option("--expert-model", help="Expert (teacher) architecture.")]
ExpertEpochs = Annotated[int, typer.Option("--expert-epochs", help="Epochs the expert trains (SGD, no momentum/weight decay, DSA); a checkpoint each.")]
ExpertLr = Annotated[float, typer.Option("--expert-lr", help="Expert learning rate (the reference uses a small one for fine-grained early checkpoints).")]
ExpertSaves = Annotated[int, typer.Option("--expert-saves-per-epoch", help="Also checkpoint the expert at 1/f fractions of each epoch.")]
ExpertEpoch = Annotated[Optional[str], typer.Option("--expert-epoch", help="Checkpoint that labels: a number, 'auto' (selected per IPC on a validation split carved from the training set), default the last.")]
StudentModel = Annotated[str, typer.Option("--model", help="Student architecture.")]
ValPerClass = Annotated[int, typer.Option("--val-per-class", help="Training images per class held out as the validation split for epoch selection.")]
IpcList = Annotated[str, typer.Option("--ipc", help="Comma-separated images per class.")]
ExpOut = Annotated[Path, typer.Option("--out", help="Output folder; re-running with the same folder resumes.")]


def _setup(dataset, data_dir, expert_model, expert_epochs, expert_lr, expert_saves_per_epoch, model, epochs, lr, seeds, soft_loss, seed, val_per_class):
    from ladd.experiments.common import Setup

    expert = ExpertConfig(model=expert_model, epochs=expert_epochs, lr=expert_lr, saves_per_epoch=expert_saves_per_epoch)
    return Setup(source=SourceConfig(dataset=dataset, data_dir=data_dir), teacher=LabelConfig(method="soft", labeler=expert),
                 student_model=model, student_epochs=epochs, student_lr=lr, seeds=seeds, soft_loss=soft_loss, image_seed=seed,
                 val_per_class=val_per_class)


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in _split(text, option)]
    except ValueError:
        raise LaddError(f"{option} {text!r} must be comma-separated whole numbers, e.g. 1,10,50") from None
    if any(v < 1 for v in values):
        raise LaddError(f"{option} {text!r}: every value must be >= 1")
    return values


def _epoch(text: str | None, option: str = "--expert-epoch") -> float | str | None:
    if text in (None, "auto"):
        return text
    try:
        return float(text)
    except ValueError:
        raise LaddError(f"{option} {text!r} is not a number or 'auto'") from None


def _shared_options(
    dataset: Dataset_ = "mnist5k", data_dir: DataDir = None, expert_model: ExpertModel = "convnet-w64",
    expert_epochs: ExpertEpochs = 10, expert_lr: ExpertLr = 0.01, expert_saves_per_epoch: ExpertSaves = 1,
    model: StudentModel = QUICK_MODEL, epochs: Epochs = QUICK_EPOCHS, lr: Lr = 0.01, seeds: Seeds = 3,
    soft_loss: SoftLoss = "ce", seed: Seed = 0, val_per_class: ValPerClass = 50,
    out: ExpOut = Path("runs/experiments"), device: Device = "auto",
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
            setup = _setup(**{k: v for k, v in opts.items() if k not in ("out", "device")})
            body(pipeline.load_source(setup.source), setup, Runtime.from_name(opts["device"]), opts["out"], **kw)

        command.__signature__ = inspect.Signature([*own, *shared.values()])
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
def _soft_vs_hard(data, setup, runtime, out, ipc: IpcList = "1,10,50", expert_epoch: ExpertEpoch = "auto",
                  ensemble: Annotated[int, typer.Option("--ensemble", help="Also evaluate an ensemble of K experts' averaged logits (1 = no).")] = 1):
    """Random real images with hard labels vs the expert's soft labels (and an ensemble's), across IPC."""
    from ladd.experiments import soft_vs_hard

    soft_vs_hard.run(data, setup, _ints(ipc, "--ipc"), _epoch(expert_epoch), ensemble, runtime, out)


@_experiment("swap")
def _swap(data, setup, runtime, out, ipc: Ipc = 10, expert_epoch: ExpertEpoch = None):
    """Label swap test: swap each label's i-th largest probability with its smallest, i = 1..C (Fig. 4)."""
    from ladd.experiments import swap

    swap.run(data, setup, ipc, _epoch(expert_epoch), runtime, out)


@_experiment("scaling-law")
def _scaling(data, setup, runtime, out, ipc: IpcList = "1,2,5,10,20", top_k: Annotated[str, typer.Option("--top-k", help="Comma-separated k of the top-k soft labels.")] = "1,2,3,5,10",
             expert_epoch: ExpertEpoch = None):
    """Data-knowledge scaling: IPC × top-k grid, fits acc = (a·IPC)^c − d, data-size reduction factor (Fig. 6)."""
    from ladd.experiments import scaling

    scaling.run(data, setup, _ints(ipc, "--ipc"), _ints(top_k, "--top-k"), _epoch(expert_epoch), runtime, out)


@_experiment("removal")
def _removal(data, setup, runtime, out, ipc: Ipc = 10, target_class: Annotated[int, typer.Option("--target-class", help="Index of the class whose images or label knowledge is removed.")] = 0,
             expert_epoch: ExpertEpoch = None):
    """Remove a class's images vs remove its knowledge from the labels: zero-shot accuracy on that class (Fig. 7)."""
    from ladd.experiments import removal

    removal.run(data, setup, ipc, target_class, _epoch(expert_epoch), runtime, out)


@_experiment("ce-selection")
def _ce_selection(data, setup, runtime, out, ipc: Ipc = 10, quantiles: Annotated[int, typer.Option("--quantiles", help="CE quantiles per class (0 = easiest).")] = 5,
                  expert_epoch: ExpertEpoch = None):
    """Students on the easiest … hardest expert-CE quantile of real images vs random images (Appendix B)."""
    from ladd.experiments import ce_selection

    ce_selection.run(data, setup, ipc, quantiles, _epoch(expert_epoch), runtime, out)




@_experiment("lic-ablation")
def _lic_ablation(data, setup, runtime, out, ipc: IpcList = "1,10",
                  ladd_labels: Annotated[bool, typer.Option("--ladd-labels/--no-ladd-labels", help="Also LADD's dense labels (5×5, R 62.5%) on the LIC images.")] = True,
                  iterations: Annotated[Optional[int], typer.Option("--iterations", help="LIC compensation iterations M (default: the recipe's).")] = None):
    """LIC's stages one by one (Table 7): squeezed random → + selection → + compensation → + region relabel; vs random and RDED.

    The observer is the expert (--expert-model/--expert-epochs/--expert-lr)."""
    from ladd.experiments import lic_ablation

    lic_ablation.run(data, setup, _ints(ipc, "--ipc"), ladd_labels, runtime, out, iterations)


@_experiment("bptt")
def _bptt(data, setup, runtime, out, ipc: Ipc = 10, bptt_iterations: BpttIterations = 100, bptt_unroll: BpttUnroll = 20,
          bptt_backprop: BpttBackprop = 10, expert_epoch: ExpertEpoch = None):
    """Labels learned by truncated BPTT: JSD to each expert epoch's labels, and students (Fig. 8)."""
    from ladd.experiments import bptt

    cfg = BpttConfig(model=setup.student_model, iterations=bptt_iterations, unroll=bptt_unroll, backprop=bptt_backprop)
    bptt.run(data, setup, ipc, cfg, _epoch(expert_epoch), runtime, out)


def _notes(art, cfg: EvalConfig) -> list[str]:
    notes = [
        f"accuracy: final epoch of {cfg.epochs}, on the real test split, over {cfg.seeds} seeds (population std); nothing selected on test data",
        f"FLOPs: {UNIT}; labels = labeler training + label generation (methods that use the labeler), deploy = one student",
    ]
    lab = art.manifest.get("labels", {}).get("labeler")
    if lab:
        members = f" × {lab['ensemble']} experts (logits averaged)" if lab.get("ensemble", 1) > 1 else ""
        notes.append(f"labeler: {lab['model']} epoch {lab['epoch']:g}{members}, T = {lab.get('temperature', 1.0):g}, "
                     f"top-k {lab.get('top_k') or 'all'}; its own test accuracy {100 * lab['test_acc']:.2f}%")
    return notes


def main() -> None:
    try:
        app()
    except LaddError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ValidationError as e:
        err = e.errors()[0]
        print(f"error: invalid value for {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # unwritable --out, a file where a folder should be, a full disk
        print(f"error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        sys.exit(2)
