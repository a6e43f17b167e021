"""``FaceDetector``: RetinaFace loaded once, warmed, and run on batches of RGB images.

Each image is converted to 8-bit RGB, shrunk so its long side is at most ``max_side`` (enlarged when tiny) and
padded to a multiple of 32; images that end up on the same canvas size run as one batch. A second, coarse pass —
shrunk to ``FALLBACK_SIDE`` and padded with a constant border on every side — runs on images where the first pass
found nothing, and on every image whose working size exceeds ``LARGE_INPUT_SIDE``: a face that fills the frame
(tight crops, close selfies) is only found when the network sees context around it and when the face is not larger
than the biggest anchors (512 px); at 1200 px such a face is instead "found" as several face-like parts. The two
passes are merged: duplicates keep the fine-pass face (unless the face is larger than the fine pass's biggest anchor),
and faces lying inside a larger face are dropped.
Padding every image up front costs ~2x the pixels on every photo; the coarse pass costs ~25 % of a full-HD pass.
Coordinates are mapped back to the caller's image; boxes of faces cut by the frame may extend past it.
The network runs under bf16 autocast where ``libs.common.precision`` says it pays (~2.7x less CPU on CPUs with native
bf16; landmarks move ~1 px on average, see benchmarks/results/face_detection.md); decoding, NMS and mapping stay fp32.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from libs.common.pixels import to_rgb_uint8
from libs.common.precision import Precision, resolve_autocast_dtype, resolve_device
from services.face.models.registry import DetectorConfig, create_detector_model
from services.face.models.retinaface import fuse_batchnorm
from services.face.postprocess import NMS_IOU_THRESHOLD, postprocess, prior_boxes

DEFAULT_DETECTOR = "retinaface_mobilenetv2"
DETECTION_THRESHOLD = 0.9  # RetinaFace scores false positives (hands, patterns) around 0.8
MAX_FACES = 10  # more faces than this in one upload is a crowd photo, not a portrait; keep the largest
MAX_SIDE = 1280  # faces ≥ 16 px stay detectable after shrinking a 12 MP photo to this
MIN_SIDE = 256  # tiny images are enlarged so a face filling them is well inside the anchors' 16–512 px range
PAD_FRACTION = 0.25  # second pass: border on every side, as a fraction of the long side, so tight crops have context
FALLBACK_SIDE = 400  # second pass: a face filling the frame is shrunk to about this, well inside the 512-px anchors
LARGE_INPUT_SIDE = 640  # above this working size a face can outgrow the largest anchors: always run the coarse pass
DUPLICATE_IOU = 0.4  # a coarse-pass face overlapping a fine-pass face this much is the same face
CONTAINED_FRACTION = 0.7  # a face with this much of its box inside a larger face is a part of it (eye, mouth)
PAD_VALUE = 0  # black border, the same value the network saw around images padded to a multiple of 32
WARMUP_SIDE = 640  # one dummy pass at init so the first real request does not pay for allocator/kernels set-up


@dataclass(frozen=True)
class DetectedFace:
    """One face in the caller's image coordinates (x right, y down, pixels).

    ``landmarks`` are (x, y) for: left eye, right eye, nose tip, left mouth corner, right mouth corner — "left" is
    image-left, the order of the ArcFace template in ``libs.common.chips``. ``size`` is sqrt(box width * height).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    def landmarks_array(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the FacesDetected event)."""
        out = asdict(self)
        out["box"] = [round(v, 2) for v in self.box]
        out["landmarks"] = [[round(x, 2), round(y, 2)] for x, y in self.landmarks]
        out["score"] = round(self.score, 5)
        out["size"] = round(self.size, 2)
        return out


@dataclass(frozen=True)
class _Prepared:
    """One image as fed to the network, and how to map network pixels back to the caller's pixels."""

    pixels: np.ndarray  # HxWx3 uint8, resized and border-padded (not yet padded to the multiple)
    scale: tuple[float, float]  # network pixels per original pixel, (x, y): rounding the resized size makes them differ
    offset: float  # border width in network pixels
    original_hw: tuple[int, int]


class FaceDetector:
    """Detect faces with 5 landmarks. Build once per process (weights load + warm-up), then call ``detect_batch``."""

    def __init__(
        self,
        model_name: str = DEFAULT_DETECTOR,
        models_dir: Path | None = None,
        threshold: float = DETECTION_THRESHOLD,
        max_faces: int = MAX_FACES,
        max_side: int = MAX_SIDE,
        pad_fraction: float = PAD_FRACTION,
        warm: bool = True,
        model: torch.nn.Module | None = None,
        precision: Precision = "auto",
        device: str | torch.device = "cpu",
    ) -> None:
        model = model if model is not None else create_detector_model(model_name, models_dir)
        self.cfg: DetectorConfig = model.pretrained_cfg  # type: ignore[assignment]
        self.device = resolve_device(device)
        self.model = fuse_batchnorm(model).to(self.device, memory_format=torch.channels_last)
        self.autocast_dtype = resolve_autocast_dtype(precision, self.device)
        self.threshold = threshold
        self.max_faces = max_faces
        self.max_side = max_side
        self.pad_fraction = pad_fraction
        self._mean = torch.tensor(self.cfg.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._inv_std = 1.0 / torch.tensor(self.cfg.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._priors: dict[tuple[int, int], torch.Tensor] = {}
        if warm:
            self.detect_batch([np.zeros((WARMUP_SIDE, WARMUP_SIDE, 3), dtype=np.uint8)])

    @classmethod
    def from_settings(cls, settings: Any | None = None, **overrides: Any) -> FaceDetector:
        """Build from ``libs.common.settings.Settings``: detector, threshold, max faces and side, precision, models and
        their device (``HOWHOT_MODELS_DEVICE``: ``auto`` takes CUDA when there is one)."""
        from libs.common.settings import Settings

        settings = settings or Settings()
        face = settings.face
        kwargs: dict[str, Any] = {
            "model_name": face.detector, "models_dir": settings.models_dir, "threshold": face.threshold,
            "max_faces": face.max_faces, "max_side": face.max_side, "precision": face.precision,
            "device": settings.models.device,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in one image (see ``detect_batch``)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        """Faces per image, largest first, at most ``max_faces`` each, scoring ≥ ``threshold``.

        Accepts any HxW / HxWx1 / HxWx3 / HxWx4 array (uint8, uint16, float); outputs map one-to-one to inputs.
        """
        rgbs = [to_rgb_uint8(np.asarray(image)) for image in images]
        results = self._run([self._prepare(rgb, self.max_side, 0.0) for rgb in rgbs])
        retry = [i for i, faces in enumerate(results) if not faces or self._working_side(rgbs[i]) > LARGE_INPUT_SIDE]
        if retry and self.pad_fraction > 0:
            side = min(FALLBACK_SIDE, self.max_side)
            second = self._run([self._prepare(rgbs[i], side, self.pad_fraction) for i in retry])
            largest_anchor = max(max(sizes) for sizes in self.cfg.priors.min_sizes)
            for index, faces in zip(retry, second, strict=True):
                fine_scale = self._working_side(rgbs[index]) / max(rgbs[index].shape[:2])
                results[index] = merge_passes(results[index], faces, largest_anchor / fine_scale)
        return [sorted(faces, key=lambda f: -f.width * f.height)[: self.max_faces] for faces in results]

    def _working_side(self, rgb: np.ndarray) -> int:
        long_side = max(rgb.shape[:2])
        return min(long_side, self.max_side) if long_side >= MIN_SIDE else MIN_SIDE

    def _run(self, prepared: list[_Prepared]) -> list[list[DetectedFace]]:
        """One network pass over prepared images, batched by canvas size."""
        results: list[list[DetectedFace]] = [[] for _ in prepared]
        groups: dict[tuple[int, int], list[int]] = {}
        multiple = self.cfg.input_multiple
        for index, prep in enumerate(prepared):
            h, w = prep.pixels.shape[:2]
            groups.setdefault((h + -h % multiple, w + -w % multiple), []).append(index)
        for (canvas_h, canvas_w), indices in groups.items():
            batch = np.zeros((len(indices), canvas_h, canvas_w, 3), dtype=np.uint8)
            for row, index in enumerate(indices):
                h, w = prepared[index].pixels.shape[:2]
                batch[row, :h, :w] = prepared[index].pixels
            raw = self._infer(batch)
            for row, index in enumerate(indices):
                results[index] = self._to_faces(raw[row], prepared[index])
        return results

    def _infer(self, batch: np.ndarray) -> list[Any]:
        _, h, w, _ = batch.shape
        if (h, w) not in self._priors:
            self._priors[(h, w)] = prior_boxes(h, w, self.cfg.priors)
        tensor = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()  # uint8 travels: 4× fewer bytes
        tensor = (tensor - self._mean) * self._inv_std
        deltas, logits, landmarks = (t.cpu() for t in network_outputs(self.model, tensor, self.autocast_dtype))
        return postprocess(
            deltas, logits, landmarks, self._priors[(h, w)], self.cfg.priors, self.threshold, NMS_IOU_THRESHOLD
        )

    @staticmethod
    def _prepare(rgb: np.ndarray, max_side: int, pad_fraction: float) -> _Prepared:
        h, w = rgb.shape[:2]
        long_side = max(h, w)
        scale = min(1.0, max_side / long_side) if long_side >= MIN_SIDE else MIN_SIDE / long_side
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        # the exact factors after rounding: on a 301 x 4000 strip one factor for both would put faces 12 px off in y
        scales = (rgb.shape[1] / w, rgb.shape[0] / h)
        border = round(pad_fraction * max(rgb.shape[:2]))
        if border:
            rgb = np.pad(rgb, ((border, border), (border, border), (0, 0)), constant_values=PAD_VALUE)
        return _Prepared(pixels=rgb, scale=scales, offset=float(border), original_hw=(h, w))

    def _to_faces(self, raw: Any, prep: _Prepared) -> list[DetectedFace]:
        scale = torch.tensor(prep.scale, dtype=raw.boxes.dtype)
        boxes = ((raw.boxes - prep.offset) / scale.repeat(2)).numpy()
        landmarks = ((raw.landmarks - prep.offset) / scale).numpy()
        scores = raw.scores.numpy()
        h, w = prep.original_hw
        centers = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centers[:, 0] >= 0) & (centers[:, 0] <= w) & (centers[:, 1] >= 0) & (centers[:, 1] <= h)
        return [
            DetectedFace(
                box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                score=float(scores[i]),
                landmarks=tuple((float(x), float(y)) for x, y in landmarks[i]),
            )
            for i in np.flatnonzero(inside)
        ]


def network_outputs(
    model: torch.nn.Module, tensor: torch.Tensor, autocast_dtype: torch.dtype | None
) -> tuple[torch.Tensor, ...]:
    """The network's raw (box deltas, logits, landmark deltas) for a normalised NCHW batch, as fp32.

    With ``autocast_dtype`` the convolutions run in that dtype; the outputs are cast back so that decoding, NMS and
    coordinate mapping compute in fp32. One function, so the port tests run exactly the detector's network path.
    """
    device_type = next(model.parameters()).device.type
    enabled = autocast_dtype is not None
    with torch.inference_mode(), torch.autocast(device_type, dtype=autocast_dtype or torch.bfloat16, enabled=enabled):
        outputs = model(tensor.contiguous(memory_format=torch.channels_last))
        return tuple(output.float() for output in outputs)


def _overlap(a: DetectedFace, b: DetectedFace) -> tuple[float, float]:
    """(IoU of a and b, fraction of a's box inside b)."""
    ix = max(0.0, min(a.box[2], b.box[2]) - max(a.box[0], b.box[0]))
    iy = max(0.0, min(a.box[3], b.box[3]) - max(a.box[1], b.box[1]))
    inter = ix * iy
    area_a, area_b = max(a.width * a.height, 1e-9), max(b.width * b.height, 1e-9)
    return inter / (area_a + area_b - inter), inter / area_a


def merge_passes(
    fine: list[DetectedFace], coarse: list[DetectedFace], fine_max_size: float = float("inf")
) -> list[DetectedFace]:
    """Union of both passes' faces: a coarse face duplicating a fine one is dropped (the fine pass localises better),
    then, largest first, any face mostly inside an already kept larger face is dropped (a part, not a face).

    A coarse face larger than ``fine_max_size`` (the fine pass's largest anchor, in the caller's pixels) is never a
    duplicate: the fine pass cannot have found that face whole, so what overlaps it there is a part (half a face,
    eyes and nose) — one often overlapping the whole face by IoU 0.4-0.5 — and it goes instead."""
    extra = [c for c in coarse if c.size > fine_max_size or all(_overlap(c, f)[0] <= DUPLICATE_IOU for f in fine)]
    kept: list[DetectedFace] = []
    for face in sorted(fine + extra, key=lambda f: -f.width * f.height):
        if all(_overlap(face, big)[1] < CONTAINED_FRACTION and _overlap(face, big)[0] <= DUPLICATE_IOU for big in kept):
            kept.append(face)
    return kept


def timed_detect(detector: FaceDetector, image: np.ndarray) -> tuple[list[DetectedFace], float]:
    """Detect and return the wall time in milliseconds (benchmarks and evaluation)."""
    start = time.perf_counter()
    faces = detector.detect(image)
    return faces, (time.perf_counter() - start) * 1000.0
