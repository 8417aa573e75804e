"""Detect objects in a video, a webcam or a stream with Faster R-CNN v1, v2, or both side by side.

    python detect_video.py --input clip.mp4 --model v2

Decoding, inference and drawing + encoding run in three threads joined by bounded queues, so memory stays
flat however long the video is and, on a GPU, the model never waits for I/O. The output is H.264 MP4
(plays in browsers); Ctrl-C keeps what was processed as a playable video.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

# cv2 before av: PyAV's wheel bundles its own libxcb, and when that copy loads first
# OpenCV's Qt window (--show) hangs at its first frame.
import cv2
import cv2.utils.logging
import av
import numpy as np
from tqdm import tqdm

import detect_utils as du
from model import DetectError, LoadedModel

DEFAULT_INPUT = Path(__file__).resolve().parent / "input" / "sample.mp4"
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
    if spec.isdigit():
        capture = cv2.VideoCapture(int(spec))
        if not capture.isOpened():
            raise DetectError(f"no camera at index {spec}")
        return _describe(capture, f"webcam{spec}", is_file=False)
    if urlparse(spec).scheme in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp"):
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if not capture.isOpened():
            raise DetectError(f"cannot open stream {spec} (unreachable, or no video within "
                              f"{STREAM_TIMEOUT_MS // 1000} s)")
        stem = Path(urlparse(spec).path).stem or "stream"
        return _describe(capture, stem, is_file=False)
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
        picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
        picture.pts = self.frames
        for packet in self.stream.encode(picture):
            self.container.mux(packet)
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
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
    started: float = field(default_factory=time.perf_counter)

    def pipeline_fps(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.written / elapsed if elapsed > 0 else 0.0

    def inference_fps(self) -> float:
        return self.written / self.inference_seconds if self.inference_seconds > 0 else 0.0


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


def run_pipeline(source: VideoSource, models: list[LoadedModel], args: argparse.Namespace, classes: set[int] | None,
                 writer: H264Writer, jsonl_files: dict[str, object], stop: threading.Event) -> RunStats:
    """Decode → detect → draw + encode, overlapped; returns the counts and timings."""
    decoded: queue.Queue = queue.Queue(maxsize=2 * args.batch)
    detected: queue.Queue = queue.Queue(maxsize=2 * args.batch)
    latest: queue.Queue = queue.Queue(maxsize=1)  # the newest drawn frame, for the window
    abort = threading.Event()  # set when any stage fails, so the others stop too
    stats = RunStats()
    frame_limit = args.max_frames or math.inf

    def read() -> None:
        try:
            count = 0
            for index, frame in source.frames(args.frame_stride, stop):
                if abort.is_set() or count >= frame_limit:
                    break
                _put(decoded, (index, frame), abort)
                count += 1
        finally:
            _put(decoded, _END, abort)

    total = _expected_frames(source, args)
    progress = tqdm(total=total, desc=source.name, unit="frame", file=sys.stderr, dynamic_ncols=True)

    def write() -> None:
        while True:
            item = _get(detected, abort)
            if item is _END:
                return
            index, frame, results = item
            picture = du.render(frame, results, corner_text=f"FPS {stats.pipeline_fps():.1f}")
            writer.write(picture)
            for result in results:
                if result.model.name in jsonl_files:
                    record = result.record(frame.shape[1], frame.shape[0], frame=index,
                                           time=round(index / source.fps, 3))
                    jsonl_files[result.model.name].write(json.dumps(record) + "\n")
            stats.written += 1
            progress.update(1)
            if args.show:
                _replace_latest(latest, picture)

    reader, drawer = _Worker(read, "decode", abort), _Worker(write, "encode", abort)
    reader.start()
    drawer.start()
    try:
        finished = False
        while not finished and not abort.is_set():
            batch = [_get(decoded, abort)]
            while len(batch) < args.batch and batch[-1] is not _END:
                try:
                    batch.append(decoded.get_nowait())  # batch what is ready; never wait to fill
                except queue.Empty:
                    break
            if batch[-1] is _END:
                finished = True
                batch.pop()
            if batch:
                start = time.perf_counter()
                per_frame = du.detect(models, [frame for _, frame in batch], args.threshold, classes)
                stats.inference_seconds += time.perf_counter() - start
                for (index, frame), results in zip(batch, per_frame):
                    _put(detected, (index, frame, results), abort)
            if args.show and not latest.empty():
                # GUI calls belong to the main thread (Qt refuses others); the newest frame is enough.
                window = du.show_window(f"{source.name} ({args.model})", latest.get_nowait(), wait_ms=1)
                if window == "quit" and not stop.is_set():
                    print("\nq pressed: finishing the frames in flight", file=sys.stderr, flush=True)
                    stop.set()  # like the end of the input: what was processed is kept
                elif window == "closed":
                    print("\nwindow closed: going on without it (Ctrl-C stops)", file=sys.stderr, flush=True)
                args.show = window == "shown"
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


def _expected_frames(source: VideoSource, args: argparse.Namespace) -> int | None:
    total = math.ceil(source.total_frames / args.frame_stride) if source.total_frames else None
    if args.max_frames:
        total = min(total, args.max_frames) if total else args.max_frames
    return total


# ---------------------------------------------------------------- interrupts


class StopOnSignal:
    """First Ctrl-C or SIGTERM: stop reading and finish what is in flight. A second Ctrl-C aborts."""

    def __init__(self):
        self.event = threading.Event()
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopOnSignal":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        print(f"\n{signal.Signals(signum).name}: finishing the frames in flight (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int:
        return 128 + self.signal if self.signal else 0


# ---------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects in a video with Faster R-CNN v1 / v2.")
    parser.add_argument("--input", default=str(DEFAULT_INPUT), metavar="SOURCE",
                        help="video file, webcam index (0) or stream URL (rtsp://, http://); default: the sample clip")
    du.add_common_options(parser, window_keys="q or Esc: stop, keeping the video so far")
    parser.add_argument("--frame-stride", type=du.positive_int, default=1, metavar="N",
                        help="process every Nth frame (default 1: all); the output plays at the input rate / N")
    parser.add_argument("--max-frames", type=du.positive_int, metavar="N", help="stop after N processed frames")
    parser.add_argument("--batch", type=du.positive_int, default=1, metavar="N",
                        help="frames per inference call (default 1; larger helps on a GPU)")
    return parser


def output_stem(source: VideoSource, out_dir: Path) -> Path:
    return out_dir / source.name


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    classes = du.check_common_options(args, parser)
    # OpenCV's and its FFmpeg's messages while probing an input would bury our one-line error.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet; set it to 32 or more to debug a stream
    source = None
    try:
        out_dir = du.prepare_output_dir(args.output)
        source = open_source(args.input)
        models = du.load_models(args)
        stem = output_stem(source, out_dir)
        video_path = stem.with_name(f"{stem.name}_{args.model}.mp4")
        if source.is_file and video_path.exists() and video_path.samefile(args.input):
            raise DetectError(f"the output {video_path} would overwrite the input; choose another --output")
        return _detect_to_files(source, models, args, classes, stem, video_path)
    except DetectError as error:
        return du.fail(str(error))
    except KeyboardInterrupt:
        print("aborted: nothing was written", file=sys.stderr)
        return 130
    finally:
        if source is not None:
            source.close()


def _detect_to_files(source: VideoSource, models: list[LoadedModel], args: argparse.Namespace,
                     classes: set[int] | None, stem: Path, video_path: Path) -> int:
    json_paths = {m.name: stem.with_name(f"{stem.name}_{m.name}.jsonl") for m in models} if args.json else {}
    print(f"{source.name}: {source.width}x{source.height} at {source.fps:.2f} fps"
          + (f", {source.total_frames} frames" if source.total_frames else ""), file=sys.stderr)
    with StopOnSignal() as stopper, du.AtomicOutputs([video_path, *json_paths.values()]) as temporary:
        writer = H264Writer(temporary[video_path], source.fps / args.frame_stride)
        jsonl_files = {name: open(temporary[path], "w", encoding="utf-8") for name, path in json_paths.items()}
        try:
            stats = run_pipeline(source, models, args, classes, writer, jsonl_files, stopper.event)
        finally:
            writer.close()
            for handle in jsonl_files.values():
                handle.close()
        if stats.written == 0:  # leaving the block by an exception keeps no file
            raise DetectError(f"{args.input}: no frame could be read")
    if source.unreadable:
        print(f"warning: {source.unreadable} frame(s) of {args.input} could not be read and were skipped",
              file=sys.stderr)
    print(f"{stats.written} frames -> {video_path}" + "".join(f", {p}" for p in json_paths.values()))
    print(f"average FPS: inference {stats.inference_fps():.2f}, whole pipeline {stats.pipeline_fps():.2f}")
    return stopper.exit_code


if __name__ == "__main__":
    sys.exit(main())
