"""The service's picture API against a real server: the same records and drawings as detect_image.py, its query
options, health, readiness, metrics, the API key, and the sources it may read."""

from __future__ import annotations

import hashlib
import json

import cv2
import httpx
import numpy as np
import pytest
from helpers import SMALL_IMGSZ, run_detector, run_script, scene
from prometheus_client.parser import text_string_to_metric_families
from serving import Server

KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def server(folder, checkpoints):
    (folder / "allowed").mkdir()
    with Server(folder, "--model", "both", "--weights", str(checkpoints["v1"]), str(checkpoints["v2"]),
                "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--api-key", KEY,
                "--allow-sources", str(folder / "allowed"), "--jobs-dir", str(folder / "jobs")) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def pictures(folder) -> list:
    paths = []
    for seed in range(2):
        path = folder / f"picture{seed}.jpg"
        cv2.imwrite(str(path), scene(240, 320, seed=seed))
        paths.append(path)
    return paths


def detect(server, files, **params) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/detect", params=params, headers=AUTH, timeout=120,
                      files=[("file", (path.name, path.read_bytes(), "image/jpeg")) for path in files])


def without_timing(record: dict) -> dict:
    """A record with what differs between two runs of the same models left out: the time and the file's path."""
    return {**record, "file": None, "results": [{**result, "inference_ms": None} for result in record["results"]]}


def test_the_answer_is_detect_image_json_record(server, checkpoints, pictures, folder):
    answer = detect(server, pictures[:1], model="both", threshold=0.5)
    assert answer.status_code == 200, answer.text
    (record,) = answer.json()
    script = run_detector("detect_image.py", folder, checkpoints, "--input", str(pictures[0]), "--json",
                          "--threshold", "0.5", "--output", str(folder / "cli"), model="both", imgsz=SMALL_IMGSZ)
    assert script.returncode == 0, script.stderr
    written = json.loads((folder / "cli" / f"{pictures[0].stem}_both.json").read_text())
    assert record["file"] == pictures[0].name
    assert [r["model"] for r in record["results"]] == ["v1", "v2"]
    assert sum(len(r["detections"]) for r in record["results"]) > 0  # the seeded models find boxes
    assert without_timing(record) == without_timing(written)


def test_annotate_jpeg_is_the_picture_detect_image_draws(server, checkpoints, pictures, folder):
    answer = detect(server, pictures[1:], model="v1", annotate="jpeg")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    script = run_detector("detect_image.py", folder, checkpoints, "--input", str(pictures[1]),
                          "--output", str(folder / "drawn"), model="v1", imgsz=SMALL_IMGSZ)
    assert script.returncode == 0, script.stderr
    drawn = cv2.imread(str(folder / "drawn" / f"{pictures[1].stem}_v1.jpg"))
    served = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert served.shape == drawn.shape
    assert np.array_equal(served, drawn)


def test_several_pictures_come_back_in_order_with_a_bad_one_named(server, pictures):
    files = [("file", ("a.jpg", pictures[0].read_bytes(), "image/jpeg")),
             ("file", ("notes.jpg", b"this is no picture", "image/jpeg")),
             ("file", ("b.jpg", pictures[1].read_bytes(), "image/jpeg"))]
    answer = httpx.post(f"{server.url}/v1/detect", headers=AUTH, files=files, timeout=120)
    assert answer.status_code == 200, answer.text
    first, bad, last = answer.json()
    assert (first["file"], bad["file"], last["file"]) == ("a.jpg", "notes.jpg", "b.jpg")
    assert bad["status"] == 415 and "notes.jpg" in bad["error"] and "results" not in bad
    alone = detect(server, pictures[1:])
    assert without_timing(alone.json()[0]) == without_timing({**last, "file": None})


def test_a_picture_as_the_raw_body(server, pictures):
    raw = httpx.post(f"{server.url}/v1/detect", headers={**AUTH, "Content-Type": "image/jpeg"},
                     content=pictures[0].read_bytes(), timeout=120)
    assert raw.status_code == 200, raw.text
    multipart = detect(server, pictures[:1])
    assert without_timing(raw.json()[0]) == without_timing(multipart.json()[0])


def test_threshold_classes_and_max_det_filter_the_answer(server, pictures):
    low = detect(server, pictures[:1], model="v1", threshold=0.3).json()[0]["results"][0]
    high = detect(server, pictures[:1], model="v1", threshold=0.9).json()[0]["results"][0]
    assert high["threshold"] == 0.9 and low["threshold"] == 0.3
    assert all(d["score"] >= 0.9 for d in high["detections"])
    assert len(high["detections"]) == sum(d["score"] >= 0.9 for d in low["detections"])
    labels = {d["label"] for d in low["detections"]}
    kept = sorted(labels)[0]
    only = detect(server, pictures[:1], model="v1", threshold=0.3, classes=kept).json()[0]["results"][0]
    assert only["detections"] and {d["label"] for d in only["detections"]} == {kept}
    best = detect(server, pictures[:1], model="v1", threshold=0.3, max_det=2).json()[0]["results"][0]
    assert [d["score"] for d in best["detections"]] == sorted((d["score"] for d in low["detections"]),
                                                             reverse=True)[:2]


@pytest.mark.parametrize("params, words", [({"classes": "unicorn"}, "unknown class 'unicorn'"),
                                           ({"threshold": "2"}, "threshold"),
                                           ({"model": "v3"}, "model"),
                                           ({"max_det": "0"}, "max_det")])
def test_bad_query_options_get_422_with_one_line(server, pictures, params, words):
    answer = detect(server, pictures[:1], **params)
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]
    assert words in message and "\n" not in message


def test_health_readiness_models_docs_and_metrics(server, checkpoints):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{server.url}/readyz").json() == {"ready": True, "models": ["v1", "v2"]}
    described = httpx.get(f"{server.url}/v1/models", headers=AUTH).json()
    assert described["default_model"] == "both" and described["threshold"] == 0.5
    assert described["limits"]["max_files"] == 16 and described["sources_allowed"] is True
    for model in described["models"]:
        digest = hashlib.sha256(checkpoints[model["name"]].read_bytes()).hexdigest()[:12]
        assert model["weights_hash"] == digest
        assert (model["runtime"], model["precision"], model["imgsz"], model["proposals"]) == (
            "torch", "fp32", int(SMALL_IMGSZ), 1000)
        assert "person" in model["classes"] and "N/A" not in model["classes"]
    assert "swagger" in httpx.get(f"{server.url}/docs").text.lower()
    assert "/v1/detect" in httpx.get(f"{server.url}/openapi.json").json()["paths"]
    families = {family.name: family for family in
                text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)}
    answered = [sample for sample in families["frcnn_requests"].samples
                if sample.name == "frcnn_requests_total" and sample.labels["route"] == "/v1/detect"]
    assert any(sample.labels["status"] == "200" and sample.value >= 1 for sample in answered)
    batches = [s for s in families["frcnn_batch_size"].samples if s.name == "frcnn_batch_size_count"]
    assert {s.labels["model"] for s in batches} == {"v1", "v2"} and all(s.value >= 1 for s in batches)
    assert {"frcnn_inference_seconds", "frcnn_queue_depth", "frcnn_request_seconds", "frcnn_jobs"} <= set(families)


def test_the_api_key_is_asked_for(server, pictures):
    refused = httpx.get(f"{server.url}/v1/models")
    assert refused.status_code == 401 and "API key" in refused.json()["error"]
    assert httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    no_key = httpx.post(f"{server.url}/v1/detect", content=pictures[0].read_bytes())
    assert no_key.status_code == 401


def test_another_address_needs_an_api_key(folder):
    result = run_script("serve.py", "--host", "0.0.0.0", cwd=folder, env={"FRCNN_API_KEY": ""})
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "error: --host 0.0.0.0 lets other machines in: give --api-key" in result.stderr.splitlines()[-1]


def test_sources_only_under_the_allowed_prefixes(server, folder, pictures):
    inside = folder / "allowed" / "inside.jpg"
    inside.write_bytes(pictures[0].read_bytes())
    found = httpx.post(f"{server.url}/v1/detect", params={"source": str(inside)}, headers=AUTH, timeout=120)
    assert found.status_code == 200, found.text
    assert found.json()[0]["file"] == "inside.jpg"
    for outside in (str(pictures[0]), str(folder / "allowed" / ".." / pictures[0].name), "file:///etc/passwd",
                    "http://127.0.0.1:9/picture.jpg"):
        refused = httpx.post(f"{server.url}/v1/detect", params={"source": outside}, headers=AUTH, timeout=30)
        assert refused.status_code == 403, (outside, refused.text)
        assert "allow" in refused.json()["error"]
