"""train.py: fine-tuning v1 / v2 on COCO- and YOLO-format sets, resuming exactly, and bad data as one clear line.

The runs are tiny (a few 64-px synthetic pictures, from scratch); the `tiny_trained` fixture's run is shared.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import mean

import numpy as np
import pytest
import torch
from helpers import (
    ONE_THREAD,
    ROOT,
    TINY_IMGSZ,
    assert_one_line_error,
    coco_to_yolo,
    leftovers,
    run_script,
    start_script,
    step_losses,
    tiny_train_args,
)

from frcnn.synthetic.world import write_split
from frcnn.training.data import load_training_data
from frcnn.training.settings import DataSource, TrainSettings


def set_of(run: Path) -> tuple[Path, Path]:
    """The images folder and annotation file a run trained on."""
    train = json.loads((run / "settings.json").read_text())["train"]
    return Path(train["images"]), Path(train["annotations"])


def as_yolo(args: list[str], data: Path) -> list[str]:
    """The same options with a YOLO-format set instead of the COCO-format one."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--images", "--annotations"):
            skip = True
        else:
            out.append(arg)
    return [*out, "--data", str(data)]


def states_equal(a: Path, b: Path) -> bool:
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------- options


def test_help_is_fast_and_imports_no_torch(tmp_path):
    started = time.perf_counter()
    result = run_script("train.py", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert time.perf_counter() - started < 10
    for option in ("--from-scratch", "--weights", "--data", "--val-fraction", "--box-batch", "--resume", "--no-amp"):
        assert option in result.stdout
    assert "128 is much faster" in " ".join(result.stdout.split())
    probe = subprocess.run([sys.executable, "-c", "import sys, train; print('torch' in sys.modules)"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60, check=False)
    assert probe.stdout.strip() == "False", probe.stderr


@pytest.mark.parametrize("args", [
    [],  # no training set
    ["--images", "a"],
    ["--data", "a", "--images", "b", "--annotations", "c"],
    ["--images", "a", "--annotations", "b", "--labels", "c"],
    ["--data", "a", "--from-scratch", "--trainable-layers", "2"],
    ["--data", "a", "--weights", "w.pth", "--from-scratch"],
    ["--data", "a", "--val-data", "b", "--val-fraction", "0.2"],
    ["--data", "a", "--trainable-layers", "6"],
    ["--data", "a", "--epochs", "0"],
    ["--data", "a", "--imgsz", "16"],
    ["--resume", "run", "--epochs", "3"],
    ["--data", "a", "--ray-workers", "2"],  # without --ray
    ["--resume", "run", "--ray", "--ray-workers", "2"],  # a resumed run keeps its workers
], ids=lambda args: " ".join(args) or "nothing")
def test_usage_errors_exit_2(tmp_path, args):
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


def test_resume_and_renamed_options_say_what_is_meant(tmp_path):
    missing = run_script("train.py", "--resume", "no-such-run", cwd=tmp_path)
    assert missing.returncode == 2 and "--resume no-such-run: no such folder" in missing.stderr
    (tmp_path / "run").mkdir()
    extra = run_script("train.py", "--resume", "run", "--epochs", "3", cwd=tmp_path)
    assert "(only --loader-workers, --device, --ray and --cpus-per-worker)" in extra.stderr
    # The old spelling of --loader-workers still works, with a notice: here it reaches the missing training set.
    old = run_script("train.py", "--workers", "0", cwd=tmp_path)
    assert "notice: --workers is now --loader-workers" in old.stderr and old.returncode == 2


# ---------------------------------------------------------------- learning


def test_tiny_v1_learns_and_its_checkpoint_detects(tiny_trained, tmp_path):
    losses = step_losses(tiny_trained)
    assert len(losses) == 12
    assert mean(losses[-3:]) < mean(losses[:3]), losses
    for name in ("best.pth", "last.pth", "labels.txt", "settings.json", "results.csv", "curves.png",
                 "resume/state.pth"):
        assert (tiny_trained / name).is_file(), name
    rows = (tiny_trained / "results.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("epoch,lr,loss,") and ",AP,AP50," in rows[0]
    names = (tiny_trained / "labels.txt").read_text().split("\n")
    assert names[:6] == ["__background__", "disc", "ring", "square", "triangle", "star"]
    images, _ = set_of(tiny_trained)
    result = run_script("detect_image.py", "--model", "v1", "--weights", str(tiny_trained / "best.pth"),
                        "--labels", str(tiny_trained / "labels.txt"), "--input", str(images / "000001.jpg"),
                        "--imgsz", TINY_IMGSZ, "--threshold", "0", "--json", "--save-txt", "--backend", "torch",
                        "--device", "cpu", "--output", str(tmp_path / "out"), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    # A model this young may find nothing above torchvision's 0.05 floor; the names it would give are the set's.
    classes = (tmp_path / "out" / "labels" / "v1" / "classes.txt").read_text().split()
    assert classes == names[1:6]
    record = json.loads((tmp_path / "out" / "000001_v1.json").read_text())
    assert "best.pth" in record["results"][0]["weights"]
    assert {d["label"] for d in record["results"][0]["detections"]} <= set(classes)


def test_v2_fine_tunes_a_checkpoint_of_other_classes_past_bad_data(checkpoints, tmp_path):
    annotations = write_split(tmp_path / "set", seed=7, pictures=4, size=(64, 64))
    dataset = json.loads(annotations.read_text())
    dataset["images"].append({"id": 99, "file_name": "gone.jpg", "width": 64, "height": 64})
    dataset["annotations"] += [
        {"id": 990, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 20], "area": 0, "iscrowd": 0},
        {"id": 991, "image_id": 2, "category_id": 2, "bbox": [200, 200, 10, 10], "area": 100, "iscrowd": 0}]
    annotations.write_text(json.dumps(dataset))
    run = tmp_path / "run"
    # v2's box head (four convolutions per sampled box) is most of a step here: few boxes, and no validation.
    result = run_script("train.py", "--model", "v2", "--weights", str(checkpoints["v2"]), "--images",
                        str(tmp_path / "set" / "images"), "--annotations", str(annotations), "--imgsz", "64",
                        "--batch", "2", "--epochs", "4", "--box-batch", "8", "--val-fraction", "0",
                        "--loader-workers", "0", "--output", str(run), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("gone.jpg") == 1
    assert "1 of zero area dropped (" in result.stderr and "1 outside the picture dropped (" in result.stderr
    assert "box predictor is replaced" in result.stderr
    assert len(re.findall(r"^epoch \d/4 ", result.stdout, re.MULTILINE)) == 4
    losses = step_losses(run)
    assert len(losses) == 8 and mean(losses[-3:]) < mean(losses[:3]), losses
    detected = run_script("detect_image.py", "--model", "v2", "--weights", str(run / "best.pth"), "--labels",
                          str(run / "labels.txt"), "--input", str(tmp_path / "set" / "images" / "000001.jpg"),
                          "--imgsz", "64", "--proposals", "100", "--threshold", "0", "--json", "--backend", "torch",
                          "--device", "cpu", "--output", str(tmp_path / "out"), cwd=tmp_path, env=ONE_THREAD)
    assert detected.returncode == 0, detected.stderr
    record = json.loads((tmp_path / "out" / "000001_v2.json").read_text())
    found = {detection["label"] for detection in record["results"][0]["detections"]}
    assert found <= {"disc", "ring", "square", "triangle", "star"}, found


def test_yolo_format_trains_like_coco(tiny_trained, tmp_path):
    images, annotations = set_of(tiny_trained)
    data = coco_to_yolo(images, annotations, tmp_path / "yolo")
    args = as_yolo(tiny_train_args(images, annotations, tmp_path / "run", "--epochs", "1"), data)
    result = run_script("train.py", *args, cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert step_losses(tmp_path / "run")[0] == pytest.approx(step_losses(tiny_trained)[0], rel=1e-3)
    assert (tmp_path / "run" / "labels.txt").read_text() == (tiny_trained / "labels.txt").read_text()


# ---------------------------------------------------------------- stopping and resuming


def _interrupt_when(process: subprocess.Popen, pattern: str, timeout: float = 240,
                    signum: int = signal.SIGINT) -> str:
    """Send `signum` once stderr matches `pattern`; return all of stderr once the process has ended."""
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not re.search(pattern, "".join(chunks)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signum)
    process.wait(timeout=timeout)
    reader.join(timeout=10)
    return "".join(chunks)


def test_interrupted_run_resumes_to_the_same_weights(tiny_trained, tmp_path):
    images, annotations = set_of(tiny_trained)
    run = tmp_path / "run"
    process = start_script("train.py", *tiny_train_args(images, annotations, run, "--loader-workers", "1"),
                           cwd=tmp_path, env=ONE_THREAD)
    # Stop during the first step of epoch 2: saved mid-epoch, with a different worker count from the resume's.
    stderr = _interrupt_when(process, r"epoch 2/6:\s+0%")
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"resume with: python train.py --resume {run}" in stderr.splitlines()[-1]
    assert (run / "resume" / "state.pth").is_file() and not leftovers(run)
    result = run_script("train.py", "--resume", str(run), "--loader-workers", "0", cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "resuming at epoch 2, step 1" in result.stderr
    assert states_equal(run / "last.pth", tiny_trained / "last.pth")
    assert np.allclose(step_losses(run), step_losses(tiny_trained), rtol=1e-6)


def test_an_output_folder_keeps_its_run(tiny_trained, tmp_path):
    images, annotations = set_of(tiny_trained)
    other = run_script("train.py", *tiny_train_args(images, annotations, tiny_trained, "--epochs", "7"), cwd=tmp_path)
    assert_one_line_error(other)
    assert "holds another training run (its epochs setting differs: 6 there, 7 now)" in other.stderr
    assert "--resume" in other.stderr
    again = run_script("train.py", *tiny_train_args(images, annotations, tiny_trained), cwd=tmp_path)
    assert_one_line_error(again)
    assert "finished" in again.stderr
    resumed = run_script("train.py", "--resume", str(tiny_trained), cwd=tmp_path)
    assert resumed.returncode == 0 and "nothing to do" in resumed.stderr, resumed.stderr


def test_a_saved_state_without_its_settings_names_the_way_out(tiny_trained, tmp_path):
    images, annotations = set_of(tiny_trained)
    orphan = tmp_path / "orphan"
    shutil.copytree(tiny_trained / "resume", orphan / "resume")  # what a run leaves when its settings are lost
    for args in (tiny_train_args(images, annotations, orphan), ["--resume", str(orphan)]):
        result = run_script("train.py", *args, cwd=tmp_path)
        assert_one_line_error(result)
        assert f"delete {orphan / 'resume'} to start afresh there, or give another --output" in result.stderr
    shutil.rmtree(orphan / "resume")
    fresh = run_script("train.py", *tiny_train_args(images, annotations, orphan, "--epochs", "1"), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr


def test_missing_coco_weights_point_to_weights_or_from_scratch(tiny_trained, tmp_path):
    images, annotations = set_of(tiny_trained)
    args = [arg for arg in tiny_train_args(images, annotations, tmp_path / "run") if arg != "--from-scratch"]
    result = run_script("train.py", *args, cwd=tmp_path)
    assert_one_line_error(result)
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "COCO weights" in error and "--weights PATH" in error and "--from-scratch" in error
    assert not (tmp_path / "run" / "settings.json").exists()


# ---------------------------------------------------------------- bad data


@pytest.fixture
def small_set(tmp_path) -> tuple[Path, Path]:
    annotations = write_split(tmp_path / "set", seed=3, pictures=3, size=(64, 64))
    return tmp_path / "set" / "images", annotations


def _edit(annotations: Path, change) -> Path:
    dataset = json.loads(annotations.read_text())
    change(dataset)
    annotations.write_text(json.dumps(dataset))
    return annotations


def _yolo(small_set, tmp_path, line: str | None = None, classes: bool = True) -> list[str]:
    data = coco_to_yolo(*small_set, tmp_path / "yolo")
    if line is not None:
        (data / "labels" / "000002.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    if not classes:
        (data / "classes.txt").unlink()
    return ["--data", str(data)]


def _coco(small_set, change=None, text: str | None = None, images: Path | None = None) -> list[str]:
    if text is not None:
        small_set[1].write_text(text)
    if change is not None:
        _edit(small_set[1], change)
    return ["--images", str(images or small_set[0]), "--annotations", str(small_set[1])]


BAD_SETS = {
    "annotations not JSON": (lambda s, t: _coco(s, text="{not json"), "not a readable JSON annotation file"),
    "no images": (lambda s, t: _coco(s, lambda d: d.update(images=[], annotations=[])), "lists no images"),
    "no picture readable": (lambda s, t: _coco(s, images=t), "no readable pictures"),
    "no boxes": (lambda s, t: _coco(s, lambda d: d.update(annotations=[])), "no boxes to learn from"),
    "bbox malformed": (lambda s, t: _coco(s, lambda d: d["annotations"][0].update(bbox=[1, 2, 3])),
                       "has no valid bbox"),
    "unknown category": (lambda s, t: _coco(s, lambda d: d["annotations"][0].update(category_id=42)),
                         "names category 42"),
    "yolo fields": (lambda s, t: _yolo(s, t, "0 0.5 0.5 0.2"), "000002.txt:2: expected 'class cx cy w h'"),
    "yolo class": (lambda s, t: _yolo(s, t, "7 0.5 0.5 0.2 0.2"), "000002.txt:2: class 7 is not"),
    "yolo number": (lambda s, t: _yolo(s, t, "1 0.5 x 0.2 0.2"), "000002.txt:2: not a class number"),
    "yolo classes": (lambda s, t: _yolo(s, t, classes=False), "no class names"),
}


@pytest.mark.parametrize("case", BAD_SETS)
def test_bad_data_is_one_line_before_any_model(small_set, tmp_path, case):
    make, expected = BAD_SETS[case]
    result = run_script("train.py", "--from-scratch", "--output", str(tmp_path / "run"), *make(small_set, tmp_path),
                        cwd=tmp_path)
    assert_one_line_error(result)
    assert expected in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_a_validation_class_the_training_set_lacks_is_one_line(small_set, tmp_path):
    val = tmp_path / "val.json"
    val.write_text(small_set[1].read_text())
    _edit(val, lambda d: d["categories"].append({"id": 9, "name": "hexagon"}))
    result = run_script("train.py", "--from-scratch", "--images", str(small_set[0]), "--annotations",
                        str(small_set[1]), "--val-images", str(small_set[0]), "--val-annotations", str(val),
                        cwd=tmp_path)
    assert_one_line_error(result)
    assert "classes the training set does not: hexagon" in result.stderr


def _settings(train: DataSource, **changes) -> TrainSettings:
    base = TrainSettings(model="v1", start="scratch", weights=None, trainable_layers=5, train=train, val=None,
                         val_fraction=0.0, epochs=1, batch=2, imgsz=64, lr=0.0025, schedule="cosine", box_batch=32,
                         seed=0, device="cpu", amp=False, workers=0, output="run")
    return dataclasses.replace(base, **changes)


def test_bad_pictures_and_boxes_are_dropped_and_said_once(small_set):
    images, annotations = small_set
    (images / "broken.jpg").write_bytes(b"not a picture")

    def damage(dataset):
        dataset["images"] += [{"id": 98, "file_name": "broken.jpg", "width": 64, "height": 64},
                              {"id": 99, "file_name": "gone.jpg", "width": 64, "height": 64}]
        dataset["categories"].append({"id": 6, "name": "hexagon"})
        dataset["annotations"] += [
            {"id": 900, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10], "iscrowd": 0},
            {"id": 901, "image_id": 1, "category_id": 1, "bbox": [70, 70, 5, 5], "iscrowd": 0},
            {"id": 902, "image_id": 2, "category_id": 2, "bbox": [50, 50, 30, 30], "iscrowd": 0},
            {"id": 903, "image_id": 2, "category_id": 2, "bbox": [0, 0, 30, 30], "iscrowd": 1}]

    _edit(annotations, damage)
    data = load_training_data(_settings(DataSource("coco", str(images), str(annotations))))
    assert len(data.train.samples) == 3 and data.val is None
    lines = "\n".join(data.warnings)
    assert len(data.warnings) == 3, lines
    assert "2 picture(s) missing or unreadable" in lines and "broken.jpg" in lines and "gone.jpg" in lines
    # Each kind of fix names the pictures it was made in.
    assert ("boxes 1 of zero area dropped (000001.jpg), 1 outside the picture dropped (000001.jpg), 1 clipped to "
            "the picture (000002.jpg)") in lines
    assert "no boxes of 1 class(es)" in lines and "hexagon" in lines
    clipped = data.train.samples[1].boxes
    assert clipped.max() <= 64


def test_yolo_reads_the_save_txt_layout_score_columns_pictures_without_labels_and_orphans(small_set, tmp_path):
    flat = coco_to_yolo(*small_set, tmp_path / "flat")
    data = tmp_path / "yolo"  # detect_image.py --save-txt's layout: images/<model>/, labels/<model>/ with classes.txt
    (data / "labels").mkdir(parents=True)
    (data / "images").mkdir()
    (flat / "images").rename(data / "images" / "v2")
    (flat / "labels").rename(data / "labels" / "v2")
    (flat / "classes.txt").rename(data / "labels" / "v2" / "classes.txt")
    label = data / "labels" / "v2" / "000001.txt"
    label.write_text("".join(line.rstrip() + " 0.91\n" for line in label.read_text().splitlines()))
    (data / "labels" / "v2" / "000003.txt").unlink()
    (data / "labels" / "v2" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    coco = load_training_data(_settings(DataSource("coco", str(small_set[0]), str(small_set[1]))))
    yolo = load_training_data(_settings(DataSource("yolo", data=str(data))))
    assert yolo.train.class_names == coco.train.class_names
    assert [len(s.labels) for s in yolo.train.samples] == [len(coco.train.samples[0].labels),
                                                           len(coco.train.samples[1].labels), 0]
    assert np.allclose(yolo.train.samples[0].boxes, coco.train.samples[0].boxes, atol=1e-3)
    assert any("1 label file(s) without a picture" in line for line in yolo.warnings)


def test_a_picture_that_fails_to_decode_in_training_is_skipped_and_named_once(small_set, capsys):
    from frcnn.training.loaders import TrainBatches
    from frcnn.training.loop import Hooks

    images, annotations = small_set
    data = load_training_data(_settings(DataSource("coco", str(images), str(annotations))))
    # Damaged after the check: the header reads, the rest does not decode.
    Path(data.train.samples[0].path).write_bytes(Path(data.train.samples[0].path).read_bytes()[:20])
    warnings: list[str] = []
    hooks = Hooks(warn=warnings.append)
    batches = TrainBatches(data.train, batch=3, seed=0, workers=0, min_size=64, max_size=107)
    for epoch in range(2):
        for batch in batches.epoch(epoch):
            hooks.unreadable(batch.failed)
            assert len(batch.images) == 2 and all(t["boxes"].shape[1] == 4 for t in batch.targets)
    assert len(warnings) == 1 and "000001.jpg" in warnings[0]


@pytest.mark.parametrize("count", [7, 8])
def test_data_parallel_processes_share_each_epoch_with_full_batches(count):
    from frcnn.training.loaders import EpochOrder

    def picks(rank: int, world: int) -> list[list[int]]:
        return [[index for _, index in batch] for batch in EpochOrder(count, 2, seed=3, epoch=1, rank=rank,
                                                                       world=world)]

    alone = [index for batch in picks(0, 1) for index in batch]
    assert sorted(alone) == list(range(count))
    shares = [picks(rank, 2) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 2  # every process joins every step...
    assert all(len(batch) == 2 for share in shares for batch in share)  # ...with a full batch
    # The steps take the one-process order in turn; the last wraps round to its start.
    together = [index for step in zip(*shares) for batch in step for index in batch]
    assert together == (alone + alone)[:8]
    assert set(together) == set(range(count))


def _small_trainer():
    from frcnn.training.state import Trainer

    module = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    return Trainer(module, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                   torch.amp.GradScaler(enabled=False), torch.device("cpu"), False)


def _step_agreement(rank: int, store: str, cases: list[tuple[bool, bool]], answers) -> None:
    """One of two data-parallel processes: for each case (which of them has pictures), whether it takes the step."""
    import datetime

    import torch.distributed as dist

    from frcnn.training.loop import everyone_has_pictures

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    trainer = _small_trainer()
    trainer.parallel = torch.nn.parallel.DistributedDataParallel(trainer.module)
    answers.put((rank, [everyone_has_pictures(trainer, case[rank]) for case in cases]))
    dist.destroy_process_group()


def test_a_process_without_pictures_makes_every_process_skip_the_step(tmp_path):
    import multiprocessing

    from frcnn.training.loop import everyone_has_pictures

    cases = [(True, True), (True, False), (False, True), (False, False)]
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    processes = [context.Process(target=_step_agreement, args=(rank, str(tmp_path / "store"), cases, answers))
                 for rank in range(2)]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
    finally:
        for process in processes:
            process.terminate()  # one left waiting on the other (the failure this guards against) ends here
    assert [process.exitcode for process in processes] == [0, 0]
    agreed = [True, False, False, False]
    assert sorted(answers.get(timeout=5) for _ in range(2)) == [(0, agreed), (1, agreed)]
    # One process alone decides by itself.
    alone = _small_trainer()
    assert everyone_has_pictures(alone, True) and not everyone_has_pictures(alone, False)


def test_starting_weights_keep_or_replace_the_box_predictor_and_freeze_as_torchvision(tiny_trained, checkpoints):
    from torchvision.ops.misc import FrozenBatchNorm2d

    from frcnn.training.recipe import build_for_training, starting_weights

    def start(weights: Path | None) -> tuple[dict, torch.nn.Module]:
        settings = _settings(DataSource("coco"), start="weights" if weights else "scratch",
                             weights=str(weights) if weights else None, trainable_layers=3 if weights else 5)
        state, source = starting_weights(settings)
        return state, build_for_training(settings, 6, state, source)

    key = "roi_heads.box_predictor.cls_score.weight"
    state, same = start(tiny_trained / "best.pth")
    assert torch.equal(same.state_dict()[key], state[key])  # the same classes: its predictor goes on learning
    body = same.backbone.body
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad and isinstance(body.bn1, FrozenBatchNorm2d)
    state, other = start(checkpoints["v1"])
    assert state[key].shape[0] == 91 and other.state_dict()[key].shape[0] == 6
    _, scratch = start(None)
    assert all(p.requires_grad for p in scratch.parameters())
    assert scratch.roi_heads.fg_bg_sampler.batch_size_per_image == 32 and scratch.training


def test_sigterm_saves_and_stops_as_ctrl_c_does(tiny_trained, tmp_path):
    images, annotations = set_of(tiny_trained)
    run = tmp_path / "run"
    process = start_script("train.py", *tiny_train_args(images, annotations, run), cwd=tmp_path, env=ONE_THREAD)
    stderr = _interrupt_when(process, r"epoch 2/6:\s+0%", signum=signal.SIGTERM)  # what a cluster scheduler sends
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "SIGTERM" in stderr
    assert f"resume with: python train.py --resume {run}" in stderr.splitlines()[-1]
    assert (run / "resume" / "state.pth").is_file() and not leftovers(run)
    assert json.loads((run / "resume" / "position.json").read_text())["epoch"] == 1


def test_patience_stops_a_run_whose_ap_stopped_improving_and_tensorboard_records_it(checkpoints, tmp_path):
    annotations = write_split(tmp_path / "set", seed=4, pictures=4, size=(64, 64))
    run = tmp_path / "run"
    # A learning rate this small leaves the detections, and so the validation AP, the same every epoch.
    result = run_script("train.py", "--model", "v1", "--weights", str(checkpoints["v1"]), "--trainable-layers", "0",
                        "--lr", "1e-12", "--images", str(tmp_path / "set" / "images"), "--annotations",
                        str(annotations), "--imgsz", "64", "--batch", "2", "--epochs", "6", "--box-batch", "16",
                        "--loader-workers", "0", "--patience", "1", "--output", str(run), cwd=tmp_path, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert "stopped early: validation AP has not improved for 1 epoch(s) since epoch 1" in result.stderr
    assert len((run / "results.csv").read_text().splitlines()) == 1 + 2 and (run / "best.pth").is_file()
    from frcnn.training.board import writer_class

    if writer_class() is None:
        assert "TensorBoard: no writer installed" in result.stderr
    else:
        assert f"TensorBoard: event files in {run}" in result.stderr
        assert list(run.glob("events.out.tfevents.*"))
    resumed = run_script("train.py", "--resume", str(run), cwd=tmp_path, env=ONE_THREAD)
    assert resumed.returncode == 0 and "stopped early" in resumed.stderr, resumed.stderr
    assert len((run / "results.csv").read_text().splitlines()) == 3


def test_without_a_tensorboard_writer_one_line_says_so(monkeypatch, tmp_path):
    from frcnn.training import board

    monkeypatch.setattr(board, "writer_class", lambda: None)
    record, line = board.open_board(tmp_path, 2)
    assert record is None and "pip install tensorboard" in line and not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["--data", "a", "--val-fraction", "0", "--patience", "2"],
                                  ["--data", "a", "--ray", "--patience", "2"],
                                  ["--data", "a", "--patience", "0"]], ids=lambda args: " ".join(args[2:]))
def test_patience_usage_errors_exit_2(tmp_path, args):
    result = run_script("train.py", *args, cwd=tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr
