"""Detect objects in photos with Faster R-CNN v1, v2, or both side by side.

    python detect_image.py --input photo.jpg --model both
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core.errors import FrcnnError
from frcnn.core.files import (
    IMAGE_SUFFIXES,
    AtomicOutputs,
    check_replaceable,
    decode_picture,
    is_url,
    old_crops,
    source_bytes,
    write_bytes_atomically,
    write_json,
    written_here,
)
from frcnn.core.progress import progress_bar
from frcnn.core.specs import DrawOptions
from frcnn.pipelines import labelstudio_tasks
from frcnn.pipelines import yolo_dataset as yolo
from frcnn.pipelines.jobs import PictureResult, detect_picture, open_pool, picture_record
from frcnn.pipelines.resume import ResumeBook, models_settings, pending, skipped_line
from frcnn.samples import SAMPLE_PHOTO
from frcnn.video.window import show_window

# PyTorch, and what needs it, is imported once the options are known to be good: --help answers at once.

DEFAULT_INPUT = SAMPLE_PHOTO


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects in photos with Faster R-CNN v1 / v2.")
    parser.add_argument("--input", nargs="+", default=[str(DEFAULT_INPUT)], metavar="PATH",
                        help="image files, folders (every image inside), glob patterns or http(s) URLs of pictures "
                             "(default: the sample photo)")
    options.add_common_options(parser, window_keys="any key: next picture; q or Esc: stop showing")
    options.add_ray_options(parser)
    parser.add_argument("--save-crops", action="store_true",
                        help="also cut each detection out into crops/<model>/<class>/<name>_<n>.jpg")
    parser.add_argument("--save-txt", action="store_true",
                        help="also write a YOLO dataset: label files labels/<model>/<name>.txt (the model's classes "
                             "numbered from 0: COCO's 80 as 0-79 with the COCO weights), the pictures in "
                             "images/<model>/, and labels/<model>/data.yaml")
    parser.add_argument("--save-labelstudio", nargs="?", const="", default=None, metavar="ROOT",
                        help="also write labelstudio_<model>.json: a Label Studio task per picture with each model's "
                             "boxes as predictions, to import and correct (implies --json); with ROOT, Label "
                             "Studio's LOCAL_FILES_DOCUMENT_ROOT, local pictures are named as its local-files "
                             "storage serves them")
    parser.add_argument("--resume", action="store_true",
                        help="skip each input whose outputs an earlier run with the same settings wrote completely "
                             "(an interrupted run carries on)")
    return parser


@dataclass(frozen=True)
class ImageRun:
    """What a run writes, and where: the plain values main makes of the output options."""

    out_dir: Path
    model_option: str  # "v1", "v2" or "both": the suffix of the picture's name
    json: bool
    draw: DrawOptions
    inputs: tuple[str, ...]  # every input of the run, none of which may be overwritten
    save_crops: bool = False
    save_txt: bool = False
    resume: bool = False  # skip the inputs whose outputs are sealed with these settings

    def settings(self) -> dict:
        """What of the run changes its files (a resumed run's seals must name the same)."""
        return {"model": self.model_option, "json": self.json, "draw": self.draw, "crops": self.save_crops,
                "txt": self.save_txt}


def output_paths(name: str, run: ImageRun) -> tuple[Path, Path]:
    """Where an input's picture and its JSON record go."""
    picture_path = run.out_dir / f"{name}_{run.model_option}.jpg"
    return picture_path, picture_path.with_suffix(".json")


def check_outputs(source: str, name: str, data: bytes, run: ImageRun, models: list[str]) -> None:
    """Before any work on an input: its outputs overwrite no input and no file this project did not write."""
    labels = [yolo.label_path(run.out_dir, model, name) for model in models]
    copies = [yolo.image_path(run.out_dir, model, name, source) for model in models] if run.save_txt else []
    du.check_not_an_input([*output_paths(name, run), *labels, *copies], run.inputs, source)
    check_replaceable([*output_paths(name, run), *labels])
    for copy, label in zip(copies, labels):
        if not yolo.copy_replaceable(copy, label, data):
            raise FrcnnError(f"{copy} exists and was not written by this project: it is left as it is; move it, "
                              f"or choose another --output")


def write_outputs(source: str, name: str, data: bytes, result: PictureResult, run: ImageRun,
                  book: ResumeBook) -> Path:
    """Write one picture's outputs (the drawn picture, its JSON, crops, label files), then their seal; return the
    picture's path."""
    picture_path, json_path = output_paths(name, run)
    book.unseal(picture_path)
    written = [picture_path, json_path] if run.json else [picture_path]
    # The set is written together: a record left from an earlier run would describe another picture.
    with AtomicOutputs(written, stale=[json_path]) as temporary:
        temporary[picture_path].write_bytes(result.jpeg)
        if run.json:
            write_json(temporary[json_path], picture_record(source, result.width, result.height, result.predictions))
    image = decode_picture(data, source) if run.save_crops else None
    for prediction in result.predictions:
        written += write_extras(source, name, data, image, prediction, result, run)
    book.seal(picture_path, source, written)
    return picture_path


def write_extras(source: str, name: str, data: bytes, image, prediction, result: PictureResult,
                 run: ImageRun) -> list[Path]:
    """One model's crops and YOLO label file with the picture's copy (or the removal of an earlier run's); return
    the files written."""
    written = []
    crops = run.out_dir / "crops" / prediction.model
    if run.save_crops:
        written += du.write_crops(crops, name, image, prediction.detections, prediction.class_names)
    else:  # crops of an earlier run would describe other detections
        du.remove_stale(old_crops(crops, name))
    labels = yolo.label_path(run.out_dir, prediction.model, name)
    copy = yolo.image_path(run.out_dir, prediction.model, name, source)
    if run.save_txt:
        yolo.write_description(run.out_dir, prediction.model, prediction.class_names)
        write_bytes_atomically(labels, yolo.yolo_labels(prediction.detections, result.width, result.height,
                                                        prediction.class_names).encode("utf-8"))
        yolo.write_copy(copy, data)
        written += [labels, copy]
    elif labels.exists() and written_here(labels):  # an earlier run's labels, and the copy that went with them
        du.remove_stale([labels])
        for old in yolo.old_images(run.out_dir, prediction.model, name):
            old.unlink()
    return written


def result_line(source: str, predictions: list, picture_path: Path) -> str:
    """What a processed picture gives, on stdout."""
    summaries = [f"{p.model} {len(p.detections)} detections {p.milliseconds:.0f} ms" for p in predictions]
    return f"{source}: {', '.join(summaries)} -> {picture_path}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sources, errors = du.expand_inputs(args.input, IMAGE_SUFFIXES, "images")
    local = [source for source in sources if not is_url(source)]
    specs = options.model_specs(args, parser, local if len(local) >= options.MIN_DEFAULT_CALIBRATION else ())
    detect = options.detect_options(args, parser)
    ray = options.ray_options(args, parser)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not sources:
        return 1

    labelstudio = args.save_labelstudio is not None
    if labelstudio and args.save_labelstudio and not Path(args.save_labelstudio).is_dir():
        parser.error(f"--save-labelstudio {args.save_labelstudio}: no such folder (Label Studio's document root)")

    def body(stopper: du.StopOnSignal) -> int:
        run = ImageRun(du.prepare_output_dir(args.output), args.model, args.json or labelstudio,
                       options.draw_options(args),
                       tuple(sources), save_crops=args.save_crops, save_txt=args.save_txt, resume=args.resume)
        with contextlib.ExitStack() as stack:
            pool = open_pool(stack, ray, specs, detect, len(sources))
            book = ResumeBook(run.out_dir, {**models_settings(pool.models, specs), "classes": detect.classes,
                                            "outputs": run.settings()})
            failed = process_all(pool, sources, run, book, stopper, args.show) + len(errors)
        if labelstudio:
            write_labelstudio_tasks(run, sources, args.save_labelstudio or None)
        if failed:
            print(f"{failed} of {len(sources) + len(errors)} inputs failed", file=sys.stderr)
        return 1 if failed else 0

    return du.run_stoppable(body, "interrupted: the pictures written so far are kept; the same command with "
                                  "--resume carries on", in_flight="the pictures in progress")


def write_labelstudio_tasks(run: ImageRun, sources: list[str], root: str | None) -> Path:
    """Label Studio's task file of every picture whose record is written (this run's or a resumed run's)."""
    names = du.output_names(sources)
    tasks = []
    for source in sources:
        record_path = output_paths(names[source], run)[1]
        if record_path.is_file():
            tasks.append(labelstudio_tasks.task(json.loads(record_path.read_text(encoding="utf-8")), source, root))
    path = run.out_dir / f"labelstudio_{run.model_option}.json"
    labelstudio_tasks.write_tasks(path, tasks)
    print(f"{len(tasks)} Label Studio tasks -> {path}", file=sys.stderr)
    return path


def process_all(pool, sources: list[str], run: ImageRun, book: ResumeBook, stopper: du.StopOnSignal,
                show: bool = False) -> int:
    """Detect, draw and write every picture not done yet, here or on the workers; return how many failed."""
    names = du.output_names(sources)
    todo, skipped = pending(book, sources, lambda source: output_paths(names[source], run)[0], run.resume)
    if run.resume:
        print(skipped_line(skipped, len(sources)), file=sys.stderr, flush=True)

    def prepare(source: str) -> tuple:
        data = source_bytes(source)
        check_outputs(source, names[source], data, run, [model.name for model in pool.models])
        return data, source, run.draw

    failed, showing, described = 0, show, pool.models[0].settings.slice is None
    stopper.graceful = True
    with progress_bar(total=len(todo), desc="images", unit="img", disable=len(todo) < 2) as bar:
        for source, arguments, outcome in pool.imap(detect_picture, todo, prepare, stopper.event, du.RESUME_HINT):
            bar.update(1)
            try:
                if isinstance(outcome, FrcnnError):
                    raise outcome
                picture_path = write_outputs(source, names[source], arguments[0], outcome, run, book)
            except FrcnnError as error:
                tqdm.write(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            if not described:
                tqdm.write(outcome.predictions[0].settings.slice.describe(), file=sys.stderr)
                described = True
            tqdm.write(result_line(source, outcome.predictions, picture_path), file=sys.stdout)
            if showing:  # q, Esc or a closed window: no more windows, the files are still written
                picture = decode_picture(outcome.jpeg, picture_path)
                showing = show_window(picture_path.name, picture) == "shown"
    return failed


if __name__ == "__main__":
    sys.exit(main())
