"""The picture geometry the analytics share: reading `NAME=x,y,...` option values, fractions of the frame into
pixels, the point of a box that stands for it, which points are inside a polygon, and zones or lines that miss the
frame."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from frcnn.core.specs import CountLine, Zone

ANCHORS = ("bottom", "center")


def split_name(text: str) -> tuple[str | None, str]:
    """`NAME=rest` into (NAME, rest); text without a name gives (None, text)."""
    name, equals, rest = text.partition("=")
    if not equals:
        return None, text
    name = name.strip()
    if not name:
        raise ValueError(f"'{text}': the name before '=' is empty")
    if any(c in name for c in "/\\\n") or name.startswith("."):
        raise ValueError(f"'{text}': a name may not contain '/' or '\\' or start with '.'")
    return name, rest


def check_unique(names: Sequence[str], option: str) -> None:
    """ValueError naming the first name given twice."""
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{option}: two have the name '{name}'")
        seen.add(name)


def check_one_unit(values, text: str) -> None:
    """ValueError where coordinates mix fractions of the frame (a value between 0 and 1 that is not 0 or 1) with
    pixels (a value above 1): one value above 1 would otherwise read every value as pixels without a word."""
    fractions = [v for v in values if 0 < v < 1]
    pixels = [v for v in values if v > 1]
    if fractions and pixels:
        raise ValueError(f"'{text}' mixes fractions of the frame ({fractions[0]:g}) with pixels ({pixels[0]:g}): give "
                         f"every value as a fraction within 0..1, or every value in pixels")


def parse_numbers(text: str, what: str) -> list[float]:
    """Comma-separated finite numbers, zero or more; ValueError naming `what` otherwise."""
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"'{text}' is not {what}") from None
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"'{text}': coordinates must be zero or more")
    check_one_unit(values, text)
    return values


def pairs(values: Sequence[float]) -> tuple[tuple[float, float], ...]:
    return tuple((float(values[i]), float(values[i + 1])) for i in range(0, len(values) - 1, 2))


def in_pixels(points: Sequence[tuple[float, float]], width: int, height: int) -> np.ndarray:
    """Points as an (N, 2) array of pixels: fractions of the frame when every value is within [0, 1]."""
    array = np.asarray(points, np.float64).reshape(-1, 2)
    if np.all(array <= 1.0):
        array = array * [width, height]
    return array


def polygon_area(points: np.ndarray) -> float:
    """The polygon's area (shoelace formula; a self-crossing polygon's lobes may cancel)."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def anchor_points(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """The point of each box that stands for it: the bottom centre (where it touches the ground) or the centre."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if anchor == "bottom" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each (x, y) point is inside the polygon (even-odd rule), for all points at once."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros(0, bool)
    x, y = points[:, :1], points[:, 1:]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)
    # Where an edge straddles the point's row, the x at which it does; edges that do not are never counted.
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = np.where(straddles, x1 + (y - y1) * (x2 - x1) / np.where(straddles, y2 - y1, 1), -np.inf)
    return (np.count_nonzero(straddles & (x < crossing_x), axis=1) % 2) == 1


def inside_frame(polygon: np.ndarray, width: int, height: int) -> np.ndarray:
    """The part of a polygon (pixels) inside the frame, as a polygon (Sutherland-Hodgman); empty when none is."""
    points = [np.asarray(point, np.float64) for point in polygon]
    for axis, limit, below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        def keeps(point: np.ndarray) -> bool:
            return point[axis] <= limit if below else point[axis] >= limit

        def edge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return a + (b - a) * (limit - a[axis]) / (b[axis] - a[axis])

        kept = []
        for index, point in enumerate(points):
            previous = points[index - 1]
            if keeps(point) != keeps(previous):
                kept.append(edge(previous, point))
            if keeps(point):
                kept.append(point)
        points = kept
    return np.array(points, np.float64).reshape(-1, 2)


def missing_the_frame(zones: Sequence[Zone], lines: Sequence[CountLine], width: int, height: int) -> list[str]:
    """A warning line for each zone and counting line that lies entirely outside a `width` x `height` frame (it
    would count nothing, without a word)."""
    warnings = []
    for zone in zones:
        polygon = in_pixels(zone.points, width, height)
        if polygon_area(inside_frame(polygon, width, height)) <= 1e-9:
            warnings.append(_outside(f"zone {zone.name}", polygon, width, height))
    for line in lines:
        ends = in_pixels(pairs(line.points), width, height)
        crosses, _, _ = cv2.clipLine((0, 0, width, height), *(tuple(int(round(v)) for v in end) for end in ends))
        if not crosses:
            warnings.append(_outside(f"counting line {line.name}" if line.name else "the counting line", ends, width,
                                     height))
    return warnings


def _outside(what: str, points: np.ndarray, width: int, height: int) -> str:
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    return (f"warning: {what} ({x1:g},{y1:g} to {x2:g},{y2:g} px) lies entirely outside the {width}x{height} frame: "
            f"are its points pixels of a larger picture, or were fractions of the frame (within 0..1) meant?")
