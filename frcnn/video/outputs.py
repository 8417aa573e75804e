"""Where one video's outputs go and how they land together: the drawn video, its records, each model's analytics and
crops, sealed for --resume; a worker's finished video written here as one set like a video processed here."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from frcnn.analytics.outputs import CROPS, AnalyticsFiles, CropStage
from frcnn.core.files import AtomicOutputs, old_crops
from frcnn.core.log import log
from frcnn.core.specs import model_names
from frcnn.pipelines.resume import ResumeBook, pending, skipped_line
from frcnn.video.pipeline import EncodedVideo, VideoRun, analytics_files


@dataclass(frozen=True)
class VideoOutputs:
    """Where one video's outputs go: the drawn video, its records when asked for, and each model's analytics."""

    video: Path
    records: Path | None
    tracks: Path | None
    analytics: dict[str, AnalyticsFiles]
    possible_analytics: tuple[Path, ...]  # what this run's models may have left from an earlier run
    name: str

    @classmethod
    def named(cls, out_dir: Path, name: str, run: VideoRun, records: bool) -> "VideoOutputs":
        video = out_dir / f"{name}_{run.model_option}.mp4"
        models = model_names(run.model_option)
        return cls(video, video.with_suffix(".jsonl") if records else None,
                   video.with_name(f"{video.stem}_tracks.jsonl") if run.tracking else None,
                   analytics_files(out_dir, name, models, run),
                   tuple(path for model in models for path in AnalyticsFiles.possible(out_dir, name, model)), name)

    def written(self) -> list[Path]:
        """The files written as one set (crops apart: they go to crops/ when the set lands)."""
        return [p for p in (self.video, self.records, self.tracks) if p is not None] + [
            path for files in self.analytics.values() for path in files.files()]

    def stale(self) -> list[Path]:
        """Records an earlier run left beside the video: they would describe another video."""
        return [self.video.with_suffix(".jsonl"), self.video.with_name(f"{self.video.stem}_tracks.jsonl"),
                *self.possible_analytics]

    @property
    def crops(self) -> bool:
        return any(files.crops is not None for files in self.analytics.values())

    def staged(self, stack: contextlib.ExitStack) -> tuple[dict[Path, Path], Path | None]:
        """Enter the set's temporary paths and, with crops, their staging folder: both land when `stack` closes
        without an error (the crops after the files), and neither does otherwise."""
        stage = None
        if self.crops:
            stage = stack.enter_context(CropStage(self.video.parent, self.name, list(self.analytics)))
        return stack.enter_context(AtomicOutputs(self.written(), stale=self.stale())), stage

    def landed(self) -> list[Path]:
        """Every file of the set once it has landed, crops included: what its seal lists."""
        return self.written() + [crop for files in self.analytics.values() if files.crops is not None
                                 for crop in old_crops(files.crops, self.name)]


def resume_settings(run: VideoRun, records: bool) -> dict:
    """What of the run changes its files (a resumed run's seals must name the same)."""
    return {"model": run.model_option, "frame_stride": run.frame_stride, "max_frames": run.max_frames,
            "draw": run.draw, "threshold": run.threshold, "tracking": run.tracking, "json": records}


@dataclass
class Written:
    """Where a run writes (the folder, each input's base name, --json) and the seals that a resumed run reads."""

    out_dir: Path
    names: dict[str, str]
    records: bool
    book: ResumeBook | None = None

    def outputs(self, spec: str, run: VideoRun) -> VideoOutputs:
        return VideoOutputs.named(self.out_dir, self.names[spec], run, self.records)

    def unseal(self, video: Path) -> None:
        if self.book is not None:
            self.book.unseal(video)

    def seal(self, video: Path, spec: str, landed) -> None:
        if self.book is not None:
            self.book.seal(video, spec, landed)

    def todo(self, sources: list[str], run: VideoRun, resume: bool) -> list[str]:
        """The sources not done yet (all of them, unless `resume`); a resumed run says how many it skips."""
        todo, skipped = pending(self.book, sources, lambda spec: self.outputs(spec, run).video, resume)
        if resume:
            log.info(skipped_line(skipped, len(sources)))
        return todo


def write_encoded(encoded: EncodedVideo, outputs: VideoOutputs) -> None:
    """A worker's finished video, records and analytics, written as one set like a video processed here."""
    with contextlib.ExitStack() as stack:
        temporary, stage = outputs.staged(stack)
        for path, data in ((outputs.video, encoded.video), (outputs.records, encoded.records),
                           (outputs.tracks, encoded.tracks)):
            if path is not None:
                temporary[path].write_bytes(data or b"")
        for relative, data in encoded.analytics.items():  # named as here, relative to the outputs' folder
            parts = Path(relative).parts
            if parts[0] == CROPS and stage is not None:
                target = stage.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            elif outputs.video.parent / relative in temporary:
                temporary[outputs.video.parent / relative].write_bytes(data)
