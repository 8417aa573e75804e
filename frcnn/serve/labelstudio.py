"""Label Studio's ML backend: the served models pre-annotate a Label Studio project's pictures, so that a person only
corrects boxes.

Label Studio's "Model" setting takes `http://HOST:PORT/integrations/label-studio` (the server's default model; v2
where it runs both) or `.../integrations/label-studio/v1` for one model by name. Label Studio calls `GET /health`,
`POST /setup` with the project's labelling config, and `POST /predict` with tasks; each answer is one prediction per
task, in task order: `rectanglelabels` results whose `x`, `y`, `width`, `height` are percentages (0-100) of the
picture's original size, top-left corner first.

The config's label names are matched to the model's classes by name, case, spaces and underscores ignored
("Traffic_Light" is "traffic light"); the model is asked for those classes only. A task's picture is a URL or a path
on this server, read only under `--allow-sources`; Label Studio's own `/data/upload/...` and `/data/local-files/...`
addresses are read from `LABEL_STUDIO_URL` (or the host Label Studio names at setup), with its API key
(`LABEL_STUDIO_API_KEY`, or the token it sends at setup), and only when that address is allowed as well.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import os
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urljoin, urlparse

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from frcnn.core.files import URL_MAX_BYTES, URL_TIMEOUT_S
from frcnn.core.log import log
from frcnn.pipelines.labelstudio_tasks import prediction
from frcnn.serve.detection import DetectionService, DetectRequest, Picture, upload_name
from frcnn.serve.errors import ServiceError
from frcnn.serve.settings import ServeSettings
from frcnn.serve.sources import allowed_source, read_allowed

PREFIX = "/integrations/label-studio"
LABEL_STUDIO_URL, LABEL_STUDIO_KEY = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"
LABEL_STUDIO_PATHS = ("/data/upload/", "/data/local-files/")  # where Label Studio serves its own pictures
MAX_CONFIG_CHARS = 1_000_000
MAX_TASKS = 1000


def class_key(name: str) -> str:
    """A name as labels and classes are matched: lower case, without spaces, underscores or hyphens."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


@dataclass(frozen=True)
class LabelConfig:
    """What a project's labelling config says of its boxes: the RectangleLabels tag's name (`from_name`), the Image
    tag it labels (`to_name`), the task data key of the picture, and the label names."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]


def parse_label_config(text: str) -> LabelConfig:
    """The first RectangleLabels tag of a Label Studio labelling config and its Image; 422 where there is none."""
    if not isinstance(text, str) or not text.strip():
        raise ServiceError(422, "no labelling config: Label Studio sends it as 'label_config' or at /setup")
    if len(text) > MAX_CONFIG_CHARS or "<!ENTITY" in text.upper():
        raise ServiceError(422, "the labelling config is too large, or declares XML entities")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise ServiceError(422, f"the labelling config is not XML: {error}") from None
    tags = list(root.iter())
    boxes = [tag for tag in tags if tag.tag.lower() == "rectanglelabels"]
    if not boxes:
        raise ServiceError(422, "the labelling config has no RectangleLabels tag: this model draws boxes")
    box = boxes[0]
    from_name = box.get("name")
    to_name = (box.get("toName") or "").split(",")[0].strip()
    images = [tag for tag in tags if tag.tag.lower() == "image" and tag.get("name") == to_name]
    if not from_name or not images:
        raise ServiceError(422, f"the RectangleLabels tag needs a name and a toName naming an Image tag "
                                f"(found name={from_name!r}, toName={to_name!r})")
    value = images[0].get("value") or ""
    labels = tuple(label.get("value") for label in box.iter() if label.tag.lower() == "label" and label.get("value"))
    if not labels:
        raise ServiceError(422, f"the RectangleLabels tag {from_name!r} holds no Label values")
    return LabelConfig(from_name, to_name, value.lstrip("$"), labels)


@dataclass(frozen=True)
class LabelMap:
    """Each config label that names a model class -> that class; what matched nothing on either side."""

    classes: dict[str, str]  # label -> class name
    unmatched_labels: tuple[str, ...]
    unlabelled_classes: tuple[str, ...]


def map_labels(labels: tuple[str, ...], classes: list[str]) -> LabelMap:
    """Config labels matched to the model's classes by name (case, spaces, underscores and hyphens ignored)."""
    by_key = {class_key(name): name for name in classes}
    mapped = {label: by_key[class_key(label)] for label in labels if class_key(label) in by_key}
    used = {class_key(name) for name in mapped.values()}
    return LabelMap(mapped, tuple(label for label in labels if label not in mapped),
                    tuple(name for name in classes if class_key(name) not in used))


class LabelStudioBackend:
    """One model's backend: the configs projects set up, and what has been said in the log of each."""

    def __init__(self, service: DetectionService, settings: ServeSettings, model: str | None):
        self.service, self.settings, self.asked_model = service, settings, model
        self.projects: dict[str, dict] = {}  # project -> {"config": text, "hostname": ..., "token": ...}
        self._said: set[tuple] = set()

    @property
    def model(self) -> str:
        """The model this backend runs: the one named, else the server's default (v2 where it runs both)."""
        if self.asked_model:
            return self.asked_model
        default = self.service.default_model
        return "v2" if default == "both" else default

    def classes(self) -> list[str]:
        for described in self.service.describe():
            if described["name"] == self.model:
                return described["classes"]
        offered = ", ".join(described["name"] for described in self.service.describe())
        raise ServiceError(422, f"model '{self.model}': this server runs {offered}")

    def model_version(self) -> str:
        hashes = {described["name"]: described["weights_hash"] for described in self.service.describe()}
        found = hashes.get(self.model, "")
        return f"frcnn-{self.model}-{found}" if found else f"frcnn-{self.model}"

    def label_map(self, config: LabelConfig) -> LabelMap:
        """The config's labels matched to the model's classes; what matched nothing is said once in the log."""
        found = map_labels(config.labels, self.classes())
        if not found.classes:
            raise ServiceError(422, f"none of the labels {', '.join(config.labels)} is a class of {self.model} (its "
                                    f"classes: {', '.join(self.classes()[:20])}...)")
        said = (self.model, config.from_name, config.labels)
        if said not in self._said:
            self._said.add(said)
            if found.unmatched_labels:
                log.info(f"Label Studio: labels with no class of {self.model}, never predicted: "
                         f"{', '.join(found.unmatched_labels)}")
            if found.unlabelled_classes:
                shown = found.unlabelled_classes
                more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
                log.info(f"Label Studio: classes of {self.model} with no label in the config, not predicted: "
                         f"{', '.join(shown[:10])}{more}")
        return found

    # ------------------------------------------------------------ reading a task's picture

    def read_task_picture(self, reference: str, project: dict) -> bytes:
        """A task's picture: Label Studio's own address read from its host with its key, or a URL or server path
        under --allow-sources."""
        if reference.startswith(LABEL_STUDIO_PATHS):
            host = os.environ.get(LABEL_STUDIO_URL) or project.get("hostname") or ""
            if not host:
                raise ServiceError(422, f"{reference} is Label Studio's own address: start the server with "
                                        f"{LABEL_STUDIO_URL}=http://label-studio-host:8080 to read it")
            url = urljoin(host.rstrip("/") + "/", reference.lstrip("/"))
            checked = allowed_source(url, self.settings.allow_sources)
            token = os.environ.get(LABEL_STUDIO_KEY) or project.get("token") or ""
            return fetch_without_redirects(checked, token)
        return read_allowed(reference, self.settings.allow_sources)

    # ------------------------------------------------------------ predicting

    async def predict(self, tasks: list[dict], config: LabelConfig, project: dict) -> list[dict]:
        """One prediction per task, in task order; a task whose picture cannot be read gets no boxes (and the log
        says why), unless it is the only task: then the request fails with the reason."""
        found = self.label_map(config)
        label_of = {name: label for label, name in found.classes.items()}
        request = DetectRequest(model=self.model, classes=tuple(sorted(set(found.classes.values()))))
        version = self.model_version()
        predictions = []
        for index, task in enumerate(tasks):
            try:
                record = await self._record(task, index, config, project, request)
            except ServiceError as error:
                if len(tasks) == 1:
                    raise
                log.warning(f"Label Studio: task {task.get('id', index + 1)}: {error.message}")
                predictions.append({"result": [], "score": 0.0, "model_version": version})
                continue
            predictions.append(task_prediction(record, config, label_of, version))
        return predictions

    async def _record(self, task: dict, index: int, config: LabelConfig, project: dict,
                      request: DetectRequest) -> dict:
        data = task.get("data") if isinstance(task, dict) else None
        reference = data.get(config.data_key) if isinstance(data, dict) else None
        if not isinstance(reference, str) or not reference:
            raise ServiceError(422, f"task {index + 1} has no picture in data.{config.data_key}")
        picture = await asyncio.to_thread(self.read_task_picture, reference, project)
        (record,) = await self.service.records([Picture(upload_name(urlparse(reference).path, index), picture)],
                                               request)
        return record


def task_prediction(record: dict, config: LabelConfig, label_of: dict[str, str], version: str) -> dict:
    """A --json record's boxes as one Label Studio prediction: percentages of the original size."""
    (result,) = record["results"]
    return prediction(result, record["width"], record["height"], version, config.from_name, config.to_name,
                      label_of)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's signature)
        return None  # a redirect would carry the key, or lead outside --allow-sources


def fetch_without_redirects(url: str, token: str) -> bytes:
    """Label Studio's picture at `url`, with its key when there is one; its redirects are not followed."""
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"} if token else {})
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=URL_TIMEOUT_S) as response:
            data = response.read(URL_MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise ServiceError(422, f"{url}: Label Studio answered {error.code} {error.reason}"
                                + (" (set LABEL_STUDIO_API_KEY)" if error.code in (401, 403) else "")) from None
    except (urllib.error.URLError, OSError) as error:
        raise ServiceError(422, f"{url}: cannot fetch ({getattr(error, 'reason', None) or error})") from None
    if len(data) > URL_MAX_BYTES:
        raise ServiceError(413, f"{url}: larger than {URL_MAX_BYTES // (1024 * 1024)} MB")
    return data


def basic_or_key(settings: ServeSettings, check_key: Callable) -> Callable:
    """The API key as the service checks it, or as the password of HTTP basic auth (Label Studio's ML backend
    settings offer basic auth only)."""

    def check(request: Request) -> None:
        authorization = request.headers.get("authorization") or ""
        if settings.api_key and authorization.lower().startswith("basic "):
            try:
                _, _, password = base64.b64decode(authorization[6:].strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                password = ""
            if password and hmac.compare_digest(password.encode(), settings.api_key.encode()):
                return
        check_key(request)

    return check


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ServiceError(422, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ServiceError(422, "the body is not a JSON object")
    return body


def _project_key(body: dict) -> str:
    return str(body.get("project") or "").split(".")[0]


def labelstudio_router(service: DetectionService, settings: ServeSettings, check_key: Callable) -> APIRouter:
    """The backend at /integrations/label-studio (the default model) and /integrations/label-studio/{v1,v2}."""
    router = APIRouter(prefix=PREFIX, tags=["Label Studio"], dependencies=[Depends(basic_or_key(settings, check_key))])
    backends: dict[str | None, LabelStudioBackend] = {}

    def backend(model: str | None) -> LabelStudioBackend:
        if model is not None and model not in ("v1", "v2"):
            raise ServiceError(404, f"no Label Studio backend {model}: use {PREFIX} or {PREFIX}/v1 or {PREFIX}/v2")
        if model not in backends:
            backends[model] = LabelStudioBackend(service, settings, model)
        return backends[model]

    async def health(model: str | None) -> JSONResponse:
        chosen = backend(model)
        if not service.ready:
            return JSONResponse({"status": "loading", "error": "the models are loading"}, status_code=503,
                                headers={"Retry-After": "5"})
        chosen.classes()
        return JSONResponse({"status": "UP", "model_class": "FasterRCNN", "model": chosen.model,
                             "model_version": chosen.model_version()})

    async def setup(request: Request, model: str | None) -> dict:
        body = await _json_body(request)
        chosen = backend(model)
        config = parse_label_config(body.get("schema") or body.get("label_config"))
        chosen.label_map(config)
        chosen.projects[_project_key(body)] = {"config": body.get("schema") or body.get("label_config"),
                                               "hostname": body.get("hostname") or "",
                                               "token": body.get("access_token") or ""}
        return {"model_version": chosen.model_version()}

    async def predict(request: Request, model: str | None) -> dict:
        body = await _json_body(request)
        chosen = backend(model)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise ServiceError(422, "no tasks: send {\"tasks\": [...], \"label_config\": ...}")
        if len(tasks) > MAX_TASKS:
            raise ServiceError(413, f"{len(tasks)} tasks in one request; at most {MAX_TASKS}")
        project = chosen.projects.get(_project_key(body), {})
        config = parse_label_config(body.get("label_config") or project.get("config"))
        predictions = await chosen.predict(tasks, config, project)
        return {"results": predictions, "model_version": chosen.model_version()}

    @router.get("/health", summary="Label Studio's health check (the default model)")
    async def health_default() -> JSONResponse:
        return await health(None)

    @router.get("/{model}/health", summary="Label Studio's health check (v1 or v2)")
    async def health_named(model: str) -> JSONResponse:
        return await health(model)

    @router.post("/setup", summary="Label Studio's setup: the project's labelling config; answers model_version")
    async def setup_default(request: Request) -> dict:
        return await setup(request, None)

    @router.post("/{model}/setup", summary="Label Studio's setup for v1 or v2")
    async def setup_named(request: Request, model: str) -> dict:
        return await setup(request, model)

    @router.post("/predict", summary="Label Studio's tasks in, one prediction per task out (the default model)")
    async def predict_default(request: Request) -> dict:
        return await predict(request, None)

    @router.post("/{model}/predict", summary="Label Studio's tasks in, one prediction per task out (v1 or v2)")
    async def predict_named(request: Request, model: str) -> dict:
        return await predict(request, model)

    return router
