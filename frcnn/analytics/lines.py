"""Several counting lines, each optionally named: crossings per line, class and direction, as events."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from frcnn.analytics.crossing import LineCounter, line_in_pixels, parse_count_line
from frcnn.analytics.events import Event
from frcnn.analytics.geometry import anchor_points, check_unique, split_name
from frcnn.core.detections import Detections, names_per_box
from frcnn.core.specs import CountLine

UNNAMED = "line"  # what the one unnamed line is called in records


def parse_line(text: str) -> CountLine:
    """`X1,Y1,X2,Y2` or `NAME=X1,Y1,X2,Y2` (pixels, or fractions of the frame when all four are within [0, 1])."""
    name, rest = split_name(text)
    return CountLine(parse_count_line(rest), name)


def name_lines(lines: Sequence[CountLine]) -> tuple[CountLine, ...]:
    """Every line with a name of its own: one unnamed line stays unnamed (as before lines had names); among
    several, an unnamed one is `line<position>`. ValueError when two share a name."""
    if len(lines) == 1:
        return tuple(lines)
    named = tuple(CountLine(line.points, line.name or f"{UNNAMED}{number}")
                  for number, line in enumerate(lines, start=1))
    check_unique([line.name for line in named], "--count-line")
    return named


class LineSet:
    """The run's counting lines on one model's tracks: each track's centre against every line."""

    def __init__(self, lines: Sequence[CountLine], width: int, height: int):
        self.lines = [(line.name, LineCounter(line_in_pixels(line.points, width, height))) for line in lines]

    def update(self, frame: int, time_s: float, tracked: Detections, classes: Sequence[str]) -> list[Event]:
        """Note where each tracked box's centre is now; one event per crossing this frame. `classes`: the model's
        class names (`prediction.class_names`), or one name per box. Boxes without a track id are not counted."""
        known = tracked.track_ids >= 0 if tracked.track_ids is not None else np.zeros(len(tracked), bool)
        centres = anchor_points(tracked.boxes[known], "center")
        names = [label for label, keep in zip(names_per_box(tracked, classes), known) if keep]
        events = []
        for name, counter in self.lines:
            for track_id, label, centre in zip(tracked.track_ids[known].tolist(), names, centres):
                direction = counter.update(int(track_id), centre, label)
                if direction is not None:
                    events.append(Event("cross", frame, time_s, int(track_id), label, line=name or UNNAMED,
                                        direction=direction))
        return events

    def forget(self, track_id: int) -> None:
        for _, counter in self.lines:
            counter.forget(track_id)

    def totals(self) -> dict[str, dict[str, dict[str, int]]]:
        """Each line's crossings so far, per direction and class."""
        return {name or UNNAMED: counter.totals() for name, counter in self.lines}

    def crossed(self) -> dict[str, int]:
        """Each line's crossings so far in each direction, all classes together (`line: direction` keys)."""
        return {f"{name or UNNAMED}: {direction.replace('_', ' ')}": sum(counts.values())
                for name, counter in self.lines for direction, counts in counter.totals().items()}

    def tracking_summary(self) -> dict:
        """What the tracks file's summary says of the lines: `crossings` for one line (as it always has), `lines`
        by name for several."""
        if not self.lines:
            return {}
        if len(self.lines) == 1:
            return {"crossings": self.lines[0][1].totals()}
        return {"lines": self.totals()}

    def summary(self) -> dict:
        return {name or UNNAMED: {"points": [round(float(v), 1) for v in (*counter.start, *counter.end)],
                                  "crossings": counter.totals()} for name, counter in self.lines}
