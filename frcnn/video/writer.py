"""The drawn video, written as H.264 in MP4 with PyAV: plays in browsers and ordinary players."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

# cv2 before av (imported where the video is written): PyAV's wheel bundles its own libxcb, and when that
# copy loads first OpenCV's Qt window (--show) hangs at its first frame.
import cv2  # noqa: F401
import numpy as np

from frcnn.core.errors import FrcnnError


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
            raise FrcnnError(f"cannot write H.264 video {self.path}: {error}") from error
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = 1 / self.rate
        self.stream.options = {"preset": "superfast", "crf": "20"}
        self._frame_type = av.VideoFrame

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.container = None
