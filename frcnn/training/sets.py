"""Labelled sets as training sees them, whatever their file format: pictures with checked boxes and labels, the
class names, and what was wrong with the data (reported once, before any model is built).

No PyTorch here: a bad set is reported at once.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frcnn.core.errors import FrcnnError
from frcnn.core.files import decode_picture, read_bytes
from frcnn.core.progress import progress_bar

BACKGROUND = "__background__"
_PROGRESS_FROM = 1000  # pictures: a set this large shows a progress bar while its pictures are checked
_NAMED_AT_MOST = 10  # unreadable pictures named in the warning; the rest are counted
LISTED_CLASSES = 12  # a set of this many classes or fewer has its box count per class in the summary
_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass
class Sample:
    """One picture: its file, id (in the set's COCO scoring), size and boxes (x1 y1 x2 y2 pixels) with labels."""

    path: str
    image_id: int
    width: int
    height: int
    boxes: np.ndarray  # N x 4 float32, inside the picture, of positive width and height
    labels: np.ndarray  # N int64: model labels, 1..classes (0 is the background)
    # Objects left out of training that scoring ignores (Pascal VOC's `difficult`): a detection of one is neither a
    # hit nor a false positive, and missing one is no miss.
    ignored_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ignored_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class LabelledSet:
    """A set's pictures and classes; label i (1-based) is class_names[i] and the set's category category_ids[i]."""

    role: str  # "train" or "val", for messages
    class_names: list[str]  # [BACKGROUND, first class, ...]
    category_ids: list[int]  # category_ids[label]: the category id scoring uses; [0] is unused
    samples: list[Sample]
    oriented: bool  # decode with EXIF orientation (YOLO labels refer to turned pictures, COCO boxes to stored ones)
    coco: object | None = None  # the set's own pycocotools COCO; None: made from the samples when scored

    def box_count(self) -> int:
        return sum(len(sample.labels) for sample in self.samples)

    def root(self) -> Path:
        """The deepest folder holding every picture (scoring names pictures relative to it)."""
        if not self.samples:
            return Path(".")
        return Path(os.path.commonpath([os.path.dirname(os.path.abspath(s.path)) for s in self.samples]))

    def describe(self) -> str:
        """One line: pictures (those without boxes too), boxes, and the classes they fall in."""
        background = sum(1 for sample in self.samples if not len(sample.labels))
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *(s.labels for s in self.samples)]),
                             minlength=len(self.class_names))
        classes = len(self.class_names) - 1
        present = sum(1 for label in range(1, len(self.class_names)) if counts[label])
        line = (f"{self.role}: {len(self.samples)} pictures ({background} background, without boxes), "
                f"{self.box_count()} boxes in {present} of {classes} classes")
        if classes <= LISTED_CLASSES:
            line += " (" + ", ".join(f"{name} {counts[label]}" for label, name in enumerate(self.class_names)
                                     if label) + ")"
        ignored = sum(len(sample.ignored_labels) for sample in self.samples)
        return line + (f"; {ignored} difficult objects: not learnt, ignored in scoring" if ignored else "")


@dataclass
class Findings:
    """What was wrong with a set's data and was dropped or repaired (errors are raised instead)."""

    role: str
    unreadable: list[str] = field(default_factory=list)
    zero_area: int = 0
    outside: int = 0
    clipped: int = 0
    notes: list[str] = field(default_factory=list)  # other warnings, one line each
    box_pictures: dict[str, list[str]] = field(default_factory=dict)  # a few pictures of each kind of box fix

    def note_boxes(self, kind: str, count: int, picture: str) -> None:
        """Count `count` boxes fixed in one way (zero_area, outside, clipped) and remember the picture's name."""
        if not count:
            return
        setattr(self, kind, getattr(self, kind) + count)
        named = self.box_pictures.setdefault(kind, [])
        if picture and len(named) <= _NAMED_AT_MOST and picture not in named:
            named.append(picture)

    def _box_part(self, kind: str, what: str) -> str:
        named = self.box_pictures.get(kind, [])
        shown = ", ".join(named[:_NAMED_AT_MOST]) + (" ..." if len(named) > _NAMED_AT_MOST else "")
        return f"{getattr(self, kind)} {what}" + (f" ({shown})" if shown else "")

    def warnings(self) -> list[str]:
        """One line per kind of problem."""
        lines = []
        if self.unreadable:
            named = ", ".join(self.unreadable[:_NAMED_AT_MOST])
            more = f" and {len(self.unreadable) - _NAMED_AT_MOST} more" if len(self.unreadable) > _NAMED_AT_MOST else ""
            count = len(self.unreadable)
            lines.append(f"{self.role}: {count} picture(s) missing or unreadable, skipped: {named}{more}")
        parts = [self._box_part(kind, what) for kind, what in (("zero_area", "of zero area dropped"),
                                                                ("outside", "outside the picture dropped"),
                                                                ("clipped", "clipped to the picture"))
                 if getattr(self, kind)]
        if parts:
            lines.append(f"{self.role}: boxes " + ", ".join(parts))
        return lines + [f"{self.role}: {note}" for note in self.notes]


def picture_size(path: Path, oriented: bool) -> tuple[int, int] | None:
    """A picture's width and height as training decodes it (None: missing or unreadable), from its header where
    Pillow reads it, else by decoding it with OpenCV (which reads a few more formats)."""
    if not path.is_file():
        return None
    size = _header_size(path, oriented)
    if size is not None:
        return size
    try:
        image = decode_picture(read_bytes(path), path, apply_orientation=oriented)
    except FrcnnError:
        return None
    return image.shape[1], image.shape[0]


def _header_size(path: Path, oriented: bool) -> tuple[int, int] | None:
    from PIL import Image  # torchvision's dependency; reads the header only

    try:
        with Image.open(path) as picture:
            width, height = picture.size
            turned = oriented and picture.getexif().get(_EXIF_ORIENTATION) in _TURNED
    except Exception:  # noqa: BLE001  Pillow fails in many ways on odd files
        return None
    return (height, width) if turned else (width, height)


def checking(items: list, role: str) -> Iterable:
    """`items`, with a progress bar on stderr for large sets (every picture's header is read)."""
    return progress_bar(items, desc=f"checking {role} pictures", unit="img", leave=False,
                        disable=len(items) < _PROGRESS_FROM)


def checked_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int, findings: Findings,
                  picture: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x1 y1 x2 y2) clipped to the picture; those of zero area, or wholly outside, dropped and counted (with
    the picture's name, so a warning can point at a few)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64)
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    outside = ~empty & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    moved = ~empty & ~outside & np.any(clipped != boxes, axis=1)
    name = Path(picture).name
    findings.note_boxes("zero_area", int(empty.sum()), name)
    findings.note_boxes("outside", int(outside.sum()), name)
    findings.note_boxes("clipped", int(moved.sum()), name)
    keep = ~empty & ~outside
    return clipped[keep], labels[keep]


def check_usable(labelled: LabelledSet, origin: str, findings: Findings) -> None:
    """Raise FrcnnError for a set with nothing to learn or score, or whose pictures are mostly missing (a wrong
    images folder); note the classes without boxes."""
    if not labelled.samples:
        raise FrcnnError(f"{origin}: the {labelled.role} set has no readable pictures")
    listed = len(labelled.samples) + len(findings.unreadable)
    if 2 * len(findings.unreadable) > listed:
        raise FrcnnError(f"{origin}: {len(findings.unreadable)} of the {listed} pictures the {labelled.role} set "
                          f"lists are missing or unreadable (e.g. {findings.unreadable[0]}): is the images folder "
                          f"right?")
    if labelled.role != "train":
        return
    if labelled.box_count() == 0:
        raise FrcnnError(f"{origin}: the training set has no boxes to learn from")
    counts = np.bincount(np.concatenate([s.labels for s in labelled.samples]), minlength=len(labelled.class_names))
    empty = [name for label, name in enumerate(labelled.class_names) if label and not counts[label]]
    if empty:
        findings.notes.append(f"no boxes of {len(empty)} class(es), which it cannot learn: {', '.join(empty)}")


def labels_by_name(class_names: Sequence[str], names: Sequence[str], origin: str) -> list[int]:
    """For each of `names` (a validation set's classes), its label among the training set's `class_names`."""
    known = {name: label for label, name in enumerate(class_names) if label}
    strangers = [name for name in names if name not in known]
    if strangers:
        raise FrcnnError(f"{origin}: the validation set has classes the training set does not: {', '.join(strangers)}")
    return [known[name] for name in names]


def split_off(labelled: LabelledSet, fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
    """A seeded random `fraction` of the pictures (at least one) held out for validation, and the rest."""
    count = len(labelled.samples)
    held = max(1, round(fraction * count))
    if count - held < 1:
        raise FrcnnError(f"the training set has only {count} picture(s), too few to hold some out for validation: "
                          f"give a validation set (--val-images and --val-annotations, or --val-data), "
                          f"or --val-fraction 0")
    chosen = set(np.random.default_rng(seed).permutation(count)[:held].tolist())
    parts = [[s for i, s in enumerate(labelled.samples) if (i in chosen) == held_out] for held_out in (False, True)]
    return tuple(LabelledSet(role, labelled.class_names, labelled.category_ids, samples, labelled.oriented)
                 for role, samples in zip(("train", "val"), parts))


def coco_for_scoring(labelled: LabelledSet):
    """The set's pycocotools COCO: its own for a COCO-format set, else one made from its samples (pictures named
    relative to `labelled.root()`; ignored objects as crowd regions, which pycocotools counts neither as misses nor,
    when detected, as false positives)."""
    from pycocotools.coco import COCO

    if labelled.coco is not None:
        return labelled.coco
    root = labelled.root()
    images, annotations = [], []
    for sample in labelled.samples:
        images.append({"id": sample.image_id, "file_name": Path(os.path.relpath(sample.path, root)).as_posix(),
                       "width": sample.width, "height": sample.height})
        for boxes, labels, crowd in ((sample.boxes, sample.labels, 0),
                                     (sample.ignored_boxes, sample.ignored_labels, 1)):
            for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
                annotations.append({"id": len(annotations) + 1, "image_id": sample.image_id,
                                    "category_id": labelled.category_ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd})
    categories = [{"id": labelled.category_ids[label], "name": name}
                  for label, name in enumerate(labelled.class_names) if label]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' "creating index..."
        coco.createIndex()
    labelled.coco = coco
    return coco
