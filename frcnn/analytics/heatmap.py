"""Where tracked objects have been: their anchor points accumulated on a grid, in object-seconds per cell."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from frcnn.core.errors import FrcnnError
from frcnn.drawing import draw_heat, draw_heat_scale

CELLS_ON_SHORT_SIDE = 64  # the grid's resolution: fine enough to show lanes, coarse enough to fill in
SCALE_TITLE = "time spent"  # what the colours of the written picture mean: seconds of objects in a cell


def seconds(value: float) -> str:
    """A time for the key: one decimal, two under a second."""
    return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"


class Heatmap:
    """Two grids over the frame: everything since the start (the picture written at the end) and a fading one that
    the video shows (its heat halves every `half_life` seconds; 0: it never fades)."""

    def __init__(self, width: int, height: int, half_life: float = 0.0):
        self.size = (width, height)
        self.cell = max(1, round(min(width, height) / CELLS_ON_SHORT_SIDE))
        shape = (math.ceil(height / self.cell), math.ceil(width / self.cell))
        self.total = np.zeros(shape, np.float64)
        self.live = np.zeros(shape, np.float64)
        self.half_life = half_life

    def add(self, anchors: np.ndarray, seconds: float) -> None:
        """Each anchor point stood `seconds` (the time between processed frames) where it is."""
        if self.half_life > 0:
            self.live *= 0.5 ** (seconds / self.half_life)
        if len(anchors) == 0:
            return
        rows = np.clip((anchors[:, 1] // self.cell).astype(int), 0, self.total.shape[0] - 1)
        cols = np.clip((anchors[:, 0] // self.cell).astype(int), 0, self.total.shape[1] - 1)
        np.add.at(self.total, (rows, cols), seconds)
        np.add.at(self.live, (rows, cols), seconds)

    def hottest(self) -> tuple[float, float]:
        """The centre, in pixels, of the cell where objects spent the most time."""
        row, col = np.unravel_index(int(np.argmax(self.total)), self.total.shape)
        return (col + 0.5) * self.cell, (row + 0.5) * self.cell

    def picture(self, background: np.ndarray | None) -> np.ndarray:
        """The whole run's heat over a dimmed, grey copy of `background` (a frame of the video), with the key to
        its colours: from none to the time spent in the hottest cell."""
        width, height = self.size
        if background is None:
            base = np.full((height, width, 3), 64, np.uint8)
        else:
            grey = cv2.cvtColor(background, cv2.COLOR_BGR2GRAY)
            base = cv2.cvtColor((grey * 0.6).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        draw_heat(base, self.total, self.cell)
        draw_heat_scale(base, self.total, self.cell, seconds(float(self.total.max())), "0 s", SCALE_TITLE)
        return base

    def write_png(self, path: Path, background: np.ndarray | None) -> None:
        """The picture of the whole run's heat, as PNG."""
        ok, encoded = cv2.imencode(".png", self.picture(background))
        if not ok:
            raise FrcnnError(f"could not encode the heatmap {path} as PNG")
        Path(path).write_bytes(encoded.tobytes())

    def summary(self) -> dict:
        x, y = self.hottest()
        return {"cell": self.cell, "hottest": [round(x, 1), round(y, 1)],
                "hottest_seconds": round(float(self.total.max()), 3)}
