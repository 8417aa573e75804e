"""Everything a training process needs, made from the settings and the checked sets: the trainer (new, or put back
where a resume checkpoint left it), the batches, the validator and the step log."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from frcnn.core.specs import max_size_for
from frcnn.training.data import TrainingData
from frcnn.training.loaders import TrainBatches
from frcnn.training.loop import Hooks
from frcnn.training.recipe import build_for_training, make_optimizer, make_schedule, starting_weights
from frcnn.training.records import StepLog
from frcnn.training.run_folder import STEPS, RunFolder
from frcnn.training.settings import TrainSettings
from frcnn.training.state import Progress, Trainer, restore
from frcnn.training.validate import Validator


@dataclass
class Session:
    """A run ready to go: pass its parts to loop.fit."""

    trainer: Trainer
    batches: TrainBatches
    validator: Validator | None
    progress: Progress
    log: StepLog


def make_trainer(settings: TrainSettings, classes: int, steps_per_epoch: int, device: torch.device,
                 resuming: bool) -> Trainer:
    """The model (with its starting weights, unless a resume brings its own), optimizer, schedule and scaler."""
    state, source = (None, "") if resuming else starting_weights(settings)
    module = build_for_training(settings, classes, state, source).to(device)
    del state
    optimizer = make_optimizer(module, settings)
    scheduler = make_schedule(optimizer, steps_per_epoch, settings)
    amp = settings.amp and device.type == "cuda"
    return Trainer(module, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=amp), device, amp)


def make_session(settings: TrainSettings, data: TrainingData, folder: RunFolder, device: torch.device,
                 record: dict | None, hooks: Hooks, rank: int = 0, world: int = 1) -> Session:
    """A new run (record None), or the one a resume checkpoint describes, continued exactly where it stopped.
    With `world` data-parallel processes (torch.distributed set up), this is process `rank`'s part: its share of
    every step's pictures, and the validation only in the first."""
    batches = TrainBatches(data.train, settings.batch, settings.seed, settings.workers, settings.imgsz,
                           max_size_for(settings.imgsz), pin_memory=device.type == "cuda", rank=rank, world=world)
    trainer = make_trainer(settings, len(data.train.class_names), batches.steps_per_epoch, device, record is not None)
    progress = restore(trainer, record) if record is not None else Progress()
    if world > 1:
        trainer.parallel = torch.nn.parallel.DistributedDataParallel(
            trainer.module, device_ids=[device.index] if device.type == "cuda" else None)
    validator = (Validator(data.val, settings.model, settings.imgsz, settings.workers, hooks.warn)
                 if data.val is not None and rank == 0 else None)
    log = StepLog(folder / STEPS)
    if record is not None:
        log.resume_at(progress.epoch + 1, progress.step)
    return Session(trainer, batches, validator, progress, log)
