"""Multi-view evaluation bookkeeping: softmax-averaged views, every video exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vfn.evaluation.metrics import EvalAccumulator, EvaluationCountError, evaluate_batches


def test_metrics_from_view_averaged_probabilities():
    acc = EvalAccumulator(num_classes=3, num_videos=4)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    acc.update(probs, torch.tensor([0, 1, 1, 2]), torch.tensor([3, 0, 1, 2]), torch.ones(4, dtype=torch.bool))
    res = acc.result()
    assert res.top1 == 0.75 and res.videos == 4 and res.top5 == 1.0
    assert res.mean_class_acc == pytest.approx((1 + 0.5 + 1) / 3)
    assert res.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_missing_or_repeated_videos_fail_loudly():
    acc = EvalAccumulator(num_classes=2, num_videos=3)
    ones = torch.ones(2, dtype=torch.bool)
    acc.update(torch.eye(2), torch.tensor([0, 1]), torch.tensor([0, 1]), ones)
    with pytest.raises(EvaluationCountError, match="1 never seen, 0 seen more than once"):
        acc.result()
    acc.update(torch.eye(2), torch.tensor([0, 1]), torch.tensor([1, 2]), ones)
    with pytest.raises(EvaluationCountError, match="0 never seen, 1 seen more than once"):
        acc.result()


def test_corrupt_videos_are_counted_not_scored():
    acc = EvalAccumulator(num_classes=2, num_videos=3)
    acc.update(torch.eye(3)[:, :2], torch.tensor([0, 1, 0]), torch.tensor([0, 1, 2]), torch.tensor([True, True, False]))
    res = acc.result()
    assert (res.videos, res.corrupt, res.top1) == (2, 1, 1.0)


def test_views_are_softmax_averaged_per_video():
    class ViewModel(torch.nn.Module):  # logits from the first pixel: view 0 says class 0, view 1 class 1 strongly
        def forward(self, x):
            v = x[:, 0, 0, 0, 0]
            return torch.stack([-v, v], 1)

    video = np.zeros((1, 2, 1, 3, 2, 2), np.uint8)
    video[0, 0] = 0
    video[0, 1] = 255  # normalised: large positive -> class 1 with ~100% on view 1
    batch = {"video": torch.from_numpy(video), "label": torch.tensor([1]), "index": torch.tensor([0]),
             "valid": torch.tensor([True])}
    acc = EvalAccumulator(num_classes=2, num_videos=1)
    evaluate_batches(ViewModel(), [batch], acc, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False))
    assert acc.result().top1 == 1.0
