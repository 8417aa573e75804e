"""The models behind the API: loaded once with the scripts' own code, warmed, then fed pictures through one
queue per model. A request's answer is, picture by picture, the record `detect_image.py --json` writes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Awaitable, Sequence

import numpy as np

from frcnn.cli.options import resolve_classes
from frcnn.core.coco_names import is_real_class, read_labels
from frcnn.core.detections import Prediction
from frcnn.core.errors import FrcnnError
from frcnn.core.files import encode_jpeg
from frcnn.core.log import log
from frcnn.core.specs import DetectOptions, DrawOptions, ModelSpec, model_names
from frcnn.pipelines.jobs import picture_record
from frcnn.serve.batching import ModelQueue
from frcnn.serve.errors import ServiceError
from frcnn.serve.metrics import Metrics
from frcnn.serve.pictures import read_picture
from frcnn.serve.settings import ServeSettings

WARM_UP_SIZE = (480, 640)  # height, width of the blank picture each model runs once before /readyz says yes


@dataclass
class Picture:
    """One picture of a request: the name it came with and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class DetectRequest:
    """What a request asks of the models beyond its pictures (None: the server's default)."""

    model: str | None = None
    threshold: float | None = None
    classes: tuple[str, ...] = ()
    max_det: int | None = None


def weights_hash(spec: ModelSpec) -> str:
    """A short hash of the weights: the checkpoint's SHA-256, or the one torchvision names its file with."""
    if spec.weights:
        digest = hashlib.sha256()
        with open(spec.weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:12]
    from frcnn.model import OFFICIAL_WEIGHTS  # PyTorch: only once the models load

    found = re.search(r"-([0-9a-f]{6,})\.pth$", OFFICIAL_WEIGHTS[spec.name].url)
    return found.group(1) if found else ""


class DetectionService:
    """The loaded models, their queues, and the request limits that guard them."""

    def __init__(self, specs: Sequence[ModelSpec], detect: DetectOptions, draw: DrawOptions, default_model: str,
                 settings: ServeSettings, metrics: Metrics):
        self.specs, self.detect, self.draw = list(specs), detect, draw
        self.default_model, self.settings, self.metrics = default_model, settings, metrics
        self.ready = False
        self.load_error: str | None = None
        self.predictors: dict = {}
        self.hashes: dict[str, str] = {}
        self.queues: dict = {}
        self._loaded: list = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference")  # one inference at a time
        self._admitted = 0

    # ------------------------------------------------------------ loading

    def load(self) -> None:
        """Load every model with the scripts' code and run each once (blocking; the server answers meanwhile)."""
        from frcnn.inference.loading import load_predictors  # PyTorch loads here

        # The model keeps every box it gives; each request's threshold and classes are applied to its own answer.
        everything = replace(self.detect, threshold=0.0, classes=None)
        try:
            predictors = load_predictors(self.specs, everything, announce=log.info)
            blank = np.full((*WARM_UP_SIZE, 3), 114, np.uint8)
            for predictor in predictors:
                self._executor.submit(predictor, [blank]).result()
            self.hashes = {spec.name: weights_hash(spec) for spec in self.specs}
        except FrcnnError as error:
            self.load_error = str(error)
            raise
        self._loaded = predictors

    def start(self) -> None:
        """Start each loaded model's queue (in the event loop): from now on /readyz says yes."""
        self.attach({predictor.name: predictor for predictor in self._loaded},
                    {predictor.name: ModelQueue(predictor, self._executor, self.settings.max_batch,
                                                self.settings.batch_wait_ms / 1000.0, self.metrics)
                     for predictor in self._loaded})
        for queue in self.queues.values():
            queue.start()

    def attach(self, models: dict, queues: dict, hashes: dict[str, str] | None = None) -> None:
        """Serve these models (anything with `name`, `class_names` and `settings`) through these queues (anything
        with `async predict(image)`, `seconds_per_picture` and `async stop()`): this process's, or a cluster's."""
        self.predictors, self.queues = models, queues
        if hashes is not None:
            self.hashes = hashes
        self.ready = True

    async def stop(self) -> None:
        for queue in self.queues.values():
            await queue.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ describing

    def describe(self) -> list[dict]:
        """Each model's name, classes and how it runs (what GET /v1/models answers)."""
        described = []
        for spec in self.specs:
            predictor = self.predictors.get(spec.name)
            settings = predictor.settings if predictor else None
            classes = predictor.class_names if predictor else (read_labels(spec.labels) if spec.labels else None)
            described.append({
                "name": spec.name, "ready": predictor is not None,
                "classes": [name for name in classes or [] if is_real_class(name)],
                "weights": settings.weights if settings else (spec.weights or "COCO"),
                "weights_hash": self.hashes.get(spec.name, ""),
                "runtime": settings.runtime if settings else spec.backend,
                "precision": settings.precision if settings else spec.precision,
                "imgsz": spec.imgsz, "proposals": spec.proposals,
            })
        return described

    # ------------------------------------------------------------ detecting

    def _check_ready(self) -> None:
        if not self.ready:
            raise ServiceError(503, "the models are still loading; try again shortly", {"Retry-After": "5"})

    def _models(self, asked: str | None) -> list[str]:
        option = asked or self.default_model
        names = model_names(option) if option in ("v1", "v2", "both") else []
        if not names or any(name not in self.predictors for name in names):
            offered = ", ".join([*self.predictors, *(["both"] if len(self.predictors) > 1 else [])])
            raise ServiceError(422, f"model '{option}': this server runs {offered}")
        return names

    def _class_ids(self, names: tuple[str, ...], model: str) -> frozenset[int] | None:
        if not names:
            return self.detect.classes
        try:
            return frozenset(resolve_classes(names, self.predictors[model].class_names))
        except ValueError as error:
            raise ServiceError(422, str(error).replace("--classes", "classes")) from None

    def _admit(self, pictures: int) -> None:
        """Count the pictures in; 429 with a Retry-After estimate when the queue cannot take them."""
        if self._admitted + pictures > self.settings.queue_size:
            self.metrics.rejected.labels("queue_full").inc()
            per_picture = max(queue.seconds_per_picture for queue in self.queues.values())
            wait = max(1, math.ceil(self._admitted * per_picture))
            raise ServiceError(429, f"the server is busy ({self._admitted} pictures in its queue of "
                                    f"{self.settings.queue_size}); try again in {wait} s", {"Retry-After": str(wait)})
        self._admitted += pictures
        self.metrics.queue_depth.set(self._admitted)

    def _release(self, pictures: int) -> None:
        self._admitted -= pictures
        self.metrics.queue_depth.set(self._admitted)

    @contextlib.contextmanager
    def _places(self, pictures: int):
        """The pictures' places in the queue, from their arrival (before decoding) to their answer."""
        self._admit(pictures)
        try:
            yield
        finally:
            self._release(pictures)

    async def _in_time(self, work: Awaitable):
        """The work's result, or 504 past the server's time limit (its pictures then leave the queue)."""
        try:
            return await asyncio.wait_for(work, self.settings.timeout_s)
        except asyncio.TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise ServiceError(504, f"no answer within {self.settings.timeout_s:g} s (the server's --timeout-s); "
                                    f"the server is busy or the pictures are large") from None
        except FrcnnError as error:
            raise ServiceError(500, str(error)) from None

    def _plan(self, request: DetectRequest) -> _Plan:
        """The models, threshold and classes a request asks for, checked before any work: 503 or 422."""
        self._check_ready()
        names = self._models(request.model)
        threshold = self.detect.threshold if request.threshold is None else request.threshold
        return _Plan(names, threshold, {name: self._class_ids(request.classes, name) for name in names},
                     request.max_det)

    async def _predict(self, images: Sequence[np.ndarray], plan: _Plan) -> list[list[Prediction]]:
        """Each planned model's prediction of each picture, filtered as planned: one list per picture."""
        models = plan.models
        raw = await asyncio.gather(*[self.queues[name].predict(image) for image in images for name in models])
        per_picture = [raw[i * len(models):(i + 1) * len(models)] for i in range(len(images))]
        return [[_kept(prediction, plan.threshold, plan.classes[prediction.model], plan.max_det)
                 for prediction in row] for row in per_picture]

    async def decode(self, picture: Picture) -> np.ndarray:
        """A picture's bytes as the scripts decode them, off the event loop; 413, 415 or 422 when they cannot be."""
        return await asyncio.to_thread(read_picture, picture.data, picture.name, self.settings.max_pixels)

    async def records(self, pictures: Sequence[Picture], request: DetectRequest) -> list[dict]:
        """What `detect_image.py --json` writes for each picture; a picture that cannot be read gives its error
        and status in its place (when it is the only one, the request fails with them)."""
        plan = self._plan(request)
        with self._places(len(pictures)):
            return await self._in_time(self._records(pictures, plan))

    async def _records(self, pictures: Sequence[Picture], plan: _Plan) -> list[dict]:
        decoded: list[np.ndarray | ServiceError] = []
        for picture in pictures:
            try:
                decoded.append(await self.decode(picture))
            except ServiceError as error:
                if len(pictures) == 1:
                    raise
                decoded.append(error)
        good = [image for image in decoded if isinstance(image, np.ndarray)]
        found = iter(await self._predict(good, plan) if good else [])
        answers = []
        for picture, image in zip(pictures, decoded):
            if isinstance(image, ServiceError):
                answers.append({"file": picture.name, "error": image.message, "status": image.status})
            else:
                answers.append(picture_record(picture.name, image.shape[1], image.shape[0], next(found)))
        return answers

    async def drawn(self, picture: Picture, request: DetectRequest) -> bytes:
        """The picture drawn as `detect_image.py` draws it (several models side by side), as JPEG."""
        plan = self._plan(request)
        with self._places(1):
            return await self._in_time(self._drawn(picture, plan))

    async def _drawn(self, picture: Picture, plan: _Plan) -> bytes:
        from frcnn.drawing import render

        image = await self.decode(picture)
        (predictions,) = await self._predict([image], plan)
        return await asyncio.to_thread(lambda: encode_jpeg(render(image, predictions, self.draw)))


@dataclass(frozen=True)
class _Plan:
    """A request's models, threshold, classes (ids per model) and box limit, checked."""

    models: list[str]
    threshold: float
    classes: dict[str, frozenset[int] | None]
    max_det: int | None


def _kept(prediction: Prediction, threshold: float, classes: frozenset[int] | None, max_det: int | None) -> Prediction:
    """The prediction with only the boxes the request keeps (the best `max_det` of them), naming its threshold."""
    detections = prediction.detections.filter(threshold, classes)
    if max_det is not None and len(detections) > max_det:
        detections = detections[np.argsort(-detections.scores, kind="stable")[:max_det]]
    return Prediction(prediction.model, prediction.class_names, detections, prediction.milliseconds,
                      prediction.settings.with_threshold(threshold))



def upload_name(name: str | None, index: int) -> str:
    """A name for an uploaded picture in messages and records: its file name, without any folders."""
    return Path(name).name if name else f"picture {index + 1}"
