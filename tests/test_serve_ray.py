"""serve.py --ray: the same API on Ray Serve, two replicas of one model on one local Ray cluster (3 CPUs) shared by
this module; the same answers as the server without Ray, a video job followed as it runs, and one replica killed
under load."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import pytest
import ray
from helpers import ONE_THREAD, SMALL_IMGSZ, assert_one_line_error, make_video, read_video, run_script, scene
from serving import Server, events, free_port, wait_for

REPLICA_TITLE = "ServeReplica:frcnn:model-v1"  # the process title Ray gives a replica of the app's model-v1
CLIENT_TIMEOUT_S = 90  # no request may take longer: one that does has hung
REPLACED_WITHIN_S = 240


@pytest.fixture(scope="module")
def address(export_cache) -> str:
    """The head of a local Ray cluster with 3 CPUs: one for each replica, one for a video job's worker."""
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def local_only(address: str) -> dict:
    """Ray's and the clients' connections stay on this machine (the scripts' environment has no route out)."""
    hosts = f"127.0.0.1,localhost,{address.rpartition(':')[0]}"
    return {"no_proxy": hosts, "NO_PROXY": hosts}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-ray")


def model_options(checkpoints) -> list[str]:
    return ["--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ, "--backend", "torch"]


@pytest.fixture(scope="module")
def on_ray(folder, checkpoints, address):
    with Server(folder, *model_options(checkpoints), "--ray", address, "--replicas", "2",
                "--jobs-dir", str(folder / "jobs-ray"), env=local_only(address)) as running:
        yield running


@pytest.fixture(scope="module")
def picture(folder) -> Path:
    path = folder / "picture.jpg"
    cv2.imwrite(str(path), scene(240, 320, seed=3))
    return path


def detect(server: Server, picture: Path, **params) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/detect", params=params, timeout=CLIENT_TIMEOUT_S,
                      files=[("file", (picture.name, picture.read_bytes(), "image/jpeg"))])


def without_timing(record: dict) -> dict:
    return {**record, "results": [{**result, "inference_ms": None} for result in record["results"]]}


def replicas() -> list[int]:
    """The process ids of the model's replicas."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if REPLICA_TITLE in title:
                found.append(int(entry.name))
    return found


def test_two_replicas_answer_as_the_server_without_ray(on_ray, folder, checkpoints, picture):
    ready = httpx.get(f"{on_ray.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["models"] == ["v1"]
    assert len(replicas()) == 2, on_ray.output()
    # One thread, as each replica has (its one CPU): other thread counts sum in another order, moving a box by 0.1 px.
    with Server(folder, *model_options(checkpoints), "--jobs-dir", str(folder / "jobs-local"),
                env=ONE_THREAD) as local:
        for params in ({"threshold": 0.5}, {"threshold": 0.3, "max_det": 3, "classes": "person"}):
            here, there = detect(local, picture, **params), detect(on_ray, picture, **params)
            assert here.status_code == there.status_code == 200, there.text
            (mine,), (theirs,) = here.json(), there.json()
            assert theirs["results"][0]["detections"], "the seeded checkpoint finds something"
            assert without_timing(theirs) == without_timing(mine)
        assert httpx.get(f"{on_ray.url}/v1/models", timeout=10).json() == \
            httpx.get(f"{local.url}/v1/models", timeout=10).json()
    metrics = httpx.get(f"{on_ray.url}/metrics", timeout=10).text
    assert 'frcnn_pictures_total{model="v1"}' in metrics and 'frcnn_batch_size_count{model="v1"}' in metrics


def test_a_video_job_on_ray_is_followed_as_it_runs(on_ray, folder):
    clip = make_video(folder / "clip.mp4", frames=12)
    with open(clip, "rb") as handle:
        answer = httpx.post(f"{on_ray.url}/v1/jobs", files={"file": (clip.name, handle, "video/mp4")},
                            data={"count_line": "0.5,0,0.5,1", "threshold": "0.3"}, timeout=CLIENT_TIMEOUT_S)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    streamed = events(on_ray, job["id"])
    log = folder / "jobs-ray" / job["id"] / "log.txt"
    assert streamed[-1][1] == "state" and streamed[-1][2]["state"] == "done", log.read_text()[-3000:]
    # Drawn by a Ray worker, the video's progress and events still came as it ran, through the job's process.
    progress = [data for _, kind, data in streamed if kind == "progress"]
    done = [data["frames_done"] for data in progress]
    assert done == sorted(done) and done[-1] == 12 and {data["frames_total"] for data in progress} == {12}
    files = {f["name"]: f["url"] for f in httpx.get(f"{on_ray.url}/v1/jobs/{job['id']}/files", timeout=10).json()}
    logged = httpx.get(on_ray.url + files["clip_v1_events.jsonl"], timeout=10).text.splitlines()
    assert [data["event"] for _, kind, data in streamed if kind == "analytics"] == [json.loads(x) for x in logged]
    assert logged, "the clip's rectangles cross the line"
    preview = cv2.imread(str(folder / "jobs-ray" / job["id"] / "preview.jpg"))
    assert preview.shape == (120, 160, 3)


def test_a_video_job_on_ray_cancelled_keeps_its_video_so_far(on_ray, folder):
    long_clip = make_video(folder / "long.mp4", frames=300)
    with open(long_clip, "rb") as handle:
        answer = httpx.post(f"{on_ray.url}/v1/jobs", files={"file": (long_clip.name, handle, "video/mp4")},
                            timeout=CLIENT_TIMEOUT_S)
    job_id = answer.json()["id"]
    wait_for(on_ray, job_id, states=("running",), frames=3)
    assert httpx.delete(f"{on_ray.url}/v1/jobs/{job_id}", timeout=10).status_code == 200
    # The stop reaches the worker: it ends the video where it is, not at its end.
    final = wait_for(on_ray, job_id)
    assert final["state"] == "cancelled" and 3 <= final["frames_done"] < 300, final
    video = httpx.get(f"{on_ray.url}/v1/jobs/{job_id}/files/long_v1.mp4", timeout=30)
    assert video.status_code == 200
    (folder / "partial.mp4").write_bytes(video.content)
    assert len(read_video(folder / "partial.mp4")[0]) == final["frames_done"]


def test_a_replica_killed_under_load_loses_no_request(on_ray, picture):
    before = replicas()
    assert len(before) == 2

    def one(_: int):
        try:
            return detect(on_ray, picture, threshold=0.5)
        except httpx.TimeoutException as error:  # a hang, answered by nothing
            return error

    with ThreadPoolExecutor(6) as pool:
        answers = [pool.submit(one, n) for n in range(18)]
        time.sleep(2.0)  # the first pictures are on the replicas
        os.kill(before[0], signal.SIGKILL)
        answers = [answer.result(timeout=CLIENT_TIMEOUT_S * 3) for answer in answers]
    for answer in answers:
        assert isinstance(answer, httpx.Response), f"no answer: {answer!r}"
        if answer.status_code != 200:  # a failure says why, in one line
            assert answer.status_code >= 500, answer.text
            message = answer.json()["error"]
            assert message and "\n" not in message
    assert sum(answer.status_code == 200 for answer in answers) >= len(answers) - 6  # at most those on the lost one
    for _ in range(4):
        answer = detect(on_ray, picture, threshold=0.5)
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["results"][0]["detections"]
    deadline = time.monotonic() + REPLACED_WITHIN_S
    while len(replicas()) < 2 and time.monotonic() < deadline:
        time.sleep(2)
    assert len(replicas()) == 2 and before[0] not in replicas(), "Serve starts a replica in place of the lost one"
    assert httpx.get(f"{on_ray.url}/readyz", timeout=10).status_code == 200


def test_ray_options_mistakes_are_one_line(tmp_path):
    base = ("serve.py", "--port", str(free_port()))
    result = run_script(*base, "--replicas", "2", cwd=tmp_path)
    assert result.returncode == 2 and "--replicas is for --ray" in result.stderr
    result = run_script(*base, "--ray", "--min-replicas", "3", "--max-replicas", "2", cwd=tmp_path)
    assert result.returncode == 2 and "--min-replicas 3 is above --max-replicas 2" in result.stderr
    start = time.monotonic()
    result = run_script(*base, "--ray", "127.0.0.1:9", cwd=tmp_path, timeout=60)
    assert time.monotonic() - start < 30
    assert_one_line_error(result)
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in result.stderr
    shadow = tmp_path / "no-ray"
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = run_script(*base, "--ray", cwd=tmp_path, env={"PYTHONPATH": str(shadow)})
    assert_one_line_error(result)
    assert "pip install -r requirements-ray.txt" in result.stderr


def test_a_video_job_on_ray_runs_detect_video_with_ray(tmp_path, checkpoints):
    """A job's command line joins the cluster, and follows the video's progress and preview as any job does (the
    worker drawing it sends them back)."""
    import asyncio

    from frcnn.cli.serve import job_model_arguments
    from frcnn.core.specs import ModelSpec
    from frcnn.serve.jobs import JobRunner
    from frcnn.serve.metrics import Metrics
    from frcnn.serve.on_ray import JobsOnRay
    from frcnn.serve.settings import ServeSettings

    specs = [ModelSpec("v1", weights=str(checkpoints["v1"]), imgsz=int(SMALL_IMGSZ), backend="torch")]
    arguments = JobsOnRay(job_model_arguments(specs, "v1", 0.5, None), "127.0.0.1:6379")

    async def submit():
        runner = JobRunner(ServeSettings(jobs_dir=tmp_path / "jobs"), arguments, Metrics())
        job_id, inputs = runner.new_job()
        clip = inputs / "clip.mp4"
        clip.write_bytes(b"")
        runner.submit(job_id, str(clip), {"track": ["true"]}, None)
        command = json.loads(runner.store.get(job_id)["arguments"])
        runner.store.close()
        return command

    command = asyncio.run(submit())
    assert command[command.index("--ray") + 1] == "127.0.0.1:6379"
    assert "--status" in command and "--preview" in command and "--track" in command
