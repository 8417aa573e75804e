"""COCO box scoring with pycocotools: reading a COCO-format set, turning detections into COCO results, and the
metrics. The one scorer behind evaluate.py and training's validation, so their numbers agree."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from frcnn.core.coco_names import is_real_class
from frcnn.core.detections import Detections
from frcnn.core.errors import FrcnnError

METRIC_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"]


AR100_INDEX = 8  # in COCOeval.stats: AR at 100 detections, all areas


@dataclass
class CocoSet:
    """A COCO-format set: its annotations (a pycocotools COCO) and the folder of its images."""

    coco: object
    images_dir: Path | None
    annotations: Path

    def image_ids(self, max_images: int | None) -> list[int]:
        """The images to score: all, or the first `max_images` by id (the same ones every run)."""
        ids = sorted(self.coco.getImgIds())
        return ids[:max_images] if max_images else ids



def load_set(images: Path | None, annotations: Path) -> CocoSet:
    from pycocotools.coco import COCO

    try:
        dataset = json.loads(annotations.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FrcnnError(f"{annotations}: not a readable JSON annotation file ({error})") from error
    missing = [key for key in ("images", "annotations", "categories")
               if not isinstance(dataset, dict) or key not in dataset]
    if missing:
        raise FrcnnError(f"{annotations}: not a COCO annotation file (no {', '.join(missing)})")
    if not dataset["images"]:
        raise FrcnnError(f"{annotations}: the set lists no images")
    coco = COCO()
    coco.dataset = dataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress notes: kept off the terminal
            coco.createIndex()
    except (KeyError, TypeError) as error:
        raise FrcnnError(f"{annotations}: malformed COCO annotations (missing {error})") from error
    return CocoSet(coco, images, annotations)


def check_pictures_present(data: CocoSet, image_ids: list[int]) -> str:
    """One line saying what is scored (pictures, boxes, classes); FrcnnError where more than half the pictures
    listed are not in the images folder, which is then most likely the wrong one."""
    images = data.coco.loadImgs(image_ids)
    absent = [image["file_name"] for image in images
              if data.images_dir is not None and not (data.images_dir / image["file_name"]).is_file()]
    if 2 * len(absent) > len(images):
        raise FrcnnError(f"{len(absent)} of the {len(images)} pictures {data.annotations} lists are not in "
                         f"{data.images_dir} (e.g. {absent[0]}): is --images the right folder?")
    boxes = len(data.coco.getAnnIds(imgIds=image_ids))
    classes = len(data.coco.getCatIds())
    present = f", {len(absent)} of them missing" if absent else ""
    return f"set: {len(images)} pictures{present}, {boxes} boxes, {classes} classes ({data.annotations})"



def category_map(model, coco) -> dict[int, int]:
    """Model label id → the set's category id, matched by name; every category must have a match."""
    by_name = {name.lower(): label for label, name in enumerate(model.class_names) if is_real_class(name)}
    mapping, unmatched = {}, []
    for category in coco.loadCats(coco.getCatIds()):
        label = by_name.get(category["name"].lower())
        if label is None:
            unmatched.append(category["name"])
        else:
            mapping[label] = category["id"]
    if unmatched:
        raise FrcnnError(f"categories of the set that match no class of {model.name}: {', '.join(unmatched)} "
                          f"(give the model's class names with --labels)")
    return mapping



def to_coco_results(detections: Detections, image_id: int, categories: dict[int, int]) -> list[dict]:
    """COCO results entries: [x, y, width, height] boxes, the set's category ids."""
    entries = []
    for (x1, y1, x2, y2), score, label in zip(detections.boxes, detections.scores, detections.labels):
        if int(label) in categories:
            entries.append({"image_id": image_id, "category_id": categories[int(label)],
                            "bbox": [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                            "score": round(float(score), 5)})
    return entries



def score(coco, detections: list[dict], image_ids: list[int]) -> dict[str, float | None]:
    """pycocotools' box metrics over `image_ids`, as fractions (None where the set has no such objects)."""
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {**{name: 0.0 for name in METRIC_NAMES}, "AR100": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # its own table and notes: ours is printed instead
        results = coco.loadRes(detections)
        evaluation = COCOeval(coco, results, iouType="bbox")
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [float(v) if v >= 0 else None for v in evaluation.stats]
    return {**dict(zip(METRIC_NAMES, stats[:6])), "AR100": stats[AR100_INDEX]}



def read_predictions(path: Path, coco) -> list[dict]:
    """A COCO results file, checked: a list of {image_id, category_id, bbox, score} for images of the set."""
    try:
        detections = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FrcnnError(f"{path}: not a readable COCO results file ({error})") from error
    keys = {"image_id", "category_id", "bbox", "score"}
    if not isinstance(detections, list) or not all(isinstance(d, dict) and keys <= d.keys() for d in detections):
        raise FrcnnError(f"{path}: a COCO results file is a list of objects with {', '.join(sorted(keys))}")
    unknown = {d["image_id"] for d in detections} - set(coco.getImgIds())
    if unknown:
        raise FrcnnError(f"{path}: {len(unknown)} image id(s) are not in the set, e.g. {sorted(unknown)[0]}")
    return detections
