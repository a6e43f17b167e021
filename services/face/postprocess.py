"""RetinaFace post-processing in plain torch: prior boxes, box / landmark decoding and greedy NMS.

torchvision.ops.nms would do, but torchvision does not import beside this torch build; these few lines keep the
detector dependency-free. Priors and decoding follow Pytorch_Retinaface / retinaface-tf2 exactly (both use the same
SSD-style encoding), but work in pixel units of the network input instead of fractions of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import torch

NMS_IOU_THRESHOLD = 0.4  # both reference implementations suppress overlaps above 0.4 IoU
PRE_NMS_TOP_K = 5000  # Pytorch_Retinaface's cap on candidates entering NMS; bounds NMS cost on busy photos


@dataclass(frozen=True)
class PriorConfig:
    """Anchor layout of a RetinaFace model: anchor sizes per pyramid level, level strides, and encoding variances."""

    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    clip: bool = False


def prior_boxes(height: int, width: int, config: PriorConfig = PriorConfig()) -> torch.Tensor:
    """Anchors (cx, cy, w, h) in input pixels, ordered level → row → column → anchor, like the heads' outputs."""
    levels = []
    for sizes, step in zip(config.min_sizes, config.steps, strict=True):
        rows, cols = ceil(height / step), ceil(width / step)
        cy, cx = torch.meshgrid(
            (torch.arange(rows, dtype=torch.float32) + 0.5) * step,
            (torch.arange(cols, dtype=torch.float32) + 0.5) * step,
            indexing="ij",
        )
        centers = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, len(sizes), 2)
        wh = torch.tensor(sizes, dtype=torch.float32).reshape(1, -1, 1).expand(centers.shape[0], -1, 2)
        levels.append(torch.cat([centers, wh], -1).reshape(-1, 4))
    priors = torch.cat(levels, 0)
    if config.clip:
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        priors = (priors / scale).clamp(0, 1) * scale
    return priors


def decode_boxes(deltas: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """SSD box decoding: centre offsets scaled by prior size, log-size ratios; returns (x1, y1, x2, y2)."""
    centers = priors[..., :2] + deltas[..., :2] * variances[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1])
    return torch.cat([centers - sizes / 2, centers + sizes / 2], -1)


def decode_landmarks(deltas: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Five (x, y) landmarks per prior, each an offset from the prior centre scaled by prior size: (..., 5, 2)."""
    offsets = deltas.reshape(*deltas.shape[:-1], 5, 2)
    return priors[..., None, :2] + offsets * variances[0] * priors[..., None, 2:]


def box_iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) and (M, 4) boxes in (x1, y1, x2, y2); no +1 pixel convention, as in TF and torchvision."""
    area_a = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    area_b = (others[:, 2] - others[:, 0]).clamp(min=0) * (others[:, 3] - others[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = NMS_IOU_THRESHOLD) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of kept boxes, highest score first (same contract as torchvision)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True, stable=True)[:PRE_NMS_TOP_K]
    iou = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


@dataclass(frozen=True)
class RawDetections:
    """Detections of one network input after thresholding and NMS, in network-input pixels, best score first."""

    boxes: torch.Tensor  # (N, 4) x1, y1, x2, y2
    scores: torch.Tensor  # (N,)
    landmarks: torch.Tensor  # (N, 5, 2)


def postprocess(
    deltas: torch.Tensor,
    logits: torch.Tensor,
    landmark_deltas: torch.Tensor,
    priors: torch.Tensor,
    config: PriorConfig,
    score_threshold: float,
    iou_threshold: float = NMS_IOU_THRESHOLD,
) -> list[RawDetections]:
    """Turn a batch of raw head outputs into per-image detections (softmax face score ≥ threshold, then NMS)."""
    scores = torch.softmax(logits, -1)[..., 1]
    results = []
    for b in range(deltas.shape[0]):
        candidates = torch.nonzero(scores[b] >= score_threshold).squeeze(1)
        boxes = decode_boxes(deltas[b, candidates], priors[candidates], config.variances)
        cand_scores = scores[b, candidates]
        keep = nms(boxes, cand_scores, iou_threshold)
        lms = decode_landmarks(landmark_deltas[b, candidates[keep]], priors[candidates[keep]], config.variances)
        results.append(RawDetections(boxes=boxes[keep], scores=cand_scores[keep], landmarks=lms))
    return results
