"""Events (a line crossed, a zone entered or left) and their log: one JSON line each, written as they become known."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, TextIO


@dataclass(frozen=True)
class Event:
    """Something a tracked object did on one frame: `kind` is "cross" (of `line`, in `direction`), "enter" or
    "exit" (of `zone`; an exit has the visit's `dwell` in seconds, and `lost` when the tracker gave up on it)."""

    kind: str
    frame: int
    time_s: float
    track_id: int
    label: str
    line: str | None = None
    direction: str | None = None
    zone: str | None = None
    dwell: float | None = None
    lost: bool = False

    def to_json(self) -> dict:
        """The event as the events file writes it."""
        record = {"event": self.kind, "frame": self.frame, "time": round(self.time_s, 3), "track": self.track_id,
                  "class": self.label}
        if self.line is not None:
            record.update(line=self.line, direction=self.direction)
        if self.zone is not None:
            record["zone"] = self.zone
        if self.dwell is not None:
            record["dwell"] = round(self.dwell, 3)
        if self.lost:
            record["lost"] = True
        return record


class EventLog:
    """Writes each event as one JSON line (nowhere when `handle` is None) and counts them by kind."""

    def __init__(self, handle: TextIO | None):
        self.handle = handle
        self.counts: Counter = Counter()

    def write(self, events: Iterable[Event]) -> None:
        for event in events:
            self.counts[event.kind] += 1
            if self.handle is not None:
                self.handle.write(json.dumps(event.to_json()) + "\n")

    def summary(self) -> dict[str, int]:
        return {kind: self.counts[kind] for kind in ("cross", "enter", "exit") if self.counts[kind]}
