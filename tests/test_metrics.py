"""Metrics: top-k, AP and AUC against scikit-learn, attention metrics against the loss terms."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from conftest import batch

from discatt_timm import DiscriminativeAttentionLoss
from discatt_timm.evaluation import evaluate
from discatt_timm.metrics import (
    average_precision,
    classification_metrics,
    roc_auc,
    topk_accuracy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 1])
    acc = topk_accuracy(logits, targets, (1, 2, 5))
    assert acc[1] == pytest.approx(1 / 3)
    assert acc[2] == pytest.approx(
        2 / 3
    )  # sample 1: class 2 ties at 0.1 with class 1 -> not in top 2
    assert acc[5] == 1.0  # k larger than the class count


def _ranked_problem(seed: int = 0, n: int = 60, classes: int = 5):
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, classes, generator=generator) < 0.3).float()
    scores = targets * 0.6 + torch.rand(n, classes, generator=generator)
    scores = (scores * 4).round() / 4  # many ties
    targets[:, 4] = 0  # a class without positives
    return scores, targets


def test_average_precision_and_auc_match_sklearn():
    from sklearn import metrics  # the oracle, a declared test dependency: never skipped

    scores, targets = _ranked_problem()
    ap, auc = average_precision(scores, targets), roc_auc(scores, targets)
    for c in range(4):
        assert ap[c].item() == pytest.approx(
            metrics.average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()), abs=1e-12
        )
        assert auc[c].item() == pytest.approx(
            metrics.roc_auc_score(targets[:, c].numpy(), scores[:, c].numpy()), abs=1e-12
        )
    assert math.isnan(ap[4]) and math.isnan(auc[4])


def test_average_precision_and_auc_by_hand():
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert average_precision(scores, targets)[0].item() == pytest.approx((1 + 2 / 3) / 2)
    assert roc_auc(scores, targets)[0].item() == pytest.approx(0.75)


def test_classification_metrics_keys():
    logits = torch.randn(6, 4)
    single = classification_metrics(logits, torch.tensor([0, 1, 2, 3, 0, 1]), topk=(1, 3))
    assert set(single) == {"top1", "top3", "loss"}
    multi = classification_metrics(logits, (logits > 0).float(), multilabel=True)
    assert set(multi) == {"mAP", "roc_auc", "loss"}


def _loader(n: int = 6, size: int = 32, classes: int = 10, batch_size: int = 4):
    x = batch(size, n=n, seed=1)
    y = torch.arange(n) % classes
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


@pytest.fixture
def cifar_model():
    torch.manual_seed(0)
    return timm.create_model("cifar_resnet20", num_classes=10).train()


def test_attention_metrics_are_the_mean_loss_terms_in_eval_mode(cifar_model):
    loader = _loader()
    metrics = evaluate(cifar_model, loader, attention_method="pixel")
    assert cifar_model.training  # mode restored
    cifar_model.eval()
    loss = DiscriminativeAttentionLoss(cifar_model, method="pixel", grad_mode="detached")
    terms = [loss.terms(x, y) for x, y in loader]
    for key in ("siou_inner", "siou_last", "consistency"):
        expected = torch.cat([getattr(t, key) for t in terms]).double().mean().item()
        assert metrics[key] == pytest.approx(expected, rel=1e-6)
    assert metrics["attention_samples"] == 6
    assert 0 <= metrics["siou_inner"] <= 1 and 0 <= metrics["siou_last"] <= 1
    assert all(p.grad is None for p in cifar_model.parameters())


def test_evaluate_single_label_with_an_attention_sample_cap(cifar_model):
    loader = _loader(n=10)
    metrics = evaluate(cifar_model, loader, topk=(1, 5), attention_max_samples=5)
    assert metrics["num_samples"] == 10 and metrics["attention_samples"] == 5
    logits = torch.cat([cifar_model.eval()(x) for x, _ in loader]).detach()
    targets = torch.cat([y for _, y in loader])
    assert metrics["top1"] == pytest.approx(topk_accuracy(logits, targets, (1,))[1])
    plain = evaluate(cifar_model, loader, attention=False)
    assert "siou_last" not in plain and plain["top5"] == metrics["top5"]


def test_evaluate_multilabel_and_gather(cifar_model):
    x = batch(32, n=4, seed=2)
    y = torch.zeros(4, 10)
    y[0, [1, 2]] = 1
    y[1, 3] = 1
    y[3, :] = 1  # rows 2 (nothing present) and 3 (nothing absent) have no confusing pair
    gathered = []

    class FakeAccelerator:  # gather_for_metrics is the identity on one process
        def gather_for_metrics(self, data):
            gathered.append(sorted(data))
            return data

    metrics = evaluate(cifar_model, [(x, y)], multilabel=True, accelerator=FakeAccelerator())
    assert {"mAP", "roc_auc", "loss", "siou_inner", "siou_last", "consistency"} <= set(metrics)
    assert metrics["attention_samples"] == 2
    attention_keys = ["confusing", "consistency", "siou_inner", "siou_last", "valid", "zero_maps"]
    assert gathered == [attention_keys, ["logits", "targets"]]


def test_evaluate_rejects_unknown_batches(cifar_model):
    with pytest.raises(TypeError, match="batches must be"):
        evaluate(cifar_model, [torch.zeros(1, 3, 32, 32)])
