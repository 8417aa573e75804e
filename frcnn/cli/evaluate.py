"""Measure box mAP of Faster R-CNN v1 / v2 on COCO val2017 or any COCO-format set, with pycocotools.

    python evaluate.py --data coco/ --model both
    python evaluate.py --images my/images --annotations my/labels.json --model v2 --weights ft.pth --labels names.txt
    python evaluate.py --annotations my/labels.json --predictions results.json
    python evaluate.py --data my_set/data.yaml --split test --model v2 --weights best.pth --labels labels.txt
    python evaluate.py --data coco/ --model both --report        # and the plots, a gallery and report.html
    python evaluate.py --compare runs/fp32 runs/int8 --plots --output runs/fp32-vs-int8

Detections are appended to `<model>_results.json` as images finish, and each finished image is recorded in
`<model>_progress.jsonl`: run the same command again after an interruption and it carries on where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES, read_labels
from frcnn.core.errors import FrcnnError
from frcnn.core.files import read_bytes, write_bytes_atomically, write_json
from frcnn.core.progress import progress_bar
from frcnn.evaluation.coco import (
    CocoSet,
    category_map,
    check_pictures_present,
    load_set,
    read_predictions,
    score,
    to_coco_results,
)
from frcnn.evaluation.comparison import metrics_table, read_runs, settings_differences
from frcnn.evaluation.results_log import ResultsLog, check_resumable, results_text
from frcnn.pipelines.jobs import detect_for_scoring, pools_per_model
from frcnn.reporting.report import PAGE, ReportOptions, write_report
from frcnn.reporting.runs import (
    PREDICTIONS,
    Run,
    RunEntry,
    find_runs,
    load_run,
    read_set_record,
    recorded_set,
    set_record,
    write_set_record,
)
from frcnn.training.data import scoring_set, scoring_source
from frcnn.training.ultralytics_format import SPLITS

# ---------------------------------------------------------------- the data set


def locate(data_dir: str | None, images_dir: str | None, annotations_file: str | None) -> tuple[Path | None, Path]:
    """The images folder and annotation file from --data (val2017 layout) or --images / --annotations."""
    if data_dir:
        data = Path(data_dir)
        if not data.is_dir():
            raise FrcnnError(f"{data}: folder not found")
        images = Path(images_dir) if images_dir else data / "val2017"
        annotations = Path(annotations_file) if annotations_file else data / "annotations" / "instances_val2017.json"
    else:
        images = Path(images_dir) if images_dir else None
        annotations = Path(annotations_file)
    if images is not None and not images.is_dir():
        raise FrcnnError(f"{images}: images folder not found")
    if not annotations.is_file():
        raise FrcnnError(f"{annotations}: annotation file not found")
    return images, annotations


# ---------------------------------------------------------------- results that survive interruption


# ---------------------------------------------------------------- running and scoring


class NamedClasses(NamedTuple):
    """A model's name and class names, what matching the set's categories needs, known before it loads."""

    name: str
    class_names: list[str]


def expected_class_names(spec) -> list[str]:
    """The class names a model will have: its labels file's, else COCO's (a checkpoint of other classes without
    --labels is refused when it loads)."""
    return read_labels(spec.labels) if spec.labels else list(COCO_INSTANCE_CATEGORY_NAMES)


def run_model(pool, data: CocoSet, image_ids: list[int], out_dir: Path) -> ResultsLog:
    """Detect with the pool's one model on every image not done yet, appending to its results as they come back
    (in any order); returns the log."""
    (model,) = pool.models
    categories = category_map(model, data.coco)
    log = ResultsLog(out_dir, model.name, model.settings.to_json())
    log.resume()
    todo = [i for i in image_ids if i not in log.done]
    if len(todo) < len(image_ids):
        print(f"{model.name}: resuming, {len(image_ids) - len(todo)} of {len(image_ids)} images already done",
              file=sys.stderr)

    def prepare(image_id: int) -> tuple:
        path = data.images_dir / data.coco.imgs[image_id]["file_name"]
        return read_bytes(path), str(path)

    outcomes = pool.imap(detect_for_scoring, todo, prepare,
                         resume="the same command again scores the rest, keeping what was scored")
    for image_id, _, outcome in progress_bar(outcomes, total=len(todo), desc=model.name, unit="img",
                                             dynamic_ncols=True, disable=not todo):
        if isinstance(outcome, FrcnnError):
            tqdm.write(f"warning: {outcome} (listed in the set; counted as missing)", file=sys.stderr)
            log.add(image_id, [], None)
        else:
            log.add(image_id, to_coco_results(outcome.detections, image_id, categories), outcome.milliseconds)
    return log


def model_metrics(data: CocoSet, log: ResultsLog, image_ids: list[int], out_dir: Path) -> dict:
    """A model's metrics over the images it scored (missing ones left out, and said), written beside its results."""
    timed = [e["ms"] for e in log.done.values() if e["ms"] is not None]
    missing = len(log.done) - len(timed)
    scored = [i for i in image_ids if log.done[i]["ms"] is not None]
    metrics = {**score(data.coco, log.detections, scored), "images": len(scored), "images_missing": missing,
               "ms_per_image": float(np.mean(timed)) if timed else None}
    write_json(out_dir / f"{log.name}_metrics.json", metrics)
    if missing:
        print(f"warning: {missing} listed image(s) were missing or unreadable and were not scored", file=sys.stderr)
    return metrics


# ---------------------------------------------------------------- comparing runs


def compare(folders: list[str], plots: PlotRequest | None = None) -> int:
    """Print the metrics of earlier runs side by side, with what differs between them (and plot them if asked)."""
    metrics, settings = read_runs(folders)
    images = {label: m.get("images") for label, m in metrics.items()}
    print(metrics_table(metrics, ""))
    differences = settings_differences(settings)
    if differences:
        print("settings that differ:\n" + "\n".join(differences))
    if len(set(images.values())) > 1:
        print(f"warning: the runs scored different numbers of images ({images}): the figures are not comparable",
              file=sys.stderr)
    if plots is not None:
        plot_folders(folders, plots)
    return 0


# ---------------------------------------------------------------- plots and the report


@dataclass(frozen=True)
class PlotRequest:
    """What --plots / --report ask for: where they go, the set given (else the one the results folders recorded),
    and the report's options."""

    output: str
    data: str | None
    images: str | None
    annotations: str | None
    options: ReportOptions


def plot_folders(folders: list[str], request: PlotRequest) -> None:
    """Plot the runs earlier evaluations left in `folders` (one or two runs in all)."""
    entries = find_runs(folders)
    if len(entries) > 2:
        raise FrcnnError(f"--plots shows one run or compares two, and {' and '.join(folders)} hold {len(entries)} "
                          f"({', '.join(e.label for e in entries)}): give folders with one run each")
    data = set_for_plots(folders, request)
    runs = [load_run(entry, data.coco) for entry in entries]
    write_plots(data, runs, du.prepare_output_dir(request.output), request.options)


def set_for_plots(folders: list[str], request: PlotRequest) -> CocoSet:
    """The set to score the runs on: the one given (--data or --annotations), else the one their folders recorded."""
    if request.data or request.annotations:
        images, annotations = locate(request.data, request.images, request.annotations)
        given = set_record(annotations, images)["sha256"]
        for folder in folders:
            record = read_set_record(folder)
            if record is not None and record.get("sha256") != given:
                print(f"warning: {folder} holds results made on {record.get('annotations')}; they are scored here "
                      f"against {annotations}", file=sys.stderr)
        return load_set(images, annotations)
    return _recorded(folders, Path(request.images) if request.images else None)


def _recorded(folders: list[str], images: Path | None) -> CocoSet:
    """The set the folders recorded (`images`, if given, for its pictures)."""
    record = recorded_set(folders)
    if record is None:
        raise FrcnnError(f"{', '.join(folders)}: no record of the set these results are of; give --annotations FILE "
                          f"(and --images DIR for the gallery)")
    annotations = Path(record["annotations"])
    if not annotations.is_file():
        raise FrcnnError(f"{annotations}: the annotation file these results were scored on is gone; give "
                          f"--annotations FILE")
    if set_record(annotations, None)["sha256"] != record.get("sha256"):
        print(f"warning: {annotations} has changed since the results were scored", file=sys.stderr)
    if images is not None and not images.is_dir():
        raise FrcnnError(f"{images}: images folder not found")
    images = images or (Path(record["images"]) if record.get("images") else None)
    if images is not None and not images.is_dir():
        print(f"warning: {images}: the images folder is gone, the gallery is left out (give --images DIR)",
              file=sys.stderr)
        images = None
    return load_set(images, annotations)


def write_plots(data: CocoSet, runs: list[Run], out_dir: Path, options: ReportOptions) -> None:
    """The plots (and report.html) of one or two runs read back, with what the page says about them."""
    notes = [f"Set: {data.annotations} ({len(data.coco.getImgIds())} images listed)."]
    differences = settings_differences({run.label: run.settings for run in runs})
    if differences:
        notes.append("Settings that differ: " + "; ".join(line.strip() for line in differences) + ".")
    timed = [f"{run.label} {run.metrics['ms_per_image']:.0f} ms" for run in runs if run.metrics.get("ms_per_image")]
    if timed:
        notes.append("Time per image: " + ", ".join(timed) + ".")
    write_report(data.coco.dataset, data.images_dir, runs, out_dir, options, notes)
    print(f"plots{' and ' + PAGE if options.page else ''} in {out_dir}", file=sys.stderr)


def plot_this_run(data: CocoSet, out_dir: Path, models: list[str], options: ReportOptions) -> None:
    """Plot the runs this command just scored, read back from `out_dir`."""
    runs = [load_run(RunEntry(model, out_dir, model), data.coco) for model in models]
    write_plots(data, runs, out_dir, options)


def score_predictions(data: CocoSet, source: str, image_ids: list[int], out_dir: Path, note: str) -> str:
    """Score a COCO results file over `image_ids`; its metrics, a copy of it and its set are kept in `out_dir`."""
    detections = read_predictions(Path(source), data.coco)
    metrics = {**score(data.coco, detections, image_ids), "images": len(image_ids)}
    write_json(out_dir / "metrics.json", metrics)
    keep_predictions(out_dir, source, detections)
    write_set_record(out_dir, set_record(data.annotations, data.images_dir))
    print(metrics_table({PREDICTIONS: metrics}, note))
    return PREDICTIONS


def keep_predictions(out_dir: Path, source: str, detections: list[dict]) -> None:
    """Keep a copy of a scored results file beside its metrics, so the folder can be plotted or compared later."""
    target = out_dir / f"{PREDICTIONS}_results.json"
    if Path(source).resolve() != target.resolve():  # never overwrite the input itself
        write_bytes_atomically(target, results_text(detections).encode())
    write_json(out_dir / f"{PREDICTIONS}_settings.json", {"predictions": str(Path(source).resolve())})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Box mAP of Faster R-CNN v1 / v2 on a COCO-format set.")
    parser.add_argument("--data", metavar="PATH",
                        help="a COCO folder with val2017/ and annotations/instances_val2017.json; or a set as "
                             "train.py --data takes them: an Ultralytics / Roboflow data.yaml (or a folder holding "
                             "one), a Pascal VOC tree, or a YOLO-format folder")
    parser.add_argument("--split", choices=SPLITS,
                        help="which split of a data.yaml or VOC tree to score (default val); a YOLO folder is scored "
                             "whole")
    parser.add_argument("--images", metavar="DIR", help="the images folder of another COCO-format set")
    parser.add_argument("--annotations", metavar="FILE", help="its COCO annotation file")
    parser.add_argument("--predictions", metavar="FILE", help="score this COCO results file instead of running a model")
    parser.add_argument("--compare", nargs="+", metavar="DIR",
                        help="print the metrics of earlier runs' --output folders side by side (no model is run): "
                             "fp32 against int8, with and without --slice, v1 against a fine-tuned v2 ...")
    parser.add_argument("--plots", action="store_true",
                        help="also draw where the runs differ: precision-recall curves, AP per class and per object "
                             "size, the COCO error analysis, a confusion matrix and a gallery (PNG, CSV, JPEG in "
                             "--output); with --compare, of those folders' runs; alone, of the runs --output holds")
    parser.add_argument("--report", action="store_true", help="--plots, and report.html showing them all on one page")
    parser.add_argument("--gallery", type=options.non_negative_int, metavar="N",
                        help="with --plots: the N pictures where the runs differ most (default 8; 0: none)")
    parser.add_argument("--max-images", type=options.positive_int, metavar="N",
                        help="evaluate only the first N images by id (the same ones every run)")
    parser.add_argument("--output", default=os.path.join("outputs", "eval"), metavar="DIR",
                        help="where results and metrics go (default outputs/eval/); the same folder resumes")
    options.add_model_options(parser, both_means="both, one after the other, compared in one table")
    options.add_detect_options(parser, threshold=0.0, classes=False, threshold_help=(
        "lowest score kept (default 0: all the model gives, above torchvision's 0.05 floor)"))
    options.add_ray_options(parser)
    return parser


def plot_request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> PlotRequest | None:
    """What --plots / --report / --gallery ask for (None: no plots)."""
    if not (args.plots or args.report):
        if args.gallery is not None:
            parser.error("--gallery goes with --plots or --report")
        return None
    options = ReportOptions(gallery=8 if args.gallery is None else args.gallery, page=args.report)
    return PlotRequest(args.output, args.data, args.images, args.annotations, options)


@dataclass(frozen=True)
class Evaluation:
    """What one evaluate.py run scores, decided once from the options: the set, the models (or a results file),
    how to run them, and where the results go."""

    data: str | None
    images: str | None
    annotations: str | None
    output: str
    max_images: int | None
    predictions: str | None
    specs: list
    detect: object
    ray: object
    plots: PlotRequest | None
    split: str = "val"  # of a data.yaml or VOC tree


def folders_to_compare(args: argparse.Namespace, request: PlotRequest | None,
                       parser: argparse.ArgumentParser) -> list[str] | None:
    """The results folders a run only reads back (--compare, or --plots alone on --output); None: it scores a set."""
    if args.compare:
        if request and len(args.compare) > 2:
            parser.error("--plots and --report compare at most two folders")
        return args.compare
    if request and not (args.data or args.images or args.predictions):
        return [args.output]
    return None


def evaluation_of(args: argparse.Namespace, request: PlotRequest | None,
                  parser: argparse.ArgumentParser) -> Evaluation:
    """The set and the models the options name, checked before anything is read or loaded."""
    if not args.data and not args.annotations:
        parser.error("give --data DIR, or --annotations FILE (with --images DIR unless --predictions is given)")
    if not args.data and not args.images and not args.predictions:
        parser.error("--images DIR is needed to run a model on the set")
    if args.split and not args.data:
        parser.error("--split picks a split of the set --data names (a data.yaml or a VOC tree)")
    coco_pictures = os.path.join(args.data, "val2017") if args.data else None  # int8 calibrates on them
    images = args.images or (coco_pictures if coco_pictures and os.path.isdir(coco_pictures) else None)
    return Evaluation(args.data, args.images, args.annotations, args.output, args.max_images, args.predictions,
                      specs=options.model_specs(args, parser, [images] if images else []),
                      detect=options.detect_options(args, parser), ray=options.ray_options(args, parser),
                      plots=request, split=args.split or "val")


def evaluate(job: Evaluation) -> int:
    """Score the models (or the results file) on the set, print the table, then plot if asked."""
    out_dir = du.prepare_output_dir(job.output)
    data = open_set(job, out_dir)
    image_ids = data.image_ids(job.max_images)
    listed = len(data.coco.getImgIds())
    note = f"; here {len(image_ids)} of {listed} images" if len(image_ids) < listed else ""
    if job.predictions:
        scored = [score_predictions(data, job.predictions, image_ids, out_dir, note)]
    else:
        scored = score_models(job, data, image_ids, out_dir, note)
    if job.plots:
        plot_this_run(data, out_dir, scored, job.plots.options)
    return 0


def open_set(job: Evaluation, out_dir: Path) -> CocoSet:
    """The set to score: a split of a data.yaml, VOC tree or YOLO folder (what was found said on stderr, the set
    kept in `out_dir`), else a COCO-format set."""
    source = scoring_source(job.data, job.split) if job.data else None
    if source is None:
        data = load_set(*locate(job.data, job.images, job.annotations))
        print(check_pictures_present(data, data.image_ids(job.max_images)), file=sys.stderr)
        return data
    data, lines = scoring_set(source, job.split, out_dir)
    for line in lines:
        print(line, file=sys.stderr)
    return data


def score_models(job: Evaluation, data: CocoSet, image_ids: list[int], out_dir: Path, note: str) -> list[str]:
    """Run and score each model in turn; the names of the runs scored."""
    for spec in job.specs:  # before any model loads or exports: the names and the settings alone tell
        category_map(NamedClasses(spec.name, expected_class_names(spec)), data.coco)
        check_resumable(out_dir, spec.name, {"imgsz": spec.imgsz, "precision": spec.precision,
                                             "proposals": spec.proposals, "threshold": job.detect.threshold})
    rows = {}
    with contextlib.ExitStack() as stack:
        for pool in pools_per_model(stack, job.ray, [[spec] for spec in job.specs], job.detect, len(image_ids)):
            log = run_model(pool, data, image_ids, out_dir)
            rows[log.name] = model_metrics(data, log, image_ids, out_dir)
    write_set_record(out_dir, set_record(data.annotations, data.images_dir))  # beside the metrics: what they scored
    # torchvision's figures describe its COCO weights on COCO, nothing else
    published = (job.data is not None and scoring_source(job.data, job.split) is None
                 and all(spec.weights is None for spec in job.specs))
    print(metrics_table(rows, note, published=published))
    print(f"results and metrics in {out_dir}", file=sys.stderr)
    return list(rows)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    request = plot_request(args, parser)
    folders = folders_to_compare(args, request, parser)
    if folders is not None:
        return du.run_main(lambda: compare(folders, request), "\ninterrupted")
    job = evaluation_of(args, request, parser)
    return du.run_main(lambda: evaluate(job), "\ninterrupted: finished images are kept; run the same command "
                                              "again to resume")


if __name__ == "__main__":
    sys.exit(main())
