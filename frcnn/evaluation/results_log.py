"""The results of an evaluation that survive interruption: `<model>_results.json` (a COCO results array, grown in
place as pictures finish), `<model>_progress.jsonl` (one line per finished picture) and `<model>_settings.json`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from frcnn.core.errors import FrcnnError
from frcnn.core.files import write_bytes_atomically, write_json

# What a run's settings must share with the results already in its folder to carry on from them, known before any
# model loads (the runtime is known only once it has).
SETTINGS_KNOWN_UP_FRONT = ("imgsz", "precision", "proposals", "threshold")


def check_resumable(folder: Path, name: str, known: dict) -> None:
    """Refuse, before a model is loaded or exported, a folder whose results of `name` were made with other settings."""
    log = ResultsLog(folder, name, known)
    earlier = log.earlier_settings()
    if earlier is None:
        return
    differing = [key for key in SETTINGS_KNOWN_UP_FRONT if key in known and earlier.get(key) != known[key]]
    if differing:
        raise log.other_settings_error(", ".join(f"{key} {earlier.get(key)} there, {known[key]} here"
                                                 for key in differing))


class ResultsLog:
    """`<model>_results.json` (a COCO results array, grown in place) and `<model>_progress.jsonl`.

    An image counts as done once its progress line is written, after its detections; on resume, detections
    of images without a progress line (a run cut off in between) are dropped.
    """

    def __init__(self, folder: Path, name: str, settings: dict):
        self.name = name
        self.results_path = folder / f"{name}_results.json"
        self.progress_path = folder / f"{name}_progress.jsonl"
        self.settings_path = folder / f"{name}_settings.json"
        self.settings = settings
        self.done: dict[int, dict] = {}
        self.detections: list[dict] = []

    def earlier_settings(self) -> dict | None:
        """The settings of the results an earlier run left here (None: nothing to carry on from)."""
        if not (self.progress_path.exists() and self.settings_path.exists()):
            return None
        try:
            earlier = json.loads(self.settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = {}
        return earlier if isinstance(earlier, dict) else {}

    def other_settings_error(self, detail: str = "") -> FrcnnError:
        return FrcnnError(f"{self.progress_path.parent} holds results made with other settings "
                           f"({self.settings_path.name}{': ' + detail if detail else ''}); give another --output, "
                           f"or delete them to start over")

    def resume(self) -> None:
        """Read what earlier runs with the same settings finished and rewrite the files to hold exactly that."""
        earlier = self.earlier_settings()
        if earlier is not None and earlier != self.settings:
            raise self.other_settings_error()
        write_json(self.settings_path, self.settings)
        self.done = {entry["image_id"]: entry for entry in read_lines(self.progress_path)}
        self.detections = [d for d in read_lines(self.results_path) if d.get("image_id") in self.done]
        write_bytes_atomically(self.results_path, results_text(self.detections).encode())
        write_bytes_atomically(self.progress_path, "".join(json.dumps(e) + "\n" for e in self.done.values()).encode())

    def add(self, image_id: int, detections: list[dict], milliseconds: float | None) -> None:
        with open(self.results_path, "r+", encoding="utf-8") as results:
            results.seek(0, os.SEEK_END)
            results.seek(results.tell() - len("\n]\n"))
            lines = ",\n".join(json.dumps(d) for d in detections)
            if lines:
                results.write((",\n" if self.detections else "\n") + lines)
            results.write("\n]\n")
            results.truncate()
            _sync(results)
        entry = {"image_id": image_id, "detections": len(detections), "ms": milliseconds}
        with open(self.progress_path, "a", encoding="utf-8") as progress:
            progress.write(json.dumps(entry) + "\n")
            _sync(progress)
        self.detections.extend(detections)
        self.done[image_id] = entry


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def results_text(detections: list[dict]) -> str:
    return "[" + ("\n" + ",\n".join(json.dumps(d) for d in detections) if detections else "") + "\n]\n"


def read_lines(path: Path) -> list[dict]:
    """The JSON objects of a file with one per line (a trailing comma allowed); a cut-off last line is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries
