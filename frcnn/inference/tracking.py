"""Following objects across video frames: IDs, and boxes carried between detected frames.

The association itself is ByteTrack from the `trackers` package (Apache-2.0), behind `ObjectTracker`, so it can be
replaced without touching the rest. One `VideoTracking` per model and per source: it tracks, keeps each live
track's record and trail, and hands each finished track on (and forgets it), so memory stays flat however long
the video. What is measured on the tracks (lines, zones, speed) is frcnn.analytics' job.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from frcnn.core.detections import Detections, class_name
from frcnn.core.specs import TrackOptions

# ByteTrack's second association uses boxes below the drawing threshold, down to this score.
LOW_SCORE_FLOOR = 0.1


class ObjectTracker:
    """ByteTrack over our `Detections`: IDs for detections, and predicted boxes of live tracks in between.

    One per video (or stream) and model, fed every frame's detections in order with the frame's time; `threshold`
    is the score a box needs to start a track. ByteTrack also matches boxes scoring down to `LOW_SCORE_FLOOR`, so
    give it a predictor's boxes down to there and keep `threshold` for what you show:

        predictor = Predictor(load(ModelSpec("v2")), threshold=LOW_SCORE_FLOOR)
        tracker = ObjectTracker(frame_rate=25.0, threshold=0.5)
        for index, frame in enumerate(frames):                      # BGR arrays, in order
            (prediction,) = predictor([frame])
            tracked = tracker.update(prediction.detections, time_s=index / 25.0)
            shown = tracked[tracked.track_ids >= 0]                 # -1: not (yet) in a confirmed track
    """

    def __init__(self, frame_rate: float, threshold: float, lost_seconds: float = 1.0):
        from trackers import ByteTrackTracker

        self.frame_rate = frame_rate
        # The package counts its lost-track buffer in frames at 30 fps and scales it to `frame_rate`.
        self._tracker = ByteTrackTracker(lost_track_buffer=max(0, round(lost_seconds * 30)), frame_rate=frame_rate,
                                         track_activation_threshold=threshold, high_conf_det_threshold=threshold,
                                         minimum_consecutive_frames=2)
        self._last_time: float | None = None

    def update(self, detections: Detections, time_s: float) -> Detections:
        """The detections of the frame at `time_s` seconds with `track_ids` (-1: not, or not yet, in a track)."""
        given = Detections(detections.boxes, detections.scores, detections.labels).to_supervision()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a repeated timestamp (a duplicated frame) only skips the prediction
            tracked = self._tracker.update(given, timestamp=time_s)
        self._last_time = time_s
        if len(tracked) == 0:
            return Detections.empty().with_track_ids(np.zeros(0, np.int64))
        return Detections.from_supervision(tracked)

    def predicted_boxes(self, time_s: float) -> dict[int, np.ndarray]:
        """Where each confirmed live track is expected at `time_s`, by its motion; the tracker is not changed."""
        step = 0.0 if self._last_time is None else (time_s - self._last_time) * self.frame_rate
        boxes = {}
        for track in self._tracker.tracks:
            if track.tracker_id < 0:
                continue
            estimator = _state_copy(track.state_estimator)
            if step > 0:
                estimator.predict(step, self.frame_rate)
            boxes[int(track.tracker_id)] = np.asarray(estimator.state_to_bbox(), np.float32)
        return boxes

    def live_ids(self) -> set[int]:
        return {int(t.tracker_id) for t in self._tracker.tracks if t.tracker_id >= 0}



def _state_copy(estimator):
    """A copy of a track's motion estimator that can predict without changing the track's own.

    Only what a prediction writes is copied: the state vector (the velocity clamp writes into it in place) and
    the objects whose attributes it reassigns (the filter's state, covariance and matrices; the motion model's
    cached matrices). A deep copy of every track's filter cost 6 ms a frame with a hundred tracks."""
    copied = copy.copy(estimator)
    copied.kf = copy.copy(estimator.kf)
    copied.kf.state = estimator.kf.state.copy()
    copied.motion = copy.copy(estimator.motion)
    return copied

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


class VideoTracking:
    """Tracking for one model on one source: IDs, carried boxes, records, trails, finished tracks."""

    def __init__(self, model: str, class_names, options: TrackOptions, frame_rate: float, threshold: float,
                 frame_size: tuple[int, int], on_finished: Callable[[dict], None]):
        # `frame_size` is kept for callers: what depends on the frame's size (lines, zones) is frcnn.analytics' now.
        self.model, self.class_names, self.options, self.threshold = model, class_names, options, threshold
        self.tracker = ObjectTracker(frame_rate, threshold, options.lost_seconds)
        self.records: dict[int, TrackRecord] = {}
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
            trail = deque(maxlen=max(1, self.options.trails))
            record = self.records[track_id] = TrackRecord(track_id, frame, trail=trail)
        record.last_frame = frame
        record.boxes.append([frame, *box.tolist(), score])
        record.labels[label] += 1
        record.last_label, record.last_score = label, score
        record.trail.append((float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2))

    def _finish(self, track_ids) -> None:
        for track_id in track_ids:
            record = self.records.pop(track_id)
            self.distinct[class_name(self.class_names, record.label)] += 1
            self.on_finished(record.to_json(self.model, self.class_names))

    def close(self) -> dict:
        """Finish every live track; return the summary: distinct objects per class."""
        self._finish(list(self.records))
        return {"model": self.model, "distinct": dict(self.distinct.most_common())}

    def class_of(self, track_id: int) -> str:
        """The class a live track was detected as most often so far."""
        return class_name(self.class_names, self.records[track_id].label)

    def trails(self) -> dict[int, list[tuple[float, float]]]:
        return {i: list(r.trail) for i, r in self.records.items()} if self.options.trails else {}


