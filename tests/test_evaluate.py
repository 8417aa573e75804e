"""evaluate.py on a small COCO-format set the tests draw, scored by pycocotools."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import CATEGORIES, ROOT, SMALL_IMGSZ, assert_one_line_error, make_set, metrics_of, run_detector, run_script


def evaluate(tmp_path, *args):
    return run_script("evaluate.py", *args, cwd=tmp_path)


def test_ground_truth_as_predictions_scores_one(tmp_path):
    images, annotations = make_set(tmp_path / "set")
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in json.loads(annotations.read_text())["annotations"]]
    predictions = tmp_path / "truth.json"
    predictions.write_text(json.dumps(truth))
    result = evaluate(tmp_path, "--annotations", str(annotations), "--predictions", str(predictions))
    assert result.returncode == 0, result.stderr
    metrics = metrics_of(tmp_path / "outputs" / "eval" / "metrics.json")
    for name in ("AP", "AP50", "AP75", "AP_large", "AR100"):
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["AP_small"] is None and metrics["images"] == 3
    assert "AP " in result.stdout and "100.0" in result.stdout


def test_known_misses_and_shifts_give_the_hand_computed_ap(tmp_path):
    # One image, three ground-truth boxes of one class. Predicted: A exactly (0.9), B shifted 23 px
    # (IoU 7700 / 12300 = 0.626; 0.8), a false positive (0.7); C is missed.
    # IoU thresholds 0.50, 0.55, 0.60: A and B match; recall reaches 2/3 at precision 1: 67 of 101 points.
    # Thresholds 0.65 ... 0.95 (7 of them): only A; recall 1/3 at precision 1: 34 of 101 points.
    # AP = (3·67 + 7·34) / (10·101) = 439 / 1010; AR100 = (3·2/3 + 7·1/3) / 10 = 13 / 30.
    boxes = {"A": [0, 0, 100, 100], "B": [150, 0, 100, 100], "C": [0, 150, 100, 100]}
    (tmp_path / "set").mkdir()
    annotations = tmp_path / "set" / "labels.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "x.jpg", "width": 300, "height": 300}],
        "annotations": [{"id": i + 1, "image_id": 7, "category_id": 1, "bbox": b, "area": 10000, "iscrowd": 0}
                        for i, b in enumerate(boxes.values())],
        "categories": [{"id": 1, "name": "person"}]}))
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps([
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 7, "category_id": 1, "bbox": [173, 0, 100, 100], "score": 0.8},
        {"image_id": 7, "category_id": 1, "bbox": [200, 200, 90, 90], "score": 0.7},
    ]))
    result = evaluate(tmp_path, "--annotations", str(annotations), "--predictions", str(predictions))
    assert result.returncode == 0, result.stderr
    metrics = metrics_of(tmp_path / "outputs" / "eval" / "metrics.json")
    assert metrics["AP"] == pytest.approx(439 / 1010, abs=1e-6)
    assert metrics["AP50"] == pytest.approx(67 / 101, abs=1e-6)
    assert metrics["AP75"] == pytest.approx(34 / 101, abs=1e-6)
    assert metrics["AP_large"] == pytest.approx(439 / 1010, abs=1e-6)
    assert metrics["AR100"] == pytest.approx(13 / 30, abs=1e-6)


def run_models(tmp_path, checkpoints, images, annotations, *args, model="both"):
    return run_detector("evaluate.py", tmp_path, checkpoints, "--images", str(images), "--annotations",
                        str(annotations), *args, model=model)


def test_seeded_checkpoints_run_and_write_both_files(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=2)
    result = run_models(tmp_path, checkpoints, images, annotations)
    assert result.returncode == 0, result.stderr
    for name in ("v1", "v2"):
        results = json.loads((tmp_path / "outputs" / "eval" / f"{name}_results.json").read_text())
        assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
        assert {r["category_id"] for r in results} == {1}  # the boosted class, "person", is category 1
        metrics = metrics_of(tmp_path / "outputs" / "eval" / f"{name}_metrics.json")
        assert metrics["images"] == 2 and 0 <= metrics["AP"] <= 1 and metrics["ms_per_image"] > 0
    assert "v2 - v1" in result.stdout
    assert "published" not in result.stdout  # torchvision's figures are of its COCO weights, not of these checkpoints


def test_published_figures_are_shown_only_when_asked():
    from frcnn.evaluation.comparison import metrics_table

    rows = {name: {"AP": 0.3, "ms_per_image": 10.0} for name in ("v1", "v2")}
    shown = metrics_table(rows, "", published=True)
    assert "AP published*" in shown and "37.0" in shown and "46.7" in shown and "+9.7" in shown
    assert "published" not in metrics_table(rows, "")


def test_max_images_takes_the_same_subset(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=4)
    result = run_models(tmp_path, checkpoints, images, annotations, "--max-images", "2", model="v1")
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "outputs" / "eval" / "v1_results.json").read_text())
    assert {r["image_id"] for r in results} == {1, 2}
    assert metrics_of(tmp_path / "outputs" / "eval" / "v1_metrics.json")["images"] == 2
    assert "here 2 of 4 images" in result.stdout


def test_an_interrupted_run_resumes_to_the_same_metrics(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=8)
    whole = run_models(tmp_path, checkpoints, images, annotations, "--output", "whole", model="v1")
    assert whole.returncode == 0, whole.stderr

    command = [sys.executable, str(ROOT / "evaluate.py"), "--images", str(images), "--annotations", str(annotations),
               "--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ, "--output", "cut",
               "--backend", "torch"]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "TORCH_HOME": str(tmp_path / "th")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = tmp_path / "cut" / "v1_progress.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # as a crash or power cut would: no chance to tidy up
    process.wait()
    done = len(progress.read_text().splitlines())
    assert 3 <= done < 8
    with open(tmp_path / "cut" / "v1_results.json", "a") as results:
        results.write('{"image_id": 8, "category_id": 1, "bb')  # a detection cut off mid-write

    resumed = run_models(tmp_path, checkpoints, images, annotations, "--output", "cut", model="v1")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming, {done} of 8 images already done" in resumed.stderr
    first, second = metrics_of(tmp_path / "whole" / "v1_metrics.json"), metrics_of(tmp_path / "cut" / "v1_metrics.json")
    for name in ("AP", "AP50", "AP75", "AR100", "images"):
        assert first[name] == second[name], name
    assert json.loads((tmp_path / "cut" / "v1_results.json").read_text()) == \
        json.loads((tmp_path / "whole" / "v1_results.json").read_text())


def test_bad_inputs(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=2)
    malformed = tmp_path / "malformed.json"
    malformed.write_text("{not json")
    not_coco = tmp_path / "not-coco.json"
    not_coco.write_text(json.dumps({"images": []}))
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": CATEGORIES}))
    cases = [
        (["--data", str(tmp_path / "nowhere")], "folder not found"),
        (["--images", str(images), "--annotations", str(tmp_path / "none.json")], "annotation file not found"),
        (["--images", str(tmp_path / "no-pics"), "--annotations", str(annotations)], "images folder not found"),
        (["--images", str(images), "--annotations", str(malformed)], "not a readable JSON"),
        (["--images", str(images), "--annotations", str(not_coco)], "not a COCO annotation file"),
        (["--images", str(images), "--annotations", str(empty)], "lists no images"),
        (["--annotations", str(annotations), "--predictions", str(malformed)], "not a readable COCO results"),
    ]
    for args, message in cases:
        result = evaluate(tmp_path, *args, "--model", "v1", "--weights", str(checkpoints["v1"]))
        assert_one_line_error(result)
        assert message in result.stderr, (args, result.stderr)
    assert evaluate(tmp_path, "--model", "v1").returncode == 2


def test_categories_must_match_the_model_by_name(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=1)
    data = json.loads(annotations.read_text())
    data["categories"][1]["name"] = "kayak"
    annotations.write_text(json.dumps(data))
    result = run_models(tmp_path, checkpoints, images, annotations, model="v1")
    assert_one_line_error(result)
    assert "match no class of v1: kayak" in result.stderr
    assert "Loading" not in result.stderr  # known from the names alone, before any model loads


def test_an_absent_image_is_reported_and_the_run_goes_on(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=3)
    (images / "001.jpg").unlink()
    result = run_models(tmp_path, checkpoints, images, annotations, model="v1")
    assert result.returncode == 0, result.stderr
    assert "001.jpg: file not found" in result.stderr and "1 listed image(s) were missing" in result.stderr
    metrics = metrics_of(tmp_path / "outputs" / "eval" / "v1_metrics.json")
    assert metrics["images"] == 2 and metrics["images_missing"] == 1
    assert "set: 3 pictures, 1 of them missing, " in result.stderr


def test_a_folder_without_most_of_the_listed_pictures_stops_before_any_model(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=3)
    for name in ("001.jpg", "002.jpg"):
        (images / name).unlink()
    result = run_models(tmp_path, checkpoints, images, annotations, model="v1")
    assert_one_line_error(result)
    assert f"2 of the 3 pictures {annotations} lists are not in {images}" in result.stderr
    assert "is --images the right folder?" in result.stderr and "Loading" not in result.stderr


def test_compare_puts_two_runs_side_by_side_with_what_differs(tmp_path):
    for folder, ap, precision in (("fp32", 0.412, "fp32"), ("int8", 0.405, "int8")):
        (tmp_path / folder).mkdir()
        metrics = {"AP": ap, "AP50": 0.7, "AP75": 0.4, "AP_small": None, "AP_medium": 0.3, "AP_large": 0.5,
                   "AR100": 0.6, "images": 50, "ms_per_image": 120.0}
        (tmp_path / folder / "v2_metrics.json").write_text(json.dumps(metrics))
        (tmp_path / folder / "v2_settings.json").write_text(json.dumps({"weights": "w.pth", "precision": precision}))
    result = evaluate(tmp_path, "--compare", "fp32", "int8")
    assert result.returncode == 0, result.stderr
    ap_row = next(line.split() for line in result.stdout.splitlines() if line.startswith("AP "))
    assert ap_row == ["AP", "41.2", "40.5", "-0.7"]
    assert "int8 - fp32" in result.stdout.splitlines()[0]
    assert 'precision: "fp32" | "int8"' in result.stdout and "weights" not in result.stdout
    assert_one_line_error(evaluate(tmp_path, "--compare", "fp32", "nowhere"))


def test_results_at_another_size_are_refused_before_the_model_is_exported(tmp_path, checkpoints):
    images, annotations = make_set(tmp_path / "set", images=1)
    first = run_models(tmp_path, checkpoints, images, annotations, model="v1")
    assert first.returncode == 0, first.stderr
    cache = tmp_path / "cache"
    # The default CPU runtime exports the model first: the refusal must come before that export.
    again = run_script("evaluate.py", "--images", str(images), "--annotations", str(annotations), "--model", "v1",
                       "--weights", str(checkpoints["v1"]), "--imgsz", "128", cwd=tmp_path,
                       env={"FRCNN_CACHE": str(cache)})
    assert_one_line_error(again)
    assert "imgsz 96 there, 128 here" in again.stderr
    assert not cache.exists() or not any(cache.iterdir())
