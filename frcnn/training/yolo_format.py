"""Reading a YOLO-format set: DIR/images/ with DIR/labels/<same path>.txt, lines `class cx cy w h` (fractions of the
picture, an optional sixth column such as a score ignored), class ids 0-based into classes.txt, as
`detect_image.py --save-txt` writes them. A picture without a label file has no objects."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from frcnn.core.coco_names import read_labels
from frcnn.core.errors import FrcnnError
from frcnn.core.files import IMAGE_SUFFIXES
from frcnn.training.sets import Findings, LabelledSet, Sample, check_usable, checked_boxes, checking, picture_size


def read_yolo(data: str, labels_file: str | None, role: str,
              train_classes: Sequence[str] | None = None) -> tuple[LabelledSet, Findings]:
    """A YOLO set's pictures and boxes, checked; `train_classes`: the training set's class names, which a
    validation set's must equal (a validation set without classes.txt takes them)."""
    folder = Path(data)
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not folder.is_dir():
        raise FrcnnError(f"{folder}: folder not found")
    for needed in (images_dir, labels_dir):
        if not needed.is_dir():
            raise FrcnnError(f"{folder}: a YOLO-format set needs images/ and labels/ folders; "
                              f"{needed.name}/ is missing")
    names_file = _classes_file(folder, labels_file, needed=train_classes is None)
    class_names = read_labels(names_file) if names_file else list(train_classes)
    if train_classes is not None and list(train_classes) != class_names:
        raise FrcnnError(f"{folder}: the validation set's classes ({', '.join(class_names[1:])}) differ from the "
                          f"training set's ({', '.join(train_classes[1:])})")
    pictures = pictures_in(images_dir)
    findings = Findings(role)
    expected = {picture: (labels_dir / picture.relative_to(images_dir)).with_suffix(".txt") for picture in pictures}
    samples = read_pictures(expected, class_names, role, findings)
    note_orphans([labels_dir], set(expected.values()), findings)
    labelled = LabelledSet(role, class_names, list(range(len(class_names))), samples, oriented=True)
    check_usable(labelled, str(folder), findings)
    return labelled, findings


def _classes_file(folder: Path, labels_file: str | None, needed: bool) -> Path | None:
    """The file naming the classes: --labels, else classes.txt in the folder, in labels/, or in labels/<model>/ (where
    detect_image.py --save-txt puts it); None where there is none and the training set's names stand (validation)."""
    if labels_file is not None:
        return Path(labels_file)
    for candidate in (folder / "classes.txt", folder / "labels" / "classes.txt"):
        if candidate.is_file():
            return candidate
    nested = sorted((folder / "labels").glob("*/classes.txt"))
    if len({tuple(read_labels(path)) for path in nested}) > 1:
        raise FrcnnError(f"{folder}: the classes.txt files in labels/ name different classes "
                          f"({', '.join(str(p.relative_to(folder)) for p in nested)}): give --labels FILE")
    if nested:
        return nested[0]
    if not needed:
        return None
    raise FrcnnError(f"{folder}: no class names: put classes.txt (one name per line, class 0 first) in the folder "
                      f"or in labels/, or give --labels FILE")


def read_label_file(path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A label file's boxes as x1 y1 x2 y2 fractions of the picture, and its 0-based classes; none if it is absent.
    FrcnnError names the file and line of anything that does not parse."""
    if not path.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise FrcnnError(f"{path}: cannot read this label file ({error})") from error
    boxes, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) not in (5, 6):
            raise FrcnnError(f"{where}: expected 'class cx cy w h', got {len(fields)} fields: {line.strip()!r}")
        try:
            label = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:5])
        except ValueError:
            raise FrcnnError(f"{where}: not a class number and four numbers: {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in (cx, cy, w, h)):
            raise FrcnnError(f"{where}: a coordinate is not a finite number: {line.strip()!r}")
        if not 0 <= label < classes:
            raise FrcnnError(f"{where}: class {label} is not in the class names (0 to {classes - 1})")
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        labels.append(label)
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def pictures_in(folder: Path) -> list[Path]:
    """The pictures anywhere under a folder, in name order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_pictures(label_files: dict[Path, Path], class_names: Sequence[str], role: str,
                  findings: Findings) -> list[Sample]:
    """Each picture (key) with the boxes of its label file (value; none where it is absent), in pixels and checked;
    label files are read first, so a bad one is named even beside a missing picture."""
    samples = []
    for number, (picture, label_path) in enumerate(checking(list(label_files.items()), role), start=1):
        boxes, labels = read_label_file(label_path, len(class_names) - 1)
        size = picture_size(picture, oriented=True)
        if size is None:
            findings.unreadable.append(str(picture))
            continue
        width, height = size
        pixels = boxes * np.array([width, height, width, height], np.float32)
        kept_boxes, kept_labels = checked_boxes(pixels, labels + 1, width, height, findings, str(picture))
        samples.append(Sample(str(picture), number, width, height, kept_boxes, kept_labels))
    return samples


def note_orphans(label_folders: Iterable[Path], expected: set[Path], findings: Findings) -> None:
    """Note the label files under `label_folders` that belong to no picture of the set."""
    found = {p for folder in label_folders if folder.is_dir() for p in folder.rglob("*.txt")}
    orphans = sorted(p for p in found if p not in expected and p.name != "classes.txt")
    if orphans:
        findings.notes.append(f"{len(orphans)} label file(s) without a picture, ignored, e.g. {orphans[0]}")
