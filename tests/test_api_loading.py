"""A checkpoint loads the same way from Python and from the scripts: the labels, size and architecture train.py wrote
beside it are read by one function, and the messages name what the caller set (ModelSpec's fields, or options)."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
from helpers import ONE_THREAD, TINY_IMGSZ, run_script

from frcnn.cli import export as export_script
from frcnn.cli import train as train_script
from frcnn.cli.options import add_model_options, model_specs
from frcnn.core.errors import FrcnnError
from frcnn.core.files import read_image
from frcnn.core.specs import ModelSpec
from frcnn.inference.predictor import Predictor
from frcnn.model import load
from frcnn.synthetic.checkpoints import BOOSTED_BIAS, BOOSTED_LABEL, detector_state, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def boosted_copy(run: Path, folder: Path) -> Path:
    """A train.py run's folder (weights, labels.txt, settings.json) whose model finds boxes at its trained size:
    the tiny run's, with one class's bias raised (12 steps from scratch find nothing above the 0.05 floor)."""
    folder.mkdir()
    for name in ("labels.txt", "settings.json"):
        shutil.copy(run / name, folder / name)
    state = torch.load(run / "best.pth", weights_only=True)
    state["roi_heads.box_predictor.cls_score.bias"][BOOSTED_LABEL] += BOOSTED_BIAS
    return save_checkpoint(folder / "best.pth", state)


def test_the_api_with_nothing_but_weights_detects_what_the_script_does(tiny_trained, tmp_path, caplog):
    weights = boosted_copy(tiny_trained, tmp_path / "run")
    run = weights.parent
    picture = sorted((tiny_trained.parent / "set" / "images").glob("*.jpg"))[0]
    result = run_script("detect_image.py", "--weights", str(weights), "--input", str(picture), "--threshold", "0",
                        "--json", "--output", str(tmp_path / "out"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    (expected,) = json.loads(next((tmp_path / "out").glob("*.json")).read_text())["results"]

    with caplog.at_level(logging.INFO, logger="frcnn"):
        model = load(ModelSpec(weights=str(weights)))
    said = f"class names from {run / 'labels.txt'}; v1 as trained ({run / 'settings.json'}); " \
           f"{TINY_IMGSZ} px as trained ({run / 'settings.json'})"
    assert said in caplog.text and said in repr(model)
    assert (model.name, str(model.min_size), model.backend) == ("v1", TINY_IMGSZ, expected["runtime"])
    (prediction,) = Predictor(model)([read_image(picture)])
    assert prediction.detections.to_records(prediction.class_names) == expected["detections"]
    assert expected["model"] == "v1" and len(expected["detections"]) >= 1
    # At the default 800 px (what the API gave before it read settings.json), the same weights find other boxes.
    (at_800,) = Predictor(load(ModelSpec(weights=str(weights), imgsz=800)))([read_image(picture)])
    assert at_800.detections.to_records(at_800.class_names) != expected["detections"]


def test_the_scripts_take_the_architecture_from_the_checkpoint(tiny_trained, checkpoints, tmp_path):
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    args = parser.parse_args(["--weights", str(tiny_trained / "best.pth")])
    (spec,) = model_specs(args, parser)
    assert (spec.name, spec.name_from, args.model) == ("v1", str(tiny_trained / "settings.json"), "v1")
    args = parser.parse_args(["--weights", str(checkpoints["v1"])])  # no settings beside: the state says
    assert (model_specs(args, parser)[0].name, args.model) == ("v1", "v1")
    args = parser.parse_args([])
    assert (model_specs(args, parser)[0].name, args.model) == ("v2", "v2")
    # train.py: starting from a checkpoint continues its architecture
    train_parser = train_script.build_parser()
    args = train_parser.parse_args(["--weights", str(checkpoints["v1"]), "--data", str(tmp_path)])
    assert train_script.settings_from(args, train_parser).model == "v1"
    args = train_parser.parse_args(["--data", str(tmp_path)])
    assert train_script.settings_from(args, train_parser).model == "v2"


def test_a_file_that_is_no_checkpoint_is_one_line_before_anything_runs(tmp_path):
    notes = tmp_path / "notes.pth"
    notes.write_text("not weights\n")
    result = run_script("detect_image.py", "--weights", str(notes), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {notes} is not a readable PyTorch checkpoint")


def test_python_errors_name_the_spec_fields(checkpoints, tmp_path, monkeypatch):
    with pytest.raises(FrcnnError, match=r"is a v1 checkpoint, but ModelSpec.name asks for v2"):
        load(ModelSpec("v2", weights=str(checkpoints["v1"]), imgsz=96, backend="torch", device="cpu"))
    three = save_checkpoint(tmp_path / "three.pth", detector_state("v1", num_classes=3, boosted=False))
    with pytest.raises(FrcnnError, match=r"pass ModelSpec\(labels=FILE\) with their names") as caught:
        load(ModelSpec(weights=str(three), imgsz=96, backend="torch", device="cpu"))
    assert "--" not in str(caught.value)
    if not torch.cuda.is_available():
        with pytest.raises(FrcnnError, match=r'use ModelSpec\(device="cpu"\)'):
            load(ModelSpec(weights=str(three), device="cuda"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(FrcnnError, match=r"pass ModelSpec\(weights=PATH\) to a local checkpoint"):
        load(ModelSpec(device="cpu", backend="torch"))


# ---------------------------------------------------------------- export.py's default format


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(line.split("[")[0].split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip().lower())
    return names


def test_the_install_holds_what_the_default_export_needs():
    default = export_script.build_parser().parse_args([]).format
    assert export_script.RUNTIMES[default] in requirement_names(ROOT / "requirements.txt")


def test_an_export_whose_runtime_is_missing_says_how_to_install_it(checkpoints, tmp_path, monkeypatch, capsys):
    import frcnn.runtimes.backends

    monkeypatch.setattr(frcnn.runtimes.backends, "backend_installed", lambda backend: backend == "torch")
    code = export_script.main(["--weights", str(checkpoints["v1"]), "--output", str(tmp_path / "out")])
    assert code == 1
    assert capsys.readouterr().err.strip() == ("error: --format onnx needs the 'onnxruntime' package: pip install "
                                               "onnxruntime (or pip install -r requirements.txt)")
    assert not (tmp_path / "out").exists()
