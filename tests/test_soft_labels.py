"""Soft labels as knowledge: the pure label operations against direct computations, the teacher
(ensembles, temperature), the `soft` label method end to end, and fractional expert checkpoints."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from torch import nn

from ladd import pipeline
from ladd.artifact import load_artifact, save_artifact
from ladd.core.errors import LaddError
from ladd.core.runtime import Runtime
from ladd.experts import ExpertConfig, cache_dir, load_expert, train_expert
from ladd.labels import LabelConfig
from ladd.labels.soft import Teacher, entropy, js_distance, keep_top_k, soften, swap_kth
from ladd.train.loop import saved_epochs
from ladd.train.terms import ce


def _probs(rows=6, classes=5, seed=0):
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed)).mul(2).softmax(-1)


@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_top_k_zeroes_exactly_c_minus_k_entries_and_keeps_the_largest(k):
    p = _probs()
    out = keep_top_k(p, k)
    assert ((out == 0).sum(-1) == p.shape[1] - k).all()
    for row, kept in zip(p, out):
        largest = row.sort(descending=True).values[:k]
        torch.testing.assert_close(kept[kept > 0].sort(descending=True).values, largest)
    with pytest.raises(LaddError, match="between 1 and the number of classes"):
        keep_top_k(p, 6)


@pytest.mark.parametrize("i", [1, 2, 5])
def test_swap_is_a_permutation_moving_the_ith_largest_to_the_smallest(i):
    p = _probs()
    out = swap_kth(p, i)
    torch.testing.assert_close(out.sort(-1).values, p.sort(-1).values)
    order = p.argsort(-1, descending=True)
    rows = torch.arange(len(p))
    torch.testing.assert_close(out[rows, order[:, i - 1]], p.min(-1).values)
    torch.testing.assert_close(out[rows, order[:, -1]], p[rows, order[:, i - 1]])
    untouched = torch.ones_like(p, dtype=torch.bool)
    untouched[rows, order[:, i - 1]] = untouched[rows, order[:, -1]] = False
    torch.testing.assert_close(out[untouched], p[untouched])


def test_js_distance_is_symmetric_zero_on_equal_inputs_and_matches_scipy():
    p, q = _probs(seed=1), _probs(seed=2)
    torch.testing.assert_close(js_distance(p, q), js_distance(q, p))
    torch.testing.assert_close(js_distance(p, p), torch.zeros(len(p)), atol=1e-6, rtol=0)
    want = torch.tensor([jensenshannon(a, b) for a, b in zip(p.numpy(), q.numpy())], dtype=torch.float32)
    torch.testing.assert_close(js_distance(p, q), want, atol=1e-6, rtol=1e-5)


def test_entropy_and_temperature():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(soften(logits, 1.0), logits.softmax(-1))
    torch.testing.assert_close(soften(logits, 2.0), (logits / 2).softmax(-1))
    assert entropy(soften(logits, 10.0)) > entropy(soften(logits, 1.0))  # T > 1 flattens
    torch.testing.assert_close(entropy(torch.full((1, 4), 0.25)), torch.tensor([np.log(4)], dtype=torch.float32))
    with pytest.raises(LaddError, match="must be > 0"):
        soften(logits, 0.0)


def test_an_ensemble_of_identical_experts_equals_the_single_expert_and_averages_logits():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(Teacher([a, a, a])(x), Teacher([a])(x))
        torch.testing.assert_close(Teacher([a, b], temperature=2.0)(x), ((a(x) + b(x)) / 2 / 2.0).softmax(-1))


def test_kl_and_soft_cross_entropy_give_the_same_gradients():
    logits = torch.randn(4, 5, requires_grad=True)
    target = _probs(4, 5)
    g_ce = torch.autograd.grad(ce(logits, target, "ce").sum(), logits)[0]
    g_kl = torch.autograd.grad(ce(logits, target, "kl").sum(), logits)[0]
    torch.testing.assert_close(g_ce, g_kl)
    torch.testing.assert_close(ce(logits, target, "ce") - ce(logits, target, "kl"), entropy(target))


def test_fractional_checkpoints_are_saved_and_loadable(toy):
    cfg = ExpertConfig(model="convnet-w32", epochs=2, batch_size=4, saves_per_epoch=2)
    directory = train_expert(toy, cfg, cache_dir(toy, cfg), Runtime())
    assert saved_epochs(directory) == [0.0, 0.5, 1.0, 1.5, 2.0]
    half, prov = load_expert(directory, 0.5, toy, Runtime())
    whole, _ = load_expert(directory, 1, toy, Runtime())
    assert prov["epoch"] == 0.5
    assert not torch.equal(half.state_dict()["classifier.weight"], whole.state_dict()["classifier.weight"])
    with pytest.raises(LaddError, match=r"epoch 0.25 was not saved .*saved epochs: 0, 0.5, 1, 1.5, 2"):
        load_expert(directory, 0.25, toy, Runtime())
    # more saves than steps: two fractions would land on one step, saved under the later one's name
    many = cfg.model_copy(update={"batch_size": 6, "saves_per_epoch": 4})  # 18 images: 3 steps
    too_many = r"4 saves per epoch \(--labeler-saves-per-epoch, --expert-saves-per-epoch\) is more than the 3 steps of an epoch"
    with pytest.raises(LaddError, match=too_many + r" \(18 images in batches of 6\)"):
        train_expert(toy, many, cache_dir(toy, many), Runtime())


def test_soft_label_method_stores_global_labels_only_and_round_trips(toy, tmp_path):
    src = pipeline.SourceConfig(dataset="toy")
    art = pipeline.distill(toy, src, pipeline.ImagesConfig(ipc=2))
    cfg = LabelConfig(method="expert", labeler=ExpertConfig(model="convnet-w32", epochs=2), ensemble=2, top_k=2, temperature=2.0)
    labeled = pipeline.label(art, toy, cfg, Runtime())
    assert labeled.dense_labels is None and labeled.soft_labels.shape == (6, 3)
    assert ((labeled.soft_labels > 0).sum(-1) == 2).all() and (labeled.soft_labels.sum(-1) < 1).all()
    lab = labeled.manifest["labels"]
    assert lab["method"] == "soft" and lab["labeler"]["ensemble"] == 2 and len(lab["labeler"]["members"]) == 2
    assert [m["config"]["seed"] for m in lab["labeler"]["members"]] == [0, 1]
    save_artifact(tmp_path / "a", labeled)
    torch.testing.assert_close(load_artifact(tmp_path / "a").soft_labels, labeled.soft_labels)
    with pytest.raises(LaddError, match="top-k 4 is larger than the number of classes"):
        pipeline.label(art, toy, cfg.model_copy(update={"top_k": 4}), Runtime())
