"""A seeded synthetic world: COCO splits of coloured shapes on cluttered backgrounds, and a video with known tracks.

Every answer is known, so a detector trained here from scratch on a CPU can be measured exactly: AP by COCO size
bucket, int8 against fp32, sliced inference on tiny objects in large pictures, and tracking against MOT ground truth.
The same seed and arguments give byte-identical files. Only the standard library, numpy and cv2 are used.

    python -m frcnn.synthetic.world OUTPUT_DIR [--seed N] [--pictures N] [--size WxH] [--tiny N] [--video-frames N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from frcnn.core.arguments import non_negative_int, positive_int

CATEGORIES: tuple[dict, ...] = (
    {"id": 1, "name": "disc", "supercategory": "round"},
    {"id": 2, "name": "ring", "supercategory": "round"},
    {"id": 3, "name": "square", "supercategory": "angular"},
    {"id": 4, "name": "triangle", "supercategory": "angular"},
    {"id": 5, "name": "star", "supercategory": "star"},
)

# Base colour, accent colour (both BGR) and texture of each category. The hues are far apart and saturated while
# backgrounds are dull, so even an 8-pixel object can be told by its colour; texture and shape separate the rest.
STYLES: dict[int, tuple[tuple[int, int, int], tuple[int, int, int], str]] = {
    1: ((45, 45, 215), (20, 20, 120), "shaded"),      # red disc, darker towards its rim
    2: ((170, 50, 150), (235, 235, 235), "stripes"),  # purple ring with white stripes
    3: ((210, 100, 35), (240, 240, 240), "dots"),     # blue square with white dots
    4: ((60, 185, 40), (60, 185, 40), "plain"),       # green triangle
    5: ((40, 215, 235), (40, 215, 235), "plain"),     # yellow star
}

SMALL_AREA, MEDIUM_AREA = 32 ** 2, 96 ** 2  # COCO's size buckets, by box area
# An object may lose at most this share of its pixels to later objects, so every annotated object stays
# recognisable; a placement that would cover more is retried elsewhere, and after PLACEMENT_TRIES left out.
MAX_COVERED = 0.6
PLACEMENT_TRIES = 25
MIN_VISIBLE_PIXELS = 4  # fewer visible pixels of a video object than this is no detectable object: no gt line
SHIFT = 4  # cv2 drawing's fractional bits: shapes are placed to 1/16 px, so motion in the video is smooth
VIDEO_STREAM = 2 ** 31 - 1  # random-stream key of the video, apart from the pictures' keys (their indices)
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Look:
    """How one object looks: its category, size (the diameter of the circle it fits in), angle and colours."""

    category_id: int
    size: float
    angle: float
    colour: tuple[float, float, float]
    accent: tuple[float, float, float]


@dataclass(frozen=True)
class Track:
    """One object of the video: its look, centre at frame 1 and velocity in pixels per frame."""

    track_id: int
    look: Look
    start: tuple[float, float]
    velocity: tuple[float, float]
    bounce: bool  # bouncing objects stay inside the frame; the others fly straight on, in and out of it
    frame_size: tuple[int, int]

    def centre(self, frame: int) -> tuple[float, float]:
        """The object's centre in 1-based `frame`."""
        x = self.start[0] + self.velocity[0] * (frame - 1)
        y = self.start[1] + self.velocity[1] * (frame - 1)
        if not self.bounce:
            return x, y
        radius = self.look.size / 2 + 1
        width, height = self.frame_size
        return _fold(x, radius, width - radius), _fold(y, radius, height - radius)


def _fold(value: float, low: float, high: float) -> float:
    # A straight path reflected at the walls: the position along a saw-tooth of period twice the span.
    span = high - low
    phase = (value - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def random_look(rng: np.random.Generator, category_id: int, size: float) -> Look:
    """A look of `category_id` at `size` px with a random angle and jittered colours."""
    base, accent, _ = STYLES[category_id]
    brightness = rng.uniform(0.85, 1.1)
    jitter = rng.normal(0, 10, 3)
    colour = np.clip(np.array(base) * brightness + jitter, 0, 255)
    second = np.clip(np.array(accent) * brightness + jitter, 0, 255)
    return Look(category_id, float(size), float(rng.uniform(0, 2 * math.pi)),
                tuple(float(v) for v in colour), tuple(float(v) for v in second))


def _outline(look: Look, centre: tuple[float, float]) -> np.ndarray:
    # Polygon corners lie on the circle of diameter `size`, so a shape's box never exceeds its size at any angle.
    corners, radii = {3: (4, (1.0,)), 4: (3, (1.0,)), 5: (10, (1.0, 0.45))}[look.category_id]
    steps = np.arange(corners)
    angles = look.angle + steps * 2 * math.pi / corners + (math.pi / 4 if corners == 4 else 0)
    radius = look.size / 2 * np.array(radii)[steps % len(radii)]
    points = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)
    return np.round(points * (1 << SHIFT)).astype(np.int32)


def _shape_mask(look: Look, centre: tuple[float, float], side: int) -> np.ndarray:
    mask = np.zeros((side, side), np.uint8)
    scale = 1 << SHIFT
    middle = (round(centre[0] * scale), round(centre[1] * scale))
    if look.category_id in (1, 2):
        cv2.circle(mask, middle, round(look.size / 2 * scale), 255, -1, cv2.LINE_AA, SHIFT)
        if look.category_id == 2:
            cv2.circle(mask, middle, round(look.size / 2 * 0.55 * scale), 0, -1, cv2.LINE_AA, SHIFT)
    else:
        cv2.fillPoly(mask, [_outline(look, centre)], 255, cv2.LINE_AA, SHIFT)
    return mask


def _texture(look: Look, centre: tuple[float, float], side: int) -> np.ndarray:
    # Texture coordinates turn with the object, so stripes and dots are part of its shape rather than of the picture.
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    dx, dy = xs + 0.5 - centre[0], ys + 0.5 - centre[1]
    cos, sin = math.cos(look.angle), math.sin(look.angle)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    kind = STYLES[look.category_id][2]
    if kind == "shaded":
        accent = np.clip((u * u + v * v) / (look.size / 2) ** 2, 0, 1) * 0.6
    elif kind == "stripes":
        period = max(2.0, look.size / 8)
        accent = (np.floor(u / period) % 2).astype(np.float32)
    elif kind == "dots":
        spacing = max(3.0, look.size / 5)
        du, dv = u % spacing - spacing / 2, v % spacing - spacing / 2
        accent = (du * du + dv * dv < (spacing * 0.28) ** 2).astype(np.float32)
    else:
        accent = np.zeros_like(u)
    colour, second = np.array(look.colour, np.float32), np.array(look.accent, np.float32)
    return colour + accent[..., None] * (second - colour)


def _sprite(look: Look, centre: tuple[float, float]) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Top-left corner in the picture, coverage (0..1) and colour of `look` drawn centred at `centre`."""
    side = int(math.ceil(look.size)) + 3
    x0, y0 = math.floor(centre[0]) - side // 2, math.floor(centre[1]) - side // 2
    local = (centre[0] - x0, centre[1] - y0)
    coverage = _shape_mask(look, local, side).astype(np.float32) / 255
    return x0, y0, coverage, _texture(look, local, side)


def _window(x0: int, y0: int, side: int, width: int, height: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The part of a sprite at (x0, y0) inside the picture: its slices in the picture and in the sprite."""
    left, top = max(x0, 0), max(y0, 0)
    right, bottom = max(min(x0 + side, width), left), max(min(y0 + side, height), top)
    return ((slice(top, bottom), slice(left, right)),
            (slice(top - y0, bottom - y0), slice(left - x0, right - x0)))


def _paste(canvas: np.ndarray, owner: np.ndarray, index: int, sprite: tuple[int, int, np.ndarray, np.ndarray]) -> None:
    x0, y0, coverage, colour = sprite
    inside, part = _window(x0, y0, coverage.shape[0], canvas.shape[1], canvas.shape[0])
    alpha = coverage[part][..., None]
    canvas[inside] = canvas[inside] * (1 - alpha) + colour[part] * alpha
    owner[inside][alpha[..., 0] >= 0.5] = index


def _dull_colour(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.uniform(60, 190) + rng.normal(0, 12, 3), 0, 255)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A dull gradient with soft low-frequency blotches and low-contrast clutter (BGR, uint8)."""
    first, second = _dull_colour(rng), _dull_colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.arange(width, dtype=np.float32)[None, :] * math.cos(angle)
            + np.arange(height, dtype=np.float32)[:, None] * math.sin(angle))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    image = first.astype(np.float32) + ramp[..., None] * (second - first).astype(np.float32)
    blotches = rng.normal(0, 14, (int(rng.integers(3, 7)), int(rng.integers(3, 7)), 3)).astype(np.float32)
    image += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image, 0, 255).astype(np.uint8)
    _clutter(rng, image)
    return image


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    # Distractors take the colour of the spot they lie on, shifted a little: edges for the network to learn to
    # ignore, never saturated enough to pass for an object.
    height, width = image.shape[:2]
    count = int(rng.integers(5, 12) * max(1.0, width * height / 320 ** 2) ** 0.7)
    longest = max(8.0, min(width, height) / 4)
    for _ in range(count):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = np.clip(image[y, x].astype(float) + rng.uniform(-35, 35) + rng.normal(0, 6, 3), 0, 255)
        colour = tuple(float(c) for c in colour)
        reach = float(np.exp(rng.uniform(math.log(4), math.log(longest))))
        kind = int(rng.integers(3))
        if kind == 0:
            axes = (round(reach), round(reach * rng.uniform(0.3, 1.0)))
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            turn = rng.uniform(0, 2 * math.pi)
            end = (round(x + 2 * reach * math.cos(turn)), round(y + 2 * reach * math.sin(turn)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            axes = (round(reach), round(reach * rng.uniform(0.5, 1.0)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(image, (x, y), axes, 0, start, start + rng.uniform(60, 300), colour, 2, cv2.LINE_AA)


def _finish(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """The picture with sensor noise, as uint8."""
    noisy = canvas + rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(2, 6))
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def _visible_box(owner: np.ndarray, index: int, x0: int, y0: int, side: int) -> tuple[list[int] | None, int]:
    """The [x, y, w, h] box of object `index`'s visible pixels (None if none) and how many there are."""
    inside, _ = _window(x0, y0, side, owner.shape[1], owner.shape[0])
    ys, xs = np.nonzero(owner[inside] == index)
    if len(xs) == 0:
        return None, 0
    left, top = inside[1].start + int(xs.min()), inside[0].start + int(ys.min())
    return [left, top, int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1], len(xs)


def _try_place(rng: np.random.Generator, look: Look, canvas: np.ndarray, owner: np.ndarray,
               visible: list[int], solid: list[int]) -> tuple[int, int, int] | None:
    """Paste `look` where it leaves every earlier object enough visible pixels; its corner and side, or None."""
    height, width = owner.shape
    low = look.size / 2 + 1
    for _ in range(PLACEMENT_TRIES):
        centre = (float(rng.uniform(low, width - low)), float(rng.uniform(low, height - low)))
        sprite = _sprite(look, centre)
        x0, y0, coverage, _ = sprite
        inside, part = _window(x0, y0, coverage.shape[0], width, height)
        below = owner[inside][coverage[part] >= 0.5]
        covered = np.bincount(below[below >= 0], minlength=len(visible))
        if all(visible[j] - covered[j] >= (1 - MAX_COVERED) * solid[j] for j in range(len(visible))):
            _paste(canvas, owner, len(visible), sprite)
            for j in range(len(visible)):
                visible[j] -= int(covered[j])
            visible.append(int((coverage[part] >= 0.5).sum()))
            solid.append(visible[-1])
            return x0, y0, coverage.shape[0]
    return None


def draw_picture(seed: int, index: int, size: tuple[int, int] = (320, 320), objects: tuple[int, int] = (3, 10),
                 object_px: tuple[int, int] = (8, 200)) -> tuple[np.ndarray, list[tuple[list[int], int]]]:
    """Picture `index` of the split of `seed` (BGR uint8) and its objects' [x, y, w, h] boxes and category ids."""
    rng = np.random.default_rng([seed, index])  # a picture depends on its index only, not on the split's length
    width, height = size
    canvas = _background(rng, width, height).astype(np.float32)
    owner = np.full((height, width), -1, np.int32)
    count = int(rng.integers(objects[0], objects[1] + 1))
    largest = min(float(object_px[1]), min(width, height) - 4.0)
    sizes = np.exp(rng.uniform(math.log(object_px[0]), math.log(max(largest, object_px[0])), count))
    placed, visible, solid = [], [], []
    for side in sorted(sizes, reverse=True):  # large first, so small objects lie on top and stay whole
        look = random_look(rng, int(rng.integers(1, len(CATEGORIES) + 1)), float(side))
        corner = _try_place(rng, look, canvas, owner, visible, solid)
        if corner is not None:
            placed.append((look.category_id, corner))
    found = [(_visible_box(owner, number, *corner)[0], category) for number, (category, corner) in enumerate(placed)]
    return _finish(rng, canvas), found


def _write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file beside it, so readers never see half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")  # open() keeps the umask's permissions
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _check_split(pictures: int, size: tuple[int, int], objects: tuple[int, int], object_px: tuple[int, int]) -> None:
    if pictures < 1:
        raise ValueError(f"pictures must be at least 1, not {pictures}")
    if min(size) < 16:
        raise ValueError(f"pictures must be at least 16x16 px, not {size[0]}x{size[1]}")
    if not 0 <= objects[0] <= objects[1]:
        raise ValueError(f"objects must be a range 0 <= low <= high, not {objects}")
    if not 2 <= object_px[0] <= object_px[1]:
        raise ValueError(f"object_px must be a range 2 <= low <= high, not {object_px}")


def write_split(folder: Path, seed: int, pictures: int, size: tuple[int, int] = (320, 320),
                objects: tuple[int, int] = (3, 10), object_px: tuple[int, int] = (8, 200)) -> Path:
    """Write a COCO split (images/ and annotations.json) of `pictures` pictures into `folder`; the annotations' path."""
    _check_split(pictures, size, objects, object_px)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(pictures):
        picture, found = draw_picture(seed, index, size, objects, object_px)
        name = f"{index + 1:06d}.jpg"
        if not cv2.imwrite(str(folder / "images" / name), picture, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"cannot write {folder / 'images' / name}")
        images.append({"id": index + 1, "file_name": name, "width": size[0], "height": size[1]})
        annotations += [{"id": len(annotations) + number + 1, "image_id": index + 1, "category_id": category,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
                        for number, (box, category) in enumerate(found)]
    info = {"description": "frcnn.synthetic.world", "seed": seed, "size": list(size), "objects": list(objects),
            "object_px": list(object_px)}
    dataset = {"info": info, "licenses": [], "images": images, "annotations": annotations,
               "categories": [dict(c) for c in CATEGORIES]}
    return _write_atomic(folder / "annotations.json", json.dumps(dataset, indent=1) + "\n")


def write_tiny_split(folder: Path, seed: int, pictures: int = 4, size: tuple[int, int] = (1920, 1080),
                     objects: tuple[int, int] = (30, 80), object_px: tuple[int, int] = (8, 24)) -> Path:
    """Write a split of large pictures with many tiny objects (COCO small), like people on an aerial beach photo."""
    return write_split(folder, seed, pictures, size, objects, object_px)


def _crossing_pair(rng: np.random.Generator, frames: int, size: tuple[int, int]) -> list[tuple]:
    """Two straight paths that cross near the middle of the frame halfway through the clip."""
    width, height = size
    meet = (width / 2 + rng.uniform(-width / 8, width / 8), height / 2 + rng.uniform(-height / 8, height / 8))
    first = rng.uniform(0, 2 * math.pi)
    paths = []
    for heading in (first, first + rng.uniform(math.pi / 3, 2 * math.pi / 3)):
        speed = rng.uniform(3.5, 6.0)
        velocity = (speed * math.cos(heading), speed * math.sin(heading))
        start = (meet[0] - velocity[0] * (frames - 1) / 2, meet[1] - velocity[1] * (frames - 1) / 2)
        paths.append((start, velocity, False))
    return paths


def _bouncing(rng: np.random.Generator, size: tuple[int, int], diameter: float) -> tuple:
    """A path that starts inside the frame and bounces off its edges."""
    low = diameter / 2 + 1
    start = (rng.uniform(low, size[0] - low), rng.uniform(low, size[1] - low))
    speed, heading = rng.uniform(1.5, 4.0), rng.uniform(0, 2 * math.pi)
    return start, (speed * math.cos(heading), speed * math.sin(heading)), True


def _entering(rng: np.random.Generator, frames: int, size: tuple[int, int], diameter: float) -> tuple:
    """A straight path that enters the frame through an edge at a random frame (and may leave through another)."""
    width, height = size
    outside = diameter / 2 + 2
    edge = int(rng.integers(4))
    normal = ((1, 0), (-1, 0), (0, 1), (0, -1))[edge]
    along = rng.uniform(0.1, 0.9)
    entry = ((-outside, along * height), (width + outside, along * height),
             (along * width, -outside), (along * width, height + outside))[edge]
    heading = math.atan2(normal[1], normal[0]) + rng.uniform(-0.9, 0.9)
    speed = rng.uniform(2.0, 5.0)
    velocity = (speed * math.cos(heading), speed * math.sin(heading))
    first = int(rng.integers(1, max(2, int(frames * 0.6))))
    return (entry[0] - velocity[0] * (first - 1), entry[1] - velocity[1] * (first - 1)), velocity, False


def plan_tracks(seed: int, frames: int = 100, size: tuple[int, int] = (640, 360), objects: int = 8) -> list[Track]:
    """The video's objects: a crossing pair, bouncing objects and objects entering (and leaving) the frame."""
    rng = np.random.default_rng([seed, VIDEO_STREAM])
    diameters = rng.uniform(20, 60, max(objects, 2))
    paths = _crossing_pair(rng, frames, size)
    for number, diameter in enumerate(diameters[2:]):
        paths.append(_bouncing(rng, size, diameter) if number % 2 == 0 else _entering(rng, frames, size, diameter))
    first = int(rng.integers(len(CATEGORIES)))  # categories in turn, so that a short clip shows every one
    tracks = []
    for number, (diameter, (start, velocity, bounce)) in enumerate(zip(diameters, paths)):
        look = random_look(rng, (first + number) % len(CATEGORIES) + 1, float(diameter))
        tracks.append(Track(number + 1, look, (float(start[0]), float(start[1])),
                            (float(velocity[0]), float(velocity[1])), bounce, (int(size[0]), int(size[1]))))
    return tracks[:objects]


def draw_frame(tracks: list[Track], background: np.ndarray, frame: int,
               rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[Track, list[int], float]]]:
    """Frame `frame` (1-based) of the video, and each visible track's box [x, y, w, h] and visible share."""
    canvas = background.astype(np.float32)
    owner = np.full(background.shape[:2], -1, np.int32)
    drawn = []
    for index, track in enumerate(tracks):  # later tracks pass in front of earlier ones
        sprite = _sprite(track.look, track.centre(frame))
        _paste(canvas, owner, index, sprite)
        drawn.append((sprite[0], sprite[1], sprite[2].shape[0], int((sprite[2] >= 0.5).sum())))
    rows = []
    for index, (track, (x0, y0, side, solid)) in enumerate(zip(tracks, drawn)):
        box, visible = _visible_box(owner, index, x0, y0, side)
        if box is not None and visible >= MIN_VISIBLE_PIXELS:
            rows.append((track, box, visible / max(solid, 1)))
    return _finish(rng, canvas), rows


def video_frames(seed: int, frames: int = 100, size: tuple[int, int] = (640, 360), objects: int = 8,
                 ) -> Iterator[tuple[np.ndarray, list[tuple[Track, list[int], float]]]]:
    """The video's frames as drawn, before any encoding: each picture (BGR uint8) with each visible track's box
    [x, y, w, h] and visible share. objects=0 gives the same background and noise with nothing on it."""
    tracks = plan_tracks(seed, frames, size, objects) if objects else []
    rng = np.random.default_rng([seed, VIDEO_STREAM, 1])
    background = _background(rng, *size)
    for frame in range(1, frames + 1):
        yield draw_frame(tracks, background, frame, rng)


def _record(writer: cv2.VideoWriter, drawn: Iterator[tuple[np.ndarray, list]]) -> list[str]:
    """Write every frame to `writer`; the MOT ground-truth lines."""
    lines = []
    for frame, (picture, rows) in enumerate(drawn, start=1):
        writer.write(picture)
        # frame, id, box (0-based pixels, as in the COCO splits), 1 (a real object), class, visible share
        lines += [f"{frame},{track.track_id},{x},{y},{w},{h},1,{track.look.category_id},{share:.3f}"
                  for track, (x, y, w, h), share in rows]
    return lines


def write_video(folder: Path, seed: int, frames: int = 100, size: tuple[int, int] = (640, 360),
                fps: float = 25.0, objects: int = 8) -> tuple[Path, Path]:
    """Write video.mp4 and its MOT ground truth gt/gt.txt (and seqinfo.ini) into `folder`; both paths."""
    if frames < 1 or min(size) < 16 or fps <= 0 or objects < 0:
        raise ValueError(f"bad video arguments: frames={frames}, size={size}, fps={fps}, objects={objects}")
    folder = Path(folder)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    video, partial = folder / "video.mp4", folder / f".video.{os.getpid()}.part.mp4"  # cv2 goes by the suffix
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, tuple(size))
    if not writer.isOpened():
        raise OSError(f"cannot write a video to {partial}")
    try:
        lines = _record(writer, video_frames(seed, frames, size, objects))
        writer.release()
        os.replace(partial, video)
    except BaseException:
        writer.release()
        partial.unlink(missing_ok=True)
        raise
    _write_atomic(folder / "seqinfo.ini", f"[Sequence]\nname={folder.name}\nframeRate={fps:g}\nseqLength={frames}\n"
                                          f"imWidth={size[0]}\nimHeight={size[1]}\n")
    return video, _write_atomic(folder / "gt" / "gt.txt", "".join(line + "\n" for line in lines))


def describe_split(annotations: Path) -> str:
    """One line: how many pictures and objects a split holds, by COCO size bucket."""
    dataset = json.loads(Path(annotations).read_text(encoding="utf-8"))
    areas = [a["area"] for a in dataset["annotations"]]
    small = sum(area < SMALL_AREA for area in areas)
    medium = sum(SMALL_AREA <= area < MEDIUM_AREA for area in areas)
    return (f"{Path(annotations).parent.name}: {len(dataset['images'])} pictures, {len(areas)} objects "
            f"(small {small}, medium {medium}, large {len(areas) - small - medium}) -> {annotations}")


def describe_video(video: Path, gt: Path) -> str:
    """One line: the video's frames, tracks and ground-truth boxes."""
    rows = [line.split(",") for line in Path(gt).read_text(encoding="utf-8").splitlines() if line]
    frames = max((int(row[0]) for row in rows), default=0)
    tracks = len({row[1] for row in rows})
    return f"{Path(video).parent.name}: {tracks} tracks, {len(rows)} boxes up to frame {frames} -> {video}, {gt}"


def _picture_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"not a WxH size: {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if not (32 <= width <= 8192 and 32 <= height <= 8192):
        raise argparse.ArgumentTypeError(f"each side must be 32 to 8192 px, not {text}")
    return width, height


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m frcnn.synthetic.world", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR", help="where train/, val/, tiny/, video/ go")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--pictures", type=positive_int, default=200, help="train pictures (default 200)")
    parser.add_argument("--val", type=positive_int, help="val pictures (default a quarter of --pictures)")
    parser.add_argument("--size", type=_picture_size, default=(320, 320), help="train/val picture size (320x320)")
    parser.add_argument("--tiny", type=non_negative_int, default=4,
                        help="pictures of the tiny-object split, 0 for none (default 4)")
    parser.add_argument("--tiny-size", type=_picture_size, default=(1920, 1080), help="tiny split size (1920x1080)")
    parser.add_argument("--video-frames", type=non_negative_int, default=100,
                        help="frames of the tracking video, 0 for none (default 100)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Write the train, val, tiny and video parts of a world under OUTPUT_DIR and say what was written."""
    args = _parser().parse_args(argv)
    # Each part has its own seed, drawn from --seed, so that parts never repeat each other's pictures.
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(args.seed).spawn(4)]
    try:
        print(describe_split(write_split(args.output_dir / "train", seeds[0], args.pictures, args.size)))
        val = args.val or max(1, args.pictures // 4)
        print(describe_split(write_split(args.output_dir / "val", seeds[1], val, args.size)))
        if args.tiny:
            print(describe_split(write_tiny_split(args.output_dir / "tiny", seeds[2], args.tiny, args.tiny_size)))
        if args.video_frames:
            print(describe_video(*write_video(args.output_dir / "video", seeds[3], args.video_frames)))
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
