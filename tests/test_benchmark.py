"""The speed benchmark's quick mode, so that it keeps working (its timings are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
from helpers import ROOT, make_video, scene


def test_quick_benchmark_runs_and_checks_every_backend(tmp_path):
    picture = tmp_path / "picture.jpg"
    cv2.imwrite(str(picture), scene(240, 320))
    clip = make_video(tmp_path / "clip.mp4", frames=4)
    report_path = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--models", "v1", "--image", str(picture),
         "--video", str(clip), "--json-out", str(report_path), "--precisions", "bf16", "--proposals", "1000", "300"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["imgsz"] == 320 and report["runs"] == 1 and report["v1_gflop"] > 0
    rows = {row["path"]: row for row in report["results"]}
    assert {"reference", "torch"} <= set(rows)
    for path, row in rows.items():
        assert row["median_s"] > 0 and row["peak_rss_mb"] > 0 and row["video_fps"] > 0 and row["video_frames"] == 3
        if path == "torch":  # at this size nothing is pre-shrunk: the same as the original-style loop
            assert row["check_original"]["equivalent"] and row["check_original"]["paired"] > 0, row
        elif path.startswith("openvino "):  # a precision or proposals variant, compared with fp32 OpenVINO
            agreement = row["agreement"]
            assert agreement["reference_shown"] > 0 and 0 <= agreement["matched"] <= agreement["reference_shown"]
        elif path != "reference":
            assert row["check"]["equivalent"] and row["check"]["paired"] > 0, row
            assert row["export_s"] > 0
    assert "speed-up" in result.stdout and "GFLOP/s" in result.stdout and "CPU: " in result.stdout
    if "openvino" in rows:
        assert "openvino fp32 p300" in rows  # and bf16 where this CPU has it
    assert set(report["help_seconds"]) == {"detect_image.py", "detect_video.py", "evaluate.py"}


def test_quick_tracking_benchmark_runs(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=8)
    report_path = tmp_path / "tracking.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tracking_cost.py"), "--quick",
                             "--video", str(clip),
                             "--json-out", str(report_path)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(report_path.read_text())["models"]["v1"]
    assert row["reference_fps"] > 0 and all(row["track"][e]["fps"] > 0 for e in ("1", "2", "4"))
    assert row["tracker"]["median_ms"] > 0 and row["drift_every_4"]["detector_boxes"] > 0
