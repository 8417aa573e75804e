"""Where a run stands, and what a resume needs to continue it exactly: the model, optimizer, schedule, gradient
scaler, position (epoch, step), random generators, best AP and history, as one checkpoint of tensors and plain
values (loaded with weights_only=True)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.files import atomic_output

STATE_FORMAT = 1


@dataclass
class Trainer:
    """What one training process holds: the model and what updates it."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool  # float16 autocast (CUDA)
    parallel: torch.nn.Module | None = None  # the module wrapped for data-parallel training (None: one process)

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The training losses, through the data-parallel wrapper where there is one (it exchanges the gradients)."""
        return (self.parallel or self.module)(images, targets)


@dataclass
class Progress:
    """The run's position and record: the epoch under way (0-based), the steps finished in it, the best AP."""

    epoch: int = 0
    step: int = 0
    best_ap: float | None = None
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)  # one row per finished epoch (results.csv)
    sums: dict[str, float] = field(default_factory=dict)  # loss sums, pictures and seconds of the epoch under way

    def global_step(self, steps_per_epoch: int) -> int:
        return self.epoch * steps_per_epoch + self.step


def capture_random() -> dict:
    """The state of every random generator a run draws from (PyTorch's, CUDA's, numpy's and Python's)."""
    numpy_state = np.random.get_state(legacy=False)
    captured = {"torch": torch.get_rng_state(),
                "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                          "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                          "gauss": float(numpy_state["gauss"])},
                "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        captured["cuda"] = torch.cuda.get_rng_state_all()
    return captured


def restore_random(captured: dict) -> None:
    torch.set_rng_state(captured["torch"])
    numpy_state = captured["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    version, internal, gauss = captured["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in captured and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(captured["cuda"])


def save_state(path, trainer: Trainer, progress: Progress) -> None:
    """Write the resume checkpoint atomically."""
    record = {"format": STATE_FORMAT, "model": trainer.module.state_dict(),
              "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
              "scaler": trainer.scaler.state_dict(), "random": capture_random(),
              "epoch": progress.epoch, "step": progress.step, "best_ap": progress.best_ap,
              "best_epoch": progress.best_epoch, "history": progress.history, "sums": progress.sums}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        torch.save(record, temporary)


def read_state(path) -> dict:
    """A resume checkpoint, read without running any code; FrcnnError if it is not one."""
    try:
        # Mapped, not read: a finished run is told from its position without reading every tensor.
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch.load fails in many ways on damaged files
        raise FrcnnError(f"{path} is not a readable resume checkpoint ({first_line(error)})") from error
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        raise FrcnnError(f"{path} is not a resume checkpoint of this version of train.py")
    return record


def progress_of(record: dict) -> Progress:
    return Progress(record["epoch"], record["step"], record["best_ap"], record["best_epoch"],
                    list(record["history"]), dict(record["sums"]))


def restore(trainer: Trainer, record: dict) -> Progress:
    """Put the trainer and the random generators back where the checkpoint left them."""
    trainer.module.load_state_dict(record["model"])
    trainer.optimizer.load_state_dict(record["optimizer"])
    trainer.scheduler.load_state_dict(record["scheduler"])
    if record["scaler"] and trainer.scaler.is_enabled():  # empty where saved without mixed precision
        trainer.scaler.load_state_dict(record["scaler"])
    restore_random(record["random"])
    return progress_of(record)
