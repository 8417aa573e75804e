"""The labelling tools' backends on a real server with both models and an API key: Label Studio's ML backend answers
the /v1/detect boxes as percentages of the original size (read back by Label Studio's own converter), reads task
pictures only where --allow-sources allows (Label Studio's own /data/upload addresses from its host, with its key),
and says once which labels and classes match nothing; CVAT's detector route answers the same boxes in pixels, and
serve.py --write-cvat-function writes a Nuclio function declaring the model's labels; detect_image.py
--save-labelstudio writes tasks whose predictions are its --json boxes."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from pathlib import Path

import cv2
import httpx
import pytest
import yaml
from helpers import SMALL_IMGSZ, run_detector, run_script, scene
from serving import Server, free_port

from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES, is_real_class

pytestmark = pytest.mark.slow  # a server with both models, and detect_image.py: over a minute on 2 cores

KEY = "labelling-key"
TOKEN = "label-studio-token"
AUTH = {"X-API-Key": KEY}
CONFIG = """<View>
  <Image name="picture" value="$photo"/>
  <RectangleLabels name="boxes" toName="picture">
    <Label value="Person"/><Label value="fire_hydrant"/><Label value="Unicorn"/>
  </RectangleLabels>
</View>"""
PREFIX = "/integrations/label-studio"


class FakeLabelStudio(http.server.BaseHTTPRequestHandler):
    """Label Studio serving its uploads under /data/upload/, only to a request with its token."""

    folder: Path

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.folder / self.path.split("/data/upload/", 1)[-1]
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        if not self.path.startswith("/data/upload/") or not path.is_file():
            self.send_response(404)
            self.end_headers()
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("labelling")


@pytest.fixture(scope="module")
def photo(folder) -> Path:
    (folder / "allowed").mkdir()
    path = folder / "allowed" / "street.jpg"
    cv2.imwrite(str(path), scene(200, 300, seed=3))
    return path


@pytest.fixture(scope="module")
def label_studio(folder, photo):
    uploads = folder / "uploads"
    (uploads / "1").mkdir(parents=True)
    (uploads / "1" / "street.jpg").write_bytes(photo.read_bytes())
    handler = type("Handler", (FakeLabelStudio,), {"folder": uploads})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def server(folder, checkpoints, label_studio, photo):
    # The tests' environment sends every other address to a dead proxy; the fake Label Studio is on loopback.
    env = {"LABEL_STUDIO_URL": label_studio, "LABEL_STUDIO_API_KEY": TOKEN, "no_proxy": "127.0.0.1"}
    with Server(folder, "--model", "both", "--weights", str(checkpoints["v1"]), str(checkpoints["v2"]),
                "--imgsz", SMALL_IMGSZ, "--backend", "torch", "--api-key", KEY, "--jobs-dir", str(folder / "jobs"),
                "--allow-sources", str(folder / "allowed"), f"{label_studio}/data/upload/", env=env) as running:
        yield running


def detect(server, photo: Path, model: str, **query) -> dict:
    with open(photo, "rb") as handle:
        reply = httpx.post(f"{server.url}/v1/detect", params={"model": model, **query}, headers=AUTH, timeout=120,
                           files={"file": (photo.name, handle, "image/jpeg")})
    assert reply.status_code == 200, reply.text
    (record,) = reply.json()
    return record


def post(server, path: str, body, headers=AUTH, timeout=120) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=timeout)


def test_label_studio_health_and_setup_behind_the_key(server):
    assert httpx.get(f"{server.url}{PREFIX}/health", timeout=30).status_code == 401
    health = httpx.get(f"{server.url}{PREFIX}/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "UP" and health.json()["model"] == "v2"
    basic = base64.b64encode(f"label-studio:{KEY}".encode()).decode()  # Label Studio's basic auth settings
    assert httpx.get(f"{server.url}{PREFIX}/v1/health", headers={"Authorization": f"Basic {basic}"},
                     timeout=30).json()["model"] == "v1"
    wrong = base64.b64encode(b"label-studio:guess").decode()
    assert httpx.get(f"{server.url}{PREFIX}/health", headers={"Authorization": f"Basic {wrong}"},
                     timeout=30).status_code == 401
    setup = post(server, f"{PREFIX}/setup", {"project": "7.1700000000", "schema": CONFIG})
    assert setup.status_code == 200 and setup.json()["model_version"].startswith("frcnn-v2-")
    refused = post(server, f"{PREFIX}/setup", {"project": "8", "schema": "<View><Image name='i' value='$i'/></View>"})
    assert refused.status_code == 422 and "RectangleLabels" in refused.json()["error"]


def test_label_studio_predictions_are_the_apis_boxes_in_percent_in_task_order(server, photo, label_studio):
    record = detect(server, photo, "v2", classes="person,fire hydrant")
    outside = photo.parent.parent / "street.jpg"
    outside.write_bytes(photo.read_bytes())
    tasks = [{"id": 1, "data": {"photo": str(photo)}},
             {"id": 2, "data": {"photo": "/data/upload/1/street.jpg"}},  # Label Studio's own upload
             {"id": 3, "data": {"photo": str(outside)}}]  # not under --allow-sources: no boxes
    reply = post(server, f"{PREFIX}/predict", {"tasks": tasks, "project": "7.1700000000"})
    assert reply.status_code == 200, reply.text
    first, second, third = reply.json()["results"]
    assert third["result"] == [] and first["result"] == second["result"]
    width, height = record["width"], record["height"]
    detections = record["results"][0]["detections"]
    assert len(first["result"]) == len(detections) > 0
    for region, detection in zip(first["result"], detections):
        assert (region["from_name"], region["to_name"], region["type"]) == ("boxes", "picture", "rectanglelabels")
        assert (region["original_width"], region["original_height"]) == (width, height)
        value = region["value"]
        assert value["rectanglelabels"] == ["Person" if detection["label"] == "person" else "fire_hydrant"]
        x1, y1, x2, y2 = detection["box"]
        assert value["x"] * width / 100 == pytest.approx(x1, abs=1e-6)
        assert value["y"] * height / 100 == pytest.approx(y1, abs=1e-6)
        assert (value["x"] + value["width"]) * width / 100 == pytest.approx(x2, abs=1e-6)
        assert (value["y"] + value["height"]) * height / 100 == pytest.approx(y2, abs=1e-6)
        assert region["score"] == detection["score"]
    assert first["score"] == pytest.approx(sum(d["score"] for d in detections) / len(detections), abs=1e-4)

    alone = post(server, f"{PREFIX}/v1/predict", {"tasks": tasks[2:], "label_config": CONFIG})
    assert alone.status_code == 403 and "not under the folders this server allows" in alone.json()["error"]
    log = server.output()
    assert log.count("labels with no class of v2, never predicted: Unicorn") == 1
    assert log.count("classes of v2 with no label in the config") == 1


def test_label_studios_converter_reads_the_predictions_as_the_json_boxes(server, photo, folder):
    converter = pytest.importorskip("label_studio_converter", reason="label-studio-converter is not installed")
    record = detect(server, photo, "v2", classes="person,fire hydrant")
    reply = post(server, f"{PREFIX}/predict", {"tasks": [{"id": 1, "data": {"photo": str(photo)}}],
                                               "label_config": CONFIG})
    (prediction,) = reply.json()["results"]
    # What Label Studio exports once a person accepts the prediction as it is.
    export = folder / "export.json"
    export.write_text(json.dumps([{"id": 1, "data": {"photo": str(photo)},
                                   "annotations": [{"id": 1, "result": prediction["result"]}]}]))
    out = folder / "coco"
    converter.Converter(CONFIG, str(folder), download_resources=False).convert_to_coco(
        str(export), str(out), is_dir=False)
    coco = json.loads((out / "result.json").read_text())
    names = {category["id"]: category["name"] for category in coco["categories"]}
    converted = sorted((names[a["category_id"]], *a["bbox"]) for a in coco["annotations"])
    expected = sorted(("Person" if d["label"] == "person" else "fire_hydrant", d["box"][0], d["box"][1],
                       d["box"][2] - d["box"][0], d["box"][3] - d["box"][1])
                      for d in record["results"][0]["detections"])
    assert len(converted) == len(expected) > 0
    for got, want in zip(converted, expected):
        assert got[0] == want[0]
        assert max(abs(a - b) for a, b in zip(got[1:], want[1:])) <= 0.5


def test_cvat_detect_answers_the_apis_boxes_in_pixels(server, photo):
    encoded = base64.b64encode(photo.read_bytes()).decode()
    for model in ("v1", "v2"):
        record = detect(server, photo, model, threshold="0.9")
        reply = post(server, f"/integrations/cvat/detect?model={model}", {"image": encoded, "threshold": 0.9})
        assert reply.status_code == 200, reply.text
        assert reply.json() == [{"confidence": d["score"], "label": d["label"], "points": d["box"],
                                 "type": "rectangle"} for d in record["results"][0]["detections"]]
    assert post(server, "/integrations/cvat/detect", {"image": encoded}, headers={}).status_code == 401
    bad = post(server, "/integrations/cvat/detect", {"image": base64.b64encode(b"no picture").decode()})
    assert bad.status_code == 415 and "not a picture" in bad.json()["error"]


def test_write_cvat_function_declares_the_models_labels(folder, checkpoints):
    result = run_script("serve.py", "--model", "both", "--weights", str(checkpoints["v1"]), str(checkpoints["v2"]),
                        "--port", "8123", "--write-cvat-function", str(folder / "cvat"), cwd=folder)
    assert result.returncode == 0, result.stderr
    function = yaml.safe_load((folder / "cvat" / "v2" / "function.yaml").read_text())
    assert function["metadata"]["annotations"]["type"] == "detector"
    labels = json.loads(function["metadata"]["annotations"]["spec"])
    assert [(label["id"], label["name"]) for label in labels] == [
        (i, name) for i, name in enumerate(COCO_INSTANCE_CATEGORY_NAMES) if is_real_class(name)]
    assert {label["type"] for label in labels} == {"rectangle"}
    assert function["spec"]["handler"] == "main:handler"
    assert {"name": "FRCNN_URL", "value": "http://127.0.0.1:8123"} in function["spec"]["env"]
    compile((folder / "cvat" / "v1" / "main.py").read_text(), "main.py", "exec")


TEMPLATE = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="person"/></RectangleLabels>
</View>"""


def test_save_labelstudio_writes_tasks_whose_predictions_are_the_json_boxes(folder, checkpoints, photo):
    out = folder / "detected"
    result = run_detector("detect_image.py", folder, checkpoints, "--input", str(photo), "--output", str(out),
                          "--save-labelstudio", "--threshold", "0.9")
    assert result.returncode == 0, result.stderr
    assert "1 Label Studio tasks ->" in result.stderr
    record = json.loads((out / "street_v1.json").read_text())
    (task,) = json.loads((out / "labelstudio_v1.json").read_text())
    assert task["data"] == {"image": str(photo)}
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "frcnn-v1"
    detections = record["results"][0]["detections"]
    assert len(prediction["result"]) == len(detections) > 0
    converter = pytest.importorskip("label_studio_converter", reason="label-studio-converter is not installed")
    export = folder / "accepted.json"  # the tasks as Label Studio exports them once the predictions are accepted
    export.write_text(json.dumps([{"id": 1, "data": task["data"], "annotations": [{"result": prediction["result"]}]}]))
    converter.Converter(TEMPLATE, str(folder), download_resources=False).convert_to_coco(
        str(export), str(folder / "coco-cli"), is_dir=False)
    coco = json.loads((folder / "coco-cli" / "result.json").read_text())
    converted = sorted(a["bbox"] for a in coco["annotations"])
    expected = sorted([x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (d["box"] for d in detections))
    assert len(converted) == len(expected)
    assert max(abs(a - b) for got, want in zip(converted, expected) for a, b in zip(got, want)) <= 0.5
