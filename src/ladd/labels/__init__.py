"""Label stage: a label method turns an artifact (images + hard labels) into soft labels (and
LADD's dense labels). Methods are registered by name; `ladd label --labels NAME` picks one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from ladd.core.errors import ConfigError
from ladd.core.registry import Registry, modules
from ladd.experts import ExpertConfig
from ladd.experts.pretrained import PretrainedConfig, omit_none
from ladd.labels.bptt import BpttConfig


class LabelConfig(BaseModel):
    """LADD defaults: N = 5, R = 62.5% (paper §4), labeler early-stopped at epoch 10. The teacher
    options (epoch, ensemble, temperature, top-k) apply to every teacher-made label: LADD's dense
    labels and the global soft labels alike."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    method: str = "ladd"
    n: int = 5
    r: float = 0.625
    labeler: ExpertConfig = ExpertConfig()  # the labeler is an expert, early-stopped at `epoch`
    epoch: float | None = Field(None, ge=0)  # checkpoint used; default = labeler.epochs
    labeler_dir: str | None = None  # default: the expert cache, keyed by dataset and config
    ensemble: int = Field(1, ge=1)  # experts with seeds seed..seed+K-1; logits averaged, then softmax
    temperature: float = Field(1.0, gt=0)  # softmax(logits / T)
    top_k: int | None = Field(None, ge=1)  # keep the k largest probabilities, zero the rest (no renorm)
    dtype: Literal["float32", "float16"] = "float32"
    bptt: BpttConfig = BpttConfig()  # the `bptt` method: labels learned by truncated BPTT (no teacher)
    labeler_weights: PretrainedConfig | None = None  # a pretrained labeler (`--labeler-weights`) instead of an expert
    # `ladd`: keep the artifact's global soft labels (e.g. learned with MTT's images) beside the new dense labels
    keep_soft: bool | None = None

    @model_validator(mode="after")
    def _keep_soft_is_for_ladd(self) -> "LabelConfig":
        if self.keep_soft and LABEL_METHODS.canonical(self.method) != "ladd":
            raise ConfigError(
                f"--keep-soft-labels keeps soft labels beside LADD's dense ones: use it with --labels ladd, not {self.method}"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):  # unset options are left out: dumps (cache keys, manifests) stay as they were
        return omit_none(handler(self), "labeler_weights", "keep_soft")


@dataclass(frozen=True)
class Labels:
    """What a label method adds to an artifact: tensors, provenance for the manifest, FLOPs."""

    soft: torch.Tensor | None
    dense: torch.Tensor | None
    manifest: dict
    flops: dict


LABEL_METHODS: Registry[Callable[..., Labels]] = Registry("label method", modules(__name__, "methods"))
