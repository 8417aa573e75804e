"""A training run's settings: one frozen, picklable value made from the options once, saved as settings.json.

Nothing here imports PyTorch, so `train.py --help` and usage errors answer at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# torchvision's detection reference: lr 0.02 for 16 pictures per step (8 GPUs x 2), scaled linearly with the batch.
REFERENCE_LR = 0.02
REFERENCE_BATCH = 16
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
WARMUP_STEPS = 1000
WARMUP_FACTOR = 0.001
SCHEDULES = ("cosine", "steps")
STARTS = ("coco", "weights", "scratch")
DEFAULT_VAL_FRACTION = 0.1
# Settings that may differ between a run and its resumption without changing its results.
RESUMABLE_CHANGES = ("workers", "device", "output")


def reference_lr(batch: int) -> float:
    """The reference learning rate for `batch` pictures per step."""
    return REFERENCE_LR * batch / REFERENCE_BATCH


@dataclass(frozen=True)
class DataSource:
    """Where a set is: COCO format (`images` folder + `annotations` file), a YOLO folder (`data` with images/ and
    labels/, class names from `labels` or classes.txt), an Ultralytics data.yaml (`data`, its `split`), or a Pascal
    VOC tree (`data`, the `split` of ImageSets/Main; None: every annotation file; class names from `labels` or
    the objects')."""

    format: str  # "coco", "yolo", "ultralytics" or "voc"
    images: str | None = None
    annotations: str | None = None
    data: str | None = None
    labels: str | None = None
    split: str | None = None  # "train", "val" or "test" of a data.yaml or a VOC tree

    def describe(self) -> str:
        if self.format == "coco":
            return f"{self.annotations} (images in {self.images})"
        if self.format == "ultralytics":
            return f"{self.data} ({self.split} split)"
        if self.format == "voc":
            return f"{self.data} (Pascal VOC{', ' + self.split if self.split else ''})"
        return f"{self.data} (YOLO labels)"


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run's results depend on (and the few things that only change its speed)."""

    model: str  # "v1" or "v2"
    start: str  # "coco" (COCO weights), "weights" (a checkpoint) or "scratch" (random weights)
    weights: str | None
    trainable_layers: int  # backbone stages trained, 0..5 (5 when starting from scratch)
    train: DataSource
    val: DataSource | None  # None: hold out `val_fraction` of the training set (0: no validation)
    val_fraction: float
    epochs: int
    batch: int
    imgsz: int
    lr: float
    schedule: str  # "cosine" or "steps"
    box_batch: int  # box head samples per picture (torchvision: 512)
    seed: int
    device: str
    amp: bool  # mixed precision where the device is CUDA
    workers: int
    output: str
    replicas: int = 1  # data-parallel training processes (Ray workers); each takes `batch` pictures per step
    patience: int = 0  # stop once validation AP has not improved for this many epochs (0: never)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> TrainSettings:
        """The settings a settings.json holds; KeyError or TypeError where it is not one."""
        values = dict(record)
        values["train"] = DataSource(**values["train"])
        values["val"] = DataSource(**values["val"]) if values.get("val") else None
        return cls(**values)

    def differences(self, other: TrainSettings) -> list[str]:
        """Names of the settings that differ from `other`, except those a resumed run may change."""
        mine, theirs = self.to_json(), other.to_json()
        return [name for name in mine if name not in RESUMABLE_CHANGES and mine[name] != theirs[name]]
