"""Metrics of several runs side by side: the table evaluate.py prints, torchvision's published figures beside it,
and the settings that differ between runs."""

from __future__ import annotations

import json

from frcnn.core.tables import MISSING, format_table, percent
from frcnn.evaluation.coco import METRIC_NAMES
from frcnn.reporting.runs import find_runs, read_json

# torchvision's published COCO val2017 box mAP (the weights' documentation).
PUBLISHED_AP = {"v1": 0.370, "v2": 0.467}


def metrics_table(rows: dict[str, dict], subset_note: str, published: bool = False) -> str:
    """Metrics as percentages, one column per model or run (and their difference when there are two); with
    `published`, torchvision's own figures for its COCO weights beside them (only meaningful for those weights)."""
    names = list(rows)
    paired = len(names) == 2
    header = ["metric", *names] + ([f"{names[1]} - {names[0]}"] if paired else [])
    lines = [header]
    for metric in [*METRIC_NAMES, "AR100"]:
        values = [rows[name].get(metric) for name in names]
        cells = [metric, *(percent(v) for v in values)]
        if paired:
            cells.append(MISSING if None in values else f"{100 * (values[1] - values[0]):+.1f}")
        lines.append(cells)
    published = published and all(name in PUBLISHED_AP for name in names)
    if published:
        figures = [percent(PUBLISHED_AP[name]) for name in names]
        diff = [f"{100 * (PUBLISHED_AP[names[1]] - PUBLISHED_AP[names[0]]):+.1f}"] if paired else []
        lines.append(["AP published*", *figures, *diff])
    lines.append(["ms / image", *(f"{rows[n]['ms_per_image']:.0f}" if rows[n].get("ms_per_image") else MISSING
                                  for n in names)])
    text = format_table(lines)
    if published:
        text += "\n* torchvision's COCO val2017 box AP for its COCO weights, on all 5,000 images" + subset_note
    elif subset_note:
        text += f"\n{subset_note.lstrip('; ')} of the set were scored"
    return text


def read_runs(folders: list[str]) -> tuple[dict[str, dict], dict[str, dict]]:
    """The metrics and settings each results folder holds, one column per model run in it."""
    metrics, settings = {}, {}
    for entry in find_runs(folders):
        metrics[entry.label] = read_json(entry.metrics_path)
        settings[entry.label] = read_json(entry.settings_path) if entry.settings_path.exists() else {}
    return metrics, settings


def settings_differences(settings: dict[str, dict]) -> list[str]:
    """One line per setting that differs between the runs compared (precision, proposals, slicing ...)."""
    keys = sorted({key for values in settings.values() for key in values})
    lines = []
    for key in keys:
        values = [json.dumps(values.get(key)) for values in settings.values()]
        if len(set(values)) > 1:
            lines.append(f"  {key}: {' | '.join(values)}")
    return lines
