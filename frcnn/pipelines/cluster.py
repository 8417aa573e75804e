"""Running a script's jobs on a Ray cluster: with frcnn/training/on_ray.py, the only module that knows Ray.

Each worker is a Ray actor that builds its models once, from the plain descriptions of `specs.py` (never from a
pickled model), and runs jobs on the bytes the driver sends it. Nothing is read from or written to a shared
filesystem: the driver reads every input, a few at a time, and writes every output itself. A checkpoint given
with --weights (and int8's calibration pictures) travel the same way, once per worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.log import log, show_messages_on_stderr
from frcnn.core.specs import DetectOptions, ModelSpec, RayOptions
from frcnn.pipelines.ray_join import KeepSignalHandlers, RayLogsAside, check_reachable, send_token_when_there_is_one
from frcnn.runtimes.cache import RECEIVED, cache_dir

RAY_INSTALL = "pip install -r requirements-ray.txt"
START_TIMEOUT_S = 120  # for the workers to be placed and to import the project's requirements (slow on a busy node)
MAX_RESTARTS = 3  # a worker whose process dies is started again (on any node) at most this often
MAX_TASK_RETRIES = 3  # and the inputs it held are sent again at most this often
IN_FLIGHT_PER_WORKER = 2  # one computing, one waiting: no idle worker, and few inputs in the object store
MAX_MESSAGES = 50  # lines a worker's job may send back with its result
# What the workers are sent: the package and the top-level modules it imports, by name (found, not imported:
# the driver need not load PyTorch).
SHIPPED_MODULES = ("frcnn", "model", "coco_names")


def import_ray():
    """The ray module, or FrcnnError naming how to install it."""
    try:
        import ray
    except ImportError:
        raise FrcnnError(f"--ray needs Ray, which is not installed here: {RAY_INSTALL}") from None
    return ray


def _cluster_messages_to_stderr() -> None:
    """Ray prints its cluster's messages (a worker died, a task is retried) on stdout, where the scripts write
    their results: send them to stderr with the other status lines."""
    module = sys.modules.get("ray._private.worker")
    original = getattr(module, "print_to_stdstream", None)
    if original is None or getattr(original, "to_stderr", False):
        return

    def to_stderr(data: dict, *args, **kwargs):
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.to_stderr = True
    module.print_to_stdstream = to_stderr


class Cluster:
    """A Ray cluster joined for one run, or a local one started for it (and stopped at its end)."""

    def __init__(self, options: RayOptions):
        self.options = options
        self.ray = None
        self.local = False
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "Cluster":
        address = self.options.address or os.environ.get("RAY_ADDRESS")
        self.local = not address
        if address:
            check_reachable(address)
            send_token_when_there_is_one()  # read when Ray is imported
        ray = import_ray()
        with contextlib.ExitStack() as stack:  # undone at once if joining fails, else when the run ends
            logs = stack.enter_context(RayLogsAside())
            # The workers get the project's modules and nothing else of its folder (outputs, media, weights stay).
            code = stack.enter_context(tempfile.TemporaryDirectory(prefix="frcnn-code-"))
            _copy_modules(code)
            with KeepSignalHandlers():
                _init(ray, address, code, logs.path)
            stack.callback(_shutdown, ray)
            self._stack = stack.pop_all()
        self.ray = ray
        _cluster_messages_to_stderr()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()  # a local cluster stops; on a joined one, this run's workers end


    def workers(self, specs: Sequence[ModelSpec], detect: DetectOptions, inputs: int) -> "WorkerPool":
        """Workers for these models, as many as asked (or as the cluster's resources allow), at most one per input."""
        resources = self.ray.cluster_resources()
        cpus_total, gpus_total = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        cpus_free = self.ray.available_resources().get("CPU", 0.0)
        cpus = self.options.cpus_per_worker
        if cpus is None:  # one CPU each; the free ones shared out when there are fewer inputs (one video: all of
            # them). Not the cluster's total: CPUs others hold (a service's replicas) would keep the worker waiting.
            spread = max(1.0, cpus_free)
            cpus = float(max(1, math.floor(spread / max(1, min(inputs, spread)))))
        gpus = self.options.gpus_per_worker
        if gpus is None:  # a GPU each where there are GPUs, unless every model is asked to run on the CPU
            gpus = 1.0 if gpus_total >= 1 and any(spec.device != "cpu" for spec in specs) else 0.0
        fit = math.floor(cpus_total / cpus) if cpus > 0 else inputs
        if gpus > 0:
            fit = min(fit, math.floor(gpus_total / gpus))
        if fit < 1 and not self.options.workers:
            raise FrcnnError(f"the Ray cluster has {cpus_total:g} CPUs and {gpus_total:g} GPUs: not enough for one "
                              f"worker of {cpus:g} CPU and {gpus:g} GPU (see --cpus-per-worker, --gpus-per-worker)")
        count = max(1, min(self.options.workers or fit, inputs))
        if fit >= 1 and count > fit:  # more than the cluster can place would only wait
            log.info(f"Ray: the cluster has room for {fit} of the {count} workers asked for")
            count = fit
        nodes = sum(1 for node in self.ray.nodes() if node.get("Alive"))
        log.info(f"Ray: {count} worker{'s' if count != 1 else ''} ({cpus:g} CPU, {gpus:g} GPU each) on a cluster of "
              f"{nodes} node{'s' if nodes != 1 else ''}, {cpus_total:g} CPUs ({cpus_free:g} free), {gpus_total:g} GPUs")
        return WorkerPool(self.ray, specs, detect, count, cpus, gpus)


def _init(ray, address: str | None, code: str, ray_log: Path | None) -> None:
    """`ray.init`: a local cluster for the run (no address), or the one at `address`; FrcnnError if it fails."""
    settings = {"runtime_env": {"working_dir": code}, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        settings["address"] = address
    else:  # "local": a new instance even where another Ray runs on this machine
        settings.update(address="local", include_dashboard=False)
        log.info(f"Ray: starting a local cluster ({os.cpu_count()} CPUs) ...")
    try:
        ray.init(**settings)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        where = f"at {address}" if address else "here"
        hint = (" (a cluster with token authentication also needs its token here: RAY_AUTH_TOKEN, printed by "
                "'ray get-auth-token' on its head)") if address and isinstance(error, ConnectionError) else ""
        text = " ".join(str(error).split())[:300] or type(error).__name__  # Ray's advice spans several lines
        logs = f"; Ray's own messages are in {ray_log}" if ray_log is not None else ""
        raise FrcnnError(f"cannot start or join the Ray cluster {where}: {text}{hint}{logs}") from None


def _shutdown(ray) -> None:
    if ray.is_initialized():
        ray.shutdown()


def _copy_modules(folder: str) -> None:
    """Copy the shipped modules (sources only) into `folder`."""
    for name in SHIPPED_MODULES:
        origin = Path(importlib.util.find_spec(name).origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, Path(folder) / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, folder)


def worker_specs(specs: Sequence[ModelSpec], cpus: float, gpus: float) -> list[ModelSpec]:
    """The specs as a worker uses them: its share of the CPU, and no GPU unless it was given one."""
    threads = max(1, int(cpus)) if cpus > 0 else 0
    return [dataclasses.replace(spec, threads=threads, device="cpu" if gpus == 0 and spec.device == "auto"
                                else spec.device) for spec in specs]


def ship_files(ray, specs: Sequence[ModelSpec]) -> dict:
    """The files the specs name on this machine, put in the object store once: checkpoints, labels, and the
    calibration pictures (lossless PNG, so a worker's int8 model is the one this machine would make)."""
    files = {}
    for spec in specs:
        for path in (spec.weights, spec.labels):
            if path is not None and path not in files:
                if not Path(path).is_file():
                    raise FrcnnError(f"file not found: {path}")
                files[path] = ray.put(Path(path).read_bytes())
        if spec.precision == "int8" and "calibration" not in files:
            import cv2

            from frcnn.runtimes.quantize import calibration_pictures

            pictures = calibration_pictures(spec.calibration)
            files["calibration"] = [ray.put(cv2.imencode(".png", picture)[1].tobytes()) for picture in pictures]
    return files


class DetectionWorker:
    """A Ray actor: builds its predictors once, then runs jobs on the bytes it is sent."""

    def __init__(self, specs: list[ModelSpec], detect: DetectOptions):
        self.specs, self.detect = specs, detect
        self.predictors = None
        show_messages_on_stderr()  # Ray forwards a worker's stderr to the driver, as the scripts show it

    def environment(self) -> str:
        """Import what the models need: a node without the project's requirements says so here, in seconds."""
        import cv2  # noqa: F401  (imported for the check)
        import torch
        import torchvision  # noqa: F401

        from frcnn.inference import predictor  # noqa: F401

        return f"{socket.gethostname()}: torch {torch.__version__}"

    # The shipped files come with every call, not to the constructor: Ray cannot restart an actor whose
    # constructor arguments lived in the object store, and the references are a few bytes each.
    def ready(self, files: dict) -> tuple[float, list, list[str]]:
        """Load the models (if not yet); return the seconds it took, what the driver needs to know of them, and
        the lines loading printed."""
        from frcnn.inference.loading import describe_models  # PyTorch: on the worker only

        start = time.perf_counter()
        predictors, lines = _with_messages(lambda: self._predictors(files))
        return time.perf_counter() - start, describe_models(predictors), lines

    def run(self, files: dict, job: Callable, *args) -> tuple:
        """The job's result, or the FrcnnError it raised (a bad input fails alone, the worker goes on), and the
        lines it printed (the driver shows them: a worker's own output reaches no one)."""
        def call():
            try:
                return job(self._predictors(files), *args)
            except FrcnnError as error:
                return error

        return _with_messages(call)

    def _predictors(self, files: dict) -> list:
        if self.predictors is None:
            from frcnn.inference.loading import load_predictors

            local = [self._local(spec, files) for spec in self.specs]
            try:
                # Records name the checkpoint the user gave, not this node's copy.
                self.predictors = load_predictors(local, self.detect, weights_named=[s.weights for s in self.specs])
            except FrcnnError as error:  # and so do messages
                raise FrcnnError(_named_as_given(str(error), self.specs, local)) from None
        return self.predictors

    def _local(self, spec: ModelSpec, files: dict) -> ModelSpec:
        """The spec with this node's copies of the files the driver sent."""
        import ray

        folder = cache_dir() / RECEIVED
        folder.mkdir(parents=True, exist_ok=True)

        def received(data: bytes, suffix: str, into: Path = folder, prefix: str = "") -> str:
            path = into / f"{prefix}{hashlib.sha256(data).hexdigest()[:24]}{suffix}"  # by content: exports are reused
            if not path.exists():
                part = path.with_name(f".{path.name}.{os.getpid()}.part")
                part.write_bytes(data)
                os.replace(part, path)
            return str(path)

        changes = {}
        for field in ("weights", "labels"):
            value = getattr(spec, field)
            if value is not None:
                changes[field] = received(ray.get(files[value]), Path(value).suffix)
        if spec.precision == "int8":
            pictures = ray.get(files["calibration"])
            digest = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in pictures)).hexdigest()[:24]
            into = folder / f"calibration-{digest}"
            into.mkdir(exist_ok=True)
            for number, picture in enumerate(pictures):  # numbered: read back in the driver's order, none merged
                received(picture, ".png", into, prefix=f"{number:04d}-")
            changes["calibration"] = (str(into),)
        return dataclasses.replace(spec, **changes)



def _named_as_given(message: str, given: Sequence[ModelSpec], local: Sequence[ModelSpec]) -> str:
    """A worker's message with its copies of the files named as the user gave them."""
    for spec, copy in zip(given, local):
        for field in ("weights", "labels"):
            if getattr(copy, field) and getattr(spec, field):
                message = message.replace(str(getattr(copy, field)), str(getattr(spec, field)))
        if copy.calibration and spec.calibration and copy.calibration != spec.calibration:
            message = message.replace(copy.calibration[0], ", ".join(map(str, spec.calibration)))
    return message

class _Inputs:
    """The inputs still to send: those of lost workers first, then the next keys, prepared one at a time."""

    def __init__(self, keys: Iterator, prepare: Callable):
        self.keys, self.prepare = keys, prepare
        self.again: list = []  # (key, args, tries) of inputs whose worker was lost
        self.exhausted = False

    @property
    def finished(self) -> bool:
        return self.exhausted and not self.again

    def take(self) -> tuple | None:
        """(key, args, tries), with a FrcnnError for args when the input cannot be prepared; None when none is left
        now."""
        if self.again:
            return self.again.pop(0)
        if self.exhausted:
            return None
        key = next(self.keys, StopIteration)
        if key is StopIteration:
            self.exhausted = True
            return None
        try:
            return key, self.prepare(key), 0
        except FrcnnError as error:
            return key, error, 0


def _with_messages(call: Callable[[], object]) -> tuple[object, list[str]]:
    """`call()`'s result and the lines it wrote to stdout and stderr (warnings, the slicing line), at most
    MAX_MESSAGES of them."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
        result = call()
    lines = [line.strip() for line in buffer.getvalue().replace("\r", "\n").splitlines()]
    return result, [line for line in lines if line][:MAX_MESSAGES]


class _Messages:
    """The workers' lines, shown on this machine's stderr once per run each, above any progress bar."""

    def __init__(self):
        self._seen: set[str] = set()

    def show(self, lines: Sequence[str]) -> None:
        for line in lines:
            if line not in self._seen:
                self._seen.add(line)
                log.info(line)


@dataclasses.dataclass
class _Lost:
    """A job whose worker was lost for good (restarted more often than it may be)."""

    error: BaseException


def _cause(error: BaseException) -> BaseException:
    """The exception a worker raised, from Ray's wrapper of it."""
    return getattr(error, "cause", None) or error


class WorkerPool:
    """Workers that run one job over many inputs, a few in flight at a time, and give back each outcome."""

    def __init__(self, ray, specs: Sequence[ModelSpec], detect: DetectOptions, count: int, cpus: float,
                 gpus: float):
        self.ray = ray
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS,
                           max_task_retries=MAX_TASK_RETRIES)(DetectionWorker)
        self.files = ship_files(ray, specs)  # held here for the whole run: restarted workers fetch them again
        on_workers = worker_specs(specs, cpus, gpus)
        self.actors = [actor.remote(on_workers, detect) for _ in range(count)]
        self.load_seconds: list[float] = []
        self.models: list = []  # jobs.ModelInfo of each model, once a worker has loaded them
        self.messages = _Messages()
        self._loading: dict = {}
        self._ready: list = []

    def start(self) -> None:
        """Wait until the workers are placed and can import the project's requirements, then have them load."""
        ray = self.ray
        checks = {actor.environment.remote(): actor for actor in self.actors}
        done, late = ray.wait(list(checks), num_returns=len(checks), timeout=START_TIMEOUT_S)
        if not done:
            raise FrcnnError(f"no Ray worker started within {START_TIMEOUT_S} s: the cluster is busy, or "
                              f"cannot give a worker the CPUs and GPUs asked for")
        for ref in late:  # not placed in time (a busy cluster): the run goes on with the others
            ray.kill(checks[ref])
            self.actors.remove(checks[ref])
        if late:
            log.info(f"Ray: {len(late)} worker(s) could not start within {START_TIMEOUT_S} s; going on with "
                  f"{len(self.actors)}")
        for ref in done:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as error:
                cause = _cause(error)
                if isinstance(cause, ImportError):
                    raise FrcnnError(f"the Ray workers lack the project's requirements ({first_line(cause)}): "
                                      f"install requirements.txt on every node") from None
                raise FrcnnError(f"a Ray worker failed to start: {first_line(cause)}") from None
        log.info("Ray: the workers are loading the models ...")
        self._loading = {actor.ready.remote(self.files): actor for actor in self.actors}
        self.wait_loaded(every=False)  # the first to load tells what the models are; the others join as they load

    def wait_loaded(self, every: bool = True) -> None:
        """Block until one worker (or every one) has loaded its models."""
        while self._loading and (every or not self._ready):
            (ref,), _ = self.ray.wait(list(self._loading), num_returns=1)
            self._loaded(ref)
        if not self._ready:
            raise FrcnnError("every Ray worker was lost while loading the models")

    def close(self) -> None:
        """Stop the workers (their resources go to whatever runs next on the cluster)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self._ready, self._loading = [], {}

    def imap(self, job: Callable, keys: Iterable, prepare: Callable,
             stop: threading.Event | None = None, resume: str = "") -> Iterator[tuple]:
        """(key, args, outcome) for every key, in the order they finish: `prepare(key)` gives the job's
        arguments here (None and the FrcnnError when it cannot), the outcome is the job's result or a FrcnnError.
        An input whose worker is lost for good goes to another worker, at most MAX_TASK_RETRIES times. Once
        `stop` is set, no input is sent: the one each worker is computing finishes, those waiting are dropped.
        Where every worker is lost, FrcnnError says how many inputs finished and, with `resume`, how to go on."""
        inputs = _Inputs(iter(keys), prepare)
        in_flight: dict = {}  # ref -> (key, args, actor, tries), in the order they were sent
        held = {id(actor): 0 for actor in self.actors}
        finished = 0
        while True:
            if stop is not None and stop.is_set():
                yield from self._finish(in_flight)
                return
            yield from self._submit(job, inputs, in_flight, held)
            if inputs.finished and not in_flight:
                return
            if not self._ready and not self._loading and not in_flight:
                for key, _, _ in inputs.again:
                    yield key, None, FrcnnError(f"{key}: not processed, every Ray worker was lost")
                then = f"; {resume}" if resume else ""
                raise FrcnnError(f"every Ray worker was lost after {finished} input{'s' if finished != 1 else ''} "
                                  f"finished (kept); the others were not processed{then}")
            (ref,), _ = self.ray.wait([*in_flight, *self._loading], num_returns=1)
            if ref in self._loading:
                self._loaded(ref)
                continue
            key, args, actor, tries = in_flight.pop(ref)
            held[id(actor)] -= 1
            outcome = self._outcome(ref, key)
            if isinstance(outcome, _Lost):
                if actor in self._ready:
                    self._ready.remove(actor)
                if tries < MAX_TASK_RETRIES:
                    inputs.again.append((key, args, tries + 1))
                    continue
                outcome = FrcnnError(f"{key}: the Ray workers processing it were lost ({first_line(outcome.error)})")
            finished += not isinstance(outcome, FrcnnError)
            yield key, args, outcome

    def _submit(self, job: Callable, inputs: "_Inputs", in_flight: dict, held: dict) -> Iterator[tuple]:
        """Give every ready worker inputs up to IN_FLIGHT_PER_WORKER; yield the inputs that could not be prepared."""
        for actor in list(self._ready):
            while held[id(actor)] < IN_FLIGHT_PER_WORKER:
                item = inputs.take()
                if item is None:
                    break
                key, args, tries = item
                if isinstance(args, FrcnnError):
                    yield key, None, args
                    continue
                in_flight[actor.run.remote(self.files, job, *args)] = (key, args, actor, tries)
                held[id(actor)] += 1

    def _finish(self, in_flight: dict) -> Iterator[tuple]:
        """The outcomes of the jobs the workers are computing (each worker's oldest); those waiting are dropped."""
        computing: dict = {}
        for ref, (_, _, actor, _) in in_flight.items():
            computing.setdefault(id(actor), ref)
        waiting = list(computing.values())
        while waiting:
            (ref,), _ = self.ray.wait(waiting, num_returns=1)
            waiting.remove(ref)
            key, args, _, _ = in_flight[ref]
            outcome = self._outcome(ref, key)
            if not isinstance(outcome, _Lost):
                yield key, args, outcome

    def _outcome(self, ref, key):
        """The finished job's result or FrcnnError (its messages shown); _Lost when its worker was lost for good."""
        ray = self.ray
        try:
            outcome, lines = ray.get(ref)
        except ray.exceptions.RayActorError as error:  # restarted more often than it may be: gone for good
            return _Lost(error)
        except ray.exceptions.RayError as error:  # raised by the job on the worker, or lost from the store
            cause = _cause(error)
            return FrcnnError(f"{key}: on a Ray worker: {type(cause).__name__}: {first_line(cause)}")
        self.messages.show(lines)
        return outcome

    def _loaded(self, ref) -> None:
        actor = self._loading.pop(ref)
        try:
            seconds, self.models, lines = self.ray.get(ref)
            self.load_seconds.append(seconds)
        except self.ray.exceptions.RayActorError:
            return  # lost for good while loading: the others go on
        except self.ray.exceptions.RayError as error:
            raise FrcnnError(f"on a Ray worker: {first_line(_cause(error))}") from None
        self.messages.show(lines)
        self._ready.append(actor)
