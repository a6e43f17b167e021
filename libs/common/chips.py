"""The face-chip contract between the face service (producer) and the scoring service (consumer).

Every detected face is warped by a similarity transform so that its 5 landmarks land on ``CHIP_TEMPLATE`` in a
``CHIP_SIZE``² image. The template is the ArcFace 112×112 template scaled down so that the 112-px face frame
fills the central 1/DEX_MARGIN_FACTOR of the chip: DEX-style models were trained on face boxes enlarged by 40 % on each
side (1 + 2·0.4 = 1.8), so every scoring member can cut its own crop out of the chip without running out of pixels.
The landmarks actually found in the chip (after the warp) travel with the chip, so members can also derive crops from
the real landmark positions.
"""

from __future__ import annotations

import numpy as np

CHIP_SIZE = 256  # large enough for every scoring member (largest input today: 64 px plus a 40 % margin, up-scaled)
DEX_MARGIN_FACTOR = 1.8  # 0.4 of the face box added on each side, as in DEX / IMDB-WIKI training crops

# ArcFace (InsightFace) 5-point template, 112×112 frame: left eye, right eye, nose tip, left/right mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

_FACE_FRAME = CHIP_SIZE / DEX_MARGIN_FACTOR  # pixels of the chip covered by the 112-px ArcFace face frame
_SCALE = _FACE_FRAME / 112.0
_OFFSET = (CHIP_SIZE - _FACE_FRAME) / 2.0

CHIP_TEMPLATE = (ARCFACE_TEMPLATE_112 * _SCALE + _OFFSET).astype(np.float32)
"""Canonical landmark positions (x, y) in chip pixels."""

FACE_FRAME_BOX = (_OFFSET, _OFFSET, _OFFSET + _FACE_FRAME, _OFFSET + _FACE_FRAME)
"""The square (x0, y0, x1, y1) in chip pixels that corresponds to the ArcFace face frame (a tight face box)."""
