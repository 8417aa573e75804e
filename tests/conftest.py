"""Shared fixtures: seeded checkpoints, test pictures and a way to run the scripts as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from checkpoints import detector_state, official_format, save_checkpoint  # noqa: E402

SMALL_IMGSZ = "96"


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory) -> Path:
    """Exported models go to a folder of the test session's, shared by its tests and their subprocesses."""
    folder = tmp_path_factory.mktemp("export-cache")
    os.environ["FRCNN_CACHE"] = str(folder)
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


def scene(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A BGR picture of coloured rectangles on a gradient."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    for _ in range(4):
        x, y = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        w, h = int(rng.integers(width // 8, width // 4)), int(rng.integers(height // 8, height // 4))
        image[y:y + h, x:x + w] = rng.integers(0, 255, 3, dtype=np.uint8)
    return image


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), scene())
    return path


def run_script(script: str, *args: str, cwd: Path, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a project script in a subprocess, offline: an empty torch cache and no route to the internet."""
    full_env = {**os.environ, "TORCH_HOME": str(cwd / "torch-home"), "PYTHONUNBUFFERED": "1",
                "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    full_env.pop("DISPLAY", None)
    full_env.pop("WAYLAND_DISPLAY", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int = 1) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors, result.stderr


def leftovers(folder: Path) -> list[Path]:
    """Temporary files an interrupted or failed write would leave behind."""
    return [p for p in folder.rglob("*") if ".part" in p.name]


def make_video(path: Path, frames: int, size: tuple[int, int] = (160, 120), fps: float = 10.0,
               fourcc: str = "mp4v") -> Path:
    """A test clip written by OpenCV (not by the project's H.264 writer): moving rectangles on a gradient."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), path
    base = scene(size[1], size[0])
    for index in range(frames):
        writer.write(np.roll(base, 3 * index, axis=1))
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame OpenCV's FFmpeg decoder gets from `path`, and the frame rate it reports."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps
