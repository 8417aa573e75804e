"""detect_video.py run as a user runs it: a subprocess, offline, on clips the tests write with OpenCV."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import (
    ROOT,
    SMALL_IMGSZ,
    assert_one_line_error,
    leftovers,
    make_video,
    read_video,
    run_detector,
    run_script,
    scene,
)
from x11_window import click_close, find_window, press_key


def detect(tmp_path, checkpoints, *args, model="v1", backend="torch"):
    return run_detector("detect_video.py", tmp_path, checkpoints, *args, model=model, backend=backend)


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_frame_is_written_as_browser_playable_h264(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=6, size=(160, 120), fps=10)
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--json")
    assert result.returncode == 0, result.stderr
    output = tmp_path / "outputs" / "clip_v1.mp4"
    frames, fps = read_video(output)  # OpenCV's FFmpeg decoder, not the libx264 encoder that wrote it
    assert len(frames) == 6 and frames[0].shape == (120, 160, 3) and fps == pytest.approx(10)
    with av.open(str(output)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert container.format.name.startswith("mov,mp4")
    head = output.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat") or b"mdat" not in head  # index first: streams in a browser
    records = jsonl(tmp_path / "outputs" / "clip_v1.jsonl")
    assert [r["frame"] for r in records] == list(range(6))
    assert [r["time"] for r in records] == pytest.approx([i / 10 for i in range(6)])
    for record in records:
        assert set(record) == {"frame", "time", "width", "height", "detected", "results"} and record["detected"]
        assert (record["width"], record["height"]) == (160, 120)
        (model,) = record["results"]
        assert model["model"] == "v1" and model["inference_ms"] > 0
        assert model["detections"] and all(set(d) == {"label", "label_id", "score", "box"} for d in model["detections"])
    assert "6 frames ->" in result.stdout and "speed: inference v1 " in result.stdout
    assert leftovers(tmp_path) == []


def test_stride_and_max_frames_set_count_and_rate(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.avi", frames=9, fps=12, fourcc="MJPG")
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--frame-stride", "3", "--json")
    assert result.returncode == 0, result.stderr
    frames, fps = read_video(tmp_path / "outputs" / "clip_v1.mp4")
    assert len(frames) == 3 and fps == pytest.approx(4)
    assert [r["frame"] for r in jsonl(tmp_path / "outputs" / "clip_v1.jsonl")] == [0, 3, 6]
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--frame-stride", "2", "--max-frames", "2")
    assert result.returncode == 0, result.stderr
    frames, fps = read_video(tmp_path / "outputs" / "clip_v1.mp4")
    assert len(frames) == 2 and fps == pytest.approx(6)


def test_both_models_side_by_side(tmp_path, checkpoints):
    clip = tmp_path / "clip.mkv"  # odd sizes, which OpenCV's writers round away: lossless FFV1 through PyAV
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 161, 121, "bgr0"
        for index in range(3):
            picture = av.VideoFrame.from_ndarray(np.roll(scene(121, 161), 5 * index, axis=1), format="bgr24")
            container.mux(stream.encode(picture.reformat(format="bgr0")))
        container.mux(stream.encode())
    assert read_video(clip)[0][0].shape == (121, 161, 3)
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--json", model="both")
    assert result.returncode == 0, result.stderr
    frames, _ = read_video(tmp_path / "outputs" / "clip_both.mp4")
    assert len(frames) == 3
    height, width = frames[0].shape[:2]
    # Two panels under title bars; H.264 needs even sizes, so an odd one gets a black row or column.
    assert width == 2 * 161 and height > 121 + 8 and height % 2 == 0
    records = jsonl(tmp_path / "outputs" / "clip_both.jsonl")
    assert [[r["model"] for r in record["results"]] for record in records] == [["v1", "v2"]] * 3
    assert "speed: inference v1 " in result.stdout and ", v2 " in result.stdout


def test_batched_frames_give_the_same_detections(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=5)
    single = detect(tmp_path, checkpoints, "--input", str(clip), "--json", "--output", "one")
    batched = detect(tmp_path, checkpoints, "--input", str(clip), "--json", "--output", "four", "--batch", "4")
    assert single.returncode == 0 and batched.returncode == 0, batched.stderr
    for a, b in zip(jsonl(tmp_path / "one" / "clip_v1.jsonl"), jsonl(tmp_path / "four" / "clip_v1.jsonl"),
                    strict=True):
        a, b = a["results"][0] | {"frame": a["frame"]}, b["results"][0] | {"frame": b["frame"]}
        assert a["frame"] == b["frame"] and len(a["detections"]) == len(b["detections"])
        for da, db in zip(a["detections"], b["detections"]):
            assert da["label_id"] == db["label_id"]
            assert abs(da["score"] - db["score"]) <= 1e-3
            assert np.allclose(da["box"], db["box"], atol=0.5)  # tolerance: 0.5 px


def processed_frames(folder) -> int:
    """Lines in the JSON Lines file a running detect_video.py is still writing."""
    if not folder.exists():
        return 0
    partial = [p for p in leftovers(folder) if p.suffix == ".jsonl" and "_tracks" not in p.name]
    return len(partial[0].read_text().splitlines()) if partial else 0


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_keeps_a_playable_video_of_what_was_processed(tmp_path, checkpoints, signum, code):
    clip = make_video(tmp_path / "long.mp4", frames=400)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch-home"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "detect_video.py"), "--input", str(clip), "--weights", str(checkpoints["v1"]),
         "--model", "v1", "--imgsz", SMALL_IMGSZ, "--json", "--backend", "torch", "--track"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and processed_frames(tmp_path / "outputs") < 3:
        time.sleep(0.2)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    frames, _ = read_video(tmp_path / "outputs" / "long_v1.mp4")
    records = jsonl(tmp_path / "outputs" / "long_v1.jsonl")
    assert 0 < len(frames) < 400 and len(records) == len(frames)
    assert f"{len(frames)} frames ->" in stdout
    # The tracks of the frames processed are written out too, with the summary that stdout gives.
    tracks = jsonl(tmp_path / "outputs" / "long_v1_tracks.jsonl")
    assert "summary" in tracks[-1] and all(t["last_frame"] < len(frames) for t in tracks[:-1])
    assert "tracked: " in stdout
    assert leftovers(tmp_path) == []


def test_a_phone_video_with_rotation_metadata_comes_out_upright(tmp_path, checkpoints):
    clip = tmp_path / "portrait.mp4"
    with av.open(str(clip), "w") as container:  # stored landscape, white on the left, "rotate 90" to display
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.set_display_rotation(90)
        frame = np.zeros((96, 160, 3), np.uint8)
        frame[:, :40] = 255
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--classes", "toothbrush")  # no boxes in the way
    assert result.returncode == 0, result.stderr
    assert "portrait: 96x160" in result.stderr
    frames, _ = read_video(tmp_path / "outputs" / "portrait_v1.mp4")
    assert len(frames) == 3 and frames[0].shape == (160, 96, 3)
    assert frames[0][-20:].mean() > frames[0][:40].mean() + 100  # the white side is at the bottom, as players show it


def test_a_truncated_file_keeps_every_frame_that_decodes(tmp_path, checkpoints):
    clip = make_video(tmp_path / "whole.avi", frames=30, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 6 // 10])
    readable = len(read_video(cut)[0])
    assert 0 < readable < 30
    result = detect(tmp_path, checkpoints, "--input", str(cut))
    assert result.returncode == 0, result.stderr
    assert f"warning: {30 - readable} frame(s)" in result.stderr
    assert len(read_video(tmp_path / "outputs" / "cut_v1.mp4")[0]) == readable


def test_bad_sources_are_one_line_and_leave_no_file(tmp_path, checkpoints):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    fake_photo = tmp_path / "fake.jpg"  # text under a picture's name: FFmpeg "opens" it at 0x0
    fake_photo.write_text("not a picture either")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    no_frames = make_video(tmp_path / "no-frames.mp4", frames=0)
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), scene())
    cases = [
        (str(photo), "a still picture, not a video; use detect_image.py"),
        ("http://127.0.0.1:9/photo.jpg", "a still picture, not a video; use detect_image.py"),
        (str(tmp_path / "missing.mp4"), "file not found"),
        (str(text), "not a video"),
        (str(fake_photo), "not a video"),
        (str(empty), "empty"),
        (str(no_frames), "no frames"),
        ("9", "no camera at index 9"),
        ("rtsp://127.0.0.1:9/stream", "cannot open stream"),
    ]
    for source, message in cases:
        result = detect(tmp_path, checkpoints, "--input", source)
        assert_one_line_error(result)
        assert message in result.stderr, (source, result.stderr)
        assert "Loaded" not in result.stderr and "0x0" not in result.stderr, (source, result.stderr)  # said first
        assert not list((tmp_path / "outputs").glob("*")), source


def test_a_stream_that_never_answers_times_out_with_one_line(tmp_path, checkpoints):
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts connections, never sends a byte
        port = server.getsockname()[1]
        result = run_script("detect_video.py", "--input", f"http://127.0.0.1:{port}/clip.mp4", "--model", "v1",
                            "--weights", str(checkpoints["v1"]), cwd=tmp_path, env={"no_proxy": "127.0.0.1"})
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines() == [
        f"error: cannot open stream http://127.0.0.1:{port}/clip.mp4 (unreachable, or no video within 10 s)"]
    assert not list((tmp_path / "outputs").glob("*"))


def test_usage_errors(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=2)
    for args in (["--frame-stride", "0"], ["--max-frames", "-1"], ["--batch", "x"], ["--threshold", "-0.1"]):
        result = detect(tmp_path, checkpoints, "--input", str(clip), *args)
        assert result.returncode == 2, (args, result.stderr)
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--half", "--device", "cpu")
    assert_one_line_error(result)
    assert "--half needs a CUDA device" in result.stderr


def test_show_without_a_display_warns_and_still_writes(tmp_path, checkpoints):
    clip = make_video(tmp_path / "clip.mp4", frames=3)
    result = detect(tmp_path, checkpoints, "--input", str(clip), "--show")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("cannot open a window") == 1
    assert len(read_video(tmp_path / "outputs" / "clip_v1.mp4")[0]) == 3


def test_show_plays_the_frames_in_a_window(tmp_path, checkpoints, virtual_display):
    clip = make_video(tmp_path / "clip.mp4", frames=5)
    result = run_script("detect_video.py", "--input", str(clip), "--model", "v1", "--weights", str(checkpoints["v1"]),
                        "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--show", cwd=tmp_path,
                        env={"DISPLAY": virtual_display}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cannot open a window" not in result.stderr
    if next(Path("/usr/share/fonts").rglob("*.ttf"), None):
        assert "QFontDatabase" not in result.stderr  # Qt was pointed at the system's fonts
    assert len(read_video(tmp_path / "outputs" / "clip_v1.mp4")[0]) == 5


def start_showing(tmp_path, checkpoints, display, frames):
    """detect_video.py --show on a clip, once it has processed a few frames."""
    clip = make_video(tmp_path / "long.mp4", frames=frames)
    env = {**os.environ, "DISPLAY": display, "TORCH_HOME": str(tmp_path / "torch-home")}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "detect_video.py"), "--input", str(clip), "--weights", str(checkpoints["v1"]),
         "--model", "v1", "--imgsz", SMALL_IMGSZ, "--json", "--backend", "torch", "--show"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and processed_frames(tmp_path / "outputs") < 3:
        time.sleep(0.2)
    return process


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")
def test_q_in_the_window_stops_and_keeps_what_was_processed(tmp_path, checkpoints, virtual_display):
    process = start_showing(tmp_path, checkpoints, virtual_display, frames=400)
    press_key(virtual_display, find_window(virtual_display, "long"), "q")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "q pressed" in stderr
    frames, _ = read_video(tmp_path / "outputs" / "long_v1.mp4")
    assert 0 < len(frames) < 400 and len(jsonl(tmp_path / "outputs" / "long_v1.jsonl")) == len(frames)


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")
def test_closing_the_window_goes_on_without_it(tmp_path, checkpoints, virtual_display):
    process = start_showing(tmp_path, checkpoints, virtual_display, frames=80)
    click_close(virtual_display, find_window(virtual_display, "long"))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "window closed" in stderr and "cannot open a window" not in stderr
    assert len(read_video(tmp_path / "outputs" / "long_v1.mp4")[0]) == 80


def test_every_input_gets_its_own_output_name():
    from frcnn.cli.detect_video import output_base_names

    sources = ["rtsp://a.local/live", "rtsp://b.local/live", "0", "clips/webcam0.mp4", "more/webcam0.mp4",
               "http://c.local/"]
    names = output_base_names(sources)
    assert len(set(names.values())) == len(sources), names
    assert names["rtsp://a.local/live"] == "live" and names["rtsp://b.local/live"] == "live_2"
    assert names["http://c.local/"] == "stream"
    assert names["0"] not in (names["clips/webcam0.mp4"], names["more/webcam0.mp4"])
