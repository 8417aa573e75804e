"""Fewer proposals and lower precisions: exact where they must be, working and cached where they are approximate."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision
from helpers import SMALL_IMGSZ, assert_one_line_error, run_script, scene

from frcnn import model as model_module
from frcnn.evaluation.agreement import equivalent
from frcnn.inference.predictor import predict
from frcnn.model import FrcnnError, load_model
from frcnn.runtimes import backends, quantize

CPU = torch.device("cpu")


def as_dict(detections) -> dict:
    return {"boxes": detections.boxes.tolist(), "scores": detections.scores.tolist(),
            "labels": detections.labels.tolist()}


def test_fewer_proposals_equal_torchvisions_own_setting_exactly(checkpoints):
    ours = load_model("v2", CPU, imgsz=int(SMALL_IMGSZ), weights=checkpoints["v2"], backend="torch", proposals=300)
    assert ours.module.rpn.post_nms_top_n() == 300 and ours.proposals == 300
    reference = torchvision.models.detection.fasterrcnn_resnet50_fpn_v2(
        weights=None, weights_backbone=None, min_size=int(SMALL_IMGSZ), max_size=160, rpn_post_nms_top_n_test=300)
    reference.load_state_dict(torch.load(checkpoints["v2"], weights_only=True))
    picture = scene(120, 160, seed=4)  # the model sees it at 0.8: no pre-shrink on our side
    (found,), _ = predict(ours, [picture])
    with torch.no_grad():
        expected = reference.eval()([torch.from_numpy(picture[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255])[0]
    assert np.array_equal(found.boxes, expected["boxes"].numpy()) and np.array_equal(found.scores,
                                                                                      expected["scores"].numpy())
    default = load_model("v2", CPU, imgsz=int(SMALL_IMGSZ), weights=checkpoints["v2"], backend="torch")
    (more,), _ = predict(default, [picture])
    assert as_dict(more) != as_dict(found)  # the setting reaches the model


def test_fewer_proposals_through_openvino_match_eager_within_the_benchmark_rule(checkpoints):
    picture = scene(240, 320, seed=5)
    results = []
    for backend in ("torch", "openvino"):
        loaded = load_model("v1", CPU, imgsz=int(SMALL_IMGSZ), weights=checkpoints["v1"], backend=backend,
                            proposals=300)
        (found,), _ = predict(loaded, [picture])
        results.append(as_dict(found))
    assert equivalent(*results)["equivalent"]


def test_bf16_on_a_cpu_without_it_is_one_clear_line(monkeypatch, checkpoints):
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    with pytest.raises(FrcnnError, match="does not compute in bf16.*AVX512_BF16 or AMX"):
        load_model("v1", CPU, imgsz=64, weights=checkpoints["v1"], backend="openvino", precision="bf16")
    with pytest.raises(FrcnnError, match="runs with OpenVINO"):
        load_model("v1", CPU, imgsz=64, weights=checkpoints["v1"], backend="torch", precision="int8")


@pytest.mark.skipif(not model_module.cpu_has_bf16(), reason="this CPU does not compute in bf16")
def test_bf16_runs_where_the_cpu_has_it(checkpoints):
    loaded = load_model("v1", CPU, imgsz=int(SMALL_IMGSZ), weights=checkpoints["v1"], backend="openvino",
                        precision="bf16")
    (found,), _ = predict(loaded, [scene()])
    assert len(found) > 0 and found.boxes.shape == (len(found), 4) and (found.scores <= 1).all()


def pictures(folder, seeds):
    folder.mkdir()
    for seed in seeds:
        cv2.imwrite(str(folder / f"{seed}.jpg"), scene(120, 160, seed=seed))
    return folder


def test_int8_runs_is_cached_and_keyed_by_its_calibration(tmp_path, checkpoints, photo):
    cache = {"FRCNN_CACHE": str(tmp_path / "cache")}
    first, second = pictures(tmp_path / "first", [1, 2, 3]), pictures(tmp_path / "second", [4, 5, 6])

    def detect(calibration, output):
        return run_script("detect_image.py", "--input", str(photo), "--model", "v1",
                          "--weights", str(checkpoints["v1"]),
                          "--imgsz", "64", "--precision", "int8", "--calibration", str(calibration), "--json",
                          "--output", output, cwd=tmp_path, env=cache)

    made = detect(first, "a")
    assert made.returncode == 0, made.stderr
    assert "Quantizing" in made.stderr and "3 calibration picture(s)" in made.stderr
    record = (tmp_path / "a" / "photo_v1.json").read_text()
    assert '"precision": "int8"' in record and '"runtime": "openvino"' in record
    picture = cv2.imread(str(tmp_path / "a" / "photo_v1.jpg"))
    assert picture.shape == (240, 320, 3)
    again = detect(first, "b")
    assert again.returncode == 0 and "Quantizing" not in again.stderr, again.stderr
    # Cached, int8 still says so before the first result.
    assert "Loaded v1: " in again.stderr and "run by openvino in int8 at 64 px, 1000 proposals" in again.stderr
    (made_entry,) = (tmp_path / "cache").glob("*-int8-*.xml")
    # Other calibration pictures key another entry (worked out without quantizing again: that takes minutes).
    (export,) = (tmp_path / "cache").glob("*.onnx")
    entries = [quantize.int8_cache_entry(export, quantize.calibration_tensors([str(folder)], 64))[0]
               for folder in (first, second)]
    assert entries[0] == made_entry and entries[1] != made_entry


def test_precision_usage_and_calibration_errors(tmp_path, checkpoints, photo):
    base = ["--input", str(photo), "--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz", "64"]
    for args, message in [(["--precision", "int8"], "give --calibration DIR"),
                          (["--calibration", str(tmp_path)], "--calibration is for --precision int8"),
                          (["--precision", "bf16", "--half"], "choose one"),
                          (["--precision", "fp16"], "invalid choice")]:
        result = run_script("detect_image.py", *base, *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    result = run_script("detect_image.py", *base, "--precision", "int8", "--calibration", str(tmp_path / "absent"),
                        cwd=tmp_path)
    assert_one_line_error(result)
    assert "--calibration: not found" in result.stderr and "Loading" not in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_script("detect_image.py", *base, "--precision", "int8", "--calibration", str(tmp_path / "empty"),
                        cwd=tmp_path)
    assert_one_line_error(result)
    assert "no pictures in this folder" in result.stderr
    result = run_script("detect_image.py", *base, "--precision", "int8", "--calibration", str(tmp_path),
                        "--backend", "torch", cwd=tmp_path)
    assert_one_line_error(result)
    assert "runs with OpenVINO" in result.stderr and "Loading" not in result.stderr


def test_bf16_under_an_instruction_set_cap_is_one_clear_line(tmp_path, photo, checkpoints):
    # OpenVINO follows oneDNN's cap yet still reports BF16; without the check its compile error would surface.
    result = run_script("detect_image.py", "--input", str(photo), "--model", "v1", "--weights",
                        str(checkpoints["v1"]), "--imgsz", "64", "--precision", "bf16", cwd=tmp_path,
                        env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert_one_line_error(result)
    assert "does not compute in bf16" in result.stderr


INT8_KINDS = ("u8", "i8")


def test_int8_runs_every_convolution_and_matrix_product_in_int8(tmp_path, checkpoints, monkeypatch):
    """No fp32 island: the backbone's first convolution and the first box-head layer after RoIAlign's level merge
    get int8 input too (each of them ran in fp32 before), in v2 (convolutions) and v1 (linear layers)."""
    import openvino

    monkeypatch.setenv("FRCNN_CACHE", str(tmp_path / "cache"))
    calibration = pictures(tmp_path / "calibration", [1, 2, 3])
    for name in ("v1", "v2"):
        loaded = load_model(name, CPU, imgsz=64, weights=checkpoints[name], backend="openvino", precision="int8",
                            calibration=(str(calibration),))
        (found,), _ = predict(loaded, [scene(120, 160, seed=7)])
        assert found.boxes.shape == (len(found), 4)
        (graph,) = (tmp_path / "cache").glob(f"{name}-64-*-int8-*.xml")
        compiled = openvino.Core().compile_model(str(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        layers = {}
        for op in compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in ("Convolution", "FullyConnected", "FullyConnectedCompressed"):
                layers[op.get_friendly_name()] = info["runtimePrecision"].astype(str)
        in_float = sorted(layer for layer, precision in layers.items() if precision not in INT8_KINDS)
        assert in_float == [], f"{name}: layers left in floating point: {in_float}"
        first = "/roi_heads/box_head/box_head.0/box_head.0.0/Conv" if name == "v2" else "/roi_heads/box_head/fc6/"
        assert any(layer.startswith(first) for layer in layers), sorted(layers)
        assert any(layer.startswith("/backbone/body/conv1/") for layer in layers)


def test_the_exported_level_merge_gives_the_proposals_order():
    """The export's RoIAlign merge (concatenate the levels, one gather) puts every proposal's features where
    torchvision's scatter does, including levels with no proposal."""
    from frcnn.runtimes.export import _merge_levels_by_gather

    levels = torch.tensor([2, 0, 0, 3, 2, 0, 3, 3])
    per_level = [torch.randn(int((levels == level).sum()), 2, 1, 1) for level in range(4)]
    expected = torch.zeros(len(levels), 2, 1, 1)
    for level, features in enumerate(per_level):
        expected[torch.where(levels == level)[0]] = features
    assert torch.equal(_merge_levels_by_gather(levels, per_level), expected)
