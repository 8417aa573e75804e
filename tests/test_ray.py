"""The scripts with --ray, run as a user runs them, on one local Ray cluster (2 CPUs) shared by this module."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import ray
from helpers import (
    ONE_THREAD,
    ROOT,
    SMALL_IMGSZ,
    TINY_SET,
    assert_one_line_error,
    leftovers,
    make_set,
    make_video,
    metrics_of,
    read_video,
    run_script,
    scene,
    tiny_train_args,
)

# Ray's own connections stay on this machine; everything else still has no route out (see run_script).
LOCAL_ONLY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


@pytest.fixture(scope="module")
def address(export_cache) -> str:
    """The head of a local Ray cluster with 2 CPUs; its workers share the session's export cache."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def script(name: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    return run_script(name, *args, cwd=cwd, env={**LOCAL_ONLY, **(env or {})}, timeout=timeout)


def pictures(folder: Path, count: int) -> Path:
    """`count` test pictures and one corrupt file in `folder`."""
    folder.mkdir(parents=True)
    for index in range(count):
        cv2.imwrite(str(folder / f"p{index}.jpg"), scene(240, 320, seed=index))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return folder


def records(folder: Path) -> dict[str, list[dict]]:
    return {path.name: json.loads(path.read_text())["results"] for path in sorted(folder.glob("*.json"))}


def test_pictures_on_ray_give_what_one_process_gives(tmp_path, checkpoints, address):
    folder = pictures(tmp_path / "in", 4)
    common = ("detect_image.py", "--input", str(folder), "--model", "v1", "--weights", str(checkpoints["v1"]),
              "--imgsz", SMALL_IMGSZ, "--json")
    here = script(*common, "--output", "here", cwd=tmp_path)
    there = script(*common, "--output", "there", "--ray", address, cwd=tmp_path)
    assert here.returncode == there.returncode == 1, there.stderr
    for result in (here, there):
        assert "broken.jpg: not an image OpenCV can decode" in result.stderr
        assert "1 of 5 inputs failed" in result.stderr
    assert "Ray: 2 workers" in there.stderr
    here, there = (sorted(p.name for p in (tmp_path / name).iterdir()) for name in ("here", "there"))
    assert here == there
    mine, theirs = records(tmp_path / "here"), records(tmp_path / "there")
    assert len(mine) == 4
    for name, (a,) in mine.items():
        (b,) = theirs[name]
        assert a["weights"] == b["weights"] == str(checkpoints["v1"])  # the user's path, not the worker's copy
        assert len(a["detections"]) == len(b["detections"]) > 0, name
        for x, y in zip(a["detections"], b["detections"]):
            assert x["label"] == y["label"]
            assert x["score"] == pytest.approx(y["score"], abs=1e-4)
            # Ray's workers run one thread each, which sums in another order: a coordinate near a rounding edge of
            # the record's 0.1 px can land one step away.
            assert np.allclose(x["box"], y["box"], rtol=0, atol=0.1 + 1e-6)
    assert not leftovers(tmp_path / "there")


def test_videos_on_ray(tmp_path, checkpoints, address):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "a.mp4", frames=9)
    make_video(clips / "b.avi", frames=6, fourcc="MJPG")
    (clips / "c.mp4").write_bytes(b"not a video")
    result = script("detect_video.py", "--input", str(clips), "--model", "v1", "--weights", str(checkpoints["v1"]),
                    "--imgsz", SMALL_IMGSZ, "--json", "--track", "--ray", address, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "c.mp4: not a video" in result.stderr and "1 of 3 inputs failed" in result.stderr
    for name, frames in (("a", 9), ("b", 6)):
        decoded, _ = read_video(tmp_path / "outputs" / f"{name}_v1.mp4")
        assert len(decoded) == frames, name
        lines = (tmp_path / "outputs" / f"{name}_v1.jsonl").read_text().splitlines()
        assert [json.loads(line)["frame"] for line in lines] == list(range(frames))
        assert (tmp_path / "outputs" / f"{name}_v1_tracks.jsonl").exists()
    assert not leftovers(tmp_path / "outputs")


def test_a_video_on_ray_is_followed_as_one_without_ray(tmp_path, checkpoints, address):
    """--status and --preview: the worker drawing the video sends its progress, events and frames back here."""
    clip = make_video(tmp_path / "clip.mp4", frames=24)
    common = ("detect_video.py", "--input", str(clip), "--model", "v1", "--weights", str(checkpoints["v1"]),
              "--imgsz", SMALL_IMGSZ, "--count-line", "0.5,0,0.5,1", "--threshold", "0.3")
    followed = {}
    for where, extra, env in (("here", (), ONE_THREAD), ("there", ("--ray", address), None)):  # workers: 1 thread
        result = script(*common, "--output", where, "--status", f"{where}.jsonl", "--preview", f"{where}.jpg",
                        *extra, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        followed[where] = [json.loads(line) for line in (tmp_path / f"{where}.jsonl").read_text().splitlines()]
        progress = [line for line in followed[where] if line["type"] == "progress"]
        done = [line["frames_done"] for line in progress]
        assert done == sorted(done) and done[-1] == 24 and {line["frames_total"] for line in progress} == {24}
        assert cv2.imread(str(tmp_path / f"{where}.jpg")).shape == (120, 160, 3)  # a whole drawn frame
        logged = (tmp_path / where / "clip_v1_events.jsonl").read_text().splitlines()
        events = [line["event"] for line in followed[where] if line["type"] == "analytics"]
        assert events == [json.loads(line) for line in logged] and events, where
    assert [line for line in followed["there"] if line["type"] == "analytics"] == \
        [line for line in followed["here"] if line["type"] == "analytics"]


# Runs the script given after it with Ctrl-C raising KeyboardInterrupt, as in a terminal.
WITH_CTRL_C = ("import os, runpy, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
               "signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv = sys.argv[1:]; "
               "sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0]))); "
               "runpy.run_path(sys.argv[0], run_name='__main__')")

def test_ctrl_c_stops_a_video_on_a_worker_mid_way_and_resume_redoes_it(tmp_path, checkpoints, address):
    clip = make_video(tmp_path / "long.mp4", frames=150)
    command = ["detect_video.py", "--input", str(clip), "--model", "v1", "--weights", str(checkpoints["v1"]),
               "--imgsz", SMALL_IMGSZ, "--json", "--status", "status.jsonl", "--ray", address]
    env = {**os.environ, **LOCAL_ONLY, "TORCH_HOME": str(tmp_path / "th")}
    process = subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, str(ROOT / command[0]), *command[1:]],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = tmp_path / "status.jsonl"
    deadline = time.monotonic() + 400  # the worker's start and a few frames; minutes when the machine is busy
    while time.monotonic() < deadline and process.poll() is None and not (status.exists() and any(
            json.loads(line).get("frames_done", 0) >= 3 for line in status.read_text().splitlines())):
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)  # Ctrl-C: the worker finishes its frames in flight and sends the video so far
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "SIGINT: finishing the frames in flight on the workers" in stderr and "Traceback" not in stderr
    frames, _ = read_video(tmp_path / "outputs" / "long_v1.mp4")
    lines = (tmp_path / "outputs" / "long_v1.jsonl").read_text().splitlines()
    assert 3 <= len(frames) < 150 and len(lines) == len(frames), stderr
    assert f"{len(frames)} frames ->" in stdout
    last = [json.loads(line) for line in status.read_text().splitlines() if '"progress"' in line][-1]
    assert last["frames_done"] == len(frames)

    resumed = script(*command, "--resume", cwd=tmp_path)  # a video cut short is not done: it is computed again
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_video(tmp_path / "outputs" / "long_v1.mp4")[0]) == 150
    assert not leftovers(tmp_path / "outputs")


def evaluation(tmp_path, checkpoints, images, annotations, output, *extra):
    return [sys.executable, str(ROOT / "evaluate.py"), "--images", str(images), "--annotations", str(annotations),
            "--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ, "--output", output, *extra]


def test_evaluate_on_ray_equals_one_process_and_resumes(tmp_path, checkpoints, address):
    # Enough pictures that the run is still working when the third is done, even on a busy machine.
    images, annotations = make_set(tmp_path / "set", images=30)
    here = script("evaluate.py", *evaluation(tmp_path, checkpoints, images, annotations, "here")[2:], cwd=tmp_path)
    assert here.returncode == 0, here.stderr
    command = evaluation(tmp_path, checkpoints, images, annotations, "cut", "--ray", address)
    env = {**os.environ, **LOCAL_ONLY, "TORCH_HOME": str(tmp_path / "th")}
    # Ctrl-C as a terminal gives it, whatever this test process does with SIGINT (a process that ignores it passes
    # that on to the scripts it starts).
    process = subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, *command[1:]], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    progress = tmp_path / "cut" / "v1_progress.jsonl"
    deadline = time.monotonic() + 400  # the workers' start and 3 pictures; minutes when the machine is busy
    while time.monotonic() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 3):
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted: finished images are kept" in stderr and "Traceback" not in stderr
    done = len(progress.read_text().splitlines())
    assert 3 <= done < 30

    resumed = script("evaluate.py", *command[2:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming, {done} of 30 images already done" in resumed.stderr
    first, second = metrics_of(tmp_path / "here" / "v1_metrics.json"), metrics_of(tmp_path / "cut" / "v1_metrics.json")
    for name in ("AP", "AP50", "AP75", "AR100", "images"):
        assert first[name] == pytest.approx(second[name], abs=1e-9), name
    key = lambda d: (d["image_id"], -d["score"], d["category_id"])  # noqa: E731  (the order they came back in differs)
    mine = sorted(json.loads((tmp_path / "here" / "v1_results.json").read_text()), key=key)
    theirs = sorted(json.loads((tmp_path / "cut" / "v1_results.json").read_text()), key=key)
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs):
        assert a["category_id"] == b["category_id"] and a["score"] == pytest.approx(b["score"], abs=1e-4)


def start_pictures_on_ray(tmp_path: Path, count: int, checkpoints, address: str) -> tuple[list[str], subprocess.Popen]:
    """detect_image.py started on `count` pictures of 320 px on the module's cluster: its command and process."""
    folder = pictures(tmp_path / "in", count)
    (folder / "broken.jpg").unlink()
    command = [sys.executable, str(ROOT / "detect_image.py"), "--input", str(folder), "--model", "v1", "--weights",
               str(checkpoints["v1"]), "--imgsz", "320", "--backend", "torch", "--json", "--ray", address]
    env = {**os.environ, **LOCAL_ONLY, "TORCH_HOME": str(tmp_path / "th")}
    return command, subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)


def wait_for_an_output(out: Path, pattern: str) -> Path:
    """`out` once a file matching `pattern` is in it (or after 4 minutes)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out.glob(pattern)):
        time.sleep(0.05)
    return out


def worker_processes() -> list[int]:
    """Process ids of this project's Ray workers (Ray names them after the actor's class)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ray::DetectionWorker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes through /proc")
def test_a_killed_worker_costs_nothing(tmp_path, checkpoints, address):
    # Large enough pictures that each worker still holds some when one is killed after the first output.
    _, process = start_pictures_on_ray(tmp_path, 12, checkpoints, address)
    out = wait_for_an_output(tmp_path / "outputs", "*.jpg")
    victims = worker_processes()
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert len(list(out.glob("*.jpg"))) == len(list(out.glob("*.json"))) == 12
    assert len(stdout.splitlines()) == 12  # one result line per picture: none twice, none lost
    assert not leftovers(out)


def test_without_ray_installed_one_line(tmp_path, photo):
    shadow = tmp_path / "no-ray"
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = script("detect_image.py", "--input", str(photo), "--ray", cwd=tmp_path,
                    env={"PYTHONPATH": str(shadow)})
    assert_one_line_error(result)
    assert "pip install -r requirements-ray.txt" in result.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").iterdir())


def test_an_unreachable_cluster_is_one_line_soon(tmp_path, photo, checkpoints):
    start = time.monotonic()
    result = script("detect_image.py", "--input", str(photo), "--weights", str(checkpoints["v2"]),
                    "--ray", "127.0.0.1:9", cwd=tmp_path, timeout=60)
    assert time.monotonic() - start < 30
    assert_one_line_error(result)
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in result.stderr
    assert not list((tmp_path / "outputs").glob("*"))
    result = script("detect_image.py", "--input", str(photo), "--ray", "head:port", cwd=tmp_path)
    assert result.returncode == 2 and "give the cluster's address as HOST:PORT" in result.stderr


def test_ray_options_need_ray(tmp_path, photo):
    result = script("detect_image.py", "--input", str(photo), "--ray-workers", "2", cwd=tmp_path)
    assert result.returncode == 2 and "--ray-workers is for --ray" in result.stderr
    # The old spelling still works for now, and says what it is called today.
    result = script("detect_image.py", "--input", str(photo), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2 and "notice: --workers is now --ray-workers" in result.stderr
    # A Ray address that is none is a usage error, before anything starts.
    result = script("evaluate.py", "--annotations", "x.json", "--ray", "nonsense", cwd=tmp_path)
    assert result.returncode == 2 and "'nonsense' is no Ray address" in result.stderr
    result = script("detect_video.py", "--ray", "--show", cwd=tmp_path)
    assert result.returncode == 2 and "--show is not available with --ray" in result.stderr



def test_a_checkpoint_a_worker_cannot_read_is_named_as_the_user_gave_it(tmp_path, photo, checkpoints, address):
    broken = tmp_path / "broken.pth"
    broken.write_bytes(checkpoints["v1"].read_bytes()[:100_000])  # cut short: torch cannot read it
    result = script("detect_image.py", "--input", str(photo), "--weights", str(broken), "--model", "v1",
                    "--imgsz", SMALL_IMGSZ, "--ray", address, cwd=tmp_path)
    assert_one_line_error(result)
    assert f"{broken} is not a readable PyTorch checkpoint" in result.stderr
    assert "received" not in result.stderr  # not the worker's copy of the file

def test_a_local_ray_for_the_run(tmp_path, photo, checkpoints, address):
    # With no address, the run starts its own Ray (not the module's, which is already running) and stops it.
    result = script("detect_image.py", "--input", str(photo), "--weights", str(checkpoints["v1"]), "--model", "v1",
                    "--imgsz", SMALL_IMGSZ, "--ray", "--ray-workers", "1", cwd=tmp_path, env={"RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stderr
    assert "Ray: starting a local cluster" in result.stderr and "Ray: 1 worker " in result.stderr
    assert (tmp_path / "outputs" / "photo_v1.jpg").exists()


def test_workers_without_the_requirements_one_line(tmp_path, photo, checkpoints):
    # The run's own local Ray inherits this environment, in which PyTorch cannot be imported; the script itself
    # never imports it with --ray (it sends bytes and writes what comes back).
    shadow = tmp_path / "no-torch"
    (shadow / "torch").mkdir(parents=True)
    (shadow / "torch" / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    start = time.monotonic()
    result = script("detect_image.py", "--input", str(photo), "--weights", str(checkpoints["v1"]), "--model", "v1",
                    "--ray", "--ray-workers", "1", cwd=tmp_path, env={"PYTHONPATH": str(shadow), "RAY_ADDRESS": ""})
    assert time.monotonic() - start < 100  # a local Ray's start, then the workers' check, which fails at once
    assert_one_line_error(result)
    assert "the Ray workers lack the project's requirements (No module named 'torch')" in result.stderr
    assert not list((tmp_path / "outputs").glob("*"))


def outputs_now(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every output file: its modification time and contents."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sigterm_on_ray_keeps_what_is_done_and_the_same_command_resumes(tmp_path, checkpoints, address):
    command, process = start_pictures_on_ray(tmp_path, 10, checkpoints, address)
    out = wait_for_an_output(tmp_path / "outputs", "*.json")
    process.send_signal(signal.SIGTERM)  # after ray.init, which installs a SIGTERM handler of its own
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 143, stderr
    assert "SIGTERM: finishing the pictures in progress" in stderr
    assert "interrupted: the pictures written so far are kept; the same command with --resume carries on" in stderr
    assert "Traceback" not in stderr and not re.search(r"\.cc:\d+", stderr), stderr  # none of Ray's C++ lines
    done = len(stdout.splitlines())
    assert 1 <= done < 10 and len(list(out.glob("*.jpg"))) == done
    finished = outputs_now(out)
    resumed = script(*command[1:], "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume: {done} of 10 inputs already done with these settings" in resumed.stderr
    assert len(resumed.stdout.splitlines()) == 10 - done
    now = outputs_now(out)
    assert all(now[path] == stamp for path, stamp in finished.items())
    assert len(list(out.glob("*.jpg"))) == len(list(out.glob("*.json"))) == 10 and not leftovers(out)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_an_address_where_a_web_server_answers_is_one_line_soon(tmp_path, photo):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        result = script("detect_image.py", "--input", str(photo), "--ray", f"127.0.0.1:{server.server_port}",
                        cwd=tmp_path, timeout=60)
    finally:
        server.shutdown()
    assert time.monotonic() - start < 15
    assert_one_line_error(result)
    assert f"--ray 127.0.0.1:{server.server_port}: not a Ray cluster: a web server answered" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_what_a_worker_prints_comes_back_once(tmp_path, checkpoints, address):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "a.mp4", frames=3)
    make_video(clips / "b.mp4", frames=3)
    result = script("detect_video.py", "--input", str(clips), "--model", "v1", "--weights", str(checkpoints["v1"]),
                    "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--slice", "96", "--ray", address, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("sliced: ") == 1, result.stderr


def test_training_on_two_ray_workers_writes_the_run_here(tmp_path, address):
    from frcnn.synthetic.world import write_split
    from frcnn.training.settings import reference_lr

    annotations = write_split(tmp_path / "set", TINY_SET["seed"], TINY_SET["pictures"], TINY_SET["size"])
    run = tmp_path / "run"
    args = tiny_train_args(tmp_path / "set" / "images", annotations, run, "--epochs", "1", "--ray", address,
                           "--ray-workers", "2")
    # A guard against a hang, not a speed check: on a loaded machine, starting the workers alone took minutes.
    result = script("train.py", *args, cwd=tmp_path, env=ONE_THREAD, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "Ray: 2 training workers (1 CPU, 0 GPU each)" in result.stderr
    assert "training v1 on 2 Ray workers (cpu; 1 steps per epoch)" in result.stderr  # 3 pictures, 2 per worker
    assert [line for line in result.stdout.splitlines() if line.startswith("epoch ")][0].startswith("epoch 1/1  loss")
    assert len([line for line in result.stdout.splitlines() if line.startswith("epoch ")]) == 1, result.stdout
    settings = json.loads((run / "settings.json").read_text())
    assert settings["replicas"] == 2 and settings["lr"] == pytest.approx(reference_lr(4))  # 2 workers x 2 pictures
    assert len((run / "results.csv").read_text().splitlines()) == 2
    assert json.loads((run / "resume" / "position.json").read_text()) == {"epoch": 1, "step": 0}
    assert (run / "resume" / "state.pth").is_file()  # the last file sent, after its worker ended
    import torch

    weights = torch.load(run / "best.pth", weights_only=True)
    assert weights.keys() == torch.load(run / "last.pth", weights_only=True).keys()
    assert not any(key.startswith("module.") for key in weights)  # the model's own names, not the wrapper's
    assert not leftovers(run)
    again = script("train.py", "--resume", str(run), "--ray", address, cwd=tmp_path)
    assert again.returncode == 0 and "already holds this run, finished (1 epochs): nothing to do" in again.stderr
