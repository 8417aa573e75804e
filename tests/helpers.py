"""What the tests share besides fixtures: test pictures, videos and sets made here, and running the scripts as a user
would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SMALL_IMGSZ = "96"


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


CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]



def make_set(folder, images=3):
    """`images` pictures of 160×120 with two large boxes each (person and car), in COCO format."""
    (folder / "pics").mkdir(parents=True)
    entries, annotations = [], []
    for index in range(images):
        name = f"{index:03d}.jpg"
        cv2.imwrite(str(folder / "pics" / name), scene(120, 160, seed=index))
        entries.append({"id": index + 1, "file_name": name, "width": 160, "height": 120})
        for number, (category, bbox) in enumerate([(1, [10, 10, 100, 100]), (3, [40, 5, 110, 105])]):
            annotations.append({"id": 10 * index + number + 1, "image_id": index + 1, "category_id": category,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    path = folder / "labels.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": CATEGORIES}))
    return folder / "pics", path



def metrics_of(path):
    return json.loads(path.read_text())
