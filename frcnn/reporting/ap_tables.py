"""AP figures read off an accumulated evaluation: the headline metrics, AP per class and per object size, and the
precision-recall curve averaged over classes."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from frcnn.evaluation.coco import METRIC_NAMES
from frcnn.reporting.scoring import COCO_IOUS, Scored, mean_valid

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recall thresholds
SIZES = ("small", "medium", "large")


def coco_slice(scored: Scored) -> np.ndarray:
    """Precision at the COCO metric's ten IoU thresholds only [IoU, recall point, class, area]."""
    return scored.precision[[scored.iou_index(iou) for iou in COCO_IOUS]]


def summary(scored: Scored) -> dict[str, float | None]:
    """AP, AP50, AP75, AP per size and AR100, as pycocotools' summary computes them."""
    coco = coco_slice(scored)
    recall = scored.recall[[scored.iou_index(iou) for iou in COCO_IOUS]]
    figures = [mean_valid(coco[..., 0]), mean_valid(scored.at(0.5)), mean_valid(scored.at(0.75)),
               *(mean_valid(coco[..., scored.areas.index(size)]) for size in SIZES)]
    return {**dict(zip(METRIC_NAMES, figures)), "AR100": mean_valid(recall[..., 0])}


def ap_per_class(scored: Scored) -> dict[int, float | None]:
    """Each category's AP (IoU 0.50:0.95, all sizes); None for a class without objects in the images scored."""
    coco = coco_slice(scored)[..., 0]
    return {category: mean_valid(coco[:, :, k]) for k, category in enumerate(scored.category_ids)}


def ap_by_size(scored: Scored) -> dict[str, float | None]:
    """AP for small, medium and large objects (None where there are none)."""
    coco = coco_slice(scored)
    return {size: mean_valid(coco[..., scored.areas.index(size)]) for size in SIZES}


def pr_curve(scored: Scored, iou: float, area: str = "all") -> np.ndarray | None:
    """Precision at each of the 101 recall points, averaged over the classes with objects (None: no objects)."""
    precision = scored.at(iou, area)
    valid = (precision > -1).any(axis=0)
    return precision[:, valid].mean(axis=1) if valid.any() else None


@dataclass(frozen=True)
class ClassRow:
    """One class's line in the per-class table: its AP in each run (None: no objects of it)."""

    category_id: int
    name: str
    supercategory: str
    objects: int
    ap: tuple[float | None, ...]

    @property
    def difference(self) -> float | None:
        """The last run's AP minus the first's (None with one run, or where a run has no figure)."""
        if len(self.ap) < 2 or None in self.ap:
            return None
        return self.ap[-1] - self.ap[0]


def class_rows(per_run: list[dict[int, float | None]], categories: list[dict],
               objects: dict[int, int]) -> list[ClassRow]:
    """A row per category, sorted by the difference between the runs (one run: by AP), largest first."""
    rows = [ClassRow(c["id"], c["name"], c.get("supercategory", ""), objects.get(c["id"], 0),
                     tuple(aps.get(c["id"]) for aps in per_run)) for c in categories]

    def key(row: ClassRow) -> tuple:
        figure = row.difference if len(row.ap) > 1 else row.ap[0]
        return (figure is None, -(figure or 0.0), row.name)

    return sorted(rows, key=key)


def class_csv(rows: list[ClassRow], labels: list[str]) -> str:
    """The per-class table as CSV: class, supercategory, objects, the AP of each run (percent) and the difference."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    difference = [f"{labels[-1]} - {labels[0]}"] if len(labels) > 1 else []
    writer.writerow(["class", "supercategory", "objects", *(f"AP {label}" for label in labels), *difference])
    for row in rows:
        cells = ["" if ap is None else f"{100 * ap:.2f}" for ap in row.ap]
        if difference:
            cells.append("" if row.difference is None else f"{100 * row.difference:+.2f}")
        writer.writerow([row.name, row.supercategory, row.objects, *cells])
    return out.getvalue()
