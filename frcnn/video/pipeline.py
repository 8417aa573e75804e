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
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence, TextIO
from urllib.parse import urlparse

# cv2 before av (imported where the video is written): PyAV's wheel bundles its own libxcb, and when that
# copy loads first OpenCV's Qt window (--show) hangs at its first frame.
import cv2
import numpy as np
from tqdm import tqdm

from frcnn.drawing import render
from frcnn.core.errors import DetectError
from frcnn.core.specs import DrawOptions, TrackOptions
from frcnn.video.tracking_step import RunTracking
from frcnn.core.files import IMAGE_SUFFIXES
from frcnn.video.window import show_window

STREAM_TIMEOUT_MS = 10_000
FALLBACK_FPS = 25.0  # for cameras and streams that do not report a usable frame rate
_UNREADABLE_RUN_LIMIT = 50  # consecutive failed reads that end a file (the rest is treated as missing)
_END = object()


# ---------------------------------------------------------------- reading


@dataclass
class VideoSource:
    """An opened video file, webcam or stream, read frame by frame with OpenCV."""

    capture: cv2.VideoCapture
    name: str
    fps: float
    width: int
    height: int
    total_frames: int | None  # None for cameras and streams
    is_file: bool
    unreadable: int = 0
    spec: str = ""  # what the user gave: a path, a camera index or a URL

    def frames(self, stride: int, stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]:
        """(index, BGR frame) for every `stride`-th frame that decodes, until the end or `stop`."""
        index, failed_in_a_row = 0, 0
        while not stop.is_set():
            wanted = index % stride == 0
            ok = self.capture.grab()
            frame = self.capture.retrieve()[1] if ok and wanted else None
            if not ok or (wanted and frame is None):
                # A damaged stretch of a file: keep going while frames are known to remain.
                if not self.is_file or self.total_frames is None or index >= self.total_frames:
                    return
                failed_in_a_row += 1
                self.unreadable += 1
                if failed_in_a_row >= _UNREADABLE_RUN_LIMIT:
                    self.unreadable += max(0, self.total_frames - index - 1)
                    return
                index += 1
                continue
            failed_in_a_row = 0
            if wanted:
                yield index, frame
            index += 1

    def close(self) -> None:
        self.capture.release()


def open_source(spec: str) -> VideoSource:
    """Open a file path, a webcam index ('0') or a stream URL; raise DetectError if it gives no video."""
    source = _open_capture(spec)
    source.spec = spec
    return source


def live_name(spec: str) -> str:
    """What a webcam (`webcam0`) or a stream (its path's stem, else `stream`) is called in output names."""
    return f"webcam{spec}" if spec.isdigit() else (Path(urlparse(spec).path).stem or "stream")


def _open_capture(spec: str) -> VideoSource:
    if spec.isdigit():
        capture = cv2.VideoCapture(int(spec))
        if not capture.isOpened():
            raise DetectError(f"no camera at index {spec}")
        return _describe(capture, live_name(spec), is_file=False)
    if urlparse(spec).scheme in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp"):
        if PurePosixPath(urlparse(spec).path).suffix.lower() in IMAGE_SUFFIXES:
            raise DetectError(f"{spec}: a still picture, not a video; use detect_image.py for pictures")
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if not capture.isOpened():
            raise DetectError(f"cannot open stream {spec} (unreachable, or no video within "
                              f"{STREAM_TIMEOUT_MS // 1000} s)")
        return _describe(capture, live_name(spec), is_file=False)
    path = Path(spec)
    if not path.exists():
        raise DetectError(f"{path}: file not found")
    if not path.is_file():
        raise DetectError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DetectError(f"{path}: file is empty")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise DetectError(f"{path}: not a video OpenCV can decode, or a video with no frames")
    if capture.get(cv2.CAP_PROP_FRAME_COUNT) == 1 and cv2.haveImageReader(str(path)):
        capture.release()  # FFmpeg would play a photo as a one-frame video
        raise DetectError(f"{path}: a still picture, not a video; use detect_image.py for pictures")
    return _describe(capture, path.stem, is_file=True)


def _describe(capture: cv2.VideoCapture, name: str, is_file: bool) -> VideoSource:
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not (0 < fps <= 1000):
        fps = FALLBACK_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return VideoSource(capture, name, fps, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                       int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), count if is_file and count > 0 else None, is_file)


# ---------------------------------------------------------------- writing


class H264Writer:
    """Writes BGR frames as H.264 (yuv420p) in MP4 with the index up front: plays in browsers and players."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.rate = Fraction(fps).limit_denominator(1001)
        self.container = None
        self.stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        # yuv420p needs even sizes: pad one black row / column where needed.
        pad_bottom, pad_right = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_bottom or pad_right:
            frame = cv2.copyMakeBorder(frame, 0, pad_bottom, 0, pad_right, cv2.BORDER_CONSTANT, value=0)
        if self.container is None:
            self._open(frame.shape[1], frame.shape[0])
        picture = self._frame_type.from_ndarray(frame, format="bgr24")
        picture.pts = self.frames
        for packet in self.stream.encode(picture):
            self.container.mux(packet)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        import av

        try:
            self.container = av.open(str(self.path), mode="w", format="mp4",
                                     container_options={"movflags": "+faststart"})
            self.stream = self.container.add_stream("libx264", rate=self.rate)
        except (av.error.FFmpegError, ValueError) as error:
            raise DetectError(f"cannot write H.264 video {self.path}: {error}") from error
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = 1 / self.rate
        self.stream.options = {"preset": "veryfast", "crf": "20"}
        self._frame_type = av.VideoFrame

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = None


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

    def summary(self) -> str:
        """Each model's inference time per frame and the whole pipeline's rate, in the unit that reads best."""
        def rate(seconds_per_frame: float) -> str:
            if seconds_per_frame <= 0:
                return "-"
            if seconds_per_frame > 1:
                return f"{seconds_per_frame:.2f} s/frame"
            return f"{1 / seconds_per_frame:.2f} frames/s"

        frames = max(1, self.written)
        models = ", ".join(f"{name} {rate(ms / 1000 / frames)}" for name, ms in self.model_milliseconds.items())
        elapsed = time.perf_counter() - self.started
        return f"speed: inference {models}; whole pipeline {rate(elapsed / frames)}"


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

    @property
    def detect_every(self) -> int:
        return self.tracking.detect_every if self.tracking else 1


class FrameWriter:
    """The last steps, in frame order: track (when asked), draw, encode, and write the frame's JSON Lines record."""

    def __init__(self, writer: H264Writer, records: TextIO | None, fps: float, run: VideoRun, stats: RunStats,
                 tracking: RunTracking | None = None):
        self.writer, self.records, self.fps, self.run, self.stats = writer, records, fps, run, stats
        self.tracking = tracking

    def __call__(self, index: int, frame: np.ndarray, predictions: list | None) -> np.ndarray:
        detected = predictions is not None
        if self.tracking is not None:
            predictions = self.tracking.step(index, index / self.fps, predictions)
        decorate = self.tracking.decorate if self.tracking is not None else None
        picture = render(frame, predictions, self.run.draw, corner_text=self.stats.speed_badge(), decorate=decorate)
        self.writer.write(picture)
        if self.stats.written == 0 and detected and predictions[0].settings.slice is not None:
            tqdm.write(predictions[0].settings.slice.describe(), file=sys.stderr)
        if self.records is not None:
            record = {"frame": index, "time": round(index / self.fps, 3), "width": frame.shape[1],
                      "height": frame.shape[0], "detected": detected, "results": [p.record() for p in predictions]}
            self.records.write(json.dumps(record) + "\n")
        self.stats.written += 1
        return picture


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
            print("\nq pressed: finishing the frames in flight", file=sys.stderr, flush=True)
            self.stop.set()  # like the end of the input: what was processed is kept
        elif state == "closed":
            print("\nwindow closed: going on without it (Ctrl-C stops)", file=sys.stderr, flush=True)
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


def run_pipeline(source: VideoSource, predictors: list, run: VideoRun, write_frame: FrameWriter,
                 window: Window | None, stop: threading.Event) -> RunStats:
    """Decode → detect → draw + encode, overlapped in three threads; returns the counts and timings."""
    from frcnn.inference.predictor import predict_all

    decoded: queue.Queue = queue.Queue(maxsize=2 * run.batch)
    detected: queue.Queue = queue.Queue(maxsize=2 * run.batch)
    abort = threading.Event()  # set when any stage fails, so the others stop too
    stats = write_frame.stats
    progress = tqdm(total=_expected_frames(source, run), desc=source.name, unit="frame", file=sys.stderr,
                    dynamic_ncols=True, disable=not run.progress)

    def draw_and_write() -> None:
        while (item := _get(detected, abort)) is not _END:
            picture = write_frame(*item)
            progress.update(1)
            if window is not None:
                window.offer(picture)

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
    """What one video gave: frames written and unreadable, each model's tracking summary, the speed line."""

    frames: int
    unreadable: int
    summaries: list[dict]
    speed: str


def describe_source(source: VideoSource) -> str:
    """`clip: 1280x720 at 25.00 fps, 250 frames`."""
    return (f"{source.name}: {source.width}x{source.height} at {source.fps:.2f} fps"
            + (f", {source.total_frames} frames" if source.total_frames else ""))


def process_video(source: VideoSource, predictors: Sequence, run: VideoRun, video_path: Path,
                  json_path: Path | None, tracks_path: Path | None, stop: threading.Event,
                  window: Window | None = None) -> VideoResult:
    """Detect (and track) through an opened source, writing the drawn video and the records to these paths."""
    writer = H264Writer(video_path, source.fps / run.frame_stride)
    records = open(json_path, "w", encoding="utf-8") if json_path else None
    tracks = open(tracks_path, "w", encoding="utf-8") if tracks_path else None
    try:
        tracking = None if run.tracking is None else RunTracking(
            predictors, run.tracking, run.threshold, source.fps / run.frame_stride, (source.width, source.height),
            tracks)
        frame_writer = FrameWriter(writer, records, source.fps, run, RunStats(), tracking)
        stats = run_pipeline(source, predictors, run, frame_writer, window, stop)
        summaries = tracking.close() if tracking is not None else []
    finally:
        try:
            writer.close()
        finally:
            for handle in (records, tracks):
                if handle is not None:
                    handle.close()
    return VideoResult(stats.written, source.unreadable, summaries, stats.summary())


@dataclass
class EncodedVideo:
    """A video processed away from its outputs' folder: the result, and each output file's bytes."""

    result: VideoResult
    description: str
    video: bytes
    records: bytes | None
    tracks: bytes | None


def detect_video_bytes(predictors: Sequence, data: bytes, origin: str, name: str, run: VideoRun,
                       records: bool, tracks: bool) -> EncodedVideo:
    """Process a video file sent as bytes (as a Ray worker is); errors name `origin`, the user's file."""
    run = dataclasses.replace(run, show=False, progress=False)
    with tempfile.TemporaryDirectory(prefix="frcnn-video-") as folder:
        path = Path(folder) / f"input{Path(origin).suffix}"
        path.write_bytes(data)
        outputs = [Path(folder) / file for file in ("out.mp4", "out.jsonl", "out_tracks.jsonl")]
        try:
            source = open_source(str(path))
        except DetectError as error:
            raise DetectError(str(error).replace(str(path), origin)) from None
        source.name, source.spec = name, origin
        try:
            result = process_video(source, predictors, run, outputs[0], outputs[1] if records else None,
                                   outputs[2] if tracks else None, threading.Event())
        finally:
            source.close()
        if result.frames == 0:
            raise DetectError(f"{origin}: no frame could be read")
        video, jsonl, track_lines = (p.read_bytes() if p.exists() else None for p in outputs)
        return EncodedVideo(result, describe_source(source), video, jsonl, track_lines)
