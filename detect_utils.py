"""What the scripts share besides options and inference: reading pictures, naming and writing outputs, the window."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence
from urllib.parse import unquote, urlparse

import cv2
import numpy as np

from errors import DetectError
from specs import DetectOptions, ModelSpec

# What OpenCV decodes as a still picture (folders are searched for these).
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif",
}
# Video files a folder is searched for (any file given by name is tried, whatever its suffix).
VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv",
    ".3gp", ".ogv",
}
URL_TIMEOUT_S = 20
URL_MAX_BYTES = 100 * 1024 * 1024


# ---------------------------------------------------------------- reading


def read_bytes(path: str | os.PathLike) -> bytes:
    """A local file's bytes, or DetectError naming what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise DetectError(f"{path}: file not found")
    if path.is_dir():
        raise DetectError(f"{path}: is a folder, not an image")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DetectError(f"{path}: cannot read ({error.strerror or error})") from error
    if not data:
        raise DetectError(f"{path}: file is empty")
    return data


def decode_picture(data: bytes, origin: str | os.PathLike, apply_orientation: bool = True) -> np.ndarray:
    """A picture file's bytes as 8-bit BGR, turned the way its EXIF orientation says (if asked)."""
    # IMREAD_COLOR gives 3-channel 8-bit from grayscale, 16-bit or alpha pictures and applies EXIF orientation.
    flags = cv2.IMREAD_COLOR if apply_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        if is_url(str(origin)):
            raise DetectError(f"{origin}: not a picture OpenCV can decode")
        raise DetectError(f"{origin}: not an image OpenCV can decode (corrupt, or not a picture)")
    return image


def read_image(path: str | os.PathLike, apply_orientation: bool = True) -> np.ndarray:
    """Read any picture OpenCV decodes as 8-bit BGR, turned the way its EXIF orientation says (if asked)."""
    return decode_picture(read_bytes(path), path, apply_orientation)


def is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https")


def fetch_url(url: str) -> bytes:
    """Fetch a picture's bytes over HTTP(S), with a time limit and a size limit."""
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            data = response.read(URL_MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise DetectError(f"{url}: the server answered {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DetectError(f"{url}: cannot fetch ({getattr(error, 'reason', None) or error})") from error
    if len(data) > URL_MAX_BYTES:
        raise DetectError(f"{url}: larger than {URL_MAX_BYTES // (1024 * 1024)} MB; download it first")
    if not data:
        raise DetectError(f"{url}: the server sent nothing")
    return data


def source_bytes(source: str | os.PathLike) -> bytes:
    """The bytes of a picture named by a local path or an http(s) URL."""
    return fetch_url(str(source)) if is_url(str(source)) else read_bytes(source)


def read_picture(source: str | os.PathLike) -> np.ndarray:
    """A picture from a local path or an http(s) URL."""
    return decode_picture(source_bytes(source), source)


def expand_inputs(patterns: Sequence[str], suffixes: set[str], kind: str = "images",
                  passthrough=is_url) -> tuple[list[str], list[str]]:
    """Sources to process, in order and without repeats, and one error line per input that names nothing.

    Folders give every file inside with one of `suffixes`; glob patterns the files they match; sources for
    which `passthrough` is true (URLs, cameras) are kept as they are.
    """
    sources: list[str] = []
    errors: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if passthrough(pattern):
            found = [pattern]
        elif path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                errors.append(f"{path}: no {kind} in this folder")
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


# ---------------------------------------------------------------- naming outputs


def _name_parts(source: str) -> tuple[str, str, list[str]]:
    """A source's stem, extension and folders (nearest first), from a path or a URL."""
    if is_url(source):
        parsed = urlparse(source)
        path = PurePosixPath(parsed.netloc) / PurePosixPath(unquote(parsed.path).lstrip("/") or "picture")
    else:
        path = Path(os.path.abspath(source))
    return path.stem or path.name, path.suffix.lstrip(".").lower(), [p.name for p in path.parents if p.name]


def output_names(sources: Sequence[str]) -> dict[str, str]:
    """A distinct base name for each source's outputs: its stem; where stems repeat, its extension is added,
    then its folders one by one (`dirA_x_jpg`, `dirB_x_jpg`); a number where even that is not enough."""
    parts = {source: _name_parts(source) for source in sources}

    def name_at(source: str, level: int) -> str:
        stem, suffix, folders = parts[source]
        name = stem if level == 0 or not suffix else f"{stem}_{suffix}"
        return "_".join([*reversed(folders[:max(0, level - 1)]), name])

    levels = dict.fromkeys(sources, 0)
    deepest = max((len(folders) + 1 for _, _, folders in parts.values()), default=0)
    for _ in range(deepest + 1):
        seen: dict[str, list[str]] = {}
        for source in sources:
            seen.setdefault(name_at(source, levels[source]), []).append(source)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            break
        for group in clashes:
            for source in group:
                levels[source] += 1
    names, taken = {}, set()
    for source in sources:
        name, number = name_at(source, levels[source]), 2
        while name in taken:  # folder names that join to the same text: number the later ones
            name, number = f"{name_at(source, levels[source])}_{number}", number + 1
        taken.add(name)
        names[source] = name
    return names


def check_not_an_input(outputs: Sequence[Path], inputs: Sequence[str]) -> None:
    """Refuse to write where an input of the run is: an input file is never overwritten."""
    for output in outputs:
        for source in inputs:
            if not is_url(source) and _same_file(output, Path(source)):
                raise DetectError(f"{source}: the output {output} would overwrite an input; choose another --output")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


# ---------------------------------------------------------------- writing


class AtomicOutputs:
    """Temporary paths beside the final ones; the finals are replaced only when the block succeeds.

    A hidden name in the same folder makes the final rename atomic; a block that raises leaves nothing.
    `stale` names files of an earlier run that would no longer match the new outputs: they are removed
    when the new ones land, so a picture and its record always come from the same run.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], stale: Sequence[str | os.PathLike] = ()):
        self._temporary = {
            Path(p): Path(p).with_name(f".{Path(p).stem}.{secrets.token_hex(4)}.part{Path(p).suffix}") for p in paths
        }
        self._stale = [Path(p) for p in stale if Path(p) not in self._temporary]

    def __enter__(self) -> dict[Path, Path]:
        return self._temporary

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                for final, temporary in self._temporary.items():
                    os.replace(temporary, final)
                for path in self._stale:
                    path.unlink(missing_ok=True)
        finally:
            for temporary in self._temporary.values():
                temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    with AtomicOutputs([path]) as temporary:
        yield temporary[Path(path)]


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DetectError(f"could not encode a {image.shape[1]}x{image.shape[0]} picture as JPEG")
    return encoded.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 92) -> None:
    """Encode as JPEG and write atomically."""
    write_bytes_atomically(path, encode_jpeg(image, quality))


def write_json(path: str | os.PathLike, record: dict) -> None:
    write_bytes_atomically(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


def write_crops(folder: Path, name: str, image: np.ndarray, detections, class_names: Sequence[str]) -> int:
    """Each detection cut out of the picture into `folder/<class>/<name>_<n>.jpg`, replacing the name's older crops."""
    from detections import class_name

    for old in folder.glob(f"*/{glob.escape(name)}_*.jpg"):
        if old.stem[len(name) + 1:].isdigit():
            old.unlink()
    height, width = image.shape[:2]
    written = 0
    for number, (box, label) in enumerate(zip(detections.boxes, detections.labels), start=1):
        x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
        x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
        if x2 <= x1 or y2 <= y1:
            continue
        class_folder = folder / class_name(class_names, label).replace("/", "_")
        class_folder.mkdir(parents=True, exist_ok=True)
        write_image(class_folder / f"{name}_{number}.jpg", image[y1:y2, x1:x2])
        written += 1
    return written


def yolo_labels(detections, width: int, height: int) -> str:
    """YOLO label lines: class index (the model's label id - 1), then centre x, centre y, width, height as fractions
    of the picture, then the score."""
    lines = []
    for (x1, y1, x2, y2), score, label in zip(detections.boxes, detections.scores, detections.labels):
        x1, x2 = np.clip([x1, x2], 0, width)
        y1, y2 = np.clip([y1, y2], 0, height)
        lines.append(f"{int(label) - 1} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {float(score):.4f}")
    return "".join(line + "\n" for line in lines)


def write_yolo_classes(folder: Path, class_names: Sequence[str]) -> None:
    """`classes.txt`: line i names class index i of the label files (placeholders kept so the indices match)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(folder / "classes.txt", "".join(f"{n}\n" for n in class_names[1:]).encode("utf-8"))


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create the output folder if needed; raise DetectError if that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DetectError(f"cannot create output folder {path}: {error.strerror or error}") from error
    if not os.access(path, os.W_OK):
        raise DetectError(f"output folder {path} is not writable")
    return path


# ---------------------------------------------------------------- showing


WINDOW = "Faster R-CNN"  # one window, reused for every picture and frame
WINDOW_MAX_SIZE = (1280, 800)  # fits an ordinary screen at first; the user can resize it


def _use_system_fonts_for_qt() -> None:
    """OpenCV's Qt build looks for fonts in a folder its wheel does not ship and prints warnings about it;
    point it at the system's fonts instead."""
    folder = os.environ.get("QT_QPA_FONTDIR")
    if not folder or Path(folder).is_dir():
        return
    for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts")):
        font = next(root.rglob("*.ttf"), None) if root.is_dir() else None
        if font is not None:
            os.environ["QT_QPA_FONTDIR"] = str(font.parent)
            return


def _open_window(width: int, height: int) -> None:
    if _window_visible():
        return
    _use_system_fonts_for_qt()
    cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
    scale = min(1.0, WINDOW_MAX_SIZE[0] / width, WINDOW_MAX_SIZE[1] / height)
    cv2.resizeWindow(WINDOW, max(1, round(width * scale)), max(1, round(height * scale)))


def show_window(title: str, image: np.ndarray, wait_ms: int = 0) -> str:
    """Show `image` (until a key is pressed, or for `wait_ms`). Returns "shown"; "quit" when the user pressed
    q or Esc; "closed" when they closed the window; "unavailable" when none can be opened (after saying so)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        reason = "no display"
    else:
        try:
            _open_window(image.shape[1], image.shape[0])
            cv2.setWindowTitle(WINDOW, title)
            cv2.imshow(WINDOW, image)
        except cv2.error:
            reason = "this OpenCV has no GUI support"
        else:
            key = cv2.waitKey(wait_ms) & 0xFF
            if key in (ord("q"), 27):
                return "quit"
            return "shown" if _window_visible() else "closed"
    print(f"warning: cannot open a window ({reason}); the results are in the output folder", file=sys.stderr)
    return "unavailable"


def _window_visible() -> bool:
    try:
        return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:  # Qt raises before its first window and after its last one is closed
        return False




# ---------------------------------------------------------------- loading and failing


def load_predictors(specs: Sequence[ModelSpec], options: DetectOptions) -> list:
    """Check what can be checked for every model, then load each and wrap it in the predictor the options ask for."""
    from model import load, prepare_specs  # PyTorch loads here, after the options are known to be good
    from predictor import make_predictor

    predictors = []
    for spec in prepare_specs(specs):
        print(f"Loading {spec.name} on {spec.device} ...", file=sys.stderr, flush=True)
        model = load(spec)
        print(f"Loaded {spec.name}: {model.weights_source}, run by {model.backend}", file=sys.stderr, flush=True)
        predictors.append(make_predictor(model, options))
    return predictors


def fail(message: str) -> int:
    """Print a user-facing error as one line on stderr; return exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def describe_slicing(settings: dict) -> str:
    """The line that tells, with the first picture, how it was sliced."""
    full = "plus one pass over the whole picture" if settings["full_pass"] else "without a whole-picture pass"
    return (f"sliced: {settings['tiles']} tile{'s' if settings['tiles'] != 1 else ''} of {settings['size']} px, "
            f"overlap {settings['overlap']:g}, {full}; merged by {settings['merge']} over {settings['match']} "
            f"> {settings['match_threshold']:g}")
