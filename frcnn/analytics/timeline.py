"""Counts over time (objects in each zone, crossings of each line so far), kept small, and their plot."""

from __future__ import annotations

import io
from pathlib import Path

MAX_POINTS = 2000  # samples kept per series: enough for a plot, and memory stays flat however long the video


class Timeline:
    """Named series sampled on processed frames; past `MAX_POINTS`, every other sample goes and the sampling
    step doubles, so a long video keeps an even spread of samples."""

    def __init__(self):
        self.times: list[float] = []
        self.series: dict[str, list[float]] = {}
        self.step, self._seen = 1, 0

    def add(self, time_s: float, values: dict[str, float]) -> None:
        self._seen += 1
        if (self._seen - 1) % self.step:
            return
        self.times.append(time_s)
        for name, value in values.items():
            self.series.setdefault(name, [float("nan")] * (len(self.times) - 1)).append(value)
        if len(self.times) > MAX_POINTS:
            self.times = self.times[::2]
            self.series = {name: values[::2] for name, values in self.series.items()}
            self.step *= 2


def plot_counts(path: Path, title: str, zones: Timeline, lines: Timeline) -> None:
    """A PNG of the objects in each zone and the crossings of each line over time (one panel each kind)."""
    from matplotlib.figure import Figure  # heavy; and no pyplot: no global state, no display needed

    panels = [(timeline, label) for timeline, label in ((zones, "objects in the zone"),
                                                        (lines, "crossings so far")) if timeline.series]
    figure = Figure(figsize=(8, 2.6 * max(1, len(panels))), layout="constrained")
    axes = figure.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for axis, (timeline, label) in zip(axes, panels):
        for name, values in timeline.series.items():
            axis.step(timeline.times, values, where="post", label=name)
        axis.set_ylabel(label)
        axis.legend(loc="upper left", fontsize="small")
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    axes[0].set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    Path(path).write_bytes(buffer.getvalue())
