import pytest
import torch
import torch.nn.functional as F

from ladd.augment.subsample import crop_geometry, views
from ladd.core.errors import LaddError


def test_paper_default_geometry_on_128px():
    assert crop_geometry(128, 5, 0.625) == (80, [0, 12, 24, 36, 48])


@pytest.mark.parametrize("size", [8, 28, 32, 128])
@pytest.mark.parametrize("n,r", [(5, 0.625), (2, 0.5), (3, 1.0)])
def test_crops_cover_both_corners_with_uniform_stride(size, n, r):
    crop, offsets = crop_geometry(size, n, r)
    assert crop == int(r * size + 0.5)
    assert offsets[0] == 0 and offsets[-1] + crop == size  # first and last crop touch the edges
    ideal = [k * (size - crop) / (n - 1) for k in range(n)]
    assert all(abs(o - i) <= 0.5 for o, i in zip(offsets, ideal))


def test_28px_geometry():
    assert crop_geometry(28, 5, 0.625) == (18, [0, 3, 5, 8, 10])


@pytest.mark.parametrize(
    "n,r,match",
    [(1, 0.5, "N >= 2"), (5, 0.0, r"outside \(0, 1\]"), (5, 1.5, r"outside \(0, 1\]"), (5, 0.1, "at least 2 px")],
)
def test_bad_geometry_is_refused(n, r, match):
    with pytest.raises(LaddError, match=match):
        crop_geometry(8, n, r)


def test_views_equal_direct_slice_and_resize():
    x = torch.randn(2, 3, 28, 28)
    v = views(x, 5, 0.625)
    assert v.shape == (2, 25, 3, 28, 28)
    crop, offs = crop_geometry(28, 5, 0.625)
    for j in (0, 7, 24):
        a, b = divmod(j, 5)
        direct = x[:, :, offs[a] : offs[a] + crop, offs[b] : offs[b] + crop]
        direct = F.interpolate(direct, size=(28, 28), mode="bilinear", align_corners=False)
        torch.testing.assert_close(v[:, j], direct)


def test_views_pick_requested_crops_per_image():
    x = torch.randn(3, 1, 16, 16)
    full = views(x, 4, 0.5)
    index = torch.tensor([[0, 5], [15, 3], [7, 7]])
    picked = views(x, 4, 0.5, index)
    for i in range(3):
        for k in range(2):
            torch.testing.assert_close(picked[i, k], full[i, index[i, k]])


def test_full_coverage_r1_is_identity():
    x = torch.randn(1, 1, 8, 8)
    assert torch.equal(views(x, 2, 1.0)[0, 3], x[0])


def test_small_images_with_repeated_crop_offsets_are_reported():
    from ladd.augment.subsample import repeated_crops

    message = repeated_crops((8, 8), 5, 0.625)
    assert message.startswith("N=5, R=0.625 on 8×8 images: 5×5 px crops at offsets 0, 1, 2, 2, 3 (rows)")
    assert "only 16 of the 25 sub-images differ" in message and "choose N <= 4" in message
    assert repeated_crops((8, 8), 4, 0.625) is None and repeated_crops((28, 28), 5, 0.625) is None
    assert repeated_crops((28, 8), 5, 0.625) is not None  # one short axis is enough


def test_ladd_labels_on_8px_images_warn_and_record_the_repeats(capsys):
    from ladd import pipeline
    from ladd.core.runtime import Runtime
    from ladd.experts import ExpertConfig

    src = pipeline.SourceConfig(dataset="digits")
    data = pipeline.load_source(src)
    art = pipeline.distill(data, src, pipeline.ImagesConfig(ipc=1))
    cfg = pipeline.LabelConfig(labeler=ExpertConfig(model="convnet-w32", epochs=1))
    labelled = pipeline.label(art, data, cfg, Runtime())
    assert "warning: N=5, R=0.625 on 8×8 images" in capsys.readouterr().err
    assert "choose N <= 4" in labelled.manifest["labels"]["subsample"]["repeated_crops"]
    assert torch.equal(labelled.dense_labels[:, 2 * 5], labelled.dense_labels[:, 3 * 5])  # rows 2 and 3 start at the same pixel
