"""`--save-txt` as a YOLO dataset that Ultralytics', supervision's and train.py's loaders open.

Per model, in the output folder: `labels/<model>/<name>.txt` (`class cx cy w h`, fractions of the picture; no
score column, which Ultralytics' loader refuses in a detection set: the scores are in the JSON record),
`images/<model>/<name><suffix>` (the input picture, copied as it is), and in `labels/<model>/` the class names as
`classes.txt` and `data.yaml` (`path`, `train`, `val`, `nc`, `names`). Classes are numbered from 0 over the model's
real classes: COCO's 80 as YOLO numbers them (0-79, torchvision's unused ids left out), a fine-tuned model's in the
order of its --labels file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from frcnn.core.coco_names import is_real_class
from frcnn.core.files import IMAGE_SUFFIXES, is_url, write_bytes_atomically, written_here

LABELS, IMAGES = "labels", "images"


def yolo_classes(class_names: Sequence[str]) -> dict[int, int]:
    """Each real class's label id -> its YOLO class number (the real classes in order, from 0)."""
    real = [label for label, name in enumerate(class_names) if is_real_class(name)]
    return {label: number for number, label in enumerate(real)}


DIGITS = 6  # decimals of each fraction in a label line
_STEPS = 10 ** DIGITS


def yolo_labels(detections, width: int, height: int, class_names: Sequence[str]) -> str:
    """YOLO label lines: class number, then centre x, centre y, width, height as fractions of the picture; a
    detection of an id without a real class name has no class number and no line."""
    numbers = yolo_classes(class_names)
    lines = []
    for (x1, y1, x2, y2), label in zip(detections.boxes, detections.labels):
        if int(label) not in numbers:
            continue
        x, w = centre_and_size(x1, x2, width)
        y, h = centre_and_size(y1, y2, height)
        lines.append(f"{numbers[int(label)]} {x} {y} {w} {h}")
    return "".join(line + "\n" for line in lines)


def centre_and_size(start: float, end: float, extent: int) -> tuple[str, str]:
    """One axis of a box as the centre and size fractions written in a label, such that centre - size / 2 and
    centre + size / 2, as a reader computes them from the written digits, stay within [0, 1]."""
    start, end = np.clip(np.array([start, end], np.float64), 0, extent) / extent
    # In whole steps of the last digit, so the check below is exact; the size gives way (one step at most).
    centre, size = round((start + end) / 2 * _STEPS), round((end - start) * _STEPS)
    size = max(0, min(size, 2 * centre, 2 * (_STEPS - centre)))
    return f"{centre / _STEPS:.{DIGITS}f}", f"{size / _STEPS:.{DIGITS}f}"


def label_path(out_dir: Path, model: str, name: str) -> Path:
    return out_dir / LABELS / model / f"{name}.txt"


def image_path(out_dir: Path, model: str, name: str, source: str) -> Path:
    """Where the copy of the input picture goes: beside its labels' folder, with the input's suffix."""
    path = PurePosixPath(unquote(urlparse(source).path)) if is_url(source) else Path(source)
    suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".jpg"
    return out_dir / IMAGES / model / f"{name}{suffix}"


def old_images(out_dir: Path, model: str, name: str) -> list[Path]:
    """Copies an earlier run made of the picture of this name (with any suffix)."""
    folder = out_dir / IMAGES / model
    return [folder / f"{name}{suffix}" for suffix in sorted(IMAGE_SUFFIXES) if (folder / f"{name}{suffix}").is_file()]


def copy_replaceable(copy: Path, labels: Path, data: bytes) -> bool:
    """Whether an image copy may be written: none is there, it holds these bytes, or the label file beside it
    is one this project wrote (so the picture is the copy of an earlier run, not a user's own)."""
    try:
        return not copy.exists() or copy.read_bytes() == data or (labels.exists() and written_here(labels))
    except OSError:
        return False


def write_copy(copy: Path, data: bytes) -> None:
    """The input picture's copy, written unless it is there already (a resumed run leaves it untouched)."""
    try:
        if copy.read_bytes() == data:
            return
    except OSError:
        pass
    write_bytes_atomically(copy, data)


def write_description(out_dir: Path, model: str, class_names: Sequence[str]) -> list[Path]:
    """`classes.txt` and `data.yaml` in `labels/<model>/`; return their paths."""
    folder = out_dir / LABELS / model
    names = [name for name in class_names if is_real_class(name)]
    classes = folder / "classes.txt"
    _write_if_changed(classes, "".join(f"{name}\n" for name in names))
    root = Path(os.path.abspath(out_dir))
    # JSON strings are YAML strings: any class name is quoted safely.
    text = (f"# A YOLO dataset of {model}'s detections, written by detect_image.py --save-txt\n"
            f"path: {json.dumps(root.as_posix())}\ntrain: {IMAGES}/{model}\nval: {IMAGES}/{model}\n"
            f"nc: {len(names)}\nnames:\n" + "".join(f"  - {json.dumps(name)}\n" for name in names))
    yaml = folder / "data.yaml"
    _write_if_changed(yaml, text)
    return [classes, yaml]


def _write_if_changed(path: Path, text: str) -> None:
    """Write `text` atomically unless the file holds it already (written once per run, not once per picture)."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    write_bytes_atomically(path, data)
