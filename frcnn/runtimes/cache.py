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



def describe(onnx: Path, files: list[Path], name_width: int = 40) -> str:
    """One line of the listing: the entry's name, size, date, and what it is (model, size, proposals, weights
    file, runtime; for int8, of which export and on how many calibration pictures)."""
    size = sum(f.stat().st_size for f in files)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(f.stat().st_mtime for f in files)))
    head = f"{onnx.stem:{name_width}} {size / 1e6:8.1f} MB  {when}  "
    int8 = onnx.with_suffix(".key.json")
    if int8.exists():  # a quantized model, keyed by the export it came from and its calibration
        key = _read(int8).get("key", {})
        export = onnx.parent / key.get("export", "?")
        return (head + f"int8:  {_what(_read(export.with_suffix('.json')))}, calibrated on "
                f"{key.get('pictures', '?')} picture(s), NNCF {key.get('nncf', '?')}")
    record = _read(onnx.with_suffix(".json"))
    key = record.get("key", {})
    runtime = next((f"{name} {key[name]}" for name in ("openvino", "onnxruntime") if name in key), "unfinished export")
    return head + f"fp32:  {_what(record)}, for {runtime}, torch {key.get('torch', '?')}"


def _what(record: dict) -> str:
    """An export's model, size, proposals and weights file, from its record."""
    key = record.get("key", {})
    weights = record.get("weights_file") or f"weights {str(key.get('weights_sha256', '?'))[:12]}"
    return (f"{key.get('model', '?')} at {key.get('imgsz', '?')} px, {key.get('proposals', '?')} proposals, "
            f"{weights}")


def made_from(onnx: Path) -> Path:
    """The export an entry was made from: itself, or, for an int8 entry, the export it quantized."""
    int8 = onnx.with_suffix(".key.json")
    return onnx.parent / _read(int8).get("key", {}).get("export", onnx.name) if int8.exists() else onnx


def weights_sha256(onnx: Path) -> str | None:
    """The SHA-256 of the weights an entry (or the export it quantized) was made from."""
    return _read(made_from(onnx).with_suffix(".json")).get("key", {}).get("weights_sha256")


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
