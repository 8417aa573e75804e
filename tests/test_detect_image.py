"""detect_image.py run as a user runs it: a subprocess, offline, with seeded checkpoints."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ROOT, SMALL_IMGSZ, assert_one_line_error, leftovers, run_detector, run_script, scene
from PIL import Image
from x11_window import find_window, press_key


def detect(tmp_path, checkpoints, *args, model="v2", env=None, backend="torch"):
    return run_detector("detect_image.py", tmp_path, checkpoints, *args, model=model, backend=backend, env=env)


def test_one_photo_gives_a_picture_of_its_size_and_json(tmp_path, checkpoints, photo):
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--json")
    assert result.returncode == 0, result.stderr
    output = tmp_path / "outputs" / "photo_v2.jpg"
    picture = cv2.imread(str(output))
    assert picture.shape == cv2.imread(str(photo)).shape
    assert "photo.jpg" in result.stdout and "detections" in result.stdout and "ms" in result.stdout
    record = json.loads((tmp_path / "outputs" / "photo_v2.json").read_text())
    assert set(record) == {"file", "width", "height", "results"}
    assert (record["file"], record["width"], record["height"]) == (str(photo), 320, 240)
    (result,) = record["results"]
    assert set(result) == {"model", "weights", "imgsz", "runtime", "precision", "proposals", "threshold",
                           "inference_ms", "detections"}
    assert (result["precision"], result["proposals"]) == ("fp32", 1000)
    assert (result["model"], result["weights"], result["imgsz"]) == ("v2", str(checkpoints["v2"]), int(SMALL_IMGSZ))
    assert (result["runtime"], result["threshold"]) == ("torch", 0.5)
    assert result["inference_ms"] > 0 and result["detections"]
    for detection in result["detections"]:
        assert set(detection) == {"label", "label_id", "score", "box"}
        assert detection["label"] == "person" and detection["label_id"] == 1
        assert 0.5 <= detection["score"] <= 1
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
    assert leftovers(tmp_path) == []


def test_both_puts_v1_left_and_v2_right_with_titles(tmp_path, checkpoints, photo):
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--json", "--threshold", "0.9", model="both")
    assert result.returncode == 0, result.stderr
    picture = cv2.imread(str(tmp_path / "outputs" / "photo_both.jpg"))
    height, width = picture.shape[:2]
    assert width == 2 * 320 and height > 240
    bar = height - 240
    title_bars = picture[:bar].astype(int)
    assert abs(title_bars.mean(axis=2) - 32).max() > 100  # white title text on the dark bar
    assert (title_bars[:, :320] != title_bars[:, 320:]).any()  # each panel has its own title
    record = json.loads((tmp_path / "outputs" / "photo_both.json").read_text())
    assert [result["model"] for result in record["results"]] == ["v1", "v2"]
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["photo_both.jpg", "photo_both.json"]
    assert "v1" in result.stdout and "v2" in result.stdout


def test_classes_and_threshold_filter_what_is_drawn(tmp_path, checkpoints, photo):
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--json", "--classes", "car")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "outputs" / "photo_v2.json").read_text())["results"][0]["detections"] == []
    drawn = cv2.imread(str(tmp_path / "outputs" / "photo_v2.jpg")).astype(int)
    assert np.abs(drawn - cv2.imread(str(photo)).astype(int)).mean() < 3  # nothing drawn but JPEG noise


def test_usage_errors_exit_2(tmp_path, checkpoints, photo):
    for args, message in [
        (["--threshold", "1.5"], "not between 0 and 1"),
        (["--classes", "dragon"], "valid classes: person"),
        (["--imgsz", "0"], "--imgsz"),
        (["--model", "v3"], "invalid choice"),
    ]:
        result = detect(tmp_path, checkpoints, "--input", str(photo), *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    result = run_script("detect_image.py", "--model", "both", "--weights", "one.pth", cwd=tmp_path)
    assert result.returncode == 2 and "takes 2 --weights" in result.stderr


def test_bad_inputs_are_skipped_and_the_rest_processed(tmp_path, checkpoints, photo):
    empty = tmp_path / "empty.jpg"
    empty.touch()
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo.read_bytes()[:200])
    result = detect(tmp_path, checkpoints, "--input", str(tmp_path / "missing.jpg"), str(empty), str(text),
                    str(corrupt), str(photo), str(tmp_path / "nothing-*.jpg"))
    assert_one_line_error(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5, result.stderr
    for word in ("not found", "empty", "not an image", "nothing-*.jpg"):
        assert any(word in line for line in errors), (word, errors)
    assert (tmp_path / "outputs" / "photo_v2.jpg").exists()
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["photo_v2.jpg"]


def test_folders_and_globs_expand_in_order(tmp_path, checkpoints):
    folder = tmp_path / "pics"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"p{index}.png"), scene(120, 160, seed=index))
    (folder / "readme.txt").write_text("not an image")
    result = detect(tmp_path, checkpoints, "--input", str(folder), str(folder / "p1.*"), "--output", "out", model="v1")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "->" in line]
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in lines] == ["p0.png", "p1.png", "p2.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0_v1.jpg", "p1_v1.jpg", "p2_v1.jpg"]


def test_an_input_is_never_overwritten(tmp_path, checkpoints):
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), scene(seed=1))
    cv2.imwrite(str(folder / "a_v2.jpg"), scene(seed=2))  # exactly the name a.jpg's output would take
    before = (folder / "a_v2.jpg").read_bytes()
    result = detect(tmp_path, checkpoints, "--input", str(folder), "--output", str(folder))
    assert_one_line_error(result)
    assert "would overwrite an input" in result.stderr
    assert (folder / "a_v2.jpg").read_bytes() == before
    assert (folder / "a_v2_v2.jpg").exists()


def test_same_stem_inputs_get_distinct_outputs(tmp_path, checkpoints):
    cv2.imwrite(str(tmp_path / "x.jpg"), scene(seed=1))
    cv2.imwrite(str(tmp_path / "x.png"), scene(seed=2))
    result = detect(tmp_path, checkpoints, "--input", str(tmp_path / "x.jpg"), str(tmp_path / "x.png"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["x_jpg_v2.jpg", "x_png_v2.jpg"]


def test_any_picture_opencv_reads(tmp_path, checkpoints):
    folder = tmp_path / "odd"
    folder.mkdir()
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(scene(), cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "deep.png"), scene().astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(scene(), cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "dot.png"), np.full((1, 1, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "huge.jpg"), cv2.resize(scene(), (12000, 8000), interpolation=cv2.INTER_NEAREST))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 320×240, shown rotated to 240×320
    Image.fromarray(scene()[:, :, ::-1]).save(folder / "rotated.jpg", exif=exif)
    expected = {"gray": (240, 320), "deep": (240, 320), "alpha": (240, 320), "dot": (1, 1),
                "huge": (8000, 12000), "rotated": (320, 240)}
    result = detect(tmp_path, checkpoints, "--input", str(folder), "--json", model="v1")
    assert result.returncode == 0, result.stderr
    for stem, (height, width) in expected.items():
        picture = cv2.imread(str(tmp_path / "outputs" / f"{stem}_v1.jpg"))
        assert picture.shape == (height, width, 3), stem
        record = json.loads((tmp_path / "outputs" / f"{stem}_v1.json").read_text())
        assert (record["height"], record["width"]) == (height, width)
        for detection in record["results"][0]["detections"]:
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    assert json.loads((tmp_path / "outputs" / "huge_v1.json").read_text())["results"][0]["detections"]


def test_show_without_a_display_warns_and_still_writes(tmp_path, checkpoints, photo):
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--show")
    assert result.returncode == 0, result.stderr
    assert "cannot open a window" in result.stderr
    assert (tmp_path / "outputs" / "photo_v2.jpg").exists()


@pytest.mark.parametrize("model", ["v1", "v2"])
def test_missing_weights_offline_is_one_clear_line(tmp_path, photo, model):
    result = run_script("detect_image.py", "--input", str(photo), "--model", model, cwd=tmp_path)
    assert_one_line_error(result)
    assert "--weights PATH" in result.stderr and str(tmp_path / "torch-home" / "hub" / "checkpoints") in result.stderr
    assert not (tmp_path / "outputs" / f"photo_{model}.jpg").exists()


def test_bad_checkpoint_and_device_are_one_clear_line(tmp_path, checkpoints, photo):
    bad = tmp_path / "bad.pth"
    bad.write_text("nonsense")
    for args in (["--weights", str(bad)], ["--model", "v2", "--weights", str(checkpoints["v1"])],
                 ["--device", "cuda:7"]):
        result = run_script("detect_image.py", "--input", str(photo), *args, cwd=tmp_path)
        assert_one_line_error(result)


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")
def test_show_waits_for_a_key_per_picture_and_q_stops_showing(tmp_path, checkpoints, virtual_display):
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), scene(seed=ord(name)))
    env = {**os.environ, "DISPLAY": virtual_display, "TORCH_HOME": str(tmp_path / "torch-home")}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "detect_image.py"), "--input", str(tmp_path / "*.png"), "--model", "v2",
         "--weights", str(checkpoints["v2"]), "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--show"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    press_key(virtual_display, find_window(virtual_display, "a_v2.jpg"), "space")  # next picture
    press_key(virtual_display, find_window(virtual_display, "b_v2.jpg"), "q")  # no more windows
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "cannot open a window" not in stderr
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["a_v2.jpg", "b_v2.jpg", "c_v2.jpg"]


def test_same_names_in_two_folders_never_overwrite_each_other(tmp_path, checkpoints):
    for folder, seed in (("dirA", 1), ("dirB", 2)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.jpg"), scene(seed=seed))
    result = detect(tmp_path, checkpoints, "--input", "dirA", "dirB", "--json")
    assert result.returncode == 0, result.stderr
    outputs = tmp_path / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == ["dirA_x_v2.jpg", "dirA_x_v2.json",
                                                         "dirB_x_v2.jpg", "dirB_x_v2.json"]
    for folder in ("dirA", "dirB"):
        assert json.loads((outputs / f"{folder}_x_v2.json").read_text())["file"] == str(Path(folder) / "x.jpg")
    assert (cv2.imread(str(outputs / "dirA_x_v2.jpg")) != cv2.imread(str(outputs / "dirB_x_v2.jpg"))).any()


def test_a_rerun_without_json_leaves_no_record_of_another_picture(tmp_path, checkpoints, photo):
    assert detect(tmp_path, checkpoints, "--input", str(photo), "--json").returncode == 0
    assert (tmp_path / "outputs" / "photo_v2.json").exists()
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--threshold", "0.9")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["photo_v2.jpg"]


class _Pictures(http.server.BaseHTTPRequestHandler):
    """Serves one JPEG at /photo.jpg, text at /page.html and 404 elsewhere."""

    def do_GET(self):  # noqa: N802  (the name http.server calls)
        if self.path == "/photo.jpg":
            body, kind = cv2.imencode(".jpg", scene(seed=5))[1].tobytes(), "image/jpeg"
        elif self.path == "/page.html":
            body, kind = b"<html>not a picture</html>", "text/html"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def picture_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_picture_urls_are_fetched_and_bad_ones_are_one_line(tmp_path, checkpoints, picture_server):
    local = {"no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}
    result = detect(tmp_path, checkpoints, "--input", f"{picture_server}/photo.jpg", f"{picture_server}/missing.jpg",
                    f"{picture_server}/page.html", "--json", env=local)
    assert_one_line_error(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "404" in errors[0] and "not a picture" in errors[1], errors
    record = json.loads((tmp_path / "outputs" / "photo_v2.json").read_text())
    assert record["file"] == f"{picture_server}/photo.jpg" and (record["width"], record["height"]) == (320, 240)
    assert cv2.imread(str(tmp_path / "outputs" / "photo_v2.jpg")).shape == (240, 320, 3)


def test_what_can_be_checked_is_checked_before_any_model_loads(tmp_path, checkpoints, photo):
    for args, message in [(["--half", "--device", "cpu"], "--half needs a CUDA device"),
                          (["--weights", "absent.pth"], "absent.pth")]:
        result = run_script("detect_image.py", "--input", str(photo), "--imgsz", SMALL_IMGSZ, *args, cwd=tmp_path)
        assert_one_line_error(result)
        assert message in result.stderr and "Loading" not in result.stderr, result.stderr
    result = run_script("detect_image.py", "--input", str(photo), "--model", "both", cwd=tmp_path)
    assert_one_line_error(result)
    assert "Loading" not in result.stderr  # offline: both missing files are named before anything loads
    for name in ("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"):
        assert name in result.stderr and "https://download.pytorch.org/models/" + name in result.stderr


@pytest.mark.parametrize("script", ["detect_image.py", "detect_video.py", "evaluate.py"])
def test_help_and_usage_errors_answer_without_loading_pytorch(script):
    code = ("import runpy, sys\n"
            f"sys.argv = [{script!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({str(ROOT / script)!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('torch' in sys.modules, 'openvino' in sys.modules, 'av' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--slice" in result.stdout and result.stdout.strip().splitlines()[-1] == "False False False"


def test_a_file_the_project_did_not_write_is_never_replaced(tmp_path, checkpoints):
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "birds.jpg"), scene(seed=1))
    cv2.imwrite(str(folder / "birds_v2.jpg"), scene(seed=2))  # the user's own photo, with an output's name
    before = (folder / "birds_v2.jpg").read_bytes()
    result = detect(tmp_path, checkpoints, "--input", str(folder / "birds.jpg"), "--output", str(folder))
    assert_one_line_error(result)
    assert "birds_v2.jpg exists and was not written by this project" in result.stderr
    assert (folder / "birds_v2.jpg").read_bytes() == before
    # What the project wrote itself is replaced by a new run.
    out = tmp_path / "out"
    assert detect(tmp_path, checkpoints, "--input", str(folder / "birds.jpg"), "--output", str(out)).returncode == 0
    first = (out / "birds_v2.jpg").stat().st_mtime_ns
    assert detect(tmp_path, checkpoints, "--input", str(folder / "birds.jpg"), "--output", str(out)).returncode == 0
    assert (out / "birds_v2.jpg").stat().st_mtime_ns != first


def test_labels_and_crops_of_an_earlier_run_do_not_stay_behind(tmp_path, checkpoints, photo):
    out = tmp_path / "out"
    first = detect(tmp_path, checkpoints, "--input", str(photo), "--output", str(out), "--save-txt", "--save-crops")
    assert first.returncode == 0, first.stderr
    assert (out / "labels" / "v2" / "photo.txt").exists() and list((out / "crops" / "v2").rglob("photo_*.jpg"))
    second = detect(tmp_path, checkpoints, "--input", str(photo), "--output", str(out))
    assert second.returncode == 0, second.stderr
    assert not (out / "labels" / "v2" / "photo.txt").exists()
    assert not list((out / "crops" / "v2").rglob("photo_*.jpg"))


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path, checkpoints, photo):
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--output", str(tmp_path / "new" / "out"),
                    "--device", "cuda")
    assert result.returncode != 0
    assert not (tmp_path / "new").exists()
    (tmp_path / "a-file").write_text("x")
    result = detect(tmp_path, checkpoints, "--input", str(photo), "--output", str(tmp_path / "a-file"))
    assert_one_line_error(result)
    assert "is a file" in result.stderr
