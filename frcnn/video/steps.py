"""The pipeline's last steps for each frame, in frame order, each with one job: track (when asked), draw, encode,
record. `FrameSteps` only hands a frame from one to the next."""

from __future__ import annotations

import json
import sys
from typing import Callable, Sequence, TextIO

import numpy as np
from tqdm import tqdm

from frcnn.core.detections import Prediction
from frcnn.core.specs import DrawOptions
from frcnn.drawing import render
from frcnn.video.tracking_step import RunTracking
from frcnn.video.writer import H264Writer


class FrameRecords:
    """The JSON Lines record of each frame: where it is in time, whether the models ran on it, what they found."""

    def __init__(self, handle: TextIO, fps: float):
        self.handle, self.fps = handle, fps

    def write(self, index: int, frame: np.ndarray, detected: bool, predictions: Sequence[Prediction]) -> None:
        record = {"frame": index, "time": round(index / self.fps, 3), "width": frame.shape[1],
                  "height": frame.shape[0], "detected": detected, "results": [p.record() for p in predictions]}
        self.handle.write(json.dumps(record) + "\n")


class FrameDrawer:
    """Draws each model's boxes (side by side for several), the speed in a corner, and what the trackers add."""

    def __init__(self, options: DrawOptions, corner_text: Callable[[], str],
                 decorate: Callable[[np.ndarray, Prediction], None] | None = None):
        self.options, self.corner_text, self.decorate = options, corner_text, decorate

    def __call__(self, frame: np.ndarray, predictions: Sequence[Prediction]) -> np.ndarray:
        return render(frame, predictions, self.options, corner_text=self.corner_text(), decorate=self.decorate)


class FrameSteps:
    """Track -> draw -> encode -> record, for one frame at a time in frame order; counts the frames written."""

    def __init__(self, fps: float, tracking: RunTracking | None, draw: FrameDrawer, encoder: H264Writer,
                 records: FrameRecords | None):
        self.fps, self.tracking, self.draw, self.encoder, self.records = fps, tracking, draw, encoder, records
        self.written = 0

    def __call__(self, index: int, frame: np.ndarray, predictions: list[Prediction] | None) -> np.ndarray:
        detected = predictions is not None
        if self.tracking is not None:
            predictions = self.tracking.step(index, index / self.fps, predictions)
        picture = self.draw(frame, predictions)
        self.encoder.write(picture)
        if self.written == 0 and detected and predictions[0].settings.slice is not None:
            tqdm.write(predictions[0].settings.slice.describe(), file=sys.stderr)
        if self.records is not None:
            self.records.write(index, frame, detected, predictions)
        self.written += 1
        return picture
