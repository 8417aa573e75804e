"""Where one video's analytics go, per model: the events log, the summary, the counts plot, the heatmap and the
crops; and the hidden folder the crops wait in until the video's other outputs land."""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from frcnn.core.files import written_here
from frcnn.core.specs import AnalyticsOptions

CROPS = "crops"
SUFFIXES = ("_events.jsonl", "_summary.json", "_counts.png", "_heatmap.png")


@dataclass(frozen=True)
class AnalyticsFiles:
    """One model's analytics files for one video (None: not asked for); crops go to
    `<crops>/<class>/<name>_<track>.jpg`."""

    name: str  # the video's base name
    events: Path
    summary: Path
    counts_plot: Path | None
    heatmap: Path | None
    crops: Path | None

    @classmethod
    def named(cls, folder: Path, name: str, model: str, options: AnalyticsOptions) -> "AnalyticsFiles":
        events, summary, counts, heatmap = cls.possible(folder, name, model)
        return cls(name, events, summary, counts if options.lines or options.zones else None,
                   heatmap if options.heatmap else None, folder / CROPS / model if options.crops else None)

    def files(self) -> list[Path]:
        """The files written as one set with the video (crops apart: there are many, and they come as tracks end)."""
        return [p for p in (self.events, self.summary, self.counts_plot, self.heatmap) if p is not None]

    @staticmethod
    def possible(folder: Path, name: str, model: str) -> list[Path]:
        """Every file a run may write for this name and model (an earlier run's may be there)."""
        return [folder / f"{name}_{model}{suffix}" for suffix in SUFFIXES]

    def at(self, temporary: dict[Path, Path], crops: Path | None) -> "AnalyticsFiles":
        """The same files at their temporary paths (and crops in the staging folder) while the video is made."""
        return replace(self, events=temporary[self.events], summary=temporary[self.summary],
                       counts_plot=self.counts_plot and temporary[self.counts_plot],
                       heatmap=self.heatmap and temporary[self.heatmap],
                       crops=crops / self.crops.name if self.crops is not None and crops is not None else None)


class CropStage:
    """A hidden folder beside `crops/` that a video's crops are written to; only when the block succeeds do they
    move into `crops/<model>/<class>/`, replacing that video's crops from an earlier run. A failed or aborted
    video leaves none."""

    def __init__(self, folder: Path, name: str, models: Sequence[str]):
        self.final = folder / CROPS
        self.name, self.models = name, list(models)
        self.stage = folder / f".{CROPS}-{name}.{secrets.token_hex(4)}.part"

    def __enter__(self) -> Path:
        # Folders made here go again if nothing lands: a failed run leaves no empty output folder.
        self.made = [p for p in (self.stage.parent, *self.stage.parent.parents) if not p.exists()]
        self.stage.mkdir(parents=True)
        return self.stage

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
            for folder in self.made:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()

    def _commit(self) -> None:
        for model in self.models:
            for old in (self.final / model).glob("*/*.jpg"):
                number = old.stem[len(self.name) + 1:]
                if old.stem.startswith(f"{self.name}_") and number.isdigit() and written_here(old):
                    old.unlink()
        for path in sorted(self.stage.rglob("*.jpg")):
            target = self.final / path.relative_to(self.stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
