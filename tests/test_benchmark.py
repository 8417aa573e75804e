"""The speed benchmark's quick modes (the table and the per-stage profile) and the tracking benchmark's, so that they
keep working (their timings are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from helpers import ROOT, make_video, scene

from frcnn.model import backend_installed


def run_benchmark(script: str, report_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """A benchmark run as a user runs it (in the report's folder), and the report it wrote."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json-out", str(report_path)],
                            capture_output=True, text=True, timeout=900, cwd=report_path.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, json.loads(report_path.read_text())


def test_quick_benchmark_runs_and_checks_every_backend(tmp_path):
    picture = tmp_path / "picture.jpg"
    cv2.imwrite(str(picture), scene(240, 320))
    clip = make_video(tmp_path / "clip.mp4", frames=4)
    result, report = run_benchmark("speed.py", tmp_path / "speed.json", "--quick", "--models", "v1", "--image",
                                   str(picture), "--video", str(clip), "--precisions", "bf16", "--proposals", "1000",
                                   "300")
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


@pytest.mark.skipif(not backend_installed("openvino"), reason="OpenVINO is not installed")
def test_quick_tracked_video_benchmark_runs(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=8)
    result, report = run_benchmark("speed.py", tmp_path / "tracked.json", "--tracked-video", "--quick", "--models",
                                   "v1", "--video", str(clip))
    assert report["detect_every"] == 2 and report["runs"] == 1
    reference, project = report["results"]
    assert reference["path"] == "reference" and reference["speedup"] == 1.0
    assert project["path"] == "openvino int8 p300 every 2" and project["frames"] == 6
    assert project["median_fps"] > 0 and project["inference_ms_per_frame"] > 0
    assert "x reference" in result.stdout and "CPU: " in result.stdout


def test_quick_tracking_benchmark_runs(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=8)
    _, report = run_benchmark("tracking_cost.py", tmp_path / "tracking.json", "--quick", "--video", str(clip))
    row = report["models"]["v1"]
    assert row["reference_fps"] > 0 and all(row["track"][e]["fps"] > 0 for e in ("1", "2", "4"))
    assert row["tracker"]["median_ms"] > 0 and row["drift_every_4"]["detector_boxes"] > 0


def test_quick_profile_gives_every_stage_its_share_of_the_flops_and_the_time(tmp_path):
    picture = tmp_path / "picture.jpg"
    cv2.imwrite(str(picture), scene(240, 320))
    result, report = run_benchmark("speed.py", tmp_path / "profile.json", "--profile", "--quick", "--models", "v1",
                                   "--image", str(picture))
    assert report["imgsz"] == 64 and report["proposals"] == [1000]
    stages = report["stages"]
    top = [s["key"] for s in stages if s["parent"] is None]
    assert {"transform", "backbone", "fpn", "rpn", "roi_heads", "postprocess", "unattributed"} == set(top)
    configs = {(c["path"], c["precision"]): c for c in report["configs"]}
    assert set(configs) == {("eager", "fp32")} | ({("openvino", "fp32")} if backend_installed("openvino") else set())
    for config in configs.values():
        for values in (config["ms"], config["gflop"]):
            assert sum(values[key] for key in top) == pytest.approx(values["total"], rel=1e-9)
            for parent in {s["parent"] for s in stages} - {None}:
                parts = [s["key"] for s in stages if s["parent"] == parent]
                assert sum(values[key] for key in parts) == pytest.approx(values[parent], rel=1e-9, abs=1e-9)
        assert config["ms"]["backbone"] > 0 and config["ms"]["roi_heads.head"] > 0, config["ms"]
    flops = configs[("eager", "fp32")]["gflop"]
    # Every counted FLOP is a convolution or matrix product inside a stage module.
    assert flops["backbone"] > 0 and flops["fpn"] > 0 and flops["rpn.head"] > 0 and flops["roi_heads.head"] > 0
    assert flops["unattributed"] == flops["postprocess"] == flops["transform"] == 0
    assert configs[("eager", "fp32")]["proposals_used"] > 0
    if ("openvino", "fp32") in configs:  # the export's layer names still carry the modules' scopes
        openvino = configs[("openvino", "fp32")]["ms"]
        assert openvino["unattributed"] < 0.25 * openvino["total"], openvino
    assert report["peak"]["paths"]["fp32"]["gflop_per_s"] > 0
    for heading in ("CPU: ", "GFLOP per stage", "v1: milliseconds per stage", "GFLOP/s per stage", "peak: "):
        assert heading in result.stdout
