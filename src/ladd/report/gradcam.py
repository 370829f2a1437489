"""Grad-CAM (Selvaraju et al. 2017) of a trained student on chosen test images (LADD Fig. 4):
where in the image the evidence for the predicted class lies.

For the last Conv2d layer's activations A (K×h×w): α_k = mean over positions of ∂y_c/∂A_k,
map = ReLU(Σ_k α_k A_k), upsampled bilinearly to the image and scaled to [0, 1] per image.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ladd.core.errors import ConfigError
from ladd.core.types import normalize


def last_conv(model: nn.Module) -> nn.Conv2d:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(
            f"{type(model).__name__} has no Conv2d layer: Grad-CAM needs a convolutional model (convnet, alexnet, vgg11, resnet18)"
        )
    return convs[-1]


def grad_cam(model: nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps B×H×W in [0, 1], the classes explained) for a normalized batch x; `classes` default
    to the predicted ones."""
    layer, store = last_conv(model), {}
    hook = layer.register_forward_hook(lambda m, i, out: store.__setitem__("a", out))
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x)
            classes = logits.argmax(1) if classes is None else classes
            acts = store["a"]
            grads = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), acts)[0]
    finally:
        hook.remove()
    cam = F.relu((grads.mean((2, 3), keepdim=True) * acts).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)
    return cam / peak[:, None, None], classes


def figure(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std, names, path: Path, title: str) -> Path:
    """One column per test image: the image, and below it the Grad-CAM of the predicted class
    overlaid on it (opacity rising with the map, so the image shows through where the map is low;
    a wrong prediction's title in red)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from ladd.report.plots import image_pixels, save_figure, subplots

    device = next(model.parameters()).device
    maps, pred = grad_cam(model, normalize(images.to(device), mean, std))
    fig, axes = subplots(2, len(images), figsize=(1.7 * len(images) + 0.8, 3.6), squeeze=False)
    for j in range(len(images)):
        shown = image_pixels(images[j])
        for ax in axes[:, j]:
            ax.imshow(shown, cmap="gray")
            ax.axis("off")
        cam = maps[j].cpu().numpy()
        overlay = colormaps["jet"](cam)
        overlay[..., 3] = 0.75 * cam
        axes[1, j].imshow(overlay)
        axes[0, j].set_title(f"true {names[int(labels[j])]}", fontsize=7)
        axes[1, j].set_title(f"pred {names[int(pred[j])]}", fontsize=7, color="k" if pred[j] == labels[j].to(pred.device) else "r")
    fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=axes[1, :], label="Grad-CAM", shrink=0.9)
    fig.suptitle(title, fontsize=8)
    return save_figure(fig, path)


def student_figures(
    art,
    dataset,
    methods,
    model: str,
    protocol: str,
    index: list[int],
    out: Path,
    runtime,
    *,
    epochs: int | None = None,
    lr: float | None = None,
) -> list[Path]:
    """Train one student (seed 0) per evaluation method on the artifact under `protocol` (epochs and
    lr overridable), every local view each step, and write `out/gradcam_<method>.png` of each on
    the real test images `index` (`ladd gradcam`). Returns the figures' paths."""
    from ladd.augment.dsa import strategy_for
    from ladd.eval.protocol import crops_for, local_reduction_for, train_data, train_students
    from ladd.eval.protocols import load_protocol
    from ladd.train.terms import method_terms

    chosen = load_protocol(protocol)
    data = train_data(art, dataset)
    crops = crops_for("all", len(art.images), art.geometry[0] if art.geometry else 1)
    recipe = chosen.recipe(model, strategy_for(dataset.name), epochs=epochs, lr=lr, images=len(art.images))
    paths = []
    for method in methods:
        terms = method_terms(method, crops, local_reduction_for(art), chosen.soft_loss)
        student = train_students(data, terms, recipe, dataset, model, 1, runtime, method).models[0]
        paths.append(
            figure(
                student,
                dataset.test.images[index],
                dataset.test.labels[index],
                dataset.mean,
                dataset.std,
                dataset.class_names,
                Path(out) / f"gradcam_{method}.png",
                f"{method} student ({model}, protocol {chosen.name}, {recipe.epochs} epochs): Grad-CAM of the predicted class",
            )
        )
    return paths
