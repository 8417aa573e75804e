"""Box overlap and one-to-one matching, the one home every scorer uses, on boxes whose answers are known."""

import numpy as np

from frcnn.core.boxes import greedy_pairs, overlap_matrix, xywh_to_xyxy


def test_coco_boxes_become_corners():
    assert xywh_to_xyxy([[10, 20, 30, 40]]).tolist() == [[10, 20, 40, 60]]


def test_overlap_of_every_box_with_every_box():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[0, 0, 10, 5], [25, 20, 35, 30], [100, 100, 110, 110]])
    assert overlap_matrix(a, b).tolist() == [[0.5, 0.0, 0.0], [0.0, 50 / 150, 0.0]]
    assert overlap_matrix(a, b, "ios").tolist() == [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]
    assert overlap_matrix(a, np.zeros((0, 4))).shape == (2, 0)


def test_pairs_go_to_the_largest_overlap_first_and_each_box_pairs_once():
    overlaps = np.array([[0.6, 0.9], [0.0, 0.8]])
    # Row 0 takes column 1 (0.9); row 1 then has nothing left above the threshold.
    assert greedy_pairs(overlaps, 0.5) == [(0, 1)]
    # Once row 0 may not take column 1, both rows pair.
    allowed = np.array([[True, False], [True, True]])
    assert sorted(greedy_pairs(overlaps, 0.5, allowed=allowed)) == [(0, 0), (1, 1)]
    # A second pass extends the pairs of the first, never reusing their rows or columns.
    first = greedy_pairs(overlaps, 0.85)
    assert greedy_pairs(overlaps, 0.5, pairs=first) == [(0, 1)]
