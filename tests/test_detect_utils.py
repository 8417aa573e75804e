"""Reading, prediction, filtering, drawing and writing helpers."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, leftovers, scene
from PIL import Image

from frcnn import drawing
from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core import files
from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES
from frcnn.core.detections import Detections
from frcnn.core.specs import DrawOptions
from frcnn.inference import predictor
from frcnn.model import FrcnnError, load_model
from frcnn.synthetic.checkpoints import BOOSTED_LABEL


def sample_detections() -> Detections:
    return Detections(
        boxes=np.array([[10, 10, 50, 60], [20, 30, 80, 90], [0, 0, 5, 5]], np.float32),
        scores=np.array([0.9, 0.4, 0.7], np.float32),
        labels=np.array([1, 3, 3], np.int64),
    )


def test_filter_by_threshold_and_classes():
    detections = sample_detections()
    assert len(detections.filter(0.5)) == 2
    kept = detections.filter(0.5, {3})
    assert kept.labels.tolist() == [3] and kept.scores.tolist() == pytest.approx([0.7])
    assert kept.boxes.tolist() == [[0, 0, 5, 5]]
    assert len(detections.filter(0.0, set())) == 0
    assert len(detections.filter(1.0)) == 0


def test_records_schema():
    records = sample_detections().to_records(COCO_INSTANCE_CATEGORY_NAMES)
    assert records[0] == {"label": "person", "label_id": 1, "score": 0.9, "box": [10.0, 10.0, 50.0, 60.0]}
    assert [r["label"] for r in records] == ["person", "car", "car"]


def test_resolve_classes_by_name_or_id():
    names = COCO_INSTANCE_CATEGORY_NAMES
    assert options.resolve_classes(["person", "Car", "traffic_light", "18"], names) == {1, 3, 10, 18}
    with pytest.raises(ValueError, match="unknown class 'dragon'; valid classes: person, bicycle"):
        options.resolve_classes(["dragon"], names)
    # An id without a name (COCO's unused 12) is drawn and counted by its number: it may be kept by it too.
    assert options.resolve_classes(["12"], names) == {12}
    for invalid in ("0", "91", "N/A"):  # background, out of range, a placeholder
        with pytest.raises(ValueError):
            options.resolve_classes([invalid], names)


def test_class_colours_are_stable_and_distinct():
    colours = [drawing.class_colour(i) for i in range(len(COCO_INSTANCE_CATEGORY_NAMES))]
    assert colours == [drawing.class_colour(i) for i in range(len(COCO_INSTANCE_CATEGORY_NAMES))]
    assert len(set(colours)) == len(colours)
    # Another interpreter (another hash seed) must give the same palette.
    code = "from frcnn import drawing; print([drawing.class_colour(i) for i in range(91)])"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "123"},
                           capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(colours)


def test_drawing_puts_boxes_where_the_detections_are():
    image = np.zeros((200, 300, 3), np.uint8)
    detections = Detections(np.array([[100, 80, 250, 180]], np.float32), np.array([0.88], np.float32),
                               np.array([3], np.int64))
    drawing.draw_detections(image, detections, COCO_INSTANCE_CATEGORY_NAMES)
    colour = drawing.class_colour(3)
    assert tuple(image[130, 100]) == colour and tuple(image[130, 250]) == colour  # left and right edges
    assert tuple(image[180, 175]) == colour  # bottom edge
    assert not image[130, 175].any() and not image[10, 10].any()  # inside and far outside stay untouched
    label_area = image[66:79, 101:140]  # the filled label sits just above the box's top-left corner
    filled = (label_area == colour).all(axis=2)
    assert 0.5 < filled.mean() < 1.0  # mostly background colour, with the text written on it
    assert not image[40:60, 100:160].any()  # and it is no taller than the text needs


def test_text_and_lines_scale_with_the_picture():
    thumb, photo = drawing.DrawStyle.for_picture(240, 320), drawing.DrawStyle.for_picture(3000, 4000)
    assert thumb.font_scale >= 0.4 and thumb.line >= 1
    assert photo.font_scale > 3 * thumb.font_scale and photo.line > 3 * thumb.line
    (_, text_h), _ = cv2.getTextSize("person 0.99", cv2.FONT_HERSHEY_SIMPLEX, photo.font_scale, photo.font_thickness)
    assert 0.015 < text_h / 3000 < 0.05  # a readable share of the photo's height


@pytest.fixture(scope="module")
def v1_model(checkpoints):
    return load_model("v1", torch.device("cpu"), imgsz=96, weights=checkpoints["v1"])


def test_boosted_checkpoint_predicts_boxes_in_picture_pixels(v1_model):
    image = scene(240, 320)
    (detections,), milliseconds = predictor.predict(v1_model, [image])
    assert len(detections.filter(0.5)) > 10 and milliseconds > 0
    assert set(detections.filter(0.5).labels.tolist()) == {BOOSTED_LABEL}
    assert (detections.boxes >= 0).all()
    assert (detections.boxes[:, [0, 2]] <= 320).all() and (detections.boxes[:, [1, 3]] <= 240).all()


def test_batch_gives_the_same_detections_as_one_by_one(v1_model):
    images = [scene(240, 320, seed=1), scene(240, 320, seed=2)]
    batched, _ = predictor.predict(v1_model, images)
    for image, together in zip(images, batched):
        (alone,), _ = predictor.predict(v1_model, [image])
        np.testing.assert_allclose(together.boxes, alone.boxes, atol=1e-2)
        np.testing.assert_allclose(together.scores, alone.scores, atol=1e-4)


def test_large_picture_is_shrunk_first_and_boxes_map_back(v1_model):
    small = scene(240, 320, seed=3)
    large = cv2.resize(small, (3200, 2400), interpolation=cv2.INTER_NEAREST)
    tensor, fx, fy = predictor.to_model_input(large, v1_model)
    assert tensor.shape[1:] == (96, 128) and fx == fy == 25.0
    (big,), _ = predictor.predict(v1_model, [large])
    assert len(big) > 0
    assert big.boxes[:, [0, 2]].max() <= 3200 and big.boxes[:, [1, 3]].max() <= 2400
    assert big.boxes.max() > 320  # mapped to full resolution, not left in model pixels


def test_read_image_handles_what_opencv_reads(tmp_path):
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), np.full((20, 30), 128, np.uint8))
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.full((20, 30, 3), 40000, np.uint16))
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), np.full((20, 30, 4), 200, np.uint8))
    for path in (gray, deep, alpha):
        image = files.read_image(path)
        assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert files.read_image(deep)[0, 0, 0] == 40000 // 256


def test_read_image_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif)
    assert files.read_image(path).shape == (40, 20, 3)


def test_read_image_errors(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.touch()
    text = tmp_path / "text.jpg"
    text.write_text("not a picture")
    for path, message in [(tmp_path / "missing.jpg", "not found"), (empty, "empty"),
                          (text, "not an image"), (tmp_path, "is a folder")]:
        with pytest.raises(FrcnnError, match=message):
            files.read_image(path)


def test_atomic_output_leaves_nothing_when_writing_fails(tmp_path):
    target = tmp_path / "result.jpg"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with files.atomic_output(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"previous" and leftovers(tmp_path) == []
    files.write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_output_names_are_distinct_and_predictable():
    assert du.output_names(["a/x.jpg", "b/y.png"]) == {"a/x.jpg": "x", "b/y.png": "y"}
    assert du.output_names(["a/x.jpg", "a/x.png"]) == {"a/x.jpg": "x_jpg", "a/x.png": "x_png"}
    # The same extension tells nothing apart: the folders do.
    assert du.output_names(["dirA/x.jpg", "dirB/x.jpg", "dirB/y.jpg"]) == {
        "dirA/x.jpg": "dirA_x", "dirB/x.jpg": "dirB_x", "dirB/y.jpg": "y"}
    assert du.output_names(["p/a/x.jpg", "q/a/x.jpg"]) == {"p/a/x.jpg": "p_a_x", "q/a/x.jpg": "q_a_x"}
    assert du.output_names(["a/x.jpg", "b/x.jpg", "b/x.png"]) == {"a/x.jpg": "a_x_jpg", "b/x.jpg": "b_x_jpg",
                                                                  "b/x.png": "x_png"}
    # Folder names that join to the same text still give distinct names.
    names = du.output_names(["a_b/x.jpg", "a/b_x.jpg", "b_x_jpg.jpg"])
    assert len(set(names.values())) == 3
    assert du.output_names(["http://host/pics/cat.jpg?size=2", "cat.png"]) == {
        "http://host/pics/cat.jpg?size=2": "cat_jpg", "cat.png": "cat_png"}


def test_labels_avoid_each_other_and_the_options_hide_them():
    boxes = np.array([[40, 60, 200, 180], [42, 62, 190, 170]], np.float32)  # nearly the same top-left corner
    detections = Detections(boxes, np.array([0.9, 0.8], np.float32), np.array([1, 3], np.int64))
    image = np.zeros((240, 320, 3), np.uint8)
    drawing.draw_detections(image, detections, COCO_INSTANCE_CATEGORY_NAMES)
    style = drawing.DrawStyle.for_picture(240, 320)
    spots = []
    for index in (0, 1):
        text = drawing.label_text(COCO_INSTANCE_CATEGORY_NAMES[detections.labels[index]], 0.9, DrawOptions())
        spots.append(drawing._place_label(text, boxes[index].astype(int), style, (240, 320), spots))
    assert not drawing._overlaps(*spots)
    for colour, (left, top, right, bottom) in zip((drawing.class_colour(1), drawing.class_colour(3)), spots):
        assert (image[top:bottom, left:right] == colour).all(axis=2).mean() > 0.4  # each label is visible

    # A crowd: labels that find no free spot are left out, never drawn as fragments over each other.
    crowd = Detections(np.tile(np.array([[100, 100, 140, 140]], np.float32), (20, 1)) + np.arange(20)[:, None],
                       np.linspace(0.9, 0.6, 20).astype(np.float32), np.full(20, 3, np.int64))
    spots: list = []
    for box in crowd.boxes:
        spot = drawing._place_label("car 0.90", box.astype(int), style, (240, 320), spots)
        if spot is not None:
            assert not any(drawing._overlaps(spot, other) for other in spots)
            spots.append(spot)
    assert 3 <= len(spots) < 20

    plain = np.zeros((240, 320, 3), np.uint8)
    drawing.draw_detections(plain, detections[:1], COCO_INSTANCE_CATEGORY_NAMES, DrawOptions(hide_labels=True))
    assert not plain[:58].any()  # nothing above the box: no label
    wide = np.zeros((240, 320, 3), np.uint8)
    drawing.draw_detections(wide, detections[:1], COCO_INSTANCE_CATEGORY_NAMES,
                            DrawOptions(hide_labels=True, line_width=7))
    assert (wide[120, 37:44] > 0).all() and not wide[120, 50].any()  # a 7-px left edge around x=40
    assert drawing.label_text("car", 0.876, DrawOptions(hide_conf=True)) == "car"
    assert drawing.label_text("car", 0.876, DrawOptions()) == "car 0.88"


def test_progress_bars_redraw_seldom_into_a_log(tmp_path):
    from frcnn.core.progress import LOGGED_INTERVAL_S, progress_bar

    with open(tmp_path / "log.txt", "w") as log:
        assert progress_bar(total=3, file=log).mininterval == LOGGED_INTERVAL_S
        assert progress_bar(total=3, file=log, mininterval=2).mininterval == 2
    assert progress_bar(total=3, file=open(os.devnull, "w")).mininterval == LOGGED_INTERVAL_S


def test_counting_labels_draw_arrows_that_point_each_way():
    image = np.full((200, 320, 3), 120, np.uint8)
    drawing.draw_count_line(image, (160, 10, 160, 190), {"left_to_right": {"car": 2}, "right_to_left": {"car": 2}})
    style = drawing.DrawStyle.for_picture(200, 320)
    (_, text_h), baseline = cv2.getTextSize("2 (2 car)", cv2.FONT_HERSHEY_SIMPLEX, style.font_scale,
                                            style.font_thickness)
    height, left = text_h + baseline + 2 * style.pad, 160 + style.pad
    arrows = [image[10 + row * height:10 + (row + 1) * height, left:left + 2 * text_h, 0].astype(int) for row in (0, 1)]
    # White strokes on the dark label, heavier on the side of the arrow's head.
    halves = [((arrow[:, :text_h] > 200).sum(), (arrow[:, text_h:] > 200).sum()) for arrow in arrows]
    assert halves[0][1] > halves[0][0] > 0 and halves[1][0] > halves[1][1] > 0, halves
