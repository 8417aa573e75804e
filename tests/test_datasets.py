"""The sets train.py and evaluate.py read: Ultralytics / Roboflow data.yaml sets, Pascal VOC trees, YOLO folders and
COCO files; what they say about a set before any model is built, and bad sets as one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ONE_THREAD, TINY_IMGSZ, assert_one_line_error, coco_to_yolo, run_script

from frcnn.core.errors import FrcnnError
from frcnn.evaluation.coco import score
from frcnn.synthetic.world import write_split
from frcnn.training.data import data_source, load_training_data, own_split
from frcnn.training.sets import coco_for_scoring
from frcnn.training.settings import DataSource, TrainSettings
from frcnn.training.ultralytics_format import label_file
from frcnn.training.voc_format import read_voc, voc_box

NAMES = ["disc", "ring", "square", "triangle", "star"]  # the synthetic world's classes, in COCO id order


def settings_for(train: DataSource, val: DataSource | None = None, val_fraction: float = 0.0) -> TrainSettings:
    return TrainSettings(model="v1", start="scratch", weights=None, trainable_layers=5, train=train, val=val,
                         val_fraction=val_fraction, epochs=1, batch=2, imgsz=64, lr=0.0025, schedule="cosine",
                         box_batch=32, seed=0, device="cpu", amp=False, workers=0, output="run")


def world(folder: Path, seed: int, pictures: int) -> tuple[Path, Path]:
    """A synthetic COCO split of 64-px pictures: its images folder and annotation file."""
    annotations = write_split(folder, seed, pictures, size=(64, 64))
    return folder / "images", annotations


def roboflow(root: Path, splits: dict[str, int]) -> Path:
    """A set as Roboflow exports it: data.yaml at the root naming ../train/images, ../valid/images, ... and each
    split's images/ and labels/ beside it."""
    for number, (split, pictures) in enumerate(splits.items()):
        images, annotations = world(root.parent / f"coco-{split}", seed=20 + number, pictures=pictures)
        coco_to_yolo(images, annotations, root / split)
        (root / split / "classes.txt").unlink()
    keys = {"train": "train", "valid": "val", "test": "test"}
    lines = [f"{keys[split]}: ../{split}/images" for split in splits]
    (root / "data.yaml").write_text("\n".join(lines) + f"\nnc: {len(NAMES)}\nnames: {json.dumps(NAMES)}\n")
    return root / "data.yaml"


def voc_tree(root: Path, splits: dict[str, int], difficult_every: int = 0) -> Path:
    """A Pascal VOC tree of synthetic pictures: Annotations/, JPEGImages/, ImageSets/Main/<split>.txt; every
    `difficult_every`-th object is marked difficult."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    count = 0
    for number, (split, pictures) in enumerate(splits.items()):
        images, annotations = world(root.parent / f"coco-{split}", seed=30 + number, pictures=pictures)
        dataset = json.loads(annotations.read_text())
        names = {category["id"]: category["name"] for category in dataset["categories"]}
        ids = []
        for image in dataset["images"]:
            identifier = f"{split}_{image['id']:04d}"
            ids.append(identifier)
            shutil.copyfile(images / image["file_name"], root / "JPEGImages" / f"{identifier}.jpg")
            objects = []
            for annotation in dataset["annotations"]:
                if annotation["image_id"] != image["id"]:
                    continue
                count += 1
                x, y, w, h = annotation["bbox"]
                # 0-based edges [x, x + w) are the 1-based pixels x + 1 .. x + w, both included
                objects.append((names[annotation["category_id"]], (x + 1, y + 1, x + w, y + h),
                                bool(difficult_every) and count % difficult_every == 0))
            write_voc_xml(root / "Annotations" / f"{identifier}.xml", f"{identifier}.jpg", image, objects)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def write_voc_xml(path: Path, filename: str, image: dict, objects: list) -> None:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{filename}</filename><size><width>{image['width']}"
             f"</width><height>{image['height']}</height><depth>3</depth></size>"]
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>"
                     f"{int(difficult)}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                     f"<ymax>{ymax}</ymax></bndbox></object>")
    path.write_text("".join(parts) + "</annotation>\n")


# ---------------------------------------------------------------- data.yaml (Ultralytics, Roboflow)


def test_a_roboflow_export_reads_its_splits_like_the_coco_set_it_came_from(tmp_path):
    yaml_path = roboflow(tmp_path / "rf", {"train": 4, "valid": 2})
    source = data_source(str(tmp_path / "rf"), None, "train")  # the folder holding data.yaml
    assert source == DataSource("ultralytics", data=str(yaml_path), split="train")
    val = own_split(source, "val")
    assert val == DataSource("ultralytics", data=str(yaml_path), split="val") and own_split(source, "test") is None
    data = load_training_data(settings_for(source, val))
    assert data.train.class_names[1:] == NAMES and len(data.train.samples) == 4 and len(data.val.samples) == 2
    coco = load_training_data(settings_for(DataSource("coco", *world(tmp_path / "again", 20, 4)))).train
    for ours, theirs in zip(data.train.samples, coco.samples):
        assert np.allclose(ours.boxes, theirs.boxes, atol=0.01) and np.array_equal(ours.labels, theirs.labels)
    assert Path(data.val.samples[0].path).parent == tmp_path / "rf" / "valid" / "images"


def test_yaml_paths_names_and_list_files_resolve_as_ultralytics_does(tmp_path):
    flat = coco_to_yolo(*world(tmp_path / "coco", 21, 5), tmp_path / "sets" / "one" / "flat")
    root = tmp_path / "sets" / "one"
    for kind in ("images", "labels"):
        (root / kind / "train").mkdir(parents=True)
        (root / kind / "val").mkdir(parents=True)
    pictures = sorted((flat / "images").iterdir())
    for number, picture in enumerate(pictures):
        split = "train" if number < 3 else "val"
        picture.rename(root / "images" / split / picture.name)
        (flat / "labels" / f"{picture.stem}.txt").rename(root / "labels" / split / f"{picture.stem}.txt")
    (root / "extra.txt").write_text("./images/val/000004.jpg\nimages/val/000005.jpg\n")
    config = tmp_path / "configs" / "set.yaml"
    config.parent.mkdir()
    # `path` relative to the yaml's folder; names as a mapping; a split as a list of a folder and a list file
    config.write_text("path: ../sets/one\ntrain: [images/train, extra.txt]\nval: images/val\n"
                      "names:\n" + "".join(f"  {number}: {name}\n" for number, name in enumerate(NAMES)))
    data = load_training_data(settings_for(data_source(str(config), None, "train"),
                                           DataSource("ultralytics", data=str(config), split="val")))
    assert data.train.class_names[1:] == NAMES
    assert [Path(s.path).name for s in data.train.samples] == ["000001.jpg", "000002.jpg", "000003.jpg",
                                                               "000004.jpg", "000005.jpg"]
    assert len(data.val.samples) == 2 and data.train.box_count() > 0


def test_a_label_file_is_found_by_the_last_images_folder():
    assert label_file(Path("/d/images/set/images/a.b.jpg")) == Path("/d/images/set/labels/a.b.txt")
    assert label_file(Path("/d/pictures/a.png")) == Path("/d/pictures/a.txt")


def test_what_detect_image_save_txt_writes_is_a_set(tmp_path):
    from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES
    from frcnn.pipelines.yolo_dataset import write_description

    out = tmp_path / "out"
    (_, yaml_path) = write_description(out, "v2", COCO_INSTANCE_CATEGORY_NAMES)
    (out / "images" / "v2").mkdir(parents=True)
    cv2.imwrite(str(out / "images" / "v2" / "photo.jpg"), np.full((60, 80, 3), 90, np.uint8))
    (out / "labels" / "v2" / "photo.txt").write_text("0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.1 0.1\n")
    source = data_source(str(yaml_path), None, "train")
    data = load_training_data(settings_for(source, own_split(source, "val")))
    assert data.train.class_names[1:3] == ["person", "bicycle"] and len(data.train.class_names) == 81
    assert data.train.samples[0].boxes.tolist()[0] == [20.0, 15.0, 60.0, 45.0]
    assert data.val is not None and len(data.val.samples) == 1  # its val names the same folder, which is said
    assert any("every validation picture is a training picture too" in line for line in data.warnings)


def test_the_summary_says_pictures_background_boxes_classes_and_orphans(tmp_path):
    yaml_path = roboflow(tmp_path / "rf", {"train": 4, "valid": 2})
    labels = tmp_path / "rf" / "train" / "labels"
    (labels / "000001.txt").write_text("")  # empty: a background picture
    (labels / "000002.txt").unlink()  # none: a background picture too
    (labels / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    data = load_training_data(settings_for(DataSource("ultralytics", data=str(yaml_path), split="train"),
                                           DataSource("ultralytics", data=str(yaml_path), split="val")))
    train_line, val_line = data.summary().splitlines()
    boxes = data.train.box_count()
    assert train_line.startswith(f"train: 4 pictures (2 background, without boxes), {boxes} boxes in ")
    assert "disc " in train_line and "star " in train_line
    assert val_line.startswith(f"val: 2 pictures (0 background, without boxes), {data.val.box_count()} boxes")
    assert any("1 label file(s) without a picture" in line and "stray.txt" in line for line in data.warnings)


def test_most_pictures_missing_stops_with_one_line(tmp_path):
    images, annotations = world(tmp_path / "set", 22, 5)
    for picture in sorted(images.iterdir())[:3]:
        picture.unlink()
    with pytest.raises(FrcnnError, match=r"3 of the 5 pictures the train set lists are missing or unreadable"):
        load_training_data(settings_for(DataSource("coco", str(images), str(annotations))))
    (images / "000001.jpg").write_bytes((images / "000004.jpg").read_bytes())  # 2 of 5 missing: a warning
    data = load_training_data(settings_for(DataSource("coco", str(images), str(annotations))))
    assert len(data.train.samples) == 3 and any("2 picture(s) missing" in line for line in data.warnings)


# ---------------------------------------------------------------- Pascal VOC


def test_voc_boxes_are_converted_from_one_based_inclusive_corners(tmp_path):
    root = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages"):
        (root / folder).mkdir(parents=True)
    picture = np.zeros((40, 50, 3), np.uint8)
    picture[5:17, 10:30] = 255  # rows 5..16, columns 10..29 (0-based): VOC's 1-based pixels 11..30 and 6..17
    cv2.imwrite(str(root / "JPEGImages" / "a.png"), picture)
    write_voc_xml(root / "Annotations" / "a.xml", "a.png", {"width": 50, "height": 40},
                  [("thing", (11, 6, 30, 17), False)])
    labelled, _ = read_voc(str(root), None, None, "train")
    rows, columns = np.nonzero(picture[:, :, 0])
    painted = [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]  # 0-based edges of the pixels
    assert labelled.samples[0].boxes.tolist() == [painted] == [[10, 5, 30, 17]]
    assert voc_box(1, 1, 1, 1) == (0, 0, 1, 1)  # one pixel, the first


def test_a_voc_tree_is_valid_for_torchvision_and_reads_the_same(tmp_path):
    from torchvision.datasets import VOCDetection

    root = voc_tree(tmp_path / "VOCdevkit" / "VOC2007", {"train": 3, "val": 2}, difficult_every=4)
    oracle = VOCDetection(str(tmp_path), year="2007", image_set="train", download=False)
    labelled, findings = read_voc(str(root), "train", None, "train")
    assert len(oracle) == len(labelled.samples) == 3
    assert labelled.class_names[1:] == sorted(NAMES)  # VOC's own order: alphabetical
    for index, sample in enumerate(labelled.samples):
        image, target = oracle[index]
        assert image.size == (sample.width, sample.height)
        objects = target["annotation"]["object"]
        expected = {False: [], True: []}
        for obj in objects:
            corners = [float(obj["bndbox"][key]) for key in ("xmin", "ymin", "xmax", "ymax")]
            expected[obj["difficult"] == "1"].append((labelled.class_names.index(obj["name"]), voc_box(*corners)))
        ours = {False: sorted(zip(sample.labels.tolist(), map(tuple, sample.boxes.tolist()))),
                True: sorted(zip(sample.ignored_labels.tolist(), map(tuple, sample.ignored_boxes.tolist())))}
        assert ours == {key: sorted(value) for key, value in expected.items()}
    difficult = sum(len(sample.ignored_labels) for sample in labelled.samples)
    assert difficult > 0 and not any("difficult" in line for line in findings.warnings())
    assert labelled.describe().endswith(f"; {difficult} difficult objects: not learnt, ignored in scoring")


def test_difficult_objects_are_neither_misses_nor_false_positives_in_scoring(tmp_path):
    root = voc_tree(tmp_path / "voc", {"val": 3}, difficult_every=3)
    labelled, _ = read_voc(str(root), "val", None, "val")
    assert sum(len(s.ignored_labels) for s in labelled.samples) > 0
    coco = coco_for_scoring(labelled)

    def found(boxes, labels, score_value=0.9):
        return [{"image_id": sample.image_id, "category_id": int(label), "score": score_value,
                 "bbox": [x1, y1, x2 - x1, y2 - y1]}
                for sample in labelled.samples for (x1, y1, x2, y2), label in zip(boxes(sample), labels(sample))]

    ids = [sample.image_id for sample in labelled.samples]
    plain = found(lambda s: s.boxes.tolist(), lambda s: s.labels)
    # Every object found, and every difficult one too (at a higher score): no false positives
    with_difficult = plain + found(lambda s: s.ignored_boxes.tolist(), lambda s: s.ignored_labels, 0.95)
    assert score(coco, plain, ids)["AP50"] == pytest.approx(1.0)
    assert score(coco, with_difficult, ids)["AP50"] == pytest.approx(1.0)
    assert coco.dataset["images"][0]["file_name"] == "val_0001.jpg"


# ---------------------------------------------------------------- typos and near-miss paths


def read_train(path: Path):
    source = data_source(str(path), None, "train")
    return load_training_data(settings_for(source, own_split(source, "val")))


@pytest.mark.parametrize("typo, said", [
    ("names:", "no class names (a data.yaml needs names:, a list or 0: name, 1: name, ...); unknown key 'nmaes' "
               "(did you mean 'names'?), ignored"),
    ("train:", "no train split (a data.yaml needs train: and names:); unknown key 'trian' (did you mean 'train'?), "
               "ignored")])
def test_a_typo_in_a_needed_key_stops_naming_the_key_meant(tmp_path, typo, said):
    yaml_path = roboflow(tmp_path / "rf", {"train": 2})
    wrong = {"names:": "nmaes:", "train:": "trian:"}[typo]
    yaml_path.write_text(yaml_path.read_text().replace(typo, wrong))
    with pytest.raises(FrcnnError) as caught:
        read_train(yaml_path)
    assert str(caught.value) == f"{yaml_path}: {said}"


def test_other_unknown_keys_warn_once_and_nc_alone_is_no_names(tmp_path):
    yaml_path = roboflow(tmp_path / "rf", {"train": 3, "valid": 2})
    yaml_path.write_text(yaml_path.read_text() + "tset: ../test/images\ncolour: blue\n")
    warnings = read_train(yaml_path).warnings
    assert [line for line in warnings if "unknown key" in line] == [
        f"train: {yaml_path}: unknown key 'tset' (did you mean 'test'?), ignored",
        f"train: {yaml_path}: unknown key 'colour', ignored"]
    yaml_path.write_text("train: ../train/images\nnc: 5\n")
    with pytest.raises(FrcnnError, match="no class names"):
        read_train(yaml_path)


def test_the_one_set_below_a_folder_is_found(tmp_path):
    yaml_path = roboflow(tmp_path / "above" / "boats", {"train": 2})
    assert data_source(str(tmp_path / "above"), None, "train") == DataSource("ultralytics", data=str(yaml_path),
                                                                               split="train")
    # torchvision's VOCDetection root: VOCdevkit/VOC2012 below it
    tree = voc_tree(tmp_path / "voc-root" / "VOCdevkit" / "VOC2012", {"train": 2, "val": 1})
    source = data_source(str(tmp_path / "voc-root"), None, "train")
    assert source == DataSource("voc", data=str(tree), split="train")
    assert len(load_training_data(settings_for(source)).train.samples) == 2
    # two sets below: named, not guessed
    voc_tree(tmp_path / "voc-root" / "VOCdevkit" / "VOC2007", {"train": 2})
    with pytest.raises(FrcnnError) as caught:
        read_train(tmp_path / "voc-root")
    older = tmp_path / "voc-root" / "VOCdevkit" / "VOC2007"
    assert str(caught.value) == f"{tmp_path / 'voc-root'}: holds 2 sets, not one: {older}, {tree}; give one of them " \
                                f"to --data"


def test_a_path_that_nearly_names_a_set_says_what_it_is(tmp_path):
    yaml_path = roboflow(tmp_path / "boats", {"train": 2})
    with pytest.raises(FrcnnError) as caught:
        read_train(tmp_path / "boats" / "data.yml")
    assert str(caught.value) == f"{tmp_path / 'boats' / 'data.yml'}: not found (did you mean {yaml_path}?)"
    notes = tmp_path / "boats" / "notes.txt"
    notes.write_text("boats\n")
    with pytest.raises(FrcnnError) as caught:
        read_train(notes)
    assert str(caught.value) == (f"{notes}: a .txt file, not a data.yaml (.yaml or .yml), a Pascal VOC tree or a "
                                 f"YOLO-format folder")


# ---------------------------------------------------------------- train.py: bad sets, and real runs


def _bad_yaml(tmp_path: Path) -> list[str]:
    (tmp_path / "data.yaml").write_text("train: [images\nnames: {0: a\n")
    return ["--data", str(tmp_path / "data.yaml")]


def _missing_split(tmp_path: Path) -> list[str]:
    yaml_path = roboflow(tmp_path / "rf", {"train": 2})
    yaml_path.write_text(yaml_path.read_text().replace("../train/images", "../training/images"))
    return ["--data", str(yaml_path)]


def _typo(tmp_path: Path, key: str, typo: str) -> list[str]:
    yaml_path = roboflow(tmp_path / "rf", {"train": 2})
    yaml_path.write_text(yaml_path.read_text().replace(key, typo))
    return ["--data", str(yaml_path)]


def _class_beyond_names(tmp_path: Path) -> list[str]:
    yaml_path = roboflow(tmp_path / "rf", {"train": 2})
    (tmp_path / "rf" / "train" / "labels" / "000002.txt").write_text("5 0.5 0.5 0.2 0.2\n")
    return ["--data", str(yaml_path)]


def _bad_xml(tmp_path: Path) -> list[str]:
    root = voc_tree(tmp_path / "voc", {"train": 2})
    (root / "Annotations" / "train_0002.xml").write_text("<annotation><object><name>disc</name>")
    return ["--data", str(root)]


def _bad_box(tmp_path: Path) -> list[str]:
    root = voc_tree(tmp_path / "voc", {"train": 2})
    xml = root / "Annotations" / "train_0001.xml"
    xml.write_text(xml.read_text().replace("<xmin>", "<xmin>x", 1))
    return ["--data", str(root)]


BAD_SETS = {
    "bad yaml": (_bad_yaml, "data.yaml: not a readable YAML file", 1),
    "missing split": (_missing_split, "the train split", 1),
    "class beyond names": (_class_beyond_names, "000002.txt:1: class 5 is not in the class names", 1),
    "unreadable xml": (_bad_xml, "train_0002.xml: not a readable VOC annotation file", 1),
    "bad voc box": (_bad_box, "train_0001.xml: object 1", 1),
    "typo'd names": (lambda t: _typo(t, "names:", "nmaes:"), "unknown key 'nmaes' (did you mean 'names'?)", 1),
    "labels with a yaml": (lambda t: [*_class_beyond_names(t), "--labels", str(t / "names.txt")], "--labels", 2),
}


@pytest.mark.parametrize("case", BAD_SETS)
def test_a_bad_set_is_one_line_and_writes_nothing(tmp_path, case):
    make, expected, code = BAD_SETS[case]
    result = run_script("train.py", "--from-scratch", "--output", str(tmp_path / "run"), *make(tmp_path),
                        cwd=tmp_path)
    if code == 2:
        assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr
    else:
        assert_one_line_error(result)
    assert expected in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def _short_run(data: Path, run: Path, *extra: str) -> list[str]:
    return ["--model", "v1", "--from-scratch", "--data", str(data), "--imgsz", TINY_IMGSZ, "--batch", "2",
            "--epochs", "1", "--box-batch", "16", "--loader-workers", "0", "--output", str(run), *extra]


def test_train_py_trains_on_a_data_yaml_and_validates_on_its_val_split(tmp_path):
    yaml_path = roboflow(tmp_path / "rf", {"train": 3, "valid": 2})
    result = run_script("train.py", *_short_run(yaml_path, tmp_path / "run"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "train: 3 pictures (0 background, without boxes)" in result.stderr
    assert "val: 2 pictures" in result.stderr
    assert (tmp_path / "run" / "labels.txt").read_text().split() == ["__background__", *NAMES]
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert settings["val"] == {**settings["train"], "split": "val"} and settings["val_fraction"] == 0.0
    assert len((tmp_path / "run" / "results.csv").read_text().splitlines()) == 2


def test_train_py_trains_on_a_voc_tree_and_validates_on_its_val_list(tmp_path):
    root = voc_tree(tmp_path / "voc", {"train": 3, "val": 2}, difficult_every=5)
    result = run_script("train.py", *_short_run(root, tmp_path / "run"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "train: 3 pictures" in result.stderr and "val: 2 pictures" in result.stderr
    assert "difficult objects: not learnt, ignored in scoring" in result.stderr
    assert (tmp_path / "run" / "labels.txt").read_text().split() == ["__background__", *sorted(NAMES)]
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert (settings["train"]["format"], settings["train"]["split"]) == ("voc", "train")
    assert settings["val"]["split"] == "val"


# ---------------------------------------------------------------- evaluate.py on a split


@pytest.fixture
def coco_checkpoint_as_world(checkpoints, tmp_path) -> list[str]:
    """The v1 test checkpoint with its first five classes named as the synthetic world's (scoring matches by name)."""
    labels = tmp_path / "world-names.txt"
    labels.write_text("".join(f"{name}\n" for name in NAMES + [f"other{n}" for n in range(85)]))
    return ["--model", "v1", "--weights", str(checkpoints["v1"]), "--labels", str(labels), "--imgsz", TINY_IMGSZ,
            "--backend", "torch", "--device", "cpu"]


def test_evaluate_py_scores_the_split_of_a_data_yaml(coco_checkpoint_as_world, tmp_path):
    yaml_path = roboflow(tmp_path / "rf", {"train": 2, "valid": 3, "test": 2})
    for split, pictures in (("test", 2), (None, 3)):  # --split test, then the default: val
        out = tmp_path / f"eval-{split}"
        result = run_script("evaluate.py", *coco_checkpoint_as_world, "--data", str(yaml_path),
                            *(["--split", split] if split else []), "--output", str(out), cwd=tmp_path,
                            env=ONE_THREAD)
        assert result.returncode == 0, result.stderr
        name = split or "val"
        assert f"{name}: {pictures} pictures" in result.stderr
        assert json.loads((out / "v1_metrics.json").read_text())["images"] == pictures
        scored = json.loads((out / f"set_{name}.json").read_text())
        assert len(scored["images"]) == pictures and "AP50" in result.stdout


def test_evaluate_py_ignores_difficult_voc_objects(coco_checkpoint_as_world, tmp_path):
    root = voc_tree(tmp_path / "voc", {"train": 2, "val": 2}, difficult_every=3)
    result = run_script("evaluate.py", *coco_checkpoint_as_world, "--data", str(root), "--output",
                        str(tmp_path / "out"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "val: 2 pictures" in result.stderr and "difficult objects: not learnt, ignored in scoring" in result.stderr
    scored = json.loads((tmp_path / "out" / "set_val.json").read_text())
    assert {a["iscrowd"] for a in scored["annotations"]} == {0, 1}


@pytest.mark.parametrize("case", ["no such split", "split without a set"])
def test_evaluate_py_split_mistakes(coco_checkpoint_as_world, tmp_path, case):
    yaml_path = roboflow(tmp_path / "rf", {"train": 2, "valid": 1})
    if case == "no such split":
        result = run_script("evaluate.py", *coco_checkpoint_as_world, "--data", str(yaml_path), "--split", "test",
                            "--output", str(tmp_path / "out"), cwd=tmp_path)
        assert_one_line_error(result)
        assert "no test split" in result.stderr
    else:
        images, annotations = world(tmp_path / "coco", 3, 2)
        result = run_script("evaluate.py", *coco_checkpoint_as_world, "--images", str(images), "--annotations",
                            str(annotations), "--split", "test", "--output", str(tmp_path / "out"), cwd=tmp_path)
        assert result.returncode == 2 and "--split" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_sets_own_val_split_validates_unless_a_share_is_held_out(tmp_path):
    from frcnn.cli.train import build_parser, settings_from

    yaml_path = roboflow(tmp_path / "rf", {"train": 2, "valid": 1})
    voc = voc_tree(tmp_path / "voc", {"train": 2})  # no val.txt
    parser = build_parser()

    def settings(*args: str) -> TrainSettings:
        return settings_from(parser.parse_args([*args, "--from-scratch"]), parser)

    own = settings("--data", str(tmp_path / "rf"))
    assert own.val == DataSource("ultralytics", data=str(yaml_path), split="val") and own.val_fraction == 0
    held = settings("--data", str(yaml_path), "--val-fraction", "0.5")
    assert held.val is None and held.val_fraction == 0.5
    tree = settings("--data", str(voc), "--labels", str(tmp_path / "names.txt"))
    assert tree.train == DataSource("voc", data=str(voc), labels=str(tmp_path / "names.txt"), split="train")
    assert tree.val is None and tree.val_fraction == 0.1
