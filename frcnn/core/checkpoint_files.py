"""What train.py writes beside its checkpoints (labels.txt, settings.json), read into a ModelSpec in one place for the
scripts and for Python alike: the class names, the size the model was trained at, and its architecture.

Nothing here imports PyTorch: the scripts read these files while checking their options.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from frcnn.core.specs import DEFAULT_IMGSZ, MODEL_NAMES, ModelSpec

LABELS_BESIDE_CHECKPOINT = "labels.txt"  # what train.py writes beside best.pth and last.pth
SETTINGS_BESIDE_CHECKPOINT = "settings.json"  # how that run trained: its --model and --imgsz among them
DEFAULT_MODEL = "v2"  # the architecture of the COCO weights when none is named


def labels_beside(checkpoint: str | os.PathLike | None) -> str | None:
    """The class names file train.py wrote beside a checkpoint, if it is there (None for the COCO weights)."""
    if checkpoint is None:
        return None
    path = Path(checkpoint).parent / LABELS_BESIDE_CHECKPOINT
    return str(path) if path.is_file() else None


def settings_beside(checkpoint: str | os.PathLike | None) -> tuple[dict, str | None]:
    """The settings train.py wrote beside a checkpoint, and their file ({} and None where none are readable)."""
    if checkpoint is None:
        return {}, None
    path = Path(checkpoint).parent / SETTINGS_BESIDE_CHECKPOINT
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, None
    return (settings, str(path)) if isinstance(settings, dict) else ({}, None)


def complete_spec(spec: ModelSpec) -> ModelSpec:
    """`spec` with what it leaves open (None) taken from train.py's files beside its checkpoint: the class names
    (labels.txt), the size it was trained at and its architecture (settings.json, said in `imgsz_from` and
    `name_from`); else 800 px, and v2 for the COCO weights. The name of a checkpoint without settings stays None:
    its own state says it (`frcnn.model.checkpoint_architecture`)."""
    settings, settings_file = settings_beside(spec.weights)
    changes: dict = {}
    if spec.labels is None:
        changes["labels"] = labels_beside(spec.weights)
    if spec.imgsz is None:
        trained = settings.get("imgsz")
        known = isinstance(trained, int) and not isinstance(trained, bool) and trained > 0
        changes["imgsz"] = trained if known else DEFAULT_IMGSZ
        changes["imgsz_from"] = settings_file if known else None
    if spec.name is None:
        trained = settings.get("model")
        if trained in MODEL_NAMES:
            changes.update(name=trained, name_from=settings_file)
        elif spec.weights is None:
            changes["name"] = DEFAULT_MODEL
    return dataclasses.replace(spec, **changes)


def read_beside(spec: ModelSpec) -> str:
    """What a completed spec took from the files beside its checkpoint, as one phrase ("" where nothing)."""
    parts = []
    if spec.labels is not None:
        parts.append(f"class names from {spec.labels}")
    if spec.name_from:
        parts.append(f"{spec.name} as trained ({spec.name_from})")
    if spec.imgsz_from:
        parts.append(f"{spec.imgsz} px as trained ({spec.imgsz_from})")
    return "; ".join(parts)
