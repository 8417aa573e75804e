"""export.py: a checkpoint to ONNX or OpenVINO IR with its metadata, and the standalone example that runs the export
giving detect_image.py's detections; bad inputs as one line."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from helpers import ONE_THREAD, ROOT, SMALL_IMGSZ, assert_one_line_error, offline_env, run_script, scene

EXAMPLE = ROOT / "examples" / "run_exported.py"


def _export(checkpoints, folder: Path, *extra: str) -> Path:
    result = run_script("export.py", "--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ,
                        "--output", str(folder), *extra, cwd=folder.parent, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(("model.onnx", "model.xml")), result.stdout
    return folder


@pytest.fixture(scope="session")
def onnx_export(checkpoints, tmp_path_factory) -> Path:
    return _export(checkpoints, tmp_path_factory.mktemp("export") / "onnx")


@pytest.fixture(scope="session")
def openvino_export(checkpoints, tmp_path_factory) -> Path:
    return _export(checkpoints, tmp_path_factory.mktemp("export") / "openvino", "--format", "openvino")


@pytest.fixture(scope="session")
def reference(checkpoints, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A picture larger than twice the model's input (so it is shrunk first) and detect_image.py's detections."""
    folder = tmp_path_factory.mktemp("reference")
    picture = folder / "photo.jpg"
    cv2.imwrite(str(picture), scene(240, 320))
    result = run_script("detect_image.py", "--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz",
                        SMALL_IMGSZ, "--input", str(picture), "--json", "--backend", "torch", "--device", "cpu",
                        "--output", str(folder / "out"), cwd=folder, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    detections = json.loads((folder / "out" / "photo_v1.json").read_text())["results"][0]["detections"]
    assert len(detections) > 10  # the test checkpoint finds many
    return picture, detections


def run_example(model_dir: Path, picture: Path) -> list[dict]:
    result = subprocess.run([sys.executable, str(EXAMPLE), str(model_dir), str(picture)], cwd=model_dir,
                            env=offline_env(model_dir, ONE_THREAD), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_detections(found: list[dict], expected: list[dict]) -> None:
    """One to one: the same label, the score to 3 decimals and the box within a pixel (ties in score may come in
    another order)."""
    assert len(found) == len(expected)
    left = list(expected)
    for detection in found:
        match = next((other for other in left if other["label"] == detection["label"]
                      and abs(other["score"] - detection["score"]) < 5e-4
                      and max(abs(a - b) for a, b in zip(other["box"], detection["box"])) <= 1.0), None)
        assert match is not None, detection
        left.remove(match)


def test_the_example_imports_nothing_of_the_project():
    tree = ast.parse(EXAMPLE.read_text(encoding="utf-8"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module}
    assert modules <= {"__future__", "argparse", "json", "sys", "pathlib", "cv2", "numpy", "onnxruntime",
                       "openvino"}, modules


def test_the_onnx_export_gives_detect_images_detections(onnx_export, reference):
    picture, expected = reference
    assert sorted(p.name for p in onnx_export.iterdir()) == ["model.json", "model.onnx"]
    meta = json.loads((onnx_export / "model.json").read_text())
    assert (meta["format"], meta["precision"], meta["model"]) == ("onnx", "fp32", "v1")
    assert meta["classes"][1] == "person" and len(meta["classes"]) == 91
    assert meta["preprocessing"]["imgsz"] == int(SMALL_IMGSZ) and meta["proposals"] == 1000
    assert set(meta["outputs"]) == {"boxes", "labels", "scores"} and meta["threshold"] == 0.5
    assert_same_detections(run_example(onnx_export, picture), expected)


def test_the_openvino_export_gives_detect_images_detections(openvino_export, reference):
    picture, expected = reference
    assert sorted(p.name for p in openvino_export.iterdir()) == ["model.bin", "model.json", "model.xml"]
    assert json.loads((openvino_export / "model.json").read_text())["format"] == "openvino"
    assert_same_detections(run_example(openvino_export, picture), expected)


def test_labels_beside_the_checkpoint_name_the_classes(checkpoints, onnx_export, tmp_path):
    weights = tmp_path / "run" / "best.pth"
    weights.parent.mkdir()
    weights.write_bytes(checkpoints["v1"].read_bytes())
    names = [f"thing{number}" for number in range(1, 91)]
    (weights.parent / "labels.txt").write_text("__background__\n" + "".join(f"{n}\n" for n in names))
    # The same weights, size and proposals: the export comes from the cache the first export filled.
    result = run_script("export.py", "--model", "v1", "--weights", str(weights), "--imgsz", SMALL_IMGSZ,
                        "--proposals", "1000", "--output", str(tmp_path / "out"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "Exporting" not in result.stderr  # from the cache
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["classes"] == ["__background__", *names]


@pytest.mark.parametrize("case", ["missing checkpoint", "wrong architecture", "labels that do not fit"])
def test_a_bad_checkpoint_is_one_line_and_writes_nothing(checkpoints, tmp_path, case):
    (tmp_path / "names.txt").write_text("a\nb\n")
    args = {"missing checkpoint": ["--model", "v1", "--weights", str(tmp_path / "gone.pth")],
            "wrong architecture": ["--model", "v2", "--weights", str(checkpoints["v1"])],
            "labels that do not fit": ["--model", "v1", "--weights", str(checkpoints["v1"]), "--labels",
                                       str(tmp_path / "names.txt")]}[case]
    result = run_script("export.py", *args, "--imgsz", SMALL_IMGSZ, "--output", str(tmp_path / "out"),
                        cwd=tmp_path, env=ONE_THREAD)
    assert_one_line_error(result)
    expected = {"missing checkpoint": "weights file not found", "wrong architecture": "is a v1 checkpoint",
                "labels that do not fit": "names 2 classes"}[case]
    assert expected in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--precision", "int8", "--calibration", "x"],
                                  ["--format", "openvino", "--precision", "int8"],
                                  ["--calibration", "x"], ["--format", "tflite"]],
                         ids=lambda args: " ".join(args))
def test_usage_errors_exit_2(tmp_path, args):
    result = run_script("export.py", *args, cwd=tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr
