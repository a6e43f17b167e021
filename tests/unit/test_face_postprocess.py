"""Priors, decoding and NMS (the torch replacements for the reference implementations' helpers)."""

from __future__ import annotations

import torch

from services.face.postprocess import (
    PriorConfig,
    box_iou,
    decode_boxes,
    decode_landmarks,
    nms,
    postprocess,
    prior_boxes,
)

CFG = PriorConfig()


def test_prior_layout_matches_reference_ordering() -> None:
    priors = prior_boxes(64, 96, CFG)
    # level sizes: ceil(64/8)*ceil(96/8)*2 + ceil(64/16)*ceil(96/16)*2 + ceil(64/32)*ceil(96/32)*2
    assert len(priors) == 8 * 12 * 2 + 4 * 6 * 2 + 2 * 3 * 2
    torch.testing.assert_close(priors[0], torch.tensor([4.0, 4.0, 16.0, 16.0]))
    torch.testing.assert_close(priors[1], torch.tensor([4.0, 4.0, 32.0, 32.0]))
    torch.testing.assert_close(priors[2], torch.tensor([12.0, 4.0, 16.0, 16.0]))  # next column, same row
    torch.testing.assert_close(priors[24], torch.tensor([4.0, 12.0, 16.0, 16.0]))  # next row
    torch.testing.assert_close(priors[-1], torch.tensor([80.0, 48.0, 512.0, 512.0]))


def test_ceil_feature_maps_for_sizes_not_multiple_of_stride() -> None:
    assert len(prior_boxes(33, 33, CFG)) == 5 * 5 * 2 + 3 * 3 * 2 + 2 * 2 * 2


def test_zero_deltas_decode_to_the_prior() -> None:
    priors = torch.tensor([[50.0, 40.0, 20.0, 10.0]])
    boxes = decode_boxes(torch.zeros(1, 4), priors, CFG.variances)
    torch.testing.assert_close(boxes, torch.tensor([[40.0, 35.0, 60.0, 45.0]]))
    lms = decode_landmarks(torch.zeros(1, 10), priors, CFG.variances)
    assert lms.shape == (1, 5, 2)
    torch.testing.assert_close(lms[0], torch.tensor([[50.0, 40.0]] * 5))


def test_deltas_are_scaled_by_variance_and_prior_size() -> None:
    priors = torch.tensor([[50.0, 40.0, 20.0, 10.0]])
    deltas = torch.tensor([[1.0, -1.0, 0.0, torch.log(torch.tensor(2.0)).item() / 0.2]])
    boxes = decode_boxes(deltas, priors, CFG.variances)
    # centre moves by 0.1 * (20, 10) = (2, -1); height doubles to 20
    torch.testing.assert_close(boxes, torch.tensor([[42.0, 29.0, 62.0, 49.0]]))
    lm_deltas = torch.tensor([[1.0, 2.0] + [0.0] * 8])
    torch.testing.assert_close(decode_landmarks(lm_deltas, priors, CFG.variances)[0, 0], torch.tensor([52.0, 42.0]))


def test_iou() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[50 / 150, 0.0, 1.0]]))


def test_nms_keeps_best_and_non_overlapping() -> None:
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 9.0]]
    )
    scores = torch.tensor([0.8, 0.9, 0.7, 0.95])
    keep = nms(boxes, scores, 0.4)
    # 3 (0.95) suppresses 0 (IoU 0.9) and 1 (IoU ~0.62); 2 is far away
    assert keep.tolist() == [3, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0)).numel() == 0


def test_nms_threshold_is_strict() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])  # IoU 1/3
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.34).tolist() == [0, 1]
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.33).tolist() == [0]


def test_postprocess_thresholds_per_image() -> None:
    priors = prior_boxes(32, 32, CFG)
    n = len(priors)
    logits = torch.zeros(2, n, 2)
    logits[0, 3, 1] = 10.0  # image 0: one confident prior
    deltas, lm = torch.zeros(2, n, 4), torch.zeros(2, n, 10)
    out = postprocess(deltas, logits, lm, priors, CFG, score_threshold=0.9)
    assert [len(d.scores) for d in out] == [1, 0]
    torch.testing.assert_close(out[0].boxes[0], decode_boxes(torch.zeros(4), priors[3], CFG.variances))
