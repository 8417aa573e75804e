"""--resume in detect_image.py and detect_video.py, and Ctrl-C / SIGTERM: a run stopped part-way, then the same
command again, gives what one uninterrupted run gives, without touching what was finished."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import cv2
import pytest
from helpers import SMALL_IMGSZ, leftovers, make_video, run_detector, run_script, scene, start_script

from frcnn.pipelines.resume import seals_folder

BROKEN = b"\xff\xd8\xff\xe0 not really a JPEG"


def photos(folder: Path, count: int, broken: tuple[int, ...] = (), only: tuple[int, ...] | None = None) -> Path:
    """`count` test pictures p0.jpg ... in `folder` (or only those numbered in `only`); those numbered in `broken`
    are corrupt for now."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count) if only is None else only:
        path = folder / f"p{index}.jpg"
        if index in broken:
            path.write_bytes(BROKEN)
        else:
            cv2.imwrite(str(path), scene(240, 320, seed=index))
    return folder


def detect(tmp_path: Path, checkpoints, *args: str, script: str = "detect_image.py"):
    return run_detector(script, tmp_path, checkpoints, *args)


def fingerprints(folder: Path) -> dict[str, tuple[int, str]]:
    """Every output file by path: its modification time and the hash of its contents."""
    return {path.relative_to(folder).as_posix(): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).digest())
            for path in sorted(folder.rglob("*")) if path.is_file()}


def without_timings(record: dict) -> dict:
    """A picture's or frame's record without what differs between two runs of the same settings (times)."""
    return {**record, "results": [{key: value for key, value in result.items() if key != "inference_ms"}
                                  for result in record["results"]]}


def assert_same_records(first: Path, second: Path, pattern: str = "*.json") -> None:
    mine, theirs = sorted(first.glob(pattern)), sorted(second.glob(pattern))
    assert [p.name for p in mine] == [p.name for p in theirs] and mine
    for a, b in zip(mine, theirs):
        lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
        if a.suffix == ".json":
            lines_a, lines_b = [a.read_text()], [b.read_text()]
        assert [without_timings(json.loads(x)) for x in lines_a] == [without_timings(json.loads(y)) for y in lines_b]


def test_an_interrupted_photo_run_resumes_where_it_stopped(tmp_path, checkpoints):
    folder = photos(tmp_path / "in", 4)
    full = detect(tmp_path, checkpoints, "--input", str(folder), "--json", "--save-txt", "--output", "full")
    assert full.returncode == 0, full.stderr
    # The first run stops after half its inputs: the last two cannot be read yet.
    photos(folder, 4, broken=(2, 3), only=(2, 3))
    first = detect(tmp_path, checkpoints, "--input", str(folder), "--json", "--save-txt", "--output", "cut")
    assert first.returncode == 1 and "2 of 4 inputs failed" in first.stderr
    finished = fingerprints(tmp_path / "cut")
    assert sorted(p for p in finished if p.endswith("_v1.jpg")) == ["p0_v1.jpg", "p1_v1.jpg"]
    photos(folder, 4, only=(2, 3))
    resumed = detect(tmp_path, checkpoints, "--input", str(folder), "--json", "--save-txt", "--output", "cut",
                     "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: 2 of 4 inputs already done with these settings, skipped; 2 to compute" in resumed.stderr
    assert [line.split(":")[0] for line in resumed.stdout.splitlines()] == [str(folder / "p2.jpg"),
                                                                            str(folder / "p3.jpg")]
    now = fingerprints(tmp_path / "cut")
    for path in ("p0_v1.jpg", "p0_v1.json", "p1_v1.jpg", "p1_v1.json", "labels/v1/p0.txt", "labels/v1/p1.txt",
                 "images/v1/p0.jpg", "images/v1/p1.jpg", "labels/v1/classes.txt", "labels/v1/data.yaml"):
        assert now[path] == finished[path], path  # untouched: same time, same contents
    assert sorted(now) == sorted(fingerprints(tmp_path / "full"))
    assert_same_records(tmp_path / "full", tmp_path / "cut")
    for name in ("p0", "p1", "p2", "p3"):
        assert (tmp_path / "cut" / "labels" / "v1" / f"{name}.txt").read_text() == \
               (tmp_path / "full" / "labels" / "v1" / f"{name}.txt").read_text()
    assert not leftovers(tmp_path / "cut")


def test_other_settings_missing_or_changed_outputs_are_computed_again(tmp_path, checkpoints):
    folder = photos(tmp_path / "in", 2)
    out = tmp_path / "outputs"
    assert detect(tmp_path, checkpoints, "--input", str(folder), "--json").returncode == 0
    again = detect(tmp_path, checkpoints, "--input", str(folder), "--json", "--resume")
    assert "resume: 2 of 2 inputs already done" in again.stderr and again.stdout == ""
    for changed in (["--threshold", "0.6"], ["--hide-conf"], []):  # [] without --json: its files differ
        result = detect(tmp_path, checkpoints, "--input", str(folder), *(changed or []),
                        *(["--json"] if changed else []), "--resume")
        assert result.returncode == 0, result.stderr
        assert "resume: none of the 2 inputs is done with these settings yet" in result.stderr, changed
        assert len(result.stdout.splitlines()) == 2
    assert not (out / "p0_v1.json").exists()
    (out / "p1_v1.jpg").unlink()  # an output gone: that input is computed again
    (out / "p0_v1.jpg").write_bytes((out / "p0_v1.jpg").read_bytes()[:100])  # or cut short
    result = detect(tmp_path, checkpoints, "--input", str(folder), "--resume")
    assert "resume: none of the 2 inputs" in result.stderr
    cv2.imwrite(str(folder / "p0.jpg"), scene(240, 320, seed=7))  # an input that changed is computed again
    result = detect(tmp_path, checkpoints, "--input", str(folder), "--resume")
    assert "resume: 1 of 2 inputs already done" in result.stderr
    assert result.stdout.startswith(str(folder / "p0.jpg"))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_keeps_the_finished_pictures_and_the_same_command_resumes(tmp_path, checkpoints, signum, code):
    folder = photos(tmp_path / "in", 8)
    # Pictures large enough that the signal comes while some are still to do.
    command = ("detect_image.py", "--input", str(folder), "--model", "v1", "--weights", str(checkpoints["v1"]),
               "--imgsz", "320", "--backend", "torch", "--json")
    process = start_script(*command, cwd=tmp_path)
    out = tmp_path / "outputs"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out.glob("*.json")):
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"{signal.Signals(signum).name}: finishing the pictures in progress" in stderr
    assert "interrupted: the pictures written so far are kept; the same command with --resume carries on" in stderr
    done = len(stdout.splitlines())
    assert 1 <= done < 8 and len(list(out.glob("*.jpg"))) == len(list(out.glob("*.json"))) == done
    finished = fingerprints(out)
    resumed = run_script(*command, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume: {done} of 8 inputs already done" in resumed.stderr
    assert len(resumed.stdout.splitlines()) == 8 - done
    now = fingerprints(out)
    assert all(now[path] == stamp for path, stamp in finished.items())
    assert len(list(out.glob("*.jpg"))) == 8 and not leftovers(out)


def clips(folder: Path, broken: bool = False) -> Path:
    """Two short test clips, a.mp4 and b.mp4 (b not a video, for now, when `broken`)."""
    folder.mkdir(parents=True, exist_ok=True)
    make_video(folder / "a.mp4", frames=5)
    if broken:
        (folder / "b.mp4").write_bytes(b"not a video")
    else:
        make_video(folder / "b.mp4", frames=4, size=(128, 96))
    return folder


def test_an_interrupted_video_run_resumes_with_its_tracks_and_analytics(tmp_path, checkpoints):
    folder = clips(tmp_path / "in")
    options = ("--json", "--track", "--heatmap")
    full = detect(tmp_path, checkpoints, "--input", str(folder), *options, "--output", "full", script="detect_video.py")
    assert full.returncode == 0, full.stderr
    clips(folder, broken=True)
    first = detect(tmp_path, checkpoints, "--input", str(folder), *options, "--output", "cut", script="detect_video.py")
    assert first.returncode == 1 and "b.mp4" in first.stderr
    finished = fingerprints(tmp_path / "cut")
    assert set(finished) == {"a_v1.mp4", "a_v1.jsonl", "a_v1_tracks.jsonl", "a_v1_events.jsonl", "a_v1_summary.json",
                             "a_v1_heatmap.png"}
    clips(folder)
    (folder / "a.mp4").touch()  # the same contents: a newer time is enough to compute it again...
    resumed = detect(tmp_path, checkpoints, "--input", str(folder), *options, "--output", "cut", "--resume",
                     script="detect_video.py")
    assert "resume: none of the 2 inputs" in resumed.stderr
    finished = fingerprints(tmp_path / "cut")
    resumed = detect(tmp_path, checkpoints, "--input", str(folder), *options, "--output", "cut", "--resume",
                     script="detect_video.py")
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: 2 of 2 inputs already done" in resumed.stderr and resumed.stdout == ""
    assert fingerprints(tmp_path / "cut") == finished
    assert sorted(finished) == sorted(fingerprints(tmp_path / "full"))
    assert_same_records(tmp_path / "full", tmp_path / "cut", "*_v1.jsonl")
    changed = detect(tmp_path, checkpoints, "--input", str(folder), "--json", "--track", "--output", "cut",
                     "--resume", script="detect_video.py")  # without --heatmap: other files
    assert "resume: none of the 2 inputs" in changed.stderr


def test_a_video_cut_short_by_ctrl_c_is_computed_again(tmp_path, checkpoints):
    clip = make_video(tmp_path / "long.mp4", frames=300)
    command = ("detect_video.py", "--input", str(clip), "--weights", str(checkpoints["v1"]), "--model", "v1",
               "--imgsz", SMALL_IMGSZ, "--json", "--backend", "torch")
    process = start_script(*command, cwd=tmp_path)
    out = tmp_path / "outputs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.suffix == ".jsonl" and p.stat().st_size
                                                  for p in leftovers(tmp_path)):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert (out / "long_v1.mp4").exists() and not list(seals_folder(out).glob("*"))  # kept, but not done
    resumed = run_script(*command, "--resume", "--max-frames", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume: none of the 1 input " in resumed.stderr and "3 frames ->" in resumed.stdout


# ---------------------------------------------------------------- --save-txt as a YOLO dataset


def test_save_txt_is_a_yolo_dataset_that_supervision_and_train_py_read(tmp_path, checkpoints):
    import supervision as sv

    from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES, is_real_class
    from frcnn.training.yolo_format import read_yolo

    folder = photos(tmp_path / "in", 2)
    result = detect(tmp_path, checkpoints, "--input", str(folder), "--save-txt", "--json")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "outputs"
    coco80 = [name for name in COCO_INSTANCE_CATEGORY_NAMES if is_real_class(name)]
    assert len(coco80) == 80 and (out / "labels" / "v1" / "classes.txt").read_text().splitlines() == coco80
    assert (out / "images" / "v1" / "p0.jpg").read_bytes() == (folder / "p0.jpg").read_bytes()
    dataset = sv.DetectionDataset.from_yolo(images_directory_path=str(out / "images" / "v1"),
                                            annotations_directory_path=str(out / "labels" / "v1"),
                                            data_yaml_path=str(out / "labels" / "v1" / "data.yaml"))
    assert dataset.classes == coco80 and len(dataset) == 2
    for path, _, detections in dataset:
        record = json.loads((out / f"{Path(path).stem}_v1.json").read_text())["results"][0]["detections"]
        assert len(detections) == len(record) > 0
        assert [dataset.classes[i] for i in detections.class_id] == [d["label"] for d in record]
    assert {line.split()[0] for line in (out / "labels" / "v1" / "p0.txt").read_text().splitlines()} == {"0"}
    # train.py --data reads the same layout, given the model's class names (they are in labels/<model>/).
    labelled, _ = read_yolo(str(out), str(out / "labels" / "v1" / "classes.txt"), "train")
    assert labelled.class_names[1:] == coco80 and len(labelled.samples) == 2
    assert labelled.box_count() == sum(len(detections) for _, _, detections in dataset)
    # Without --save-txt, a later run takes its labels and the copies away again.
    assert detect(tmp_path, checkpoints, "--input", str(folder)).returncode == 0
    assert not list((out / "labels" / "v1").glob("p*.txt")) and not list((out / "images" / "v1").iterdir())


def test_save_txt_keeps_a_fine_tuned_model_s_own_numbering(tmp_path, checkpoints):
    names = [f"thing{number}" for number in range(1, 91)]  # the test checkpoint predicts 90 classes
    labels = tmp_path / "names.txt"
    labels.write_text("".join(f"{name}\n" for name in names))
    folder = photos(tmp_path / "in", 1)
    result = detect(tmp_path, checkpoints, "--input", str(folder), "--save-txt", "--json", "--labels", str(labels))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "outputs"
    assert (out / "labels" / "v1" / "classes.txt").read_text().splitlines() == names
    record = json.loads((out / "p0_v1.json").read_text())["results"][0]["detections"]
    numbers = [int(line.split()[0]) for line in (out / "labels" / "v1" / "p0.txt").read_text().splitlines()]
    assert numbers == [d["label_id"] - 1 for d in record] and numbers
    import supervision as sv

    dataset = sv.DetectionDataset.from_yolo(images_directory_path=str(out / "images" / "v1"),
                                            annotations_directory_path=str(out / "labels" / "v1"),
                                            data_yaml_path=str(out / "labels" / "v1" / "data.yaml"))
    assert dataset.classes == names
