"""What a new user ran into, each with an answer known by construction: --save-txt labels that lie inside the
picture, report pictures that read in one unit and fit their panels, a heatmap with its colour scale, and a zone or
counting line that misses the frame; the labels beside a trained checkpoint; the load line of a tracked run."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
from helpers import ONE_THREAD, SMALL_IMGSZ, TINY_IMGSZ, make_video, run_script

from frcnn.analytics.geometry import missing_the_frame
from frcnn.analytics.heatmap import SCALE_TITLE, Heatmap, seconds
from frcnn.analytics.lines import name_lines, parse_line
from frcnn.analytics.zones import name_zones, parse_zone
from frcnn.cli.options import add_model_options, model_specs
from frcnn.core.detections import Detections
from frcnn.core.specs import DEFAULT_IMGSZ
from frcnn.drawing import HEAT_COLOURS, draw_heat, draw_heat_scale
from frcnn.pipelines.yolo_dataset import yolo_labels

CLASSES = ["__background__", "cat", "dog"]

# ---------------------------------------------------------------- --save-txt labels


def edges_as_read(text: str) -> np.ndarray:
    """Each label line's x1, y1, x2, y2 fractions as a reader computes them from the written digits."""
    rows = []
    for line in text.splitlines():
        _, cx, cy, w, h = line.split()
        cx, cy, w, h = float(cx), float(cy), float(w), float(h)
        rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.array(rows)


def test_labels_of_boxes_touching_the_edges_stay_inside_the_picture():
    rng = np.random.default_rng(0)
    for width, height in ((333, 211), (641, 479), (1919, 1081), (97, 3001)):
        count = 400
        # Boxes from one edge to a point anywhere, from a point anywhere to the other edge, a little beyond it,
        # and the whole picture.
        x_in = rng.uniform(0, width, count)
        y_in = rng.uniform(0, height, count)
        boxes = np.concatenate([
            np.stack([np.zeros(count), y_in / 2, x_in, y_in], axis=1),
            np.stack([x_in, y_in, np.full(count, width), np.full(count, height)], axis=1),
            np.stack([x_in / 2 - 5, y_in / 2 - 5, x_in + 5, np.full(count, height + 5)], axis=1),
            [[0, 0, width, height]],
        ]).astype(np.float32)
        detections = Detections(boxes, np.ones(len(boxes), np.float32), np.ones(len(boxes), np.int64))
        edges = edges_as_read(yolo_labels(detections, width, height, CLASSES))
        assert len(edges) == len(boxes)
        assert edges.min() >= 0 and edges.max() <= 1, (width, height)
        # As a training set reads them: float32 fractions times the picture's size, never beyond its edges.
        pixels = edges.astype(np.float32) * np.array([width, height, width, height], np.float32)
        assert (pixels[:, 0::2] <= width).all() and (pixels[:, 1::2] <= height).all()
        # Still the boxes they were: within a step of the last digit (and the clipping to the picture).
        clipped = np.clip(boxes, 0, [width, height, width, height]) / [width, height, width, height]
        assert np.abs(edges - clipped).max() <= 1.5e-6


# ---------------------------------------------------------------- the heatmap's colour scale


def test_the_heatmap_picture_carries_a_key_to_its_colours():
    heat = Heatmap(640, 480)
    for _ in range(60):  # one object standing 2.4 s near the bottom right, another passing along the top
        heat.add(np.array([[560.0, 420.0]]), 0.04)
    for x in range(40, 600, 10):
        heat.add(np.array([[float(x), 60.0]]), 0.04)
    picture = heat.picture(None)
    assert picture.shape == (480, 640, 3)
    # Where the key goes: the corner with the least heat (not the bottom right, where the object stood).
    plain = draw_heat(np.full((480, 640, 3), 64, np.uint8), heat.total, heat.cell)
    left, top, right, bottom = draw_heat_scale(plain.copy(), heat.total, heat.cell, "2.4 s", "0 s", SCALE_TITLE)
    assert right < 320 and top > 240  # the bottom left
    key = picture[top:bottom, left:right]
    assert not np.array_equal(key, plain[top:bottom, left:right])
    # A bar of the heat's colours: its hottest (dark red) at the top, none (dark blue) at the bottom.
    hottest = cv2.applyColorMap(np.array([[255]], np.uint8), HEAT_COLOURS)[0, 0].astype(int)
    coolest = cv2.applyColorMap(np.array([[0]], np.uint8), HEAT_COLOURS)[0, 0].astype(int)
    rows = [row for row in range(key.shape[0]) if (np.abs(key[row].astype(int) - hottest).sum(axis=1) < 10).any()]
    ends = [row for row in range(key.shape[0]) if (np.abs(key[row].astype(int) - coolest).sum(axis=1) < 10).any()]
    assert rows and ends and max(rows) < min(ends) and min(ends) - max(rows) > 100
    # Its labels: white text beside it and above it.
    assert (key.min(axis=2) > 200).sum() > 50
    assert seconds(float(heat.total.max())) == "2.4 s" and seconds(0.25) == "0.25 s"


def test_no_heat_no_key():
    picture = Heatmap(160, 120).picture(None)
    assert (picture == 64).all()


# ---------------------------------------------------------------- zones and lines outside the frame


def test_a_zone_or_line_entirely_outside_the_frame_is_said_in_one_line_each():
    zones = name_zones([parse_zone("door=rect:700,100,900,400"),  # pixels of a 1280-wide picture, on a 640 one
                        parse_zone("half=600,100,700,100,700,400"),  # partly inside: fine
                        parse_zone("0.1,0.1,0.9,0.1,0.5,0.9"),  # fractions: always inside
                        parse_zone("corner=650,470,900,470,900,900,640,900")])  # beyond the bottom right corner
    lines = name_lines([parse_line("north=700,0,700,480"), parse_line("0,0.5,1,0.5"),
                        parse_line("diagonal=0,600,600,0")])  # crosses the frame: fine
    found = missing_the_frame(zones, lines, 640, 480)
    assert found == [
        "warning: zone door (700,100 to 900,400 px) lies entirely outside the 640x480 frame: are its points pixels "
        "of a larger picture, or were fractions of the frame (within 0..1) meant?",
        "warning: zone corner (640,470 to 900,900 px) lies entirely outside the 640x480 frame: are its points "
        "pixels of a larger picture, or were fractions of the frame (within 0..1) meant?",
        "warning: counting line north (700,0 to 700,480 px) lies entirely outside the 640x480 frame: are its points "
        "pixels of a larger picture, or were fractions of the frame (within 0..1) meant?"]
    (single,) = missing_the_frame((), (parse_line("2000,0,2000,1080"),), 1280, 720)
    assert single.startswith("warning: the counting line (2000,0 to 2000,1080 px) lies entirely outside the "
                             "1280x720 frame")
    assert missing_the_frame(zones[1:3], lines[1:], 640, 480) == []
    # The same zone on a frame large enough is inside.
    assert missing_the_frame(zones[:1], (), 1280, 720) == []


def test_the_labels_and_size_beside_a_trained_checkpoint_are_used_and_said(tiny_trained, tmp_path):
    picture = next((tiny_trained.parent / "set" / "images").glob("*.jpg"))
    result = run_script("detect_image.py", "--model", "v1", "--weights", str(tiny_trained / "best.pth"),
                        "--input", str(picture), "--threshold", "0", "--save-txt", "--json",
                        "--backend", "torch", "--device", "cpu", "--classes", "ring", "disc",
                        "--output", str(tmp_path / "out"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert f"class names from {tiny_trained / 'labels.txt'}" in result.stderr
    assert f"{TINY_IMGSZ} px as trained ({tiny_trained / 'settings.json'})" in result.stderr
    record = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert str(record["results"][0]["imgsz"]) == TINY_IMGSZ
    classes = (tmp_path / "out" / "labels" / "v1" / "classes.txt").read_text().split()
    assert classes[:5] == ["disc", "ring", "square", "triangle", "star"]


def test_a_tracked_run_names_the_users_threshold_in_its_load_line(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=2)
    result = run_script("detect_video.py", "--input", str(clip), "--model", "v1", "--weights", str(checkpoints["v1"]),
                        "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--track", "--threshold", "0.6",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (loaded,) = [line for line in result.stderr.splitlines() if line.startswith("Loaded v1:")]
    assert "threshold 0.6 (the tracker also sees boxes down to 0.1)" in loaded


def test_the_speed_line_keeps_one_unit():
    import time

    from frcnn.video.pipeline import RunStats

    slow = RunStats(written=10, model_milliseconds={"v1": 12000.0, "v2": 800.0})  # v1 1.2 s a frame, v2 0.08 s
    slow.started = time.perf_counter() - 15
    assert "frames/s" not in slow.summary() and slow.summary().count("s/frame") == 3
    fast = RunStats(written=10, model_milliseconds={"v1": 1200.0, "v2": 800.0})
    fast.started = time.perf_counter() - 5
    assert "s/frame" not in fast.summary() and fast.summary().count("frames/s") == 3


def test_a_given_imgsz_wins_over_the_trained_size(tiny_trained):
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    weights = str(tiny_trained / "best.pth")
    given = model_specs(parser.parse_args(["--model", "v1", "--weights", weights, "--imgsz", "320"]), parser)[0]
    assert (given.imgsz, given.imgsz_from) == (320, None)
    trained = model_specs(parser.parse_args(["--model", "v1", "--weights", weights]), parser)[0]
    assert (str(trained.imgsz), trained.imgsz_from) == (TINY_IMGSZ, str(tiny_trained / "settings.json"))
    coco = model_specs(parser.parse_args(["--model", "v1"]), parser)[0]
    assert (coco.imgsz, coco.imgsz_from) == (DEFAULT_IMGSZ, None)


# ---------------------------------------------------------------- analytics from Python: which class names


def test_lines_and_zones_take_the_models_class_names_or_one_per_box():
    from frcnn.analytics import LineSet, ZoneSet

    table = ["__background__", "person", "car"]  # as prediction.class_names
    events = {}
    for given in ("table", "per box"):
        lines = LineSet(name_lines([parse_line("gate=0.5,0,0.5,1")]), 640, 360)
        zones = ZoneSet(name_zones([parse_zone("right=rect:0.5,0,1,1")]), 640, 360, frame_interval=0.04)
        found = []
        for frame in range(30):
            x = 200 + 10 * frame
            tracked = Detections(np.array([[x, 150, x + 40, 250], [x, 10, x + 30, 40]], np.float32),
                                 np.array([0.9, 0.8], np.float32), np.array([2, 1]), np.array([7, 8]))
            classes = table if given == "table" else ["car", "person"]
            found += lines.update(frame, frame * 0.04, tracked, classes)
            found += zones.update(frame, frame * 0.04, tracked, classes)
        events[given] = sorted((event.kind, event.track_id, event.label) for event in found)
    assert events["table"] == events["per box"]
    assert ("cross", 7, "car") in events["table"] and ("enter", 8, "person") in events["table"]
    with_one_name = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32), np.ones(2, np.float32),
                               np.array([1, 1]), np.array([1, 2]))
    lines = LineSet(name_lines([parse_line("0.5,0,0.5,1")]), 640, 360)
    try:
        lines.update(0, 0.0, with_one_name, ["person"])
    except ValueError as error:
        assert str(error) == ("1 class names for 2 boxes: give one name per box, or the model's class names "
                              "(prediction.class_names, which start with __background__)")
    else:
        raise AssertionError("a list of the wrong length was taken")


# ---------------------------------------------------------------- from Python: paths, supervision, tracking


def test_a_predictor_takes_paths_as_the_scripts_read_them(checkpoints, photo):
    from frcnn.core.files import read_image
    from frcnn.core.specs import ModelSpec, SliceOptions
    from frcnn.inference.predictor import Predictor
    from frcnn.inference.slicing import SlicedPredictor
    from frcnn.model import load

    model = load(ModelSpec("v1", weights=str(checkpoints["v1"]), imgsz=int(SMALL_IMGSZ), backend="torch",
                           device="cpu"))
    for predictor in (Predictor(model, 0.5), SlicedPredictor(Predictor(model, 0.5), SliceOptions(size=160))):
        by_path, by_str, by_array = predictor([photo, str(photo), read_image(photo)])
        assert len(by_array.detections) > 0
        for other in (by_path, by_str):
            assert other.detections.to_records(other.class_names) == by_array.detections.to_records(
                by_array.class_names)
        for wrong, said in ((str(photo), "a predictor takes a list of pictures, not one str"),
                            ([np.zeros((10, 10), np.uint8)], "not a ndarray of shape (10, 10)"),
                            ([3], "not a int")):
            try:
                predictor(wrong)
            except TypeError as error:
                assert said in str(error) and "\n" not in str(error)
            else:
                raise AssertionError(f"{wrong!r} was taken")


def test_detections_go_to_and_from_supervision_and_track_from_python():
    import pytest

    sv = pytest.importorskip("supervision")
    from frcnn.inference.tracking import ObjectTracker

    ours = Detections(np.array([[1, 2, 30, 40], [5, 5, 9, 9]], np.float32), np.array([0.9, 0.4], np.float32),
                      np.array([2, 1]), np.array([4, -1]))
    theirs = ours.to_supervision(CLASSES)
    assert isinstance(theirs, sv.Detections) and list(theirs.data["class_name"]) == ["dog", "cat"]
    assert np.array_equal(theirs.tracker_id, [4, -1]) and np.array_equal(theirs.class_id, [2, 1])
    back = Detections.from_supervision(theirs)
    for field in ("boxes", "scores", "labels", "track_ids"):
        assert np.array_equal(getattr(back, field), getattr(ours, field))
    bare = Detections.from_supervision(sv.Detections(xyxy=np.array([[0, 0, 4, 4]], np.float32)))
    assert (bare.scores.tolist(), bare.labels.tolist(), bare.track_ids) == ([1.0], [0], None)
    # The tracker from Python, as its docstring shows: one object moving right keeps one id.
    tracker = ObjectTracker(frame_rate=10.0, threshold=0.5)
    ids = set()
    for index in range(8):
        x = 10.0 + 5 * index
        frame = Detections(np.array([[x, 20, x + 30, 60]], np.float32), np.array([0.9], np.float32), np.array([1]))
        tracked = tracker.update(frame, time_s=index / 10.0)
        ids |= set(tracked.track_ids[tracked.track_ids >= 0].tolist())
    assert len(ids) == 1


def test_training_shows_the_whole_runs_time_left():
    from frcnn.training.loop import run_time_left
    from frcnn.training.state import Progress

    # 4 epochs of 10 steps at 2.5 s a step: after 3 steps of the second epoch, 27 steps are left
    assert run_time_left(Progress(epoch=1, step=3), 10, 4, 2.5) == "01:07"
    assert run_time_left(Progress(epoch=3, step=10), 10, 4, 2.5) == "00:00"
    assert run_time_left(Progress(epoch=0, step=0), 1000, 26, 12.0) == "86:40:00"


def test_the_help_hides_old_spellings_and_names_what_an_install_has():
    import contextlib
    import io

    from frcnn.cli import detect_image, detect_video, evaluate, train

    for script in (detect_image, detect_video, evaluate, train):
        parser = script.build_parser()
        text = parser.format_help()
        assert "--workers" not in text and "requirements-ray.txt in a clone" in text, script.__name__
        # the old spelling still works, with its notice
        with contextlib.redirect_stderr(io.StringIO()) as said:
            args = parser.parse_args(["--workers", "2"])
        assert args.workers == 2 and "--workers is now" in said.getvalue()
    save_txt = " ".join(detect_image.build_parser().format_help().split())
    assert "the model's classes numbered from 0" in save_txt


def test_the_documented_commands_write_nothing_git_tracks():
    from helpers import ROOT

    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"outputs/*", "world/", "exported/"} <= set(ignored)
