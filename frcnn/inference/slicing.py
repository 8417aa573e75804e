"""Sliced inference for small objects: a predictor that wraps a predictor.

The picture is cut into overlapping square tiles; each tile is enlarged to the model's input size by the inner
predictor, so objects a few pixels tall in the whole picture become large enough to detect. Boxes are shifted back
to picture coordinates and merged, per class, with those of one pass over the whole picture (which keeps the large
objects that tiles cut apart). Tiles are views of the decoded picture: only the ones in flight are ever copied.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms

from frcnn.core.boxes import overlap_matrix
from frcnn.core.detections import Detections, Prediction, SliceSettings
from frcnn.core.specs import SliceOptions
from frcnn.inference.predictor import Picture, Predictor, as_pictures

# How many tiles go to the runtime in one call: CUDA runs a batch in one go; the CPU runtimes take one picture
# per call anyway, so a small number only bounds the memory of tiles in flight.
_TILES_PER_CALL = {"cuda": 8, "cpu": 2}
_AUTO_MIN_TILE = 256


def auto_tile_size(width: int, height: int, overlap: float) -> int:
    """A tile side for `--slice auto`: two overlapping tiles across the shorter side, at least 256 px, a multiple of
    32."""
    side = min(width, height) / (2.0 - overlap)
    # Rounded up: rounding down can leave the shorter side one tile short, and a third row of tiles.
    return max(_AUTO_MIN_TILE, math.ceil(side / 32.0) * 32)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Where tiles start along one side: a step of tile minus the overlap, the last one shifted inward to fit."""
    if length <= tile:
        return [0]
    step = max(1, tile - int(tile * overlap))
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile] if starts[-1] != length - tile else starts


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The tiles covering a width×height picture as (x, y, tile width, tile height), row by row."""
    tile_w, tile_h = min(tile, width), min(tile, height)
    return [(x, y, tile_w, tile_h) for y in tile_starts(height, tile, overlap)
            for x in tile_starts(width, tile, overlap)]


def merge_detections(detections: Detections, method: str = "nms", match: str = "iou",
                     threshold: float = 0.5) -> Detections:
    """Merge boxes of one class that match above `threshold`, best score first.

    nms keeps the best box of each match; greedy-nmm replaces it by the union of the boxes it matched (each
    compared with the best box as found), with the best score. Boxes of different classes never merge.
    """
    if method not in ("nms", "greedy-nmm"):
        raise ValueError(f"unknown merge '{method}' (nms or greedy-nmm)")
    if len(detections) < 2:
        return detections
    if method == "nms" and match == "iou":  # torchvision's compiled NMS: the same rule, much faster
        keep = batched_nms(torch.from_numpy(detections.boxes).float(), torch.from_numpy(detections.scores).float(),
                           torch.from_numpy(detections.labels), threshold).numpy()
        return detections[keep]
    order = np.argsort(-detections.scores, kind="stable")
    boxes, labels = detections.boxes[order], detections.labels[order]
    alive = np.ones(len(order), bool)
    kept, merged_boxes = [], []
    for i in range(len(order)):
        if not alive[i]:
            continue
        alive[i] = False
        candidates = np.flatnonzero(alive & (labels == labels[i]))
        matched = candidates[overlap_matrix(boxes[i], boxes[candidates], match)[0] > threshold]
        alive[matched] = False
        group = boxes[np.concatenate([[i], matched])]
        merged_boxes.append(boxes[i] if method == "nms" else
                            np.concatenate([group[:, :2].min(axis=0), group[:, 2:].max(axis=0)]))
        kept.append(order[i])
    kept = np.array(kept)
    return Detections(np.array(merged_boxes, dtype=detections.boxes.dtype).reshape(-1, 4), detections.scores[kept],
                      detections.labels[kept])


class SlicedPredictor:
    """Runs an inner predictor on overlapping tiles (and once on the whole picture) and merges the boxes."""

    def __init__(self, inner: Predictor, options: SliceOptions):
        self.inner = inner
        self.options = options
        self.name = inner.name
        self.class_names = inner.class_names
        self.tiles_per_call = _TILES_PER_CALL.get(inner.model.device.type, 1)
        self.slicing = SliceSettings(options.size or "auto", options.overlap, options.full_pass, options.merge,
                                     options.match, options.match_threshold)
        self.settings = inner.settings.with_slice(self.slicing)

    def __call__(self, images: Sequence[Picture]) -> list[Prediction]:
        """One Prediction per picture: BGR arrays, or paths read as the scripts read them."""
        return [self._predict_one(image) for image in as_pictures(images)]

    def tile_size(self, width: int, height: int) -> int:
        return self.options.size or auto_tile_size(width, height, self.options.overlap)

    def _predict_one(self, image: np.ndarray) -> Prediction:
        height, width = image.shape[:2]
        size = self.tile_size(width, height)
        if width <= size and height <= size:  # one tile is the whole picture: exactly the plain run
            (prediction,) = self.inner([image])
            prediction.settings = self.inner.settings.with_slice(
                replace(self.slicing, size=size, tiles=1, full_pass=False))
            return prediction
        start = time.perf_counter()
        grid = tile_grid(width, height, size, self.options.overlap)
        parts = []
        if self.options.full_pass:
            parts.append(self.inner([image])[0].detections)
        for first in range(0, len(grid), self.tiles_per_call):
            chunk = grid[first:first + self.tiles_per_call]
            views = [image[y:y + h, x:x + w] for x, y, w, h in chunk]  # views: no copy of the picture
            for (x, y, _, _), prediction in zip(chunk, self.inner(views)):
                parts.append(prediction.detections.shifted(x, y))
        merged = merge_detections(Detections.concatenate(parts), self.options.merge, self.options.match,
                                  self.options.match_threshold)
        milliseconds = (time.perf_counter() - start) * 1000.0
        return Prediction(self.name, self.class_names, merged, milliseconds,
                          self.inner.settings.with_slice(replace(self.slicing, size=size, tiles=len(grid))))
