"""Video in, drawn video out: reading frames, the three-thread pipeline, and writing H.264 MP4.

Decoding, inference and drawing + encoding run in three threads joined by bounded queues, so memory stays
flat however long the video is and, on a GPU, the model never waits for I/O. The output is H.264 MP4
(plays in browsers). `process_video` runs it over an opened source here; `detect_video_bytes` runs it on a
video file's bytes, the way a Ray worker gets them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np

from frcnn.analytics.outputs import AnalyticsFiles
from frcnn.core.errors import FrcnnError
from frcnn.core.log import log
from frcnn.core.progress import progress_bar
from frcnn.core.specs import DrawOptions, TrackOptions
from frcnn.video.analytics_step import AnalyticsOverlay, RunAnalytics
from frcnn.video.relay import RelayedStatus
from frcnn.video.sources import VideoSource, describe_source, open_source
from frcnn.video.status import StatusFeed, StatusFiles, StatusSink
from frcnn.video.steps import FrameDrawer, FrameRecords, FrameSteps
from frcnn.video.tracking_step import RunTracking
from frcnn.video.window import show_window
from frcnn.video.writer import H264Writer

_END = object()
# With --json, the speed line is followed by one line of this prefix and its figures as JSON, for programs to read.
SPEED_JSON_PREFIX = "speed-json: "


# ---------------------------------------------------------------- reading


# ---------------------------------------------------------------- writing


# ---------------------------------------------------------------- the pipeline


@dataclass
class RunStats:
    written: int = 0
    inference_seconds: float = 0.0
    model_milliseconds: dict[str, float] = field(default_factory=dict)  # each model's inference time, summed
    started: float = field(default_factory=time.perf_counter)

    def add_inference(self, seconds: float, per_frame: list[list]) -> None:
        self.inference_seconds += seconds
        for predictions in per_frame:
            for prediction in predictions:
                self.model_milliseconds[prediction.model] = (self.model_milliseconds.get(prediction.model, 0.0)
                                                             + prediction.milliseconds)

    def pipeline_fps(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.written / elapsed if elapsed > 0 else 0.0

    def speed_badge(self) -> str:
        fps = self.pipeline_fps()
        return f"FPS {fps:.1f}" if fps >= 1 or fps == 0 else f"{1 / fps:.1f} s/frame"

    def to_json(self) -> dict:
        """The figures of the speed line, unrounded: frames written, the whole pipeline's seconds and rate, and
        each model's mean inference milliseconds per frame."""
        seconds = time.perf_counter() - self.started
        frames = max(1, self.written)
        return {"frames": self.written, "seconds": seconds, "frames_per_second": self.written / seconds,
                "inference_ms_per_frame": {name: ms / frames for name, ms in self.model_milliseconds.items()}}

    def summary(self, machine_readable: bool = False) -> str:
        """Each model's inference time per frame and the whole pipeline's rate, in the unit that reads best; with
        `machine_readable`, a second line: SPEED_JSON_PREFIX and the same figures as JSON (`to_json`)."""
        figures = self.to_json()
        frames = max(1, self.written)
        # One unit for the whole line, so its figures compare at a glance: s/frame once any figure is slower than
        # a frame a second, frames/s otherwise.
        slowest = max([figures["seconds"] / frames, *(ms / 1000 for ms in figures["inference_ms_per_frame"].values())])
        per_frame = slowest > 1

        def rate(seconds_per_frame: float) -> str:
            if seconds_per_frame <= 0:
                return "-"
            return f"{seconds_per_frame:.2f} s/frame" if per_frame else f"{1 / seconds_per_frame:.2f} frames/s"

        models = ", ".join(f"{name} {rate(ms / 1000)}" for name, ms in figures["inference_ms_per_frame"].items())
        line = f"speed: inference {models}; whole pipeline {rate(figures['seconds'] / frames)}"
        return line + (f"\n{SPEED_JSON_PREFIX}{json.dumps(figures)}" if machine_readable else "")


class _Worker(threading.Thread):
    """A daemon thread that keeps its exception for the main thread to re-raise, and sets `abort` on one."""

    def __init__(self, target, name: str, abort: threading.Event):
        super().__init__(name=name, daemon=True)
        self._work = target
        self._abort = abort
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # handed to the main thread
            self.error = error
            self._abort.set()


def _put(q: queue.Queue, item, abort: threading.Event) -> None:
    """Put, unless the pipeline is aborted (the consumer may be gone)."""
    while not abort.is_set():
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _replace_latest(q: queue.Queue, item) -> None:
    """Keep only the newest item in a one-place queue (its only producer calls this)."""
    with contextlib.suppress(queue.Empty):
        q.get_nowait()
    q.put_nowait(item)


def _get(q: queue.Queue, abort: threading.Event):
    """Get the next item, or the end marker once the pipeline is aborted (the producer may be gone)."""
    while not abort.is_set():
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            continue
    return _END


@dataclass(frozen=True)
class VideoRun:
    """The run's own options, as plain values made once in main."""

    frame_stride: int = 1
    max_frames: int | None = None
    batch: int = 1
    show: bool = False
    model_option: str = "v2"  # v1, v2 or both: the suffix of the output's name
    draw: DrawOptions = DrawOptions()
    threshold: float = 0.5  # what is drawn and recorded (the predictor keeps lower scores for the tracker)
    tracking: TrackOptions | None = None
    progress: bool = True  # a progress bar per video on stderr (not on a Ray worker: nobody sees it)
    status: str | None = None  # a file to append progress and analytics events to, as JSON lines (status.py)
    preview: str | None = None  # a JPEG file kept the newest drawn frame

    @property
    def detect_every(self) -> int:
        return self.tracking.detect_every if self.tracking else 1


class Window:
    """The --show window: frames are offered from the drawing thread and shown from the main one (Qt needs that)."""

    def __init__(self, title: str, stop: threading.Event):
        self.title, self.stop = title, stop
        self.showing = True
        self._latest: queue.Queue = queue.Queue(maxsize=1)  # the newest drawn frame is enough

    def offer(self, picture: np.ndarray) -> None:
        if self.showing:
            _replace_latest(self._latest, picture)

    def refresh(self) -> None:
        if not self.showing or self._latest.empty():
            return
        state = show_window(self.title, self._latest.get_nowait(), wait_ms=1)
        if state == "quit" and not self.stop.is_set():
            log.info("\nq pressed: finishing the frames in flight")
            self.stop.set()  # like the end of the input: what was processed is kept
        elif state == "closed":
            log.info("\nwindow closed: going on without it (Ctrl-C stops)")
        self.showing = state == "shown"


def _read_frames(source: VideoSource, run: VideoRun, decoded: queue.Queue, stop: threading.Event,
                 abort: threading.Event) -> None:
    """The first step: decode every `frame_stride`-th frame, up to `max_frames`, into the queue."""
    try:
        limit = run.max_frames or math.inf
        for count, (index, frame) in enumerate(source.frames(run.frame_stride, stop)):
            if abort.is_set() or count >= limit:
                break
            _put(decoded, (count, index, frame), abort)
    finally:
        _put(decoded, _END, abort)


def _next_batch(decoded: queue.Queue, size: int, abort: threading.Event) -> tuple[list, bool]:
    """Up to `size` decoded frames (what is ready; never waiting to fill), and whether the input has ended."""
    batch = [_get(decoded, abort)]
    while len(batch) < size and batch[-1] is not _END:
        try:
            batch.append(decoded.get_nowait())
        except queue.Empty:
            break
    ended = batch[-1] is _END
    return (batch[:-1] if ended else batch), ended


def run_pipeline(source: VideoSource, predictors: list, run: VideoRun, finish_frame: FrameSteps, stats: RunStats,
                 window: Window | None, stop: threading.Event, feed: StatusFeed | None = None) -> RunStats:
    """Decode → detect → draw + encode, overlapped in three threads; returns the counts and timings."""
    from frcnn.inference.predictor import predict_all

    decoded: queue.Queue = queue.Queue(maxsize=2 * run.batch)
    detected: queue.Queue = queue.Queue(maxsize=2 * run.batch)
    abort = threading.Event()  # set when any stage fails, so the others stop too
    expected = _expected_frames(source, run)
    progress = progress_bar(total=expected, desc=source.name, unit="frame", dynamic_ncols=True,
                            disable=not run.progress)

    def draw_and_write() -> None:
        while (item := _get(detected, abort)) is not _END:
            picture = finish_frame(*item)
            stats.written = finish_frame.written
            progress.update(1)
            if window is not None:
                window.offer(picture)
            if feed is not None:
                feed.frame(stats.written, expected, picture)
        if feed is not None:
            feed.frame(stats.written, expected, last=True)

    reader = _Worker(lambda: _read_frames(source, run, decoded, stop, abort), "decode", abort)
    drawer = _Worker(draw_and_write, "encode", abort)
    reader.start()
    drawer.start()
    try:
        ended = False
        while not ended and not abort.is_set():
            batch, ended = _next_batch(decoded, run.batch, abort)
            # With --detect-every N only every Nth processed frame meets the model; the trackers carry the rest.
            wanted = [item for item in batch if item[0] % run.detect_every == 0]
            if wanted:
                start = time.perf_counter()
                per_frame = predict_all(predictors, [frame for _, _, frame in wanted])
                stats.add_inference(time.perf_counter() - start, per_frame)
                found = {count: predictions for (count, _, _), predictions in zip(wanted, per_frame)}
            for count, index, frame in batch:
                _put(detected, (index, frame, found.get(count) if wanted else None), abort)
            if window is not None:
                window.refresh()
    except BaseException:
        abort.set()
        raise
    finally:
        _put(detected, _END, abort)
        drawer.join()  # every detected frame is drawn and encoded before the file is closed
        reader.join(timeout=5)
        progress.close()
    for worker in (reader, drawer):
        if worker.error:
            raise worker.error
    return stats


def _expected_frames(source: VideoSource, run: VideoRun) -> int | None:
    total = math.ceil(source.total_frames / run.frame_stride) if source.total_frames else None
    if run.max_frames:
        total = min(total, run.max_frames) if total else run.max_frames
    return total


# ---------------------------------------------------------------- one video, here or on a worker


@dataclass
class VideoResult:
    """What one video gave: frames written and unreadable, each model's tracking summary, the speed line (and,
    when records are written, its figures as JSON on a line of its own)."""

    frames: int
    unreadable: int
    summaries: list[dict]
    speed: str


def process_video(source: VideoSource, predictors: Sequence, run: VideoRun, video_path: Path,
                  json_path: Path | None, tracks_path: Path | None, stop: threading.Event,
                  window: Window | None = None,
                  analytics_files: dict[str, AnalyticsFiles] | None = None,
                  status: StatusSink | None = None) -> VideoResult:
    """Detect (and track, and analyse) through an opened source, writing the drawn video, the records and each
    model's analytics to these paths, and its progress to `status` (by default run.status's and run.preview's
    files)."""
    writer = H264Writer(video_path, source.fps / run.frame_stride)
    with contextlib.ExitStack() as handles:
        if status is None and (run.status or run.preview):
            status = StatusFiles(run.status, run.preview)
        feed = None if status is None else StatusFeed(status)
        if feed is not None:
            handles.callback(feed.close)
        records, tracks = (_open_text(handles, path) for path in (json_path, tracks_path))
        handles.callback(writer.close)  # the video is finished whatever fails after this
        tracking = None if run.tracking is None else RunTracking(
            predictors, run.tracking, run.threshold, source.fps / run.frame_stride, (source.width, source.height),
            tracks)
        analytics = _analytics_step(handles, tracking, source, run, analytics_files, feed)
        stats = RunStats()
        decorations = [*([AnalyticsOverlay(analytics)] if analytics else []),
                       *([tracking.decorate] if tracking else [])]
        steps = FrameSteps(source.fps, tracking, FrameDrawer(run.draw, stats.speed_badge, decorations), writer,
                           FrameRecords(records, source.fps) if records is not None else None, analytics)
        stats = run_pipeline(source, predictors, run, steps, stats, window, stop, feed)
        summaries = analytics.close() if analytics else tracking.close() if tracking else []
    return VideoResult(stats.written, source.unreadable, summaries, stats.summary(json_path is not None))


def _open_text(handles: contextlib.ExitStack, path: Path | None) -> TextIO | None:
    return None if path is None else handles.enter_context(open(path, "w", encoding="utf-8"))


def _analytics_step(handles: contextlib.ExitStack, tracking: RunTracking | None, source: VideoSource, run: VideoRun,
                    files: dict[str, AnalyticsFiles] | None, feed: StatusFeed | None = None) -> RunAnalytics | None:
    """The analysis step when the run measures anything, with each model's events log open (and copied to the
    status feed, where there is one)."""
    if tracking is None or not run.tracking.analytics.enabled:
        return None
    events = {name: _open_text(handles, f.events) for name, f in (files or {}).items()}
    if feed is not None:
        events = {name: feed.tee(name, events.get(name)) for name in tracking.per_model}
    return RunAnalytics(tracking, run.tracking.analytics, (source.width, source.height),
                        run.frame_stride / source.fps, files, events)


def analytics_files(folder: Path, name: str, models: Sequence[str], run: VideoRun) -> dict[str, AnalyticsFiles]:
    """Where each model's analytics of the video `name` go in `folder` (none when the run measures nothing)."""
    if run.tracking is None or not run.tracking.analytics.enabled:
        return {}
    return {model: AnalyticsFiles.named(folder, name, model, run.tracking.analytics) for model in models}


@dataclass
class EncodedVideo:
    """A video processed away from its outputs' folder: the result, and each output file's bytes (the analytics'
    by their path relative to the outputs' folder: `clip_v2_events.jsonl`, `crops/v2/car/clip_3.jpg`)."""

    result: VideoResult
    description: str
    video: bytes
    records: bytes | None
    tracks: bytes | None
    analytics: dict[str, bytes] = field(default_factory=dict)
    cut_short: bool = False  # stopped before its end: the frames so far (a resumed run computes it again)


def detect_video_bytes(predictors: Sequence, data: bytes, origin: str, name: str, run: VideoRun,
                       records: bool, tracks: bool, relay=None) -> EncodedVideo:
    """Process a video file sent as bytes (as a Ray worker is); errors name `origin`, the user's file. Its progress
    goes to the script through `relay` (relay.py), which also says when to stop."""
    stop = threading.Event()
    status = None if relay is None else RelayedStatus(relay, run.preview is not None, stop)
    run = dataclasses.replace(run, show=False, progress=False, status=None, preview=None)
    with tempfile.TemporaryDirectory(prefix="frcnn-video-") as folder:
        path = Path(folder) / f"input{Path(origin).suffix}"
        path.write_bytes(data)
        outputs = [Path(folder) / file for file in ("out.mp4", "out.jsonl", "out_tracks.jsonl")]
        measured = Path(folder) / "analytics"
        files = analytics_files(measured, name, [p.name for p in predictors], run)
        try:
            source = open_source(str(path))
        except FrcnnError as error:
            raise FrcnnError(str(error).replace(str(path), origin)) from None
        source.name, source.spec = name, origin
        try:
            measured.mkdir()
            result = process_video(source, predictors, run, outputs[0], outputs[1] if records else None,
                                   outputs[2] if tracks else None, stop, analytics_files=files, status=status)
        finally:
            source.close()
        if result.frames == 0:
            raise FrcnnError(f"{origin}: no frame could be read")
        video, jsonl, track_lines = (p.read_bytes() if p.exists() else None for p in outputs)
        extra = {p.relative_to(measured).as_posix(): p.read_bytes() for p in sorted(measured.rglob("*")) if p.is_file()}
        return EncodedVideo(result, describe_source(source), video, jsonl, track_lines, extra, stop.is_set())
