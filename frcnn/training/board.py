"""TensorBoard event files beside results.csv, where a TensorBoard writer is installed: PyTorch's own (it needs the
`tensorboard` package) or tensorboardX's (which Ray installs). Each step's losses and learning rate, and each epoch's
mean losses, validation metrics and speed, under the same names as in steps.csv and results.csv."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from frcnn.training.records import LOSS_NAMES
from frcnn.training.state import Progress

_EPOCH_SKIPPED = ("epoch",)


def writer_class():
    """The SummaryWriter class of the TensorBoard writer installed, or None."""
    if importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter
    if importlib.util.find_spec("tensorboardX") is not None:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    return None


class Board:
    """A run's TensorBoard record; steps are counted over the whole run (epoch x steps per epoch + step)."""

    def __init__(self, folder: Path, steps_per_epoch: int):
        self.folder, self.steps_per_epoch = folder, steps_per_epoch
        self._writer = None

    @property
    def writer(self):
        """The writer, made with the first record: a run that fails to start leaves no event file."""
        if self._writer is None:
            self._writer = writer_class()(log_dir=str(self.folder))
        return self._writer

    def step(self, progress: Progress, losses: dict[str, float] | None) -> None:
        """A finished step (the loop's `on_step`): its losses and rate; a skipped step (None) has none."""
        if losses is None:
            return
        number = progress.global_step(self.steps_per_epoch)
        for name in ("loss", *LOSS_NAMES):
            self.writer.add_scalar(f"step/{name}", losses[name], number)
        self.writer.add_scalar("step/lr", progress.sums.get("lr", 0.0), number)

    def epoch(self, row: dict) -> None:
        """A finished epoch's line of results.csv."""
        for name, value in row.items():
            if name not in _EPOCH_SKIPPED and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{name}", value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def open_board(folder: Path, steps_per_epoch: int) -> tuple[Board | None, str]:
    """The run's TensorBoard record (None where no writer is installed) and one line saying which, for stderr."""
    if writer_class() is None:
        return None, ("TensorBoard: no writer installed (pip install tensorboard); results.csv, steps.csv and "
                      "curves.png hold the same numbers")
    return Board(folder, steps_per_epoch), f"TensorBoard: event files in {folder} (tensorboard --logdir {folder})"
