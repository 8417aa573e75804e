"""Exported runtimes: the same detections as eager PyTorch, the export cache, and --backend errors."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, SMALL_IMGSZ, assert_one_line_error, run_script, scene

from frcnn.core.detections import Detections
from frcnn.evaluation.agreement import equivalent
from frcnn.inference.predictor import predict
from frcnn.model import FrcnnError, choose_backend, load_model

CPU = torch.device("cpu")
RUNTIMES = [b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b)]
# Landscape, portrait, sizes that are not multiples of 32, and a video's fixed size (several frames).
SHAPES = [(240, 320), (320, 240), (123, 217), (120, 160)]


def as_dict(detections: Detections) -> dict:
    return {"boxes": detections.boxes.tolist(), "scores": detections.scores.tolist(),
            "labels": detections.labels.tolist()}


@pytest.mark.parametrize("name", ["v1", "v2"])
@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_detections_equal_eager_pytorch(checkpoints, name, backend):
    eager = load_model(name, CPU, imgsz=int(SMALL_IMGSZ), weights=checkpoints[name], backend="torch")
    exported = load_model(name, CPU, imgsz=int(SMALL_IMGSZ), weights=checkpoints[name], backend=backend)
    assert exported.backend == backend
    pictures = [scene(h, w, seed=i) for i, (h, w) in enumerate(SHAPES)]
    pictures += [np.roll(pictures[-1], 4 * step, axis=1) for step in range(1, 3)]  # more frames of the video size
    pictures.append(scene(240, 320, seed=9))  # another size after them

    def same_as_eager(picture: np.ndarray) -> None:
        (expected,), _ = predict(eager, [picture])
        (got,), _ = predict(exported, [picture])
        assert len(expected.filter(0.5)) > 0
        check = equivalent(as_dict(expected), as_dict(got))
        assert check["equivalent"], (picture.shape, check)

    for picture in pictures:
        same_as_eager(picture)
    if backend != "openvino":
        return
    # The video's frames ran on a copy compiled for their size, and so did the size that came back after them (the
    # sizes seen once have none). The runner sees the pictures shrunk toward --imgsz.
    assert len(exported.run.sized) == 2
    # Photos whose orientation takes turns: each size is compiled once, then the copies are kept.
    turns = [scene(*SHAPES[1], seed=7), scene(*SHAPES[0], seed=8)]
    for picture in turns:
        same_as_eager(picture)
    copies = dict(exported.run.sized)
    assert len(copies) == 2  # the video's copy made room for them
    for picture in turns:
        same_as_eager(picture)
    assert all(exported.run.sized[shape] is request for shape, request in copies.items())


@pytest.mark.parametrize("backend", RUNTIMES)
def test_a_picture_where_nothing_is_found_gives_no_rows(tmp_path, monkeypatch, checkpoints, backend):
    """Known by construction: with a score floor above 1 the graph keeps nothing, and every runtime says so (OpenVINO
    itself gives one row of label 0 there)."""
    from frcnn.model import build_detector, read_checkpoint
    from frcnn.runtimes.export import RUNNERS, cached_export

    monkeypatch.setenv("FRCNN_CACHE", str(tmp_path / "cache"))

    def build():
        module = build_detector("v1", imgsz=64, proposals=100)
        module.load_state_dict(read_checkpoint(checkpoints["v1"]), strict=False)
        module.roi_heads.score_thresh = 1.01
        return module

    graph = cached_export(build, "v1", 64, 100, checkpoints["v1"], backend)
    picture = torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0))
    (output,) = RUNNERS[backend](graph)([picture])
    assert output["boxes"].shape == (0, 4) and output["labels"].shape == output["scores"].shape == (0,)

@pytest.mark.skipif(not RUNTIMES, reason="no exported runtime installed")
def test_export_cache_reuse_key_and_repair(tmp_path, monkeypatch, checkpoints, capsys, messages_on_stderr):
    monkeypatch.setenv("FRCNN_CACHE", str(tmp_path / "cache"))
    backend = RUNTIMES[0]
    load_model("v1", CPU, imgsz=64, weights=checkpoints["v1"], backend=backend)
    assert "Exporting v1" in capsys.readouterr().err
    (entry,) = (tmp_path / "cache").glob("*.onnx")
    stamp = entry.stat().st_mtime_ns

    load_model("v1", CPU, imgsz=64, weights=checkpoints["v1"], backend=backend)
    assert "Exporting" not in capsys.readouterr().err and entry.stat().st_mtime_ns == stamp  # reused

    copy = tmp_path / "other.pth"  # other weights: another key, another entry
    state = torch.load(checkpoints["v1"], weights_only=True)
    state["roi_heads.box_predictor.cls_score.bias"][2] += 1.0
    torch.save(state, copy)
    load_model("v1", CPU, imgsz=64, weights=copy, backend=backend)
    assert "Exporting v1" in capsys.readouterr().err
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 2

    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # a damaged entry is rebuilt
    rebuilt = load_model("v1", CPU, imgsz=64, weights=checkpoints["v1"], backend=backend)
    assert "stale or damaged" in capsys.readouterr().err
    (detections,), _ = predict(rebuilt, [scene()])
    assert len(detections) > 0
    assert not list((tmp_path / "cache").glob(".*part"))


def test_backend_choice_and_errors(monkeypatch):
    assert choose_backend("torch", CPU) == "torch"
    assert choose_backend("auto", torch.device("cuda")) == "torch"  # PyTorch on a GPU
    expected = next((b for b in ("openvino", "onnxruntime") if importlib.util.find_spec(b)), "torch")
    assert choose_backend("auto", CPU) == expected
    with pytest.raises(FrcnnError, match="on cuda use --backend torch"):
        choose_backend("onnxruntime", torch.device("cuda"))

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "openvino") else real_find_spec(name, *a))
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(FrcnnError, match=f"needs the '{backend}' package: pip install {backend}"):
            choose_backend(backend, CPU)
    assert choose_backend("auto", CPU) == "torch"  # nothing faster installed: PyTorch


@pytest.mark.skipif(not RUNTIMES, reason="no exported runtime installed")
def test_scripts_run_with_an_exported_runtime(tmp_path, checkpoints, photo):
    result = run_script("detect_image.py", "--input", str(photo), "--model", "v1", "--weights",
                        str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ, "--backend", RUNTIMES[-1], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"run by {RUNTIMES[-1]}" in result.stderr
    assert cv2.imread(str(tmp_path / "outputs" / "photo_v1.jpg")).shape == (240, 320, 3)
    result = run_script("detect_image.py", "--input", str(photo), "--backend", "tensorrt", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_a_missing_runtime_is_one_clear_line(tmp_path, checkpoints, photo):
    # A runtime hidden from the interpreter stands for one that is not installed.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.util\n_real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'onnxruntime' else _real(n, *a)\n")
    result = run_script("detect_image.py", "--input", str(photo), "--weights", str(checkpoints["v2"]),
                        "--backend", "onnxruntime", cwd=tmp_path, env={"PYTHONPATH": str(hide)})
    assert_one_line_error(result)
    assert "pip install onnxruntime" in result.stderr


@pytest.mark.skipif(not RUNTIMES, reason="no exported runtime installed")
def test_a_failed_export_is_one_clear_line(tmp_path, checkpoints, photo):
    # Without the onnx package torch cannot export; the user is told what to do instead of seeing a traceback.
    shadow = tmp_path / "shadow"  # an onnx package that shadows the installed one, as if it were missing
    (shadow / "onnx").mkdir(parents=True)
    (shadow / "onnx" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'onnx'\", name='onnx')\n")
    result = run_script("detect_image.py", "--input", str(photo), "--weights", str(checkpoints["v2"]),
                        "--imgsz", SMALL_IMGSZ, "--backend", RUNTIMES[-1], cwd=tmp_path,
                        env={"PYTHONPATH": str(shadow), "FRCNN_CACHE": str(tmp_path / "empty-cache")})
    assert_one_line_error(result)
    assert "could not export v2 to ONNX" in result.stderr and "--backend torch" in result.stderr
    assert not list((tmp_path / "empty-cache").glob("*.onnx")) and not (tmp_path / "outputs" / "photo_v2.jpg").exists()


def test_the_export_cache_can_be_listed_and_cleared(tmp_path, checkpoints):
    env = {"FRCNN_CACHE": str(tmp_path / "cache")}
    result = run_script("detect_image.py", "--input", str(ROOT / "frcnn" / "samples" / "coffee.jpg"), "--model", "v1",
                        "--weights", str(checkpoints["v1"]), "--imgsz", "64", "--backend", "onnxruntime",
                        cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    listing = run_script("export_cache.py", cwd=tmp_path, env=env)
    assert listing.returncode == 0 and "1 cached export(s)" in listing.stderr, listing.stderr
    (line,) = listing.stdout.splitlines()
    assert line.startswith("v1-64-")
    assert f"fp32:  v1 at 64 px, 1000 proposals, {checkpoints['v1']}, for onnxruntime" in line
    bad = run_script("export_cache.py", "--remove", "v9-nothing", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "no entry named v9-nothing" in bad.stderr
    received = tmp_path / "cache" / "received"  # where a Ray worker keeps a checkpoint it was sent
    received.mkdir()
    (received / "0123abcd.pth").write_bytes(checkpoints["v1"].read_bytes())
    listing = run_script("export_cache.py", cwd=tmp_path, env=env)
    assert "1 file(s) sent to Ray workers" in listing.stdout.splitlines()[1], listing.stdout
    cleared = run_script("export_cache.py", "--clear", cwd=tmp_path, env=env)
    assert cleared.returncode == 0 and "removed 1 cached export(s)" in cleared.stdout
    assert "and 1 file(s) sent to Ray workers" in cleared.stdout
    assert list((tmp_path / "cache").iterdir()) == []


def test_cache_entries_are_removed_one_by_one_or_by_weights(tmp_path, checkpoints, monkeypatch):
    from frcnn.model import build_detector
    from frcnn.runtimes.export import cached_export

    monkeypatch.setenv("FRCNN_CACHE", str(tmp_path / "cache"))
    other_weights = tmp_path / "other.pth"  # only its content's hash matters to the cache
    other_weights.write_bytes(checkpoints["v1"].read_bytes() + b"another file")
    made = {(weights, proposals): cached_export(lambda: build_detector("v1", 91, 64, proposals), "v1", 64, proposals,
                                                weights, "onnxruntime")
            for weights, proposals in ((checkpoints["v1"], 1000), (checkpoints["v1"], 300), (other_weights, 1000))}
    listing = run_script("export_cache.py", cwd=tmp_path).stdout
    assert "1000 proposals" in listing and "300 proposals" in listing and str(other_weights) in listing
    one = run_script("export_cache.py", "--remove", made[checkpoints["v1"], 300].stem, cwd=tmp_path)
    assert one.returncode == 0 and "removed 1 cached export(s)" in one.stdout, one.stderr
    assert [path.exists() for path in made.values()] == [True, False, True]
    by_weights = run_script("export_cache.py", "--remove-weights", str(other_weights), cwd=tmp_path)
    assert by_weights.returncode == 0 and "removed 1 cached export(s)" in by_weights.stdout
    assert [path.exists() for path in made.values()] == [True, False, False]
