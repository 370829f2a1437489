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
    dense, soft = dense_labels(Teacher([labeler]), images, toy.mean, toy.std, n=5, r=0.625, crops_per_pass=50)
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
