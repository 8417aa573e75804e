"""The training loop: steps, an epoch, validation, saving. A plain function of the trainer (model, optimizer,
schedule), the batches, the validator and the settings, so that a Ray Train worker can run it as this process does."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from frcnn.core.errors import FrcnnError
from frcnn.core.progress import progress_bar
from frcnn.training.loaders import Batch, TrainBatches
from frcnn.training.records import LOSS_NAMES, StepLog, plot_curves, write_results
from frcnn.training.run_folder import CURVES, RESULTS, STATE, RunFolder
from frcnn.training.settings import TrainSettings
from frcnn.training.state import Progress, Trainer, save_state
from frcnn.training.validate import Validator


def _never() -> bool:
    return False


def _ignore(_) -> None:
    pass


def _ignore_step(progress, losses) -> None:
    pass


def _nothing() -> None:
    pass


def _to_stderr(line: str) -> None:
    tqdm.write(f"warning: {line}", file=sys.stderr)


@dataclass
class Hooks:
    """How the loop talks to whoever runs it: whether to stop now, each finished step and epoch, warnings, and
    whether this process saves the run (in data-parallel training only the first does, then `on_save`)."""

    should_stop: Callable[[], bool] = _never
    on_epoch: Callable[[dict], None] = _ignore
    on_step: Callable[[Progress, dict | None], None] = _ignore_step
    on_save: Callable[[], None] = _nothing
    warn: Callable[[str], None] = _to_stderr
    saves: bool = True
    show_bar: bool = True
    # False where stopping is agreed between processes at steps only (validation runs in the first one alone).
    stop_in_validation: bool = True
    reported: set[str] = field(default_factory=set)  # unreadable pictures already named

    def unreadable(self, failed: list[tuple[str, str]]) -> None:
        for path, reason in failed:
            if path not in self.reported:
                self.reported.add(path)
                self.warn(f"{reason}; skipped")


def train_step(trainer: Trainer, batch: Batch) -> dict[str, float]:
    """One update on a batch; its losses. FrcnnError where the loss is no longer a finite number."""
    images = [image.to(trainer.device, non_blocking=True) for image in batch.images]
    targets = [{key: value.to(trainer.device, non_blocking=True) for key, value in target.items()}
               for target in batch.targets]
    autocast = (torch.autocast(device_type="cuda", dtype=torch.float16) if trainer.amp
                else contextlib.nullcontext())
    with autocast:
        losses = trainer.forward(images, targets)
        loss = sum(losses.values())
    value = float(loss.item())
    if not math.isfinite(value):
        rate = trainer.optimizer.param_groups[0]["lr"]
        raise FrcnnError(f"the training loss became {value}: training diverged; try a lower --lr (the rate was "
                          f"{rate:.3g}); the last finished epoch is saved")
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    return {"loss": value, **{name: float(losses[name].item()) for name in LOSS_NAMES}}


def everyone_has_pictures(trainer: Trainer, has_pictures: bool) -> bool:
    """Whether every process can take this step. In data-parallel training each must join every gradient
    exchange, so a process left without readable pictures makes all of them skip the step, not wait on it."""
    if trainer.parallel is None:
        return has_pictures
    import torch.distributed as dist

    flag = torch.tensor([int(has_pictures)], device=trainer.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _add(sums: dict[str, float], losses: dict[str, float] | None, pictures: int, seconds: float) -> None:
    for name, value in (losses or {}).items():
        sums[name] = sums.get(name, 0.0) + value
    sums["steps"] = sums.get("steps", 0) + (losses is not None)
    sums["images"] = sums.get("images", 0) + pictures
    sums["seconds"] = sums.get("seconds", 0.0) + seconds


def run_time_left(progress: Progress, steps_per_epoch: int, epochs: int, seconds_per_step: float) -> str:
    """The whole run's training steps still to take at the pace so far, as time (validation not counted): what the
    bar shows beside its own estimate, which is the epoch's."""
    steps = (epochs - progress.epoch) * steps_per_epoch - progress.step
    return tqdm.format_interval(max(0, steps) * seconds_per_step)


def train_epoch(trainer: Trainer, batches: TrainBatches, progress: Progress, settings: TrainSettings,
                log: StepLog, hooks: Hooks) -> bool:
    """The rest of the epoch under way, from its next step; False if told to stop (after a finished step)."""
    bar = progress_bar(total=batches.steps_per_epoch, initial=progress.step, unit="step", dynamic_ncols=True,
                       desc=f"epoch {progress.epoch + 1}/{settings.epochs}", leave=False, disable=not hooks.show_bar)
    loader = batches.epoch(progress.epoch, progress.step)
    last = started = time.perf_counter()
    taken = 0
    try:
        for batch in loader:
            hooks.unreadable(batch.failed)
            rate = trainer.optimizer.param_groups[0]["lr"]
            losses = train_step(trainer, batch) if everyone_has_pictures(trainer, bool(batch.images)) else None
            trainer.scheduler.step()
            progress.step += 1
            now = time.perf_counter()
            _add(progress.sums, losses, len(batch.images) * batches.world if losses is not None else 0, now - last)
            progress.sums["lr"] = rate
            last, taken = now, taken + 1
            if losses is not None:
                log.add(progress.epoch + 1, progress.step, rate, losses)
            left = run_time_left(progress, batches.steps_per_epoch, settings.epochs, (now - started) / taken)
            bar.set_postfix_str((f"loss {losses['loss']:.3f}, " if losses is not None else "") + f"run {left} left",
                                refresh=False)
            bar.update(1)
            hooks.on_step(progress, losses)
            if hooks.should_stop():
                return False
    finally:
        bar.close()
        del loader  # its workers end here
    return True


def epoch_row(progress: Progress, trainer: Trainer, metrics: dict, val_seconds: float) -> dict:
    """The finished epoch's line of results.csv: mean losses per step, validation metrics, times and speed."""
    sums = progress.sums
    steps = max(1, sums.get("steps", 0))
    seconds = sums.get("seconds", 0.0)
    return {"epoch": progress.epoch + 1, "lr": sums.get("lr", trainer.optimizer.param_groups[0]["lr"]),
            **{name: sums.get(name, 0.0) / steps for name in ("loss", *LOSS_NAMES)}, **metrics,
            "train_s": seconds, "val_s": val_seconds,
            "images_per_s": sums.get("images", 0) / seconds if seconds else None}


def save(folder: RunFolder, trainer: Trainer, progress: Progress, log: StepLog, best: bool, title: str,
         hooks: Hooks) -> None:
    """Weights and records first, the resume checkpoint last: a crash in between leaves a consistent resume."""
    if not hooks.saves:
        return
    folder.save_weights(trainer.module, best)
    log.write()
    write_results(folder / RESULTS, progress.history)
    if progress.history and progress.step == 0:
        plot_curves(folder / CURVES, progress.history, title)
    save_state(folder / STATE, trainer, progress)
    folder.record_position(progress.epoch, progress.step)
    hooks.on_save()


def _improved(progress: Progress, metrics: dict) -> bool:
    ap = metrics.get("AP")
    if ap is None:  # no validation (or nothing to score): the latest weights are the best known
        return progress.best_ap is None
    return progress.best_ap is None or ap > progress.best_ap


def patience_ran_out(progress: Progress, settings: TrainSettings) -> bool:
    """Whether validation AP has not improved for `settings.patience` epochs (0: never), which ends the run early."""
    return (settings.patience > 0 and progress.best_ap is not None
            and progress.epoch - progress.best_epoch >= settings.patience)


def fit(trainer: Trainer, batches: TrainBatches, validator: Validator | None, settings: TrainSettings,
        folder: RunFolder, progress: Progress, log: StepLog, hooks: Hooks) -> bool:
    """Train from where `progress` stands to the last epoch (or until validation AP stops improving, see
    `patience_ran_out`), validating and saving after each; False if stopped (then saved at the last finished step)."""
    title = f"{settings.model} on {settings.train.describe()}"
    while progress.epoch < settings.epochs and not patience_ran_out(progress, settings):
        training = progress.step < batches.steps_per_epoch
        if hooks.should_stop() or (training and not train_epoch(trainer, batches, progress, settings, log, hooks)):
            save(folder, trainer, progress, log, False, title, hooks)
            return False
        started = time.perf_counter()
        stop = hooks.should_stop if hooks.stop_in_validation else _never
        metrics = validator(trainer.module, trainer.device, stop) if validator else {}
        if metrics is None:
            save(folder, trainer, progress, log, False, title, hooks)
            return False
        row = epoch_row(progress, trainer, metrics, time.perf_counter() - started)
        best = _improved(progress, metrics)
        if best and metrics.get("AP") is not None:
            progress.best_ap, progress.best_epoch = metrics["AP"], row["epoch"]
        elif best:
            progress.best_epoch = row["epoch"]
        progress.history.append(row)
        progress.epoch, progress.step, progress.sums = progress.epoch + 1, 0, {}
        save(folder, trainer, progress, log, best, title, hooks)
        hooks.on_epoch(row)
    return True
