"""Detections matched to the objects of each picture, at one score and one IoU: what the confusion matrix counts and
what the gallery's per-picture score (F1) is made of."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from frcnn.core.boxes import greedy_pairs, overlap_matrix, xywh_to_xyxy

DETECTED_SCORE = 0.5  # a detection counts as made from this score on (the gallery draws the same ones)
MATCH_IOU = 0.5


@dataclass
class ImageMatch:
    """One picture: its objects and its detections (score >= DETECTED_SCORE, x y w h boxes), and the pairs matched
    (object index, detection index), the same class first, then across classes."""

    true_boxes: np.ndarray
    true_labels: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    pairs: list[tuple[int, int]]

    @property
    def correct(self) -> int:
        """The pairs of the same class: the true positives."""
        return sum(int(self.true_labels[t] == self.labels[d]) for t, d in self.pairs)

    def f1(self) -> float:
        """2·TP / (2·TP + FP + FN); 1 for a picture with neither objects nor detections."""
        total = len(self.true_labels) + len(self.labels)
        return 1.0 if total == 0 else 2 * self.correct / total


def match_image(objects: list[dict], detections: list[dict]) -> ImageMatch:
    """Match one picture's detections to its objects; detections on crowd regions are left out."""
    crowd = np.array([o["bbox"] for o in objects if o.get("iscrowd")], float).reshape(-1, 4)
    objects = [o for o in objects if not o.get("iscrowd")]
    detections = [d for d in detections if d["score"] >= DETECTED_SCORE]
    true_boxes = np.array([o["bbox"] for o in objects], float).reshape(-1, 4)
    true_labels = np.array([o["category_id"] for o in objects], int)
    boxes = np.array([d["bbox"] for d in detections], float).reshape(-1, 4)
    labels = np.array([d["category_id"] for d in detections], int)
    scores = np.array([d["score"] for d in detections], float)
    iou = overlap_matrix(xywh_to_xyxy(true_boxes), xywh_to_xyxy(boxes))
    pairs = greedy_pairs(iou, MATCH_IOU, allowed=true_labels[:, None] == labels[None, :])
    greedy_pairs(iou, MATCH_IOU, pairs=pairs)
    keep = _off_crowd(boxes, crowd, {d for _, d in pairs})
    index = {old: new for new, old in enumerate(np.flatnonzero(keep))}
    return ImageMatch(true_boxes, true_labels, boxes[keep], scores[keep], labels[keep],
                      [(t, index[d]) for t, d in pairs])


def _off_crowd(boxes: np.ndarray, crowd: np.ndarray, matched: set[int]) -> np.ndarray:
    """Which detections to keep: those matched, and the others unless half of them lies on a crowd region."""
    keep = np.ones(len(boxes), bool)
    if len(crowd) and len(boxes):
        x1 = np.maximum(boxes[:, None, 0], crowd[None, :, 0])
        y1 = np.maximum(boxes[:, None, 1], crowd[None, :, 1])
        x2 = np.minimum(boxes[:, None, 0] + boxes[:, None, 2], crowd[None, :, 0] + crowd[None, :, 2])
        y2 = np.minimum(boxes[:, None, 1] + boxes[:, None, 3], crowd[None, :, 1] + crowd[None, :, 3])
        covered = (np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)).max(axis=1)
        keep = covered < 0.5 * np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
        keep[list(matched)] = True
    return keep


def match_images(truth: dict, detections: list[dict], image_ids: list[int]) -> dict[int, ImageMatch]:
    """Each picture's match."""
    objects, found = defaultdict(list), defaultdict(list)
    for annotation in truth["annotations"]:
        objects[annotation["image_id"]].append(annotation)
    for detection in detections:
        found[detection["image_id"]].append(detection)
    return {image_id: match_image(objects[image_id], found[image_id]) for image_id in image_ids}
