"""The video pipeline's tracking step: one tracker per model of the run; it draws their trails on the panels and
writes finished tracks to the run's tracks file, telling whoever listens (the analytics) as each one ends."""

from __future__ import annotations

import json
from typing import Callable, TextIO

import numpy as np

from frcnn.core.detections import Prediction
from frcnn.core.specs import TrackOptions
from frcnn.drawing import draw_trails
from frcnn.inference.tracking import VideoTracking


class RunTracking:
    """One tracker per model of the run: IDs, carried boxes and trails; finished tracks go to `tracks_file`."""

    def __init__(self, predictors: list, options: TrackOptions, threshold: float, frame_rate: float,
                 frame_size: tuple[int, int], tracks_file: TextIO | None):
        self.options, self.threshold = options, threshold
        self.tracks_file = tracks_file
        self.models = {p.name: p for p in predictors}
        self.per_model = {p.name: VideoTracking(p.name, p.class_names, options, frame_rate, threshold, frame_size,
                                                self._finished) for p in predictors}
        self.listeners: list[Callable[[dict], None]] = []

    def _finished(self, track: dict) -> None:
        for listener in self.listeners:
            listener(track)
        self._write_track(track)

    def _write_track(self, track: dict) -> None:
        if self.tracks_file is not None:
            self.tracks_file.write(json.dumps(track) + "\n")

    def on_track_end(self, listener: Callable[[dict], None]) -> None:
        """Call `listener` with each finished track's record (it names its model) before it is written."""
        self.listeners.append(listener)

    def step(self, index: int, time_s: float, predictions: list | None) -> list:
        """Each model's tracked (or, on a frame not detected, carried) detections as Predictions to draw."""
        if predictions is None:  # not detected: the trackers carry the boxes
            return [Prediction(name, p.class_names, self.per_model[name].step(index, time_s, None), 0.0,
                               p.settings.with_threshold(self.threshold)) for name, p in self.models.items()]
        return [Prediction(p.model, p.class_names, self.per_model[p.model].step(index, time_s, p.detections),
                           p.milliseconds, p.settings.with_threshold(self.threshold)) for p in predictions]

    def classes_of(self, model: str, track_ids: np.ndarray) -> list[str]:
        """The class each live track of `model` was detected as most often so far."""
        tracking = self.per_model[model]
        return [tracking.class_of(int(track_id)) for track_id in track_ids]

    def decorate(self, panel: np.ndarray, prediction) -> None:
        draw_trails(panel, self.per_model[prediction.model].trails())

    def close(self, extra: dict[str, dict] | None = None) -> list[dict]:
        """Every model's summary, after its live tracks are written out; `extra` adds to a model's summary line
        (the counting lines' crossings)."""
        summaries = [{**tracking.close(), **(extra or {}).get(name, {})} for name, tracking in self.per_model.items()]
        for summary in summaries:
            self._write_track({"summary": summary})
        return summaries
