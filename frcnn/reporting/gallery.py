"""The pictures where two runs differ most (or, for one run, where it does worst), drawn beside the ground truth."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from frcnn.core.detections import Detections
from frcnn.core.errors import FrcnnError
from frcnn.core.files import read_image, write_image
from frcnn.core.log import log
from frcnn.core.specs import DrawOptions
from frcnn.drawing import draw_detections, titled_panel
from frcnn.reporting.matching import DETECTED_SCORE, ImageMatch

PANEL_SIDE = 640  # the longest side of each panel, so a gallery of large photos stays light
_GALLERY_NAME = re.compile(r"^\d{2,}_.*\.jpg$")


@dataclass(frozen=True)
class GalleryPicture:
    """One picture of the gallery: the JPEG written, which image it shows, and each run's F1 there."""

    path: Path
    image_id: int
    file_name: str
    f1: tuple[float, ...]


def pick(scores: list[dict[int, float]], count: int) -> list[int]:
    """Two runs: the `count` images whose F1 changes most, either way; one run: those it scores worst. Images
    where nothing changes (or, for one run, where it is perfect) are left out."""
    if len(scores) == 2:
        change = {i: scores[1][i] - scores[0][i] for i in scores[0] if i in scores[1]}
        ranked = sorted((i for i in change if change[i] != 0), key=lambda i: (-abs(change[i]), i))
    else:
        ranked = sorted((i for i in scores[0] if scores[0][i] < 1), key=lambda i: (scores[0][i], i))
    return ranked[:count]


def names_by_id(categories: list[dict]) -> list[str]:
    """Class names indexed by category id, as the drawing code reads them."""
    names = ["N/A"] * (max((c["id"] for c in categories), default=0) + 1)
    for category in categories:
        names[category["id"]] = category["name"]
    return names


def _as_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, scale: float) -> Detections:
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1) * scale
    return Detections(corners.reshape(-1, 4).astype(np.float32), scores.astype(np.float32), labels.astype(np.int64))


def draw(picture: np.ndarray, file_name: str, matches: list[ImageMatch], labels: list[str],
         names: list[str]) -> np.ndarray:
    """Ground truth, then each run's detections (score >= DETECTED_SCORE), side by side, each panel titled."""
    scale = min(1.0, PANEL_SIDE / max(picture.shape[:2]))
    if scale < 1:
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    first = matches[0]
    truth = _as_detections(first.true_boxes, np.ones(len(first.true_labels)), first.true_labels, scale)
    # Captions wrap: a narrow picture's panel is narrower than its caption.
    panels = [titled_panel(draw_detections(picture.copy(), truth, names, DrawOptions(hide_conf=True)),
                           [f"ground truth: {len(truth)} objects", file_name], wrap=True)]
    for match, label in zip(matches, labels):
        found = _as_detections(match.boxes, match.scores, match.labels, scale)
        wrong, missed = len(match.labels) - match.correct, len(match.true_labels) - match.correct
        panels.append(titled_panel(draw_detections(picture.copy(), found, names),
                                   [f"{label}: F1 {match.f1():.2f}",
                                    f"{match.correct} right, {wrong} false, {missed} missed (score >= "
                                    f"{DETECTED_SCORE:g})"], wrap=True))
    return side_by_side(panels)


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels in a row, the shorter ones padded at the top (title bars differ by a few pixels with their text)."""
    height = max(panel.shape[0] for panel in panels)
    return np.hstack([np.pad(p, ((height - p.shape[0], 0), (0, 0), (0, 0)), constant_values=32) for p in panels])


def write_gallery(folder: Path, images_dir: Path, images: dict[int, dict], picked: list[int],
                  matches: list[dict[int, ImageMatch]], labels: list[str], names: list[str]) -> list[GalleryPicture]:
    """Draw the picked images into `folder` as JPEGs, in order; an image that cannot be read is skipped, said."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id in picked:
        file_name = images[image_id]["file_name"]
        try:
            picture = read_image(images_dir / file_name, apply_orientation=False)  # boxes refer to stored pixels
        except FrcnnError as error:
            log.warning(f"warning: {error} (left out of the gallery)")
            continue
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(file_name).stem)[:60]
        path = folder / f"{len(written) + 1:02d}_{stem}.jpg"
        write_image(path, draw(picture, file_name, [m[image_id] for m in matches], labels, names), quality=85)
        written.append(GalleryPicture(path, image_id, file_name, tuple(m[image_id].f1() for m in matches)))
    for stale in folder.iterdir():  # an earlier, longer gallery's pictures
        if _GALLERY_NAME.match(stale.name) and stale not in {p.path for p in written}:
            stale.unlink()
    return written
