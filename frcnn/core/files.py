"""Reading pictures (files and URLs) and writing outputs atomically: the file handling every layer shares."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

import cv2
import numpy as np

from frcnn.core.errors import FrcnnError

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
# Pictures this project writes carry this in a JPEG comment, so that a later run knows which files it may
# replace: a user's own photo that has an output's name is never overwritten.
OUTPUT_MARK = b"written by frcnn-v1-v2"


def read_bytes(path: str | os.PathLike) -> bytes:
    """A local file's bytes, or FrcnnError naming what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise FrcnnError(f"{path}: file not found")
    if path.is_dir():
        raise FrcnnError(f"{path}: is a folder, not an image")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FrcnnError(f"{path}: cannot read ({error.strerror or error})") from error
    if not data:
        raise FrcnnError(f"{path}: file is empty")
    return data


def decode_picture(data: bytes, origin: str | os.PathLike, apply_orientation: bool = True) -> np.ndarray:
    """A picture file's bytes as 8-bit BGR, turned the way its EXIF orientation says (if asked)."""
    # IMREAD_COLOR gives 3-channel 8-bit from grayscale, 16-bit or alpha pictures and applies EXIF orientation.
    flags = cv2.IMREAD_COLOR if apply_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        if is_url(str(origin)):
            raise FrcnnError(f"{origin}: not a picture OpenCV can decode")
        raise FrcnnError(f"{origin}: not an image OpenCV can decode (corrupt, or not a picture)")
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
        raise FrcnnError(f"{url}: the server answered {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise FrcnnError(f"{url}: cannot fetch ({getattr(error, 'reason', None) or error})") from error
    if len(data) > URL_MAX_BYTES:
        raise FrcnnError(f"{url}: larger than {URL_MAX_BYTES // (1024 * 1024)} MB; download it first")
    if not data:
        raise FrcnnError(f"{url}: the server sent nothing")
    return data


def source_bytes(source: str | os.PathLike) -> bytes:
    """The bytes of a picture named by a local path or an http(s) URL."""
    return fetch_url(str(source)) if is_url(str(source)) else read_bytes(source)


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
        for final in self._temporary:  # folders appear with their first file: a failed run leaves none
            final.parent.mkdir(parents=True, exist_ok=True)
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
    """The picture as JPEG, carrying the project's mark (a comment segment right after the start marker)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FrcnnError(f"could not encode a {image.shape[1]}x{image.shape[0]} picture as JPEG")
    data = encoded.tobytes()
    comment = b"\xff\xfe" + (len(OUTPUT_MARK) + 2).to_bytes(2, "big") + OUTPUT_MARK
    return data[:2] + comment + data[2:]


def written_here(path: Path) -> bool:
    """Whether an existing file is one this project wrote (and a new run may replace): a JPEG with its mark, a
    JSON record of its kind, or a YOLO label file."""
    try:
        suffix = path.suffix.lower()
        if suffix in (".jpg", ".jpeg"):
            with open(path, "rb") as handle:
                return OUTPUT_MARK in handle.read(64)
        if suffix == ".json":
            record = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(record, dict) and {"file", "results"} <= record.keys()
        if suffix == ".txt":
            return all(_is_yolo_line(line) for line in path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return False


def _is_yolo_line(line: str) -> bool:
    parts = line.split()
    if not parts:
        return True
    try:
        return len(parts) in (5, 6) and int(parts[0]) >= 0 and all(0 <= float(v) <= 1 for v in parts[1:5])
    except ValueError:
        return False


def check_replaceable(paths: Sequence[Path]) -> None:
    """Refuse to replace a file this project did not write (a user's own photo that happens to have the name)."""
    for path in paths:
        if path.exists() and not written_here(path):
            raise FrcnnError(f"{path} exists and was not written by this project: it is left as it is; "
                              f"move it, or choose another --output")


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 92) -> None:
    """Encode as JPEG and write atomically."""
    write_bytes_atomically(path, encode_jpeg(image, quality))


def write_json(path: str | os.PathLike, record: dict) -> None:
    write_bytes_atomically(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


def old_crops(folder: Path, name: str) -> list[Path]:
    """The crops an earlier run cut from the picture of this name, in `folder/<class>/`."""
    return [old for old in folder.glob(f"*/{glob.escape(name)}_*.jpg") if old.stem[len(name) + 1:].isdigit()]
