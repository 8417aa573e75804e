"""Label Studio's side of a detection: a `--json` record's boxes as a Label Studio prediction (`rectanglelabels`
regions in percent of the picture's original size, top-left corner first), and `detect_image.py --save-labelstudio`'s
task file, which Label Studio imports with the predictions ready to correct. The service's Label Studio backend
answers the same predictions."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence
from urllib.parse import quote

from frcnn.core.errors import FrcnnError
from frcnn.core.files import is_url, write_bytes_atomically

# The names in Label Studio's "Object Detection with Bounding Boxes" template: <Image name="image" value="$image"/>
# and <RectangleLabels name="label" toName="image">.
FROM_NAME, TO_NAME, DATA_KEY = "label", "image", "image"
VERSION_PREFIX = "frcnn-"


def prediction(result: dict, width: int, height: int, version: str, from_name: str = FROM_NAME,
               to_name: str = TO_NAME, label_of: Mapping[str, str] | None = None) -> dict:
    """One model's result of a record as a Label Studio prediction; `label_of` renames classes to the project's
    labels (a class without one is left out), else the class names are the labels."""
    regions, scores = [], []
    for number, detection in enumerate(result["detections"]):
        label = detection["label"] if label_of is None else label_of.get(detection["label"])
        if label is None:
            continue
        x1, y1, x2, y2 = detection["box"]
        regions.append({
            "id": f"{result['model']}-{number}", "from_name": from_name, "to_name": to_name,
            "type": "rectanglelabels", "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": 100.0 * x1 / width, "y": 100.0 * y1 / height, "width": 100.0 * (x2 - x1) / width,
                      "height": 100.0 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [label]},
            "score": detection["score"],
        })
        scores.append(detection["score"])
    return {"model_version": version, "score": round(sum(scores) / len(scores), 4) if scores else 0.0,
            "result": regions}


def picture_reference(source: str, root: str | None) -> str:
    """How a task names its picture: a URL as it is; a local file by its path, or, with Label Studio's local-files
    document root, as Label Studio's local-files storage serves it."""
    if is_url(source) or not root:
        return source
    path = Path(os.path.realpath(source))
    base = Path(os.path.realpath(root))
    if not path.is_relative_to(base):
        raise FrcnnError(f"{source} is not under {root}, the Label Studio document root given to --save-labelstudio")
    return "/data/local-files/?d=" + quote(PurePosixPath(*path.relative_to(base).parts).as_posix())


def task(record: dict, source: str, root: str | None) -> dict:
    """A Label Studio task of one picture, with one prediction per model (v1 and v2 side by side)."""
    width, height = record["width"], record["height"]
    return {"data": {DATA_KEY: picture_reference(source, root)},
            "predictions": [prediction(result, width, height, f"{VERSION_PREFIX}{result['model']}")
                            for result in record["results"]]}


def _is_task_file(path: Path) -> bool:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(tasks, list) and all(
        isinstance(item, dict) and "data" in item and all(
            str(p.get("model_version", "")).startswith(VERSION_PREFIX) for p in item.get("predictions", []))
        for item in tasks)


def write_tasks(path: Path, tasks: Sequence[dict]) -> None:
    """The task file, replacing only a task file this project wrote."""
    if path.exists() and not _is_task_file(path):
        raise FrcnnError(f"{path} exists and was not written by this project: it is left as it is; move it, or "
                         f"choose another --output")
    write_bytes_atomically(path, (json.dumps(list(tasks), indent=1) + "\n").encode("utf-8"))
