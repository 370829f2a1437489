"""`ladd` command line: options → typed configs → pipeline stages. No logic of its own."""

from __future__ import annotations

import sys
import time
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
from ladd.eval.protocol import EvalConfig, evaluate
from ladd.experts import ExpertConfig, ensure_expert, in_buffer
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
Images = Annotated[str, typer.Option("--images", help="Image method: random, herding, dm, dc, dsa, mtt, or import (a set made by another tool).")]
Recipe = Annotated[Optional[str], typer.Option("--recipe", help="Hyperparameters of a learned image method: a shipped recipe name (e.g. dm-paper, dm-mnist5k) or a .toml file. Default: the method's recipe for the dataset, else its paper recipe.")]
FloatImages = Annotated[bool, typer.Option("--float-images", help="Learned image methods: store float32 pixels instead of uint8 (4× the image bytes; compare both with `ladd eval`).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue a learned image method from its last checkpoint (same result as an uninterrupted run).")]
Buffer = Annotated[Optional[str], typer.Option("--buffer", help="For --images mtt: the expert folder written by `ladd experts --out` (default: the expert cache).")]
ImportPath = Annotated[Optional[str], typer.Option("--import-path", help="For --images import: a .safetensors, .npz or .pt file with 'images' and 'labels'.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the image stage (which real images are drawn).")]
Grid = Annotated[int, typer.Option("--grid", help="LADD's N: each image is cut into N×N sub-images.")]
Coverage = Annotated[float, typer.Option("--coverage", help="LADD's R: the fraction of each axis a sub-image covers, in (0, 1].")]
LabelerModel = Annotated[Optional[str], typer.Option("--labeler-model", help="Labeler architecture (default: the first --model).")]
LabelerEpochs = Annotated[int, typer.Option("--labeler-epochs", help="Epochs to train the labeler (a checkpoint is kept for each).")]
LabelerEpoch = Annotated[Optional[int], typer.Option("--labeler-epoch", help="Early-stopped checkpoint that labels (default: the last trained).")]
LabelerDir = Annotated[Optional[str], typer.Option("--labeler-dir", help="Labeler folder to train into or reuse (default: a cache under $LADD_CACHE or ~/.cache/ladd).")]
LabelDtype = Annotated[str, typer.Option("--label-dtype", help="Stored dtype of soft/dense labels: float32 or float16.")]
Model = Annotated[str, typer.Option("--model", help="Evaluation model(s), comma-separated, e.g. convnet,alexnet,vgg11,resnet18,vit.")]
Methods = Annotated[str, typer.Option("--methods", help="Comma-separated: baseline, ladd, global-soft, global-both, local-hard, local-dense, local-both, or '+'-joined terms.")]
Seeds = Annotated[int, typer.Option("--seeds", help="Students trained per method and model (seeds 0..K-1); mean ± std is reported.")]
Epochs = Annotated[int, typer.Option("--epochs", help="Student training epochs, lr ×0.1 at half (the DC/DSA/DM reference protocol uses 1000 with DSA).")]
Lr = Annotated[float, typer.Option("--lr", help="Student SGD learning rate (momentum 0.9, weight decay 5e-4, batch 256).")]
Crops = Annotated[str, typer.Option("--crops-per-step", help="K of the N² local views drawn per image and step, scaled by N²/K: a number, 'all', or 'auto' (all views for tiny sets, down to 5 so an epoch sees ~500 local views).")]
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


def _split(text: str, option: str = "--model") -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise LaddError(f"{option} is empty: give at least one name")
    return names


def _default_out() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def _label_config(models, grid, coverage, labeler_model, labeler_epochs, labeler_epoch, labeler_dir, label_dtype) -> LabelConfig:
    return LabelConfig(
        n=grid, r=coverage, epoch=labeler_epoch, labeler_dir=labeler_dir, dtype=label_dtype,
        labeler=ExpertConfig(model=labeler_model or models[0], epochs=labeler_epochs),
    )


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
    resume: Resume = False, float_images: FloatImages = False, buffer: Buffer = None, out: Out = None, device: Device = "auto",
):
    """Image stage: select, learn or import IPC images per class; write an artifact (images + hard labels)."""
    src = _source(dataset, data_dir, resolution, skip_unreadable)
    cfg = ImagesConfig(method=images, ipc=ipc, seed=seed, import_path=import_path, model=_split(model)[0], recipe=recipe,
                       resume=resume, float_images=float_images, buffer=buffer)
    art = pipeline.distill(pipeline.load_source(src), src, cfg, Runtime.from_name(device))
    out = out or _default_out() / "artifact"
    save_artifact(out, art)
    console.print(f"wrote artifact {out} ({len(art.images)} images)")


@app.command()
def label(
    artifact: ArtifactArg, grid: Grid = 5, coverage: Coverage = 0.625, model: Model = "convnet",
    labeler_model: LabelerModel = None, labeler_epochs: LabelerEpochs = 10, labeler_epoch: LabelerEpoch = None,
    labeler_dir: LabelerDir = None, label_dtype: LabelDtype = "float32", data_dir: DataDir = None,
    out: Out = None, device: Device = "auto",
):
    """Label stage (LADD): dense soft labels for the N×N sub-images of every image.

    Trains (or reuses from the cache) an early-stopped labeler, then stores a soft label for each
    sub-image and each whole image. Writes into the artifact unless --out is given."""
    art = load_artifact(artifact)
    src = pipeline.source_of(art)
    if data_dir is not None:
        src = src.model_copy(update={"data_dir": data_dir})
    cfg = _label_config(_split(model), grid, coverage, labeler_model, labeler_epochs, labeler_epoch, labeler_dir, label_dtype)
    art = pipeline.label(art, pipeline.load_source(src), cfg, Runtime.from_name(device))
    save_artifact(out or artifact, art)
    lab = art.manifest["labels"]["labeler"]
    console.print(f"wrote dense labels {tuple(art.dense_labels.shape)} to {out or artifact} (labeler epoch {lab['epoch']}, test acc {100 * lab['test_acc']:.2f}%)")


@app.command("eval")
def eval_(
    artifact: ArtifactArg, methods: Methods = "baseline,ladd", model: Model = "convnet", seeds: Seeds = 5,
    epochs: Epochs = 1000, lr: Lr = 0.01, crops_per_step: Crops = "all", local_reduction: LocalReduction = "mean",
    data_dir: DataDir = None,
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
    cfg = EvalConfig(methods=_split(methods, "--methods"), models=_split(model), seeds=seeds, epochs=epochs, lr=lr, crops_per_step=_crops(crops_per_step), local_reduction=local_reduction)
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
        console.print(
            f"labels: N={lab['subsample']['n']} R={lab['subsample']['r']} · labeler {lab['labeler']['model']} "
            f"epoch {lab['labeler']['epoch']} (test acc {100 * lab['labeler']['test_acc']:.2f}%)"
        )


@app.command()
def run(
    dataset: Dataset_ = "mnist5k", data_dir: DataDir = None, resolution: Resolution = None,
    skip_unreadable: SkipBad = False, ipc: Ipc = 10, images: Images = "random", import_path: ImportPath = None,
    seed: Seed = 0, recipe: Recipe = None, resume: Resume = False, float_images: FloatImages = False, buffer: Buffer = None, grid: Grid = 5, coverage: Coverage = 0.625, labeler_model: LabelerModel = None,
    labeler_epochs: LabelerEpochs = 10, labeler_epoch: LabelerEpoch = None, labeler_dir: LabelerDir = None,
    label_dtype: LabelDtype = "float32", model: Model = QUICK_MODEL, methods: Methods = "baseline,ladd",
    seeds: Seeds = 3, epochs: Epochs = QUICK_EPOCHS, lr: Lr = 0.01, crops_per_step: Crops = "auto",
    local_reduction: LocalReduction = "mean", out: Out = None, device: Device = "auto",
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
    cfg = EvalConfig(methods=_split(methods, "--methods"), models=models, seeds=seeds, epochs=epochs, lr=lr,
                     crops_per_step=_crops(crops_per_step), local_reduction=local_reduction)  # fail before any training
    images_cfg = ImagesConfig(method=images, ipc=ipc, seed=seed, import_path=import_path, model=models[0], recipe=recipe,
                              resume=resume, float_images=float_images, buffer=buffer)
    art = pipeline.distill(data, src, images_cfg, runtime)
    label_cfg = _label_config(models, grid, coverage, labeler_model, labeler_epochs, labeler_epoch, labeler_dir, label_dtype)
    art = pipeline.label(art, data, label_cfg, runtime)
    out = out or _default_out()
    save_artifact(out / "artifact", art)
    art = load_artifact(out / "artifact")  # evaluate exactly what was stored (e.g. float16 labels)
    rows = evaluate(art, data, cfg, runtime)
    notes = _notes(art, cfg) + [f"total wall time {time.perf_counter() - t0:.0f} s, data loading and labeler training included (unless the labeler was reused from the cache)"]
    config = {"source": src.model_dump(), "images": images_cfg.model_dump(), "labels": label_cfg.model_dump(), "eval": cfg.model_dump(), "device": str(runtime.device)}
    _write_results(out, rows, config, notes, f"ladd run · {data.name} · IPC {art.manifest['ipc']}")


def _notes(art, cfg: EvalConfig) -> list[str]:
    notes = [
        f"accuracy: final epoch of {cfg.epochs}, on the real test split, over {cfg.seeds} seeds (population std); nothing selected on test data",
        f"FLOPs: {UNIT}; labels = labeler training + label generation (methods that use the labeler), deploy = one student",
    ]
    lab = art.manifest.get("labels", {}).get("labeler")
    if lab:
        notes.append(f"labeler: {lab['model']} epoch {lab['epoch']}, its own test accuracy {100 * lab['test_acc']:.2f}%")
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
