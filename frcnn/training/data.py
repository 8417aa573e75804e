"""The training and validation sets a run's settings name, read and checked before any model is built."""

from __future__ import annotations

from dataclasses import dataclass

from frcnn.training.coco_format import read_coco
from frcnn.training.sets import Findings, LabelledSet, split_off
from frcnn.training.settings import DataSource, TrainSettings
from frcnn.training.yolo_format import read_yolo


@dataclass
class TrainingData:
    """The sets a run learns from and is validated on (None: no validation), and the warnings about them."""

    train: LabelledSet
    val: LabelledSet | None
    warnings: list[str]

    def summary(self) -> str:
        """One line: pictures, boxes and classes of each set."""
        train = self.train
        line = (f"train: {len(train.samples)} pictures, {train.box_count()} boxes, {len(train.class_names) - 1} "
                f"classes ({', '.join(train.class_names[1:])})")
        if self.val is None:
            return line + "; no validation"
        return line + f"; val: {len(self.val.samples)} pictures, {self.val.box_count()} boxes"


def read_source(source: DataSource, role: str, train_classes: list[str] | None = None) -> tuple[LabelledSet, Findings]:
    if source.format == "coco":
        return read_coco(source.images, source.annotations, role, train_classes)
    return read_yolo(source.data, source.labels, role, train_classes)


def load_training_data(settings: TrainSettings) -> TrainingData:
    """Read and check the sets; hold out a seeded part of the training set when no validation set is given."""
    train, findings = read_source(settings.train, "train")
    reports = [findings]
    if settings.val is not None:
        val, val_findings = read_source(settings.val, "val", train.class_names)
        reports.append(val_findings)
    elif settings.val_fraction > 0:
        train, val = split_off(train, settings.val_fraction, settings.seed)
    else:
        val = None
    return TrainingData(train, val, [line for report in reports for line in report.warnings()])
