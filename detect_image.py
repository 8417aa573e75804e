"""Detect objects in photos with Faster R-CNN v1, v2, or both side by side.

    python detect_image.py --input photo.jpg --model both
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from tqdm import tqdm

import detect_utils as du
from model import DetectError, LoadedModel

DEFAULT_INPUT = Path(__file__).resolve().parent / "input" / "coffee.jpg"
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects in photos with Faster R-CNN v1 / v2.")
    parser.add_argument("--input", nargs="+", default=[str(DEFAULT_INPUT)], metavar="PATH",
                        help="image files, folders (every image inside) or glob patterns (default: the sample photo)")
    du.add_common_options(parser, window_keys="any key: next picture; q or Esc: stop showing")
    return parser


def expand_inputs(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Files to process, in order and without repeats, and one error line per input that names nothing."""
    files: list[Path] = []
    errors: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                errors.append(f"{path}: no images in this folder")
        elif not path.exists() and glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not found:
                errors.append(f"{pattern}: no file matches")
        else:
            found = [path]  # a missing file is reported when it is read, in its turn
        files.extend(found)
    unique = list(dict.fromkeys(files))
    return unique, errors


def output_stems(files: list[Path], out_dir: Path) -> dict[Path, Path]:
    """`out_dir/<stem>` for each input, to which `_<model>.jpg` is added; inputs sharing a stem keep their extension."""
    stems: dict[str, int] = {}
    for path in files:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    planned = {}
    for path in files:
        stem = path.stem if stems[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        planned[path] = out_dir / stem
    return planned


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def process_image(path: Path, out_stem: Path, models: list[LoadedModel], args, classes: set[int] | None,
                  inputs: list[Path]) -> str:
    """Detect, draw and write one picture (and its JSON); return its result line."""
    out_path = out_stem.with_name(f"{out_stem.name}_{args.model}.jpg")
    if any(_same_file(out_path, other) for other in inputs):
        raise DetectError(f"{path}: the output {out_path} would overwrite an input; choose another --output")
    image = du.read_image(path)
    height, width = image.shape[:2]
    (results,) = du.detect(models, [image], args.threshold, classes)
    if args.json:
        for result in results:
            du.write_json(out_stem.with_name(f"{out_stem.name}_{result.model.name}.json"),
                          result.record(width, height, file=str(path)))
    picture = du.render(image, results)
    du.write_image(out_path, picture)
    if args.show and du.show_window(out_path.name, picture) != "shown":
        args.show = False  # q / Esc: no more windows, the files are still written
    summaries = [f"{r.model.name} {len(r.detections)} detections {r.milliseconds:.0f} ms" for r in results]
    return f"{path}: {', '.join(summaries)} -> {out_path}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    classes = du.check_common_options(args, parser)
    files, errors = expand_inputs(args.input)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not files:
        return 1
    try:
        out_dir = du.prepare_output_dir(args.output)
        models = du.load_models(args)
    except DetectError as error:
        return du.fail(str(error))
    planned = output_stems(files, out_dir)
    failed = len(errors)
    with tqdm(files, desc="images", unit="img", disable=len(files) < 2, file=sys.stderr) as bar:
        for path in bar:
            try:
                tqdm.write(process_image(path, planned[path], models, args, classes, files), file=sys.stdout)
            except DetectError as error:
                tqdm.write(f"error: {error}", file=sys.stderr)
                failed += 1
    if failed:
        print(f"{failed} of {len(files) + len(errors)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
