"""Tracking scores against MOT ground truth, on answers known by construction."""

from __future__ import annotations

import json

import pytest

from frcnn.core.boxes import overlap_matrix
from frcnn.evaluation.tracks import read_truth, score_tracks


def write_truth(path, objects, frames):
    lines = [f"{f + 1},{i},{x + 5 * f},{y},{20},{20},1,1,1" for f in range(frames) for i, (x, y) in objects.items()]
    path.write_text("\n".join(lines) + "\n")


def write_run(path, objects, frames, ids_of, detected=lambda frame: True, shift=lambda frame: 0.0):
    with open(path, "w") as handle:
        for f in range(frames):
            detections = [{"label": "disc", "label_id": 1, "score": 0.9, "track_id": ids_of(f, i),
                           "box": [x + 5 * f + shift(f), y, x + 5 * f + shift(f) + 20, y + 20]}
                          for i, (x, y) in objects.items()]
            record = {"frame": f, "detected": detected(f), "results": [{"detections": detections}]}
            handle.write(json.dumps(record) + "\n")
        handle.write(json.dumps({"summary": {}}) + "\n")


OBJECTS = {1: (10, 10), 2: (10, 100)}


def test_a_perfect_run_scores_one(tmp_path):
    write_truth(tmp_path / "gt.txt", OBJECTS, 10)
    write_run(tmp_path / "run.jsonl", OBJECTS, 10, lambda f, i: i + 40)
    scores = score_tracks(tmp_path / "run.jsonl", tmp_path / "gt.txt")
    assert scores["IDF1"] == pytest.approx(1.0) and scores["MOTA"] == pytest.approx(1.0)
    assert scores["HOTA"] == pytest.approx(1.0, abs=1e-6) and scores["IDSW"] == 0 and scores["frames"] == 10
    assert scores["carried_iou"] is None and scores["detected_iou"] == pytest.approx(1.0)  # every frame detected
    assert scores["boxes_per_frame"] == scores["objects_per_frame"] == 2


def test_boxes_with_no_object_under_them_raise_the_boxes_per_frame(tmp_path):
    write_truth(tmp_path / "gt.txt", OBJECTS, 10)
    write_run(tmp_path / "run.jsonl", {**OBJECTS, 3: (200, 200), 4: (300, 10)}, 10, lambda f, i: i)  # 2 false
    scores = score_tracks(tmp_path / "run.jsonl", tmp_path / "gt.txt")
    assert (scores["boxes_per_frame"], scores["objects_per_frame"]) == (4, 2)
    assert scores["MOTA"] == pytest.approx(0.0)  # 20 false boxes against 20 objects: 1 - 20 / 20


def test_swapped_identities_and_carried_boxes_are_seen(tmp_path):
    write_truth(tmp_path / "gt.txt", OBJECTS, 10)
    swap = lambda f, i: (3 - i if f >= 5 else i)  # noqa: E731  the two ids trade places half-way
    # Detected frames fit the truth exactly; carried boxes are 4 px off.
    write_run(tmp_path / "run.jsonl", OBJECTS, 10, swap, detected=lambda f: f % 2 == 0,
              shift=lambda f: 0.0 if f % 2 == 0 else 4.0)
    scores = score_tracks(tmp_path / "run.jsonl", tmp_path / "gt.txt")
    assert scores["IDSW"] == 2 and scores["IDF1"] == pytest.approx(0.5)
    assert scores["detected_iou"] == pytest.approx(1.0)
    assert scores["carried_iou"] == pytest.approx(16 * 20 / (2 * 400 - 16 * 20))  # 4 px off on a 20 px box


def test_truth_is_read_as_zero_based_frames_with_corner_boxes(tmp_path):
    (tmp_path / "gt.txt").write_text("1,7,10,20,30,40,1,2,1\n")
    ids, boxes = read_truth(tmp_path / "gt.txt")[0]
    assert ids.tolist() == [7] and boxes.tolist() == [[10, 20, 40, 60]]
    assert overlap_matrix(boxes, boxes).tolist() == [[1.0]]
