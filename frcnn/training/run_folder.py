"""A run's output folder: what it holds, how a new run starts in it, and what each save writes (atomically, the
resume checkpoint last, so that it never claims more than the other files hold)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from frcnn.core.errors import FrcnnError
from frcnn.core.files import atomic_output, write_bytes_atomically, write_json
from frcnn.training.settings import TrainSettings

SETTINGS = "settings.json"
LABELS = "labels.txt"
LAST = "last.pth"
BEST = "best.pth"
RESULTS = "results.csv"
STEPS = "steps.csv"
CURVES = "curves.png"
STATE = Path("resume") / "state.pth"
POSITION = Path("resume") / "position.json"  # where state.pth stands, readable without PyTorch; written after it


class RunFolder:
    """The files of one training run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str | Path) -> Path:
        return self.path / name

    def has_run(self) -> bool:
        """Whether a run has saved anything here that a resume could continue."""
        return (self / STATE).is_file()

    def saved_epochs(self) -> int:
        """Epochs the saved state has finished, as position.json says (0 where it says nothing). Written after
        state.pth, it never says more than the state holds."""
        try:
            return int(json.loads((self / POSITION).read_text(encoding="utf-8"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def record_position(self, epoch: int, step: int) -> None:
        write_json(self / POSITION, {"epoch": epoch, "step": step})

    def read_settings(self) -> TrainSettings:
        path = self / SETTINGS
        if not path.is_file() and self.has_run():  # left by a run stopped before it wrote its settings
            raise FrcnnError(f"{self.path} holds a saved training state ({STATE}) without the {SETTINGS} that says "
                             f"how it was trained, so it cannot be continued: delete {self / STATE.parent} to start "
                             f"afresh there, or give another --output")
        if not path.is_file():
            raise FrcnnError(f"{self.path} holds no training run (no {SETTINGS})")
        try:
            return TrainSettings.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FrcnnError(f"{path}: not the settings of a training run ({error})") from error

    def begin(self, settings: TrainSettings, class_names: Sequence[str]) -> None:
        """Write the settings and the class names (line 1 the background, as detect_image.py --labels reads them)."""
        write_json(self / SETTINGS, settings.to_json())
        write_bytes_atomically(self / LABELS, "".join(f"{name}\n" for name in class_names).encode("utf-8"))

    def save_weights(self, module, best: bool) -> None:
        """last.pth (and best.pth): the model's plain state_dict, which detect_image.py --weights loads."""
        import torch

        with atomic_output(self / LAST) as temporary:
            torch.save(module.state_dict(), temporary)
        if best:
            copy_atomically(self / LAST, self / BEST)


def copy_atomically(source: Path, target: Path) -> None:
    """`target` becomes a copy of `source`: a hard link where the file system has them (no second write)."""
    with atomic_output(target) as temporary:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
