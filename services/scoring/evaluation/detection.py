"""The face detector the scoring package's offline tools use on raw photos, provided by whoever runs them.

The scoring service itself never detects faces: chips arrive from the face service through events and the blob store.
Its offline tools (``howhot eval age|beauty|personalize``, ``howhot train dex``) start from photos, so they need a
detector — but a service never imports another service's code. The composition root of those tools (``libs.cli``,
or a benchmark script) binds a factory here; the tools ask for the detector only when a cache misses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np


class Detector(Protocol):
    """What the offline tools need: faces (with ``landmarks_array()`` and ``box``) for a batch of RGB images."""

    def detect_batch(self, images: list[np.ndarray]) -> Sequence[Sequence[Any]]: ...


DetectorFactory = Callable[[], Detector]

_factory: DetectorFactory | None = None
_detector: Detector | None = None


class NoDetector(RuntimeError):
    """An offline tool needed to detect faces and nobody provided a detector."""


def provide_detector(factory: DetectorFactory) -> None:
    """Bind the factory (called at most once, on first use: building a detector loads weights)."""
    global _factory, _detector
    _factory, _detector = factory, None


def detector() -> Detector:
    """The bound detector, built on first use."""
    global _detector
    if _detector is None:
        if _factory is None:
            raise NoDetector("no face detector bound: run this through `howhot eval ...` / `howhot train ...`, or call "
                             "services.scoring.evaluation.detection.provide_detector first")
        _detector = _factory()
    return _detector
