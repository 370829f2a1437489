"""The pipeline's stages: `ladd distill`, `label`, `eval`, `run` and `experts`, each a thin layer over `ladd.api`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ladd.cli.common import default_out, log_beside, new_artifact, open_artifact
from ladd.cli.options import (
    check_pretrained,
    config_default,
    ArtifactArg,
    BpttBackprop,
    BpttIterations,
    BpttUnroll,
    DEFAULT_MODEL,
    DataDir,
    Device,
    DistillModel,
    EvalBatchSize,
    EvalValPerClass,
    ExpertsModel,
    LabelModel,
    ArtifactOut,
    Out,
    Overwrite,
    PoolOpt,
    Prune,
    PruneKeep,
    PruneMetric,
    ReplayBatches,
    SelectLr,
    checked,
    crops_value,
    local_weight_value,
    epoch_value,
    equal_cost_kinds,
    floats,
    makes_images,
    makes_labels,
    reads_source,
    recipe_params,
    split,
    trains,
    trains_students,
)
from ladd.core import logs, track
from ladd.core.cache import entry
from ladd.core.errors import ConfigError
from ladd.core.limits import MAX_COUNT, MAX_EXPERTS, MAX_LR, MIN_LR
from ladd.core.progress import console, log
from ladd.core.runtime import Runtime, Speed
from ladd.eval.protocol import EvalConfig, check_label_stage, checkpointing, default_methods, methods_for
from ladd.eval.protocols import DEFAULT_PRESET, PRESETS, load_protocol
from ladd.experts import ExpertConfig, ensure_buffer
from ladd.images import IMAGE_METHODS, check_params
from ladd.images.recipes import has_recipes
from ladd.labels import LABEL_METHODS
from ladd.labels.bptt import BpttConfig
from ladd.labels.replay import Pruning
from ladd.pipeline import ImagesConfig, LabelConfig, SourceConfig
from ladd.report.results import eval_notes, robustness_note
from ladd.report.tables import rich_table
from ladd.train.terms import method_terms

app = typer.Typer()
STUDENTS = "students"  # OUT/students: the evaluation's student checkpoints until its results are written


def _api():
    """`ladd.api`, imported when a command runs: importing it loads the plugins, which `main` does
    inside its error handling."""
    from ladd import api

    return api


def image_config(model: str, *, ipc, images, import_path, seed, recipe, resume, float_images, buffer, param) -> ImagesConfig:
    """The image stage's config from its options (`makes_images`), its recipe overrides checked
    before any data is loaded."""
    method = IMAGE_METHODS.canonical(images)
    if recipe is not None and not has_recipes(method):
        raise ConfigError(f"--recipe is for image methods with recipes, not {method}: leave it out")
    if import_path is not None and method != "import":
        raise ConfigError(f"--import-path is for --images import, not {method}: leave it out")
    cfg = ImagesConfig(
        method=images,
        ipc=ipc,
        seed=seed,
        import_path=import_path,
        model=model,
        recipe=recipe,
        resume=resume,
        float_images=float_images,
        buffer=buffer,
        params=recipe_params(param or []),
    )
    check_params(method, cfg.params)
    return cfg


def label_config(
    models: tuple[str, ...],
    *,
    labels,
    grid,
    coverage,
    labeler_model,
    labeler_epochs,
    labeler_lr,
    labeler_decay,
    labeler_epoch,
    labeler_dir,
    labeler_saves_per_epoch,
    ensemble,
    temperature,
    top_k,
    labeler_weights,
    labeler_classes,
    label_dtype,
    keep_soft_labels,
    bptt: BpttConfig | None = None,
) -> LabelConfig:
    """The label stage's config from its options (`makes_labels`); an 'auto' epoch is left unset
    here and chosen by `auto_epoch`."""
    from ladd.experts.pretrained import pretrained_config

    epoch = epoch_value(labeler_epoch, "--labeler-epoch")
    check_pretrained("labeler", labeler_weights, labeler_classes, epoch=epoch, ensemble=ensemble)
    weights = None
    if labeler_weights is not None:
        weights = pretrained_config(
            labeler_weights,
            labeler_model,
            labeler_classes,
            option="--labeler-weights",
            model_option="--labeler-model",
            classes_option="--labeler-classes",
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
        keep_soft=keep_soft_labels or None,
        labeler=ExpertConfig(
            model=labeler_model or models[0],
            epochs=labeler_epochs,
            lr=labeler_lr,
            decay=labeler_decay,
            saves_per_epoch=labeler_saves_per_epoch,
        ),
    )


def auto_epoch(cfg: LabelConfig, data, src: SourceConfig, ipc: int, runtime: Runtime, **students) -> LabelConfig:
    """--labeler-epoch auto: the checkpoint whose labels train the best students on a validation
    split carved from the training set (cached under $LADD_CACHE/selection)."""
    from ladd.experiments.common import Setup
    from ladd.experiments.expert_epoch import select_epoch

    setup = Setup(source=src, teacher=cfg.model_copy(update={"epoch": None, "labeler_dir": None}), **students)
    epoch = select_epoch(data, setup, ipc, runtime, entry("selection", data.name, [data.name, list(data.class_names)]))
    log(f"--labeler-epoch auto: epoch {epoch:g} trains the best students on the validation split")
    return cfg.model_copy(update={"epoch": epoch})


def eval_config(students: dict, methods: tuple[str, ...], **more) -> EvalConfig:
    """The students' config from their options (`trains_students`; absent ones count as not given):
    every option given, the rest from the preset (`ladd.api.eval_config`); `more` are EvalConfig fields."""
    model, crops, weight = students.get("model"), students.get("crops_per_step"), students.get("local_weight")
    options = {
        "models": model and split(model),
        "seeds": students.get("seeds"),
        "crops_per_step": crops and crops_value(crops),
        "local_weight": weight and local_weight_value(weight),
    }
    given = {k: students[k] for k in ("protocol", "epochs", "lr", "local_reduction", "ema", "soft_loss") if k in students}
    return _api().eval_config(
        students.get("preset", DEFAULT_PRESET), methods=methods, **{k: v for k, v in options.items() if v}, **given, **more
    )


def write_run(out: Path, rows: list[dict], art, artifact: Path, cfg: EvalConfig, notes: list[str], title: str, **more) -> None:
    """Save the run folder (`ladd.api.save_results`) and show its table and notes."""
    written = _api().save_results(out, rows, art, artifact, cfg, title, notes=notes, **more)
    console.print(rich_table(rows, title=title))
    for n in notes:
        console.print(f"- {n}")
    log(f"wrote {', '.join(str(p) for p in written)}")


@app.command()
@trains
@makes_images
@reads_source
def distill(
    source: SourceConfig,
    imaging: dict,
    model: DistillModel = DEFAULT_MODEL,
    out: ArtifactOut = None,
    overwrite: Overwrite = False,
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Image stage: select, learn or import IPC images per class; write an artifact (images + hard labels;
    LIC and RDED also store region labels)."""
    out = new_artifact(out or default_out() / "artifact", overwrite or imaging["resume"])
    cfg = image_config(split(model)[0], **imaging)
    logs.logger.debug("images: %s", cfg.model_dump_json())
    api = _api()
    data = api.load_dataset(source)  # a missing or unknown dataset stops here, before anything is written
    with logs.to_file(log_beside(out)):
        art = api.distill(data, cfg, source, api.runtime(device, speed))
        api.save_artifact(out, art)
        log(f"wrote artifact {out} ({len(art.images)} images)")


@app.command()
@trains
@makes_labels
def label(
    artifact: ArtifactArg,
    labelling: dict,
    model: LabelModel = DEFAULT_MODEL,
    bptt_iterations: BpttIterations = config_default(BpttConfig, "iterations"),
    bptt_unroll: BpttUnroll = config_default(BpttConfig, "unroll"),
    bptt_backprop: BpttBackprop = config_default(BpttConfig, "backprop"),
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
        new_artifact(out, overwrite)
    models = split(model)
    bptt = BpttConfig(model=models[0], iterations=bptt_iterations, unroll=bptt_unroll, backprop=bptt_backprop)
    cfg = label_config(models, bptt=bptt, **labelling)
    logs.logger.debug("labels: %s", cfg.model_dump_json())
    api = _api()
    art, src, data = open_artifact(artifact, data_dir)  # after every option is checked
    with logs.to_file(log_beside(out or artifact)):
        runtime = api.runtime(device, speed)
        if labelling["labeler_epoch"] == "auto":
            cfg = auto_epoch(cfg, data, src, art.manifest["ipc"], runtime, student_model=models[0])
        art = api.label(art, data, cfg, runtime)
        api.save_artifact(out or artifact, art)
        lab = art.manifest["labels"]
        stored = ", ".join(f"{n} {tuple(t.shape)}" for n, t in art.components().items() if n.endswith("labels") and n != "labels")
        made_by = ""
        if lab.get("labeler", {}).get("pretrained"):
            made_by = f" (pretrained labeler {Path(lab['labeler']['weights']).name}, test acc {100 * lab['labeler']['test_acc']:.2f}%)"
        elif "labeler" in lab:
            made_by = f" (labeler epoch {lab['labeler']['epoch']:g}, test acc {100 * lab['labeler']['test_acc']:.2f}%)"
        log(f"wrote {lab['method']} labels ({stored}) to {out or artifact}{made_by}")


@app.command("eval")
@trains
@trains_students
def eval_(
    artifact: ArtifactArg,
    students: dict,
    select_lr: SelectLr = None,
    val_per_class: EvalValPerClass = 50,
    robust: Annotated[
        bool,
        typer.Option(
            "--robust",
            help=(
                "Also compute DD-Ranking's HLR, IOR, Label-Robust and Augmentation-Robust Scores against a random real subset at the "
                "same IPC, labelled the same way (first --model)."
            ),
        ),
    ] = False,
    equal_cost: Annotated[
        Optional[str],
        typer.Option(
            "--equal-cost",
            parser=checked("--equal-cost", equal_cost_kinds),
            help=(
                "LADD's equal-cost comparisons (Fig. 3), comma-separated: bytes (baseline++: hard labels at IPC + 1, re-running the "
                "image method), epochs (baseline=flops: hard labels for as many epochs as the label method's label + student FLOPs), "
                "curve (the paper's: same batch size and epochs, the label method read off its accuracy-over-FLOPs curve where it has "
                "spent the baseline's deployment FLOPs), or all."
            ),
        ),
    ] = None,
    curve_every: Annotated[
        Optional[int],
        typer.Option(
            "--curve-every",
            min=1,
            max=MAX_COUNT,
            help=(
                "Record test accuracy every K epochs against the deployment FLOPs spent (flops_curve.png; default with --equal-cost "
                "curve: about 50 points)."
            ),
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
    device: Device = "auto",
    speed: Speed = Speed(),
):
    """Evaluate an artifact: accuracy mean ± std over seeds, stored bytes and FLOPs.

    Trains fresh students for each method × model × seed under a named protocol and tests each
    once, after its final epoch, on the real test split; anything tuned (--select-lr) is chosen
    on a validation split carved from the training split. The defaults are `ladd run`'s (--preset
    quick); --preset paper is the LADD paper's protocol."""
    from ladd.eval.protocol import equal_cost as equal_cost_rows, evaluate_all, plus_one_config, robustness, rounding_rows

    api = _api()
    out = out or default_out()
    art, _, dataset = open_artifact(artifact, data_dir)
    s = students
    methods = split(s["methods"], "--methods") if s["methods"] is not None else default_methods(art)
    pruning = Pruning(rho=prune, pool=pool, metric=prune_metric, keep=prune_keep, batches=replay_batches)
    check_replay_options(pruning, methods)
    kinds = equal_cost_kinds(equal_cost)
    if "curve" in kinds and curve_every is None:
        curve_every = max(1, (s["epochs"] or load_protocol(s["protocol"] or PRESETS[s["preset"]].protocol).epochs) // 50)
    cfg = eval_config(
        s,
        methods,
        batch_size=batch_size,
        curve_every=curve_every,
        select_lr=tuple(floats(select_lr, "--select-lr", MIN_LR, MAX_LR)) if select_lr else (),
        val_per_class=val_per_class,
        pruning=pruning,
    )
    with logs.to_file(out / "ladd.log"):
        runtime = api.runtime(device, speed)
        logs.logger.debug("eval: %s", cfg.model_dump_json())
        plus_one = None
        if "bytes" in kinds:  # refused before any training if it cannot be made
            from ladd.pipeline import plus_one as make_plus_one

            plus_one = make_plus_one(art, dataset, runtime)
        with track.using(track.make_tracker(s["track_"], out)), checkpointing(out / STUDENTS):
            # baseline++'s students train in the same call as the main ones: under torchrun they share the ranks
            beside = [(plus_one, plus_one_config(cfg))] if plus_one is not None else []
            rows, *plus_rows = evaluate_all([(art, cfg), *beside], dataset, runtime)
            rows += rounding_rows(art, dataset, cfg, runtime)  # as api.evaluate adds them
            notes = eval_notes(art, cfg, rows)
            extra = {}
            if kinds:
                rows += equal_cost_rows(art, plus_rows[0] if plus_rows else None, dataset, cfg, runtime, rows, kinds)
            if robust:
                from ladd.pipeline import random_counterpart

                scores = robustness(art, random_counterpart(art, dataset, runtime), dataset, cfg, runtime, real_epochs, rows)
                extra["robustness"] = scores
                notes.append(robustness_note(scores))
            config = {"preset": s["preset"], "device": str(runtime.device), "speed": runtime.speed.model_dump()}
            write_run(out, rows, art, artifact, cfg, notes, f"ladd eval · {dataset.name}", config=config, extra=extra)


# `ladd eval`'s options for a replayed relabel (method fkd), by the Pruning field each sets
REPLAY_OPTIONS = {"rho": "--prune", "pool": "--pool", "metric": "--prune-metric", "keep": "--prune-keep", "batches": "--replay-batches"}


def check_replay_options(pruning: Pruning, methods: tuple[str, ...]) -> None:
    """A replay option given while no method replays a stored relabel is refused rather than ignored."""
    if any("replay" in method_terms(m) for m in methods):
        return
    given = next((option for field, option in REPLAY_OPTIONS.items() if getattr(pruning, field) != getattr(Pruning(), field)), None)
    if given is not None:
        raise ConfigError(f"{given} is for method fkd (replaying a stored relabel), not {', '.join(methods)}: leave it out")


@app.command()
@trains
@reads_source
def experts(
    source: SourceConfig,
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
    api = _api()
    data = api.load_dataset(source)
    folder = ensure_buffer(data, split(model)[0], num_experts, epochs, api.runtime(device, speed), out)
    log(f"{num_experts} experts of {epochs} epochs ready under {folder}")


@app.command()
@trains
@trains_students
@makes_labels
@makes_images
@reads_source
def run(
    source: SourceConfig,
    imaging: dict,
    labelling: dict,
    students: dict,
    out: Out = None,
    overwrite: Overwrite = False,
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
    out = out or default_out()
    new_artifact(out / "artifact", overwrite or imaging["resume"])
    api = _api()
    s = students
    runtime = api.runtime(device, speed)
    models = split(s["model"]) if s["model"] else (PRESETS[s["preset"]].model,)
    label_cfg = label_config(models, **labelling)
    label_method = LABEL_METHODS.canonical(labelling["labels"])
    methods = split(s["methods"], "--methods") if s["methods"] is not None else methods_for(label_method)
    check_label_stage(label_method, methods, IMAGE_METHODS.canonical(imaging["images"]))
    # only what the user typed overrides the protocol (and an MTT artifact's learned lr); fail before any training
    cfg = eval_config(s, methods)
    images_cfg = image_config(models[0], **imaging)
    for name, c in (("images", images_cfg), ("labels", label_cfg), ("eval", cfg)):
        logs.logger.debug("%s: %s", name, c.model_dump_json())
    data = api.load_dataset(source)  # after every option is checked
    with logs.to_file(out / "ladd.log"):
        art = api.distill(data, images_cfg, source, runtime)
        if labelling["labeler_epoch"] == "auto":
            chosen = load_protocol(s["protocol"] or cfg.default_protocol)  # the selection's students train as the final ones will
            label_cfg = auto_epoch(
                label_cfg,
                data,
                source,
                art.manifest["ipc"],
                runtime,
                student_model=models[0],
                student_epochs=s["epochs"] or chosen.epochs,
                student_lr=s["lr"] or chosen.lr_for(models[0]),
                seeds=cfg.seeds,
                soft_loss=s["soft_loss"] or chosen.soft_loss,
            )
        art = api.label(art, data, label_cfg, runtime)
        api.save_artifact(out / "artifact", art)
        art = api.load_artifact(out / "artifact")  # evaluate exactly what was stored (e.g. float16 labels)
        # the students (labelers and experts are cached, not tracked), checkpointed until the results are written
        with track.using(track.make_tracker(s["track_"], out)), checkpointing(out / STUDENTS):
            rows = api.evaluate(art, data, cfg, runtime)
            notes = eval_notes(art, cfg, rows) + [
                f"total wall time {time.perf_counter() - t0:.0f} s, data loading and labeler training included "
                "(unless the labeler was reused from the cache)"
            ]
            config = {
                "preset": s["preset"],
                "source": source.model_dump(),
                "images": images_cfg.model_dump(),
                "labels": label_cfg.model_dump(),
                "device": str(runtime.device),
                "speed": runtime.speed.model_dump(),
            }
            title = f"ladd run · {data.name} · IPC {art.manifest['ipc']}"
            write_run(out, rows, art, out / "artifact", cfg, notes, title, config=config)
