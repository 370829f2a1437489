import numpy as np
import pytest
import torch

from ladd.artifact import Artifact, load_artifact, save_artifact
from ladd.artifact.export import export
from ladd.core.errors import LaddError
from ladd.images import ImageRequest, make_images

from conftest import make_dataset


def _artifact(ds, soft=True):
    images, labels = ds.train.images[::2], ds.train.labels[::2]
    manifest = {"source": {"class_names": list(ds.class_names)}, "images": {"learned": {"lr": 0.02}}}
    probs = torch.softmax(
        torch.randn(len(labels), ds.num_classes, generator=torch.Generator().manual_seed(0))
        + 5 * torch.nn.functional.one_hot(labels, ds.num_classes),
        1,
    )
    return Artifact(images, labels, manifest, soft_labels=probs if soft else None)


@pytest.mark.parametrize("fmt", ["pt", "npz", "folder"])
@pytest.mark.parametrize("channels", [1, 3])
def test_export_then_import_round_trips_images_and_labels(tmp_path, fmt, channels):
    ds = make_dataset(channels=channels)
    art = _artifact(ds)
    path = export(art, tmp_path / ("set.npz" if fmt == "npz" else "set"), fmt)
    back = make_images("import", ImageRequest(ds, 1, path=path))
    assert torch.equal(back.images, art.images) and torch.equal(back.labels, art.labels)


def test_pt_export_is_ddranking_style_and_loads_without_pickle(tmp_path):
    ds = make_dataset()
    art = _artifact(ds)
    path = export(art, tmp_path / "dd", "pt")
    images = torch.load(path / "images.pt", weights_only=True)
    labels = torch.load(path / "labels.pt", weights_only=True)
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    assert torch.equal(labels, art.soft_labels) and torch.load(path / "lr.pt", weights_only=True).item() == pytest.approx(0.02)
    hard = export(_artifact(ds, soft=False), tmp_path / "hard", "pt")
    assert torch.equal(torch.load(hard / "labels.pt", weights_only=True), art.labels)
    with np.load(export(art, tmp_path / "s.npz", "npz"), allow_pickle=False) as z:
        assert list(z["class_names"]) == list(ds.class_names) and np.array_equal(z["soft_labels"], art.soft_labels.numpy())


def test_export_refuses_unknown_formats_and_existing_paths(tmp_path):
    art = _artifact(make_dataset())
    with pytest.raises(LaddError, match="choose one of pt, npz, folder"):
        export(art, tmp_path / "x", "zip")
    (tmp_path / "taken").mkdir()
    with pytest.raises(LaddError, match="already exists"):
        export(art, tmp_path / "taken", "pt")


def test_a_saved_artifact_exports_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from ladd.cli import app

    save_artifact(tmp_path / "art", _artifact(make_dataset()))
    result = CliRunner().invoke(app, ["export", str(tmp_path / "art"), "--format", "folder", "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["000_c0", "001_c1", "002_c2"]
    assert len(list((tmp_path / "f").rglob("*.png"))) == len(load_artifact(tmp_path / "art").images)


def test_npz_export_gets_its_suffix_and_imports(tmp_path):
    ds = make_dataset()
    art = _artifact(ds)
    path = export(art, tmp_path / "set", "npz")
    assert path == tmp_path / "set.npz" and path.is_file() and not (tmp_path / "set").exists()
    back = make_images("import", ImageRequest(ds, 1, path=path))
    assert torch.equal(back.images, art.images) and torch.equal(back.labels, art.labels)
    with pytest.raises(LaddError, match="set.npz already exists"):
        export(art, tmp_path / "set", "npz")


@pytest.mark.parametrize("fmt", ["pt", "npz", "folder"])
def test_exports_get_ordinary_modes(tmp_path, fmt):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = export(_artifact(make_dataset()), tmp_path / "x", fmt)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [path, *path.rglob("*")] if p.is_dir()}
    assert modes <= {0o755}
    assert {stat.S_IMODE(p.stat().st_mode) for p in [path, *path.rglob("*")] if p.is_file()} == {0o644}
