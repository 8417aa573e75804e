"""The training and validation sets a run's settings name, read and checked before any model is built; and what a
`--data` path is (a data.yaml, a Pascal VOC tree or a YOLO folder)."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from frcnn.core.errors import FrcnnError
from frcnn.core.files import write_json
from frcnn.evaluation.coco import CocoSet
from frcnn.training import ultralytics_format, voc_format
from frcnn.training.coco_format import read_coco
from frcnn.training.sets import LISTED_CLASSES, Findings, LabelledSet, coco_for_scoring, split_off
from frcnn.training.settings import DataSource, TrainSettings
from frcnn.training.yolo_format import read_yolo


@dataclass
class TrainingData:
    """The sets a run learns from and is validated on (None: no validation), and the warnings about them."""

    train: LabelledSet
    val: LabelledSet | None
    warnings: list[str]

    def summary(self) -> str:
        """One line per set: pictures (and those without boxes), boxes, and classes."""
        train = self.train
        lines = [train.describe(), self.val.describe() if self.val is not None else "val: none (no validation)"]
        if len(train.class_names) - 1 > LISTED_CLASSES:  # not named with their counts: named here
            lines.append(f"classes: {', '.join(train.class_names[1:])}")
        return "\n".join(lines)


def data_source(path: str, labels: str | None, split: str) -> DataSource:
    """What a --data path holds: a data.yaml (or a folder with one), a Pascal VOC tree, the one such set below it
    (see `sets_below`), else a YOLO folder. `split`: the part of a data.yaml or VOC tree meant (a VOC tree without
    ImageSets/Main/: all of it)."""
    path = os.path.abspath(path)
    found = ultralytics_format.yaml_file(Path(path))
    if found is not None:
        return DataSource("ultralytics", data=str(found), split=split)
    if voc_format.is_voc(Path(path)):
        return DataSource("voc", data=path, labels=labels, split=split if voc_format.has_splits(Path(path)) else None)
    below = sets_below(Path(path))
    if len(below) == 1:
        return data_source(str(below[0]), labels, split)
    return DataSource("yolo", data=path, labels=labels)


def sets_below(folder: Path) -> list[Path]:
    """The sets one level below a folder that is no set itself: data.yaml files in its subfolders and Pascal VOC
    trees (also two levels down in VOCdevkit/, as torchvision's VOCDetection root holds VOCdevkit/VOC2012)."""
    if not folder.is_dir() or (folder / "images").is_dir():
        return []
    found = []
    for child in sorted(entry for entry in folder.iterdir() if entry.is_dir()):
        found += [child / name for name in ultralytics_format.YAML_NAMES if (child / name).is_file()][:1]
        trees = [child] if child.name != "VOCdevkit" else sorted(entry for entry in child.iterdir() if entry.is_dir())
        found += [tree for tree in trees if voc_format.is_voc(tree)]
    return found


def check_near_miss(path: Path) -> None:
    """FrcnnError in one line for a --data path that is no set but nearly names one: a file of another kind, a name
    close to one beside it, a folder with several sets below it."""
    if path.is_file():
        kind = f"a {path.suffix} file" if path.suffix else "a file"
        raise FrcnnError(f"{path}: {kind}, not a data.yaml (.yaml or .yml), a Pascal VOC tree or a YOLO-format folder")
    if not path.exists():
        beside = [entry.name for entry in path.parent.iterdir()] if path.parent.is_dir() else []
        near = difflib.get_close_matches(path.name, beside, n=1, cutoff=0.6)
        raise FrcnnError(f"{path}: not found" + (f" (did you mean {path.parent / near[0]}?)" if near else ""))
    below = sets_below(path)
    if below:
        raise FrcnnError(f"{path}: holds {len(below)} sets, not one: {', '.join(str(p) for p in below)}; give one "
                         f"of them to --data")


def scoring_source(path: str, split: str) -> DataSource | None:
    """The set evaluate.py's --data names for scoring: a data.yaml's or VOC tree's `split`, or a whole YOLO folder;
    None for anything else (COCO's own layout, val2017/ and annotations/, which evaluate.py reads itself)."""
    source = data_source(path, None, split)
    return None if source.format == "yolo" and not (Path(path) / "images").is_dir() else source


def scoring_set(source: DataSource, split: str, folder: Path) -> tuple[CocoSet, list[str]]:
    """A set's split read and checked for scoring, and kept in `folder` as set_<split>.json (COCO format: what the
    results beside it are of); with the lines that say what was found."""
    labelled, findings = read_source(source, split)
    coco = coco_for_scoring(labelled)
    annotations = folder / f"set_{split}.json"
    write_json(annotations, coco.dataset)
    lines = [f"warning: {line}" for line in findings.warnings()] + [labelled.describe()]
    return CocoSet(coco, labelled.root(), annotations), lines


def own_split(source: DataSource, split: str) -> DataSource | None:
    """The set's own `split` (a data.yaml's or VOC tree's), where it has one."""
    if source.format == "ultralytics" and ultralytics_format.has_split(Path(source.data), split):
        return DataSource("ultralytics", data=source.data, split=split)
    if source.format == "voc" and voc_format.has_split(Path(source.data), split):
        return DataSource("voc", data=source.data, labels=source.labels, split=split)
    return None


def read_source(source: DataSource, role: str, train_classes: list[str] | None = None) -> tuple[LabelledSet, Findings]:
    if source.format == "coco":
        return read_coco(source.images, source.annotations, role, train_classes)
    if source.format == "ultralytics":
        return ultralytics_format.read_ultralytics(source.data, source.split, role, train_classes)
    if source.format == "voc":
        return voc_format.read_voc(source.data, source.split, source.labels, role, train_classes)
    check_near_miss(Path(source.data))
    return read_yolo(source.data, source.labels, role, train_classes)


def load_training_data(settings: TrainSettings) -> TrainingData:
    """Read and check the sets; hold out a seeded part of the training set when no validation set is given."""
    train, findings = read_source(settings.train, "train")
    reports = [findings]
    if settings.val is not None:
        val, val_findings = read_source(settings.val, "val", train.class_names)
        if {sample.path for sample in val.samples} <= {sample.path for sample in train.samples}:
            val_findings.notes.append("every validation picture is a training picture too (as the set names them): "
                                      "its AP shows how well the model fits them, not how it does on new ones; "
                                      "--val-fraction holds out part of the training set instead")
        reports.append(val_findings)
    elif settings.val_fraction > 0:
        train, val = split_off(train, settings.val_fraction, settings.seed)
    else:
        val = None
    return TrainingData(train, val, [line for report in reports for line in report.warnings()])
