"""A video drawn on a Ray worker, followed and stopped from the script's machine.

The worker sends its progress lines, analytics events and (when asked for) newest drawn frames to a small actor that
holds no CPU; the script takes them a few times a second and writes them into its --status and --preview files as
they come. The actor also carries the script's stop (Ctrl-C, SIGTERM, a cancelled service job) back to the worker,
which finishes the frames in flight and sends the video so far, as a run without Ray does.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from frcnn.core.errors import first_line
from frcnn.core.log import log
from frcnn.video.status import StatusFiles

POLL_S = 0.1  # how often the script takes what the workers sent, and passes a stop on


class Relay:
    """The actor between the workers and the script: what the workers sent, and whether to stop."""

    def __init__(self):
        self.items: list[tuple] = []
        self.stopping = False

    def put(self, item: tuple) -> bool:
        """Keep a worker's line or preview; whether the script asked the workers to stop."""
        self.items.append(item)
        return self.stopping

    def take(self) -> list[tuple]:
        items, self.items = self.items, []
        return items

    def stop(self) -> None:
        self.stopping = True


class RelayedStatus:
    """On a Ray worker, a StatusSink whose lines and previews go to the script; `stop` is set once the script asks
    for a stop (the answer to each line, a few times a second)."""

    def __init__(self, relay, wants_preview: bool, stop: threading.Event):
        self.relay, self.wants_preview, self.stop = relay, wants_preview, stop

    def _send(self, item: tuple) -> None:
        if self.relay is None:
            return
        import ray

        try:
            if ray.get(self.relay.put.remote(item)):
                self.stop.set()
        except ray.exceptions.RayError as error:  # the script is gone, and its actor with it: the video goes on
            log.debug(f"the relay to the script stopped: {first_line(error)}")
            self.relay = None

    def line(self, record: dict) -> None:
        self._send(("line", record))

    def preview(self, jpeg: bytes) -> None:
        self._send(("preview", jpeg))

    def close(self) -> None:
        pass


@contextlib.contextmanager
def worker_relay(ray, status: str | None, preview: str | None, stop: threading.Event) -> Iterator[object | None]:
    """The actor for this run's workers on the cluster of `ray` (pass it to them): while the block runs, what they
    send is written into the status and preview files (where given), and `stop`, once set, is passed on to them.
    None without a cluster (`ray` None): the videos are processed here."""
    if ray is None:
        yield None
        return
    files = StatusFiles(status, preview)
    relay = ray.remote(Relay).options(num_cpus=0).remote()  # holds no CPU a worker could use
    done = threading.Event()
    thread = threading.Thread(target=_follow, args=(ray, relay, files, stop, done), name="worker-relay", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        done.set()
        thread.join(timeout=10)
        files.close()
        ray.kill(relay)


def _follow(ray, relay, files: StatusFiles, stop: threading.Event, done: threading.Event) -> None:
    told = False
    try:
        while True:
            finished = done.wait(POLL_S)
            if stop.is_set() and not told:
                relay.stop.remote()
                told = True
            for kind, value in ray.get(relay.take.remote()):
                if kind == "line":
                    files.line(value)
                else:
                    files.preview(value)
            if finished:
                return
    except ray.exceptions.RayError as error:  # the actor lost: the videos go on, unfollowed
        log.warning(f"warning: the workers' progress can no longer be followed ({first_line(error)})")
