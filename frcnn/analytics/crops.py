"""One crop per track: its best view, the detected frame with its highest score, preferring views whose box keeps
away from the frame's edge (a box cut by the edge shows part of the object)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EDGE_MARGIN = 0.01  # of the frame's shorter side: a box closer than this to an edge is cut by it


@dataclass
class BestView:
    """A track's best view so far: whether its box kept away from the edge, its score, frame and picture."""

    away_from_edge: bool
    score: float
    frame: int
    picture: np.ndarray


class BestViews:
    """Each live track's best view, kept as a copy of its box's pixels until the track ends."""

    def __init__(self, width: int, height: int):
        self.size = (width, height)
        self.margin = max(1.0, EDGE_MARGIN * min(width, height))
        self.views: dict[int, BestView] = {}

    def update(self, frame: int, picture: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
               track_ids: np.ndarray) -> None:
        """Offer this detected frame's boxes (not carried ones: their scores are a frame old)."""
        width, height = self.size
        for box, score, track_id in zip(boxes, scores.tolist(), track_ids.tolist()):
            x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
            x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
            if x2 <= x1 or y2 <= y1:
                continue
            away = bool(box[0] >= self.margin and box[1] >= self.margin and box[2] <= width - self.margin
                        and box[3] <= height - self.margin)
            current = self.views.get(track_id)
            if current is None or (away, score) > (current.away_from_edge, current.score):
                self.views[track_id] = BestView(away, score, frame, picture[y1:y2, x1:x2].copy())

    def take(self, track_id: int) -> BestView | None:
        """The ended track's best view (forgotten here)."""
        return self.views.pop(track_id, None)
