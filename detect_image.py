"""Detect objects in photos with Faster R-CNN v1, v2, or both side by side.

    python detect_image.py --input photo.jpg --model both
"""

from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

import detect_utils as du
import options
from drawing import render
from errors import DetectError
from specs import DrawOptions

# PyTorch, and what needs it, is imported once the options are known to be good: --help answers at once.

DEFAULT_INPUT = Path(__file__).resolve().parent / "input" / "coffee.jpg"

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects in photos with Faster R-CNN v1 / v2.")
    parser.add_argument("--input", nargs="+", default=[str(DEFAULT_INPUT)], metavar="PATH",
                        help="image files, folders (every image inside), glob patterns or http(s) URLs of pictures "
                             "(default: the sample photo)")
    options.add_common_options(parser, window_keys="any key: next picture; q or Esc: stop showing")
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


def expand_inputs(patterns: list[str]) -> tuple[list[str], list[str]]:
    """Sources to process, in order and without repeats, and one error line per input that names nothing."""
    sources: list[str] = []
    errors: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if pattern.lower().startswith(("http://", "https://")):
            found = [pattern]
        elif path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in du.IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{path}: no images in this folder")
        elif not path.exists() and glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern) if Path(p).is_file())
            if not found:
                errors.append(f"{pattern}: no file matches")
        elif not path.exists():
            errors.append(f"{path}: file not found")  # said before any model loads
            found = []
        else:
            found = [pattern]
        sources.extend(found)
    return list(dict.fromkeys(sources)), errors


def process_image(source: str, name: str, predictors: list, run: ImageRun):
    """Detect, draw and write one picture (and its JSON); return its predictions, the picture and where it went."""
    from predictor import predict_all

    picture_path = run.out_dir / f"{name}_{run.model_option}.jpg"
    json_path = picture_path.with_suffix(".json")
    du.check_not_an_input([picture_path, json_path], run.inputs)
    image = du.read_picture(source)
    height, width = image.shape[:2]
    (predictions,) = predict_all(predictors, [image])
    picture = render(image, predictions, run.draw)
    written = [picture_path, json_path] if run.json else [picture_path]
    # The set is written together: a record left from an earlier run would describe another picture.
    with du.AtomicOutputs(written, stale=[json_path]) as temporary:
        du.write_image(temporary[picture_path], picture)
        if run.json:
            du.write_json(temporary[json_path], {"file": source, "width": width, "height": height,
                                                 "results": [p.record() for p in predictions]})
    for prediction in predictions:
        if run.save_crops:
            du.write_crops(run.out_dir / "crops" / prediction.model, name, image, prediction.detections,
                           prediction.class_names)
        if run.save_txt:
            labels = run.out_dir / "labels" / prediction.model
            du.write_yolo_classes(labels, prediction.class_names)
            du.write_bytes_atomically(labels / f"{name}.txt",
                                      du.yolo_labels(prediction.detections, width, height).encode("utf-8"))
    return predictions, picture, picture_path


def result_line(source: str, predictions: list, picture_path: Path) -> str:
    summaries = [f"{p.model} {len(p.detections)} detections {p.milliseconds:.0f} ms" for p in predictions]
    return f"{source}: {', '.join(summaries)} -> {picture_path}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sources, errors = expand_inputs(args.input)
    local = [source for source in sources if not du.is_url(source)]
    specs = options.model_specs(args, parser, local if len(local) >= options.MIN_DEFAULT_CALIBRATION else ())
    detect = options.detect_options(args, parser)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not sources:
        return 1
    try:
        run = ImageRun(du.prepare_output_dir(args.output), args.model, args.json, options.draw_options(args),
                       tuple(sources), save_crops=args.save_crops, save_txt=args.save_txt)
        predictors = du.load_predictors(specs, detect)
    except DetectError as error:
        return du.fail(str(error))
    names = du.output_names(sources)
    failed, showing, described = len(errors), args.show, False
    with tqdm(sources, desc="images", unit="img", disable=len(sources) < 2, file=sys.stderr) as bar:
        for source in bar:
            try:
                predictions, picture, picture_path = process_image(source, names[source], predictors, run)
            except DetectError as error:
                tqdm.write(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            if not described and detect.slicing is not None:
                tqdm.write(du.describe_slicing(predictions[0].settings["slice"]), file=sys.stderr)
                described = True
            tqdm.write(result_line(source, predictions, picture_path), file=sys.stdout)
            if showing:  # q, Esc or a closed window: no more windows, the files are still written
                showing = du.show_window(picture_path.name, picture) == "shown"
    if failed:
        print(f"{failed} of {len(sources) + len(errors)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
