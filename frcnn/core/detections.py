"""The value that carries detections between steps: boxes, scores, labels (and track ids once tracked)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from frcnn.core.coco_names import is_real_class
from frcnn.core.errors import FrcnnError


@dataclass
class Detections:
    """Boxes (N×4, x1 y1 x2 y2 in original-image pixels), scores (N) and label ids (N)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    track_ids: np.ndarray | None = None  # N, once tracked: -1 where a detection is not (yet) part of a track

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def concatenate(cls, parts: Sequence["Detections"]) -> "Detections":
        if not parts:
            return cls.empty()
        tracked = all(p.track_ids is not None for p in parts)
        return cls(np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
                   np.concatenate([p.scores for p in parts]), np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.track_ids for p in parts]) if tracked else None)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, selection) -> "Detections":
        """The detections picked by a boolean mask or an array of indices."""
        return Detections(self.boxes[selection].reshape(-1, 4), self.scores[selection], self.labels[selection],
                          None if self.track_ids is None else self.track_ids[selection])

    def with_track_ids(self, track_ids: np.ndarray) -> "Detections":
        return Detections(self.boxes, self.scores, self.labels, np.asarray(track_ids, np.int64))

    def filter(self, threshold: float = 0.0, classes: set[int] | frozenset[int] | None = None) -> "Detections":
        """Keep detections scoring at least `threshold` whose label is in `classes` (all if None)."""
        keep = self.scores >= threshold
        if classes is not None:
            keep &= np.isin(self.labels, sorted(classes))
        return self[keep]

    def shifted(self, dx: float, dy: float) -> "Detections":
        """The same detections moved by (dx, dy) pixels."""
        return Detections(self.boxes + np.array([dx, dy, dx, dy], dtype=self.boxes.dtype), self.scores, self.labels,
                          self.track_ids)

    def to_supervision(self, class_names: Sequence[str] | None = None):
        """These detections as a `supervision.Detections` (supervision is optional: pip install supervision): boxes,
        scores, labels as class ids, track ids once tracked, and with `class_names` (the model's) each box's name
        in `data["class_name"]`."""
        sv = _supervision()
        data = {} if class_names is None else {"class_name": np.array(names_per_box(self, class_names), dtype=str)}
        return sv.Detections(xyxy=self.boxes.astype(np.float32).reshape(-1, 4),
                             confidence=self.scores.astype(np.float32), class_id=self.labels.astype(int),
                             tracker_id=None if self.track_ids is None else self.track_ids.astype(int), data=data)

    @classmethod
    def from_supervision(cls, detections) -> "Detections":
        """A `supervision.Detections` as these: its boxes, confidences (1 where it has none), class ids (0 where it
        has none) and tracker ids."""
        count = len(detections)
        scores = detections.confidence if detections.confidence is not None else np.ones(count)
        labels = detections.class_id if detections.class_id is not None else np.zeros(count)
        tracks = detections.tracker_id
        return cls(np.asarray(detections.xyxy, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                   np.asarray(labels, np.int64), None if tracks is None else np.asarray(tracks, np.int64))

    def to_records(self, class_names: Sequence[str]) -> list[dict]:
        """One JSON-ready dict per detection: label, label_id, score, box [x1, y1, x2, y2] (track_id once tracked)."""
        records = [
            {
                "label": class_name(class_names, label),
                "label_id": int(label),
                "score": round(float(score), 4),
                "box": [round(float(v), 1) for v in box],
            }
            for box, score, label in zip(self.boxes, self.scores, self.labels)
        ]
        if self.track_ids is not None:
            for record, track_id in zip(records, self.track_ids):
                record["track_id"] = int(track_id) if track_id >= 0 else None
        return records


def _supervision():
    try:
        import supervision
    except ImportError as error:
        raise FrcnnError("converting to supervision's Detections needs the supervision package: "
                         "pip install supervision") from error
    return supervision


def names_per_box(detections: Detections, classes: Sequence[str]) -> list[str]:
    """Each box's class name: `classes` as one name per box, or a model's class names (`Prediction.class_names`,
    the background first) looked up by the boxes' labels; ValueError in one line where it is neither."""
    if len(classes) and classes[0] == "__background__":
        return [class_name(classes, label) for label in detections.labels]
    if len(classes) != len(detections):
        raise ValueError(f"{len(classes)} class names for {len(detections)} boxes: give one name per box, or the "
                         f"model's class names (prediction.class_names, which start with __background__)")
    return [str(name) for name in classes]


def class_name(class_names: Sequence[str], label: int) -> str:
    """The name of a label id, or the id itself where the names do not reach it."""
    label = int(label)
    return class_names[label] if 0 <= label < len(class_names) and is_real_class(class_names[label]) else str(label)


@dataclass(frozen=True)
class SliceSettings:
    """How a sliced prediction was made: tile size (an int per picture, "auto" before one is seen), overlap, merge."""

    size: int | str
    overlap: float
    full_pass: bool
    merge: str
    match: str
    match_threshold: float
    tiles: int | None = None  # per picture, once its grid is known

    def to_json(self) -> dict:
        record = asdict(self)
        if self.tiles is None:
            del record["tiles"]
        return record

    def describe(self) -> str:
        """One line for the terminal: how pictures are sliced and merged."""
        full = "plus one pass over the whole picture" if self.full_pass else "without a whole-picture pass"
        return (f"sliced: {self.tiles} tile{'s' if self.tiles != 1 else ''} of {self.size} px, "
                f"overlap {self.overlap:g}, {full}; merged by {self.merge} over {self.match} "
                f"> {self.match_threshold:g}")


@dataclass(frozen=True)
class PredictionSettings:
    """How a prediction was made: what every record, panel title and resumed run names."""

    weights: str
    imgsz: int
    runtime: str
    precision: str
    proposals: int
    threshold: float
    slice: SliceSettings | None = None

    def describe(self) -> str:
        """One line for the terminal: what runs the model, and how."""
        return (f"{self.weights}, run by {self.runtime} in {self.precision} at {self.imgsz} px, "
                f"{self.proposals} proposals, threshold {self.threshold:g}")

    def with_threshold(self, threshold: float) -> "PredictionSettings":
        return replace(self, threshold=threshold)

    def with_slice(self, slicing: SliceSettings) -> "PredictionSettings":
        return replace(self, slice=slicing)

    def to_json(self) -> dict:
        record = {"weights": self.weights, "imgsz": self.imgsz, "runtime": self.runtime, "precision": self.precision,
                  "proposals": self.proposals, "threshold": self.threshold}
        if self.slice is not None:
            record["slice"] = self.slice.to_json()
        return record


@dataclass
class Prediction:
    """One model's detections of one picture, how long they took, and how they were made."""

    model: str
    class_names: list[str]
    detections: Detections
    milliseconds: float
    settings: PredictionSettings

    def record(self) -> dict:
        """The JSON-ready part of a record that belongs to this model."""
        return {"model": self.model, **self.settings.to_json(), "inference_ms": round(self.milliseconds, 1),
                "detections": self.detections.to_records(self.class_names)}
