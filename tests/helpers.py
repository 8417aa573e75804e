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
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=offline_env(cwd, env),
                          capture_output=True, text=True, timeout=timeout)


def run_detector(script: str, cwd: Path, checkpoints: dict, *args: str, model: str = "v1", imgsz: str = SMALL_IMGSZ,
                 backend: str = "torch", env: dict | None = None) -> subprocess.CompletedProcess:
    """A detect script (or evaluate.py) on the tests' seeded checkpoints, small and on a chosen runtime: the one
    command line every test that runs a model builds."""
    weights = [str(checkpoints["v1"]), str(checkpoints["v2"])] if model == "both" else [str(checkpoints[model])]
    return run_script(script, "--model", model, "--weights", *weights, "--imgsz", imgsz, "--backend", backend, *args,
                      cwd=cwd, env=env)


def offline_env(cwd: Path, env: dict | None = None) -> dict:
    """The environment scripts run in here: an empty torch cache, no route to the internet, no display."""
    full_env = {**os.environ, "TORCH_HOME": str(cwd / "torch-home"), "PYTHONUNBUFFERED": "1",
                "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    full_env.pop("DISPLAY", None)
    full_env.pop("WAYLAND_DISPLAY", None)
    full_env.update(env or {})
    return full_env



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


# ---------------------------------------------------------------- training (train.py)

# The tiny run the `tiny_trained` fixture makes: 4 synthetic pictures of 64 px (3 to train on, 1 held out), v1 from
# scratch, 6 epochs of 2 steps. Enough steps on the same few pictures for the loss to fall clearly, in seconds.
TINY_SET = {"seed": 5, "pictures": 4, "size": (64, 64)}
TINY_IMGSZ = "64"
# Training runs in tests use one thread: on a busy 2-core machine, PyTorch's two threads wait for each other at every
# operation (a tiny step took 4 s with two threads and 1 s with one here). Runs compared bit for bit use the same.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def tiny_train_args(images: Path, annotations: Path, output: Path, *extra: str) -> list[str]:
    """train.py's options for the tiny run (`extra` appended: argparse keeps the last of a repeated option)."""
    return ["--model", "v1", "--from-scratch", "--images", str(images), "--annotations", str(annotations),
            "--imgsz", TINY_IMGSZ, "--batch", "2", "--epochs", "6", "--box-batch", "32", "--loader-workers", "0",
            "--output", str(output), *extra]


def start_script(script: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a project script offline, as run_script does, without waiting: text pipes for stdout and stderr."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=cwd, env=offline_env(cwd, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def step_losses(run: Path) -> list[float]:
    """The total loss of every step a training run logged, in order (its steps.csv)."""
    import csv

    with open(run / "steps.csv", encoding="utf-8", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def coco_to_yolo(images: Path, annotations: Path, folder: Path) -> Path:
    """The same set in YOLO format (images/, labels/<stem>.txt, classes.txt), as detect_image.py --save-txt writes."""
    import shutil

    dataset = json.loads(annotations.read_text())
    categories = sorted(dataset["categories"], key=lambda c: c["id"])
    index = {category["id"]: number for number, category in enumerate(categories)}
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("".join(f"{c['name']}\n" for c in categories))
    for image in dataset["images"]:
        shutil.copyfile(images / image["file_name"], folder / "images" / image["file_name"])
        width, height = image["width"], image["height"]
        lines = [f"{index[a['category_id']]} {(a['bbox'][0] + a['bbox'][2] / 2) / width:.6f} "
                 f"{(a['bbox'][1] + a['bbox'][3] / 2) / height:.6f} {a['bbox'][2] / width:.6f} "
                 f"{a['bbox'][3] / height:.6f}\n"
                 for a in dataset["annotations"] if a["image_id"] == image["id"]]
        (folder / "labels" / f"{Path(image['file_name']).stem}.txt").write_text("".join(lines))
    return folder
