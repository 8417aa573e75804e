"""Tracking scored against MOT-format ground truth: IDF1, MOTA and HOTA (the `trackers` package's evaluation), and
how well boxes carried between detected frames fit the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from frcnn.core.boxes import overlap_matrix


def read_truth(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """MOT Challenge lines (1-based frame, id, x, y, w, h, ...) as frame index (0-based) -> ids, x1 y1 x2 y2 boxes."""
    frames: dict[int, list[tuple[int, list[float]]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            frame, ident, x, y, w, h = (float(v) for v in line.split(",")[:6])
            frames.setdefault(int(frame) - 1, []).append((int(ident), [x, y, x + w, y + h]))
    return {frame: (np.array([i for i, _ in rows]), np.array([b for _, b in rows], np.float64).reshape(-1, 4))
            for frame, rows in frames.items()}


def read_tracks(path: Path) -> list[tuple[int, bool, np.ndarray, np.ndarray]]:
    """detect_video.py's JSON Lines (one model): frame, whether it was detected, track ids and boxes of the
    detections that belong to a track."""
    frames = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "frame" not in record:
            continue
        detections = [d for d in record["results"][0]["detections"] if d.get("track_id") is not None]
        frames.append((record["frame"], record["detected"], np.array([d["track_id"] for d in detections], int),
                       np.array([d["box"] for d in detections], np.float64).reshape(-1, 4)))
    return frames


def score_tracks(tracks_path: Path, truth_path: Path) -> dict:
    """IDF1, MOTA, HOTA and ID switches over the frames the run wrote; tracked boxes and true objects per frame (a
    detector that fires too often shows it here before MOTA does); the mean IoU of boxes with the object they
    follow (best match, IoU above 0.1), on detected frames and, for the carried boxes, on frames that were not
    detected (None when there were none): the difference is how far carrying drifts."""
    from trackers.eval.clear import compute_clear_metrics
    from trackers.eval.hota import compute_hota_metrics
    from trackers.eval.identity import compute_identity_metrics

    truth = read_truth(truth_path)
    gt_ids, tracker_ids, similarities = [], [], []
    fits: dict[bool, list[float]] = {True: [], False: []}  # by whether the frame was detected
    for frame, detected, ids, boxes in read_tracks(tracks_path):
        true_ids, true_boxes = truth.get(frame, (np.zeros(0, int), np.zeros((0, 4))))
        overlaps = overlap_matrix(true_boxes, boxes)
        gt_ids.append(true_ids)
        tracker_ids.append(ids)
        similarities.append(overlaps)
        if overlaps.size:
            best = overlaps.max(axis=0)
            fits[bool(detected)].extend(best[best > 0.1].tolist())
    clear = compute_clear_metrics(gt_ids, tracker_ids, similarities)
    identity = compute_identity_metrics(gt_ids, tracker_ids, similarities)
    hota = compute_hota_metrics(gt_ids, tracker_ids, similarities)
    frames = max(1, len(gt_ids))
    return {"IDF1": identity["IDF1"], "MOTA": clear["MOTA"], "HOTA": hota["HOTA"], "IDSW": int(clear["IDSW"]),
            "frames": len(gt_ids), "boxes_per_frame": sum(len(ids) for ids in tracker_ids) / frames,
            "objects_per_frame": sum(len(ids) for ids in gt_ids) / frames,
            "detected_iou": float(np.mean(fits[True])) if fits[True] else None,
            "carried_iou": float(np.mean(fits[False])) if fits[False] else None}
