"""Small PNG charts drawn with Pillow: error by age (lines) and MAE per age band (grouped bars).

Why Pillow and not matplotlib: matplotlib is not a project dependency, and two chart types do not justify one; the
charts only need axes, ticks, a legend and readable labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from io import BytesIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 900, 420
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 220, 50, 60  # the right margin holds the legend
FONT_SIZE = 15
TITLE_SIZE = 18
# Colour-blind-safe palette (Okabe–Ito); the ensemble is always drawn first and thickest, in black.
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442")
GRID_COLOUR = "#dddddd"
MAX_Y_TICKS = 6  # at most this many grid lines: readable without crowding
MAX_X_LABELS = 12  # more x labels than this overlap at 900 px


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _nice_max(value: float) -> float:
    """A round axis maximum ≥ value (1, 2, 2.5, 5 × 10^k)."""
    if not np.isfinite(value) or value <= 0:
        return 1.0
    exponent = 10 ** np.floor(np.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * exponent >= value:
            return float(step * exponent)
    return float(10 * exponent)


class _Axes:
    """Plot-area geometry and the shared frame (title, y grid, axis labels, legend)."""

    def __init__(self, title: str, y_label: str, x_label: str, y_max: float) -> None:
        self.image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.x0, self.x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
        self.y0, self.y1 = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
        step = _nice_max(y_max / (MAX_Y_TICKS - 1))  # round tick spacing (1, 2, 2.5, 5 × 10^k)
        ticks = int(np.ceil(y_max / step - 1e-9)) if np.isfinite(y_max) and y_max > 0 else 1
        self.y_max = step * max(ticks, 1)
        font = _font(FONT_SIZE)
        self.draw.text((self.x0, 6), title, fill="black", font=_font(TITLE_SIZE))
        self.draw.text((self.x0 + 6, self.y0 - 4), y_label, fill="#444444", font=_font(FONT_SIZE - 2), anchor="ls")
        for i in range(max(ticks, 1) + 1):
            value = step * i
            y = self.y(value)
            self.draw.line([(self.x0, y), (self.x1, y)], fill=GRID_COLOUR)
            self.draw.text((self.x0 - 8, y), f"{value:g}", fill="black", font=font, anchor="rm")
        self.draw.line([(self.x0, self.y1), (self.x1, self.y1)], fill="black")
        self.draw.line([(self.x0, self.y0), (self.x0, self.y1)], fill="black")
        self.draw.text(((self.x0 + self.x1) / 2, HEIGHT - 18), x_label, fill="black", font=font, anchor="mm")

    def y(self, value: float) -> float:
        return self.y1 - (self.y1 - self.y0) * min(value, self.y_max) / self.y_max

    def legend(self, names: Sequence[str]) -> None:
        font = _font(FONT_SIZE)
        for i, name in enumerate(names):
            top = self.y0 + 10 + i * 24
            colour = PALETTE[i % len(PALETTE)]
            self.draw.rectangle([self.x1 + 16, top, self.x1 + 34, top + 14], fill=colour)
            self.draw.text((self.x1 + 42, top + 7), name, fill="black", font=font, anchor="lm")

    def png(self) -> bytes:
        buffer = BytesIO()
        self.image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()


def line_chart(title: str, x_label: str, y_label: str, x: Sequence[float],
               series: Mapping[str, Sequence[float]]) -> bytes:
    """PNG of one line per series over shared x values (NaN gaps are skipped)."""
    values = np.array([v for s in series.values() for v in s], dtype=float)
    axes = _Axes(title, y_label, x_label, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0)
    x_arr = np.asarray(x, dtype=float)
    x_min, x_max = float(x_arr.min()), float(x_arr.max())
    span = max(x_max - x_min, 1e-9)

    def px(value: float) -> float:
        return axes.x0 + (axes.x1 - axes.x0) * (value - x_min) / span

    font = _font(FONT_SIZE)
    label_every = max(1, int(np.ceil(len(x_arr) / MAX_X_LABELS)))
    for value in x_arr[::label_every]:
        axes.draw.text((px(value), axes.y1 + 14), f"{value:g}", fill="black", font=font, anchor="mm")
    for i, (_name, ys) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = [(px(a), axes.y(b)) for a, b in zip(x_arr, ys, strict=True) if np.isfinite(b)]
        if len(points) > 1:
            axes.draw.line(points, fill=colour, width=4 if i == 0 else 2)
        for point in points:
            axes.draw.ellipse([point[0] - 3, point[1] - 3, point[0] + 3, point[1] + 3], fill=colour)
    axes.legend(list(series))
    return axes.png()


def bar_chart(title: str, y_label: str, groups: Sequence[str], series: Mapping[str, Sequence[float]],
              counts: Sequence[int] | None = None) -> bytes:
    """PNG of grouped bars: one group per label, one bar per series, the value printed above each bar."""
    values = np.array([v for s in series.values() for v in s], dtype=float)
    axes = _Axes(title, y_label, "age band (true age)" + ("; n per band in brackets" if counts else ""),
                 float(np.nanmax(values)) * 1.1 if np.isfinite(values).any() else 1.0)
    font, small = _font(FONT_SIZE), _font(FONT_SIZE - 3)
    group_width = (axes.x1 - axes.x0) / max(len(groups), 1)
    bar_width = group_width * 0.8 / max(len(series), 1)
    for g, label in enumerate(groups):
        left = axes.x0 + g * group_width + group_width * 0.1
        caption = label if counts is None else f"{label} (n={counts[g]})"
        axes.draw.text((axes.x0 + (g + 0.5) * group_width, axes.y1 + 14), caption, fill="black", font=font,
                       anchor="mm")
        for s, ys in enumerate(series.values()):
            value = ys[g]
            if not np.isfinite(value):
                continue
            x = left + s * bar_width
            axes.draw.rectangle([x, axes.y(value), x + bar_width - 2, axes.y1], fill=PALETTE[s % len(PALETTE)])
            axes.draw.text((x + bar_width / 2, axes.y(value) - 8), f"{value:.1f}", fill="black", font=small,
                           anchor="mm")
    axes.legend(list(series))
    return axes.png()
