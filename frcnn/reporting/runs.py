"""The runs a results folder holds (detections, the images they scored, metrics, settings) and the set they were
made on, read back for plotting and comparing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from frcnn.core.errors import FrcnnError
from frcnn.core.files import write_json
from frcnn.evaluation.coco import read_predictions

SET_RECORD = "set.json"
PREDICTIONS = "predictions"  # the run `--predictions` scores, whose metrics are `metrics.json`


@dataclass(frozen=True)
class RunEntry:
    """One run in a results folder: the column it gets, where it is, and its model's name."""

    label: str
    folder: Path
    model: str

    @property
    def metrics_path(self) -> Path:
        return self.folder / ("metrics.json" if self.model == PREDICTIONS else f"{self.model}_metrics.json")

    @property
    def settings_path(self) -> Path:
        return self.folder / f"{self.model}_settings.json"

    @property
    def results_path(self) -> Path:
        return self.folder / f"{self.model}_results.json"


@dataclass
class Run:
    """A run read back: its COCO results over the images it scored, its metrics and settings."""

    label: str
    detections: list[dict]
    image_ids: list[int]
    metrics: dict
    settings: dict


def find_runs(folders: Sequence[str | Path]) -> list[RunEntry]:
    """The runs each results folder holds, labelled by model (one folder) or by folder (and model where needed)."""
    entries = []
    for folder, name in zip(map(Path, folders), distinct_names(folders)):
        if not folder.is_dir():
            raise FrcnnError(f"{folder}: results folder not found")
        found = sorted(folder.glob("*_metrics.json")) or sorted(folder.glob("metrics.json"))
        if not found:
            raise FrcnnError(f"{folder}: no metrics here (run evaluate.py with --output {folder} first)")
        models = [PREDICTIONS if p.name == "metrics.json" else p.name[:-len("_metrics.json")] for p in found]
        for model in models:  # one folder: its runs by model; several: by folder (and model where needed)
            label = model if len(folders) == 1 else name if len(models) == 1 else f"{name}/{model}"
            entries.append(RunEntry(label, folder, model))
    return entries


def distinct_names(folders: Sequence[str | Path]) -> list[str]:
    """Each folder's name, with as many parent folders as it takes to tell them apart."""
    parts = [Path(folder).resolve().parts for folder in folders]
    for depth in range(1, max(map(len, parts), default=0) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(folder) for folder in folders]


def read_json(path: Path) -> dict:
    """A JSON file, or the user's error naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FrcnnError(f"{path}: not readable ({error})") from error


def load_run(entry: RunEntry, coco) -> Run:
    """A run's detections, checked against the set `coco`, and the images it scored there."""
    if not entry.results_path.is_file():
        raise FrcnnError(f"{entry.folder}: no results of {entry.model} to plot ({entry.results_path.name} is "
                          f"missing; run evaluate.py with --output {entry.folder} again)")
    detections = read_predictions(entry.results_path, coco)
    unknown = {d["category_id"] for d in detections} - set(coco.getCatIds())
    if unknown:
        raise FrcnnError(f"{entry.results_path}: category id(s) {', '.join(map(str, sorted(unknown)))} are not in "
                          f"the set: results of another set (give its --annotations)")
    metrics = read_json(entry.metrics_path)
    settings = read_json(entry.settings_path) if entry.settings_path.exists() else {}
    missing = _missing_images(entry.folder / f"{entry.model}_progress.jsonl")
    image_ids = [i for i in sorted(coco.getImgIds()) if i not in missing]
    if isinstance(metrics.get("images"), int):
        # evaluate.py scores the first images by id, leaving out the missing ones: the same rule gives them back.
        image_ids = image_ids[:metrics["images"]]
    return Run(entry.label, detections, image_ids, metrics, settings)


def _missing_images(progress: Path) -> set[int]:
    """Images a model run found listed but absent (a progress line without a time)."""
    if not progress.exists():
        return set()
    missing = set()
    for line in progress.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("ms", 0) is None:
            missing.add(entry.get("image_id"))
    return missing


# ---------------------------------------------------------------- which set a folder's results are of


def set_record(annotations: Path, images: Path | None) -> dict:
    """What identifies a set: its annotation file (path and content hash) and its images folder."""
    digest = hashlib.sha256()
    with open(annotations, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"annotations": str(Path(annotations).resolve()), "images": str(Path(images).resolve()) if images else None,
            "sha256": digest.hexdigest()}


def write_set_record(folder: Path, record: dict) -> None:
    """Note in a results folder which set its results are of, so it can be plotted later on its own."""
    write_json(Path(folder) / SET_RECORD, record)


def read_set_record(folder: str | Path) -> dict | None:
    """The set a results folder says its results are of (None: it does not say)."""
    path = Path(folder) / SET_RECORD
    return read_json(path) if path.is_file() else None


def recorded_set(folders: Sequence[str | Path]) -> dict | None:
    """The set the folders' results were made on (None where none says); two different sets are an error."""
    records = {str(f): record for f in folders if (record := read_set_record(f)) is not None}
    hashes = {record.get("sha256") for record in records.values()}
    if len(hashes) > 1:
        described = ", ".join(f"{folder}: {record.get('annotations')}" for folder, record in records.items())
        raise FrcnnError(f"the runs were made on different sets ({described}); give --annotations FILE to score "
                          f"them against one")
    with_images = [record for record in records.values() if record.get("images")]
    return (with_images or list(records.values()) or [None])[0]
