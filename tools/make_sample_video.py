"""Make frcnn/samples/sample.mp4, the clip detect_video.py runs on by default: a slow pan and zoom over coffee.jpg.

    python tools/make_sample_video.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frcnn.samples import SAMPLE_PHOTO, SAMPLE_VIDEO  # noqa: E402
from frcnn.video.writer import H264Writer  # noqa: E402

WIDTH, HEIGHT, FPS, FRAMES = 480, 320, 12, 24


def frame_at(photo: np.ndarray, t: float) -> np.ndarray:
    """The view at time t in [0, 1]: zooming from the whole photo to 70 % of it while panning right."""
    height, width = photo.shape[:2]
    zoom = 1.0 - 0.3 * t
    view_w, view_h = width * zoom, height * zoom
    left, top = (width - view_w) * t, (height - view_h) * 0.5
    # An affine map from the view rectangle onto the output frame, with sub-pixel smoothness.
    matrix = np.array([[WIDTH / view_w, 0, -left * WIDTH / view_w], [0, HEIGHT / view_h, -top * HEIGHT / view_h]])
    return cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)


def main() -> None:
    photo = cv2.imread(str(SAMPLE_PHOTO))
    writer = H264Writer(SAMPLE_VIDEO, FPS)
    for index in range(FRAMES):
        writer.write(frame_at(photo, index / (FRAMES - 1)))
    writer.close()
    print(f"wrote {SAMPLE_VIDEO}: {FRAMES} frames, {WIDTH}x{HEIGHT}, {FPS} fps")


if __name__ == "__main__":
    main()
