"""The events log: one JSON line per line crossing, zone entry and zone exit, written as they become known."""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, TextIO


class EventLog:
    """Writes each event as one JSON line (nowhere when `handle` is None) and counts them by kind."""

    def __init__(self, handle: TextIO | None):
        self.handle = handle
        self.counts: Counter = Counter()

    def write(self, events: Iterable[dict]) -> None:
        for event in events:
            self.counts[event["event"]] += 1
            if self.handle is not None:
                self.handle.write(json.dumps(event) + "\n")

    def summary(self) -> dict[str, int]:
        return {kind: self.counts[kind] for kind in ("cross", "enter", "exit") if self.counts[kind]}
