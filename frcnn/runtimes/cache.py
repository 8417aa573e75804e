"""The cache of exported and quantized models (and of files sent to Ray workers): where it is, what it holds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


SEALS = "resume"  # the records --resume reads: which inputs a run finished, with which settings (pipelines/resume.py)
RECEIVED = "received"  # checkpoints and calibration pictures sent to this node's Ray workers (cluster.py)



def cache_dir() -> Path:
    """Where exported models are kept: $FRCNN_CACHE, or the user's cache folder."""
    if os.environ.get("FRCNN_CACHE"):
        return Path(os.environ["FRCNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "faster-rcnn-v1-v2"



def entries(folder: Path) -> list[tuple[Path, list[Path]]]:
    """Each exported model in the folder with the files that belong to it (the graph, its key, leftovers)."""
    if not folder.is_dir():
        return []
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stem = path.name.lstrip(".").split(".", 1)[0]  # an interrupted export's ".name.onnx.PID.part" too
            groups.setdefault(stem, []).append(path)
    return [(folder / f"{stem}.onnx", files) for stem, files in groups.items()]



def describe(onnx: Path, files: list[Path]) -> str:
    size = sum(f.stat().st_size for f in files)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(f.stat().st_mtime for f in files)))
    int8 = onnx.with_suffix(".key.json")
    if int8.exists():  # a quantized model, keyed by the export it came from and its calibration
        key = _read_key(int8)
        return (f"{onnx.stem:40} {size / 1e6:8.1f} MB  {when}  int8 of {key.get('export', '?')}, calibrated on "
                f"{key.get('pictures', '?')} picture(s), NNCF {key.get('nncf', '?')}")
    key = _read_key(onnx.with_suffix(".json"))
    runtime = next((f"{name} {key[name]}" for name in ("openvino", "onnxruntime") if name in key), "unfinished export")
    return (f"{onnx.stem:40} {size / 1e6:8.1f} MB  {when}  {key.get('model', '?')} at {key.get('imgsz', '?')} px, "
            f"for {runtime}, torch {key.get('torch', '?')}")



def _read_key(path: Path) -> dict:
    try:
        return json.loads(path.read_text()).get("key", {})
    except (OSError, ValueError):
        return {}
