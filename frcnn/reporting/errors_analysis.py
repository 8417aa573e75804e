"""The COCO toolkit's error analysis, on pycocotools' COCOeval: the precision-recall curve after each kind of error is
forgiven in turn, so the area between two curves is what that kind of error costs.

C75, C50: the curves at IoU 0.75 and 0.5. Loc: at IoU 0.1 (poorly placed boxes forgiven; duplicates still count).
Sim: also at 0.1, a detection lying on an object of another class of the same supercategory is ignored rather than
counted false. Oth: the same for an object of any other class. BG: every false positive left removed (precision 1 up
to the recall reached). FN: every object found (precision 1 up to recall 1)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from frcnn.reporting.scoring import Scored, evaluate, mean_valid

STEPS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
ERROR_AREAS = ("all", "small")
FORGIVING_IOU = 0.1


@dataclass
class ErrorAnalysis:
    """Per object size, precision [step, recall point, class] (-1: class without objects), each step at least the
    one before it."""

    precision: dict[str, np.ndarray]
    category_ids: list[int]

    def curves(self, area: str) -> np.ndarray | None:
        """Precision [step, recall point], averaged over the classes with objects of this size (None: none)."""
        steps = self.precision[area]
        valid = (steps[0] > -1).any(axis=0)
        return steps[:, :, valid].mean(axis=2) if valid.any() else None

    def ap(self, area: str) -> dict[str, float | None]:
        """Each step's AP: the area under its curve."""
        return {step: mean_valid(self.precision[area][index]) for index, step in enumerate(STEPS)}

    def class_ap(self, area: str, category_id: int) -> dict[str, float | None]:
        """Each step's AP for one class."""
        k = self.category_ids.index(category_id)
        return {step: mean_valid(self.precision[area][index, :, k]) for index, step in enumerate(STEPS)}


def analyse_errors(truth: dict, detections: list[dict], image_ids: list[int], scored: Scored) -> ErrorAnalysis:
    """The error analysis of `detections` over `image_ids`; `scored` is their evaluation at IoU 0.75, 0.5 and 0.1."""
    similar = evaluate(forgiving(truth, detections, image_ids, same_supercategory=True), detections, image_ids,
                       np.array([FORGIVING_IOU]), ERROR_AREAS)
    other = evaluate(forgiving(truth, detections, image_ids, same_supercategory=False), detections, image_ids,
                     np.array([FORGIVING_IOU]), ERROR_AREAS)
    precision = {}
    for area in ERROR_AREAS:
        oth = other.at(FORGIVING_IOU, area)
        valid = scored.at(0.5, area) > -1
        steps = np.stack([scored.at(0.75, area), scored.at(0.5, area), scored.at(FORGIVING_IOU, area),
                          similar.at(FORGIVING_IOU, area), oth, np.where(valid, (oth > 0).astype(float), -1.0),
                          np.where(valid, 1.0, -1.0)])
        # Forgiving more never lowers a curve in principle; the cumulative maximum keeps the stacked plot honest
        # where interpolation would let one dip below the step before it.
        precision[area] = np.maximum.accumulate(steps, axis=0)
    return ErrorAnalysis(precision, scored.category_ids)


def supercategories(categories: list[dict]) -> dict[int, str]:
    """Each category's supercategory; one without its own is alone in it."""
    return {c["id"]: c.get("supercategory") or f"#{c['id']}" for c in categories}


def forgiving(truth: dict, detections: list[dict], image_ids: list[int], same_supercategory: bool) -> dict:
    """The ground truth plus, for each object and each other class detected in its picture (of the same
    supercategory, or any), an ignored crowd copy under that class: a detection lying on it is then neither right
    nor wrong. Crowd regions match at the share of the detection they cover, as in the COCO toolkit."""
    family = supercategories(truth["categories"])
    wanted = set(image_ids)
    detected: dict[int, set[int]] = defaultdict(set)
    for detection in detections:
        if detection["image_id"] in wanted:
            detected[detection["image_id"]].add(detection["category_id"])
    next_id = max((a["id"] for a in truth["annotations"]), default=0) + 1
    copies = []
    for annotation in truth["annotations"]:
        own = annotation["category_id"]
        for other in sorted(detected.get(annotation["image_id"], ())):
            if other != own and (not same_supercategory or family.get(other) == family.get(own)):
                copies.append({**annotation, "id": next_id, "category_id": other, "iscrowd": 1})
                next_id += 1
    return {**truth, "annotations": truth["annotations"] + copies}


def errors_csv(analyses: dict[str, ErrorAnalysis]) -> str:
    """Each run's step APs (percent) per object size, one line each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "objects", *STEPS])
    for label, analysis in analyses.items():
        for area in ERROR_AREAS:
            aps = analysis.ap(area)
            writer.writerow([label, area, *("" if v is None else f"{100 * v:.2f}" for v in aps.values())])
    return out.getvalue()
