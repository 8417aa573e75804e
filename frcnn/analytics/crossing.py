"""Counting tracked objects that cross a line: the geometry of a crossing and its direction, per class."""

from __future__ import annotations

from collections import Counter

import numpy as np

from frcnn.analytics.geometry import in_pixels, pairs, parse_numbers


class LineCounter:
    """Counts tracks whose centre crosses a segment, per class and per direction.

    A side is the sign of the centre relative to the line from (x1, y1) to (x2, y2); a crossing is a change
    of side whose step passes through the segment itself. A centre on the line has no side, so a track that
    stops on the line, or moves along it, is not counted. Directions are named as seen on the screen:
    left_to_right / right_to_left for a line closer to vertical, top_to_bottom / bottom_to_top otherwise.
    """

    def __init__(self, line: tuple[float, float, float, float]):
        self.start = np.array(line[:2], np.float64)
        self.end = np.array(line[2:], np.float64)
        dx, dy = self.end - self.start
        self.vertical = abs(dy) >= abs(dx)
        # The side a positive cross product means, on the screen (y grows downwards).
        positive_is_forward = (-dy > 0) if self.vertical else (dx > 0)
        names = ("left_to_right", "right_to_left") if self.vertical else ("top_to_bottom", "bottom_to_top")
        self.direction_to = {1: names[0] if positive_is_forward else names[1],
                             -1: names[1] if positive_is_forward else names[0]}
        self.sides: dict[int, tuple[int, np.ndarray]] = {}  # track -> last non-zero side and the centre there
        self.counts: dict[str, Counter] = {name: Counter() for name in names}

    def _side(self, point: np.ndarray) -> int:
        direction, offset = self.end - self.start, point - self.start
        cross = direction[0] * offset[1] - direction[1] * offset[0]
        return 0 if abs(cross) < 1e-9 else (1 if cross > 0 else -1)

    def _through_segment(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the step from a to b meets the segment (not only the endless line)."""
        def orientation(p, q, r):
            value = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
            return 0 if abs(value) < 1e-9 else (1 if value > 0 else -1)

        o1, o2 = orientation(a, b, self.start), orientation(a, b, self.end)
        o3, o4 = orientation(self.start, self.end, a), orientation(self.start, self.end, b)
        return o1 != o2 and o3 != o4 or 0 in (o1, o2)

    def update(self, track_id: int, centre: np.ndarray, label: str) -> str | None:
        """Note where a track's centre is now; return the direction if it has just crossed, else None."""
        side = self._side(centre)
        if side == 0:
            return None
        previous = self.sides.get(track_id)
        self.sides[track_id] = (side, centre)
        if previous is None or previous[0] == side or not self._through_segment(previous[1], centre):
            return None
        direction = self.direction_to[side]
        self.counts[direction][label] += 1
        return direction

    def forget(self, track_id: int) -> None:
        self.sides.pop(track_id, None)

    def totals(self) -> dict[str, dict[str, int]]:
        return {direction: dict(sorted(counter.items())) for direction, counter in self.counts.items()}


def parse_count_line(text: str) -> tuple[float, float, float, float]:
    """'X1,Y1,X2,Y2' in pixels, or fractions of the width and height when all four are within [0, 1]."""
    values = parse_numbers(text, "four numbers X1,Y1,X2,Y2")
    if len(values) != 4:
        raise ValueError(f"'{text}' is not X1,Y1,X2,Y2")
    if values[:2] == values[2:]:
        raise ValueError(f"'{text}': the two ends are the same point")
    return tuple(values)  # type: ignore[return-value]


def line_in_pixels(line: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    """A line's ends in pixels (fractions of the frame when all four values are within [0, 1])."""
    return tuple(float(v) for v in in_pixels(pairs(line), width, height).ravel())
