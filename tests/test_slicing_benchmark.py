"""The slicing benchmark's quick mode, so that it keeps working (its timings are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from helpers import ROOT

from frcnn.inference.slicing import auto_tile_size, tile_grid
from frcnn.model import backend_installed, choose_backend


def test_quick_slicing_benchmark_times_every_mode_and_checks_the_requests(tmp_path):
    report_path = tmp_path / "slicing.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "slicing_cost.py"), "--quick", "--json-out", str(report_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["imgsz"] == 64 and report["runs"] == 1
    assert report["backend"] == choose_backend("auto", torch.device("cpu"))
    assert report["pictures"] and all(p["generated"] for p in report["pictures"])
    assert set(report["machine"]["flags"]) >= {"avx2", "avx512f", "avx512_bf16"}
    rows = {(row["picture"], row["mode"]): row for row in report["results"]}
    for picture in report["pictures"]:
        width, height = map(int, picture["size"].split("x"))
        expected = {"none": 0, "640": len(tile_grid(width, height, 640, 0.2)),
                    "auto": len(tile_grid(width, height, auto_tile_size(width, height, 0.2), 0.2))}
        for mode, tiles in expected.items():
            row = rows[(picture["name"], mode)]
            assert row["model"] == "v1" and row["tiles"] == tiles and row["median_s"] > 0 and row["detections"] > 0
            if mode != "none":
                assert row["passes"] == tiles + 1 and row["full_pass_s"] > 0 and row["tile_s"] > 0
                assert 0 < row["rule_ratio"] < row["tiles_ratio"] and row["vs_no_slice"] > 0
    if backend_installed("openvino"):
        variants = report["async"]
        assert len(variants) == 4 and not report["async_errors"], report["async_errors"]
        for variant in variants:
            assert variant["median_s"] > 0 and variant["check"]["same_counts"], variant
            assert variant["check"]["same_labels"] and variant["check"]["max_box_diff_px"] <= 1.0, variant
    assert "sliced/(full x passes)" in result.stdout and "avx512f" in result.stdout
