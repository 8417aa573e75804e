"""The quality benchmark's quick mode: a tiny world, a short training, every measurement path (figures unchecked:
a few steps teach little)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import cv2
import pytest
from helpers import ROOT

from frcnn.synthetic import world


def test_quick_quality_benchmark_trains_and_measures_and_goes_on_after_ctrl_c(tmp_path):
    report_path = tmp_path / "quality.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--quick", "--models", "v1",
               "--cache", str(tmp_path / "cache"), "--json-out", str(report_path)]
    env = {**os.environ, "FRCNN_CACHE": str(tmp_path / "export-cache")}
    # Ctrl-C in a terminal reaches the benchmark and the train.py it runs (one process group).
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                               start_new_session=True)
    try:
        for line in process.stderr:
            if line.startswith("training v1 on cpu"):  # train.py's own line: it is under way
                os.killpg(process.pid, signal.SIGINT)
                break
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "the same command goes on" in stderr.splitlines()[-1]
    assert not report_path.exists()
    run = next((tmp_path / "cache").glob("world-*/trained-*/v1"))
    assert (run / "resume" / "state.pth").is_file() and not (run / "finished.json").exists()  # saved, unfinished

    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    model = json.loads(report_path.read_text())["models"]["v1"]
    assert model["trained"]["curve"] and "AP" in model["trained"]["curve"][-1]
    assert {"PyTorch fp32", "OpenVINO fp32", "fp32, --proposals 300"} <= set(model["precisions"])
    for metrics in [*model["precisions"].values(), *model["slicing"].values()]:
        assert 0 <= metrics["AP"] <= 1 and metrics["false_per_picture"] >= 0
    # OpenVINO runs the same computation as PyTorch: the same AP within rounding.
    assert abs(model["precisions"]["PyTorch fp32"]["AP"] - model["precisions"]["OpenVINO fp32"]["AP"]) < 0.02
    assert set(model["tracking"]) == {"1", "2", "4"}
    assert all(0 <= row["IDF1"] <= 1 and row["frames"] == 12 for row in model["tracking"].values())
    assert "CPU: " in result.stdout and "--detect-every" in result.stdout
    # The learning curve: epoch 1 ended at step 4 (8 pictures, batch 2).
    assert re.search(r"^1 +\| 4 +\| ", result.stdout, re.MULTILINE), result.stdout
    curves = cv2.imread(str(tmp_path / "quality_curves.png"))
    assert curves is not None and curves.shape[1] > 500


@pytest.mark.parametrize("args", [["--epochs", "0", "2"], ["--max-images", "-1", "2"]])
def test_counts_below_one_are_a_usage_error(tmp_path, args):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), *args, "--print-train-commands",
                             "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "must be at least 1" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "cache").exists()  # nothing made before the arguments are checked


def test_video_domain_measures_each_input_against_the_truth_it_was_drawn_with(tiny_trained, tmp_path):
    world_dir = tmp_path / "world"
    world_dir.mkdir()
    for split in ("train", "val"):  # the tiny run's own set stands for both
        (world_dir / split).symlink_to(tiny_trained.parent / "set", target_is_directory=True)
    (world_dir / "world.json").write_text(json.dumps({"seed": 0, "video_frames": 6}))
    report_path = tmp_path / "domain.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "video_domain.py"), "--weights",
                             str(tiny_trained / "best.pth"), "--world", str(world_dir), "--every", "3",
                             "--pictures", "2", "--json-out", str(report_path)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(report_path.read_text())["rows"]
    video_rows = [row for label, row in rows.items() if label.startswith("video,")]
    assert len(video_rows) == 6 and all(row["pictures"] == 2 for row in video_rows)  # frames 1 and 4 of 6
    drawn = [len(objects) for number, (_, objects) in enumerate(world.video_frames(0 + 3, 6)) if number % 3 == 0]
    assert {row["objects"] for row in video_rows} == {sum(drawn) / 2} and sum(drawn) > 0  # seed 0 + 3: the video's
    pictures = json.loads((tiny_trained.parent / "set" / "annotations.json").read_text())["annotations"]
    held_out = sum(a["image_id"] in (1, 2) for a in pictures) / 2
    assert rows["held-out pictures (as trained)"]["objects"] == held_out
    for label, row in rows.items():
        assert 0 <= row["found"] <= min(row["shown"], row["objects"]), label
        assert row["false"] == row["shown"] - row["found"] and "backbone" in row["bn_shift"]
        assert abs(sum(row["false_kinds"].values()) - row["false"]) < 1e-9, label  # every false box has its kind
    assert all(row["objects"] == 0 for label, row in rows.items() if "alone" in label)
    assert "BN shift: backbone" in result.stdout and "CPU: " in result.stdout


def test_tradeoff_measures_time_and_accuracy_per_setting_and_draws_the_chart(tiny_trained, tmp_path):
    world_dir = tmp_path / "world"
    world_dir.mkdir()
    for split in ("train", "val"):  # the tiny run's own set stands for both
        (world_dir / split).symlink_to(tiny_trained.parent / "set", target_is_directory=True)
    world.write_video(world_dir / "video", 3, frames=4, size=(96, 64), objects=2)
    report_path = tmp_path / "tradeoff.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "tradeoff.py"), "--quick", "--models", "v1",
               "--world", str(world_dir), "--v1", str(tiny_trained), "--max-images", "2",
               "--json-out", str(report_path)]
    env = {**os.environ, "FRCNN_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    labels = [point["label"] for point in report["pictures"]]
    assert labels == ["v1 PyTorch p1000 800px", "v1 fp32 p1000 800px", "v1 fp32 p300 800px", "v1 fp32 p300 640px",
                      "v1 fp32 p300 512px"]
    for point in report["pictures"]:
        assert 0 < point["min_s"] <= point["median_s"] and 0 <= point["AP"] <= 1 and point["images"] == 2
    assert [point["every"] for point in report["videos"]] == [1, 2, 4]
    assert all(point["median_fps"] > 0 and 0 <= point["IDF1"] <= 1 for point in report["videos"])
    # the front: every setting that no other is both at least as fast and at least as accurate as (and better in one)
    points = report["pictures"]
    beaten = {p["label"] for p in points for q in points
              if q["median_s"] <= p["median_s"] and q["AP"] >= p["AP"] and (q["median_s"], q["AP"]) != (
                  p["median_s"], p["AP"])}
    assert set(report["front"]["pictures"]) == set(labels) - beaten
    assert "CPU: " in result.stdout and "v1 fp32 p300 512px" in result.stdout and "IDF1" in result.stdout
    chart = cv2.imread(str(report_path.with_suffix(".png")))
    assert chart is not None and chart.shape[1] > 1000  # pictures and video side by side

    # --resume keeps what was measured: nothing is timed again.
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(report_path.read_text())["pictures"] == report["pictures"]
