"""Training on a Ray cluster with Ray Train's TorchTrainer: one data-parallel PyTorch process per worker
(DistributedDataParallel; gloo between CPUs, NCCL between GPUs), each running the same loop as one process does.

As in the other scripts' --ray, nothing is shared through a filesystem: this machine reads the sets and sends the
pictures through Ray's object store, and writes every file of the run into --output itself. The first worker saves
the run into a folder of its own as one process would, then sends what changed; the driver writes it in the same
order (the resume checkpoint last), so --output on this machine always holds a run that --resume continues.
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.files import read_bytes, write_bytes_atomically
from frcnn.core.progress import progress_bar
from frcnn.core.specs import RayOptions
from frcnn.pipelines.cluster import Cluster
from frcnn.training.data import TrainingData
from frcnn.training.run_folder import BEST, CURVES, LAST, POSITION, RESULTS, STATE, STEPS, RunFolder, copy_atomically
from frcnn.training.sets import LabelledSet
from frcnn.training.settings import TrainSettings

# What the first worker sends after each save, in this order: the resume checkpoint and its position come last.
SAVED_FILES = (LAST, BEST, STEPS, RESULTS, CURVES, STATE, POSITION)
# What a resumed run's first worker needs of the saved run besides the checkpoint: the step log it goes on with.
CONTINUED_FILES = (STEPS, RESULTS)
POLL_S = 0.2
# How long a worker waits for the others at a gradient exchange: the first validates alone after each epoch.
EXCHANGE_TIMEOUT_S = 6 * 3600


class Channel:
    """A Ray actor between the driver and the workers: messages up (steps, epochs, files, warnings, an error),
    and the driver's request to stop."""

    def __init__(self):
        self.messages: list[tuple] = []
        self.stop = False

    def send(self, message: tuple) -> None:
        self.messages.append(message)

    def take(self) -> list[tuple]:
        taken, self.messages = self.messages, []
        return taken

    def request_stop(self) -> None:
        self.stop = True

    def stop_requested(self) -> bool:
        return self.stop


def worker_count(ray, settings: TrainSettings, options: RayOptions, resuming: bool) -> tuple[int, float, bool]:
    """How many training processes, the CPUs each reserves, and whether each has a GPU: a resumed run's own count;
    else as asked, or one per GPU of the cluster, or, without GPUs, one per machine with all of its CPUs."""
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0.0) if settings.device != "cpu" else 0.0
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    cpus_total = resources.get("CPU", 0.0)
    if resuming:
        count = settings.replicas
    elif options.workers:
        count = options.workers
    else:
        count = int(gpus) if gpus >= 1 else max(1, len(nodes))
    if gpus >= 1 and count > gpus:
        raise FrcnnError(f"the Ray cluster has {gpus:g} GPUs: not enough for {count} training workers of one GPU "
                          f"each")
    cpus = options.cpus_per_worker or float(max(1, math.floor(cpus_total / count)))
    if cpus * count > cpus_total:
        raise FrcnnError(f"the Ray cluster has {cpus_total:g} CPUs: not enough for {count} training workers of "
                          f"{cpus:g} CPUs each (see --ray-workers, --cpus-per-worker)")
    return count, cpus, gpus >= 1


def _ship_set(ray, labelled: LabelledSet | None) -> dict:
    """Each picture's bytes in the object store, by path (an unreadable one as None: the workers skip it)."""
    if labelled is None:
        return {}
    shipped = {}
    for sample in labelled.samples:
        try:
            shipped[sample.path] = ray.put(read_bytes(sample.path))
        except FrcnnError:
            shipped[sample.path] = None
    return shipped


def _local_set(ray, labelled: LabelledSet | None, shipped: dict, folder: Path) -> LabelledSet | None:
    """The set with its pictures written into this worker's `folder` from the shipped bytes."""
    if labelled is None:
        return None
    samples = []
    for number, sample in enumerate(labelled.samples):
        path = folder / f"{number}{Path(sample.path).suffix}"
        reference = shipped.get(sample.path)
        if reference is not None:
            path.write_bytes(ray.get(reference))
        samples.append(dataclasses.replace(sample, path=str(path)))
    return dataclasses.replace(labelled, samples=samples)


class _AgreedStop:
    """Whether to stop, as the driver asked the first worker, agreed by every worker at the same step (each must
    join every gradient exchange, so all stop together)."""

    def __init__(self, ray, channel, first: bool, device):
        self.ray, self.channel, self.first, self.device = ray, channel, first, device

    def __call__(self) -> bool:
        import torch
        import torch.distributed as dist

        asked = self.first and self.ray.get(self.channel.stop_requested.remote())
        flag = torch.tensor([1 if asked else 0], device=self.device)  # NCCL exchanges only GPU tensors
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class _Sender:
    """The first worker's saved files, sent to the driver when they change, and delivered before training goes on.

    Waiting matters: a large file travels as an object this worker owns, and an actor call whose argument's owner
    has ended fails without a word. Ray Train ends its workers as soon as training returns, so an undelivered last
    checkpoint would be lost while the smaller messages after it still arrive."""

    def __init__(self, ray, channel, folder: RunFolder):
        self.ray, self.channel, self.folder = ray, channel, folder
        self.sent: dict[Path, tuple] = {}

    def __call__(self) -> None:
        delivered = []
        for name in SAVED_FILES:
            path = self.folder / name
            if not path.is_file():
                continue
            stat = path.stat()
            mark = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if self.sent.get(name) == mark:
                continue
            if name == BEST and self.sent.get(LAST) == mark:  # best.pth is a link to last.pth: no second copy
                delivered.append(self.channel.send.remote(("same", str(BEST), str(LAST))))
            else:
                delivered.append(self.channel.send.remote(("file", str(name), path.read_bytes())))
            self.sent[name] = mark
        self.ray.get(delivered)


def train_worker(config: dict) -> None:
    """One training process of Ray Train: the loop of one process, on its share of every step."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from frcnn.training.loop import Hooks, fit
    from frcnn.training.setup import make_session

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    channel, settings = config["channel"], config["settings"]
    first = rank == 0
    try:
        with tempfile.TemporaryDirectory(prefix="frcnn-train-") as scratch:
            scratch = Path(scratch)
            (scratch / "pictures").mkdir()
            data = config["data"]
            data = TrainingData(_local_set(ray, data.train, config["pictures"], scratch / "pictures"),
                                _local_set(ray, data.val, config["pictures"], scratch / "pictures") if first else None,
                                [])
            folder = RunFolder(scratch / "run")
            for name, content in config["continued"].items():
                write_bytes_atomically(folder / name, content)
            record = (torch.load(io.BytesIO(ray.get(config["state"])), map_location="cpu", weights_only=True)
                      if config["state"] is not None else None)
            send = channel.send.remote
            device = ray.train.torch.get_device()
            hooks = Hooks(should_stop=_AgreedStop(ray, channel, first, device), saves=first, show_bar=False,
                          stop_in_validation=False)
            if first:  # the others train in step with it and say nothing
                hooks.on_epoch = lambda row: send(("epoch", row))
                hooks.on_step = lambda progress, losses: send(("step", progress.epoch, progress.step,
                                                               None if losses is None else losses["loss"]))
                hooks.on_save = _Sender(ray, channel, folder)
                hooks.warn = lambda line: send(("warning", line))
            session = make_session(settings, data, folder, device, record, hooks, rank, world)
            del record
            if first:
                send(("begin", session.batches.steps_per_epoch, session.progress.epoch, session.progress.step,
                      str(device)))
            finished = fit(session.trainer, session.batches, session.validator, settings, folder, session.progress,
                           session.log, hooks)
            if first:  # delivered before this worker may end (see _Sender)
                ray.get(send(("end", finished, session.progress.best_ap, session.progress.best_epoch)))
    except FrcnnError as error:
        ray.get(channel.send.remote(("error", str(error))))
        raise


class _Driver:
    """What the driver does with the workers' messages: the progress bar, the epoch lines, the run's files."""

    def __init__(self, folder: RunFolder, settings: TrainSettings, on_epoch: Callable[[dict], None]):
        self.folder, self.settings, self.on_epoch = folder, settings, on_epoch
        self.bar: tqdm | None = None
        self.steps = 0
        self.end: tuple | None = None
        self.error: str | None = None

    def handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "begin":
            _, self.steps, epoch, step, device = message
            self._new_bar(epoch, step)
            if epoch or step:
                tqdm.write(f"resuming at epoch {epoch + 1}, step {step}", file=sys.stderr)
            workers = f"{self.settings.replicas} Ray worker" + ("s" if self.settings.replicas != 1 else "")
            tqdm.write(f"training {self.settings.model} on {workers} ({device}; "
                       f"{self.steps} steps per epoch)", file=sys.stderr)
        elif kind == "step":
            _, epoch, step, loss = message
            if self.bar is None or step == 1:
                self._new_bar(epoch, step - 1)
            self.bar.update(1)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        elif kind == "epoch":
            self.close_bar()
            self.on_epoch(message[1])
        elif kind == "file":
            _, name, content = message
            write_bytes_atomically(self.folder / name, content)
        elif kind == "same":
            _, name, source = message
            copy_atomically(self.folder / source, self.folder / name)
        elif kind == "warning":
            tqdm.write(f"warning: {message[1]}", file=sys.stderr)
        elif kind == "error":
            self.error = message[1]
        elif kind == "end":
            self.end = message[1:]

    def _new_bar(self, epoch: int, step: int) -> None:
        self.close_bar()
        self.bar = progress_bar(total=self.steps, initial=step, unit="step", dynamic_ncols=True,
                                desc=f"epoch {epoch + 1}/{self.settings.epochs}", leave=False)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train_on_ray(settings: TrainSettings, data: TrainingData, folder: RunFolder, options: RayOptions,
                 resuming: bool, should_stop: Callable[[], bool], on_epoch: Callable[[dict], None],
                 on_start: Callable[[TrainSettings], TrainSettings]) -> tuple[bool, TrainSettings, tuple | None]:
    """Train on the cluster until the last epoch or a stop; whether it finished, the settings it ran with (the
    workers counted), and the end (best AP, its epoch). `on_start` receives the settings once the number of workers
    is known, and returns them as the run keeps them (it writes settings.json)."""
    with Cluster(options) as cluster:
        ray = cluster.ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        count, cpus, gpus = worker_count(ray, settings, options, resuming)
        settings = on_start(dataclasses.replace(settings, replicas=count, workers=min(settings.workers,
                                                                                      max(0, int(cpus) - 1))))
        channel = ray.remote(Channel).options(num_cpus=0).remote()
        pictures = {**_ship_set(ray, data.train), **_ship_set(ray, data.val)}
        state = ray.put(read_bytes(folder / STATE)) if resuming else None
        continued = {str(name): (folder / name).read_bytes() for name in CONTINUED_FILES
                     if resuming and (folder / name).is_file()}
        config = {"channel": channel, "settings": settings, "data": data, "pictures": pictures, "state": state,
                  "continued": continued}
        print(f"Ray: {count} training worker{'s' if count != 1 else ''} ({cpus:g} CPU, {int(gpus)} GPU each)",
              file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="frcnn-ray-train-") as storage:  # Ray Train's own records
            trainer = TorchTrainer(train_worker, train_loop_config=config,
                                   scaling_config=ScalingConfig(num_workers=count, use_gpu=gpus,
                                                                resources_per_worker={"CPU": cpus}),
                                   torch_config=TorchConfig(timeout_s=EXCHANGE_TIMEOUT_S),
                                   run_config=RunConfig(storage_path=storage, name="train"))
            driver = _Driver(folder, settings, on_epoch)
            failure = _follow(ray, trainer, channel, driver, should_stop)
        if driver.error is not None:
            raise FrcnnError(driver.error)
        if failure is not None:
            raise FrcnnError(f"training on Ray failed: {_last_line(failure)}") from failure
        if driver.end is None:
            raise FrcnnError("training on Ray ended without a word from its first worker")
        return driver.end[0], settings, driver.end[1:]


def _follow(ray, trainer, channel, driver: _Driver, should_stop: Callable[[], bool]) -> BaseException | None:
    """Run the trainer in a thread while this one handles the workers' messages and passes a stop on; the
    trainer's failure, if any."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            trainer.fit()
        except Exception as error:  # raised again by the caller, in the main thread
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    asked = False
    try:
        while True:
            alive = thread.is_alive()
            for message in ray.get(channel.take.remote()):
                driver.handle(message)
            if not alive:
                return failure[0] if failure else None
            if should_stop() and not asked:
                channel.request_stop.remote()
                asked = True
            time.sleep(POLL_S)
    finally:
        driver.close_bar()


def _last_line(error: BaseException) -> str:
    """The last line of a worker's error (Ray's message holds its whole traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else first_line(error)
