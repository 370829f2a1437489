"""Evaluation protocols as data: each `<name>.toml` here fixes how students are trained
(optimizer, schedule, epochs, per-model lr, EMA, augmentation, soft-label loss) and cites where
each value comes from. `ladd eval --protocol NAME` picks one (or a .toml path), and every result
row records the protocol it was trained under, so numbers from different budgets are never mixed
silently. Explicit `--epochs` / `--lr` override a protocol and are recorded as overrides.
Plugins (`ladd.core.plugins`) add protocols by name to `PROTOCOLS`: a `Protocol` or a .toml path.

`PRESETS` name the two evaluation budgets of the command line (`--preset quick|paper`): which
protocol, student architecture, seeds and local views `ladd eval` and `ladd run` use unless an
option says otherwise, so the stages run one by one reproduce `ladd run`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ladd.core import shipped as files
from ladd.core.errors import LaddError
from ladd.core.registry import Registry
from ladd.models import DEFAULT_MODEL, MODELS
from ladd.train.loop import Optimization, Recipe

DEFAULT = "dc"


class Preset(BaseModel):
    """A named evaluation budget: what the students default to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str  # of every method but those replaying a stored relabel (they train under fkd)
    model: str  # also the default network of every other command (distill, label, experts, gradcam)
    seeds: int
    crops_per_step: Literal["all", "auto"]  # of LADD's N² local views per image and step (`eval.protocol.crops_for`)


PRESETS = {
    # minutes on 2 CPU cores (every committed `ladd run` result): width-64 ConvNets, dc with 150 epochs, ~500 local views an epoch
    "quick": Preset(protocol="dc-cpu", model=DEFAULT_MODEL, seeds=3, crops_per_step="auto"),
    # the LADD paper's protocol: ConvNet-128 (depth from the resolution: 3 at 32 px), dc's 1000 epochs, 5 seeds, every local view
    "paper": Preset(protocol="dc", model="convnet", seeds=5, crops_per_step="all"),
}
DEFAULT_PRESET = "quick"


class Protocol(Optimization):
    """A named student-training budget: the shared optimization fields (epochs and lr required),
    per-model lr, whether students are augmented, and the soft-label loss."""

    name: str
    budget: str
    source: str
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0)
    lr_by_model: dict[str, float] = {}
    # (at most this many images, batch size) in increasing order: the batch for a set of that size
    # (LIC/CIM pick it by set size); larger sets, or none given, use batch_size
    batch_sizes: list[tuple[int, int]] = []
    augment: bool = True
    soft_loss: Literal["ce", "kl"] = "ce"

    def lr_for(self, model: str) -> float:
        return self.lr_by_model.get(MODELS.canonical(model), self.lr)

    def batch_for(self, images: int | None) -> int:
        return next((batch for most, batch in self.batch_sizes if images is not None and images <= most), self.batch_size)

    def recipe(
        self,
        model: str,
        dsa: str | None,
        *,
        epochs: int | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        augment: bool | None = None,
        images: int | None = None,
        ema: float | None = None,
        term_weights: str | None = None,
    ) -> Recipe:
        """The trainer's recipe for `model` on a set of `images`; arguments that are not None
        override the protocol (`ema` 0: no EMA of the weights; `term_weights` "learned")."""
        shared = self.model_dump(include=set(Optimization.model_fields))
        return Recipe(
            **{
                **shared,
                "epochs": epochs or self.epochs,
                "lr": lr or self.lr_for(model),
                "batch_size": batch_size or self.batch_for(images),
                **({} if ema is None else {"ema": ema or None}),
            },
            dsa=dsa if (self.augment if augment is None else augment) else None,
            **({} if term_weights is None else {"term_weights": term_weights}),
        )


def shipped() -> list[str]:
    return files.names(__name__)


def _shipped_protocols() -> None:
    for name in shipped():
        PROTOCOLS.register(name)(None)  # None: read the shipped file (so a plugin cannot take its name)


# protocol name -> None (shipped), a plugin's Protocol, or a plugin's .toml path
PROTOCOLS: Registry[Protocol | str | Path | None] = Registry("protocol", _shipped_protocols)


def load_protocol(name: str = DEFAULT) -> Protocol:
    """A shipped protocol by name (`dc`), a plugin's by name, or a .toml file with the same fields by path (`./mine.toml`)."""
    entry = None if files.looks_like_path(name) or name not in PROTOCOLS else PROTOCOLS.get(name)
    if isinstance(entry, Protocol):
        path, protocol = Path(name), entry
    else:
        path, data = files.read(__name__, name if entry is None else str(Path(entry).expanduser().absolute()), "evaluation protocol")
        protocol = files.validate(Protocol, data, path, "protocol")
    for model in protocol.lr_by_model:
        try:
            MODELS.canonical(model)  # an unknown model name fails here, with the registry's suggestions
        except LaddError as e:
            raise type(e)(f"protocol {path}: lr_by_model.{model}: {e}") from None
    return protocol
