"""Reading a Pascal VOC tree: Annotations/<id>.xml, JPEGImages/<id>.jpg, and ImageSets/Main/<split>.txt naming each
split's ids (without it, every annotation file is one set).

VOC boxes are pixel corners counted from 1, both included: `xmin ymin xmax ymax` covers the pixels xmin..xmax, which
in the 0-based edge coordinates torchvision uses is x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax. Objects marked
`difficult` are left out of training and kept for scoring as regions it ignores (as VOC's own scoring does)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frcnn.core.coco_names import read_labels
from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.files import IMAGE_SUFFIXES
from frcnn.training.sets import (
    BACKGROUND,
    Findings,
    LabelledSet,
    Sample,
    check_usable,
    checked_boxes,
    checking,
    labels_by_name,
    picture_size,
)

ANNOTATIONS, PICTURES, SPLITS_DIR = "Annotations", "JPEGImages", Path("ImageSets") / "Main"


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # x1 y1 x2 y2, 0-based edges
    difficult: bool


def is_voc(folder: Path) -> bool:
    return (folder / ANNOTATIONS).is_dir() and (folder / PICTURES).is_dir()


def has_split(folder: Path, split: str) -> bool:
    return (folder / SPLITS_DIR / f"{split}.txt").is_file()


def has_splits(folder: Path) -> bool:
    """Whether the tree lists its splits (ImageSets/Main/); without, every annotation file is one set."""
    return (folder / SPLITS_DIR).is_dir()


def split_ids(folder: Path, split: str | None) -> list[str]:
    """The ids of a split (ImageSets/Main/<split>.txt, first column), or of every annotation file for None."""
    if split is None:
        return sorted(path.stem for path in (folder / ANNOTATIONS).glob("*.xml"))
    listing = folder / SPLITS_DIR / f"{split}.txt"
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise FrcnnError(f"{listing}: cannot read the {split} split's list of ids ({first_line(error)})") from error
    return [line.split()[0] for line in lines if line.strip()]


def voc_box(xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[float, float, float, float]:
    """A VOC box (1-based, corners included) as 0-based edges x1 y1 x2 y2."""
    return xmin - 1.0, ymin - 1.0, xmax, ymax


def read_annotation(path: Path) -> tuple[str | None, list[VocObject]]:
    """An annotation file's picture name (None where it names none) and objects; FrcnnError naming the file."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise FrcnnError(f"{path}: not a readable VOC annotation file ({first_line(error)})") from error
    objects = []
    for number, element in enumerate(root.iter("object"), start=1):
        name = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        if not name or box is None:
            raise FrcnnError(f"{path}: object {number} has no name or no bndbox")
        try:
            corners = [float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError):
            raise FrcnnError(f"{path}: object {number} ({name}) needs numbers xmin, ymin, xmax, ymax") from None
        if not all(math.isfinite(value) for value in corners):
            raise FrcnnError(f"{path}: object {number} ({name}) has a coordinate that is not a finite number")
        difficult = (element.findtext("difficult") or "0").strip() not in ("0", "", "false", "False")
        objects.append(VocObject(name, voc_box(*corners), difficult))
    filename = (root.findtext("filename") or "").strip() or None
    return filename, objects


def _picture(folder: Path, identifier: str, filename: str | None) -> Path:
    """The picture of an id: the one its annotation names, else <id> with a picture suffix (.jpg first)."""
    pictures = folder / PICTURES
    if filename and (pictures / filename).is_file():
        return pictures / filename
    for suffix in (".jpg", *sorted(IMAGE_SUFFIXES - {".jpg"})):
        if (pictures / f"{identifier}{suffix}").is_file():
            return pictures / f"{identifier}{suffix}"
    return pictures / (filename or f"{identifier}.jpg")


def read_voc(root: str, split: str | None, labels_file: str | None, role: str,
             train_classes: Sequence[str] | None = None) -> tuple[LabelledSet, Findings]:
    """A split of a VOC tree (None: every annotation file), checked. Class names: --labels, else the training set's
    (`train_classes`), else those the split's objects name, in alphabetical order (VOC's own order)."""
    folder = Path(root)
    if not is_voc(folder):
        raise FrcnnError(f"{folder}: a Pascal VOC tree needs {ANNOTATIONS}/ and {PICTURES}/ folders")
    annotated = [(identifier, *read_annotation(folder / ANNOTATIONS / f"{identifier}.xml"))
                 for identifier in split_ids(folder, split)]
    if not annotated:
        where = f" for the {split} split" if split else ""
        raise FrcnnError(f"{folder}: no annotation files in {ANNOTATIONS}/{where}")
    names = sorted({obj.name for _, _, objects in annotated for obj in objects})
    if labels_file is not None:
        class_names = read_labels(labels_file)
        strangers = sorted(set(names) - set(class_names[1:]))
        if strangers:
            raise FrcnnError(f"{folder}: objects of classes {labels_file} does not name: {', '.join(strangers)}")
    elif train_classes is not None:
        class_names = list(train_classes)
        labels_by_name(class_names, names, str(folder))  # a class the training set lacks is an error
    else:
        class_names = [BACKGROUND, *names]
    label_of = {name: label for label, name in enumerate(class_names) if label}
    findings = Findings(role)
    samples = []
    for number, (identifier, filename, objects) in enumerate(checking(annotated, role), start=1):
        picture = _picture(folder, identifier, filename)
        size = picture_size(picture, oriented=False)
        if size is None:
            findings.unreadable.append(str(picture))
            continue
        kept = [_arrays([obj for obj in objects if obj.difficult == difficult], label_of)
                for difficult in (False, True)]
        boxes, labels = checked_boxes(*kept[0], *size, findings, str(picture))
        ignored_boxes, ignored_labels = checked_boxes(*kept[1], *size, Findings(role))
        samples.append(Sample(str(picture), number, size[0], size[1], boxes, labels, ignored_boxes, ignored_labels))
    labelled = LabelledSet(role, class_names, list(range(len(class_names))), samples, oriented=False)
    check_usable(labelled, f"{folder}" + (f" ({split})" if split else ""), findings)
    return labelled, findings


def _arrays(objects: list[VocObject], label_of: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array([obj.box for obj in objects], np.float32).reshape(-1, 4)
    return boxes, np.array([label_of[obj.name] for obj in objects], np.int64)
