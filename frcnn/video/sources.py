"""Where frames come from: video files, webcams and streams, opened with OpenCV's FFmpeg, read with damaged parts
skipped; and what each source is called in output names."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

import cv2
import numpy as np

from frcnn.core.errors import FrcnnError
from frcnn.core.files import IMAGE_SUFFIXES

# What a camera or a stream is read from (a file, a folder or a glob pattern is everything else).
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")


STREAM_TIMEOUT_MS = 10_000


FALLBACK_FPS = 25.0  # for cameras and streams that do not report a usable frame rate


_UNREADABLE_RUN_LIMIT = 50  # consecutive failed reads that end a file (the rest is treated as missing)


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
    """Open a file path, a webcam index ('0') or a stream URL; raise FrcnnError if it gives no video."""
    source = _open_capture(spec)
    source.spec = spec
    return source


def is_live(spec: str) -> bool:
    """A webcam index or a stream URL: read where it is, never listed or sent."""
    return spec.isdigit() or urlparse(spec).scheme.lower() in STREAM_SCHEMES


def live_name(spec: str) -> str:
    """What a webcam (`webcam0`) or a stream (its path's stem, else `stream`) is called in output names."""
    return f"webcam{spec}" if spec.isdigit() else (Path(urlparse(spec).path).stem or "stream")


def _open_capture(spec: str) -> VideoSource:
    if spec.isdigit():
        capture = cv2.VideoCapture(int(spec))
        if not capture.isOpened():
            raise FrcnnError(f"no camera at index {spec}")
        return _describe(capture, live_name(spec), is_file=False)
    if urlparse(spec).scheme in STREAM_SCHEMES:
        if PurePosixPath(urlparse(spec).path).suffix.lower() in IMAGE_SUFFIXES:
            raise FrcnnError(f"{spec}: a still picture, not a video; use detect_image.py for pictures")
        capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if not capture.isOpened():
            raise FrcnnError(f"cannot open stream {spec} (unreachable, or no video within "
                              f"{STREAM_TIMEOUT_MS // 1000} s)")
        return _describe(capture, live_name(spec), is_file=False)
    path = Path(spec)
    if not path.exists():
        raise FrcnnError(f"{path}: file not found")
    if not path.is_file():
        raise FrcnnError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise FrcnnError(f"{path}: file is empty")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise FrcnnError(f"{path}: not a video OpenCV can decode, or a video with no frames")
    if capture.get(cv2.CAP_PROP_FRAME_COUNT) == 1 and cv2.haveImageReader(str(path)):
        capture.release()  # FFmpeg would play a photo as a one-frame video
        raise FrcnnError(f"{path}: a still picture, not a video; use detect_image.py for pictures")
    if capture.get(cv2.CAP_PROP_FRAME_WIDTH) <= 0 or capture.get(cv2.CAP_PROP_FRAME_HEIGHT) <= 0:
        capture.release()  # FFmpeg "opens" some files that hold no picture at all, at 0x0
        raise FrcnnError(f"{path}: not a video OpenCV can decode (no picture in it)")
    return _describe(capture, path.stem, is_file=True)


def _describe(capture: cv2.VideoCapture, name: str, is_file: bool) -> VideoSource:
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not (0 < fps <= 1000):
        fps = FALLBACK_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return VideoSource(capture, name, fps, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                       int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), count if is_file and count > 0 else None, is_file)


def describe_source(source: VideoSource) -> str:
    """`clip: 1280x720 at 25.00 fps, 250 frames`."""
    return (f"{source.name}: {source.width}x{source.height} at {source.fps:.2f} fps"
            + (f", {source.total_frames} frames" if source.total_frames else ""))
