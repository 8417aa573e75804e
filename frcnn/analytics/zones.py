"""Zones: named polygons; who is inside each (by the anchor point of its box), entries and exits per track, and how
long each stays (dwell), per zone and class."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from frcnn.analytics.events import Event
from frcnn.analytics.geometry import (
    anchor_points,
    check_unique,
    in_pixels,
    inside_polygon,
    pairs,
    parse_numbers,
    polygon_area,
    split_name,
)
from frcnn.core.detections import Detections, names_per_box
from frcnn.core.specs import Zone

RECTANGLE = "rect:"


def parse_zone(text: str) -> Zone:
    """`NAME=x1,y1,x2,y2,x3,y3,...` (a polygon) or `NAME=rect:x1,y1,x2,y2` (two opposite corners); pixels, or
    fractions of the frame when every value is within [0, 1]. Without `NAME=`, the zone is named by position."""
    name, rest = split_name(text)
    rest = rest.strip()
    if rest.lower().startswith(RECTANGLE):
        values = parse_numbers(rest[len(RECTANGLE):], "a rectangle rect:X1,Y1,X2,Y2")
        if len(values) != 4:
            raise ValueError(f"'{text}': a rectangle is rect:X1,Y1,X2,Y2 (two opposite corners)")
        x1, y1, x2, y2 = values
        values = [x1, y1, x2, y1, x2, y2, x1, y2]
    else:
        values = parse_numbers(rest, "a polygon X1,Y1,X2,Y2,X3,Y3,...")
        if len(values) % 2:
            raise ValueError(f"'{text}': an odd number of coordinates; a polygon is x,y pairs")
        if len(values) < 6:
            raise ValueError(f"'{text}': a zone needs at least three points")
    points = pairs(values)
    if polygon_area(np.array(points)) <= 1e-12:
        raise ValueError(f"'{text}': the points enclose no area")
    return Zone(name or "", points)


def name_zones(zones: Sequence[Zone]) -> tuple[Zone, ...]:
    """Every zone with a name: an unnamed one is `zone<position>`; ValueError when two share a name."""
    named = tuple(Zone(zone.name or f"zone{number}", zone.points) for number, zone in enumerate(zones, start=1))
    check_unique([zone.name for zone in named], "--zone")
    return named


@dataclass
class Visit:
    """A track's stay in a zone: when it was first seen inside, when last, and its class then."""

    label: str
    entered: float
    last_seen: float
    last_frame: int


@dataclass
class ZoneStats:
    """Per zone and class: entries, exits, who was still inside at the end, and the dwell of every visit."""

    entered: int = 0
    left: int = 0
    present: int = 0
    dwell_total: float = 0.0
    dwell_longest: float = 0.0

    def add_dwell(self, seconds: float) -> None:
        self.dwell_total += seconds
        self.dwell_longest = max(self.dwell_longest, seconds)

    def to_json(self) -> dict:
        visits = self.left + self.present
        return {"entered": self.entered, "left": self.left, "present": self.present,
                "mean_dwell": round(self.dwell_total / visits, 3) if visits else None,
                "longest_dwell": round(self.dwell_longest, 3) if visits else None}


class ZoneCounter:
    """One zone on one model's tracks. A visit starts on the first frame a track's anchor is seen inside and ends
    on the first frame it is seen outside, so its dwell is the time between the two frames."""

    def __init__(self, zone: Zone, width: int, height: int, frame_interval: float):
        self.name = zone.name
        self.polygon = in_pixels(zone.points, width, height)
        self.interval = frame_interval  # between processed frames: a visit seen on n frames lasted n of them
        self.visits: dict[int, Visit] = {}
        self.stats: dict[str, ZoneStats] = {}
        self.now: Counter = Counter()  # objects inside on the latest frame, per class

    def update(self, frame: int, time_s: float, track_ids: np.ndarray, classes: Sequence[str],
               anchors: np.ndarray) -> list[Event]:
        """Who is inside on this frame; an event for each entry and exit."""
        events, self.now = [], Counter()
        for track_id, label, inside in zip(track_ids.tolist(), classes, inside_polygon(anchors, self.polygon)):
            visit = self.visits.get(track_id)
            if inside:
                self.now[label] += 1
                if visit is None:
                    self.visits[track_id] = Visit(label, time_s, time_s, frame)
                    self._stats(label).entered += 1
                    events.append(self._event("enter", frame, time_s, track_id, label))
                else:
                    visit.last_seen, visit.last_frame = time_s, frame
            elif visit is not None:
                events.append(self._leave(track_id, frame, time_s, time_s - visit.entered))
        return events

    def track_ended(self, track_id: int, in_view: bool) -> list[Event]:
        """A track the tracker gave up (lost inside: it left, as last seen) or that was in view when the video
        ended (present at the end)."""
        visit = self.visits.get(track_id)
        if visit is None:
            return []
        dwell = visit.last_seen + self.interval - visit.entered
        if in_view:
            del self.visits[track_id]
            self._stats(visit.label).present += 1
            self._stats(visit.label).add_dwell(dwell)
            return []
        return [self._leave(track_id, visit.last_frame, visit.last_seen, dwell, lost=True)]

    def _leave(self, track_id: int, frame: int, time_s: float, dwell: float, lost: bool = False) -> Event:
        visit = self.visits.pop(track_id)
        stats = self._stats(visit.label)
        stats.left += 1
        stats.add_dwell(dwell)
        return Event("exit", frame, time_s, int(track_id), visit.label, zone=self.name, dwell=dwell, lost=lost)

    def _stats(self, label: str) -> ZoneStats:
        return self.stats.setdefault(label, ZoneStats())

    def _event(self, kind: str, frame: int, time_s: float, track_id: int, label: str) -> Event:
        return Event(kind, frame, time_s, int(track_id), label, zone=self.name)

    def summary(self) -> dict:
        total = ZoneStats()
        for stats in self.stats.values():
            total.entered, total.left, total.present = (total.entered + stats.entered, total.left + stats.left,
                                                        total.present + stats.present)
            total.dwell_total += stats.dwell_total
            total.dwell_longest = max(total.dwell_longest, stats.dwell_longest)
        return {"points": [[round(float(x), 1), round(float(y), 1)] for x, y in self.polygon],
                "classes": {label: stats.to_json() for label, stats in sorted(self.stats.items())},
                "all": total.to_json()}


class ZoneSet:
    """Every zone of the run, on one model's tracks."""

    def __init__(self, zones: Sequence[Zone], width: int, height: int, frame_interval: float,
                 anchor: str = "bottom"):
        self.zones = [ZoneCounter(zone, width, height, frame_interval) for zone in zones]
        self.anchor = anchor  # the point of a box that is in a zone: "bottom" (centre) or "center"

    def update(self, frame: int, time_s: float, tracked: Detections, classes: Sequence[str]) -> list[Event]:
        """Who is inside each zone on this frame; an event for each entry and exit. `classes`: the model's class
        names (`prediction.class_names`), or one name per box. Boxes without a track id are not counted."""
        known = tracked.track_ids >= 0 if tracked.track_ids is not None else np.zeros(len(tracked), bool)
        ids = tracked.track_ids[known] if tracked.track_ids is not None else np.zeros(0, np.int64)
        anchors = anchor_points(tracked.boxes[known], self.anchor)
        names = [label for label, keep in zip(names_per_box(tracked, classes), known) if keep]
        return [event for zone in self.zones for event in zone.update(frame, time_s, ids, names, anchors)]

    def track_ended(self, track_id: int, in_view: bool) -> list[Event]:
        return [event for zone in self.zones for event in zone.track_ended(track_id, in_view)]

    def counts(self) -> dict[str, dict[str, int]]:
        """The objects inside each zone on the latest frame, per class."""
        return {zone.name: dict(sorted(zone.now.items())) for zone in self.zones}

    def summary(self) -> dict:
        return {zone.name: zone.summary() for zone in self.zones}
