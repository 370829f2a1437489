"""The schema of an artifact's manifest.json, checked once when an artifact is loaded.

Every field ladd reads back (`ladd info`, eval, report, the label and relabel stages) is typed here,
so a mistyped or out-of-range entry, or a missing one that is needed, is a one-line error naming it
when the artifact is opened, never a KeyError or TypeError later. Provenance ladd only records
(configs, teacher directories, FLOP units) may hold more fields: `extra="allow"` keeps them, and the
loaded manifest stays the plain dict it was. The same for a stored relabel's relabel.json.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ladd.core.errors import ArtifactError

COMPONENTS = ("images", "labels", "soft_labels", "dense_labels")
RELABEL_COMPONENTS = ("crop", "flip", "mix_index", "mix_lambda", "mix_box", "labels")
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# dimensions and dtypes of each stored component (images: N×C×H×W pixels, labels: N, soft: N×C, dense: N×N²×C)
LAYOUT = {
    "images": (4, ("uint8", "float32")),
    "labels": (1, ("int64",)),
    "soft_labels": (2, FLOAT_DTYPES),
    "dense_labels": (3, FLOAT_DTYPES),
}

Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Number = float  # strict mode: an int or a float, never a bool or a string


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FileEntry(_Model):
    model_config = ConfigDict(extra="forbid", strict=True)

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    shape: list[Count]
    dtype: str


class Bytes(_Model):
    raw: Count
    zip: Count


class Source(_Model):
    dataset: str = None  # type: ignore[assignment]  (a field set to None may be absent, never null)
    class_names: Annotated[list[str], Field(min_length=1)] = None  # type: ignore[assignment]
    shape: Annotated[list[Positive], Field(min_length=3, max_length=3)] = None  # type: ignore[assignment]
    mean: list[Number] = []
    std: list[Number] = []
    data_dir: str | None = None
    resolution: Positive | None = None
    skip_unreadable: bool = False

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("class names must be distinct")
        return names


class Recipe(_Model):
    name: str


class Learned(_Model):
    grid: Positive | None = None
    lr: Number | None = None


class Images(_Model):
    method: str = None  # type: ignore[assignment]
    seed: int = 0
    model: str | None = None
    recipe: Recipe | None = None
    flops: Annotated[Number, Field(ge=0)] | None = None
    learned: Learned | None = None


class Subsample(_Model):
    n: Positive
    r: Annotated[Number, Field(gt=0, le=1)]


class Teacher(_Model):
    model: str
    epoch: Annotated[Number, Field(ge=0)]
    test_acc: Annotated[Number, Field(ge=0, le=1)]
    ensemble: Positive = 1
    temperature: Annotated[Number, Field(gt=0)] = 1.0
    top_k: Positive | None = None


class Observer(_Model):
    model: str
    train_check_acc: Annotated[Number, Field(ge=0, le=1)]


class Bptt(_Model):
    initial_loss: Number
    final_loss: Number


class Labels(_Model):
    method: str = None  # type: ignore[assignment]
    dtype: str | None = None
    top_k: Positive | None = None
    subsample: Subsample = None  # type: ignore[assignment]
    labeler: Teacher | None = None
    observer: Observer = None  # type: ignore[assignment]
    bptt: Bptt = None  # type: ignore[assignment]
    config: dict | None = None


class Flops(_Model):
    unit: str = ""
    labeler_train: Annotated[Number, Field(ge=0)] = 0
    label_generation: Annotated[Number, Field(ge=0)] = 0
    # the part of label_generation that made the dense labels (the rest made the soft ones); absent:
    # not split (one kind of label, or an older artifact), charged whole to any use
    dense_generation: Annotated[Number, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _a_part(self) -> Flops:
        if self.dense_generation is not None and self.dense_generation > self.label_generation:
            raise ValueError("flops.dense_generation must not exceed flops.label_generation")
        return self


class Relabel(_Model):
    epochs: Positive
    samples: Count
    kind: Literal["logits", "probs"]
    dtype: str
    top_k: Positive | None = None
    temperature: Annotated[Number, Field(gt=0)]
    teacher: Teacher
    storage: dict[Literal[RELABEL_COMPONENTS], Bytes]  # type: ignore[valid-type]
    label_to_image_ratio: Annotated[Number, Field(ge=0)]
    soft_label_to_image_ratio: Annotated[Number, Field(ge=0)]


class Manifest(_Model):
    """What `load_artifact` requires: the files it reads, typed; every other entry is typed where
    present (artifacts made through the Python API may record less provenance than the CLI's)."""

    schema_version: Literal[1]
    ladd_version: str
    files: dict[Literal[tuple(f"{c}.safetensors" for c in COMPONENTS)], FileEntry]  # type: ignore[valid-type]
    storage: dict[Literal[COMPONENTS], Bytes]  # type: ignore[valid-type]
    source: Source = None  # type: ignore[assignment]
    ipc: Positive = None  # type: ignore[assignment]
    images: Images = None  # type: ignore[assignment]
    labels: Labels = None  # type: ignore[assignment]
    flops: Flops = None  # type: ignore[assignment]
    relabel: Relabel = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        stored = {f.removesuffix(".safetensors") for f in self.files}
        if not {"images", "labels"} <= stored:
            raise ValueError("files must list images.safetensors and labels.safetensors")
        if set(self.storage) != stored:
            raise ValueError(f"storage must count exactly the stored files {sorted(stored)}, not {sorted(self.storage)}")
        for name, (ndim, dtypes) in LAYOUT.items():
            entry = self.files.get(f"{name}.safetensors")
            if entry is not None and (len(entry.shape) != ndim or entry.dtype not in dtypes):
                raise ValueError(f"{name} must be {ndim}-D {' or '.join(dtypes)}, not {len(entry.shape)}-D {entry.dtype}")
        if self.relabel is not None and (self.source is None or self.source.class_names is None):
            raise ValueError("a manifest with a relabel must name the source's class_names")
        held = self.files["images.safetensors"].shape  # N×C×H×W, checked above
        if self.source is not None and self.source.shape is not None and held[1:] != self.source.shape:
            raise ValueError(f"source.shape says {_dims(self.source.shape)}, images.safetensors holds {_dims(held)}")
        return self


def _dims(shape: list[int]) -> str:
    return "×".join(map(str, shape))


# what every artifact the CLI writes records, and its commands print and use (`ladd info`, `label`, `eval`)
PROVENANCE = (("source", "dataset"), ("source", "class_names"), ("source", "shape"), ("ipc",), ("images", "method"))


def check_manifest(manifest, where: str, *, complete: bool = False) -> dict:
    """`manifest` (parsed manifest.json) if it fits the schema; else a one-line LaddError naming
    the first bad entry (`labels.subsample.n: Input should be a valid integer`). `complete`: the
    provenance the CLI records must be there too (and a label method with labels)."""
    _check(Manifest, manifest, where, "the artifact is corrupt")
    if complete:
        needed = PROVENANCE + ((("labels", "method"),) if "labels" in manifest else ())
        for path in needed:
            node = manifest
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    raise ArtifactError(f"{where} is malformed at {'.'.join(path)}: Field required (the artifact is corrupt)")
                node = node[key]
    return manifest


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class RelabelFlops(_Model):
    teacher_train: Annotated[Number, Field(ge=0)]
    label_generation: Annotated[Number, Field(ge=0)]


class RelabelTeacher(_Model):
    test_acc: Annotated[Number, Field(ge=0, le=1)]
    checkpoint_sha256: str


class RelabelConfig(_Model):
    seed: int


class RelabelInfo(_Model):
    """relabel.json of a finished relabel (`ladd.artifact.relabel`)."""

    kind: Literal["logits", "probs"]
    dtype: Literal["float16", "float32"]
    temperature: Annotated[Number, Field(gt=0)]
    top_k: Positive | None
    epochs: Positive
    samples: Positive
    classes: Positive
    batch_size: Positive
    mix_per: Literal["batch", "sample"]
    images_sha256: Sha256
    files: list[Sha256]
    complete: Literal[True]
    flops: RelabelFlops
    teacher: RelabelTeacher
    config: RelabelConfig


def check_relabel_info(info, where: str) -> dict:
    """`info` (parsed relabel.json) if it fits `RelabelInfo`; else a one-line LaddError naming the bad entry."""
    return _check(RelabelInfo, info, where, "run `ladd relabel` on the artifact again")


def _check(model: type[BaseModel], data, where: str, fix: str) -> dict:
    if not isinstance(data, dict):
        raise ArtifactError(f"{where} holds a JSON {type(data).__name__}, not an object: {fix}")
    try:
        model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a check across fields (`_consistent`): each is well-formed, together they disagree
            raise ArtifactError(f"{where} is inconsistent: {msg} ({fix})") from None
        raise ArtifactError(f"{where} is malformed at {'.'.join(map(str, err['loc']))}: {msg} ({fix})") from None
    return data
