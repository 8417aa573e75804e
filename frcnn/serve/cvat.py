"""CVAT's detector functions: `POST /integrations/cvat/detect` takes what CVAT sends a detector (`{"image": base64,
"threshold": t}`) and answers its shapes (`[{"confidence", "label", "points": [xtl, ytl, xbr, ybr], "type":
"rectangle"}]`, points in the picture's pixels).

CVAT calls its detectors through Nuclio: `serve.py --write-cvat-function DIR` writes, per model the server runs, a
Nuclio function (`function.yaml` declaring the model's labels, and a `main.py` of a few lines with no dependencies)
that hands CVAT's request on to this route. `nuctl deploy --project-name cvat --path DIR/v2 --platform local`
deploys it, and CVAT lists it under Models.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from pathlib import Path
from typing import Callable, Sequence

from fastapi import APIRouter, Depends, Request

from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES, is_real_class, read_labels
from frcnn.core.errors import FrcnnError
from frcnn.core.files import write_bytes_atomically
from frcnn.core.specs import ModelSpec
from frcnn.serve.detection import DetectionService, DetectRequest, Picture
from frcnn.serve.errors import ServiceError

ROUTE = "/integrations/cvat/detect"
DEFAULT_CVAT_THRESHOLD = 0.5


def shapes(record: dict) -> list[dict]:
    """A --json record's boxes as CVAT's detector shapes."""
    (result,) = record["results"]
    return [{"confidence": detection["score"], "label": detection["label"], "points": list(detection["box"]),
             "type": "rectangle"} for detection in result["detections"]]


def _threshold(value) -> float | None:
    if value is None:
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise ServiceError(422, f"threshold: {value!r} is not a number") from None
    if not math.isfinite(threshold) or not 0 <= threshold <= 1:
        raise ServiceError(422, f"threshold: {value!r} is not between 0 and 1")
    return threshold


def cvat_router(service: DetectionService, check: Callable) -> APIRouter:
    router = APIRouter(tags=["CVAT"], dependencies=[Depends(check)])

    @router.post(ROUTE, summary="CVAT's detector request: a base64 picture in, rectangles in pixels out")
    async def detect(request: Request, model: str | None = None) -> list[dict]:
        """`{"image": base64, "threshold": t}` (as CVAT sends a detector function) -> `[{"confidence", "label",
        "points": [xtl, ytl, xbr, ybr], "type": "rectangle"}]`; `?model=v1|v2` (default: the server's, v2 where it
        runs both)."""
        try:
            body = await request.json()
        except ValueError:
            raise ServiceError(422, "the body is not JSON: send {\"image\": base64, \"threshold\": t}") from None
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            raise ServiceError(422, "no picture: send {\"image\": base64, \"threshold\": t}")
        text = body["image"]
        if text.startswith("data:") and "," in text:  # a data URL's header
            text = text.split(",", 1)[1]
        try:
            data = base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            raise ServiceError(422, "image: not base64") from None
        threshold = _threshold(body.get("threshold"))
        chosen = model or ("v2" if service.default_model == "both" else service.default_model)
        (record,) = await service.records([Picture("cvat picture", data)],
                                          DetectRequest(model=chosen, threshold=threshold))
        return shapes(record)

    return router


# ------------------------------------------------------------------ the Nuclio function CVAT deploys

HANDLER = '''"""CVAT detector: hands CVAT's request on to the Faster R-CNN service (written by serve.py
--write-cvat-function). Set FRCNN_URL (and FRCNN_API_KEY where the service has one) in function.yaml."""

import json
import os
import urllib.error
import urllib.request


def init_context(context):
    context.user_data.url = os.environ["FRCNN_URL"].rstrip("/") + "/integrations/cvat/detect?model=" + \\
        os.environ.get("FRCNN_MODEL", "v2")
    context.user_data.key = os.environ.get("FRCNN_API_KEY", "")


def handler(context, event):
    body = event.body if isinstance(event.body, (bytes, str)) else json.dumps(event.body)
    request = urllib.request.Request(context.user_data.url, data=body if isinstance(body, bytes) else body.encode(),
                                     headers={"Content-Type": "application/json"})
    if context.user_data.key:
        request.add_header("X-API-Key", context.user_data.key)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, answer = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read()
    return context.Response(body=answer, headers={}, content_type="application/json", status_code=status)
'''


def model_classes(spec: ModelSpec) -> list[tuple[int, str]]:
    """The model's classes by label id, read without loading it: its labels file, or COCO's names."""
    names = read_labels(spec.labels) if spec.labels else list(COCO_INSTANCE_CATEGORY_NAMES)
    return [(label_id, name) for label_id, name in enumerate(names) if is_real_class(name)]


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's)."""
    return json.dumps(text)


def function_yaml(spec: ModelSpec, url: str, api_key_variable: bool) -> str:
    """The Nuclio function.yaml of one model as a CVAT detector: its labels in the `spec` annotation, the service's
    address in the environment."""
    labels = ",\n".join(f'        {{ "id": {label_id}, "name": {json.dumps(name)}, "type": "rectangle" }}'
                        for label_id, name in model_classes(spec))
    weights = Path(spec.weights).name if spec.weights else "COCO weights"
    title = f"Faster R-CNN {spec.name} ({weights})"
    key_line = ("      - name: FRCNN_API_KEY\n        value: \"\"  # the service's --api-key, if it has one\n"
                if api_key_variable else "")
    return f"""# A CVAT detector that hands each request on to the Faster R-CNN service at FRCNN_URL.
# Deploy: nuctl deploy --project-name cvat --path . --platform local
metadata:
  name: frcnn-{spec.name}
  namespace: cvat
  annotations:
    name: {_quoted(title)}
    type: detector
    framework: pytorch
    spec: |
      [
{labels}
      ]

spec:
  description: {_quoted(f"torchvision's Faster R-CNN ResNet50 FPN {spec.name}, served by serve.py")}
  runtime: "python:3.11"
  handler: main:handler
  eventTimeout: 120s
  env:
    - name: FRCNN_URL
      value: {_quoted(url)}
    - name: FRCNN_MODEL
      value: {_quoted(spec.name)}
{key_line}
  build:
    image: cvat.frcnn.{spec.name}
    baseImage: python:3.11-slim

  triggers:
    myHttpTrigger:
      maxWorkers: 2
      kind: "http"
      workerAvailabilityTimeoutMilliseconds: 10000
      attributes:
        maxRequestBodySize: 33554432

  platform:
    attributes:
      restartPolicy:
        name: always
        maximumRetryCount: 3
      mountMode: volume
"""


def write_cvat_functions(folder: Path, specs: Sequence[ModelSpec], url: str, api_key: bool) -> list[Path]:
    """A Nuclio function folder per model (DIR/v1, DIR/v2): function.yaml and main.py; the paths written."""
    written = []
    for spec in specs:
        target = Path(folder) / spec.name
        try:
            target.mkdir(parents=True, exist_ok=True)
            write_bytes_atomically(target / "function.yaml", function_yaml(spec, url, api_key).encode("utf-8"))
            write_bytes_atomically(target / "main.py", HANDLER.encode("utf-8"))
        except OSError as error:
            raise FrcnnError(f"cannot write CVAT's function into {target}: {error.strerror or error}") from None
        written += [target / "function.yaml", target / "main.py"]
    return written
