"""Video jobs on a real server: a clip with tracking and a counting line runs as detect_video.py would, its events
arrive as they happen (and resume), its H.264 video is served with Range requests, a cancelled job keeps a playable
partial video, and a server killed mid-job runs the job again when it starts."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import av
import httpx
import pytest
from helpers import SMALL_IMGSZ, make_video, read_video
from serving import Server, events, wait_for

from frcnn.serve.jobs import JobStore


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-jobs")


def server_args(folder, checkpoints) -> list[str]:
    return ["--model", "v1", "--weights", str(checkpoints["v1"]), "--imgsz", SMALL_IMGSZ, "--backend", "torch",
            "--jobs-dir", str(folder / "jobs"), "--allow-sources", str(folder / "allowed")]


@pytest.fixture(scope="module")
def server(folder, checkpoints):
    (folder / "allowed").mkdir()
    with Server(folder, *server_args(folder, checkpoints)) as running:
        yield running


@pytest.fixture(scope="module")
def clip(folder):
    return make_video(folder / "clip.mp4", frames=12)


def post_job(server, clip, **fields) -> httpx.Response:
    data = {key: value for key, value in fields.items()}
    with open(clip, "rb") as handle:
        return httpx.post(f"{server.url}/v1/jobs", files={"file": (clip.name, handle, "video/mp4")}, data=data,
                          timeout=60)


def test_a_tracked_clip_streams_its_events_and_serves_a_seekable_h264_video(server, clip):
    answer = post_job(server, clip, track="true", count_line="0.5,0,0.5,1", threshold="0.3")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == job["links"]["self"] == f"/v1/jobs/{job['id']}"
    streamed = events(server, job["id"])
    kinds = [kind for _, kind, _ in streamed]
    assert kinds[-1] == "state" and streamed[-1][2]["state"] == "done", streamed[-1]
    progress = [data for _, kind, data in streamed if kind == "progress"]
    assert progress[-1]["frames_done"] == progress[-1]["frames_total"] == 12
    numbered = [int(event_id) for event_id, _, _ in streamed if event_id is not None]
    assert numbered == sorted(numbered) and len(set(numbered)) == len(numbered)
    files = {f["name"]: f for f in httpx.get(f"{server.url}/v1/jobs/{job['id']}/files").json()}
    assert {"clip_v1.mp4", "clip_v1.jsonl", "clip_v1_events.jsonl", "clip_v1_summary.json"} <= set(files)
    # the analytics events streamed are the events file's lines, in order
    logged = httpx.get(f"{server.url}{files['clip_v1_events.jsonl']['url']}").text.splitlines()
    assert [data["event"] for _, kind, data in streamed if kind == "analytics"] == [json.loads(x) for x in logged]
    # resuming after an event gives only what came after it
    middle = numbered[len(numbered) // 2]
    resumed = events(server, job["id"], last_event_id=str(middle))
    assert [int(i) for i, _, _ in resumed if i is not None] == [n for n in numbered if n > middle]
    video_url = f"{server.url}{files['clip_v1.mp4']['url']}"
    whole = httpx.get(video_url)
    assert whole.headers["content-type"] == "video/mp4" and len(whole.content) == files["clip_v1.mp4"]["size"]
    part = httpx.get(video_url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    (server.folder / "served.mp4").write_bytes(whole.content)
    with av.open(str(server.folder / "served.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert len(read_video(server.folder / "served.mp4")[0]) == 12
    done = httpx.get(f"{server.url}/v1/jobs/{job['id']}").json()
    assert (done["state"], done["frames_done"], done["frames_total"]) == ("done", 12, 12) and done["fps"] > 0


def test_a_cancelled_job_keeps_a_playable_partial_video(server, folder):
    long_clip = make_video(folder / "long.mp4", frames=400)
    job = post_job(server, long_clip).json()
    wait_for(server, job["id"], states=("running",), frames=3)
    cancelled = httpx.delete(f"{server.url}/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200
    final = wait_for(server, job["id"])
    assert final["state"] == "cancelled"
    video = httpx.get(f"{server.url}/v1/jobs/{job['id']}/files/long_v1.mp4")
    assert video.status_code == 200
    (folder / "partial.mp4").write_bytes(video.content)
    frames = len(read_video(folder / "partial.mp4")[0])
    assert 3 <= frames < 400
    gone = httpx.delete(f"{server.url}/v1/jobs/{job['id']}")  # a finished job is deleted with its files
    assert gone.json() == {"id": job["id"], "deleted": True}
    assert httpx.get(f"{server.url}/v1/jobs/{job['id']}").status_code == 404
    assert not (folder / "jobs" / job["id"]).exists()


@pytest.mark.parametrize("fields, status, words", [
    ({"count_line": "0.5,0,0.5"}, 422, "count-line"),
    ({"detect_every": "0"}, 422, "detect-every"),
    ({"colour": "red"}, 422, "'colour' is no job option"),
    ({"track": "maybe"}, 422, "track"),
    ({"model": "v2"}, 422, "this server runs v1"),
])
def test_bad_job_options_get_one_line_and_leave_nothing(server, clip, folder, fields, status, words):
    before = sorted(p.name for p in (folder / "jobs").iterdir())
    answer = post_job(server, clip, **fields)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"] and "\n" not in answer.json()["error"]
    assert sorted(p.name for p in (folder / "jobs").iterdir()) == before


def test_job_sources_and_file_names_stay_inside(server, folder, clip):
    refused = httpx.post(f"{server.url}/v1/jobs", data={"source": str(clip)})
    assert refused.status_code == 403
    for source in ("0", "rtsp://127.0.0.1:9/stream"):
        assert httpx.post(f"{server.url}/v1/jobs", data={"source": source}).status_code == 403
    (folder / "allowed" / "here.mp4").write_bytes(clip.read_bytes())
    job = httpx.post(f"{server.url}/v1/jobs", data={"source": str(folder / "allowed" / "here.mp4"),
                                                    "max_frames": "2"}).json()
    assert wait_for(server, job["id"])["state"] == "done"
    for name in ("../jobs.sqlite3", "../../jobs.sqlite3", "%2e%2e/log.txt", "/etc/passwd"):
        assert httpx.get(f"{server.url}/v1/jobs/{job['id']}/files/{name}").status_code == 404
    assert httpx.get(f"{server.url}/v1/jobs/nosuchjob").status_code == 404


def test_the_job_list_is_newest_first_in_pages_and_by_state(server, folder):
    # Jobs a server before this one finished, recorded as it records them.
    store = JobStore(folder / "jobs")
    states = ("done", "failed", "cancelled", "done", "failed", "done", "done")
    earlier = [f"earlier{n}" for n in range(len(states))]
    for n, (job_id, state) in enumerate(zip(earlier, states)):
        store.add(job_id, f"/clips/{job_id}.mp4", f"{job_id}.mp4", [])
        store.update(job_id, state=state, created=1000.0 + min(n, 5))  # the last two share a time
    store.close()

    every = httpx.get(f"{server.url}/v1/jobs", params={"limit": 1000}, timeout=30)
    assert every.status_code == 200 and "link" not in every.headers
    every = every.json()
    assert [(job["created"], job["id"]) for job in every] == sorted(
        ((job["created"], job["id"]) for job in every), reverse=True)
    assert [job["id"] for job in every][-len(earlier):] == ["earlier6", "earlier5", "earlier4", "earlier3",
                                                            "earlier2", "earlier1", "earlier0"]
    assert every[-1]["source"] == "earlier0.mp4" and every[-1]["links"]["self"] == "/v1/jobs/earlier0"

    paged, url = [], f"{server.url}/v1/jobs?limit=3"
    while url:
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and len(page.json()) <= 3
        paged += page.json()
        url = page.links.get("next", {}).get("url")
        assert len(paged) <= len(every), "the pages never end"
        if url:
            assert len(page.json()) == 3
            url = httpx.URL(server.url).join(url)
    assert [job["id"] for job in paged] == [job["id"] for job in every]

    failed = httpx.get(f"{server.url}/v1/jobs", params={"state": ["failed", "cancelled"], "limit": 2}, timeout=30)
    assert [job["id"] for job in failed.json()] == [job["id"] for job in every
                                                    if job["state"] in ("failed", "cancelled")][:2]
    rest = httpx.get(httpx.URL(server.url).join(failed.links["next"]["url"]), timeout=30).json()
    assert {job["state"] for job in rest} <= {"failed", "cancelled"} and "earlier1" in [job["id"] for job in rest]

    for params, status, words in (({"state": "lost"}, 422, "state"), ({"limit": 0}, 422, "limit"),
                                  ({"limit": 1001}, 422, "limit"), ({"before": "nosuchjob"}, 404, "no job nosuchjob")):
        refused = httpx.get(f"{server.url}/v1/jobs", params=params, timeout=30)
        assert refused.status_code == status and words in refused.json()["error"], refused.text


def test_a_server_killed_mid_job_runs_it_again_when_it_starts(folder, checkpoints, clip):
    restart = folder / "restart"
    (restart / "allowed").mkdir(parents=True)
    first = Server(restart, *server_args(restart, checkpoints)).start()
    finished = post_job(first, clip, max_frames="2").json()
    wait_for(first, finished["id"])
    job = post_job(first, make_video(restart / "kill.mp4", frames=20), track="true").json()
    wait_for(first, job["id"], states=("running",), frames=2)
    first.stop(signal.SIGKILL)
    time.sleep(1)  # the job's process dies with its server
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if job["id"] in read_text(p)]
    second = Server(restart, *server_args(restart, checkpoints), port=first.port).start()
    try:
        final = wait_for(second, job["id"])
        assert (final["state"], final["frames_done"]) == ("done", 20), second.output()[-3000:]
        assert len(read_video_bytes(second, job["id"], "kill_v1.mp4", restart)) == 20
        assert httpx.get(f"{second.url}/v1/jobs/{finished['id']}/files/clip_v1.mp4").status_code == 200
    finally:
        second.stop()
    assert "Finished server process" in second.output()  # SIGTERM stops it gracefully


def read_video_bytes(server, job_id: str, name: str, folder):
    path = folder / f"fetched-{name}"
    path.write_bytes(httpx.get(f"{server.url}/v1/jobs/{job_id}/files/{name}").content)
    return read_video(path)[0]


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="ignore")
    except OSError:  # a process that ended meanwhile
        return ""
