"""Third-party methods, loss terms, datasets, models and protocols, from their own packages.

A plugin package declares an entry point in the `ladd.plugins` group whose object is a callable
`register(registries)`; it is called once per process (by `ladd.cli.main` and `ladd.api`) with a
`Registries` and adds to them exactly as ladd's own modules do, e.g.

    def register(ladd):
        ladd.images.register("tiny")(tiny_images)
        ladd.protocols.register("tiny-budget")(Path(__file__).parent / "tiny.toml")

Names live in the same namespace as the built-ins: a plugin may not take one (nor an alias)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib.metadata import entry_points

from ladd.core.errors import ConfigError
from ladd.core.registry import NameTaken, Registry

GROUP = "ladd.plugins"


@dataclass(frozen=True)
class Registries:
    """Every registry a plugin may add to, by the word its option uses."""

    images: Registry  # --images: (ImageRequest) -> ImageSet
    labels: Registry  # --labels: (artifact, dataset, LabelConfig, runtime) -> Labels
    terms: Registry  # loss terms: (crops_per_step, local reduction, soft-label loss) -> term(model, batch) -> (loss, inputs)
    methods: Registry  # --methods: a tuple of loss-term names
    models: Registry  # --model: (channels=, num_classes=, im_size=) -> nn.Module with embed + classifier
    datasets: Registry  # --dataset: (SourceOptions) -> Dataset
    protocols: Registry  # --protocol: a Protocol or a .toml path


def registries() -> Registries:
    from ladd.data import SOURCES
    from ladd.eval.protocols import PROTOCOLS
    from ladd.images import IMAGE_METHODS
    from ladd.labels import LABEL_METHODS
    from ladd.models import MODELS
    from ladd.train.terms import METHODS, TERMS

    return Registries(IMAGE_METHODS, LABEL_METHODS, TERMS, METHODS, MODELS, SOURCES, PROTOCOLS)


_loaded = False


def load() -> None:
    """Call every installed plugin's `register`, once per process; a plugin that fails to import or
    register is one line naming its entry point (and a later call does not retry it)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    found = entry_points(group=GROUP)
    if not found:  # no plugins: start-up imports no method modules
        return
    regs = registries()
    for field in fields(regs):
        getattr(regs, field.name).load_builtins()
    for ep in found:
        where = f"plugin {ep.name!r} ({ep.value})"
        try:
            ep.load()(regs)
        except NameTaken as e:
            raise ConfigError(f"{where}: {e}: a plugin cannot replace a name ladd or another plugin has") from None
        except Exception as e:
            raise ConfigError(f"{where} failed: {type(e).__name__}: {e}") from e
