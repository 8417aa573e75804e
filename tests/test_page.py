"""The service's web page in a real browser: Debian's Chromium driven by Playwright, against a real server with both
models. A photo's panels count what the API answers, the slider and the class filter redraw in the browser, what
differs is what the project's own matching rule says, a clip becomes a job whose drawn video plays in the page, the
server's earlier jobs are listed and open as the page's own, and errors say what to do. Skipped where Playwright or
Chromium is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from helpers import SMALL_IMGSZ, make_video, scene
from serving import Server

from frcnn.core.boxes import greedy_pairs, overlap_matrix
from frcnn.serve.jobs import JobStore

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
              pytest.mark.slow]

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]
DETECT_TIMEOUT_MS = 120_000
JOB_TIMEOUT_MS = 300_000
SCREENSHOT_FOLDER = "FRCNN_PAGE_SCREENSHOTS"  # where the docs' screenshot is saved, when set


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("page")


@pytest.fixture(scope="module")
def server(folder, checkpoints):
    (folder / "allowed").mkdir()
    with Server(folder, "--model", "both", "--weights", str(checkpoints["v1"]), str(checkpoints["v2"]),
                "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--jobs-dir", str(folder / "jobs"),
                "--allow-sources", str(folder / "allowed")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(server.url + "/")
    opened.wait_for_function("document.querySelector('#models-line').textContent.includes('threshold')")
    yield opened
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def photo(folder) -> Path:
    path = folder / "street.jpg"
    cv2.imwrite(str(path), scene())
    return path


@pytest.fixture(scope="module")
def answers(server, photo) -> dict:
    """The API's records of the photo at the server's threshold and at the page's low one."""
    found = {}
    for key, query in (("default", {}), ("low", {"threshold": "0.05"})):
        with open(photo, "rb") as handle:
            reply = httpx.post(f"{server.url}/v1/detect", params=query, timeout=120,
                               files={"file": (photo.name, handle, "image/jpeg")})
        assert reply.status_code == 200, reply.text
        found[key] = reply.json()[0]
    return found


def counts(page) -> dict[str, int]:
    return {figure.get_attribute("data-model"): int(figure.get_attribute("data-count"))
            for figure in page.query_selector_all("figure.panel")}


def upload_photo(page, photo: Path) -> None:
    page.set_input_files("#file-input", str(photo))
    page.wait_for_function("document.querySelectorAll('figure.panel[data-count]').length === 2",
                           timeout=DETECT_TIMEOUT_MS)


def play(page, card: str = ".job") -> dict:
    """Plays the drawn video of the job card `card` until its time moves (or it ends): what the video says then."""
    page.wait_for_function("card => document.querySelector(`${card} .job-video`).readyState >= 2", arg=card,
                           timeout=30_000)
    return page.evaluate("""async card => {
        const video = document.querySelector(`${card} .job-video`);
        await video.play();
        const start = performance.now();
        while (!video.ended && video.currentTime === 0 && performance.now() - start < 10000) {
            await new Promise(resolve => setTimeout(resolve, 50));
        }
        return {error: video.error && video.error.code, time: video.currentTime, ended: video.ended,
                file: video.dataset.file, width: video.videoWidth};
    }""", card)


def earlier(page) -> list[dict]:
    """The list of earlier videos as the page shows it, once it has been read."""
    page.wait_for_selector("#earlier-jobs:not([aria-busy])", state="attached")
    return page.eval_on_selector_all("#earlier-jobs li", """items => items.map(item => ({
        id: item.dataset.job, state: item.dataset.state, text: item.textContent,
        name: item.querySelector('.earlier-name').textContent,
        shownState: item.querySelector('.earlier-state').textContent,
        created: item.querySelector('time') && item.querySelector('time').getAttribute('datetime'),
        button: item.querySelector('button').textContent}))""")


@pytest.fixture(scope="module")
def finished_job(server, folder) -> dict:
    """A clip sent to the API itself, not through the page, and run to its end: what a page opened later finds."""
    clip = make_video(folder / "earlier.mp4", frames=6)
    with open(clip, "rb") as handle:
        reply = httpx.post(f"{server.url}/v1/jobs", timeout=120, files={"file": (clip.name, handle, "video/mp4")},
                           data={"model": "v1", "track": "true", "count_line": "0.5,0,0.5,1", "max_frames": "3"})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while job["state"] not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = httpx.get(server.url + job["links"]["self"], timeout=30).json()
    assert job["state"] == "done", job
    return job


def test_a_photo_is_drawn_side_by_side_with_the_apis_counts_and_the_slider_and_filter_redraw(page, photo, answers):
    upload_photo(page, photo)
    expected = {result["model"]: len(result["detections"]) for result in answers["default"]["results"]}
    assert expected["v1"] > 0 and expected["v2"] > 0
    assert counts(page) == expected
    titles = [title.text_content() for title in page.query_selector_all(".panel-title")]
    assert titles[0].startswith(f"v1: {expected['v1']} boxes ·") and titles[0].endswith(" ms")
    assert page.eval_on_selector("figure.panel canvas", "c => [c.width, c.height]") == [
        answers["default"]["width"], answers["default"]["height"]]

    # Between two of the low answer's scores: the count in the browser is the API's count at that threshold.
    scores = sorted(d["score"] for d in answers["low"]["results"][0]["detections"])
    threshold = round((scores[len(scores) // 2] + scores[len(scores) // 2 - 1]) / 2, 5)
    if scores[len(scores) // 2] == scores[len(scores) // 2 - 1]:
        threshold = scores[len(scores) // 2]
    page.fill("#threshold-number", str(threshold))
    page.dispatch_event("#threshold-number", "input")
    expected_there = {result["model"]: sum(d["score"] >= threshold for d in result["detections"])
                      for result in answers["low"]["results"]}
    assert counts(page) == expected_there != expected
    page.focus("#threshold-range")  # the slider, moved by keyboard: to its lowest (the page's ask), then to 1
    page.keyboard.press("Home")
    assert counts(page) == {result["model"]: len(result["detections"]) for result in answers["low"]["results"]}
    page.keyboard.press("End")
    assert page.input_value("#threshold-range") == "1"
    assert counts(page) == {"v1": 0, "v2": 0}
    page.keyboard.press("Home")

    page.select_option("#class-filter", "car")  # a class the model knows but did not find here
    assert counts(page) == {"v1": 0, "v2": 0}
    page.select_option("#class-filter", "person")
    assert counts(page) == {result["model"]: sum(d["label"] == "person" for d in result["detections"])
                            for result in answers["low"]["results"]}
    shots = os.environ.get(SCREENSHOT_FOLDER)
    if shots:
        page.fill("#threshold-number", "0.9995")
        page.dispatch_event("#threshold-number", "input")
        page.screenshot(path=str(Path(shots) / "web-page.png"), full_page=True)


def test_what_differs_is_the_projects_matching_rule(page, photo, answers):
    upload_photo(page, photo)
    v1, v2 = answers["default"]["results"]
    difference = page.eval_on_selector(".differences", "p => ({text: p.textContent, ...p.dataset})")

    def arrays(result):
        return (np.array([d["box"] for d in result["detections"]], np.float64).reshape(-1, 4),
                [d["label"] for d in result["detections"]])

    (boxes1, labels1), (boxes2, labels2) = arrays(v1), arrays(v2)
    same_label = np.array([[a == b for b in labels2] for a in labels1], bool).reshape(len(labels1), len(labels2))
    pairs = greedy_pairs(overlap_matrix(boxes1, boxes2), 0.5, allowed=same_label)
    assert int(difference["both"]) == len(pairs)
    assert int(difference["onlyFirst"]) == len(boxes1) - len(pairs)
    assert int(difference["onlySecond"]) == len(boxes2) - len(pairs)
    assert f"v2 found {len(boxes2) - len(pairs)} that v1 missed" in difference["text"]
    in_browser = page.evaluate("([a, b]) => matchDetections(a, b).pairs", [v1["detections"], v2["detections"]])
    assert sorted(map(tuple, in_browser)) == sorted(pairs)


def test_a_box_says_its_label_and_score_on_hover_and_from_the_keyboard(page, photo, answers):
    upload_photo(page, photo)
    first = answers["default"]["results"][0]["detections"]
    canvas = page.query_selector("figure.panel[data-model='v1'] canvas")
    canvas.scroll_into_view_if_needed()
    bounds = canvas.bounding_box()
    scale = bounds["width"] / answers["default"]["width"]

    def area(box):
        return (box[2] - box[0]) * (box[3] - box[1])

    x1, y1, x2, y2 = max(first, key=lambda d: area(d["box"]))["box"]
    x, y = (x1 + x2) / 2, (y1 + y2) / 2
    # The box under the pointer is the smallest one holding it.
    under = min((d for d in first if d["box"][0] <= x <= d["box"][2] and d["box"][1] <= y <= d["box"][3]),
                key=lambda d: area(d["box"]))
    page.mouse.move(bounds["x"] + x * scale, bounds["y"] + y * scale)
    page.wait_for_selector("#tooltip:not([hidden])")
    assert page.text_content("#tooltip").startswith(f"{under['label']} {under['score']:.3f}")
    page.mouse.move(0, 0)
    canvas.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#tooltip:not([hidden])")
    shown = page.text_content("#tooltip")
    assert shown.startswith(f"{first[0]['label']} {first[0]['score']:.3f}")


def test_errors_say_what_is_wrong_and_what_to_do(page, folder, photo):
    notes = folder / "notes.jpg"
    notes.write_text("not a picture at all\n")
    page.set_input_files("#file-input", str(notes))
    message = page.wait_for_selector(".picture.failed .picture-status", timeout=DETECT_TIMEOUT_MS)
    assert message.text_content().startswith("notes.jpg: not a picture")

    page.route("**/v1/detect*", lambda route: route.fulfill(
        status=429, headers={"Retry-After": "7", "Content-Type": "application/json"},
        body=json.dumps({"error": "the server is busy (16 pictures in its queue of 16); try again in 7 s"})))
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector(".picture.failed .retry")
    status = page.query_selector_all(".picture.failed .picture-status")[0].text_content()
    assert "The server is busy: try again in 7 s" in status
    assert page.query_selector(".picture.failed .retry").is_disabled()

    page.fill("#source-input", str(folder / "elsewhere.mp4"))
    page.click("#source-start")
    job_error = page.wait_for_selector(".job.failed .job-status")
    assert "not under the folders this server allows" in job_error.text_content()


def test_the_api_key_is_sent_as_a_header(page):
    seen = []
    page.route("**/v1/models", lambda route: (seen.append(route.request.headers.get("x-api-key")),
                                                route.continue_()))
    page.click("#key-box summary")
    page.fill("#key-input", "s3cret")
    page.press("#key-input", "Enter")
    page.wait_for_function("document.querySelector('#models-line').textContent.includes('threshold')")
    assert seen and seen[-1] == "s3cret"


def test_it_reads_at_phone_width_and_by_keyboard(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    phone.goto(server.url + "/")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Enter on the focused drop zone opens the file picker (seen as a click on the file input; the picker itself
    # is kept shut, since headless Chromium does not always report it).
    phone.evaluate("""document.querySelector('#file-input').addEventListener('click', event => {
        event.preventDefault();
        window.pickerOpened = true;
    })""")
    phone.focus("#drop-zone")
    phone.keyboard.press("Enter")
    assert phone.evaluate("window.pickerOpened === true")
    assert phone.get_attribute("#file-input", "multiple") is not None
    context.close()


def test_a_server_without_jobs_says_so_and_a_list_it_cannot_read_is_an_error(page, server):
    if httpx.get(f"{server.url}/v1/jobs", timeout=30).json():
        pytest.skip("this module's server has jobs already (the tests ran in another order)")
    assert earlier(page) == []
    assert page.is_visible("#earlier-empty")
    assert page.text_content("#earlier-empty") == "No videos on this server yet."

    listing = re.compile(r"/v1/jobs(\?.*)?$")  # the list, whatever its query
    page.route(listing, lambda route: route.fulfill(
        status=500, headers={"Content-Type": "application/json"},
        body=json.dumps({"error": "the jobs' records cannot be read"})))
    page.click("#earlier-refresh")
    message = page.wait_for_selector("#messages .message.error")
    assert message.text_content().startswith("The earlier videos could not be listed: the jobs' records cannot be "
                                             "read")
    page.unroute(listing)
    page.focus("#earlier-refresh")  # Refresh from the keyboard; a list read again takes its error away
    page.keyboard.press("Enter")
    page.wait_for_selector("#messages .message", state="detached")
    assert page.is_visible("#earlier-empty")


def test_a_clip_becomes_a_job_with_progress_and_its_drawn_video_plays(page, folder):
    clip = make_video(folder / "clip.mp4", frames=6)
    page.select_option("#model-select", "v1")
    page.fill("#count-line", "0.5,0,0.5,1")
    page.fill("#max-frames", "3")
    page.set_input_files("#file-input", str(clip))
    page.wait_for_selector(".job[data-state='done'] .job-result:not([hidden])", timeout=JOB_TIMEOUT_MS)
    assert page.eval_on_selector(".job progress", "p => [p.value, p.max]") == [3, 3]
    assert page.text_content(".job .job-status").startswith("done: 3 of 3 frames")
    played = play(page)
    assert played["error"] is None and (played["time"] > 0 or played["ended"]), played
    assert played["file"] == "clip_v1.mp4" and played["width"] == 160
    links = [link.text_content() for link in page.query_selector_all(".job-files a")]
    assert any(link.startswith("clip_v1.mp4 ") for link in links)
    assert any(link.startswith("clip_v1_summary.json ") for link in links)
    summary = page.text_content(".job-summary")
    assert "line line, left to right" in summary and "v1: 3 frames" in summary
    # The job has ended: the list of earlier videos was read again and has it, done.
    job_id = page.get_attribute(".job", "data-job")
    page.wait_for_selector(f"#earlier-jobs li[data-job='{job_id}'][data-state='done']")
    assert page.is_hidden("#earlier-empty")


def test_earlier_videos_are_listed_on_a_fresh_page_and_open_as_its_own(finished_job, page, server, browser):
    # The job ran to its end before this page was opened (a module's fixture is set up before a test's).
    assert page.query_selector_all(".job") == []
    jobs = httpx.get(f"{server.url}/v1/jobs", timeout=30).json()
    listed = earlier(page)
    assert [item["id"] for item in listed] == [job["id"] for job in jobs]  # every job, newest first
    item = next(item for item in listed if item["id"] == finished_job["id"])
    assert item["name"] == "earlier.mp4" and item["state"] == item["shownState"] == "done"
    assert "3 of 3 frames" in item["text"] and item["button"] == "Open"
    created = datetime.fromisoformat(item["created"].replace("Z", "+00:00")).timestamp()
    assert abs(created - finished_job["created"]) < 0.002
    assert page.is_hidden("#earlier-empty")

    # Opened from the keyboard, it is shown as the page shows a job it started: progress, video, summary, files.
    card = f".job[data-job='{finished_job['id']}']"
    page.focus(f"#earlier-jobs li[data-job='{finished_job['id']}'] button")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{card}[data-state='done'] .job-result:not([hidden])", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("document.activeElement.classList.contains('job-title')")
    assert page.text_content(f"{card} .job-title") == "earlier.mp4"
    assert page.eval_on_selector(f"{card} progress", "p => [p.value, p.max]") == [3, 3]
    assert page.text_content(f"{card} .job-status").startswith("done: 3 of 3 frames")
    assert page.is_hidden(f"{card} .job-cancel")
    played = play(page, card)
    assert played["error"] is None and (played["time"] > 0 or played["ended"]), played
    assert played["file"] == "earlier_v1.mp4" and played["width"] == 160
    links = [link.text_content() for link in page.query_selector_all(f"{card} .job-files a")]
    assert any(link.startswith("earlier_v1.mp4 ") for link in links)
    assert any(link.startswith("earlier_v1_summary.json ") for link in links)
    summary = page.text_content(f"{card} .job-summary")
    assert "line line, left to right" in summary and "v1: 3 frames" in summary
    page.click(f"#earlier-jobs li[data-job='{finished_job['id']}'] button")  # opened again: the same card
    assert len(page.query_selector_all(card)) == 1

    # At phone width the list is one column that does not scroll sideways.
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    phone.goto(server.url + "/")
    assert len(earlier(phone)) == len(jobs)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()


def test_a_job_at_work_moves_on_in_the_list_by_itself_and_a_finished_one_is_deleted(page, server, folder):
    clip = make_video(folder / "at-work.mp4", frames=12)
    with open(clip, "rb") as handle:
        reply = httpx.post(f"{server.url}/v1/jobs", timeout=120, files={"file": (clip.name, handle, "video/mp4")},
                           data={"model": "v1", "max_frames": "8"})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["id"]
    page.click("#earlier-refresh")  # sent from elsewhere: the list has it once read again
    row = f"#earlier-jobs li[data-job='{job_id}']"
    page.wait_for_selector(row)
    assert page.get_attribute(row, "data-state") in ("queued", "running")  # its process is still loading the model
    assert page.text_content(f"{row} .earlier-remove") == "Cancel"
    # No click from here on: the list is read again while the job is at work.
    page.wait_for_selector(f"{row}[data-state='done']", timeout=JOB_TIMEOUT_MS)
    assert "8 of 8 frames" in page.text_content(row)
    assert page.text_content(f"{row} .earlier-remove") == "Delete"

    # Deleting asks first; no keeps it, yes deletes it on the server and takes it off the list.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click(f"{row} .earlier-remove")
    assert asked == ["Delete at-work.mp4 and its files from the server?"]
    assert httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30).status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"{row} .earlier-remove")
    page.wait_for_selector(row, state="detached")
    assert httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30).status_code == 404
    assert not (folder / "jobs" / job_id).exists()

    # Cancel, on a job at work, asks nothing and cancels it on the server; the list shows that by itself.
    long_clip = make_video(folder / "long.mp4", frames=300)
    with open(long_clip, "rb") as handle:
        reply = httpx.post(f"{server.url}/v1/jobs", timeout=120,
                           files={"file": (long_clip.name, handle, "video/mp4")}, data={"model": "v1"})
    row = f"#earlier-jobs li[data-job='{reply.json()['id']}']"
    page.click("#earlier-refresh")
    page.click(f"{row} .earlier-remove")
    page.wait_for_selector(f"{row}[data-state='cancelled']", timeout=JOB_TIMEOUT_MS)
    assert httpx.get(server.url + reply.json()["links"]["self"], timeout=30).json()["state"] == "cancelled"


def test_a_long_list_shows_its_newest_and_older_ones_on_asking(page, server, folder):
    store = JobStore(folder / "jobs")  # jobs an earlier server finished, recorded as it records them
    for n in range(25):
        store.add(f"old{n:02d}", f"/clips/old{n:02d}.mp4", f"old{n:02d}.mp4", [])
        store.update(f"old{n:02d}", state="done", created=1000.0 + n)
    store.close()
    every = httpx.get(f"{server.url}/v1/jobs", timeout=30).json()
    assert len(every) > 25
    page.click("#earlier-refresh")
    page.wait_for_function("document.querySelectorAll('#earlier-jobs li').length === 20")
    assert [item["id"] for item in earlier(page)] == [job["id"] for job in every[:20]]
    assert page.is_visible("#earlier-older")
    page.click("#earlier-older")
    page.wait_for_function(f"document.querySelectorAll('#earlier-jobs li').length === {min(len(every), 40)}")
    assert [item["id"] for item in earlier(page)] == [job["id"] for job in every[:40]]
    assert page.is_hidden("#earlier-older") == (len(every) <= 40)
