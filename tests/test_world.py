"""The synthetic world: seeded, valid COCO splits, a tiny-object split and a video whose ground truth is right."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from frcnn.synthetic.world import (
    CATEGORIES,
    STYLES,
    draw_picture,
    main,
    plan_tracks,
    write_split,
    write_tiny_split,
    write_video,
)

ROOT = Path(__file__).resolve().parent.parent


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def generate(folder: Path, seed: int) -> Path:
    write_split(folder / "split", seed, 4)
    write_tiny_split(folder / "tiny", seed, 1, size=(480, 270))
    write_video(folder / "video", seed, frames=8)
    return folder


def gt_rows(path: Path) -> list[list[float]]:
    rows = [[float(v) for v in line.split(",")] for line in path.read_text().splitlines()]
    assert rows and all(len(row) == 9 for row in rows)
    return rows


def test_same_seed_gives_the_same_bytes_and_another_seed_other_pictures(tmp_path):
    first, second = digests(generate(tmp_path / "a", 7)), digests(generate(tmp_path / "b", 7))
    assert first == second
    assert {"split/annotations.json", "tiny/annotations.json", "video/video.mp4", "video/gt/gt.txt"} <= set(first)
    assert not [name for name in first if ".part" in name]
    other = digests(write_split(tmp_path / "c", 8, 4).parent)
    pictures = [name for name in first if name.startswith("split/images/")]
    assert len(pictures) == 4
    assert all(other[name.removeprefix("split/")] != first[name] for name in pictures)


def test_a_picture_depends_on_its_index_not_on_the_split_length():
    picture, boxes = draw_picture(3, 2)
    again, same = draw_picture(3, 2)
    assert np.array_equal(picture, again) and boxes == same
    assert not np.array_equal(picture, draw_picture(3, 1)[0])


def test_split_is_coco_with_boxes_inside_and_every_size_bucket(tmp_path):
    path = write_split(tmp_path / "train", 0, 24)
    coco = COCO(str(path))
    assert sorted(coco.getCatIds()) == list(range(1, len(CATEGORIES) + 1))
    groups = Counter(c["supercategory"] for c in coco.loadCats(coco.getCatIds()))
    assert sorted(groups.values()).count(2) == 2  # two pairs of similar classes
    buckets = Counter()
    for image in coco.loadImgs(coco.getImgIds()):
        picture = cv2.imread(str(path.parent / "images" / image["file_name"]))
        assert picture.shape == (image["height"], image["width"], 3) == (320, 320, 3)
        for note in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            x, y, w, h = note["bbox"]
            assert w > 0 and h > 0 and note["area"] == w * h and note["iscrowd"] == 0
            assert 0 <= x and 0 <= y and x + w <= image["width"] and y + h <= image["height"]
            buckets["small" if w * h < 32 ** 2 else "medium" if w * h < 96 ** 2 else "large"] += 1
    assert min(buckets[name] for name in ("small", "medium", "large")) >= 1, buckets
    assert sum(buckets.values()) >= 3 * 24
    assert {n["category_id"] for n in coco.dataset["annotations"]} == set(coco.getCatIds())


def test_boxes_hold_objects_of_their_class_colour():
    picture, found = draw_picture(5, 0, objects=(6, 6), object_px=(30, 80))
    pixels = picture.reshape(-1, 3).astype(float)
    assert len(found) == 6
    for (x, y, w, h), category in found:
        base = STYLES[category][0]
        inside = np.linalg.norm(picture[y:y + h, x:x + w].reshape(-1, 3).astype(float) - base, axis=1) < 70
        everywhere = np.linalg.norm(pixels - base, axis=1) < 70
        # later objects may cover part of a box, so only a share of it has the class colour, but many times more
        # than the picture as a whole has
        assert inside.mean() > 0.15 and inside.mean() > 3 * everywhere.mean(), category


def test_tiny_split_has_only_small_objects_in_large_pictures(tmp_path):
    path = write_tiny_split(tmp_path / "tiny", 1, 1, size=(960, 540))
    dataset = json.loads(path.read_text())
    assert [(i["width"], i["height"]) for i in dataset["images"]] == [(960, 540)]
    assert cv2.imread(str(path.parent / "images" / dataset["images"][0]["file_name"])).shape == (540, 960, 3)
    areas = [a["area"] for a in dataset["annotations"]]
    assert len(areas) >= 25 and max(areas) < 32 ** 2 and min(areas) > 0


def test_video_frames_and_ground_truth_follow_the_known_paths(tmp_path):
    frames, size = 30, (640, 360)
    video, gt = write_video(tmp_path / "video", 2, frames=frames, size=size)
    capture, decoded = cv2.VideoCapture(str(video)), []
    while (read := capture.read())[0]:
        decoded.append(read[1])
    capture.release()
    assert len(decoded) == frames and decoded[0].shape == (size[1], size[0], 3)
    tracks = {t.track_id: t for t in plan_tracks(2, frames, size)}
    rows = gt_rows(gt)
    classes = {}
    for frame, ident, x, y, w, h, real, category, visible in rows:
        assert 1 <= frame <= frames and real == 1 and 0 < visible <= 1
        assert classes.setdefault(ident, category) == category == tracks[ident].look.category_id
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= size[0] and y + h <= size[1]
    whole = [row for row in rows if row[8] == 1 and row[2] > 0 and row[3] > 0
             and row[2] + row[4] < size[0] and row[3] + row[5] < size[1]]
    assert len(whole) >= frames
    for frame, ident, x, y, w, h, *_ in whole:
        cx, cy = tracks[ident].centre(int(frame))
        if tracks[ident].look.category_id in (1, 2, 3):  # shapes whose box is centred on them at any angle
            assert abs(x + w / 2 - cx) <= 1.0 and abs(y + h / 2 - cy) <= 1.0
        # a ring's or dotted centre is not its colour
        if STYLES[tracks[ident].look.category_id][2] in ("plain", "shaded"):
            colour = decoded[int(frame) - 1][round(cy) - 1:round(cy) + 2, round(cx) - 1:round(cx) + 2].mean(axis=(0, 1))
            distances = {c: np.linalg.norm(colour - STYLES[c][0]) for c in STYLES}
            assert min(distances, key=distances.get) == tracks[ident].look.category_id


def test_box_moves_by_the_known_velocity(tmp_path):
    _, gt = write_video(tmp_path / "video", 4, frames=20)
    tracks = {t.track_id: t for t in plan_tracks(4, 20)}
    boxes = {(int(r[0]), int(r[1])): r for r in gt_rows(gt) if r[8] == 1}
    moved = 0
    for (frame, ident), row in boxes.items():
        after = boxes.get((frame + 1, ident))
        track = tracks[ident]
        if after is None or track.bounce:
            continue
        step = np.array(after[2:4]) + np.array(after[4:6]) / 2 - np.array(row[2:4]) - np.array(row[4:6]) / 2
        assert np.abs(step - track.velocity).max() <= 1.5, (frame, ident, step, track.velocity)
        moved += 1
    assert moved >= 5


def test_tracks_cross_enter_and_leave():
    frames, (width, height) = 100, (640, 360)
    tracks = plan_tracks(0, frames, (width, height))
    assert len(tracks) == 8 and len({t.look.category_id for t in tracks}) == len(CATEGORIES)
    middle = (frames + 1) / 2
    assert np.allclose(tracks[0].centre(middle), tracks[1].centre(middle))

    def inside(track, frame):
        x, y = track.centre(frame)
        return 0 <= x < width and 0 <= y < height

    assert any(not inside(t, 1) and inside(t, frames // 2) for t in tracks)
    assert any(inside(t, frame) and not inside(t, frames) for t in tracks for frame in range(1, frames))
    for track in tracks:
        if track.bounce:
            assert all(inside(track, frame) for frame in range(1, frames + 1))


def test_command_line_writes_every_part(tmp_path):
    result = subprocess.run([sys.executable, "-m", "frcnn.synthetic.world", str(tmp_path / "world"), "--seed", "3",
                             "--pictures", "4", "--tiny", "1", "--tiny-size", "320x240", "--video-frames", "5"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for part in ("train", "val", "tiny"):
        assert (tmp_path / "world" / part / "annotations.json").is_file()
        assert f"{part}: " in result.stdout
    assert (tmp_path / "world" / "video" / "video.mp4").is_file()
    assert (tmp_path / "world" / "video" / "gt" / "gt.txt").is_file()
    assert "train: 4 pictures" in result.stdout and "val: 1 pictures" in result.stdout and "small " in result.stdout


def test_command_line_skips_empty_parts(tmp_path, capsys):
    assert main([str(tmp_path), "--pictures", "1", "--tiny", "0", "--video-frames", "0"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train", "val"]
    assert "tiny" not in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--size", "0x10"], ["--size", "320"], ["--pictures", "0"], ["--seed", "-1"],
                                 ["--tiny", "many"], ["--video-frames", "-5"]])
def test_command_line_bad_values_are_usage_errors(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "world"), *bad])
    assert stop.value.code == 2
    assert "usage:" in capsys.readouterr().err
    assert not (tmp_path / "world").exists()
