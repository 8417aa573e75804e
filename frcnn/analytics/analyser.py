"""The analytics of one model's tracks on one video: each frame's tracked boxes go to the lines, zones, speed meter,
heatmap and best views; events go to the log as they happen; the summary, heatmap and counts plot at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, TextIO

import numpy as np

from frcnn.analytics.crops import BestView, BestViews
from frcnn.analytics.events import EventLog
from frcnn.analytics.geometry import anchor_points
from frcnn.analytics.heatmap import Heatmap
from frcnn.analytics.lines import LineSet
from frcnn.analytics.outputs import AnalyticsFiles
from frcnn.analytics.speed import SpeedMeter
from frcnn.analytics.summary import write_summary
from frcnn.analytics.timeline import Timeline, plot_counts
from frcnn.analytics.zones import ZoneSet
from frcnn.core.detections import Detections
from frcnn.core.files import encode_jpeg, write_bytes_atomically
from frcnn.core.specs import AnalyticsOptions


@dataclass
class FrameAnalysis:
    """What one model's analytics found on one frame: objects in each zone per class, each track's speed."""

    zones: dict[str, dict[str, int]] = field(default_factory=dict)
    speeds: dict[int, float] = field(default_factory=dict)
    unit: str | None = None

    def annotate(self, record: dict) -> dict:
        """A model's frame record (`Prediction.record()`) with the zone counts and each detection's speed."""
        if self.zones:
            record["zones"] = self.zones
        if self.unit is not None:
            record["speed_unit"] = self.unit
            for detection in record["detections"]:
                if detection.get("track_id") in self.speeds:
                    detection["speed"] = self.speeds[detection["track_id"]]
        return record


class TrackAnalytics:
    """Lines, zones, speed, heatmap and crops on one model's tracks of one video. Fed in frame order with the
    frame's confirmed tracks (`step`) and told when a track ends (`track_ended`); `files` None writes nothing."""

    def __init__(self, model: str, options: AnalyticsOptions, frame_size: tuple[int, int], frame_interval: float,
                 files: AnalyticsFiles | None = None, events: TextIO | None = None):
        width, height = frame_size
        self.model, self.options, self.interval, self.files = model, options, frame_interval, files
        self.lines = LineSet(options.lines, width, height)
        self.zones = ZoneSet(options.zones, width, height, frame_interval, options.anchor)
        self.speed = SpeedMeter(options.speed, width, height) if options.speed else None
        self.heatmap = Heatmap(width, height, options.heatmap_half_life) if options.heatmap else None
        self.views = BestViews(width, height) if options.crops else None
        self.log = EventLog(events)
        self.zone_counts, self.line_counts = Timeline(), Timeline()
        self.speeds: dict[int, float] = {}  # on the latest frame, in the chosen unit
        self.ending = False  # set at the end of the video: tracks that end now were still in view
        self.frames, self.first_time, self.last_time = 0, None, 0.0
        self.last_picture: np.ndarray | None = None
        self.crops_written = 0

    def step(self, frame: int, time_s: float, picture: np.ndarray, tracked: Detections, classes: Sequence[str],
             detected: bool) -> FrameAnalysis:
        """One frame's confirmed tracks (every `track_ids` >= 0) and their classes; `detected`: whether the model
        ran on the frame (carried boxes have no fresh score for the best view)."""
        ids = np.asarray(tracked.track_ids, np.int64)
        anchors = anchor_points(tracked.boxes, self.options.anchor)
        # Lines count the box centre, as they always have; zones, speed and heat use the anchor.
        self.log.write(self.lines.update(frame, time_s, tracked, classes))
        self.log.write(self.zones.update(frame, time_s, tracked, classes))
        self.speeds = self.speed.update(time_s, ids, anchors, detected) if self.speed is not None else {}
        if self.heatmap is not None:
            self.heatmap.add(anchors, self.interval)
        if self.views is not None and detected:
            self.views.update(frame, picture, tracked.boxes, tracked.scores, ids)
        inside = self.zones.counts()
        self.zone_counts.add(time_s, {name: sum(counts.values()) for name, counts in inside.items()})
        self.line_counts.add(time_s, self.lines.crossed())
        self.frames += 1
        self.first_time = time_s if self.first_time is None else self.first_time
        self.last_time, self.last_picture = time_s, picture
        return FrameAnalysis(inside, dict(self.speeds), self.speed.unit if self.speed else None)

    def track_ended(self, track_id: int, label: str) -> None:
        """A track the tracker finished: its zone visits end (or count as present at the video's end), its speed
        is summarised and its best view saved."""
        self.lines.forget(track_id)
        self.log.write(self.zones.track_ended(track_id, in_view=self.ending))
        if self.speed is not None:
            self.speed.track_ended(track_id, label)
        view = self.views.take(track_id) if self.views is not None else None
        if view is not None:
            self._save_crop(track_id, label, view)

    def _save_crop(self, track_id: int, label: str, view: BestView) -> None:
        if self.files is None or self.files.crops is None:
            return
        folder = self.files.crops / label.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(folder / f"{self.files.name}_{track_id}.jpg", encode_jpeg(view.picture))
        self.crops_written += 1

    def tracking_summary(self) -> dict:
        """What the tracks file's summary line says of the counting lines."""
        return self.lines.tracking_summary()

    def summary(self, distinct: dict[str, int]) -> dict:
        """Every count, dwell and speed summary of the video, with what it was measured on."""
        duration = 0.0 if self.first_time is None else self.last_time - self.first_time + self.interval
        result = {"model": self.model, "frames": self.frames, "frame_interval": round(self.interval, 6),
                  "duration": round(duration, 3), "anchor": self.options.anchor, "distinct": distinct}
        if self.options.lines:
            result["lines"] = self.lines.summary()
        if self.options.zones:
            result["zones"] = self.zones.summary()
        if self.speed is not None:
            result["speed"] = {**self.speed.summary(), "calibration": _calibration(self.options)}
        if self.heatmap is not None:
            result["heatmap"] = self.heatmap.summary()
        if self.views is not None:
            result["crops"] = self.crops_written
        result["events"] = self.log.summary()
        return result

    def close(self, distinct: dict[str, int]) -> dict:
        """Write the summary, the heatmap and the counts plot (after every track has ended); return the summary."""
        summary = self.summary(distinct)
        if self.files is None:
            return summary
        write_summary(self.files.summary, summary)
        if self.files.heatmap is not None and self.heatmap is not None:
            self.heatmap.write_png(self.files.heatmap, self.last_picture)
        if self.files.counts_plot is not None:
            plot_counts(self.files.counts_plot, f"{self.files.name}, {self.model}", self.zone_counts,
                        self.line_counts)
        return summary


def _calibration(options: AnalyticsOptions) -> dict:
    speed = options.speed
    if speed.meters_per_pixel is not None:
        return {"meters_per_pixel": speed.meters_per_pixel}
    return {"corners": [list(point) for point in speed.corners], "rectangle": list(speed.rectangle)}
