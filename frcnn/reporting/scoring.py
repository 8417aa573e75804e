"""pycocotools' COCOeval run the way the plots need it: every IoU threshold of the COCO metric and 0.1, every object
size, up to 100 detections per image; on a copy of the ground truth that the error analysis may extend."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

COCO_IOUS = np.linspace(0.5, 0.95, 10)
ALL_IOUS = np.append(COCO_IOUS, 0.1)  # 0.1: where a detection in roughly the right place counts (the Loc step)
AREAS = {"all": (0, 1e10), "small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e10)}
MAX_DETECTIONS = 100


@dataclass
class Scored:
    """An accumulated COCOeval: precision [IoU, recall point, class, area], recall [IoU, class, area]; -1 where a
    class has no object of that size."""

    precision: np.ndarray
    recall: np.ndarray
    ious: np.ndarray
    areas: list[str]
    category_ids: list[int]

    def at(self, iou: float, area: str = "all") -> np.ndarray:
        """Precision [recall point, class] at one IoU threshold and object size."""
        return self.precision[self.iou_index(iou), :, :, self.areas.index(area)]

    def iou_index(self, iou: float) -> int:
        return int(np.flatnonzero(np.isclose(self.ious, iou))[0])


def ground_truth(dataset: dict) -> dict:
    """A copy of a COCO dataset whose annotations all have what COCOeval reads (area, iscrowd)."""
    annotations = []
    for annotation in dataset["annotations"]:
        width, height = annotation["bbox"][2:4]
        annotations.append({**annotation, "area": annotation.get("area", width * height),
                            "iscrowd": int(annotation.get("iscrowd", 0))})
    return {"images": dataset["images"], "categories": dataset["categories"], "annotations": annotations}


def results_dataset(truth: dict, detections: list[dict]) -> dict:
    """COCO results as a dataset over the same images and categories (ids from 1: COCOeval reads 0 as no match)."""
    annotations = [{"id": number, "image_id": d["image_id"], "category_id": d["category_id"], "bbox": list(d["bbox"]),
                    "score": float(d["score"]), "area": float(d["bbox"][2] * d["bbox"][3]), "iscrowd": 0}
                   for number, d in enumerate(detections, start=1)]
    return {"images": truth["images"], "categories": truth["categories"], "annotations": annotations}


def coco_of(dataset: dict):
    """A pycocotools COCO over `dataset`, indexed quietly."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate(truth: dict, detections: list[dict], image_ids: list[int], ious: np.ndarray = ALL_IOUS,
             areas: tuple[str, ...] = tuple(AREAS)) -> Scored:
    """COCOeval of `detections` against `truth` over `image_ids`, accumulated."""
    from pycocotools.cocoeval import COCOeval

    evaluation = COCOeval(coco_of(truth), coco_of(results_dataset(truth, detections)), iouType="bbox")
    evaluation.params.imgIds = list(image_ids)
    evaluation.params.iouThrs = np.asarray(ious, dtype=float)
    evaluation.params.areaRng = [list(AREAS[name]) for name in areas]
    evaluation.params.areaRngLbl = list(areas)
    evaluation.params.maxDets = [MAX_DETECTIONS]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports its progress on stdout
        evaluation.evaluate()
        evaluation.accumulate()
    return Scored(evaluation.eval["precision"][..., 0], evaluation.eval["recall"][..., 0], np.asarray(ious),
                  list(areas), list(evaluation.params.catIds))


def mean_valid(values: np.ndarray) -> float | None:
    """The mean of the entries that are not -1 (None where there are none): COCO's way of averaging."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None
