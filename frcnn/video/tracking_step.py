"""The video pipeline's tracking step: one tracker per model of the run; it draws their trails and lines on the
panels and writes finished tracks to the run's tracks file."""

from __future__ import annotations

import json
from typing import TextIO

import numpy as np

from frcnn.core.detections import Prediction
from frcnn.core.specs import TrackOptions
from frcnn.drawing import draw_count_line, draw_trails
from frcnn.inference.tracking import VideoTracking


class RunTracking:
    """One tracker per model of the run: IDs, carried boxes, trails and counts; finished tracks go to `tracks_file`."""

    def __init__(self, predictors: list, options: TrackOptions, threshold: float, frame_rate: float,
                 frame_size: tuple[int, int], tracks_file: TextIO | None):
        self.options, self.threshold = options, threshold
        self.tracks_file = tracks_file
        self.models = {p.name: p for p in predictors}
        self.per_model = {p.name: VideoTracking(p.name, p.class_names, options, frame_rate, threshold, frame_size,
                                                self._write_track) for p in predictors}

    def _write_track(self, track: dict) -> None:
        if self.tracks_file is not None:
            self.tracks_file.write(json.dumps(track) + "\n")

    def step(self, index: int, time_s: float, predictions: list | None) -> list:
        """Each model's tracked (or, on a frame not detected, carried) detections as Predictions to draw."""
        if predictions is None:  # not detected: the trackers carry the boxes
            return [Prediction(name, p.class_names, self.per_model[name].step(index, time_s, None), 0.0,
                               p.settings.with_threshold(self.threshold)) for name, p in self.models.items()]
        return [Prediction(p.model, p.class_names, self.per_model[p.model].step(index, time_s, p.detections),
                           p.milliseconds, p.settings.with_threshold(self.threshold)) for p in predictions]

    def decorate(self, panel: np.ndarray, prediction) -> None:
        tracking = self.per_model[prediction.model]
        draw_trails(panel, tracking.trails())
        if tracking.counter is not None:
            line = tuple(int(round(v)) for v in (*tracking.counter.start, *tracking.counter.end))
            draw_count_line(panel, line, tracking.counter.totals())

    def close(self) -> list[dict]:
        """Every model's summary, after its live tracks are written out."""
        summaries = [tracking.close() for tracking in self.per_model.values()]
        for summary in summaries:
            self._write_track({"summary": summary})
        return summaries
