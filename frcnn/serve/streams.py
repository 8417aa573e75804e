"""What a running job pushes to its client: server-sent events (progress, analytics, state) and the MJPEG preview."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator, Callable

from frcnn.serve.jobs import FINISHED, PREVIEW_FILE, STATUS_FILE, StatusReader

POLL_S = 0.25
KEEP_ALIVE_S = 15.0
MJPEG_BOUNDARY = "frame"


def _event(kind: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n"


async def job_events(folder: Path, describe: Callable[[], dict], after: int = 0) -> AsyncIterator[str]:
    """The job's status lines after line `after` as events with their line number as id (so Last-Event-ID
    resumes), a `state` event whenever the state changes, until the job has finished and every line is sent."""
    reader, state, quiet = StatusReader(folder / STATUS_FILE, after), None, 0.0
    yield "retry: 2000\n\n"
    while True:
        job = describe()
        for number, line in await asyncio.to_thread(reader.new_lines):
            yield _event(line.pop("type", "progress"), line, number)
            quiet = 0.0
        if job["state"] != state:
            state = job["state"]
            yield _event("state", job)
        if state in FINISHED:
            return
        await asyncio.sleep(POLL_S)
        quiet += POLL_S
        if quiet >= KEEP_ALIVE_S:  # a comment keeps proxies from closing a quiet stream
            quiet = 0.0
            yield ": waiting\n\n"


async def preview_frames(folder: Path, finished: Callable[[], bool]) -> AsyncIterator[bytes]:
    """Each new drawn frame of the job as one part of a multipart/x-mixed-replace stream, until the job ends."""
    path, seen = folder / PREVIEW_FILE, None
    while True:
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            data = await asyncio.to_thread(path.read_bytes)
            yield (f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                   .encode() + data + b"\r\n")
        if finished():
            return
        await asyncio.sleep(POLL_S / 2)
