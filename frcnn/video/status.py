"""A running video's progress as it happens, for a program that follows the run (the service's job events and
preview): JSON lines appended to a status file, and the newest drawn frame as a JPEG file.

The status file gets a `progress` line per processed frame (at most a few a second, and always the last one) and
an `analytics` line for each event the analytics' events file writes, as it writes it. Lines are appended whole and
flushed, so a reader that polls the file sees complete lines only.

With --ray the video is drawn on a worker, perhaps on another machine: there the same lines and previews go into a
Ray queue, and the command's machine writes them into its files as they come (`relayed_status`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

from frcnn.core.errors import first_line
from frcnn.core.files import encode_jpeg
from frcnn.core.log import log

PROGRESS_EVERY_S = 0.25  # a progress line per frame would be thousands per minute on a GPU
PREVIEW_EVERY_S = 0.2
RELAY_POLL_S = 0.1  # how often the command's machine takes what the workers sent


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


class RelayedStatus:
    """On a Ray worker: the lines and previews, sent through a Ray queue to the command's machine."""

    def __init__(self, queue, wants_preview: bool):
        self.queue, self.wants_preview = queue, wants_preview

    def _send(self, item: tuple) -> None:
        if self.queue is None:
            return
        try:
            self.queue.put(item)
        except Exception as error:  # the command that followed is gone (its queue with it): the video goes on
            log.debug(f"status relay stopped: {error}")
            self.queue = None

    def line(self, record: dict) -> None:
        self._send(("line", record))

    def preview(self, jpeg: bytes) -> None:
        self._send(("preview", jpeg))

    def close(self) -> None:
        pass


@contextlib.contextmanager
def relayed_status(status: str | None, preview: str | None) -> Iterator[object | None]:
    """A Ray queue for the workers' progress lines and previews, written into these files here while the block runs
    (and what is left in it at the end); None where the command follows nothing."""
    if not (status or preview):
        yield None
        return
    from ray.util.queue import Queue

    files = StatusFiles(status, preview)
    queue = Queue(actor_options={"num_cpus": 0})  # holds no CPU a worker could use
    done = threading.Event()
    writer = threading.Thread(target=_relay_into, args=(queue, files, done), name="status-relay", daemon=True)
    writer.start()
    try:
        yield queue
    finally:
        done.set()
        writer.join(timeout=10)
        files.close()
        queue.shutdown()


def _relay_into(queue, files: StatusFiles, done: threading.Event) -> None:
    try:
        while True:
            finished = done.wait(RELAY_POLL_S)
            size = queue.size()
            for kind, value in queue.get_nowait_batch(size) if size else ():
                if kind == "line":
                    files.line(value)
                else:
                    files.preview(value)
            if finished:
                return
    except Exception as error:  # the queue's actor lost: the videos go on, unfollowed
        log.warning(f"warning: the workers' progress can no longer be followed ({first_line(error)})")


class StatusFeed:
    """The run's progress and analytics events, a few times a second, into StatusFiles or RelayedStatus."""

    def __init__(self, sink: StatusFiles | RelayedStatus):
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
