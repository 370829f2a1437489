"""The typed result row: what one (method, model) line of `results.json` holds.

`eval.protocol` makes rows as plain dicts (every later stage adds keys with `{**row, ...}`); this
model is the contract they are checked against where they cross a file: when `report.results`
writes them and when `ladd report` reads them. It lives in `eval`, beside the code that makes the
rows, so both `eval` and `report` may use it. `docs/results.schema.json` is its JSON Schema
(`row_schema`), kept equal to it by a test.

Version 1 added `schema_version` to results.json; a file without it is version 0, the same dict
layout, read leniently (`RowV0`): older ladd versions left out some keys and wrote others since dropped.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ladd.core.errors import ArtifactError

SCHEMA_VERSION = 1


class TrainedBy(BaseModel):
    """How torchrun's ranks shared the row's students (`eval.protocol._layout`)."""

    model_config = ConfigDict(extra="forbid")

    layout: Literal["one process", "assignment", "ddp"]
    ranks: int
    students: int  # all those shared out with the row's (every row of the evaluation, baseline++'s included)
    why: str | None = None  # ddp only: why the students were not spread over the ranks
    seed_ranks: list[int] | None = None  # assignment only: the rank that trained each seed


class LrSelection(BaseModel):
    """`--select-lr`: the chosen lr and every candidate's validation accuracy (None: it diverged)."""

    model_config = ConfigDict(extra="forbid")

    chosen: float
    on: str
    val_acc_by_lr: dict[str, float | None]


class CurvePoint(BaseModel):
    """One recorded epoch of `--curve-every`: deployment FLOPs spent so far and every seed's accuracy."""

    model_config = ConfigDict(extra="forbid")

    epoch: int
    flops_deploy: int
    accs: list[float]
    acc_mean: float
    acc_std: float


class Row(BaseModel):
    """One evaluation row. Every producer is covered (`evaluate`, `rounding_rows`, `equal_cost`,
    `at_flops`, `ladd.api.save_results`, benchmarks/image_methods.py), so unknown keys are refused:
    a new key must be declared here, and the schema file regenerated."""

    model_config = ConfigDict(extra="forbid", title="ladd result row")

    # what was evaluated
    method: str
    terms: list[str]
    model: str
    dataset: str
    ipc: int
    images_method: str | None
    distilled_with: str | None  # the network learned images were made with
    # accuracy (final epoch, real test split)
    acc_mean: float
    acc_std: float  # population std over seeds
    n_seeds: int
    accs: list[float]
    class_acc_mean: list[float]  # NaN where not recorded (rows read off a curve)
    # stored bytes
    image_bytes_raw: int
    image_bytes_zip: int
    label_components: list[str]
    label_bytes_raw: int
    label_bytes_zip: int
    label_overhead_pct: float
    # FLOPs (2 per multiply-add): images + labels + one student
    flops_distill: int | None  # None: unknown (imported images, or made before ladd counted them)
    flops_labels: int
    flops_deploy: int
    flops: int
    seconds: float  # mean wall time of one student
    trained_by: TrainedBy
    # how the students were trained (eval.protocol.protocol_fields)
    epochs: int
    lr: float
    lr_source: str
    protocol: str
    protocol_source: str
    protocol_overrides: dict[str, bool | int | float | str]
    optimizer: str
    batch_size: int | None
    schedule: str
    ema: float | None
    augment: str | None  # DSA strategy; None = no augmentation
    reported: str
    selected_on: dict[str, str]
    lr_selection: LrSelection | None
    crops_per_step: int | None
    local_reduction: str | None
    local_weight: float | Literal["learned"] | None = None  # λ of the local terms (None: no local term)
    learned_weights: dict[str, float] | None = None  # --local-weight learned: each term's final weight (the last seed's)
    soft_loss: str
    labeler_test_acc: float | None
    # a replayed stored relabel (fkd methods) only
    prune: float | None = None
    pool: str | None = None
    replay_batches: str | None = None
    prune_metric: str | None = None
    prune_keep: str | None = None
    relabel_epochs: int | None = None
    relabel_kept_samples: int | None = None
    relabel_storage: dict[str, dict[str, int]] | None = None
    label_to_image_ratio: float | None = None
    soft_label_to_image_ratio: float | None = None
    # --curve-every
    curve: list[CurvePoint] | None = None
    # rows derived from others: rounding_rows, equal_cost, at_flops
    rounded_of: str | None = None
    equal_flops_of: str | None = None
    budget: str | None = None
    # added by `ladd eval` / `ladd run`: the artifact evaluated and its images' SHA-256
    artifact: str | None = None
    artifact_sha256: str | None = None


class RowV0(Row):
    """A row of a results.json without `schema_version`. Rows written before ladd recorded these
    keys lack them (the report already does without), and keys since dropped are kept as they are."""

    model_config = ConfigDict(extra="allow")

    images_method: str | None = None
    distilled_with: str | None = None
    trained_by: TrainedBy | None = None
    batch_size: int | None = None
    lr_selection: LrSelection | None = None
    selected_on: dict[str, str] | None = None


def checked_rows(rows: list[dict], version: int = SCHEMA_VERSION, where: str = "results.json") -> list[dict]:
    """`rows` validated against the model of `version`, as dicts again (keys absent stay absent);
    the first problem is refused in one line naming the row and the field."""
    if not isinstance(rows, list):
        raise ArtifactError(f"{where}: rows is a {type(rows).__name__}, not a list of rows")
    model = Row if version == SCHEMA_VERSION else RowV0
    checked = []
    for i, row in enumerate(rows):
        try:
            checked.append(model.model_validate(row).model_dump(exclude_unset=True))
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "row"
            name = f" ({row.get('method')} · {row.get('model')})" if isinstance(row, dict) else ""
            raise ArtifactError(f"{where}: row {i}{name}: {field}: {first['msg']}") from None
    return checked


def results_version(results: dict, where: str = "results.json") -> int:
    """The schema version of a results.json (0 when it has none); a newer one than this ladd knows is refused."""
    version = results.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has schema_version {version!r}; this ladd reads versions 0 to {SCHEMA_VERSION}: upgrade ladd to report it"
        )
    return version


def row_schema() -> str:
    """The JSON Schema of a current row, as the text `docs/results.schema.json` holds and `ladd report --schema` prints."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "x-schema-version": SCHEMA_VERSION, **Row.model_json_schema()}
    return json.dumps(schema, indent=2) + "\n"
