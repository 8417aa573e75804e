"""The COCO category names used by torchvision's detection models.

The list index is the label id the model predicts: id 0 is the background and
"N/A" marks ids that COCO reserves but never annotates.
"""

from __future__ import annotations

import os
from pathlib import Path

from frcnn.core.errors import FrcnnError

COCO_INSTANCE_CATEGORY_NAMES = [
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus",
    "train", "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign",
    "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "N/A", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table",
    "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]


def is_real_class(name: str) -> bool:
    """False for the background and for the ids COCO reserves but never annotates."""
    return name not in ("N/A", "__background__")


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names, one per line, for ids 1..N-1; index 0 is the background (a first line naming it is optional)."""
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        text = str(error).strip().splitlines()
        raise FrcnnError(f"cannot read labels file {path}: {text[0] if text else type(error).__name__}") from error
    if not names:
        raise FrcnnError(f"labels file {path} holds no names")
    return names if names[0] == "__background__" else ["__background__", *names]
