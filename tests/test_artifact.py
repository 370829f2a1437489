import json

import pytest
import torch

from ladd.artifact import Artifact, load_artifact, save_artifact
from ladd.core.errors import ArtifactError, LaddError
from ladd.cost.storage import zip_bytes


def _art(dense=None, soft=None, n=2):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    manifest = {"source": {"dataset": "toy", "class_names": ["a", "b", "c"], "shape": [1, 8, 8]}, "ipc": 2}
    if dense is not None:
        manifest["labels"] = {"subsample": {"n": n, "r": 0.5}}
    return Artifact(images, labels, manifest, soft, dense)


def _dense(n=2):
    return torch.rand(6, n * n, 3, generator=torch.Generator().manual_seed(1)).softmax(-1)


def test_round_trip_keeps_every_tensor_and_records_hashes(tmp_path):
    art = _art(_dense(), torch.full((6, 3), 1 / 3))
    save_artifact(tmp_path / "a", art)
    back = load_artifact(tmp_path / "a")
    for name, t in art.components().items():
        assert torch.equal(back.components()[name], t)
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert set(m["files"]) == {"images.safetensors", "labels.safetensors", "soft_labels.safetensors", "dense_labels.safetensors"}
    assert m["storage"]["dense_labels"]["raw"] == 6 * 4 * 3 * 4
    for name, t in art.components().items():  # the recorded bytes are what the tensors compress to
        assert m["storage"][name]["zip"] == zip_bytes(t, name)
    assert back.geometry == (2, 0.5)


def test_a_loaded_artifact_maps_its_files_and_a_write_to_a_tensor_stays_in_memory(tmp_path):
    """Components are memory-mapped (the ranks of a machine share the pages), copy-on-write: an
    in-place change to a loaded tensor never reaches the file, and replacing the artifact leaves
    the loaded one intact."""
    save_artifact(tmp_path / "a", _art(_dense()))
    back = load_artifact(tmp_path / "a")
    maps = open("/proc/self/maps").read()
    assert all(str(tmp_path / "a" / f"{name}.safetensors") in maps for name in ("images", "labels", "dense_labels"))
    before = back.images.clone()
    back.images.add_(1)
    assert torch.equal(load_artifact(tmp_path / "a").images, before)
    save_artifact(tmp_path / "a", _art())
    assert torch.equal(back.images, before + 1) and back.dense_labels.sum().item() == pytest.approx(6 * 4)


def test_float16_labels_round_trip(tmp_path):
    save_artifact(tmp_path / "a", _art(_dense().half()))
    assert load_artifact(tmp_path / "a").dense_labels.dtype == torch.float16


def test_tampered_file_is_detected(tmp_path):
    save_artifact(tmp_path / "a", _art(_dense()))
    path = tmp_path / "a" / "images.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LaddError, match="does not match the SHA-256"):
        load_artifact(tmp_path / "a")


def test_manifest_shape_mismatch_is_detected(tmp_path):
    save_artifact(tmp_path / "a", _art())
    mpath = tmp_path / "a" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["files"]["images.safetensors"]["shape"] = [7, 1, 8, 8]  # one image more than stored
    mpath.write_text(json.dumps(m))
    with pytest.raises(LaddError, match="but the manifest says"):
        load_artifact(tmp_path / "a")


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda d: d.index_fill(0, torch.tensor([0]), float("nan")), "NaN"),
        (lambda d: d - 0.5, "negative"),
        (lambda d: d * 2, "not normalized"),
        (lambda d: d[:, :3], "expected"),
    ],
)
def test_invalid_dense_labels_are_refused_and_nothing_is_written(tmp_path, bad, match):
    with pytest.raises(LaddError, match=match):
        save_artifact(tmp_path / "a", _art(bad(_dense())))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_artifact(tmp_path, monkeypatch):
    import ladd.artifact as mod

    calls = []

    def failing(path, tensors, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(path, tensors, metadata)

    real = mod.save_tensors
    monkeypatch.setattr(mod, "save_tensors", failing)
    with pytest.raises(OSError):
        save_artifact(tmp_path / "a", _art())
    assert [p.name for p in tmp_path.iterdir()] == [".a.lock"]  # only the lock file (empty; kept, as file locks are)


def test_missing_and_corrupt_manifests(tmp_path):
    with pytest.raises(LaddError, match="not a ladd artifact"):
        load_artifact(tmp_path / "nope")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{oops")
    with pytest.raises(LaddError, match="not valid JSON"):
        load_artifact(tmp_path / "b")


def test_refuses_to_replace_a_folder_that_is_not_an_artifact(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    with pytest.raises(LaddError, match="is not a ladd artifact"):
        save_artifact(tmp_path / "data", _art())
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"
    save_artifact(tmp_path / "a", _art())
    save_artifact(tmp_path / "a", _art(_dense()))  # an artifact is replaced whole
    assert load_artifact(tmp_path / "a").dense_labels is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")] == []


def test_manifest_of_another_schema_version_is_refused_in_one_line(tmp_path):
    save_artifact(tmp_path / "a", _art())
    mpath = tmp_path / "a" / "manifest.json"
    m = json.loads(mpath.read_text())
    for old in (0, None):  # an older ladd's version, or none recorded
        m["schema_version"] = old
        mpath.write_text(json.dumps(m))
        with pytest.raises(LaddError, match=rf"manifest.json has schema version {old}; this ladd reads 1: make the artifact again") as e:
            load_artifact(tmp_path / "a")
        assert "\n" not in str(e.value)


def test_malformed_manifest_is_one_error(tmp_path):
    save_artifact(tmp_path / "a", _art())
    mpath = tmp_path / "a" / "manifest.json"
    m = json.loads(mpath.read_text())
    del m["files"]["labels.safetensors"]["sha256"]
    mpath.write_text(json.dumps(m))
    with pytest.raises(LaddError, match="malformed"):
        load_artifact(tmp_path / "a")


def _edit_manifest(path, edit):
    mpath = path / "manifest.json"
    m = json.loads(mpath.read_text())
    edit(m)
    mpath.write_text(json.dumps(m))


def test_schema_version_of_the_wrong_type_says_so(tmp_path):
    save_artifact(tmp_path / "a", _art())
    _edit_manifest(tmp_path / "a", lambda m: m.update(schema_version="1"))
    with pytest.raises(ArtifactError, match=r"manifest.json has schema version '1', a str where an integer is expected"):
        load_artifact(tmp_path / "a")


def test_source_shape_that_disagrees_with_the_stored_images_is_an_inconsistent_manifest(tmp_path):
    save_artifact(tmp_path / "a", _art())
    _edit_manifest(tmp_path / "a", lambda m: m["source"].update(shape=[1, 28, 28]))
    with pytest.raises(ArtifactError, match=r"manifest.json is inconsistent: source.shape says 1×28×28, images.safetensors holds 6×1×8×8"):
        load_artifact(tmp_path / "a")


def test_an_artifact_naming_a_dataset_this_install_lacks_is_an_artifact_error(tmp_path):
    """The dataset name comes from the manifest, not an option: exit 4 naming manifest.json, not a usage error."""
    from ladd import pipeline
    from ladd.cli.common import open_artifact

    source = pipeline.SourceConfig(dataset="digits")
    save_artifact(tmp_path / "a", pipeline.distill(pipeline.load_source(source), source, pipeline.ImagesConfig(ipc=1)))
    open_artifact(tmp_path / "a", None)
    _edit_manifest(tmp_path / "a", lambda m: m["source"].update(dataset="nosuch"))
    with pytest.raises(ArtifactError, match=r"a/manifest.json names dataset 'nosuch', which this install does not have \(.*digits"):
        open_artifact(tmp_path / "a", None)
