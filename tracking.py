"""Following objects across video frames: IDs, boxes carried between detected frames, counting across a line.

The association itself is ByteTrack from the `trackers` package (Apache-2.0), behind `ObjectTracker`, so it can be
replaced without touching the rest. One `VideoTracking` per model and per source: it tracks, keeps each live
track's record and trail, counts line crossings, and hands each finished track on (and forgets it), so memory
stays flat however long the video.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, TextIO

import numpy as np

from detections import Detections, Prediction, class_name
from drawing import draw_count_line, draw_trails
from specs import TrackOptions

# ByteTrack's second association uses boxes below the drawing threshold, down to this score.
LOW_SCORE_FLOOR = 0.1


class ObjectTracker:
    """ByteTrack over our `Detections`: IDs for detections, and predicted boxes of live tracks in between."""

    def __init__(self, frame_rate: float, threshold: float, lost_seconds: float = 1.0):
        import supervision
        from trackers import ByteTrackTracker

        self._sv = supervision
        self.frame_rate = frame_rate
        # The package counts its lost-track buffer in frames at 30 fps and scales it to `frame_rate`.
        self._tracker = ByteTrackTracker(lost_track_buffer=max(0, round(lost_seconds * 30)), frame_rate=frame_rate,
                                         track_activation_threshold=threshold, high_conf_det_threshold=threshold,
                                         minimum_consecutive_frames=2)
        self._last_time: float | None = None

    def update(self, detections: Detections, time_s: float) -> Detections:
        """The detections of the frame at `time_s` seconds with `track_ids` (-1: not, or not yet, in a track)."""
        given = self._sv.Detections(xyxy=detections.boxes.astype(np.float32).reshape(-1, 4),
                                    confidence=detections.scores.astype(np.float32),
                                    class_id=detections.labels.astype(int))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a repeated timestamp (a duplicated frame) only skips the prediction
            tracked = self._tracker.update(given, timestamp=time_s)
        self._last_time = time_s
        if len(tracked) == 0:
            return Detections.empty().with_track_ids(np.zeros(0, np.int64))
        return Detections(tracked.xyxy.astype(np.float32), tracked.confidence.astype(np.float32),
                          tracked.class_id.astype(np.int64)).with_track_ids(tracked.tracker_id.astype(np.int64))

    def predicted_boxes(self, time_s: float) -> dict[int, np.ndarray]:
        """Where each confirmed live track is expected at `time_s`, by its motion; the tracker is not changed."""
        step = 0.0 if self._last_time is None else (time_s - self._last_time) * self.frame_rate
        boxes = {}
        for track in self._tracker.tracks:
            if track.tracker_id < 0:
                continue
            estimator = copy.deepcopy(track.state_estimator)
            if step > 0:
                estimator.predict(step, self.frame_rate)
            boxes[int(track.tracker_id)] = np.asarray(estimator.state_to_bbox(), np.float32)
        return boxes

    def live_ids(self) -> set[int]:
        return {int(t.tracker_id) for t in self._tracker.tracks if t.tracker_id >= 0}


@dataclass
class TrackRecord:
    """What is kept of one track while it lives: its frames and boxes, its labels, its recent centres."""

    track_id: int
    first_frame: int
    last_frame: int = -1
    boxes: list = field(default_factory=list)  # [frame, x1, y1, x2, y2, score]
    labels: Counter = field(default_factory=Counter)
    trail: deque = field(default_factory=deque)
    last_label: int = 0
    last_score: float = 0.0

    @property
    def label(self) -> int:
        return self.labels.most_common(1)[0][0]

    def to_json(self, model: str, class_names) -> dict:
        return {"model": model, "track_id": self.track_id, "label": class_name(class_names, self.label),
                "label_id": int(self.label), "first_frame": self.first_frame, "last_frame": self.last_frame,
                "boxes": [[int(b[0]), *(round(float(v), 1) for v in b[1:5]), round(float(b[5]), 4)]
                          for b in self.boxes]}


class LineCounter:
    """Counts tracks whose centre crosses a segment, per class and per direction.

    A side is the sign of the centre relative to the line from (x1, y1) to (x2, y2); a crossing is a change
    of side whose step passes through the segment itself. A centre on the line has no side, so a track that
    stops on the line, or moves along it, is not counted. Directions are named as seen on the screen:
    left_to_right / right_to_left for a line closer to vertical, top_to_bottom / bottom_to_top otherwise.
    """

    def __init__(self, line: tuple[float, float, float, float]):
        self.start = np.array(line[:2], np.float64)
        self.end = np.array(line[2:], np.float64)
        dx, dy = self.end - self.start
        self.vertical = abs(dy) >= abs(dx)
        # The side a positive cross product means, on the screen (y grows downwards).
        positive_is_forward = (-dy > 0) if self.vertical else (dx > 0)
        names = ("left_to_right", "right_to_left") if self.vertical else ("top_to_bottom", "bottom_to_top")
        self.direction_to = {1: names[0] if positive_is_forward else names[1],
                             -1: names[1] if positive_is_forward else names[0]}
        self.sides: dict[int, tuple[int, np.ndarray]] = {}  # track -> last non-zero side and the centre there
        self.counts: dict[str, Counter] = {name: Counter() for name in names}

    def _side(self, point: np.ndarray) -> int:
        direction, offset = self.end - self.start, point - self.start
        cross = direction[0] * offset[1] - direction[1] * offset[0]
        return 0 if abs(cross) < 1e-9 else (1 if cross > 0 else -1)

    def _through_segment(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the step from a to b meets the segment (not only the endless line)."""
        def orientation(p, q, r):
            value = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
            return 0 if abs(value) < 1e-9 else (1 if value > 0 else -1)

        o1, o2 = orientation(a, b, self.start), orientation(a, b, self.end)
        o3, o4 = orientation(self.start, self.end, a), orientation(self.start, self.end, b)
        return o1 != o2 and o3 != o4 or 0 in (o1, o2)

    def update(self, track_id: int, centre: np.ndarray, label: str) -> str | None:
        """Note where a track's centre is now; return the direction if it has just crossed, else None."""
        side = self._side(centre)
        if side == 0:
            return None
        previous = self.sides.get(track_id)
        self.sides[track_id] = (side, centre)
        if previous is None or previous[0] == side or not self._through_segment(previous[1], centre):
            return None
        direction = self.direction_to[side]
        self.counts[direction][label] += 1
        return direction

    def forget(self, track_id: int) -> None:
        self.sides.pop(track_id, None)

    def totals(self) -> dict[str, dict[str, int]]:
        return {direction: dict(sorted(counter.items())) for direction, counter in self.counts.items()}


def parse_count_line(text: str) -> tuple[float, float, float, float]:
    """'X1,Y1,X2,Y2' in pixels, or fractions of the width and height when all four are within [0, 1]."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4:
        raise ValueError(f"'{text}' is not X1,Y1,X2,Y2")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"'{text}' is not four numbers X1,Y1,X2,Y2") from None
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"'{text}': coordinates must be zero or more")
    if values[:2] == values[2:]:
        raise ValueError(f"'{text}': the two ends are the same point")
    return values  # type: ignore[return-value]


def line_in_pixels(line: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    if all(v <= 1.0 for v in line):
        return line[0] * width, line[1] * height, line[2] * width, line[3] * height
    return line


class VideoTracking:
    """Tracking for one model on one source: IDs, carried boxes, records, trails, line counts, finished tracks."""

    def __init__(self, model: str, class_names, options: TrackOptions, frame_rate: float, threshold: float,
                 frame_size: tuple[int, int], on_finished: Callable[[dict], None]):
        self.model, self.class_names, self.options, self.threshold = model, class_names, options, threshold
        self.tracker = ObjectTracker(frame_rate, threshold, options.lost_seconds)
        self.records: dict[int, TrackRecord] = {}
        self.counter = LineCounter(line_in_pixels(options.count_line, *frame_size)) if options.count_line else None
        self.on_finished = on_finished
        self.distinct: Counter = Counter()

    def step(self, frame: int, time_s: float, detections: Detections | None) -> Detections:
        """This frame's boxes to draw and record: tracked detections above the threshold, or, on a frame that was
        not detected (None), the live tracks carried by their motion."""
        if detections is not None:
            tracked = self.tracker.update(detections, time_s)
            shown = tracked.filter(self.threshold)
        else:
            shown = self._carried(time_s)
        for box, score, label, track_id in zip(shown.boxes, shown.scores, shown.labels, shown.track_ids):
            if track_id >= 0:
                self._note(int(track_id), frame, box, float(score), int(label))
        self._finish([i for i in self.records if i not in self.tracker.live_ids()])
        return shown

    def _carried(self, time_s: float) -> Detections:
        predicted = {i: box for i, box in self.tracker.predicted_boxes(time_s).items() if i in self.records}
        if not predicted:
            return Detections.empty().with_track_ids(np.zeros(0, np.int64))
        ids = np.array(sorted(predicted), np.int64)
        records = [self.records[i] for i in ids]
        return Detections(np.stack([predicted[i] for i in ids]).astype(np.float32),
                          np.array([r.last_score for r in records], np.float32),
                          np.array([r.last_label for r in records], np.int64)).with_track_ids(ids)

    def _note(self, track_id: int, frame: int, box: np.ndarray, score: float, label: int) -> None:
        record = self.records.get(track_id)
        if record is None:
            record = self.records[track_id] = TrackRecord(track_id, frame, trail=deque(maxlen=max(1, self.options.trails)))
        record.last_frame = frame
        record.boxes.append([frame, *box.tolist(), score])
        record.labels[label] += 1
        record.last_label, record.last_score = label, score
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)
        record.trail.append((float(centre[0]), float(centre[1])))
        if self.counter is not None:
            self.counter.update(track_id, centre, class_name(self.class_names, record.label))

    def _finish(self, track_ids) -> None:
        for track_id in track_ids:
            record = self.records.pop(track_id)
            self.distinct[class_name(self.class_names, record.label)] += 1
            if self.counter is not None:
                self.counter.forget(track_id)
            self.on_finished(record.to_json(self.model, self.class_names))

    def close(self) -> dict:
        """Finish every live track; return the summary: distinct objects per class and line crossings."""
        self._finish(list(self.records))
        summary = {"model": self.model, "distinct": dict(self.distinct.most_common())}
        if self.counter is not None:
            summary["crossings"] = self.counter.totals()
        return summary

    def trails(self) -> dict[int, list[tuple[float, float]]]:
        return {i: list(r.trail) for i, r in self.records.items()} if self.options.trails else {}


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
                               {**p.settings, "threshold": self.threshold}) for name, p in self.models.items()]
        return [Prediction(p.model, p.class_names, self.per_model[p.model].step(index, time_s, p.detections),
                           p.milliseconds, {**p.settings, "threshold": self.threshold}) for p in predictions]

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
