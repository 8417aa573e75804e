"""The confusion matrix between classes at IoU 0.5, with a background row (false detections) and a background column
(missed objects)."""

from __future__ import annotations

import numpy as np

from frcnn.reporting.matching import ImageMatch


def confusion_counts(matches: dict[int, ImageMatch], category_ids: list[int]) -> np.ndarray:
    """Counts [true class, detected class]; the last row and column are the background."""
    position = {category: index for index, category in enumerate(category_ids)}
    background = len(category_ids)
    counts = np.zeros((background + 1, background + 1), np.int64)
    for match in matches.values():
        paired_true = {t for t, _ in match.pairs}
        paired_found = {d for _, d in match.pairs}
        for t, d in match.pairs:
            counts[position[int(match.true_labels[t])], position[int(match.labels[d])]] += 1
        for t, label in enumerate(match.true_labels):
            if t not in paired_true:
                counts[position[int(label)], background] += 1
        for d, label in enumerate(match.labels):
            if d not in paired_found:
                counts[background, position[int(label)]] += 1
    return counts


def normalise_rows(counts: np.ndarray) -> np.ndarray:
    """Each row as fractions of its total: where the objects of a class went (the last row: which classes the
    false detections claimed); a row with nothing in it stays 0."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, float), where=totals > 0)
