"""The video pipeline's analysis step (after tracking, before drawing): one `TrackAnalytics` per model of the run,
fed each frame's confirmed tracks and told as each track ends; and the overlay that draws what they measure."""

from __future__ import annotations

import logging
from typing import Sequence, TextIO

import numpy as np

from frcnn.analytics.analyser import FrameAnalysis, TrackAnalytics
from frcnn.analytics.geometry import missing_the_frame
from frcnn.analytics.outputs import AnalyticsFiles
from frcnn.core.detections import Prediction
from frcnn.core.specs import AnalyticsOptions
from frcnn.drawing import (
    draw_box_tags,
    draw_count_line,
    draw_heat,
    draw_named_count_line,
    draw_zone,
    track_colour,
    zone_colour,
)
from frcnn.video.tracking_step import RunTracking

log = logging.getLogger("frcnn")


class RunAnalytics:
    """Lines, zones, speed, heatmap and crops for each model of the run, on the trackers' confirmed tracks."""

    def __init__(self, tracking: RunTracking, options: AnalyticsOptions, frame_size: tuple[int, int],
                 frame_interval: float, files: dict[str, AnalyticsFiles] | None = None,
                 events: dict[str, TextIO] | None = None):
        self.tracking = tracking
        for warning in missing_the_frame(options.zones, options.lines, *frame_size):  # once a video, not a model
            log.warning(warning)
        self.per_model = {name: TrackAnalytics(name, options, frame_size, frame_interval, (files or {}).get(name),
                                               (events or {}).get(name)) for name in tracking.per_model}
        tracking.on_track_end(self._track_ended)

    def _track_ended(self, track: dict) -> None:
        self.per_model[track["model"]].track_ended(track["track_id"], track["label"])

    def step(self, index: int, time_s: float, frame: np.ndarray, predictions: Sequence[Prediction],
             detected: bool) -> dict[str, FrameAnalysis]:
        """Each model's analysis of this frame, from its tracked predictions."""
        found = {}
        for prediction in predictions:
            confirmed = prediction.detections[prediction.detections.track_ids >= 0]
            classes = self.tracking.classes_of(prediction.model, confirmed.track_ids)
            found[prediction.model] = self.per_model[prediction.model].step(index, time_s, frame, confirmed, classes,
                                                                            detected)
        return found

    def close(self) -> list[dict]:
        """End the video: the tracks still live end in view (present at the end), the trackers write their
        summaries (with the lines' crossings), then each model's analytics are written. Returns the summaries."""
        for analytics in self.per_model.values():
            analytics.ending = True
        summaries = self.tracking.close({name: analytics.tracking_summary()
                                         for name, analytics in self.per_model.items()})
        return [{**summary, "analytics": self.per_model[summary["model"]].close(summary["distinct"])}
                for summary in summaries]


class AnalyticsOverlay:
    """Draws, on each model's panel, what its analytics measure: the fading heat, the zones with their live
    counts, the counting lines with theirs, and each track's speed under its box. It only reads."""

    def __init__(self, analytics: RunAnalytics):
        self.analytics = analytics

    def __call__(self, panel: np.ndarray, prediction: Prediction) -> None:
        measured = self.analytics.per_model[prediction.model]
        if measured.heatmap is not None:
            draw_heat(panel, measured.heatmap.live, measured.heatmap.cell, opacity=0.5)
        for number, zone in enumerate(measured.zones.zones):
            draw_zone(panel, zone.polygon, zone_colour(number), _zone_text(zone.name, dict(zone.now)))
        for name, counter in measured.lines.lines:
            line = tuple(int(round(v)) for v in (*counter.start, *counter.end))
            if name is None:
                draw_count_line(panel, line, counter.totals())
            else:
                draw_named_count_line(panel, line, name, counter.totals())
        if measured.speed is not None:
            self._speeds(panel, prediction, measured.speeds, measured.speed.unit)

    @staticmethod
    def _speeds(panel: np.ndarray, prediction: Prediction, speeds: dict[int, float], unit: str) -> None:
        detections = prediction.detections
        shown = [i for i, track_id in enumerate(detections.track_ids.tolist()) if track_id in speeds]
        ids = [int(detections.track_ids[i]) for i in shown]
        texts = [f"{speeds[i]:.1f} {unit}" if speeds[i] < 10 else f"{speeds[i]:.0f} {unit}" for i in ids]
        draw_box_tags(panel, detections.boxes[shown], texts, [track_colour(i) for i in ids])


def _zone_text(name: str, counts: dict[str, int]) -> str:
    """`door: 3 (2 person, 1 car)`."""
    detail = ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))
    return f"{name}: {sum(counts.values())}" + (f" ({detail})" if detail else "")
