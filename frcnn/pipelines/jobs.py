"""What one input asks of the models, the same in a single process and on a Ray worker: the file's bytes in;
plain, picklable results out (detections, and the drawn picture as JPEG bytes). And the pools that run them."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from frcnn.core.detections import Prediction
from frcnn.core.errors import FrcnnError
from frcnn.core.files import decode_picture, encode_jpeg
from frcnn.core.log import log
from frcnn.core.specs import DetectOptions, DrawOptions, ModelSpec, RayOptions
from frcnn.drawing import render
from frcnn.pipelines.cluster import Cluster


@dataclass
class PictureResult:
    """One picture's detections by each model, and the picture drawn with them, encoded as JPEG."""

    width: int
    height: int
    predictions: list[Prediction]
    jpeg: bytes


def picture_record(source: str, width: int, height: int, predictions: Sequence[Prediction]) -> dict:
    """One picture's JSON record: what `--json` writes and the service answers."""
    return {"file": source, "width": width, "height": height, "results": [p.record() for p in predictions]}


def detect_picture(predictors: Sequence, data: bytes, origin: str, draw: DrawOptions) -> PictureResult:
    """Decode a picture, run every model on it and draw their boxes (side by side for several models)."""
    from frcnn.inference.predictor import predict_all  # PyTorch: where the models run

    image = decode_picture(data, origin)
    (predictions,) = predict_all(predictors, [image])
    return PictureResult(image.shape[1], image.shape[0], predictions, encode_jpeg(render(image, predictions, draw)))


def detect_for_scoring(predictors: Sequence, data: bytes, origin: str) -> Prediction:
    """The one model's prediction on a picture of an evaluation set, as stored: without EXIF orientation,
    because the set's boxes refer to the pixels as stored."""
    image = decode_picture(data, origin, apply_orientation=False)
    (predictor,) = predictors
    (prediction,) = predictor([image])
    return prediction


class LocalPool:
    """This process's predictors, run on one input after another; the same `imap` as cluster.WorkerPool."""

    ray = None  # no cluster (cluster.WorkerPool's is the ray module)

    def __init__(self, predictors: list):
        from frcnn.inference.loading import describe_models  # PyTorch: loaded with the predictors

        self.predictors = predictors
        self.models = describe_models(predictors)

    def close(self) -> None:
        """Nothing to stop: the models go with the process."""

    def imap(self, job: Callable, keys: Iterable, prepare: Callable,
             stop: threading.Event | None = None, resume: str = "") -> Iterator[tuple]:
        """(key, args, outcome) for every key: `prepare(key)` gives the job's arguments (None and the FrcnnError
        when it cannot), the outcome is the job's result or the FrcnnError it raised. Once `stop` is set, no
        input starts. (`resume`: how a run resumes, for a pool that can lose its workers.)"""
        for key in keys:
            if stop is not None and stop.is_set():
                return
            try:
                args = prepare(key)
            except FrcnnError as error:
                yield key, None, error
                continue
            try:
                outcome = job(self.predictors, *args)
            except FrcnnError as error:
                outcome = error
            yield key, args, outcome


def open_pool(stack: contextlib.ExitStack, ray: RayOptions | None, specs: Sequence[ModelSpec],
              detect: DetectOptions, inputs: int):
    """Where the run's jobs go: this process's models, or Ray workers (the cluster closes with `stack`)."""
    return next(pools_per_model(stack, ray, [specs], detect, inputs))


def pools_per_model(stack: contextlib.ExitStack, ray: RayOptions | None, groups: Sequence[Sequence[ModelSpec]],
                    detect: DetectOptions, inputs: int) -> Iterator:
    """A pool for each group of models, one after another (each pool's workers stop before the next start)."""
    if ray is None:
        from frcnn.inference.loading import load_predictors  # PyTorch loads here, once the options are good

        predictors = load_predictors([spec for group in groups for spec in group], detect, announce=_to_stderr)
        for group in groups:
            yield LocalPool(predictors[:len(group)])
            predictors = predictors[len(group):]
        return
    cluster = stack.enter_context(Cluster(ray))
    for group in groups:
        pool = cluster.workers(group, detect, inputs)
        pool.start()
        yield pool
        pool.close()  # when the next pool is asked for; the last one ends with the cluster


def _to_stderr(line: str) -> None:
    log.info(line)
