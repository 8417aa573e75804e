"""The package as pip installs it: `frcnn` alone in site-packages (no generic top-level module), console commands
that run from any folder, beside a user's own model.py or an unrelated `evaluate` package, on the bundled samples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SMALL_IMGSZ, offline_env

COMMANDS = ["frcnn-detect-image", "frcnn-detect-video", "frcnn-evaluate", "frcnn-train", "frcnn-export-cache"]
# What a user's folder may hold: files named like the clone's top-level ones, each failing loudly if imported.
SHADOWS = ["model", "detect_utils", "coco_names", "train"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install .` into a folder of its own (the requirements are already in this environment)."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--disable-pip-version-check", "--target", str(target), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A folder of the user's, with their own modules named like the clone's and Hugging Face's `evaluate`."""
    for name in SHADOWS:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "__init__.py").write_text("raise ImportError('Hugging Face evaluate was imported')\n")
    return tmp_path


def run_installed(installed: Path, folder: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    # The user's folder first on the path, as Python puts the folder of a script or notebook first.
    env = offline_env(folder, {"PYTHONPATH": os.pathsep.join([str(folder), str(installed)])})
    return subprocess.run([str(installed / "bin" / command), *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


def test_only_the_package_is_installed(installed):
    top = {path.name for path in installed.iterdir() if not path.name.endswith(".dist-info")}
    assert top == {"frcnn", "bin"}, top
    assert (installed / "frcnn" / "samples" / "coffee.jpg").is_file()
    assert (installed / "frcnn" / "samples" / "sample.mp4").is_file()
    assert {path.name for path in (installed / "bin").iterdir()} >= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_starts_beside_the_users_own_modules(installed, user_folder, command):
    result = run_installed(installed, user_folder, command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_the_installed_photo_command_runs_on_its_sample_and_names_itself(installed, user_folder, checkpoints):
    result = run_installed(installed, user_folder, "frcnn-detect-image", "--model", "v1", "--weights",
                           str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ, "--backend", "torch")
    assert result.returncode == 0, result.stderr
    assert (user_folder / "outputs" / "coffee_v1.jpg").is_file()
    hint = run_installed(installed, user_folder, "frcnn-export-cache", "--remove", "no-such-entry")
    assert hint.returncode == 2 and "(frcnn-export-cache lists them)" in hint.stderr


def test_the_python_api_imports_nothing_from_the_users_folder(installed, user_folder, checkpoints):
    code = ("from frcnn.core.specs import DetectOptions, ModelSpec\n"
            "from frcnn.inference.loading import load_predictors\n"
            "from frcnn.core.files import read_image\n"
            "from frcnn.samples import SAMPLE_PHOTO\n"
            f"spec = ModelSpec('v2', weights={str(checkpoints['v2'])!r}, imgsz=96, backend='torch')\n"
            "(predictor,) = load_predictors([spec], DetectOptions())\n"
            "(prediction,) = predictor([read_image(SAMPLE_PHOTO)])\n"
            "print(len(prediction.detections) > 0)\n")
    env = offline_env(user_folder, {"PYTHONPATH": str(installed)})
    result = subprocess.run([sys.executable, "-c", code], cwd=user_folder, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
