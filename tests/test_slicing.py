"""Sliced inference: the tile grid, the merge, the sliced predictor and the scripts' --slice, with known answers.

sahi (https://github.com/obss/sahi, MIT), where installed, is an oracle for the grid and the merge only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from helpers import ROOT, SMALL_IMGSZ, make_set, run_detector, run_script, scene

from frcnn.core.boxes import overlap_matrix
from frcnn.core.detections import Detections
from frcnn.core.specs import SliceOptions
from frcnn.inference.slicing import (
    SlicedPredictor,
    auto_tile_size,
    merge_detections,
    tile_grid,
    tile_starts,
)

# The subprocess runs only need a model that runs, not one that sees much: the smallest input is the fastest.
TINY_IMGSZ = "32"


def detections(rows) -> Detections:
    """Detections from rows of x1, y1, x2, y2, score, label."""
    table = np.array(rows, np.float64).reshape(-1, 6)
    return Detections(table[:, :4].astype(np.float32), table[:, 4].astype(np.float32), table[:, 5].astype(np.int64))


def assert_same(actual: Detections, expected: Detections) -> None:
    """Bit for bit, in the same order."""
    assert len(actual) == len(expected)
    assert np.array_equal(actual.boxes, expected.boxes)
    assert np.array_equal(actual.scores, expected.scores)
    assert np.array_equal(actual.labels, expected.labels)


def by_score(found: Detections) -> Detections:
    return found[np.argsort(-found.scores, kind="stable")]


# ---------------------------------------------------------------- the tile grid


def coverage(width: int, height: int, grid) -> np.ndarray:
    covered = np.zeros((height, width), bool)
    for x, y, w, h in grid:
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (x, y, w, h)
        covered[y:y + h, x:x + w] = True
    return covered


def test_full_hd_with_640_tiles_and_overlap_02():
    grid = tile_grid(1920, 1080, 640, 0.2)
    # A step of 640 - 128 = 512; the last tile of each side is moved inward to end at the edge.
    assert sorted({x for x, _, _, _ in grid}) == [0, 512, 1024, 1280]
    assert sorted({y for _, y, _, _ in grid}) == [0, 440]
    assert len(grid) == 8 and all((w, h) == (640, 640) for _, _, w, h in grid)
    assert grid == [(x, y, 640, 640) for y in (0, 440) for x in (0, 512, 1024, 1280)]  # row by row
    assert coverage(1920, 1080, grid).all()


def test_a_side_shorter_than_the_tile_gets_one_tile_of_its_length():
    grid = tile_grid(1920, 500, 640, 0.2)
    assert grid == [(x, 0, 640, 500) for x in (0, 512, 1024, 1280)]
    assert coverage(1920, 500, grid).all()
    assert tile_grid(300, 200, 640, 0.2) == [(0, 0, 300, 200)]
    assert tile_grid(640, 640, 640, 0.2) == [(0, 0, 640, 640)]  # exactly one tile: no second one at 0
    assert tile_grid(641, 100, 640, 0.0) == [(0, 0, 640, 100), (1, 0, 640, 100)]


@pytest.mark.parametrize("width, height, tile, overlap", [
    (1920, 1080, 640, 0.2), (12000, 8000, 640, 0.2), (1000, 1000, 256, 0.0), (1001, 999, 256, 0.5),
    (700, 3000, 512, 0.25), (97, 1000, 96, 0.9), (5000, 33, 32, 0.1),
])
def test_tiles_cover_the_picture_and_overlap_at_least_as_asked(width, height, tile, overlap):
    grid = tile_grid(width, height, tile, overlap)
    assert coverage(width, height, grid).all()
    assert len(set(grid)) == len(grid)
    for length in (width, height):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == max(0, length - tile) and starts == sorted(set(starts))
        steps = np.diff(starts)
        assert (steps <= max(1, tile - int(tile * overlap))).all()  # neighbours share at least the overlap


def test_auto_tile_size_is_a_multiple_of_32_and_at_least_256():
    for width, height in [(1, 1), (320, 240), (640, 480), (1920, 1080), (1080, 1920), (4000, 3000), (12000, 8000),
                          (100000, 300)]:
        for overlap in (0.0, 0.2, 0.5, 0.9):
            size = auto_tile_size(width, height, overlap)
            assert size % 32 == 0 and size >= 256, (width, height, overlap, size)
    assert auto_tile_size(320, 240, 0.2) == 256  # small pictures: the floor
    assert auto_tile_size(1920, 1080, 0.2) == 608  # 1080 / 1.8 = 600, up to a multiple of 32
    # Exactly two tiles across the shorter side wherever the floor does not decide, the write-up's photos included.
    for width, height in [(1000, 751), (1280, 720), (1920, 1080), (12000, 8000), (3000, 4000)]:
        for overlap in (0.0, 0.2, 0.5):
            tile = auto_tile_size(width, height, overlap)
            assert len(tile_starts(min(width, height), tile, overlap)) == 2, (width, height, overlap, tile)


# ---------------------------------------------------------------- the merge

A = [0, 0, 10, 10]
HALF_A = [0, 0, 10, 5]  # IoU with A: 50 / 100 = 0.5; IoS: 50 / 50 = 1


def test_overlap_measures_of_a_box_and_its_half():
    boxes = np.array([A, HALF_A, [20, 20, 30, 30]], np.float32)
    assert overlap_matrix(boxes[0], boxes, "iou").tolist() == [[1.0, 0.5, 0.0]]
    assert overlap_matrix(boxes[0], boxes, "ios").tolist() == [[1.0, 1.0, 0.0]]
    degenerate = np.array([[5, 5, 5, 5]], np.float32)  # no area: no match, and no division by zero
    assert overlap_matrix(degenerate[0], degenerate, "ios").tolist() == [[0.0]]
    with pytest.raises(ValueError):
        overlap_matrix(boxes[0], boxes, "giou")


@pytest.mark.parametrize("method", ["nms", "greedy-nmm"])
def test_a_box_and_its_half_merge_over_ios_not_over_iou_at_05(method):
    pair = detections([[*A, 0.9, 1], [*HALF_A, 0.8, 1]])
    assert len(merge_detections(pair, method, "iou", 0.5)) == 2  # IoU 0.5 is not above 0.5
    assert len(merge_detections(pair, method, "iou", 0.49)) == 1
    merged = merge_detections(pair, method, "ios", 0.5)  # IoS 1.0
    assert_same(merged, detections([[*A, 0.9, 1]]))  # the half lies inside A: the union is A


@pytest.mark.parametrize("method", ["nms", "greedy-nmm"])
@pytest.mark.parametrize("match", ["iou", "ios"])
def test_boxes_of_two_classes_never_merge(method, match):
    pair = detections([[*A, 0.9, 1], [*HALF_A, 0.8, 3]])  # IoS 1: would merge, were they of one class
    assert_same(by_score(merge_detections(pair, method, match, 0.5)), pair)
    pair = detections([[*A, 0.9, 1], [*A, 0.8, 3], [*HALF_A, 0.7, 3]])  # and A itself, at any threshold
    merged = merge_detections(pair, method, match, 0.0)
    assert sorted(merged.labels.tolist()) == [1, 3]
    assert_same(merged[merged.labels == 1], detections([[*A, 0.9, 1]]))


def test_greedy_nmm_gives_the_union_with_the_best_score_and_nms_the_best_box():
    # The second box covers 48 px of the first's 100 and of its own 72: IoS 0.67, IoU 48 / 124 = 0.39.
    boxes = detections([[0, 0, 10, 10, 0.6, 1], [2, 2, 14, 8, 0.9, 1], [40, 40, 50, 50, 0.7, 1]])
    assert_same(merge_detections(boxes, "greedy-nmm", "ios", 0.5),
                detections([[0, 0, 14, 10, 0.9, 1], [40, 40, 50, 50, 0.7, 1]]))
    assert_same(merge_detections(boxes, "nms", "ios", 0.5),
                detections([[2, 2, 14, 8, 0.9, 1], [40, 40, 50, 50, 0.7, 1]]))
    assert len(merge_detections(boxes, "greedy-nmm", "iou", 0.5)) == 3


def test_greedy_nmm_compares_with_the_best_box_only():
    # B matches A (IoU 100 / 150); C matches B (100 / 150) but not A (50 / 200): C is not merged through B.
    boxes = detections([[0, 0, 10, 10, 0.9, 1], [0, 0, 10, 15, 0.8, 1], [0, 5, 10, 20, 0.7, 1]])
    assert_same(merge_detections(boxes, "greedy-nmm", "iou", 0.5),
                detections([[0, 0, 10, 15, 0.9, 1], [0, 5, 10, 20, 0.7, 1]]))
    assert_same(merge_detections(boxes, "nms", "iou", 0.5),
                detections([[0, 0, 10, 10, 0.9, 1], [0, 5, 10, 20, 0.7, 1]]))


def test_merge_of_nothing_or_one_and_unknown_names():
    assert len(merge_detections(Detections.empty(), "greedy-nmm", "ios", 0.5)) == 0
    one = detections([[*A, 0.5, 2]])
    assert_same(merge_detections(one, "nms", "iou", 0.5), one)
    with pytest.raises(ValueError):
        merge_detections(one, "wbf")


def random_boxes(seed: int, count: int, classes: int = 3, spread: float = 120.0) -> Detections:
    """Clustered boxes of a few classes, so that many pairs overlap by all sorts of amounts; distinct scores."""
    rng = np.random.default_rng(seed)
    originals = count // 2
    centres = rng.uniform(0, spread, (originals, 2))
    sizes = rng.uniform(8, 40, (originals, 2))  # wider than twice the jitter below
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    labels = rng.integers(1, classes + 1, originals)
    # The other half: the same objects seen again, as by neighbouring tiles: a few pixels off, mostly the same class.
    again = rng.integers(0, originals, count - originals)
    boxes = np.concatenate([boxes, boxes[again] + rng.uniform(-3, 3, (len(again), 4))]).astype(np.float32)
    relabel = rng.random(len(again)) < 0.2
    labels = np.concatenate([labels, np.where(relabel, rng.integers(1, classes + 1, len(again)), labels[again])])
    scores = rng.permutation(np.linspace(0.05, 0.99, count)).astype(np.float32)
    assert len(np.unique(scores)) == count  # ties would be ordered differently by the two implementations
    return Detections(boxes, scores, labels.astype(np.int64))


# ---------------------------------------------------------------- sahi as an oracle


@pytest.fixture
def sahi_numpy():
    """sahi's postprocess functions on its numpy backend (the one it picks on a CPU-only machine)."""
    backends = pytest.importorskip("sahi.postprocess.backends")  # sahi 0.12 and later
    from sahi.postprocess import combine

    backends.set_postprocess_backend("numpy")
    yield combine
    backends.set_postprocess_backend("auto")


@pytest.mark.parametrize("height, width, tile, overlap", [
    (1080, 1920, 640, 0.2), (8000, 12000, 640, 0.2), (120, 160, 96, 0.2), (500, 1920, 640, 0.2),
    (200, 300, 640, 0.2), (999, 1001, 256, 0.5), (3000, 700, 512, 0.25), (1000, 1000, 256, 0.0),
    (1000, 97, 96, 0.9), (641, 641, 640, 0.1), (4321, 1234, 333, 0.33),
])
def test_tile_grid_is_sahis(height, width, tile, overlap):
    slicing = pytest.importorskip("sahi.slicing")
    theirs = slicing.get_slice_bboxes(height, width, tile, tile, False, overlap, overlap)
    ours = [[x, y, x + w, y + h] for x, y, w, h in tile_grid(width, height, tile, overlap)]
    assert ours == theirs


def as_sahi(found: Detections) -> np.ndarray:
    return np.concatenate([found.boxes, found.scores[:, None], found.labels[:, None]], axis=1).astype(np.float64)


@pytest.mark.parametrize("match", ["iou", "ios"])
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.8])
@pytest.mark.parametrize("seed, count, classes", [(0, 60, 3), (1, 200, 2), (2, 400, 5), (3, 80, 1)])
def test_nms_keeps_what_sahis_batched_nms_keeps(sahi_numpy, match, threshold, seed, count, classes):
    found = random_boxes(seed, count, classes)
    keep = sahi_numpy.batched_nms(as_sahi(found), match.upper(), threshold)
    ours = merge_detections(found, "nms", match, threshold)
    assert_same(by_score(ours), by_score(found[np.array(keep)]))
    assert 0 < len(ours) < len(found)  # the sets are dense enough for the merge to do something
    if classes == 1:  # one class: the class-agnostic function is the same
        assert sorted(sahi_numpy.nms(as_sahi(found), match.upper(), threshold)) == sorted(keep)


@pytest.mark.parametrize("match", ["iou", "ios"])
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.8])
@pytest.mark.parametrize("seed, count, classes", [(0, 60, 3), (1, 200, 2), (2, 400, 5), (3, 80, 1)])
def test_greedy_nmm_groups_as_sahis_batched_greedy_nmm(sahi_numpy, match, threshold, seed, count, classes):
    """The same groups; each kept box is the union of its group, with the best score (the group's first)."""
    found = random_boxes(seed, count, classes)
    groups = sahi_numpy.batched_greedy_nmm(as_sahi(found), match.upper(), threshold)
    expected = []
    for keeper, merged in groups.items():
        group = found.boxes[[keeper, *merged]]
        expected.append([*group[:, :2].min(axis=0), *group[:, 2:].max(axis=0), found.scores[keeper],
                         found.labels[keeper]])
    ours = merge_detections(found, "greedy-nmm", match, threshold)
    assert_same(by_score(ours), by_score(detections(expected)))
    assert any(merged for merged in groups.values()) and len(ours) < len(found)
    if classes == 1:
        assert sahi_numpy.greedy_nmm(as_sahi(found), match.upper(), threshold) == groups


def test_sahi_differences_a_match_exactly_at_the_threshold(sahi_numpy):
    """sahi matches at IoU >= threshold (numpy backend); we, like torchvision's NMS, above it only."""
    pair = detections([[*A, 0.9, 1], [*HALF_A, 0.8, 1]])  # IoU exactly 0.5
    assert sahi_numpy.batched_nms(as_sahi(pair), "IOU", 0.5) == [0]
    assert sahi_numpy.batched_greedy_nmm(as_sahi(pair), "IOU", 0.5) == {0: [1]}
    assert len(merge_detections(pair, "nms", "iou", 0.5)) == 2
    assert len(merge_detections(pair, "greedy-nmm", "iou", 0.5)) == 2
    # Our two code paths agree (the torchvision one for nms over iou, the loop for the rest):
    assert len(merge_detections(pair, "nms", "ios", 1.0)) == 2 and len(merge_detections(pair, "nms", "ios", 0.99)) == 1


def test_sahi_differences_greedy_nmm_postprocess_drops_what_no_longer_matches_the_grown_box():
    """sahi's GreedyNMMPostprocess re-checks each grouped box against the union grown so far, and a box that no
    longer matches it is dropped: neither merged nor kept. Ours merges the whole group, as grouped."""
    pytest.importorskip("sahi")
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    # B and C each match A (IoU 100 / 160 = 0.625); once A has grown to A ∪ B, C matches it by 100 / 220 only.
    rows = [[10.0, 10.0, 20.0, 20.0, 0.9, 1], [10.0, 10.0, 20.0, 26.0, 0.8, 1], [10.0, 4.0, 20.0, 20.0, 0.7, 1]]
    predictions = [ObjectPrediction(bbox=row[:4], category_id=1, category_name="person", score=row[4]) for row in rows]
    (theirs,) = GreedyNMMPostprocess(match_threshold=0.5, match_metric="IOU", class_agnostic=False)(predictions)
    assert [float(v) for v in theirs.bbox.to_xyxy()] == [10, 10, 20, 26]  # C's extent is lost
    assert_same(merge_detections(detections(rows), "greedy-nmm", "iou", 0.5), detections([[10, 4, 20, 26, 0.9, 1]]))


# ---------------------------------------------------------------- through the real model


@pytest.fixture(scope="module")
def v1_predictor(checkpoints):
    from frcnn.core.specs import ModelSpec
    from frcnn.inference.predictor import Predictor
    from frcnn.model import load

    model = load(ModelSpec("v1", weights=str(checkpoints["v1"]), imgsz=int(SMALL_IMGSZ), device="cpu", backend="torch"))
    return Predictor(model, threshold=0.5)


def test_tiles_without_overlap_are_the_model_on_each_crop_shifted(v1_predictor):
    """A 2T×T picture in T tiles, no overlap, no whole-picture pass: the model on each crop, shifted and merged.

    Exactly equal, bit for bit: the crops go to the model in the same batches as the tiles (on the CPU a batch of
    two is not bit for bit each picture alone: scores differ by 1e-7), and the shifted boxes go through the same NMS.
    That NMS puts them in score order; it should remove nothing (boxes of the two crops cannot overlap, and the model
    has already applied the same NMS within each crop), but only up to float rounding, so it is not left out.
    """
    size = int(SMALL_IMGSZ)
    image = scene(size, 2 * size, seed=3)
    options = SliceOptions(size=size, overlap=0.0, merge="nms", match="iou", match_threshold=0.5, full_pass=False)
    sliced = SlicedPredictor(v1_predictor, options)
    (prediction,) = sliced([image])

    crops = [(0, image[:, :size].copy()), (size, image[:, size:].copy())]
    parts = []
    for first in range(0, len(crops), sliced.tiles_per_call):
        chunk = crops[first:first + sliced.tiles_per_call]
        for (x, _), alone in zip(chunk, v1_predictor([crop for _, crop in chunk])):
            assert len(alone.detections)  # both halves see something
            parts.append(alone.detections.shifted(x, 0))
    assert_same(prediction.detections, merge_detections(Detections.concatenate(parts), "nms", "iou", 0.5))

    assert prediction.settings.to_json()["slice"] == {"size": size, "overlap": 0.0, "full_pass": False, "merge": "nms",
                                            "match": "iou", "match_threshold": 0.5, "tiles": 2}
    assert prediction.settings.to_json()["threshold"] == 0.5 and prediction.milliseconds > 0
    assert (prediction.detections.boxes[:, [0, 2]] <= 2 * size).all()
    assert (prediction.detections.boxes[:, [0, 2]] > size).any()  # boxes of the right half are in its coordinates


def test_a_picture_inside_one_tile_is_the_plain_run(v1_predictor):
    image = scene(60, 64, seed=5)
    (plain,) = v1_predictor([image])
    assert len(plain.detections)
    for options, size in [(SliceOptions(size=int(SMALL_IMGSZ)), int(SMALL_IMGSZ)), (SliceOptions(size=0), 256),
                          (SliceOptions(size=64, merge="nms", match="iou"), 64)]:  # the last: exactly one tile wide
        (sliced,) = SlicedPredictor(v1_predictor, options)([image])
        assert_same(sliced.detections, plain.detections)
        recorded = sliced.settings.to_json()["slice"]
        assert recorded["tiles"] == 1 and recorded["full_pass"] is False
        assert sliced.settings.to_json()["slice"]["size"] == size


# ---------------------------------------------------------------- the scripts

# One picture through the plain or the sliced predictor, in a fresh process that reports its peak resident memory
# (MiB): over the whole process, and over the inference alone. For the latter, the peak is reset once the picture is
# read (Linux: /proc/self/clear_refs), since decoding a JPEG briefly needs twice the picture and would hide the rest.
_PEAK_RSS = """
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
from frcnn.cli import shared as detect_utils
from frcnn.model import load
from frcnn.inference.loading import make_predictor
from frcnn.core.specs import DetectOptions, ModelSpec, SliceOptions

def resident(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(key + ":"))

picture, weights, imgsz, tile = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
model = load(ModelSpec("v1", weights=weights, imgsz=imgsz, device="cpu", backend="torch"))
predictor = make_predictor(model, DetectOptions(threshold=0.5, slicing=SliceOptions(size=tile) if tile else None))
image = detect_utils.read_image(picture)
report = {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "inference": None}
try:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak becomes what is resident now
    before = resident("VmRSS")
except OSError:
    before = None
(prediction,) = predictor([image])
report["peak"] = max(report["peak"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
if before is not None:
    report["inference"] = resident("VmHWM") - before
report.update(tiles=prediction.settings.to_json().get("slice", {}).get("tiles"), detections=len(prediction.detections))
print(json.dumps(report))
"""


def peak_rss(tmp_path, picture, weights, tile) -> dict:
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(ROOT), str(picture), str(weights), TINY_IMGSZ,
                             str(tile)], cwd=tmp_path, env={**os.environ, "TORCH_HOME": str(tmp_path / "torch-home")},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


# A 12000×8000 picture is 275 MiB decoded. Had the tiles been copied all at once, they would take 396 MiB more
# here; one more copy of the picture, 275 MiB. Tiles in flight (two at a time on the CPU) are 2 × 16.5 MiB.
HUGE = (12000, 8000)
HUGE_TILE = 2400
MEMORY_MARGIN_MIB = 64


def test_a_huge_picture_in_many_tiles_takes_no_more_memory_than_the_plain_run(tmp_path, checkpoints):
    picture = tmp_path / "huge.jpg"
    cv2.imwrite(str(picture), cv2.resize(scene(), HUGE, interpolation=cv2.INTER_NEAREST))
    plain = peak_rss(tmp_path, picture, checkpoints["v1"], 0)
    sliced = peak_rss(tmp_path, picture, checkpoints["v1"], HUGE_TILE)
    print(f"peak RSS, MiB: plain {plain}, sliced {sliced}")
    assert plain["tiles"] is None and sliced["tiles"] == len(tile_grid(*HUGE, HUGE_TILE, 0.2)) == 6 * 4
    assert plain["peak"] > HUGE[0] * HUGE[1] * 3 / 2 ** 20  # the measure sees the decoded picture
    assert sliced["peak"] <= plain["peak"] + MEMORY_MARGIN_MIB, (plain, sliced)
    if plain["inference"] is not None:  # where the peak can be reset: the inference alone, above the picture
        assert sliced["inference"] <= plain["inference"] + MEMORY_MARGIN_MIB, (plain, sliced)


def detect(tmp_path, checkpoints, *args):
    return run_detector("detect_image.py", tmp_path, checkpoints, "--device", "cpu", *args, imgsz=TINY_IMGSZ)


def test_detect_image_slice_json_records_the_tiles_and_says_so_once(tmp_path, checkpoints):
    cv2.imwrite(str(tmp_path / "a.png"), scene(96, 160, seed=1))
    cv2.imwrite(str(tmp_path / "b.png"), scene(60, 80, seed=2))  # inside one tile
    result = detect(tmp_path, checkpoints, "--input", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--json",
                    "--slice", "96")
    assert result.returncode == 0, result.stderr
    first = json.loads((tmp_path / "outputs" / "a_v1.json").read_text())
    # 160 wide: tiles at 0 and 64 (a step of 96 - 19 = 77 would pass the end); 96 high: one.
    assert first["results"][0]["slice"] == {"size": 96, "overlap": 0.2, "tiles": 2, "full_pass": True,
                                            "merge": "greedy-nmm", "match": "ios", "match_threshold": 0.5}
    assert first["results"][0]["imgsz"] == int(TINY_IMGSZ)
    second = json.loads((tmp_path / "outputs" / "b_v1.json").read_text())
    assert second["results"][0]["slice"]["tiles"] == 1 and second["results"][0]["slice"]["full_pass"] is False
    for record, (width, height) in ((first, (160, 96)), (second, (80, 60))):
        for found in record["results"][0]["detections"]:
            x1, y1, x2, y2 = found["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    said = [line for line in result.stderr.splitlines() if "sliced:" in line]
    assert len(said) == 1 and said[0].startswith("sliced: 2 tiles of 96 px, overlap 0.2"), result.stderr
    assert len([line for line in result.stdout.splitlines() if "->" in line]) == 2


@pytest.mark.parametrize("args, message", [
    (["--slice", "0"], "argument --slice: 0 is not a tile size"),
    (["--slice", "-5"], "argument --slice: -5 is not a tile size"),  # a value, not taken for an option
    (["--slice", "31"], "at least 32"),
    (["--slice", "big"], "argument --slice: 'big' is not a tile size"),
    (["--slice", "640", "--slice-overlap", "1"], "argument --slice-overlap: 1 must be below 1"),
    (["--slice", "640", "--slice-overlap", "-0.1"], "argument --slice-overlap: -0.1 is not between 0 and 1"),
    (["--slice-overlap", "0.2"], "--slice-overlap needs --slice"),
    (["--no-full-pass"], "--no-full-pass needs --slice"),
    (["--slice", "640", "--slice-merge", "wbf"], "invalid choice"),
])
def test_slice_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    result = run_script("detect_image.py", "--input", "nowhere.jpg", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr


# ---------------------------------------------------------------- evaluate.py --slice


def test_evaluate_slice_runs_and_an_interrupted_run_resumes_to_the_same_metrics(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=4)
    command = ["--images", str(images), "--annotations", str(annotations), "--model", "v1",
               "--weights", str(checkpoints["v1"]), "--imgsz", TINY_IMGSZ, "--backend", "torch", "--device", "cpu",
               "--slice", "128", "--no-full-pass"]  # 160×120: two tiles
    whole = run_script("evaluate.py", *command, "--output", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    settings = json.loads((tmp_path / "whole" / "v1_settings.json").read_text())
    # What the results were made with: a resumed run with other slicing is refused rather than mixed in.
    assert settings["slice"] == {"size": 128, "overlap": 0.2, "full_pass": False, "merge": "greedy-nmm",
                                 "match": "ios", "match_threshold": 0.5}
    results = json.loads((tmp_path / "whole" / "v1_results.json").read_text())
    assert results and {r["image_id"] for r in results} <= set(range(1, 5))
    first = json.loads((tmp_path / "whole" / "v1_metrics.json").read_text())
    assert first["images"] == 4 and 0 <= first["AP"] <= 1

    process = subprocess.Popen([sys.executable, str(ROOT / "evaluate.py"), *command, "--output", "cut"], cwd=tmp_path,
                               env={**os.environ, "TORCH_HOME": str(tmp_path / "th")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "cut" / "v1_progress.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 2):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(progress.read_text().splitlines())
    assert 2 <= done < 4

    resumed = run_script("evaluate.py", *command, "--output", "cut", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming, {done} of 4 images already done" in resumed.stderr
    second = json.loads((tmp_path / "cut" / "v1_metrics.json").read_text())
    for name in ("AP", "AP50", "AP75", "AR100", "images"):
        assert first[name] == second[name], name
    assert json.loads((tmp_path / "cut" / "v1_results.json").read_text()) == results
