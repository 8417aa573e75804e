"""The run's record: results.csv (one row per epoch), steps.csv (one row per step) and curves.png (losses and
validation AP by epoch), each rewritten whole and atomically whenever the run saves."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from frcnn.core.files import atomic_output, write_bytes_atomically

LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR100")
RESULT_COLUMNS = ("epoch", "lr", "loss", *LOSS_NAMES, *METRICS, "train_s", "val_s", "images_per_s")
STEP_COLUMNS = ("epoch", "step", "lr", "loss", *LOSS_NAMES)


def _csv_text(columns: Sequence[str], rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_results(path: Path, history: Sequence[dict]) -> None:
    write_bytes_atomically(path, _csv_text(RESULT_COLUMNS, history).encode("utf-8"))


class StepLog:
    """Every finished step's losses: the rows of earlier sessions of the run (up to where it resumed) and new ones."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []

    def resume_at(self, epoch: int, step: int) -> None:
        """Keep the rows of steps before (epoch, step) (1-based epoch; steps finished in it); drop any later."""
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        self.rows = [row for row in rows if (int(row["epoch"]), int(row["step"])) <= (epoch, step)]

    def add(self, epoch: int, step: int, lr: float, losses: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, "step": step, "lr": lr, **losses})

    def write(self) -> None:
        write_bytes_atomically(self.path, _csv_text(STEP_COLUMNS, self.rows).encode("utf-8"))


def plot_curves(path: Path, history: Sequence[dict], title: str) -> None:
    """Training losses and validation AP by epoch, as a PNG."""
    from matplotlib.figure import (
        Figure,  # heavy; and no pyplot: no global figure state, no display needed
    )

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(11, 4.2))
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.84, wspace=0.18)  # fixed: one drawing pass
    losses, scores = figure.subplots(1, 2)
    for name in ("loss", *LOSS_NAMES):
        losses.plot(epochs, [row[name] for row in history], marker="o", markersize=3,
                    linewidth=2.2 if name == "loss" else 1.2, label=name.removeprefix("loss_") or "loss")
    losses.set(title="training loss (mean per step)", xlabel="epoch", ylim=(0, None))
    losses.legend(fontsize=8)
    for name in ("AP", "AP50", "AP75"):
        values = [None if row.get(name) is None else 100 * row[name] for row in history]
        scores.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", markersize=3, label=name)
    scores.set(title="validation box AP (%)", xlabel="epoch", ylim=(0, None))
    scores.legend(fontsize=8)
    for axes in (losses, scores):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
