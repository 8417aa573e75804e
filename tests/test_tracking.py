"""Tracking with answers known by construction: synthetic detection streams, line crossings, still videos."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from helpers import SMALL_IMGSZ, run_script, scene
from trackers.eval.clear import compute_clear_metrics
from trackers.eval.identity import compute_identity_metrics

from frcnn.analytics.crossing import LineCounter, parse_count_line
from frcnn.core.boxes import overlap_matrix
from frcnn.core.detections import Detections
from frcnn.core.specs import TrackOptions
from frcnn.inference.tracking import VideoTracking

FPS = 25.0


def tracking(lost_seconds: float = 1.0, finished: list | None = None) -> VideoTracking:
    sink = finished.append if finished is not None else (lambda track: None)
    return VideoTracking("v2", ["__background__", "person", "car"], TrackOptions(lost_seconds=lost_seconds), FPS,
                         0.5, (640, 480), sink)


def truth_boxes(frame: int) -> np.ndarray:
    """Three objects moving at constant speed on paths that never cross."""
    starts = np.array([[20, 40], [20, 200], [400, 360]], np.float64)
    speeds = np.array([[3, 0.5], [2.5, -0.3], [-2, -0.4]])
    corners = starts + speeds * frame
    return np.hstack([corners, corners + [40, 60]])


def test_three_objects_keep_one_id_each_through_noise_and_dropped_detections():
    rng = np.random.default_rng(7)
    follow = tracking()
    gt_ids, tracker_ids, similarities = [], [], []
    for frame in range(100):
        truth = truth_boxes(frame)
        kept = rng.random(3) >= 0.1  # a tenth of the detections go missing
        noisy = truth + rng.normal(0, 1, truth.shape)
        given = Detections(noisy[kept].astype(np.float32), np.full(kept.sum(), 0.9, np.float32),
                           np.ones(kept.sum(), np.int64))
        shown = follow.step(frame, frame / FPS, given)
        tracked = shown[shown.track_ids >= 0]
        # Scored against what the detector gave: a tracker cannot be asked for boxes nobody saw.
        gt_ids.append(np.flatnonzero(kept))
        tracker_ids.append(tracked.track_ids)
        similarities.append(overlap_matrix(truth[kept], tracked.boxes))
    identity = compute_identity_metrics(gt_ids, tracker_ids, similarities)
    clear = compute_clear_metrics(gt_ids, tracker_ids, similarities)
    assert identity["IDF1"] >= 0.95 and clear["IDSW"] == 0
    assert len(set(np.concatenate(tracker_ids).tolist())) == 3
    assert follow.close()["distinct"] == {"person": 3}



def test_carried_boxes_follow_the_motion_and_leave_the_tracks_as_they_were():
    """Predicting where tracks go (frames not detected) is Kalman's constant-velocity step on a copy: the boxes are
    those a full copy of each filter predicts, and predicting changes nothing in what the tracker does next."""
    import copy

    from frcnn.inference.tracking import ObjectTracker

    def detections(frame: int) -> Detections:
        return Detections(truth_boxes(frame).astype(np.float32), np.full(3, 0.9, np.float32), np.ones(3, np.int64))

    predicting, untouched = ObjectTracker(FPS, 0.5), ObjectTracker(FPS, 0.5)
    for frame in range(0, 40, 2):
        tracked = predicting.update(detections(frame), frame / FPS)
        expected = untouched.update(detections(frame), frame / FPS)
        np.testing.assert_array_equal(tracked.boxes, expected.boxes)
        np.testing.assert_array_equal(tracked.track_ids, expected.track_ids)
        carried = predicting.predicted_boxes((frame + 1) / FPS)
        assert carried == {} if frame == 0 else len(carried) == 3
        for track in predicting._tracker.tracks:
            if track.tracker_id >= 0:
                full = copy.deepcopy(track.state_estimator)
                full.predict(1.0, FPS)
                np.testing.assert_array_equal(carried[int(track.tracker_id)], np.float32(full.state_to_bbox()))
    # Objects move 2-3 px a frame: the carried box sits between the last detected one and the next.
    last = predicting.update(detections(40), 40 / FPS)
    carried = predicting.predicted_boxes(41 / FPS)
    for box, track_id in zip(last.boxes, last.track_ids):
        step = carried[int(track_id)] - box
        assert 1.5 <= abs(step[0]) <= 3.5

@pytest.mark.parametrize("gap, same_id", [(10, True), (40, False)])
def test_an_object_unseen_for_a_while_keeps_its_id_only_within_the_buffer(gap, same_id):
    finished = []
    follow = tracking(lost_seconds=1.0, finished=finished)  # 1 s: 25 frames here
    box = np.array([[100, 100, 160, 200]], np.float32)
    seen = Detections(box, np.array([0.9], np.float32), np.array([2], np.int64))
    ids = []
    frames = [*range(0, 10), *range(10 + gap, 20 + gap)]
    for frame in range(frames[-1] + 1):
        shown = follow.step(frame, frame / FPS, seen if frame in frames else Detections.empty())
        ids.extend(int(i) for i in shown.track_ids if i >= 0)
    assert (len(set(ids)) == 1) == same_id, ids
    summary = follow.close()
    assert summary["distinct"] == {"car": 1 if same_id else 2}
    assert [t["label"] for t in finished] == ["car"] * (1 if same_id else 2)


def centres(points):
    return [np.array(p, np.float64) for p in points]


def test_line_crossings_count_once_per_direction_and_never_for_stopping_or_sliding():
    counter = LineCounter(parse_count_line("100,0,100,200"))
    for track, path in {
        1: [(80, 50), (95, 52), (110, 54), (130, 56), (95, 60)],  # right, then back left: one each way
        2: [(80, 100), (100, 100), (100, 101), (100, 102)],  # stops on the line
        3: [(100, 10), (100, 60), (100, 150)],  # slides along it
        4: [(80, 300), (130, 300)],  # passes beyond the segment's end
        5: [(90, 20), (99, 20), (101, 20), (120, 20)],  # left to right in small steps
    }.items():
        for point in centres(path):
            counter.update(track, point, "car")
    assert counter.totals() == {"left_to_right": {"car": 2}, "right_to_left": {"car": 1}}
    horizontal = LineCounter(parse_count_line("0,0.5,1,0.5"))  # fractions: read by the video step
    assert list(horizontal.totals()) == ["top_to_bottom", "bottom_to_top"]
    for bad in ("1,2,3", "a,b,c,d", "5,5,5,5", "-1,0,10,10"):
        with pytest.raises(ValueError):
            parse_count_line(bad)


def still_video(path, frames: int, size=(160, 120)):
    """A lossless video of one picture repeated: the detector gives the same boxes on every frame."""
    picture = scene(size[1], size[0], seed=11)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "bgr0"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="bgr0")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def video_records(folder, name):
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_a_still_video_keeps_every_id_and_carried_frames_repeat_the_boxes(tmp_path, checkpoints):
    clip = still_video(tmp_path / "still.mkv", frames=7)
    common = ["--input", str(clip), "--weights", str(checkpoints["v1"]), "--model", "v1", "--imgsz", SMALL_IMGSZ,
              "--backend", "torch", "--json"]
    every = run_script("detect_video.py", *common, "--track", "--output", "every", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    frames = video_records(tmp_path / "every", "still_v1.jsonl")
    assert all(f["detected"] for f in frames)
    per_frame = [f["results"][0]["detections"] for f in frames]
    count = len(per_frame[0])
    assert count > 3 and all(len(d) == count for d in per_frame)
    assert all(d["track_id"] is None for d in per_frame[0])  # a track is confirmed on its second frame
    ids = [[d["track_id"] for d in detections] for detections in per_frame[1:]]
    assert all(i is not None for frame_ids in ids for i in frame_ids)
    assert all(sorted(frame_ids) == sorted(ids[0]) for frame_ids in ids) and len(set(ids[0])) == count
    tracks = video_records(tmp_path / "every", "still_v1_tracks.jsonl")
    assert tracks[-1]["summary"]["distinct"] == {"person": count}
    assert sorted(t["track_id"] for t in tracks[:-1]) == sorted(ids[0])
    assert all((t["first_frame"], t["last_frame"]) == (1, 6) for t in tracks[:-1])
    assert f"tracked: {count} person" in every.stdout

    sparse = run_script("detect_video.py", *common, "--detect-every", "3", "--output", "sparse", cwd=tmp_path)
    assert sparse.returncode == 0, sparse.stderr
    frames = video_records(tmp_path / "sparse", "still_v1.jsonl")
    assert [f["detected"] for f in frames] == [True, False, False, True, False, False, True]
    boxes = {d["track_id"]: d["box"] for d in frames[3]["results"][0]["detections"]}
    assert len(boxes) == count and None not in boxes
    for frame in frames[4:]:  # carried by the tracker, then detected again: the same boxes
        found = {d["track_id"]: d["box"] for d in frame["results"][0]["detections"]}
        assert found.keys() == boxes.keys()
        assert all(np.allclose(found[i], boxes[i], atol=0.5) for i in boxes)


def test_both_models_track_apart(tmp_path, checkpoints):
    clip = still_video(tmp_path / "still.mkv", frames=4)
    result = run_script("detect_video.py", "--input", str(clip), "--weights", str(checkpoints["v1"]),
                        str(checkpoints["v2"]), "--model", "both", "--imgsz", SMALL_IMGSZ, "--backend", "torch",
                        "--json", "--track", "--trails", "3", "--count-line", "0.5,0,0.5,1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    frame = video_records(tmp_path / "outputs", "still_both.jsonl")[-1]
    per_model = {r["model"]: [d["track_id"] for d in r["detections"]] for r in frame["results"]}
    for name, ids in per_model.items():
        # Each model numbers its own tracks from the start: neither continues the other's numbers.
        assert min(ids) == 0 and sorted(ids) == list(range(len(ids))), (name, ids)
    summaries = [t["summary"] for t in video_records(tmp_path / "outputs", "still_both_tracks.jsonl") if "summary" in t]
    assert [s["model"] for s in summaries] == ["v1", "v2"]
    assert all(s["crossings"] == {"left_to_right": {}, "right_to_left": {}} for s in summaries)
    assert "v1 tracked:" in result.stdout and "v2 tracked:" in result.stdout


def test_tracking_usage_errors(tmp_path, checkpoints):
    clip = still_video(tmp_path / "still.mkv", frames=2)
    for args, message in [(["--count-line", "1,2,3"], "X1,Y1,X2,Y2"), (["--detect-every", "0"], "at least 1"),
                          (["--trails", "-2"], "at least 1"), (["--track-buffer", "x"], "seconds")]:
        result = run_script("detect_video.py", "--input", str(clip), *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_every_tracking_option_turns_tracking_on():
    from frcnn.cli import detect_video

    parser = detect_video.build_parser()
    assert detect_video.track_options(parser.parse_args([]), parser) is None
    for args in (["--track"], ["--trails", "5"], ["--detect-every", "2"], ["--track-buffer", "3"],
                 ["--count-line", "0,0.5,1,0.5"]):
        options = detect_video.track_options(parser.parse_args(args), parser)
        assert options is not None, args
        assert options.lost_seconds == (3.0 if args[0] == "--track-buffer" else detect_video.DEFAULT_TRACK_BUFFER_S)
