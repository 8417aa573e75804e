"""The pipeline's last steps for each frame, in frame order, each with one job: track (when asked), analyse (when
asked), draw, encode, record. `FrameSteps` only hands a frame from one to the next."""

from __future__ import annotations

import json
from typing import Callable, Sequence, TextIO

import numpy as np

from frcnn.analytics.analyser import FrameAnalysis
from frcnn.core.detections import Prediction
from frcnn.core.log import log
from frcnn.core.specs import DrawOptions
from frcnn.drawing import render
from frcnn.video.analytics_step import RunAnalytics
from frcnn.video.tracking_step import RunTracking
from frcnn.video.writer import H264Writer


class FrameRecords:
    """The JSON Lines record of each frame: where it is in time, whether the models ran on it, what they found
    (and, with analytics, the objects in each zone and each track's speed)."""

    def __init__(self, handle: TextIO, fps: float):
        self.handle, self.fps = handle, fps

    def write(self, index: int, frame: np.ndarray, detected: bool, predictions: Sequence[Prediction],
              analysis: dict[str, FrameAnalysis] | None = None) -> None:
        results = [p.record() for p in predictions]
        if analysis:
            results = [analysis[r["model"]].annotate(r) if r["model"] in analysis else r for r in results]
        record = {"frame": index, "time": round(index / self.fps, 3), "width": frame.shape[1],
                  "height": frame.shape[0], "detected": detected, "results": results}
        self.handle.write(json.dumps(record) + "\n")


class FrameDrawer:
    """Draws each model's boxes (side by side for several), the speed in a corner, and what the trackers and the
    analytics add (each decoration in turn, over the boxes)."""

    def __init__(self, options: DrawOptions, corner_text: Callable[[], str],
                 decorations: Sequence[Callable[[np.ndarray, Prediction], None]] = ()):
        self.options, self.corner_text, self.decorations = options, corner_text, list(decorations)

    def _decorate(self, panel: np.ndarray, prediction: Prediction) -> None:
        for decoration in self.decorations:
            decoration(panel, prediction)

    def __call__(self, frame: np.ndarray, predictions: Sequence[Prediction]) -> np.ndarray:
        return render(frame, predictions, self.options, corner_text=self.corner_text(),
                      decorate=self._decorate if self.decorations else None)


class FrameSteps:
    """Track -> analyse -> draw -> encode -> record, for one frame at a time in frame order; counts the frames
    written."""

    def __init__(self, fps: float, tracking: RunTracking | None, draw: FrameDrawer, encoder: H264Writer,
                 records: FrameRecords | None, analytics: RunAnalytics | None = None):
        self.fps, self.tracking, self.draw, self.encoder, self.records = fps, tracking, draw, encoder, records
        self.analytics = analytics
        self.written = 0

    def __call__(self, index: int, frame: np.ndarray, predictions: list[Prediction] | None) -> np.ndarray:
        detected = predictions is not None
        time_s = index / self.fps
        if self.tracking is not None:
            predictions = self.tracking.step(index, time_s, predictions)
        analysis = None
        if self.analytics is not None:
            analysis = self.analytics.step(index, time_s, frame, predictions, detected)
        picture = self.draw(frame, predictions)
        self.encoder.write(picture)
        if self.written == 0 and detected and predictions[0].settings.slice is not None:
            log.info(predictions[0].settings.slice.describe())
        if self.records is not None:
            self.records.write(index, frame, detected, predictions, analysis)
        self.written += 1
        return picture
