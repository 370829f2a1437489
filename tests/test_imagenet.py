"""ImageNet-1K and its MTT subsets: fake ILSVRC-2012 folders of tiny JPEGs with real WNIDs."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ladd.core.errors import LaddError
from ladd.data import holdout, load_dataset
from ladd.data.imagenet import ImageNetDataset, imagenet_wnids, mtt_wnids, subset_wnids

# Each subset's WNIDs in MTT's list order: GeorgeCazenavette/mtt-distillation@50dccea4 utils.py `Config`
# (ImageNet class indices), turned into WNIDs by Kaggle's LOC_synset_mapping.txt (line i = index i);
# imagenette's and imagewoof's sets equal fast.ai's folders (fastai/imagenette@ba8db395 noisy_*.csv).
MTT = {
    "imagenette": "n01440764 n02102040 n02979186 n03000684 n03028079 n03394916 n03417042 n03425413 n03445777 n03888257",
    "imagewoof": "n02096294 n02093754 n02111889 n02088364 n02086240 n02089973 n02087394 n02115641 n02099601 n02105641",
    "imagefruit": "n07753275 n07753592 n07745940 n07747607 n07749582 n07768694 n07753113 n07720875 n07718472 n07742313",
    "imagemeow": "n02123045 n02123159 n02123394 n02123597 n02124075 n02129165 n02129604 n02128925 n02128757 n02127052",
    "imagesquawk": "n01806143 n02007558 n01818515 n02051845 n02056570 n01614925 n01843383 n01518878 n01860187 n01819313",
    "imageyellow": "n02206856 n12057211 n07753592 n07749582 n12144580 n04146614 n03530642 n02129165 n01773157 n01531178",
}
MTT = {name: wnids.split() for name, wnids in MTT.items()}
EXTRA = ["n01443537", "n04596742"]  # goldfish, wok: in no subset
WNIDS = sorted({w for wnids in MTT.values() for w in wnids} | set(EXTRA))  # 57 classes
SIZES = [(13, 9), (8, 16), (11, 11)]  # (w, h): portrait, landscape, square
RES = 8


def assert_one_line_error(excinfo, *substrings):
    message = str(excinfo.value)
    assert "\n" not in message
    for s in substrings:
        assert s in message, message


def write_jpeg(path, rng, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """`folders`: train/<wnid>/ + val/<wnid>/; `kaggle`: Kaggle's download, the same files with a flat
    val/ + LOC_val_solution.csv + LOC_synset_mapping.txt at its top. Val ids interleave the classes."""
    rng = np.random.default_rng(0)
    base = tmp_path_factory.mktemp("imagenet")
    folders, kaggle = base / "folders", base / "kaggle"
    data = kaggle / "ILSVRC" / "Data" / "CLS-LOC"
    rows = []
    for k, wnid in enumerate(WNIDS):
        for i in range(2):
            write_jpeg(folders / "train" / wnid / f"{wnid}_{i}.JPEG", rng, SIZES[(k + i) % 3])
        for i in range(2 if k % 2 else 1):
            image_id = f"ILSVRC2012_val_{len(WNIDS) * (1 - i) + k + 1:08d}"  # a class's 2nd image sorts first
            write_jpeg(folders / "val" / wnid / f"{image_id}.JPEG", rng, SIZES[(k + i + 1) % 3])
            rows.append((image_id, f"{wnid} 1 2 7 8 {wnid} 0 0 5 5"))
    shutil.copytree(folders / "train", data / "train")
    (data / "val").mkdir(parents=True)
    for path in (folders / "val").rglob("*.JPEG"):
        shutil.copy(path, data / "val" / path.name)
    with open(kaggle / "LOC_val_solution.csv", "w", newline="") as f:
        csv.writer(f).writerows([("ImageId", "PredictionString"), *(rows[i] for i in rng.permutation(len(rows)))])  # shuffled
    (kaggle / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {w[-3:]}, other name\n" for w in WNIDS))
    return folders, kaggle


def assert_same(a, b):
    assert a.class_names == b.class_names
    for split in ("train", "test"):
        assert torch.equal(getattr(a, split).images, getattr(b, split).images)
        assert torch.equal(getattr(a, split).labels, getattr(b, split).labels)
    assert a.mean == b.mean and a.std == b.std


def test_wnid_list():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and list(wnids) == sorted(wnids)
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert (wnids[0], wnids[701], wnids[999]) == ("n01440764", "n03888257", "n15075141")  # tench, parachute, toilet tissue


@pytest.mark.parametrize("name", sorted(MTT))
def test_subset_lists(name):
    assert list(mtt_wnids(name)) == MTT[name]
    assert list(subset_wnids(name)) == sorted(MTT[name])
    assert len(set(MTT[name])) == 10


def test_imagenet_both_val_layouts(ilsvrc):
    folders, kaggle = ilsvrc
    ds = load_dataset("imagenet", data_dir=folders, resolution=RES)
    assert ds.name == "imagenet" and ds.class_names == tuple(WNIDS)  # sorted WNIDs
    assert ds.train.images.shape == (2 * len(WNIDS), 3, RES, RES)
    assert ds.test.images.shape == (len(WNIDS) + len(WNIDS) // 2, 3, RES, RES)
    assert ds.train.labels.tolist() == [k for k in range(len(WNIDS)) for _ in range(2)]
    assert ds.descriptions == ()  # no LOC_synset_mapping.txt beside this folder
    for data_dir in (kaggle, kaggle / "ILSVRC" / "Data" / "CLS-LOC"):  # the download, or its train/val folder
        flat = load_dataset("ImageNet-1K", data_dir=data_dir, resolution=RES)
        assert_same(ds, flat)
        assert isinstance(flat, ImageNetDataset) and flat.class_names == tuple(WNIDS)  # WNIDs, not names
        assert flat.descriptions[0] == f"class {WNIDS[0][-3:]}, other name"
    assert load_dataset("imagenet", data_dir=folders).shape == (3, 64, 64)  # default resolution


def test_solution_csv_in_data_dir_or_parent(ilsvrc, tmp_path):
    _, kaggle = ilsvrc
    data = kaggle / "ILSVRC" / "Data" / "CLS-LOC"
    reference = load_dataset("imagenette", data_dir=data, resolution=RES)
    for folder in (tmp_path / "here", tmp_path / "parent" / "child"):
        shutil.copytree(data, folder)
    shutil.copy(kaggle / "LOC_val_solution.csv", tmp_path / "here")
    shutil.copy(kaggle / "LOC_val_solution.csv", tmp_path / "parent")
    for folder in (tmp_path / "here", tmp_path / "parent" / "child"):
        assert_same(reference, load_dataset("imagenette", data_dir=folder, resolution=RES))
    (tmp_path / "here" / "LOC_val_solution.csv").unlink()
    with pytest.raises(LaddError) as e:
        load_dataset("imagenette", data_dir=tmp_path / "here", resolution=RES)
    assert_one_line_error(e, "no val/<wnid>/ class folders", "LOC_val_solution.csv", "valprep.sh")


@pytest.mark.parametrize("name", sorted(MTT))
def test_subset_picks_its_classes(ilsvrc, name):
    folders, kaggle = ilsvrc
    ds = load_dataset(name, data_dir=folders, resolution=RES)
    assert ds.name == name and list(ds.class_names) == sorted(MTT[name])
    assert ds.train.labels.tolist() == [k for k in range(10) for _ in range(2)]
    full = load_dataset("imagenet", data_dir=folders, resolution=RES)
    keep = torch.tensor([WNIDS.index(w) for w in ds.class_names])
    rows = torch.isin(full.train.labels, keep).nonzero().flatten()
    assert torch.equal(ds.train.images, full.train.images[rows])  # the same images, only relabelled
    assert_same(ds, load_dataset(name, data_dir=kaggle, resolution=RES))  # flat val: other classes' rows skipped


@pytest.mark.parametrize("name", ["imagewoof", "imagesquawk"])
def test_subset_refuses_missing_class(ilsvrc, tmp_path, name):
    folders, _ = ilsvrc
    shutil.copytree(folders, tmp_path, dirs_exist_ok=True)
    gone = MTT[name][4]
    shutil.rmtree(tmp_path / "train" / gone)
    with pytest.raises(LaddError) as e:
        load_dataset(name, data_dir=tmp_path, resolution=RES)
    assert_one_line_error(e, name, gone, str(tmp_path / "train" / gone))


@pytest.mark.parametrize("name", ["imagenette", "imagewoof"])  # imagewoof: MTT's list is not sorted
def test_fastai_folder_via_imagefolder_matches_subset(ilsvrc, tmp_path, name):
    """A fast.ai imagenette2/imagewoof2 folder (train/<wnid>/, val/<wnid>/) read by --dataset imagefolder
    gives the same classes in the same order and the same images as the named subset of ImageNet."""
    folders, _ = ilsvrc
    for split in ("train", "val"):
        for wnid in MTT[name]:
            shutil.copytree(folders / split / wnid, tmp_path / split / wnid)
    subset = load_dataset(name, data_dir=folders, resolution=RES)
    assert_same(subset, load_dataset("imagefolder", data_dir=tmp_path, resolution=RES))
    assert subset.shape == (3, RES, RES)


def test_default_subset_resolution_and_holdout(ilsvrc):
    _, kaggle = ilsvrc
    ds = load_dataset("imagenette", data_dir=kaggle)
    assert ds.shape == (3, 128, 128)
    assert len(ds.descriptions) == 10 and holdout(ds, 1).descriptions == ds.descriptions  # replace() keeps the subclass


def test_imagenet_refuses_bad_folders(ilsvrc, tmp_path):
    folders, kaggle = ilsvrc
    shutil.copytree(folders, tmp_path / "a")
    (tmp_path / "a" / "train" / "cats").mkdir()
    with pytest.raises(LaddError) as e:
        load_dataset("imagenet", data_dir=tmp_path / "a", resolution=RES)
    assert_one_line_error(e, "cats", "not an ImageNet-1K class", "--dataset imagefolder")
    # a class of the val CSV without a train/ folder
    shutil.copytree(kaggle, tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "ILSVRC" / "Data" / "CLS-LOC" / "train" / WNIDS[3])
    with pytest.raises(LaddError) as e:
        load_dataset("imagenet", data_dir=tmp_path / "b", resolution=RES)
    assert_one_line_error(e, "LOC_val_solution.csv", WNIDS[3], "no folder under train/")
    with pytest.raises(LaddError) as e:
        load_dataset("imagenet", resolution=RES)
    assert_one_line_error(e, "--data-dir")
