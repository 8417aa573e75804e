"""Drawing detections: boxes with class names and scores on filled labels, titled side-by-side panels."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from frcnn.core.detections import Detections, Prediction, class_name
from frcnn.core.specs import DEFAULT_PROPOSALS, DrawOptions

_FONT = cv2.FONT_HERSHEY_SIMPLEX
HEAT_COLOURS = cv2.COLORMAP_JET  # draw_heat's colours, and its key's


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
    def for_picture(cls, height: int, width: int, line_width: int | None = None) -> "DrawStyle":
        short_side = min(height, width)
        font_scale = max(0.4, short_side / 900)
        return cls(
            line=line_width or max(1, round(short_side / 350)),
            font_scale=font_scale,
            font_thickness=max(1, round(font_scale * 1.6)),
            pad=max(2, round(font_scale * 4)),
        )


def _label_box(text: str, x: int, y: int, style: DrawStyle, width: int, above: bool) -> tuple[int, int, int, int]:
    """Where a label of `text` goes: (left, top, right, bottom), above (x, y) where it fits, else below it."""
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    box_w, box_h = text_w + 2 * style.pad, text_h + baseline + 2 * style.pad
    top = y - box_h if above and y - box_h >= 0 else y
    left = min(max(0, x), max(0, width - box_w))
    return left, top, left + box_w, top + box_h


def _draw_label_at(image: np.ndarray, text: str, box: tuple[int, int, int, int], colour, style: DrawStyle) -> None:
    left, top, right, bottom = box
    cv2.rectangle(image, (left, top), (right, bottom), colour, cv2.FILLED)
    (_, text_h), _ = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    origin = (left + style.pad, top + style.pad + text_h)
    cv2.putText(image, text, origin, _FONT, style.font_scale, _text_colour(colour), style.font_thickness, cv2.LINE_AA)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(text: str, box: np.ndarray, style: DrawStyle, size: tuple[int, int],
                 placed: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    """The first spot inside the picture free of labels already placed: above the box, inside its top, below it;
    None where there is none (in a crowd, a label drawn over others would only leave fragments of both)."""
    height, width = size
    x1, y1, _, y2 = (int(v) for v in box)
    candidates = [_label_box(text, x1, y1, style, width, above=True),
                  _label_box(text, x1, y1, style, width, above=False),
                  _label_box(text, x1, y2, style, width, above=False)]
    return next((c for c in candidates if c[3] <= height and not any(_overlaps(c, p) for p in placed)), None)


def label_text(name: str, score: float, options: DrawOptions, track_id: int = -1) -> str | None:
    """What a box's label says under `options` (None: no label): `car #12 0.91`."""
    if options.hide_labels:
        return None
    if track_id >= 0:
        name = f"{name} #{track_id}"
    return name if options.hide_conf else f"{name} {score:.2f}"


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A colour per track, the same for its whole life (its trail too)."""
    return class_colour(track_id * 7 + 3)


def _colour(detections: Detections, index: int) -> tuple[int, int, int]:
    if detections.track_ids is not None and detections.track_ids[index] >= 0:
        return track_colour(int(detections.track_ids[index]))
    return class_colour(int(detections.labels[index]))


def draw_detections(image: np.ndarray, detections: Detections, class_names: Sequence[str],
                    options: DrawOptions = DrawOptions()) -> np.ndarray:
    """Draw each box with its class name and score on a filled label, in place; returns the image."""
    style = DrawStyle.for_picture(*image.shape[:2], line_width=options.line_width)
    height, width = image.shape[:2]
    order = np.argsort(detections.scores, kind="stable")
    boxes = np.clip(detections.boxes, 0, [width - 1, height - 1, width - 1, height - 1]).round().astype(int)
    for index in order:
        x1, y1, x2, y2 = boxes[index]
        cv2.rectangle(image, (x1, y1), (x2, y2), _colour(detections, index), style.line)
    # Labels: the best scores choose their spot first; one with no free spot is left out (its box stays).
    placed: dict[int, tuple[str, tuple[int, int, int, int]]] = {}
    for index in order[::-1]:
        track_id = -1 if detections.track_ids is None else int(detections.track_ids[index])
        text = label_text(class_name(class_names, detections.labels[index]), float(detections.scores[index]),
                          options, track_id)
        spot = None if text is None else _place_label(text, boxes[index], style, (height, width),
                                                      [spot for _, spot in placed.values()])
        if spot is not None:
            placed[index] = text, spot
    for index in order:
        if index in placed:
            text, spot = placed[index]
            _draw_label_at(image, text, spot, _colour(detections, index), style)
    return image


def draw_trails(image: np.ndarray, trails: dict[int, list[tuple[float, float]]]) -> None:
    """Each track's recent centre points as a line in the track's colour, in place."""
    style = DrawStyle.for_picture(*image.shape[:2])
    for track_id, points in trails.items():
        if len(points) > 1:
            polyline = np.round(np.array(points)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [polyline], False, track_colour(track_id), style.line, cv2.LINE_AA)


# Which way each direction's arrow points, as (dx, dy) in the picture.
_ARROWS = {"left_to_right": (1, 0), "right_to_left": (-1, 0), "top_to_bottom": (0, 1), "bottom_to_top": (0, -1)}


def draw_count_line(image: np.ndarray, line: tuple[int, int, int, int], totals: dict[str, dict[str, int]]) -> None:
    """The counting line and its running counts per direction (a drawn arrow, the total, the classes), in place."""
    style = DrawStyle.for_picture(*image.shape[:2])
    cv2.line(image, line[:2], line[2:], (255, 255, 255), style.line + 2, cv2.LINE_AA)
    cv2.line(image, line[:2], line[2:], (40, 40, 220), style.line, cv2.LINE_AA)
    x, y = min(line[0], line[2]), min(line[1], line[3])
    for number, direction in enumerate(totals):
        counts = totals.get(direction, {})
        text = f"{sum(counts.values())}" + (f" ({', '.join(f'{n} {c}' for c, n in counts.items())})" if counts else "")
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
        arrow = 2 * text_h  # room for the arrow, left of the text
        width, height = arrow + text_w + 3 * style.pad, text_h + baseline + 2 * style.pad
        left = min(max(0, x), max(0, image.shape[1] - width))
        top = y + number * height
        cv2.rectangle(image, (left, top), (left + width, top + height), (32, 32, 32), cv2.FILLED)
        bottom = top + height
        dx, dy = _ARROWS.get(direction, (1, 0))
        centre = (left + style.pad + arrow // 2, (top + bottom) // 2)
        half = max(3, min(arrow, height - 2 * style.pad) // 2)
        start = (centre[0] - dx * half, centre[1] - dy * half)
        end = (centre[0] + dx * half, centre[1] + dy * half)
        cv2.arrowedLine(image, start, end, (255, 255, 255), style.font_thickness, cv2.LINE_AA, tipLength=0.45)
        cv2.putText(image, text, (left + 2 * style.pad + arrow, top + style.pad + text_h), _FONT, style.font_scale,
                    (255, 255, 255), style.font_thickness, cv2.LINE_AA)


def draw_corner_text(image: np.ndarray, text: str) -> np.ndarray:
    """Write `text` small and half-transparent in the bottom-left corner, in place, where it hides little."""
    style = DrawStyle.for_picture(*image.shape[:2])
    style = DrawStyle(style.line, max(0.4, style.font_scale * 0.7), max(1, style.font_thickness - 1), style.pad)
    left, top, right, bottom = _label_box(text, 0, image.shape[0], style, image.shape[1], above=True)
    region = image[top:bottom, left:right]
    region[:] = region // 2  # darken behind the text rather than hide what is there
    (_, text_h), _ = cv2.getTextSize(text, _FONT, style.font_scale, style.font_thickness)
    cv2.putText(image, text, (left + style.pad, top + style.pad + text_h), _FONT, style.font_scale, (255, 255, 255),
                style.font_thickness, cv2.LINE_AA)
    return image


def titled_panel(image: np.ndarray, lines: Sequence[str], wrap: bool = False) -> np.ndarray:
    """The picture with a dark title bar above it: the first line in full size, the rest smaller. `wrap`: a line
    wider than the picture goes on over several rows (off for video frames, whose size may not change)."""
    style = DrawStyle.for_picture(*image.shape[:2])
    rows = []
    for number, line in enumerate(lines):
        scale = style.font_scale if number == 0 else max(0.4, style.font_scale * 0.7)
        thickness = style.font_thickness if number == 0 else max(1, style.font_thickness - 1)
        room = image.shape[1] - 4 * style.pad
        for piece in wrapped(line, scale, thickness, room) if wrap else [line]:
            (_, text_h), baseline = cv2.getTextSize(piece, _FONT, scale, thickness)
            row = np.full((text_h + baseline + 2 * style.pad, image.shape[1], 3), 32, dtype=np.uint8)
            cv2.putText(row, piece, (2 * style.pad, style.pad + text_h), _FONT, scale, (255, 255, 255), thickness,
                        cv2.LINE_AA)
            rows.append(row)
    margin = np.full((style.pad, image.shape[1], 3), 32, dtype=np.uint8)
    return np.vstack([margin, *rows, margin, image])


def text_width(text: str, scale: float, thickness: int) -> int:
    """How many pixels wide `text` is drawn in the captions' font."""
    return cv2.getTextSize(text, _FONT, scale, thickness)[0][0]


def wrapped(text: str, scale: float, thickness: int, width: int) -> list[str]:
    """`text` in pieces that each fit `width` pixels: broken between words, and inside a word (a long file
    name) only where the word alone does not fit."""
    pieces: list[str] = []
    for word in text.split(" "):
        joined = f"{pieces[-1]} {word}" if pieces else word
        if pieces and text_width(joined, scale, thickness) <= width:
            pieces[-1] = joined
            continue
        while len(word) > 1 and text_width(word, scale, thickness) > width:
            cut = 1  # at least one character a row, however narrow the picture
            while cut < len(word) - 1 and text_width(word[:cut + 1], scale, thickness) <= width:
                cut += 1
            pieces.append(word[:cut])
            word = word[cut:]
        pieces.append(word)
    return pieces


def panel_title(prediction: Prediction) -> list[str]:
    """The caption of one model's panel: its name, detection count and time; then how it was run."""
    count = len(prediction.detections)
    settings = prediction.settings
    details = [f"threshold {settings.threshold:g}", f"size {settings.imgsz}", f"{settings.weights}"]
    if settings.precision != "fp32":
        details.insert(2, settings.precision)
    if settings.proposals != DEFAULT_PROPOSALS:
        details.insert(2, f"{settings.proposals} proposals")
    if settings.slice is not None:
        details.insert(2, f"{settings.slice.tiles} tiles of {settings.slice.size} px")
    return [f"{prediction.model}: {count} detection{'s' if count != 1 else ''}, {prediction.milliseconds:.0f} ms",
            ", ".join(details)]


def render(image: np.ndarray, predictions: Sequence[Prediction], options: DrawOptions = DrawOptions(),
           corner_text: str | None = None,
           decorate: Callable[[np.ndarray, Prediction], None] | None = None) -> np.ndarray:
    """The picture with each model's boxes; several models side by side, each panel titled. `decorate` adds
    what a panel shows besides boxes (trails, a counting line and its counts), over them."""
    panels = []
    for prediction in predictions:
        panel = draw_detections(image.copy(), prediction.detections, prediction.class_names, options)
        if decorate is not None:
            decorate(panel, prediction)
        if corner_text:
            draw_corner_text(panel, corner_text)
        if len(predictions) > 1:
            panel = titled_panel(panel, panel_title(prediction))
        panels.append(panel)
    return panels[0] if len(panels) == 1 else np.hstack(panels)


# ---------------------------------------------------------------- video analytics: zones, named lines, heat, tags


def zone_colour(index: int) -> tuple[int, int, int]:
    """A colour per zone (by its position among the zones), apart from the first classes' colours."""
    return class_colour(index * 5 + 41)


def draw_zone(image: np.ndarray, polygon: np.ndarray, colour: tuple[int, int, int], text: str,
              opacity: float = 0.3) -> None:
    """A filled, half-transparent polygon with its outline and a label (its name and live counts), in place."""
    style = DrawStyle.for_picture(*image.shape[:2])
    height, width = image.shape[:2]
    points = np.round(np.asarray(polygon)).astype(np.int32).reshape(-1, 1, 2)
    x, y, w, h = cv2.boundingRect(points)
    x1, y1, x2, y2 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
    if x2 > x1 and y2 > y1:  # blend only the polygon's bounding box: a full-frame copy per zone costs more
        region = image[y1:y2, x1:x2]
        filled = region.copy()
        cv2.fillPoly(filled, [points - [x1, y1]], colour)
        cv2.addWeighted(filled, opacity, region, 1 - opacity, 0, dst=region)
    cv2.polylines(image, [points], True, colour, style.line, cv2.LINE_AA)
    box = _label_box(text, min(max(0, x), width - 1), min(max(0, y), height - 1), style, width, above=False)
    _draw_label_at(image, text, box, colour, style)


def draw_named_count_line(image: np.ndarray, line: tuple[int, int, int, int], name: str,
                          totals: dict[str, dict[str, int]]) -> None:
    """A counting line with its counts (as `draw_count_line`) and its name at its far end, in place."""
    draw_count_line(image, line, totals)
    style = DrawStyle.for_picture(*image.shape[:2])
    # The counts hang below the line's top-left; the name goes at its other (lower, else right) end.
    far = max(line[:2], line[2:], key=lambda point: (point[1], point[0]))
    box = _label_box(name, far[0], far[1], style, image.shape[1], above=False)
    if box[3] > image.shape[0]:
        box = _label_box(name, far[0], far[1], style, image.shape[1], above=True)
    _draw_label_at(image, name, box, (40, 40, 220), style)


def draw_heat(image: np.ndarray, heat: np.ndarray, cell: int = 1, opacity: float = 0.6) -> np.ndarray:
    """A heat grid (cells of `cell` pixels) in colour over the picture, in place: hot is red, none leaves the
    picture as it is; returns the picture."""
    peak = float(heat.max()) if heat.size else 0.0
    if peak <= 0:
        return image
    height, width = image.shape[:2]
    level = cv2.resize((heat / peak).astype(np.float32), (heat.shape[1] * cell, heat.shape[0] * cell),
                       interpolation=cv2.INTER_LINEAR)[:height, :width]
    level = cv2.GaussianBlur(level, (0, 0), max(1.0, cell))
    level = np.clip(level / max(float(level.max()), 1e-9), 0.0, 1.0)
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), HEAT_COLOURS).astype(np.float32)
    alpha = (opacity * np.sqrt(level))[..., None]  # the square root keeps faint traces visible
    image[:] = (image.astype(np.float32) * (1 - alpha) + colours * alpha).round().astype(np.uint8)
    return image


def draw_heat_scale(image: np.ndarray, heat: np.ndarray, cell: int, top: str, bottom: str,
                    title: str) -> tuple[int, int, int, int] | None:
    """The key to draw_heat's colours, in place: a bar from its hottest colour (labelled `top`) down to its
    coolest (`bottom`) under `title`, in the corner of the picture where `heat` is least, so it hides little.
    Returns where it went (left, top, right, bottom); None when there is no heat, nor a key to it."""
    if not heat.size or float(heat.max()) <= 0:
        return None
    height, width = image.shape[:2]
    style = DrawStyle.for_picture(height, width)
    scale, thickness, pad = max(0.35, style.font_scale * 0.8), max(1, style.font_thickness - 1), style.pad
    (_, text_h), baseline = cv2.getTextSize("0", _FONT, scale, thickness)
    bar_w, bar_h = max(6, min(height, width) // 40), max(3 * text_h, height // 3)
    label_w = max(text_width(top, scale, thickness), text_width(bottom, scale, thickness))
    box_w = min(width, max(4 * pad + bar_w + label_w, 3 * pad + text_width(title, scale, thickness)))
    box_h = min(height, 3 * pad + text_h + baseline + bar_h + text_h // 2)
    margin = pad
    spots = [(width - box_w - margin, height - box_h - margin), (margin, height - box_h - margin),
             (width - box_w - margin, margin), (margin, margin)]
    spots = [(max(0, x), max(0, y)) for x, y in spots]

    def heat_under(spot: tuple[int, int]) -> float:
        x, y = spot
        return float(heat[y // cell:(y + box_h) // cell + 1, x // cell:(x + box_w) // cell + 1].sum())

    left, top_y = min(spots, key=heat_under)  # the first of equals: the bottom right corner
    image[top_y:top_y + box_h, left:left + box_w] = 32
    cv2.putText(image, title, (left + pad, top_y + pad + text_h), _FONT, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    bar_top = top_y + 2 * pad + text_h + baseline
    bar_h = max(2, min(bar_h, top_y + box_h - pad - bar_top))
    levels = np.linspace(255, 0, bar_h).round().astype(np.uint8).reshape(-1, 1)
    image[bar_top:bar_top + bar_h, left + pad:left + pad + bar_w] = cv2.applyColorMap(levels, HEAT_COLOURS)
    label_x = left + 2 * pad + bar_w
    for text, y in ((top, bar_top + text_h), (bottom, bar_top + bar_h)):
        cv2.putText(image, text, (label_x, y), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return left, top_y, left + box_w, top_y + box_h


def draw_box_tags(image: np.ndarray, boxes: np.ndarray, texts: Sequence[str],
                  colours: Sequence[tuple[int, int, int]]) -> None:
    """A small label under each box (a track's speed, say), inside its bottom where the picture ends, in place."""
    style = DrawStyle.for_picture(*image.shape[:2])
    style = DrawStyle(style.line, max(0.35, style.font_scale * 0.8), style.font_thickness, max(1, style.pad - 1))
    height, width = image.shape[:2]
    for box, text, colour in zip(np.asarray(boxes).reshape(-1, 4), texts, colours):
        x1, y2 = int(round(box[0])), int(round(min(box[3], height - 1)))
        spot = _label_box(text, x1, y2, style, width, above=False)
        if spot[3] > height:
            spot = _label_box(text, x1, y2, style, width, above=True)
        _draw_label_at(image, text, spot, colour, style)
