"""Box overlap and one-to-one matching: the one place scoring, slicing, tracking scores and the benchmarks decide
how much two boxes overlap and which boxes pair up."""

from __future__ import annotations

import numpy as np


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO's x y w h boxes as corners x1 y1 x2 y2."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def overlap_matrix(a: np.ndarray, b: np.ndarray, match: str = "iou") -> np.ndarray:
    """The overlap of every box of `a` with every box of `b` (x1 y1 x2 y2): intersection over union ('iou') or over
    the smaller of the two areas ('ios'). Boxes without area overlap nothing."""
    if match not in ("iou", "ios"):
        raise ValueError(f"unknown match '{match}' (iou or ios)")
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    denominator = area_a + area_b - intersection if match == "iou" else np.minimum(area_a, area_b)
    return np.divide(intersection, denominator, out=np.zeros_like(intersection), where=denominator > 0)


def greedy_pairs(overlaps: np.ndarray, threshold: float, allowed: np.ndarray | None = None,
                 pairs: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs whose overlap is at least `threshold`, the largest overlap first, among the
    `allowed` cells and the rows and columns not already in `pairs` (which is extended and returned)."""
    pairs = [] if pairs is None else pairs
    used_rows, used_cols = {r for r, _ in pairs}, {c for _, c in pairs}
    eligible = overlaps >= threshold
    if allowed is not None:
        eligible &= allowed
    rows, cols = np.nonzero(eligible)
    for index in np.argsort(-overlaps[rows, cols], kind="stable"):
        row, col = int(rows[index]), int(cols[index])
        if row not in used_rows and col not in used_cols:
            pairs.append((row, col))
            used_rows.add(row)
            used_cols.add(col)
    return pairs
