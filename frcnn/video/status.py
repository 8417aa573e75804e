"""A running video's progress as it happens, for a program that follows the run (the service's job events and
preview): JSON lines appended to a status file, and the newest drawn frame as a JPEG file.

The status file gets a `progress` line per processed frame (at most a few a second, and always the last one) and
an `analytics` line for each event the analytics' events file writes, as it writes it. Lines are appended whole and
flushed, so a reader that polls the file sees complete lines only.

With --ray the video is drawn on a worker, perhaps on another machine: relay.py brings the same lines and previews
to the command's machine.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np

from frcnn.core.files import encode_jpeg

PROGRESS_EVERY_S = 0.25  # a progress line per frame would be thousands per minute on a GPU
PREVIEW_EVERY_S = 0.2


class StatusFiles:
    """The status file and the preview JPEG, on the machine that runs the command."""

    def __init__(self, status: str | os.PathLike | None, preview: str | os.PathLike | None = None):
        self._lock = threading.Lock()
        self._handle: TextIO | None = open(status, "a", encoding="utf-8") if status else None
        self._preview = Path(preview) if preview else None
        self.wants_preview = self._preview is not None

    def line(self, record: dict) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.write(json.dumps(record) + "\n")
                self._handle.flush()

    def preview(self, jpeg: bytes) -> None:
        if self._preview is not None:
            temporary = self._preview.with_name(f".{self._preview.name}.tmp")
            temporary.write_bytes(jpeg)
            os.replace(temporary, self._preview)  # a reader never sees half a picture

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


class StatusSink(Protocol):
    """Where a feed's lines and previews go: StatusFiles here, or relay.RelayedStatus on a Ray worker."""

    wants_preview: bool

    def line(self, record: dict) -> None: ...

    def preview(self, jpeg: bytes) -> None: ...

    def close(self) -> None: ...


class StatusFeed:
    """The run's progress and analytics events, a few times a second, into a StatusSink."""

    def __init__(self, sink: StatusSink):
        self.sink = sink
        self._last_progress = self._last_preview = 0.0
        self._reported = -1  # frames done at the last progress line
        self._started = time.monotonic()

    def close(self) -> None:
        self.sink.close()

    def _append(self, record: dict) -> None:
        self.sink.line(record)

    def frame(self, done: int, total: int | None, picture: np.ndarray | None = None, last: bool = False) -> None:
        """One more frame processed: a progress line and the preview, when their time has come (or `last`)."""
        now = time.monotonic()
        if (last and done != self._reported) or (not last and now - self._last_progress >= PROGRESS_EVERY_S):
            self._last_progress, self._reported = now, done
            elapsed = now - self._started
            self._append({"type": "progress", "frames_done": done, "frames_total": total,
                          "fps": round(done / elapsed, 3) if elapsed > 0 else 0.0})
        if picture is not None and self.sink.wants_preview and now - self._last_preview >= PREVIEW_EVERY_S:
            self._last_preview = now
            self.sink.preview(encode_jpeg(picture))

    def tee(self, model: str, events: TextIO | None) -> "_EventsTee":
        """An events handle that also appends each event line to the status file, naming its model."""
        return _EventsTee(self, model, events)


class _EventsTee:
    """What the events log writes to: the events file, and the status file beside it."""

    def __init__(self, feed: StatusFeed, model: str, events: TextIO | None):
        self.feed, self.model, self.events = feed, model, events

    def write(self, text: str) -> int:
        if self.events is not None:
            self.events.write(text)
        for line in text.splitlines():
            if line.strip():
                self.feed._append({"type": "analytics", "model": self.model, "event": json.loads(line)})
        return len(text)
