"""Shared fixtures: seeded checkpoints, test pictures and a way to run the scripts as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from helpers import ONE_THREAD, TINY_SET, run_script, scene, tiny_train_args  # noqa: E402

from frcnn.core.log import log, show_messages_on_stderr  # noqa: E402
from frcnn.synthetic.checkpoints import detector_state, official_format, save_checkpoint  # noqa: E402
from frcnn.synthetic.world import write_split  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory) -> Path:
    """Exported models go to a folder of the test session's, shared by its tests and their subprocesses."""
    folder = tmp_path_factory.mktemp("export-cache")
    os.environ["FRCNN_CACHE"] = str(folder)
    # No size limit: the two test processes share this cache, and one must not evict an export the other is using.
    os.environ["FRCNN_CACHE_MAX_GB"] = "0"
    return folder


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Official-format v1 and v2 checkpoints with seeded random weights that yield detections."""
    folder = tmp_path_factory.mktemp("weights")
    return {name: save_checkpoint(folder / f"{name}.pth", official_format(detector_state(name), name))
            for name in ("v1", "v2")}


@pytest.fixture
def virtual_display() -> str:
    """A private X display (Xvfb) for the window tests; skipped where Xvfb is not installed."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as announced:
        number = announced.readline().strip()  # Xvfb writes its display number once it accepts clients
    assert number, "Xvfb did not start"
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def messages_on_stderr():
    """The package's messages (the "frcnn" logger) on stderr as the scripts show them, for capsys to read in tests
    that call the package in-process; undone after the test."""
    handlers, level, propagate = list(log.handlers), log.level, log.propagate
    show_messages_on_stderr()
    yield
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = propagate


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), scene())
    return path



@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory) -> Path:
    """A tiny v1 trained from scratch by train.py once per session (4 synthetic pictures, 12 steps): its output
    folder (best.pth, last.pth, labels.txt, settings.json naming the set, results.csv, steps.csv, curves.png)."""
    folder = tmp_path_factory.mktemp("tiny-trained")
    annotations = write_split(folder / "set", TINY_SET["seed"], TINY_SET["pictures"], TINY_SET["size"])
    result = run_script("train.py", *tiny_train_args(folder / "set" / "images", annotations, folder / "run"),
                        cwd=folder, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    return folder / "run"


# The markers of the fast subset: `pytest -m "not slow and not ray and not gui"` skips what trains a model, installs
# the package, starts Ray or opens a window.
SLOW_MODULES = {"test_train", "test_world", "test_resume", "test_quality_benchmark", "test_package", "test_export",
                "test_datasets", "test_precision"}
SLOW_FIXTURES = {"tiny_trained"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains, exports or installs (minutes on 2 cores)")
    config.addinivalue_line("markers", "ray: starts a local Ray cluster")
    config.addinivalue_line("markers", "gui: opens a window on a virtual display")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in ("test_ray", "test_serve_ray"):
            item.add_marker(pytest.mark.ray)
        if "virtual_display" in fixtures:
            item.add_marker(pytest.mark.gui)
        if module in SLOW_MODULES or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
