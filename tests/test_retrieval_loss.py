"""Image-to-location InfoNCE on hand-made cases, and the false-negative mask."""

from __future__ import annotations

import math

import pytest
import torch

from globe.retrieval.loss import contrastive_logits, contrastive_loss, false_negative_mask


def test_two_by_two_hand_worked():
    image = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised: e1, e2
    location = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # normalised: e1, (e1 + e2)/√2
    # cosines: [[1, 1/√2], [0, 1/√2]]; scale exp(ln 2) = 2 -> logits [[2, √2], [0, √2]]
    loss, logits = contrastive_loss(image, location, torch.tensor(math.log(2.0)))
    s2 = math.sqrt(2.0)
    torch.testing.assert_close(logits, torch.tensor([[2.0, s2], [0.0, s2]]))
    # row 0: -log(e² / (e² + e^√2)) = log(1 + e^(√2 - 2)) = log(1.556668) = 0.442548
    # row 1: -log(e^√2 / (1 + e^√2)) = log(1 + e^-√2) = log(1.243117) = 0.217622
    assert loss.item() == pytest.approx((0.442548 + 0.217622) / 2, abs=1e-6)


def test_queue_negatives_only_add_columns():
    image = torch.eye(2)
    batch = torch.eye(2)
    queue = torch.tensor([[1.0, 0.0]])  # a negative equal to image 0's positive
    loss, logits = contrastive_loss(image, torch.cat([batch, queue]), torch.tensor(0.0))
    assert logits.shape == (2, 3)
    # row 0: logits [1, 0, 1] -> -log(e / (2e + 1)) = log(2 + e^-1) = 0.861995
    # row 1: logits [0, 1, 0] -> -log(e / (e + 2)) = log(1 + 2e^-1) = 0.551445
    assert loss.item() == pytest.approx((0.861995 + 0.551445) / 2, abs=1e-6)


def test_masked_negatives_leave_the_softmax_and_positives_never_do():
    image = torch.eye(2)
    locations = torch.cat([torch.eye(2), torch.tensor([[1.0, 0.0]])])
    mask = torch.tensor([[True, False, True], [False, True, False]])  # also tries to mask both positives
    loss, logits = contrastive_loss(image, locations, torch.tensor(0.0), negative_mask=mask)
    assert logits[0, 2] == -math.inf and torch.isfinite(logits.diagonal()).all()
    # row 0: logits [1, 0, -inf] -> log(1 + e^-1) = 0.313262; row 1: [0, 1, 0] -> 0.551445
    assert loss.item() == pytest.approx((0.313262 + 0.551445) / 2, abs=1e-6)


def test_logit_scale_is_clamped():
    logits = contrastive_logits(torch.eye(2), torch.eye(2), torch.tensor(10.0), max_logit_scale=100.0)
    assert logits[0, 0].item() == pytest.approx(100.0)


def test_gradient_reaches_the_temperature():
    t = torch.tensor(0.0, requires_grad=True)
    loss, _ = contrastive_loss(torch.eye(2), torch.eye(2), t)
    loss.backward()
    assert t.grad is not None and t.grad.item() < 0  # a sharper softmax lowers the loss of a perfect match


def test_fewer_locations_than_images_is_an_error():
    with pytest.raises(ValueError, match="positives"):
        contrastive_loss(torch.eye(2), torch.eye(2)[:1], torch.tensor(0.0))


def test_false_negative_mask_by_distance():
    paris, versailles, tokyo = [48.8566, 2.3522], [48.8049, 2.1204], [35.6762, 139.6503]  # Paris-Versailles ~18 km
    positives = torch.tensor([paris, tokyo])
    candidates = torch.tensor([paris, tokyo, versailles, paris, tokyo])
    assert false_negative_mask(positives, candidates, 1.0).tolist() == [
        [False, False, False, True, False],
        [False, False, False, False, True],
    ]
    assert false_negative_mask(positives, candidates, 25.0)[0].tolist() == [False, False, True, True, False]
