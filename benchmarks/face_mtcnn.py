"""OPTIONAL side-by-side: MTCNN with facenet-pytorch 2.6.0's shipped weights vs our RetinaFace, same images.

facenet_pytorch imports torchvision (which does not import here), so the three small nets and the cascade of
facenet_pytorch/models/utils/detect_face.py are reimplemented below (batch of one image; torch NMS). The weights
(pnet.pt / rnet.pt / onet.pt) are read from the wheel with libs.common.modelcache. Defaults as shipped:
min_face_size 20, thresholds (0.6, 0.7, 0.7), factor 0.709; a face counts when the O-net score ≥ 0.7 (its default).

    PYTHONPATH=. .venv/bin/python benchmarks/face_mtcnn.py fgnet utkface --limit 1000 --threads 1
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from libs.common.images import load_image_file as load_image
from libs.common.modelcache import download_wheel, read_wheel_member
from libs.common.settings import Settings
from services.face.evaluate import list_images
from services.face.postprocess import nms

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
MIN_FACE, THRESHOLDS, FACTOR = 20, (0.6, 0.7, 0.7), 0.709  # facenet-pytorch MTCNN defaults


def _conv_prelu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k), nn.PReLU(cout)]


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 10, 3)
        self.conv2, self.prelu2 = _conv_prelu(10, 16, 3)
        self.conv3, self.prelu3 = _conv_prelu(16, 32, 3)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), 1)


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 28, 3)
        self.conv2, self.prelu2 = _conv_prelu(28, 48, 3)
        self.conv3, self.prelu3 = _conv_prelu(48, 64, 2)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), 1)


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _conv_prelu(3, 32, 3)
        self.conv2, self.prelu2 = _conv_prelu(32, 64, 3)
        self.conv3, self.prelu3 = _conv_prelu(64, 64, 3)
        self.conv4, self.prelu4 = _conv_prelu(64, 128, 2)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), 1)


def load_mtcnn(models_dir: Path) -> tuple[PNet, RNet, ONet]:
    wheel = download_wheel("facenet-pytorch", "2.6.0", models_dir)
    nets = (PNet(), RNet(), ONet())
    for net, name in zip(nets, ("pnet", "rnet", "onet"), strict=True):
        state = torch.load(io.BytesIO(read_wheel_member(wheel, f"data/{name}.pt")), map_location="cpu")
        net.load_state_dict(state)
        net.eval()
    return nets


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """NMS with intersection over the smaller box (MTCNN's final 'Min' step)."""
    order = torch.argsort(scores, descending=True)
    b = boxes[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    wh = (torch.minimum(b[:, None, 2:], b[None, :, 2:]) - torch.maximum(b[:, None, :2], b[None, :, :2]) + 1).clamp(0)
    overlap = wh.prod(-1) / torch.minimum(area[:, None], area[None, :])
    keep, dead = [], torch.zeros(len(b), dtype=torch.bool)
    for i in range(len(b)):
        if not dead[i]:
            keep.append(i)
            dead |= overlap[i] > threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def _rerec(boxes: torch.Tensor) -> torch.Tensor:
    h, w = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def _bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = boxes[:, :4] + reg * torch.stack([w, h, w, h], 1)
    return boxes


def _crops(img: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[2:]
    b = boxes[:, :4].trunc().int()
    out = []
    for x, y, ex, ey in b.tolist():
        x, y, ex, ey = max(x, 1), max(y, 1), min(ex, w), min(ey, h)
        if ey > y - 1 and ex > x - 1:
            out.append(F.interpolate(img[:, :, y - 1:ey, x - 1:ex], size=(size, size), mode="area"))
    return (torch.cat(out) - 127.5) * 0.0078125


@torch.inference_mode()
def detect_mtcnn(nets: tuple[PNet, RNet, ONet], rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 5: x1, y1, x2, y2, score) and landmarks (N, 5, 2) for one RGB uint8 image."""
    pnet, rnet, onet = nets
    img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    h, w = img.shape[2:]
    scale, min_len, scales = 12.0 / MIN_FACE, min(h, w) * 12.0 / MIN_FACE, []
    while min_len >= 12:
        scales.append(scale)
        scale, min_len = scale * FACTOR, min_len * FACTOR
    candidates = []
    for s in scales:
        data = (F.interpolate(img, size=(int(h * s + 1), int(w * s + 1)), mode="area") - 127.5) * 0.0078125
        reg, probs = pnet(data)
        mask = probs[0, 1] >= THRESHOLDS[0]
        yx = mask.nonzero().float()
        if not len(yx):
            continue
        xy = yx.flip(1)
        q1, q2 = ((2 * xy + 1) / s).floor(), ((2 * xy + 12) / s).floor()
        found = torch.cat([q1, q2, probs[0, 1][mask][:, None], reg[0][:, mask].T], 1)
        candidates.append(found[nms(found[:, :4], found[:, 4], 0.5)])
    if not candidates:
        return np.zeros((0, 5)), np.zeros((0, 5, 2))
    boxes = torch.cat(candidates)
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * bw, boxes[:, 1] + boxes[:, 6] * bh,
                         boxes[:, 2] + boxes[:, 7] * bw, boxes[:, 3] + boxes[:, 8] * bh, boxes[:, 4]], 1)
    boxes = _rerec(boxes)
    reg, probs = rnet(_crops(img, boxes, 24))
    keep = probs[:, 1] > THRESHOLDS[1]
    boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], 1)
    reg = reg[keep]
    pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes = _rerec(_bbreg(boxes[pick], reg[pick]))
    if not len(boxes):
        return np.zeros((0, 5)), np.zeros((0, 5, 2))
    reg, points, probs = onet(_crops(img, boxes, 48))
    keep = probs[:, 1] > THRESHOLDS[2]
    boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], 1)
    reg, points = reg[keep], points[keep]
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    lm_x = bw[:, None] * points[:, :5] + boxes[:, 0:1] - 1
    lm = torch.stack([lm_x, bh[:, None] * points[:, 5:] + boxes[:, 1:2] - 1], -1)
    boxes = _bbreg(boxes, reg)
    pick = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
    return boxes[pick].numpy(), lm[pick].numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="seeded random sample per dataset")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    nets = load_mtcnn(Settings().models_dir)
    for name in args.datasets:
        paths = list_images(SHARED_DATA / name, args.limit, sample=args.limit is not None)
        times, counts = [], []
        for path in tqdm(paths, desc=f"mtcnn {name}"):
            rgb = load_image(path)
            start = time.perf_counter()
            boxes, _ = detect_mtcnn(nets, rgb)
            times.append((time.perf_counter() - start) * 1000)
            counts.append(len(boxes))
        result = {
            "detector": "mtcnn (facenet-pytorch 2.6.0 weights)", "dataset": name, "images": len(paths),
            "detection_rate": sum(c > 0 for c in counts) / len(paths),
            "mean_faces_per_image": sum(counts) / len(paths),
            "ms_per_image_median": statistics.median(times), "ms_per_image_mean": statistics.fmean(times),
            "torch_threads": torch.get_num_threads(), "sampled": args.limit,
        }
        (RESULTS / f"face_mtcnn_{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
