"""What both scripts share: options, reading, prediction, filtering, drawing and recording."""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import json
import os
import sys
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from coco_names import COCO_INSTANCE_CATEGORY_NAMES
from model import BACKENDS, DEFAULT_IMGSZ, MODEL_NAMES, DetectError, LoadedModel, load_model, read_labels, resolve_device

DEFAULT_THRESHOLD = 0.5
# Pictures far larger than the model's input are shrunk with area averaging before inference:
# it bounds memory (no full-size float tensor) and avoids the aliasing of a large bilinear step.
_PRESHRINK_BELOW_SCALE = 0.5


# ---------------------------------------------------------------- detections


@dataclass
class Detections:
    """Boxes (N×4, x1 y1 x2 y2 in original-image pixels), scores (N) and label ids (N)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, threshold: float = 0.0, classes: set[int] | None = None) -> "Detections":
        """Keep detections scoring at least `threshold` whose label is in `classes` (all if None)."""
        keep = self.scores >= threshold
        if classes is not None:
            keep &= np.isin(self.labels, sorted(classes))
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def to_records(self, class_names: Sequence[str]) -> list[dict]:
        """One JSON-ready dict per detection: label, label_id, score, box [x1, y1, x2, y2]."""
        return [
            {
                "label": class_names[label],
                "label_id": int(label),
                "score": round(float(score), 4),
                "box": [round(float(v), 1) for v in box],
            }
            for box, score, label in zip(self.boxes, self.scores, self.labels)
        ]


# ---------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, apply_orientation: bool = True) -> np.ndarray:
    """Read any picture OpenCV decodes as 8-bit BGR, turned the way its EXIF orientation says (if asked)."""
    path = Path(path)
    if not path.exists():
        raise DetectError(f"{path}: file not found")
    if path.is_dir():
        raise DetectError(f"{path}: is a folder, not an image")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DetectError(f"{path}: cannot read ({error.strerror or error})") from error
    if data.size == 0:
        raise DetectError(f"{path}: file is empty")
    # IMREAD_COLOR gives 3-channel 8-bit from grayscale, 16-bit or alpha pictures and applies EXIF orientation.
    flags = cv2.IMREAD_COLOR if apply_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags)
    if image is None:
        raise DetectError(f"{path}: not an image OpenCV can decode (corrupt, or not a picture)")
    return image


# ---------------------------------------------------------------- prediction


def _input_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor torchvision's transform would resize a height×width picture by."""
    return min(min_size / min(height, width), max_size / max(height, width))


def to_model_input(image: np.ndarray, model: LoadedModel) -> tuple[torch.Tensor, float, float]:
    """A BGR picture as the model's RGB float tensor, plus the x and y factors back to the picture."""
    height, width = image.shape[:2]
    scale = _input_scale(height, width, model.min_size, model.max_size)
    fx = fy = 1.0
    if scale < _PRESHRINK_BELOW_SCALE:
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = width / new_w, height / new_h
    tensor = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1]))
    if model.device.type == "cuda":
        tensor = tensor.pin_memory()  # lets the copy below overlap with work already queued on the GPU
    # Move uint8 to the device first: a quarter of the bytes of float32.
    tensor = tensor.to(model.device, non_blocking=True).permute(2, 0, 1)
    return tensor.float().div_(255.0), fx, fy


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def predict(model: LoadedModel, images: Sequence[np.ndarray]) -> tuple[list[Detections], float]:
    """Run the model on a batch of BGR pictures; return their detections and the milliseconds taken."""
    inputs = [to_model_input(image, model) for image in images]
    _synchronize(model.device)
    start = time.perf_counter()
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=model.half):
        outputs = model([tensor for tensor, _, _ in inputs])
    _synchronize(model.device)
    milliseconds = (time.perf_counter() - start) * 1000.0
    results = []
    for output, (_, fx, fy) in zip(outputs, inputs):
        boxes = output["boxes"].float().cpu().numpy() * np.array([fx, fy, fx, fy], dtype=np.float32)
        results.append(Detections(boxes, output["scores"].float().cpu().numpy(), output["labels"].cpu().numpy()))
    return results, milliseconds


# ---------------------------------------------------------------- drawing

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(label_id: int) -> tuple[int, int, int]:
    """A distinct BGR colour per class id, the same in every run and for every model."""
    # Stepping the hue by the golden ratio spreads neighbouring ids far apart on the colour wheel.
    hue = (label_id * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(blue * 255), round(green * 255), round(red * 255)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    blue, green, red = background
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


@dataclass(frozen=True)
class DrawStyle:
    """Line and text sizes scaled to the picture, so labels read the same on a thumbnail and a 4000-px photo."""

    line: int
    font_scale: float
    font_thickness: int
    pad: int

    @classmethod
    def for_picture(cls, height: int, width: int) -> "DrawStyle":
        short_side = min(height, width)
        font_scale = max(0.4, short_side / 900)
        return cls(
            line=max(1, round(short_side / 350)),
            font_scale=font_scale,
            font_thickness=max(1, round(font_scale * 1.6)),
            pad=max(2, round(font_scale * 4)),
        )


def _draw_label(image: np.ndarray, text: str, x: int, y: int, colour, style: DrawStyle, above: bool = True) -> None:
    """Text on a filled box whose top-left corner is (x, y), or whose bottom-left is, when `above`."""
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    box_h = text_h + baseline + 2 * style.pad
    top = y - box_h if above and y - box_h >= 0 else y
    left = min(max(0, x), max(0, image.shape[1] - text_w - 2 * style.pad))
    cv2.rectangle(image, (left, top), (left + text_w + 2 * style.pad, top + box_h), colour, cv2.FILLED)
    origin = (left + style.pad, top + style.pad + text_h)
    cv2.putText(image, text, origin, _FONT, style.font_scale, _text_colour(colour), style.font_thickness, cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: Detections, class_names: Sequence[str]) -> np.ndarray:
    """Draw each box with its class name and score on a filled label, in place; returns the image."""
    style = DrawStyle.for_picture(*image.shape[:2])
    height, width = image.shape[:2]
    # Highest scores last, so their labels stay on top where boxes overlap.
    for index in np.argsort(detections.scores, kind="stable"):
        x1, y1, x2, y2 = np.clip(detections.boxes[index], 0, [width - 1, height - 1, width - 1, height - 1]).round().astype(int)
        label = int(detections.labels[index])
        colour = class_colour(label)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, style.line)
        name = class_names[label] if label < len(class_names) else str(label)
        _draw_label(image, f"{name} {detections.scores[index]:.2f}", x1, y1, colour, style)
    return image


def draw_corner_text(image: np.ndarray, text: str) -> np.ndarray:
    """Write `text` on a dark label in the top-left corner, in place."""
    style = DrawStyle.for_picture(*image.shape[:2])
    _draw_label(image, text, 0, 0, (32, 32, 32), style, above=False)
    return image


def titled_panel(image: np.ndarray, title: str) -> np.ndarray:
    """The picture with a dark title bar added above it."""
    style = DrawStyle.for_picture(*image.shape[:2])
    (_, text_h), baseline = cv2.getTextSize(title, _FONT, style.font_scale, style.font_thickness)
    bar = np.full((text_h + baseline + 4 * style.pad, image.shape[1], 3), 32, dtype=np.uint8)
    cv2.putText(bar, title, (2 * style.pad, 2 * style.pad + text_h), _FONT, style.font_scale, (255, 255, 255),
                style.font_thickness, cv2.LINE_AA)
    return np.vstack([bar, image])


def panel_title(model_name: str, count: int, milliseconds: float) -> str:
    """The caption of one model's panel: its name, detection count and inference time."""
    return f"{model_name}: {count} detection{'s' if count != 1 else ''}, {milliseconds:.0f} ms"


@dataclass
class ModelResult:
    """One model's filtered detections for one picture, and how long inference took."""

    model: LoadedModel
    detections: Detections
    milliseconds: float

    def record(self, width: int, height: int, **context) -> dict:
        """The JSON record shared by both scripts; `context` says which file or frame it belongs to."""
        return {**context, "model": self.model.name, "width": width, "height": height,
                "inference_ms": round(self.milliseconds, 1),
                "detections": self.detections.to_records(self.model.class_names)}


def detect(models: Sequence[LoadedModel], images: Sequence[np.ndarray], threshold: float,
           classes: set[int] | None) -> list[list[ModelResult]]:
    """Each model's filtered detections for each picture: one list per picture, in model order."""
    per_image: list[list[ModelResult]] = [[] for _ in images]
    for model in models:
        batch, milliseconds = predict(model, images)
        for results, detections in zip(per_image, batch):
            results.append(ModelResult(model, detections.filter(threshold, classes), milliseconds / len(images)))
    return per_image


def render(image: np.ndarray, results: Sequence[ModelResult], corner_text: str | None = None) -> np.ndarray:
    """The picture with each model's boxes; several models side by side, each panel titled."""
    panels = []
    for result in results:
        panel = draw_detections(image.copy(), result.detections, result.model.class_names)
        if corner_text:
            draw_corner_text(panel, corner_text)
        if len(results) > 1:
            panel = titled_panel(panel, panel_title(result.model.name, len(result.detections), result.milliseconds))
        panels.append(panel)
    return panels[0] if len(panels) == 1 else np.hstack(panels)


# ---------------------------------------------------------------- writing


class AtomicOutputs:
    """Temporary paths beside the final ones; the finals are replaced only when the block succeeds.

    A hidden name in the same folder makes the final rename atomic; a block that raises leaves nothing.
    """

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self._temporary = {
            Path(p): Path(p).with_name(f".{Path(p).stem}.{secrets.token_hex(4)}.part{Path(p).suffix}") for p in paths
        }

    def __enter__(self) -> dict[Path, Path]:
        return self._temporary

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                for final, temporary in self._temporary.items():
                    os.replace(temporary, final)
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


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 92) -> None:
    """Encode as JPEG and write atomically."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DetectError(f"could not encode {path} as JPEG")
    write_bytes_atomically(path, encoded.tobytes())


def write_json(path: str | os.PathLike, record: dict) -> None:
    write_bytes_atomically(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))


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


# ---------------------------------------------------------------- options


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _imgsz(text: str) -> int:
    value = positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"{text} is too small (at least 32)")
    return value


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which model, on what, with which weights: the same in every script."""
    parser.add_argument("--model", choices=[*MODEL_NAMES, "both"], default="v2",
                        help="v1, v2 (default), or both side by side (v1 left, v2 right)")
    parser.add_argument("--imgsz", type=_imgsz, default=DEFAULT_IMGSZ,
                        help=f"shorter side the model sees, in pixels (default {DEFAULT_IMGSZ}; smaller is faster)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--weights", nargs="+", metavar="PATH",
                        help="local checkpoint instead of the COCO weights (with --model both: v1's, then v2's)")
    parser.add_argument("--labels", metavar="FILE", help="class names of a fine-tuned checkpoint, one per line")
    parser.add_argument("--half", action="store_true", help="half precision on CUDA (faster, same detections within rounding)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (default: the fastest installed runtime for the device), torch, onnxruntime, openvino")


def add_common_options(parser: argparse.ArgumentParser, window_keys: str) -> None:
    """The options that mean the same in both detection scripts; `window_keys` tells what keys do in --show."""
    add_model_options(parser)
    parser.add_argument("--threshold", type=fraction, default=DEFAULT_THRESHOLD,
                        help=f"lowest score to keep, 0..1 (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="keep only these classes, by name or id (e.g. --classes person car 'traffic light')")
    parser.add_argument("--output", default="outputs", metavar="DIR", help="output folder (default outputs/)")
    parser.add_argument("--json", action="store_true", help="also write the detections as JSON")
    parser.add_argument("--show", action="store_true", help=f"also show the results in a window ({window_keys})")


def model_names(args: argparse.Namespace) -> list[str]:
    return list(MODEL_NAMES) if args.model == "both" else [args.model]


def check_common_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> set[int] | None:
    """Usage checks that need more than one option; returns the class ids to keep (None: all)."""
    names = model_names(args)
    if args.weights is not None and len(args.weights) != len(names):
        parser.error(f"--model {args.model} takes {len(names)} --weights path(s), got {len(args.weights)}")
    if not getattr(args, "classes", None):
        return None
    if args.labels:
        try:
            class_names = read_labels(args.labels)
        except DetectError as error:
            parser.error(str(error))
    else:
        class_names = COCO_INSTANCE_CATEGORY_NAMES
    try:
        return resolve_classes(args.classes, class_names)
    except ValueError as error:
        parser.error(str(error))


def resolve_classes(values: Sequence[str], class_names: Sequence[str]) -> set[int]:
    """Class names (any case, '_' for space) or ids into label ids; ValueError lists the valid names."""
    lookup = {name.lower(): index for index, name in enumerate(class_names) if name not in ("N/A", "__background__")}
    ids = set()
    for value in values:
        key = value.strip().lower().replace("_", " ")
        if key.isdigit() and 0 < int(key) < len(class_names) and class_names[int(key)] != "N/A":
            ids.add(int(key))
        elif key in lookup:
            ids.add(lookup[key])
        else:
            valid = ", ".join(name for name in class_names if name not in ("N/A", "__background__"))
            raise ValueError(f"--classes: unknown class '{value}'; valid classes: {valid}")
    return ids


def load_models(args: argparse.Namespace) -> list[LoadedModel]:
    """Resolve the device and load every model the options ask for, reporting on stderr."""
    device = resolve_device(args.device)
    weights = args.weights or [None] * len(model_names(args))
    models = []
    for name, path in zip(model_names(args), weights):
        print(f"Loading {name} on {device} ...", file=sys.stderr, flush=True)
        model = load_model(name, device, imgsz=args.imgsz, weights=path, labels=args.labels, half=args.half,
                           backend=args.backend)
        print(f"Loaded {name}: {model.weights_source}, run by {model.backend}", file=sys.stderr, flush=True)
        models.append(model)
    return models


def fail(message: str) -> int:
    """Print a user-facing error as one line on stderr; return exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1
