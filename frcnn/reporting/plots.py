"""The pictures of the report, drawn with matplotlib's Agg backend (no display needed) and written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from frcnn.core.files import write_bytes_atomically
from frcnn.reporting.ap_tables import RECALL_POINTS, SIZES, ClassRow
from frcnn.reporting.errors_analysis import ERROR_AREAS, STEPS, ErrorAnalysis
from frcnn.reporting.matching import DETECTED_SCORE, MATCH_IOU

RUN_COLOURS = ("#1f77b4", "#ff7f0e")  # the first run and the second, the same in every plot
STEP_COLOURS = {"C75": "#253f6b", "C50": "#3f6fb0", "Loc": "#8fb8e0", "Sim": "#c0504d", "Oth": "#5cb85c",
                "BG": "#8064a2", "FN": "#f0a030"}
DPI = 100


def _pyplot():
    import matplotlib  # here, so evaluate.py starts without it when no plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(figure)
    write_bytes_atomically(path, buffer.getvalue())
    return path


def pr_curves(path: Path, curves: dict[str, dict[float, np.ndarray | None]]) -> Path:
    """Precision against recall at each IoU threshold given, every run on the same axes."""
    plt = _pyplot()
    ious = list(next(iter(curves.values())))
    figure, axes = plt.subplots(1, len(ious), figsize=(5 * len(ious), 4.4), squeeze=False)
    for axis, iou in zip(axes[0], ious):
        for (label, per_iou), colour in zip(curves.items(), RUN_COLOURS):
            if per_iou[iou] is not None:
                axis.plot(RECALL_POINTS, per_iou[iou], color=colour, linewidth=2,
                          label=f"{label}: AP{round(100 * iou)} {100 * per_iou[iou].mean():.1f}")
        axis.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                 title=f"precision-recall at IoU {iou:g} (mean over classes)")
        axis.grid(alpha=0.3)
        axis.legend(loc="lower left")
    return _save(figure, path)


def class_bars(path: Path, rows: list[ClassRow], labels: list[str]) -> Path:
    """AP per class, the runs' bars side by side, in the rows' order (the largest difference on top)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.3 * len(rows) * len(labels) ** 0.5 + 1.2)))
    height = 0.8 / len(labels)
    positions = np.arange(len(rows))
    for index, (label, colour) in enumerate(zip(labels, RUN_COLOURS)):
        values = [np.nan if row.ap[index] is None else 100 * row.ap[index] for row in rows]
        axis.barh(positions + (index - (len(labels) - 1) / 2) * height, values, height, color=colour, label=label)
    names = [row.name if row.difference is None else f"{row.name} ({100 * row.difference:+.1f})" for row in rows]
    axis.set_yticks(positions, names, fontsize=8 if len(rows) > 30 else 10)
    axis.invert_yaxis()
    axis.set(xlim=(0, 100), xlabel="AP (IoU 0.50:0.95), %",
             title="AP per class" + (f" ({labels[-1]} - {labels[0]} in brackets)" if len(labels) > 1 else ""))
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="lower right")
    return _save(figure, path)


def size_bars(path: Path, per_run: dict[str, dict[str, float | None]]) -> Path:
    """AP for small, medium and large objects, the runs side by side ("none" where the set has no such objects)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    width = 0.8 / len(per_run)
    for index, ((label, sizes), colour) in enumerate(zip(per_run.items(), RUN_COLOURS)):
        offsets = np.arange(len(SIZES)) + (index - (len(per_run) - 1) / 2) * width
        values = [np.nan if sizes[s] is None else 100 * sizes[s] for s in SIZES]
        bars = axis.bar(offsets, values, width, color=colour, label=label)
        axis.bar_label(bars, labels=["none" if np.isnan(v) else f"{v:.1f}" for v in values], fontsize=9)
    axis.set_xticks(np.arange(len(SIZES)), [f"{s}\n({c})" for s, c in
                                            zip(SIZES, ("< 32² px", "32²-96² px", "> 96² px"))])
    axis.set(ylim=(0, 105), ylabel="AP (IoU 0.50:0.95), %", title="AP by object size")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="upper left")
    return _save(figure, path)


def error_areas(path: Path, analysis: ErrorAnalysis, label: str) -> Path:
    """The error analysis as stacked areas, one panel per object size: each band is what one kind of error costs."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(ERROR_AREAS), figsize=(5.2 * len(ERROR_AREAS), 4.4), squeeze=False)
    for axis, area in zip(axes[0], ERROR_AREAS):
        curves, aps = analysis.curves(area), analysis.ap(area)
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="recall", ylabel="precision",
                 title=f"{label}: {'all objects' if area == 'all' else area + ' objects'}")
        if curves is None:
            axis.text(0.5, 0.5, f"no {area} objects in the set", ha="center", va="center")
            continue
        for index in reversed(range(len(STEPS))):  # the widest first, each narrower one drawn over it
            axis.fill_between(RECALL_POINTS, curves[index], color=STEP_COLOURS[STEPS[index]],
                              label=step_label(STEPS[index], aps[STEPS[index]]))
        handles, names = axis.get_legend_handles_labels()
        axis.legend(handles[::-1], names[::-1], loc="lower left", fontsize=9, title="AP, %", title_fontsize=9)
    return _save(figure, path)


def step_label(step: str, ap: float | None) -> str:
    """A band's legend entry: its AP in percent, as every table of the report gives AP (`[63.2] C75`)."""
    return f"[{'-' if ap is None else f'{100 * ap:.1f}'}] {step}"


def confusion_image(path: Path, normalised: np.ndarray, names: list[str], label: str) -> Path:
    """The row-normalised confusion matrix as a heat map, values written in where the classes are few."""
    plt = _pyplot()
    ticks = [*names, "background"]
    side = max(5.0, 0.24 * len(ticks) + 2.5)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=8 if len(ticks) > 30 else 10)
    axis.set_yticks(range(len(ticks)), ticks, fontsize=8 if len(ticks) > 30 else 10)
    axis.set(xlabel="detected as", ylabel="true class",
             title=f"{label}: confusion at IoU {MATCH_IOU:g}, score >= {DETECTED_SCORE:g} (each row sums to 1)")
    if len(ticks) <= 20:
        for (row, col), value in np.ndenumerate(normalised):
            if value > 0:
                axis.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if value > 0.6 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    return _save(figure, path)
