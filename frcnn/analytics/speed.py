"""Ground speed from the picture: a calibration (metres per pixel for a top-down view, or a perspective transform
from four picture points of a known rectangle), and each track's speed over a short window."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from frcnn.analytics.geometry import in_pixels, pairs, parse_numbers
from frcnn.core.specs import SpeedOptions

# Metres per second into each unit shown.
SPEED_UNITS = {"km/h": 3.6, "m/s": 1.0, "mph": 3600 / 1609.344}
# A track's steady top speed: the 90th percentile of its window speeds, which a few unlucky windows do not move.
STEADY = "p90"


def parse_calibration(text: str) -> tuple[tuple[tuple[float, float], ...], tuple[float, float]]:
    """`x1,y1,x2,y2,x3,y3,x4,y4=W,H`: four picture points, in order around a real rectangle of W x H metres
    (the first to the second is its width); ValueError where they cannot be one."""
    points_text, equals, size_text = text.rpartition("=")
    if not equals:
        raise ValueError(f"'{text}' is not X1,Y1,X2,Y2,X3,Y3,X4,Y4=W,H (four picture points = metres)")
    values = parse_numbers(points_text, "eight numbers X1,Y1,...,X4,Y4")
    if len(values) != 8:
        raise ValueError(f"'{text}': four points are eight numbers X1,Y1,...,X4,Y4")
    try:
        size = tuple(float(v) for v in size_text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"'{text}': the rectangle's size W,H is not two numbers") from None
    if len(size) != 2 or not all(np.isfinite(v) and v > 0 for v in size):
        raise ValueError(f"'{text}': the rectangle's size is W,H in metres, both above 0")
    corners = pairs(values)
    check_corners(corners)
    return corners, size  # type: ignore[return-value]


def check_corners(corners: Sequence[tuple[float, float]]) -> None:
    """ValueError when three of the points are on one line, or the four do not go around a quadrilateral in order."""
    points = np.asarray(corners, np.float64)
    extent = max(float(np.ptp(points[:, 0])), float(np.ptp(points[:, 1])), 1e-12)
    for a, b, c in itertools.combinations(points, 3):
        if abs(_cross(b - a, c - a)) <= 1e-6 * extent ** 2:
            raise ValueError("three of the four calibration points are on one line: they must be the corners "
                             "of a rectangle on the ground, as the picture shows it")
    turns = [np.sign(_cross(points[(i + 1) % 4] - points[i], points[(i + 2) % 4] - points[(i + 1) % 4]))
             for i in range(4)]
    if len(set(turns)) != 1:
        raise ValueError("the four calibration points must go around the rectangle in order (its sides must not cross)")


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


class GroundPlane:
    """Picture pixels to metres on the ground: a scale for a top-down view, else a perspective transform."""

    def __init__(self, options: SpeedOptions, width: int, height: int):
        if options.meters_per_pixel is not None:
            self.matrix = np.diag([options.meters_per_pixel, options.meters_per_pixel, 1.0])
        else:
            source = in_pixels(options.corners, width, height).astype(np.float32)
            w, h = options.rectangle
            target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
            self.matrix = cv2.getPerspectiveTransform(source, target).astype(np.float64)

    def to_metres(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) picture points as (N, 2) ground points in metres."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        mapped = np.hstack([points, np.ones((len(points), 1))]) @ self.matrix.T
        return mapped[:, :2] / mapped[:, 2:]


@dataclass
class TrackSpeed:
    """One track: its ground positions on the recent detected frames, and the speeds measured so far (in metres
    per second)."""

    path: deque
    speeds: list[float] = field(default_factory=list)
    latest: float | None = None  # in the unit shown

    def figures(self, factor: float) -> dict:
        """Its mean, 90th percentile and largest speed, in the unit `factor` converts to, and how many frames
        were measured."""
        speeds = np.asarray(self.speeds) * factor
        return {"mean": round(float(speeds.mean()), 2), STEADY: round(float(np.percentile(speeds, 90)), 2),
                "max": round(float(speeds.max()), 2), "frames": len(speeds)}


def ground_speed(path: Sequence[tuple[float, np.ndarray]]) -> float:
    """The speed (metres per second) of a least-squares line through timed ground points: one box placed a few
    pixels off moves it far less than it moves the distance between the first point and the last."""
    times = np.array([time for time, _ in path], np.float64)
    points = np.array([point for _, point in path], np.float64)
    offsets = times - times.mean()
    velocity = offsets @ (points - points.mean(axis=0)) / float(offsets @ offsets)
    return float(np.linalg.norm(velocity))


class SpeedMeter:
    """Each track's speed: how fast its ground point moved over the last `window` seconds (the slope of a line
    fitted through its positions then). Only detected frames count: a box the tracker carried between them was
    placed by the tracker's motion model, not seen. A track seen for less than the window has no speed yet."""

    def __init__(self, options: SpeedOptions, width: int, height: int):
        self.plane = GroundPlane(options, width, height)
        self.window, self.unit = options.window, options.unit
        self.factor = SPEED_UNITS[options.unit]
        self.tracks: dict[int, TrackSpeed] = {}
        self.finished: list[dict] = []

    def update(self, time_s: float, track_ids: np.ndarray, anchors: np.ndarray,
               detected: bool = True) -> dict[int, float]:
        """Note where each track is now; the speed (in the chosen unit) of each track seen for the window. On a
        frame that was not detected, each track keeps the speed of its latest detected frame."""
        if not detected:
            return {i: track.latest for i in track_ids.tolist()
                    if (track := self.tracks.get(i)) is not None and track.latest is not None}
        speeds = {}
        for track_id, ground in zip(track_ids.tolist(), self.plane.to_metres(anchors)):
            track = self.tracks.setdefault(track_id, TrackSpeed(deque()))
            track.path.append((time_s, ground))
            # Keep one sample at or before the window's start, so the line spans the whole window.
            while len(track.path) > 1 and track.path[1][0] <= time_s - self.window + 1e-9:
                track.path.popleft()
            if time_s - track.path[0][0] >= self.window - 1e-9:
                speed = ground_speed(track.path)
                track.speeds.append(speed)
                track.latest = speeds[track_id] = round(speed * self.factor, 2)
        return speeds

    def track_ended(self, track_id: int, label: str) -> None:
        track = self.tracks.pop(track_id, None)
        if track is not None and track.speeds:
            self.finished.append({"track": track_id, "class": label, **track.figures(self.factor)})

    def summary(self) -> dict:
        """Per track (mean, 90th percentile, max, frames measured) and per class, in the chosen unit."""
        classes: dict[str, dict] = {}
        for track in self.finished:
            entry = classes.setdefault(track["class"], {"tracks": 0, "mean": 0.0, "max": 0.0})
            entry["tracks"] += 1
            entry["mean"] += track["mean"]
            entry["max"] = max(entry["max"], track["max"])
        for entry in classes.values():
            entry["mean"] = round(entry["mean"] / entry["tracks"], 2)
        return {"unit": self.unit, "window": self.window, "tracks": sorted(self.finished, key=lambda t: t["track"]),
                "classes": dict(sorted(classes.items()))}
