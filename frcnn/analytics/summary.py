"""The summary of a video's analytics: written as JSON, and told in a few lines on stdout."""

from __future__ import annotations

import json
from pathlib import Path

from frcnn.analytics.speed import STEADY
from frcnn.core.tables import cell


def write_summary(path: Path, summary: dict) -> None:
    Path(path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _per_class(counts: dict[str, dict], key: str) -> str:
    parts = [f"{entry[key]} {label}" for label, entry in counts.items() if entry[key]]
    return f" ({', '.join(parts)})" if parts else ""


def _seconds(value: float | None) -> str:
    return cell(value, ".1f", " s")


def zone_lines(summary: dict) -> list[str]:
    """`zone door: entered 5 (3 person, 2 car), left 4, present 1; dwell mean 2.1 s, longest 4.0 s`, per zone."""
    lines = []
    for name, zone in summary.get("zones", {}).items():
        total, classes = zone["all"], zone["classes"]
        lines.append(f"zone {name}: entered {total['entered']}{_per_class(classes, 'entered')}, left {total['left']}, "
                     f"present {total['present']}; dwell mean {_seconds(total['mean_dwell'])}, "
                     f"longest {_seconds(total['longest_dwell'])}")
    return lines


def line_lines(summary: dict) -> list[str]:
    """`line north crossed left to right: 3 car`, per named line and direction."""
    lines = []
    for name, line in summary.get("lines", {}).items():
        for direction, counts in line["crossings"].items():
            crossed = ", ".join(f"{n} {label}" for label, n in counts.items()) or "none"
            lines.append(f"line {name} crossed {direction.replace('_', ' ')}: {crossed}")
    return lines


def speed_lines(summary: dict) -> list[str]:
    """`speeds: 12 tracks, mean 18.0 km/h; fastest car #3 at 42.1 km/h (90th percentile of its 0.5 s speeds)`:
    the fastest by a steady figure of each track, not by its single fastest window, which one jittery box makes."""
    speed = summary.get("speed")
    if speed is None:
        return []
    unit, tracks, window = speed["unit"], speed["tracks"], speed["window"]
    if not tracks:
        return [f"speeds: no track was followed for {window:g} s"]
    fastest = max(tracks, key=lambda track: track[STEADY])
    mean = sum(track["mean"] for track in tracks) / len(tracks)
    return [f"speeds: {len(tracks)} track{'s' if len(tracks) != 1 else ''}, mean {mean:.1f} {unit}; fastest "
            f"{fastest['class']} #{fastest['track']} at {fastest[STEADY]:.1f} {unit} "
            f"(90th percentile of its {window:g} s speeds)"]


def report_lines(summary: dict, named_lines: bool) -> list[str]:
    """What stdout tells of a video's analytics (the lines' crossings only when they have names)."""
    return [*(line_lines(summary) if named_lines else []), *zone_lines(summary), *speed_lines(summary)]
