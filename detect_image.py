"""Detect objects in photos with Faster R-CNN v1, v2, or both side by side.

    python detect_image.py --input photo.jpg --model both
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

import detect_utils as du
from frcnn.cli import options
from frcnn.core.errors import DetectError
from frcnn.pipelines.jobs import PictureResult, detect_picture, open_pool
from frcnn.core.specs import DrawOptions
from frcnn.core.files import (IMAGE_SUFFIXES, AtomicOutputs, check_replaceable, decode_picture, is_url, source_bytes,
                              write_bytes_atomically, write_json)
from frcnn.video.window import show_window

# PyTorch, and what needs it, is imported once the options are known to be good: --help answers at once.

DEFAULT_INPUT = Path(__file__).resolve().parent / "input" / "coffee.jpg"

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
                        help="also write YOLO label files, labels/<model>/<name>.txt, with labels/<model>/classes.txt")
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


def output_paths(name: str, run: ImageRun) -> tuple[Path, Path]:
    """Where an input's picture and its JSON record go."""
    picture_path = run.out_dir / f"{name}_{run.model_option}.jpg"
    return picture_path, picture_path.with_suffix(".json")


def label_path(name: str, model: str, run: ImageRun) -> Path:
    return run.out_dir / "labels" / model / f"{name}.txt"


def check_outputs(source: str, name: str, run: ImageRun, models: list[str]) -> None:
    """Before any work on an input: its outputs overwrite no input and no file this project did not write."""
    outputs = [*output_paths(name, run), *(label_path(name, model, run) for model in models)]
    du.check_not_an_input(outputs, run.inputs, source)
    check_replaceable(outputs)


def write_outputs(source: str, name: str, data: bytes, result: PictureResult, run: ImageRun) -> Path:
    """Write one picture's outputs (the drawn picture, its JSON, crops, label files); return the picture's path."""
    picture_path, json_path = output_paths(name, run)
    written = [picture_path, json_path] if run.json else [picture_path]
    # The set is written together: a record left from an earlier run would describe another picture.
    with AtomicOutputs(written, stale=[json_path]) as temporary:
        temporary[picture_path].write_bytes(result.jpeg)
        if run.json:
            write_json(temporary[json_path], {"file": source, "width": result.width, "height": result.height,
                                                 "results": [p.record() for p in result.predictions]})
    image = decode_picture(data, source) if run.save_crops else None
    for prediction in result.predictions:
        crops = run.out_dir / "crops" / prediction.model
        if run.save_crops:
            du.write_crops(crops, name, image, prediction.detections, prediction.class_names)
        else:  # crops of an earlier run would describe other detections
            du.remove_stale(du.old_crops(crops, name))
        labels = label_path(name, prediction.model, run)
        if run.save_txt:
            du.write_yolo_classes(labels.parent, prediction.class_names)
            write_bytes_atomically(labels, du.yolo_labels(prediction.detections, result.width,
                                                          result.height).encode("utf-8"))
        else:
            du.remove_stale([labels])
    return picture_path


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

    def body() -> int:
        run = ImageRun(du.prepare_output_dir(args.output), args.model, args.json, options.draw_options(args),
                       tuple(sources), save_crops=args.save_crops, save_txt=args.save_txt)
        with contextlib.ExitStack() as stack:
            pool = open_pool(stack, ray, specs, detect, len(sources))
            failed = process_all(pool, sources, run, args.show, detect.slicing is not None) + len(errors)
        if failed:
            print(f"{failed} of {len(sources) + len(errors)} inputs failed", file=sys.stderr)
        return 1 if failed else 0

    return du.run_main(body, "interrupted: the pictures written so far are kept")


def process_all(pool, sources: list[str], run: ImageRun, show: bool, sliced: bool) -> int:
    """Detect, draw and write every picture, here or on the workers; return how many failed."""
    names = du.output_names(sources)

    def prepare(source: str) -> tuple:
        check_outputs(source, names[source], run, [model.name for model in pool.models])
        return source_bytes(source), source, run.draw

    failed, showing, described = 0, show, not sliced
    with tqdm(total=len(sources), desc="images", unit="img", disable=len(sources) < 2, file=sys.stderr) as bar:
        for source, arguments, outcome in pool.imap(detect_picture, sources, prepare):
            bar.update(1)
            try:
                if isinstance(outcome, DetectError):
                    raise outcome
                picture_path = write_outputs(source, names[source], arguments[0], outcome, run)
            except DetectError as error:
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
