"""Reading a COCO-format set (an images folder and an annotation file) for training or validation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from frcnn.core.errors import FrcnnError
from frcnn.evaluation.coco import load_set
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


def read_coco(images: str, annotations: str, role: str,
              train_classes: Sequence[str] | None = None) -> tuple[LabelledSet, Findings]:
    """A COCO set's pictures and boxes, checked; crowd boxes are left out of training (as torchvision's reference
    does) and kept for scoring. `train_classes`: the training set's class names, which a validation set's match."""
    images_dir, annotations_path = Path(images), Path(annotations)
    if not images_dir.is_dir():
        raise FrcnnError(f"{images_dir}: images folder not found")
    if not annotations_path.is_file():
        raise FrcnnError(f"{annotations_path}: annotation file not found")
    coco = load_set(images_dir, annotations_path).coco
    categories = sorted(coco.dataset["categories"], key=lambda c: c.get("id", 0))
    names = _category_names(categories, annotations_path)
    ids = [category["id"] for category in categories]
    if train_classes is None:
        class_names, labels = [BACKGROUND, *names], list(range(1, len(names) + 1))
    else:
        class_names, labels = list(train_classes), labels_by_name(train_classes, names, str(annotations_path))
    category_ids = [0] * len(class_names)
    for label, category_id in zip(labels, ids):
        category_ids[label] = category_id
    label_of = dict(zip(ids, labels))
    findings = Findings(role)
    samples = []
    for image in checking(sorted(coco.dataset["images"], key=lambda entry: entry["id"]), role):
        sample = _sample(image, coco.imgToAnns.get(image["id"], []), images_dir, label_of, annotations_path, findings)
        if sample is not None:
            samples.append(sample)
    labelled = LabelledSet(role, class_names, category_ids, samples, oriented=False, coco=coco)
    check_usable(labelled, str(annotations_path), findings)
    return labelled, findings


def _category_names(categories: list[dict], origin: Path) -> list[str]:
    if not categories:
        raise FrcnnError(f"{origin}: the file lists no categories")
    if not all(isinstance(c, dict) and isinstance(c.get("id"), int) and c.get("name") for c in categories):
        raise FrcnnError(f"{origin}: every category needs a whole-number id and a name")
    names = [str(category["name"]).strip() for category in categories]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FrcnnError(f"{origin}: category names repeat ({', '.join(repeated)}); each class needs its own name")
    return names


def _sample(image: dict, annotations: list[dict], folder: Path, label_of: dict[int, int], origin: Path,
            findings: Findings) -> Sample | None:
    """One picture of the set with its checked boxes; None (and counted) if it cannot be read."""
    if not isinstance(image.get("id"), int) or not isinstance(image.get("file_name"), str):
        raise FrcnnError(f"{origin}: every image needs a whole-number id and a file_name")
    path = folder / image["file_name"]
    size = picture_size(path, oriented=False)
    if size is None:
        findings.unreadable.append(str(path))
        return None
    boxes, labels = [], []
    for annotation in annotations:
        if annotation.get("iscrowd", 0):
            continue
        boxes.append(_xyxy(annotation, origin))
        category = annotation.get("category_id")
        if category not in label_of:
            raise FrcnnError(f"{origin}: annotation {annotation.get('id')} names category {category}, "
                              f"which the file does not list")
        labels.append(label_of[category])
    kept_boxes, kept_labels = checked_boxes(np.array(boxes, np.float32), np.array(labels, np.int64), *size, findings,
                                            str(path))
    return Sample(str(path), image["id"], size[0], size[1], kept_boxes, kept_labels)


def _xyxy(annotation: dict, origin: Path) -> list[float]:
    bbox = annotation.get("bbox")
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
        raise FrcnnError(f"{origin}: annotation {annotation.get('id')} has no valid bbox [x, y, width, height] "
                          f"(got {bbox!r})")
    x, y, width, height = (float(v) for v in bbox)
    return [x, y, x + width, y + height]
