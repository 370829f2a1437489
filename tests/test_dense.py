import torch
from torch import nn

from ladd.augment.subsample import views
from ladd.core.types import normalize
from ladd.labels.dense import dense_labels
from ladd.labels.soft import Teacher


def test_dense_labels_are_distributions_and_match_a_per_crop_loop(toy):
    torch.manual_seed(0)
    labeler = nn.Sequential(nn.Flatten(), nn.Linear(64, toy.num_classes))
    images = toy.train.images  # 18 images = IPC 6 × 3 classes
    dense, soft = dense_labels(Teacher([labeler]), images, toy.mean, toy.std, n=5, r=0.625, per_pass=50)
    assert dense.shape == (18, 25, 3) and soft.shape == (18, 3)
    torch.testing.assert_close(dense.sum(-1), torch.ones(18, 25))
    assert (dense >= 0).all()
    x = normalize(images, toy.mean, toy.std)
    for i in (0, 17):
        v = views(x[i : i + 1], 5, 0.625)[0]
        for j in (0, 12, 24):
            torch.testing.assert_close(dense[i, j], labeler(v[j : j + 1]).softmax(-1)[0])
        torch.testing.assert_close(soft[i], labeler(x[i : i + 1]).softmax(-1)[0])


def test_temperature_and_top_k_apply_to_dense_labels_too(toy):
    torch.manual_seed(0)
    labeler = nn.Sequential(nn.Flatten(), nn.Linear(64, toy.num_classes))
    images = toy.train.images[:4]
    dense, soft = dense_labels(Teacher([labeler], temperature=4.0, top_k=2), images, toy.mean, toy.std, n=2, r=0.75)
    assert ((dense > 0).sum(-1) == 2).all() and ((soft > 0).sum(-1) == 2).all()
    v = views(normalize(images, toy.mean, toy.std), 2, 0.75)
    full = (labeler(v[1, 1:2]) / 4.0).softmax(-1)[0]
    kept = dense[1, 1] > 0
    torch.testing.assert_close(dense[1, 1][kept], full[kept])  # kept entries are not renormalized


def test_a_gpu_pass_holds_a_fixed_number_of_pixels_and_a_cpu_pass_a_few_crops():
    """Crops are resized back to the image's size, so a GPU pass of 4,096 crops at 32 px is 256 at
    128 px and 83 at 224 px (a pass takes at least one image's N² crops); CPU passes stay small."""
    from ladd.labels.dense import crops_per_pass

    cuda = torch.device("cuda")
    assert [crops_per_pass(cuda, (s, s)) for s in (32, 128, 224, 8192)] == [4096, 256, 83, 1]
    assert crops_per_pass(torch.device("cpu"), (224, 224)) == crops_per_pass(torch.device("cpu"), (8, 8)) == 50
