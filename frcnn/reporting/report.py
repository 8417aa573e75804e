"""Everything `--plots` and `--report` write, from one or two runs read back and the set they were made on: each
part writes its files and returns its section of the page."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from frcnn.core.errors import FrcnnError
from frcnn.core.files import write_bytes_atomically
from frcnn.core.log import log
from frcnn.reporting import plots
from frcnn.reporting.ap_tables import ap_by_size, ap_per_class, class_csv, class_rows, pr_curve, summary
from frcnn.reporting.confusion import confusion_counts, normalise_rows
from frcnn.reporting.errors_analysis import ErrorAnalysis, analyse_errors, errors_csv
from frcnn.reporting.gallery import names_by_id, pick, write_gallery
from frcnn.reporting.matching import DETECTED_SCORE, MATCH_IOU, ImageMatch, match_images
from frcnn.reporting.page import Figure, Section, metrics_table, write_page
from frcnn.reporting.runs import Run
from frcnn.reporting.scoring import Scored, evaluate, ground_truth

PAGE = "report.html"


@dataclass(frozen=True)
class ReportOptions:
    """How many gallery pictures (0: none), and whether to write report.html."""

    gallery: int = 8
    page: bool = False


@dataclass
class Analysed:
    """A run with what the plots read off it: its evaluation, error analysis and per-picture matches."""

    label: str
    slug: str
    scored: Scored
    errors: ErrorAnalysis
    matches: dict[int, ImageMatch]


def common_images(runs: list[Run]) -> list[int]:
    """The images every run scored (said on stderr when they are not all the same ones)."""
    shared = set(runs[0].image_ids).intersection(*(run.image_ids for run in runs[1:]))
    if not shared:
        raise FrcnnError("the runs scored no image in common: there is nothing to compare")
    if any(len(run.image_ids) != len(shared) for run in runs):
        counts = ", ".join(f"{run.label}: {len(run.image_ids)}" for run in runs)
        log.warning(f"warning: the runs scored different images ({counts}); the plots use the {len(shared)} they share")
    return sorted(shared)


def _slugs(labels: list[str]) -> list[str]:
    slugs = [re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("_") or "run" for label in labels]
    return slugs if len(set(slugs)) == len(slugs) else [f"{n + 1}_{s}" for n, s in enumerate(slugs)]


def analyse(truth: dict, runs: list[Run], image_ids: list[int]) -> list[Analysed]:
    """Score each run over `image_ids` the ways the plots need."""
    analysed = []
    for run, slug in zip(runs, _slugs([run.label for run in runs])):
        log.info(f"plots: scoring {run.label} on {len(image_ids)} images")
        scored = evaluate(truth, run.detections, image_ids)
        analysed.append(Analysed(run.label, slug, scored, analyse_errors(truth, run.detections, image_ids, scored),
                                 match_images(truth, run.detections, image_ids)))
    return analysed


def write_report(dataset: dict, images_dir: Path | None, runs: list[Run], out_dir: Path, options: ReportOptions,
                 notes: Sequence[str] = ()) -> list[Path]:
    """Write the plots (and the gallery and report.html, as asked) into `out_dir`; the files written."""
    if not 1 <= len(runs) <= 2:
        raise FrcnnError(f"plots show one run or compare two; here are {len(runs)} "
                          f"({', '.join(run.label for run in runs)}): give one or two folders, one run each")
    truth = ground_truth(dataset)
    image_ids = common_images(runs)
    analysed = analyse(truth, runs, image_ids)
    sections = [pr_section(out_dir, analysed), size_section(out_dir, analysed),
                class_section(out_dir, truth, analysed, image_ids), errors_section(out_dir, analysed),
                confusion_section(out_dir, truth, analysed)]
    if options.gallery:
        sections.append(gallery_section(out_dir, truth, images_dir, analysed, options.gallery))
    written = [out_dir / f.source for s in sections for f in s.figures] + \
              [out_dir / target for s in sections for target, _ in s.links]
    if options.page:
        title = " against ".join(a.label for a in reversed(analysed))
        table = metrics_table({a.label: summary(a.scored) for a in analysed},
                              ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR100"])
        notes = [*notes, f"Scored here on the {len(image_ids)} images {'both runs' if len(runs) > 1 else 'it'} "
                         f"scored, in percent."]
        written.append(write_page(out_dir / PAGE, f"Evaluation: {title}", notes, table, sections))
    return written


def pr_section(out_dir: Path, analysed: list[Analysed]) -> Section:
    """Precision-recall curves at IoU 0.5 and 0.75."""
    curves = {a.label: {iou: pr_curve(a.scored, iou) for iou in (0.5, 0.75)} for a in analysed}
    plots.pr_curves(out_dir / "pr_curves.png", curves)
    return Section("Precision and recall", "Precision at each recall, averaged over the classes, at IoU 0.5 and "
                   "0.75; the area under a curve is AP50 or AP75. A curve higher and further right is better.",
                   [Figure("pr_curves.png", "precision-recall curves")])


def size_section(out_dir: Path, analysed: list[Analysed]) -> Section:
    """AP for small, medium and large objects."""
    plots.size_bars(out_dir / "ap_by_size.png", {a.label: ap_by_size(a.scored) for a in analysed})
    return Section("By object size", "AP (IoU 0.50:0.95) for small (under 32×32 pixels), medium and large objects.",
                   [Figure("ap_by_size.png", "AP by object size")])


def class_section(out_dir: Path, truth: dict, analysed: list[Analysed], image_ids: list[int]) -> Section:
    """AP per class, as a picture and a CSV, sorted by the difference between the runs."""
    wanted = set(image_ids)
    objects = Counter(a["category_id"] for a in truth["annotations"] if a["image_id"] in wanted and not a["iscrowd"])
    labels = [a.label for a in analysed]
    rows = class_rows([ap_per_class(a.scored) for a in analysed], truth["categories"], objects)
    plots.class_bars(out_dir / "ap_per_class.png", rows, labels)
    write_bytes_atomically(out_dir / "ap_per_class.csv", class_csv(rows, labels).encode("utf-8"))
    order = f"by {labels[-1]} - {labels[0]}, the largest gain first" if len(labels) > 1 else "by AP"
    return Section("Per class", f"AP (IoU 0.50:0.95) of each class, sorted {order}; classes without objects in "
                   "these images come last, without bars.", [Figure("ap_per_class.png", "AP per class")],
                   [("ap_per_class.csv", "ap_per_class.csv (the same figures, with object counts)")])


def errors_section(out_dir: Path, analysed: list[Analysed]) -> Section:
    """The COCO error analysis of each run, all objects and small ones."""
    figures = []
    for a in analysed:
        plots.error_areas(out_dir / f"errors_{a.slug}.png", a.errors, a.label)
        figures.append(Figure(f"errors_{a.slug}.png", f"error analysis of {a.label}"))
    write_bytes_atomically(out_dir / "error_analysis.csv", errors_csv({a.label: a.errors for a in analysed}).encode())
    text = ("Each band is the AP one kind of error costs (each curve's AP in percent in the legend), the curves from "
            "the bottom: C75 and C50 (the PR curve at "
            "IoU 0.75 and 0.5), Loc (IoU 0.1: boxes in roughly the right place forgiven), Sim (detections on an "
            "object of a similar class, same supercategory, forgiven), Oth (on an object of any other class), BG "
            "(every other false detection removed), FN (every missed object found). A wide Loc band: boxes badly "
            "placed; Sim/Oth: classes confused; BG: detections of nothing; FN: objects never found.")
    return Section("Error analysis", text, figures, [("error_analysis.csv", "error_analysis.csv (the bands' AP)")])


def confusion_section(out_dir: Path, truth: dict, analysed: list[Analysed]) -> Section:
    """The normalised confusion matrix of each run."""
    category_ids = [c["id"] for c in truth["categories"]]
    names = [c["name"] for c in truth["categories"]]
    figures = []
    for a in analysed:
        normalised = normalise_rows(confusion_counts(a.matches, category_ids))
        plots.confusion_image(out_dir / f"confusion_{a.slug}.png", normalised, names, a.label)
        figures.append(Figure(f"confusion_{a.slug}.png", f"confusion matrix of {a.label}"))
    text = (f"Detections scoring at least {DETECTED_SCORE:g} matched to objects at IoU {MATCH_IOU:g} (the same class "
            "first). Row: the true class, column: what it was detected as; the background column holds the objects "
            "missed, the background row the detections of nothing. Each row sums to 1.")
    return Section("Confusion between classes", text, figures)


def gallery_section(out_dir: Path, truth: dict, images_dir: Path | None, analysed: list[Analysed],
                    count: int) -> Section:
    """The pictures where the runs differ most (one run: where it does worst)."""
    heading = "Where the runs differ most" if len(analysed) > 1 else "Where it does worst"
    text = (f"Per picture, F1 of the detections scoring at least {DETECTED_SCORE:g} at IoU {MATCH_IOU:g}: "
            + ("the pictures where it changes most between the runs, either way." if len(analysed) > 1 else
               "the pictures with the lowest.") + " Ground truth on the left.")
    if images_dir is None:
        log.warning("warning: no images folder (give --images DIR): the gallery is left out")
        return Section(heading, "Left out: the images folder was not given.")
    scores = [{i: m.f1() for i, m in a.matches.items()} for a in analysed]
    picked = pick(scores, count)
    pictures = write_gallery(out_dir / "gallery", images_dir, {i["id"]: i for i in truth["images"]}, picked,
                             [a.matches for a in analysed], [a.label for a in analysed],
                             names_by_id(truth["categories"]))
    figures = [Figure(p.path.relative_to(out_dir).as_posix(), f"{p.file_name}: F1 " +
                      " → ".join(f"{a.label} {f1:.2f}" for a, f1 in zip(analysed, p.f1))) for p in pictures]
    return Section(heading, text if figures else text + " No picture differs.", figures)
