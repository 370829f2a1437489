import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ladd.core.errors import ArtifactError, LaddError
from ladd.core.types import normalize
from ladd.images import ImageRequest, make_images


def test_random_draws_ipc_distinct_images_per_class_deterministically(toy):
    a = make_images("random", ImageRequest(toy, 2, seed=3))
    b = make_images("random", ImageRequest(toy, 2, seed=3))
    c = make_images("random", ImageRequest(toy, 2, seed=4))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert len({img.numpy().tobytes() for img in a.images}) == 6


def test_ipc_larger_than_smallest_class_is_refused(toy):
    with pytest.raises(LaddError, match="between 1 and 6"):
        make_images("random", ImageRequest(toy, 7))


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "pt"])
def test_import_round_trips_uint8_and_float_images(toy, tmp_path, fmt):
    images, labels = toy.train.images[:6], toy.train.labels[:6]
    path = tmp_path / f"set.{fmt}"
    floats = images.float() / 255  # other tools store [0, 1] floats
    if fmt == "safetensors":
        save_file({"images": floats, "labels": labels}, path)
    elif fmt == "npz":
        np.savez(path, x=images.numpy(), y=labels.numpy())
    else:
        torch.save({"images": floats, "labels": labels}, path)
    out = make_images("import", ImageRequest(toy, 1, path=path))
    assert torch.equal(out.images, images) and torch.equal(out.labels, labels)


def test_import_refuses_pickled_objects_and_wrong_shapes(toy, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"images": object(), "labels": [1]}, path)
    with pytest.raises(LaddError, match="cannot read"):
        make_images("import", ImageRequest(toy, 1, path=path))
    save_file(
        {"images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "labels": torch.zeros(2, dtype=torch.long)}, tmp_path / "s.safetensors"
    )
    with pytest.raises(LaddError, match="needs N×1×8×8"):
        make_images("import", ImageRequest(toy, 1, path=tmp_path / "s.safetensors"))
    with pytest.raises(LaddError, match="--import-path"):
        make_images("import", ImageRequest(toy, 1))


def test_import_reads_0_255_and_standardized_floats_and_refuses_nan(toy, tmp_path):
    images, labels = toy.train.images[:6], toy.train.labels[:6]
    save_file({"images": images.float(), "labels": labels}, tmp_path / "a.safetensors")
    assert torch.equal(make_images("import", ImageRequest(toy, 1, path=tmp_path / "a.safetensors")).images, images)
    save_file({"images": normalize(images, toy.mean, toy.std), "labels": labels}, tmp_path / "n.safetensors")
    assert torch.equal(make_images("import", ImageRequest(toy, 1, path=tmp_path / "n.safetensors")).images, images)  # standardized
    bad = images.float()
    bad[0, 0, 0, 0] = float("nan")
    save_file({"images": bad, "labels": labels}, tmp_path / "b.safetensors")
    with pytest.raises(LaddError, match="NaN"):
        make_images("import", ImageRequest(toy, 1, path=tmp_path / "b.safetensors"))


def test_subset_keeps_region_labels_info_and_flops():
    from ladd.core.types import ImageSet

    images = torch.arange(4 * 2 * 2, dtype=torch.uint8).view(4, 1, 2, 2)
    regions = torch.rand(4, 4, 3)
    full = ImageSet(images, torch.tensor([0, 1, 2, 0]), {"lr": 0.02}, regions, flops=123)
    part = full.subset(torch.tensor([3, 1]))
    assert torch.equal(part.images, images[[3, 1]]) and part.labels.tolist() == [0, 1]
    assert torch.equal(part.regions, regions[[3, 1]]) and part.info == {"lr": 0.02} and part.flops == 123
    assert ImageSet(images, full.labels).subset(torch.tensor([0])).regions is None


def test_import_refuses_labels_it_cannot_read_as_class_indices(toy, tmp_path):
    images = toy.train.images[:6]
    save_file({"images": images, "labels": torch.arange(6) + 0.5}, tmp_path / "f.safetensors")
    with pytest.raises(ArtifactError, match="labels are float32: store them as integer class indices"):
        make_images("import", ImageRequest(toy, 1, path=tmp_path / "f.safetensors"))
    np.savez(tmp_path / "w.npz", images=images.numpy(), labels=np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]))  # numpy's default dtype
    assert make_images("import", ImageRequest(toy, 2, path=tmp_path / "w.npz")).labels.tolist() == [0, 1, 2, 0, 1, 2]
    np.savez(tmp_path / "s.npz", images=images.numpy(), labels=np.array(["a", "b", "c", "a", "b", "c"]))
    with pytest.raises(ArtifactError, match=r"'labels' holds <U1 values, not numbers"):
        make_images("import", ImageRequest(toy, 1, path=tmp_path / "s.npz"))
    (tmp_path / "t.npz").write_text("images,labels\n")
    with pytest.raises(ArtifactError, match=r"t.npz is not an npz \(zip\) archive"):
        make_images("import", ImageRequest(toy, 1, path=tmp_path / "t.npz"))
