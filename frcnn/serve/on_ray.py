"""The service on a Ray Serve cluster: the same FastAPI app, the same routes and the same DetectionService, with
each model's pictures answered by a deployment of its own instead of this process.

    api (ingress, one replica, on this machine's node)   create_app(...) with a `load` that attaches the models'
        |                                               handles: /readyz, limits, records, jobs as without Ray
    model-v1, model-v2 (N replicas each, or autoscaled)  each replica loads its model from its ModelSpec and
                                                        DetectOptions (never a pickled model) and answers pictures
                                                        in batches (@serve.batch)

Only descriptions, pictures and predictions cross process boundaries. A replica lost mid-request is retried once on
another; what still fails is a 503 naming why. Video jobs run `detect_video.py --ray ADDRESS` on the same cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.log import log
from frcnn.core.specs import DetectOptions, DrawOptions, ModelSpec, RayOptions
from frcnn.serve.errors import ServiceError
from frcnn.serve.metrics import Metrics
from frcnn.serve.settings import ServeSettings

APP_NAME = "frcnn"
INGRESS_NAME = "api"
SERVE_INSTALL = "pip install -r requirements-ray.txt (ray[serve])"
# Requests the ingress takes beyond the pictures' queue: health probes, metrics, job routes and their event streams.
INGRESS_HEADROOM = 64
STATUS_POLL_S = 1.0  # how often this process asks the cluster how the application is doing
DESCRIBE_POLL_S = 5.0  # how long the ingress waits for a model's first replica before asking again
LOST_REPLICA_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Scaling:
    """How many replicas each model gets: `replicas` fixed, or autoscaled between `min_replicas` and
    `max_replicas` (starting at `replicas`); each reserves `cpus` CPUs and runs its model on that many threads."""

    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpus: float = 1.0

    @property
    def autoscaled(self) -> bool:
        return self.min_replicas is not None or self.max_replicas is not None

    def deployment_options(self, max_batch: int) -> dict:
        if not self.autoscaled:
            return {"num_replicas": self.replicas}
        low = self.min_replicas if self.min_replicas is not None else 1
        high = self.max_replicas if self.max_replicas is not None else max(low, self.replicas)
        return {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                       "initial_replicas": min(max(self.replicas, low), high),
                                       "target_ongoing_requests": max(1, max_batch)}}

    def describe(self) -> str:
        if not self.autoscaled:
            return f"{self.replicas} replica{'s' if self.replicas != 1 else ''}"
        options = self.deployment_options(1)["autoscaling_config"]
        return f"{options['min_replicas']} to {options['max_replicas']} replicas (autoscaled)"


# ---------------------------------------------------------------- the model replicas


class ModelReplica:
    """One model, in a Ray Serve replica: loaded from its description with the scripts' code, warmed once, then fed
    pictures in batches of up to `max_batch` gathered for up to `wait_s`."""

    def __init__(self, spec: ModelSpec, detect: DetectOptions, files: dict, max_batch: int, wait_s: float):
        from ray import serve

        from frcnn.pipelines.cluster import DetectionWorker
        from frcnn.serve.detection import WARM_UP_SIZE

        worker = DetectionWorker([spec], detect)  # the node's copies of the files the driver shipped
        _, (self.info,), lines = worker.ready(files)
        for line in lines:
            log.info(line)
        (self.predictor,) = worker.predictors
        self.predictor([np.full((*WARM_UP_SIZE, 3), 114, np.uint8)])
        self._batched = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_s)(self._run)

    def describe(self):
        """The model's name, class names and settings (what the service describes and records)."""
        return self.info

    async def predict(self, image: np.ndarray) -> tuple:
        """The model's unfiltered prediction for one picture, with the size and seconds of its batch, and whether
        it was the batch's first picture (which alone reports the batch in the metrics)."""
        return await self._batched(image)

    async def _run(self, images: list[np.ndarray]) -> list[tuple]:
        start = time.perf_counter()
        predictions = await asyncio.to_thread(self.predictor, images)
        seconds = time.perf_counter() - start
        return [(prediction, len(images), seconds, index == 0) for index, prediction in enumerate(predictions)]


class RemoteModel:
    """A model deployment seen from the ingress: what DetectionService asks of a queue."""

    def __init__(self, name: str, handle, metrics: Metrics, replicas: int):
        self.name, self.handle, self.metrics, self.replicas = name, handle, metrics, max(1, replicas)
        self.seconds_per_picture = 1.0  # a running mean over the replicas working at once, for Retry-After

    async def predict(self, image: np.ndarray):
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        for attempt in range(2):
            try:
                prediction, batch, seconds, first = await self.handle.predict.remote(image)
                break
            except BackPressureError as error:
                self.metrics.rejected.labels("replicas_full").inc()
                wait = max(1, math.ceil(error.max_queued_requests * self.seconds_per_picture))
                raise ServiceError(429, f"model {self.name}: its replicas are busy ({error.max_queued_requests} "
                                        f"pictures waiting); try again in {wait} s",
                                   {"Retry-After": str(wait)}) from None
            except DeploymentUnavailableError as error:
                raise ServiceError(503, f"model {self.name} is unavailable on the cluster: {first_line(error)}",
                                   {"Retry-After": str(LOST_REPLICA_RETRY_AFTER_S)}) from None
            except RayActorError as error:  # its replica died (or cannot be reached): idempotent, so once more
                if attempt == 0:
                    log.warning(f"model {self.name}: a replica was lost ({first_line(error)}); asking another")
                    continue
                self.metrics.rejected.labels("replica_lost").inc()
                raise ServiceError(503, f"model {self.name}: the replicas answering this picture were lost "
                                        f"({_reason(error)}); try again shortly",
                                   {"Retry-After": str(LOST_REPLICA_RETRY_AFTER_S)}) from None
            except RayTaskError as error:
                cause = getattr(error, "cause", None) or error
                if isinstance(cause, FrcnnError):
                    raise FrcnnError(str(cause)) from None
                raise ServiceError(500, f"model {self.name} failed on its replica: {type(cause).__name__}: "
                                        f"{first_line(cause)}") from None
        if first:
            self.metrics.inference.labels(self.name).observe(seconds)
            self.metrics.batch_size.labels(self.name).observe(batch)
        self.metrics.pictures.labels(self.name).inc()
        self.seconds_per_picture = 0.8 * self.seconds_per_picture + 0.2 * seconds / batch / self.replicas
        return prediction

    async def stop(self) -> None:
        """The replicas belong to the cluster's application: nothing of theirs runs in this process."""


def _reason(error: BaseException) -> str:
    text = first_line(error)
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------- the ingress


class Ingress:
    """The API's replica: the same app as without Ray (create_app), whose models are the deployments' handles."""

    def __init__(self, handles: dict, specs: list[ModelSpec], detect: DetectOptions, default_model: str,
                 settings: ServeSettings, job_arguments: Callable[[str | None], list[str]], replicas: int):
        self.handles, self.specs, self.detect, self.default_model = handles, specs, detect, default_model
        self.settings, self.job_arguments, self.replicas = settings, job_arguments, replicas

    def __serve_build_asgi_app__(self):
        from frcnn.serve.app import create_app
        from frcnn.serve.detection import DetectionService
        from frcnn.serve.jobs import JobRunner

        self.metrics = Metrics()
        self.service = DetectionService(self.specs, self.detect, DrawOptions(), self.default_model, self.settings,
                                        self.metrics)
        runner = JobRunner(self.settings, self.job_arguments, self.metrics)
        return create_app(self.service, runner, self.settings, self.metrics, load=self._attach)

    def state(self) -> tuple[bool, str | None]:
        """Whether the service is ready, and why its models could not load (for the process that deployed it)."""
        return self.service.ready, self.service.load_error

    def _attach(self, service) -> None:
        """Wait (in a thread) until each model has a replica that loaded it, then serve through their handles."""
        from frcnn.serve.detection import weights_hash

        models = {}
        for name, handle in self.handles.items():
            while name not in models:
                try:
                    models[name] = handle.describe.remote().result(timeout_s=DESCRIBE_POLL_S)
                except TimeoutError:
                    continue
        service.attach(models, {name: RemoteModel(name, handle, self.metrics, self.replicas)
                                for name, handle in self.handles.items()},
                       {spec.name: weights_hash(spec) for spec in self.specs})


class JobsOnRay:
    """A video job's model options, with `--ray ADDRESS`: its detect_video.py shares the job out over the same
    cluster (the worker that draws it sends its progress, events and previews back to the job's process)."""

    def __init__(self, arguments: Callable[[str | None], list[str]], address: str):
        self.arguments, self.address = arguments, address

    def __call__(self, model: str | None) -> list[str]:
        return [*self.arguments(model), "--ray", self.address]


# ---------------------------------------------------------------- this process: deploy, watch, take down


def _import_serve():
    try:
        from ray import serve
    except ImportError as error:
        raise FrcnnError(f"--ray needs Ray Serve, which is not installed here ({first_line(error)}): "
                         f"{SERVE_INSTALL}") from None
    return serve


def _check_port_free(settings: ServeSettings) -> None:
    """Fail in a line, not in Serve's proxy retrying, when the port is taken on this machine."""
    host = "0.0.0.0" if settings.host in ("0.0.0.0", "::") else settings.host
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, settings.port))
        except OSError as error:
            raise FrcnnError(f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}") from None


def anchored(spec: ModelSpec) -> ModelSpec:
    """The spec with its files as absolute paths: the replicas run in a folder of their own."""
    def absolute(path):
        return None if path is None else str(Path(path).resolve())

    return dataclasses.replace(spec, weights=absolute(spec.weights), labels=absolute(spec.labels),
                               calibration=tuple(absolute(path) for path in spec.calibration))


def _failure(status) -> str:
    """The one line that says why the application could not deploy (a FrcnnError's message where it was one)."""
    texts = [status.message or ""] + [d.message or "" for d in status.deployments.values()]
    for text in texts:
        found = re.search(r"FrcnnError: (.+)", text)
        if found:
            return found.group(1).strip()
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the application could not deploy"


def serve_on_ray(specs: Sequence[ModelSpec], detect: DetectOptions, default_model: str, settings: ServeSettings,
                 address: str | None, scaling: Scaling,
                 job_arguments: Callable[[str | None], list[str]]) -> int:
    """Deploy the API on a Ray cluster (the one at `address`, or a local one started for it) and watch it until
    Ctrl-C or SIGTERM; 1 when the models cannot load there."""
    from frcnn.pipelines.cluster import Cluster, ship_files, worker_specs

    _check_port_free(settings)
    for signum in (signal.SIGINT, signal.SIGTERM):  # both stop the same way (put back after ray.init)
        signal.signal(signum, _interrupt)
    with Cluster(RayOptions(address=address)) as cluster:
        ray = cluster.ray
        serve = _import_serve()
        from ray.serve.config import BackpressureConfig

        # Serve's routine lines (and its warnings of slow queue-length probes on a busy node) stay in its logs.
        logging.getLogger("ray.serve").setLevel(logging.ERROR)

        cluster_address = ray.get_runtime_context().gcs_address
        gpus_total = ray.cluster_resources().get("GPU", 0.0)
        every = dataclasses.replace(detect, threshold=0.0, classes=None)  # each request filters its own answer
        files = ship_files(ray, specs)
        models = {}
        for spec in specs:
            gpus = 1.0 if gpus_total >= 1 and spec.device != "cpu" else 0.0
            (replica_spec,) = worker_specs([spec], scaling.cpus, gpus)
            deployment = serve.deployment(
                ModelReplica, name=f"model-{spec.name}", max_ongoing_requests=2 * settings.max_batch,
                max_queued_requests=settings.queue_size,
                ray_actor_options={"num_cpus": scaling.cpus, "num_gpus": gpus},
                **scaling.deployment_options(settings.max_batch))
            models[spec.name] = deployment.bind(replica_spec, every, files, settings.max_batch,
                                                settings.batch_wait_ms / 1000.0)
        node = f"node:{ray.util.get_node_ip_address()}"
        # The API's replica runs on this machine's node (where --jobs-dir and --weights are), needing no CPU of its
        # own: the models' replicas get the cluster's CPUs.
        placement = {"num_cpus": 0, **({"resources": {node: 0.001}} if node in ray.cluster_resources() else {})}
        ingress = serve.deployment(
            serve.ingress()(Ingress), name=INGRESS_NAME, num_replicas=1,
            max_ongoing_requests=settings.queue_size + INGRESS_HEADROOM, max_queued_requests=settings.queue_size,
            backpressure_config=BackpressureConfig(status_code=429, retry_after_s=1), ray_actor_options=placement)
        app = ingress.bind(models, [anchored(spec) for spec in specs], detect, default_model, settings,
                           JobsOnRay(job_arguments, cluster_address), scaling.min_replicas or scaling.replicas)
        serve.start(http_options={"host": settings.host, "port": settings.port})
        try:
            (handle,) = serve.run_many([serve.RunTarget(target=app, name=APP_NAME, route_prefix="/")],
                                       wait_for_applications_running=False)
            log.info(f"serving on http://{settings.host}:{settings.port} from the Ray cluster at {cluster_address}: "
                     f"{', '.join(spec.name for spec in specs)}, {scaling.describe()} each (the API's page: /docs; "
                     f"/readyz says when the models are loaded)")
            return _watch(serve, handle)
        except KeyboardInterrupt:
            return 0
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # taking the application down is not interrupted
            _take_down(serve)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _watch(serve, ingress) -> int:
    """Until interrupted: say when the service is ready, and stop with the reason when its models cannot load."""
    ready = False
    while True:
        status = serve.status().applications.get(APP_NAME)
        state = str(getattr(status, "status", ""))
        if state.endswith("DEPLOY_FAILED"):
            raise FrcnnError(f"the models could not load on the Ray cluster: {_failure(status)}")
        if state.endswith("RUNNING") and not ready:
            ready, error = ingress.state.remote().result(timeout_s=30)
            if error:
                raise FrcnnError(f"the models could not load: {error}")
            if ready:
                log.info("ready: every model has a replica that loaded it")
        time.sleep(STATUS_POLL_S)


def _take_down(serve) -> None:
    """Delete this application: a joined cluster's other applications and Serve itself stay (a local cluster
    stops with this process)."""
    try:
        serve.delete(APP_NAME)
    except Exception as error:  # the cluster may already be gone; the user is told, the exit stays clean
        log.warning(f"could not take the application down: {first_line(error)}")
