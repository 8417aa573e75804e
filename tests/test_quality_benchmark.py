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
