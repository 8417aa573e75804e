"""Video analytics with answers known by construction: synthetic tracks fed to the analytics directly (speed, dwell,
lines, heat, crops), the tracker and analytics together, and detect_video.py runs on small made-up clips."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from helpers import ROOT, SMALL_IMGSZ, leftovers, make_video, run_detector, run_script

from frcnn.analytics.analyser import TrackAnalytics
from frcnn.analytics.lines import name_lines, parse_line
from frcnn.analytics.outputs import AnalyticsFiles
from frcnn.analytics.speed import parse_calibration
from frcnn.analytics.summary import speed_lines
from frcnn.analytics.zones import name_zones, parse_zone
from frcnn.core.detections import Detections, Prediction, PredictionSettings
from frcnn.core.specs import AnalyticsOptions, SpeedOptions, TrackOptions
from frcnn.video.analytics_step import AnalyticsOverlay, RunAnalytics
from frcnn.video.tracking_step import RunTracking

FPS = 25.0
SIZE = (640, 480)
CLASSES = ["__background__", "person", "car"]
PICTURE = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)


def box_at(x: float, y: float, width: float = 20, height: float = 30) -> list[float]:
    """A box whose bottom centre (the default anchor) is at (x, y)."""
    return [x - width / 2, y - height, x + width / 2, y]


def tracked(boxes, ids, scores=None) -> Detections:
    count = len(ids)
    scores = np.full(count, 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), scores, np.full(count, 2, np.int64)).with_track_ids(
        np.asarray(ids, np.int64))


def measuring(options: AnalyticsOptions, interval: float = 1 / FPS, files=None, events=None) -> TrackAnalytics:
    return TrackAnalytics("v2", options, SIZE, interval, files, events)


def feed(analytics: TrackAnalytics, frames, where, track_id: int = 1, label: str = "car", picture=PICTURE) -> list:
    """One track's box at `where(frame)` on each of `frames`; each frame's analysis."""
    return [analytics.step(frame, frame / FPS, picture, tracked([where(frame)], [track_id]), [label], True)
            for frame in frames]


# ---------------------------------------------------------------- speed


def test_speed_top_down_is_known_and_needs_half_a_second():
    # 4 px per frame at 25 fps, 0.05 m per pixel: 5 m/s, 18 km/h.
    measure = measuring(AnalyticsOptions(speed=SpeedOptions(meters_per_pixel=0.05)))
    speeds = [found.speeds.get(1) for found in feed(measure, range(50), lambda f: box_at(100 + 4 * f, 300))]
    assert speeds[:13] == [None] * 13  # seen for less than the 0.5 s window: no speed yet
    assert all(value == pytest.approx(18.0, rel=0.05) for value in speeds[13:])
    measure.track_ended(1, "car")
    (track,) = measure.summary({})["speed"]["tracks"]
    assert track["class"] == "car" and track["frames"] == 37
    assert track["mean"] == pytest.approx(18.0, rel=0.05) and track["max"] == pytest.approx(18.0, rel=0.05)
    in_ms = measuring(AnalyticsOptions(speed=SpeedOptions(meters_per_pixel=0.05, unit="m/s")))
    assert feed(in_ms, range(20), lambda f: box_at(100, 300 + 4 * f))[-1].speeds[1] == pytest.approx(5.0, rel=0.05)


def test_speed_under_a_perspective_calibration_is_known():
    corners = np.float32([[200, 100], [440, 100], [600, 400], [40, 400]])  # a 10 x 30 m rectangle, seen from a mast
    to_ground = cv2.getPerspectiveTransform(corners, np.float32([[0, 0], [10, 0], [10, 30], [0, 30]]))
    to_picture = np.linalg.inv(to_ground)

    def where(frame: int) -> list[float]:
        ground = np.array([5.0, 2.0 + 5.0 * frame / FPS, 1.0])  # 5 m/s along the rectangle's length
        x, y, w = to_picture @ ground
        return box_at(x / w, y / w)

    steps = [where(f + 1)[3] - where(f)[3] for f in (0, 100)]
    assert steps[1] > 1.5 * steps[0]  # nearer the camera the same speed covers more pixels
    text = ",".join(f"{v:g}" for v in corners.ravel()) + "=10,30"
    points, rectangle = parse_calibration(text)
    measure = measuring(AnalyticsOptions(speed=SpeedOptions(corners=points, rectangle=rectangle)))
    speeds = [found.speeds.get(1) for found in feed(measure, range(125), where)]
    assert all(value == pytest.approx(18.0, rel=0.05) for value in speeds[13:])


def test_the_headline_speed_is_a_steady_figure_of_the_fastest_track_not_its_luckiest_window():
    # 18 km/h for two seconds, then standing for two, its box a few pixels off each frame as detectors place them.
    jitter = np.random.default_rng(3).normal(0, 3, (100, 2))

    def where(frame: int) -> list[float]:
        return box_at(100 + 4 * min(frame, 50) + jitter[frame, 0], 300 + jitter[frame, 1])

    measure = measuring(AnalyticsOptions(speed=SpeedOptions(meters_per_pixel=0.05)))
    feed(measure, range(100), where, track_id=3, label="circle")
    feed(measure, range(100), lambda f: box_at(400 + jitter[f, 1], 100 + jitter[f, 0]), track_id=4, label="square")
    measure.track_ended(3, "circle")
    measure.track_ended(4, "square")
    summary = measure.summary({})
    circle, square = summary["speed"]["tracks"]
    assert circle["p90"] == pytest.approx(18.0, rel=0.1) and circle["mean"] < 13  # stood still half the time
    assert abs(circle["p90"] - 18) < abs(circle["max"] - 18)  # the luckiest window is further off
    assert square["p90"] < 3  # it never moved: only the jitter
    (line,) = speed_lines(summary)
    assert line.endswith(f"fastest circle #3 at {circle['p90']:.1f} km/h (90th percentile of its 0.5 s speeds)")


def test_boxes_the_tracker_carried_between_detected_frames_add_no_speed():
    # A triangle standing still, detected every other frame; on the frames between, the tracker's motion model
    # places its box 10 px off, as a Kalman filter fooled by a little jitter does.
    measure = measuring(AnalyticsOptions(speed=SpeedOptions(meters_per_pixel=0.05)))
    found = [measure.step(frame, frame / FPS, PICTURE, tracked([box_at(300 + (10 if frame % 2 else 0), 300)], [7]),
                          ["triangle"], detected=frame % 2 == 0) for frame in range(100)]
    speeds = [frame.speeds.get(7) for frame in found]
    assert all(value == pytest.approx(0.0, abs=0.01) for value in speeds[14:])
    assert speeds[15] == speeds[14]  # a carried frame shows the speed of the detected frame before it
    measure.track_ended(7, "triangle")
    (track,) = measure.summary({})["speed"]["tracks"]
    assert track["frames"] == 43 and track["max"] == pytest.approx(0.0, abs=0.01)  # the 43 detected frames measured


# ---------------------------------------------------------------- zones and dwell


@pytest.mark.parametrize("stride", [1, 2])
def test_dwell_from_entering_at_frame_10_to_leaving_at_frame_60_is_two_seconds(stride):
    zones = name_zones([parse_zone("door=rect:200,100,400,400")])
    measure = measuring(AnalyticsOptions(zones=zones), interval=stride / FPS, events=io.StringIO())
    # The anchor is 2 px outside on frame 9 and 2 px inside on frame 10; 2 px inside on 59, outside on 60.
    found = feed(measure, range(0, 80, stride), lambda f: box_at(162 + 4 * f, 300))
    inside = [f for f, frame in zip(range(0, 80, stride), found) if frame.zones["door"]]
    assert inside[0] == 10 and inside[-1] == (59 if stride == 1 else 58)
    assert found[12 // stride].zones == {"door": {"car": 1}}
    events = [json.loads(line) for line in measure.log.handle.getvalue().splitlines()]
    assert [(e["event"], e["frame"], e["time"]) for e in events] == [("enter", 10, 0.4), ("exit", 60, 2.4)]
    assert events[1]["dwell"] == pytest.approx(2.0, abs=1 / FPS) and events[1]["zone"] == "door"
    stats = measure.summary({})["zones"]["door"]["classes"]["car"]
    assert (stats["entered"], stats["left"], stats["present"]) == (1, 1, 0)
    assert stats["mean_dwell"] == pytest.approx(2.0, abs=1 / FPS) == stats["longest_dwell"]


def test_a_track_lost_inside_leaves_and_one_still_there_at_the_end_is_present():
    zones = name_zones([parse_zone("0.25,0.25,0.75,0.25,0.75,0.75,0.25,0.75")])  # fractions of the frame, unnamed
    assert zones[0].name == "zone1"
    measure = measuring(AnalyticsOptions(zones=zones, anchor="center"))
    for frame in range(50):
        boxes, ids = [box_at(320, 250)], [1]  # stands in the middle all along
        if frame < 30:
            boxes, ids = boxes + [box_at(300, 260)], ids + [2]  # stands there, then is not seen again
        measure.step(frame, frame / FPS, PICTURE, tracked(boxes, ids), ["person"] * len(ids), True)
    measure.track_ended(2, "person")  # the tracker gives it up later: it left when last seen
    measure.ending = True
    measure.track_ended(1, "person")  # live when the video ends: present
    stats = measure.summary({})["zones"]["zone1"]["classes"]["person"]
    assert (stats["entered"], stats["left"], stats["present"]) == (2, 1, 1)
    assert stats["longest_dwell"] == pytest.approx(50 / FPS)
    assert stats["mean_dwell"] == pytest.approx((50 / FPS + 30 / FPS) / 2)


# ---------------------------------------------------------------- lines


def test_two_lines_count_one_crossing_each_in_its_direction():
    lines = name_lines([parse_line("A=100,0,100,480"), parse_line("B=0,200,640,200")])
    events = io.StringIO()
    measure = measuring(AnalyticsOptions(lines=lines), events=events)
    for frame in range(20):
        centres = [(60 + 8 * frame, 300), (400, 270 - 8 * frame)]  # rightwards below B; upwards right of A
        boxes = [[x - 10, y - 10, x + 10, y + 10] for x, y in centres]
        measure.step(frame, frame / FPS, PICTURE, tracked(boxes, [1, 2]), ["car", "person"], True)
    totals = measure.lines.totals()
    assert totals["A"] == {"left_to_right": {"car": 1}, "right_to_left": {}}
    assert totals["B"] == {"top_to_bottom": {}, "bottom_to_top": {"person": 1}}
    crossings = [json.loads(line) for line in events.getvalue().splitlines()]
    assert [(e["line"], e["track"], e["class"], e["direction"]) for e in crossings] == [
        ("A", 1, "car", "left_to_right"), ("B", 2, "person", "bottom_to_top")]
    assert measure.tracking_summary() == {"lines": totals}
    (single,) = name_lines([parse_line("0.5,0,0.5,1")])
    assert single.name is None  # one unnamed line stays as it was: `crossings` in the tracks file
    assert measuring(AnalyticsOptions(lines=(single,))).tracking_summary() == {
        "crossings": {"left_to_right": {}, "right_to_left": {}}}


# ---------------------------------------------------------------- heat and crops


def test_the_hottest_cell_is_where_a_still_object_stood_and_the_overlay_fades():
    measure = measuring(AnalyticsOptions(heatmap=True, heatmap_half_life=0.2))
    for frame in range(60):
        boxes = [box_at(500, 300), box_at(20 + 10 * frame, 100)]  # one stands, one passes
        measure.step(frame, frame / FPS, PICTURE, tracked(boxes, [1, 2]), ["car", "car"], True)
    heat = measure.heatmap
    x, y = heat.hottest()
    assert abs(x - 500) <= heat.cell and abs(y - 300) <= heat.cell
    assert heat.total.max() == pytest.approx(60 / FPS)  # object-seconds in that cell
    for frame in range(60, 85):  # nobody for a second: five half-lives
        measure.step(frame, frame / FPS, PICTURE, tracked([], []), [], True)
    assert heat.live.max() <= heat.total.max() * 0.5 ** 5 * 1.01
    assert heat.total.max() == pytest.approx(60 / FPS)


def test_the_crop_is_the_frame_with_the_highest_score_away_from_the_edge(tmp_path):
    options = AnalyticsOptions(crops=True)
    files = AnalyticsFiles.named(tmp_path, "clip", "v2", options)
    measure = measuring(options, files=files)
    for frame in range(20):
        picture = np.full((SIZE[1], SIZE[0], 3), 10 * frame, np.uint8)  # each frame its own grey
        score, box = 0.6 + 0.01 * frame, [200, 100, 260, 200]
        if frame == 7:
            score = 0.95  # the best view
        if frame == 15:
            score, box = 0.99, [0, 100, 60, 200]  # better, but cut by the frame's edge
        measure.step(frame, frame / FPS, picture, tracked([box], [3], [score]), ["car"], detected=frame != 12)
    measure.step(20, 20 / FPS, np.full_like(PICTURE, 250), tracked([[200, 100, 260, 200]], [3], [0.999]), ["car"],
                 detected=False)  # a carried box: its score is an older frame's
    measure.track_ended(3, "car")
    crop = cv2.imread(str(tmp_path / "crops" / "v2" / "car" / "clip_3.jpg"))
    assert crop.shape == (100, 60, 3) and abs(float(crop.mean()) - 70) < 3
    assert measure.summary({})["crops"] == 1


# ---------------------------------------------------------------- the tracker and the analytics together


def test_tracker_analytics_and_overlay_together(tmp_path):
    options = TrackOptions(analytics=AnalyticsOptions(
        lines=name_lines([parse_line("300,0,300,480")]), zones=name_zones([parse_zone("door=rect:200,100,400,400")]),
        speed=SpeedOptions(meters_per_pixel=0.05), heatmap=True))
    tracks = io.StringIO()
    tracking = RunTracking([SimpleNamespace(name="v2", class_names=CLASSES)], options, 0.5, FPS, SIZE, tracks)
    files = {"v2": AnalyticsFiles.named(tmp_path, "clip", "v2", options.analytics)}
    events = io.StringIO()
    analytics = RunAnalytics(tracking, options.analytics, SIZE, 1 / FPS, files, {"v2": events})
    settings = PredictionSettings("seeded", 96, "torch", "fp32", 1000, 0.5)
    for frame in range(120):  # a car drives through the zone and over the line, and is gone after frame 79
        boxes = np.array([box_at(162 + 4 * frame, 300)] if frame < 80 else [], np.float32).reshape(-1, 4)
        given = Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.full(len(boxes), 2, np.int64))
        predictions = tracking.step(frame, frame / FPS, [Prediction("v2", CLASSES, given, 1.0, settings)])
        found = analytics.step(frame, frame / FPS, PICTURE, predictions, True)
        if frame == 30:
            panel = PICTURE.copy()
            AnalyticsOverlay(analytics)(panel, predictions[0])
            assert panel[380, 210].any() and not panel[460, 20].any()  # the zone is drawn; far from it, nothing
            assert found["v2"].zones == {"door": {"car": 1}} and found["v2"].speeds[0] == pytest.approx(18, rel=0.05)
    (summary,) = analytics.close()
    kinds = [json.loads(line)["event"] for line in events.getvalue().splitlines()]
    assert kinds == ["enter", "cross", "exit"]
    measured = summary["analytics"]
    assert measured["distinct"] == {"car": 1} and measured["lines"]["line"]["crossings"]["left_to_right"] == {"car": 1}
    assert measured["zones"]["door"]["all"]["mean_dwell"] == pytest.approx(2.0, abs=1 / FPS)
    assert json.loads(tracks.getvalue().splitlines()[-1])["summary"]["crossings"]["left_to_right"] == {"car": 1}
    assert json.loads(files["v2"].summary.read_text()) == measured
    assert cv2.imread(str(files["v2"].heatmap)).shape == (SIZE[1], SIZE[0], 3)
    assert cv2.imread(str(files["v2"].counts_plot)) is not None


# ---------------------------------------------------------------- options


def test_bad_values_are_refused_with_their_reason():
    for text, reason in [("a=1,2,3,4", "at least three points"), ("a=1,2,x,4,5,6", "is not a polygon"),
                         ("a=1,2,3,4,5", "odd number"), ("a=0,0,10,10,20,20", "no area"),
                         ("a=rect:1,2,3", "rect:X1,Y1,X2,Y2"), ("=1,2,3,4,5,6", "name"),
                         ("a=0.1,0.1,0.9,0.1,0.9,120", r"mixes fractions of the frame \(0.1\) with pixels \(120\)")]:
        with pytest.raises(ValueError, match=reason):
            parse_zone(text)
    with pytest.raises(ValueError, match=r"mixes fractions of the frame \(0.5\) with pixels \(2\)"):
        parse_line("0.5,0,0.5,2")  # one value above 1 would otherwise make it a 2-pixel line
    assert parse_line("0,0.5,1,0.5").points == (0, 0.5, 1, 0.5) and parse_line("0,360,1280,360").points[2] == 1280
    for text, reason in [("0,0,100,0,200,0,50,80=3,4", "on one line"), ("0,0,100,100,100,0,0,100=3,4", "in order"),
                         ("0,0,100,0,100,80,0,80", "=W,H"), ("0,0,100,0,100,80=3,4", "eight numbers"),
                         ("0,0,100,0,100,80,0,80=3,-4", "above 0")]:
        with pytest.raises(ValueError, match=reason):
            parse_calibration(text)
    with pytest.raises(ValueError, match="two have the name 'a'"):
        name_zones([parse_zone("a=1,1,5,1,5,5"), parse_zone("a=rect:1,1,5,5")])
    with pytest.raises(ValueError, match="two have the name 'line2'"):
        name_lines([parse_line("line2=1,1,5,5"), parse_line("1,1,5,9")])


def test_bad_values_on_the_command_line_are_usage_errors(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=2)
    cases = [(["--zone", "a=1,2,3,4"], "at least three points"),
             (["--zone", "a=1,b,3,4,5,6"], "is not a polygon"),
             (["--count-line", "A=1,2,x,4"], "X1,Y1,X2,Y2"),
             (["--speed"], "--speed needs a calibration"),
             (["--speed", "--calibrate", "0,0,50,50,100,100,0,80=3,4"], "on one line"),
             (["--zone", "a=rect:1,1,5,5", "--zone", "a=rect:6,6,9,9"], "two have the name 'a'"),
             (["--count-line", "A=1,1,5,5", "--count-line", "A=1,1,5,9"], "two have the name 'A'"),
             (["--meters-per-pixel", "0.1", "--calibrate", "0,0,9,0,9,9,0,9=3,4"], "choose one"),
             (["--heatmap-decay", "2"], "--heatmap-decay is for --heatmap")]
    for args, message in cases:
        result = run_script("detect_video.py", "--input", str(clip), *args, cwd=tmp_path)
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        assert result.returncode == 2 and len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------- detect_video.py


ANALYTICS = ["--zone", "left=0,0,0.5,0,0.5,1,0,1", "--zone", "corner=rect:100,60,160,120",
             "--count-line", "middle=0.5,0,0.5,1", "--count-line", "across=0,0.5,1,0.5",
             "--speed", "--meters-per-pixel", "0.05", "--heatmap", "--save-crops"]


def detect(tmp_path, checkpoints, *args, model="v1"):
    return run_detector("detect_video.py", tmp_path, checkpoints, "--proposals", "100", *args, model=model)


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_analytics(folder, name: str, model: str, frames: int) -> dict:
    """Every analytics file of one model is there and reads; returns its summary."""
    summary = json.loads((folder / f"{name}_{model}_summary.json").read_text())
    assert summary["model"] == model and summary["frames"] == frames
    assert set(summary["lines"]) == {"middle", "across"} and set(summary["zones"]) == {"left", "corner"}
    assert summary["speed"]["unit"] == "km/h" and summary["heatmap"]["cell"] >= 1
    for event in jsonl(folder / f"{name}_{model}_events.jsonl"):
        assert {"event", "frame", "time", "track", "class"} <= event.keys()
        assert ("line" in event and "direction" in event) if event["event"] == "cross" else "zone" in event
    for picture in ("heatmap", "counts"):
        assert cv2.imread(str(folder / f"{name}_{model}_{picture}.png")) is not None
    crops = sorted((folder / "crops" / model).glob(f"*/{name}_*.jpg"))
    assert len(crops) == summary["crops"] > 0
    assert all(cv2.imread(str(crop)) is not None for crop in crops)
    return summary


def test_a_run_with_every_analytics_option_writes_every_file(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=5, size=(160, 120), fps=10)
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--json", "--detect-every", "2", *ANALYTICS,
                    model="both")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "outputs"
    for model in ("v1", "v2"):  # each model its own analytics
        check_analytics(out, "clip", model, frames=5)
        assert f"{model} zone left: entered " in result.stdout and f"{model} line middle crossed " in result.stdout
        assert f"{model} speeds: " in result.stdout
    records = jsonl(out / "clip_both.jsonl")
    assert len(records) == 5 and [r["detected"] for r in records] == [True, False, True, False, True]
    for record in records:
        for model in record["results"]:
            assert set(model["zones"]) == {"left", "corner"} and model["speed_unit"] == "km/h"
    assert "lines" in jsonl(out / "clip_both_tracks.jsonl")[-1]["summary"]
    assert leftovers(tmp_path) == []


def test_the_files_come_back_from_a_worker_as_from_a_run_here(tmp_path, checkpoints):
    """The --ray path without Ray: the job a worker runs (the video as bytes), then the driver's writing."""
    from frcnn.cli import detect_video
    from frcnn.core.specs import DetectOptions, ModelSpec
    from frcnn.inference.loading import load_predictors
    from frcnn.pipelines.jobs import LocalPool

    clip = make_video(tmp_path / "clip.mp4", frames=3, size=(160, 120), fps=10)
    args = detect_video.build_parser().parse_args(["--input", str(clip), *ANALYTICS])
    tracking = detect_video.track_options(args, detect_video.build_parser())
    run = detect_video.VideoRun(model_option="v1", tracking=tracking, progress=False)
    spec = ModelSpec("v1", weights=str(checkpoints["v1"]), imgsz=int(SMALL_IMGSZ), backend="torch", device="cpu",
                     proposals=100)
    predictors = load_predictors([spec], DetectOptions(threshold=0.1))
    out = tmp_path / "outputs"
    written = detect_video.Written(out, {str(clip): "clip"}, records=False)
    failed = detect_video.process_on_workers(LocalPool(predictors), [str(clip)], run, written, threading.Event())
    assert failed == 0
    check_analytics(out, "clip", "v1", frames=3)
    assert (out / "clip_v1.mp4").stat().st_size > 0 and (out / "clip_v1_tracks.jsonl").exists()
    assert leftovers(tmp_path) == []


def test_an_interrupted_run_keeps_its_analytics(tmp_path, checkpoints):
    clip = make_video(tmp_path / "long.mp4", frames=300, size=(160, 120), fps=10)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "detect_video.py"), "--input", str(clip), "--weights", str(checkpoints["v1"]),
         "--model", "v1", "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--proposals", "100", "--json", *ANALYTICS],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and written_frames(tmp_path / "outputs") < 3:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    frames = len(jsonl(tmp_path / "outputs" / "long_v1.jsonl"))
    assert 0 < frames < 300
    check_analytics(tmp_path / "outputs", "long", "v1", frames=frames)
    assert leftovers(tmp_path) == []


def written_frames(folder) -> int:
    """Lines in the frame records a running detect_video.py is still writing."""
    partial = [p for p in leftovers(folder) if p.name.startswith(".long_v1.") and p.suffix == ".jsonl"] \
        if folder.exists() else []
    return len(partial[0].read_text().splitlines()) if partial else 0


def test_a_zone_outside_the_frame_is_said_once_per_video(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=3)  # 160 x 120
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--zone", "far=rect:400,300,500,400")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "lies entirely outside" in line]
    assert len(warnings) == 1 and "zone far" in warnings[0], result.stderr


# ---------------------------------------------------------------- from Python, on anyone's detections


def test_lines_and_zones_from_python_on_tracked_detections():
    from frcnn.analytics import Event, LineSet, ZoneSet, name_lines, name_zones, parse_line, parse_zone

    lines = LineSet(name_lines([parse_line("gate=0.5,0,0.5,1")]), 200, 100)
    zones = ZoneSet(name_zones([parse_zone("right=rect:0.5,0,1,1")]), 200, 100, frame_interval=0.5)
    events = []
    # Track 3 walks right across the middle of a 200 x 100 frame, one box a frame; track 9 stays left; an
    # untracked box (id -1) is ignored.
    for frame, x in enumerate([60, 80, 100, 120, 140]):
        tracked = Detections(np.array([[x, 40, x + 20, 60], [10, 10, 20, 20], [150, 10, 160, 20]], np.float32),
                             np.full(3, 0.9, np.float32), np.ones(3, np.int64), np.array([3, 9, -1]))
        classes = ["person", "dog", "cat"]
        events += lines.update(frame, frame * 0.5, tracked, classes) + zones.update(frame, frame * 0.5, tracked,
                                                                                      classes)
    # The centre (x + 10) passes 100 between frames 1 (90) and 2 (110); the bottom centre enters x >= 100 at frame 2.
    assert events == [Event("cross", 2, 1.0, 3, "person", line="gate", direction="left_to_right"),
                      Event("enter", 2, 1.0, 3, "person", zone="right")]
    assert lines.totals() == {"gate": {"left_to_right": {"person": 1}, "right_to_left": {}}}
    assert zones.counts() == {"right": {"person": 1}}
    assert events[0].to_json() == {"event": "cross", "frame": 2, "time": 1.0, "track": 3, "class": "person",
                                   "line": "gate", "direction": "left_to_right"}
