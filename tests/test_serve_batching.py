"""The service's batching really batches: pictures that arrive together for one model go to it in one call, each
gets its own answer back, and a picture whose request has gone is left out of the call."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import SMALL_IMGSZ, scene

from frcnn.core.specs import DetectOptions, ModelSpec
from frcnn.inference.loading import load_predictors
from frcnn.serve.batching import ModelQueue
from frcnn.serve.metrics import Metrics


class CountingPredictor:
    """A real predictor that remembers how many pictures each call gave it."""

    def __init__(self, predictor):
        self.predictor, self.calls = predictor, []
        self.name, self.class_names = predictor.name, predictor.class_names

    def __call__(self, images):
        self.calls.append(len(images))
        return self.predictor(images)


@pytest.fixture(scope="module")
def predictor(checkpoints):
    spec = ModelSpec("v1", weights=str(checkpoints["v1"]), imgsz=int(SMALL_IMGSZ), backend="torch", device="cpu")
    (loaded,) = load_predictors([spec], DetectOptions(threshold=0.0))
    return loaded


def run(queue: ModelQueue, work):
    async def body():
        queue.start()
        try:
            return await work()
        finally:
            await queue.stop()
    return asyncio.run(body())


def test_pictures_that_arrive_together_go_in_one_call(predictor):
    counting = CountingPredictor(predictor)
    queue = ModelQueue(counting, ThreadPoolExecutor(1), max_batch=4, wait_s=0.5, metrics=Metrics())
    pictures = [scene(240, 320, seed=seed) for seed in range(4)]
    answers = run(queue, lambda: asyncio.gather(*[queue.predict(picture) for picture in pictures]))
    assert counting.calls == [4]
    for picture, answer in zip(pictures, answers):
        (alone,) = predictor([picture])
        assert len(answer.detections) == len(alone.detections) > 0
        assert np.allclose(answer.detections.boxes, alone.detections.boxes, atol=0.5)


def test_a_batch_never_holds_more_than_max_batch(predictor):
    counting = CountingPredictor(predictor)
    queue = ModelQueue(counting, ThreadPoolExecutor(1), max_batch=2, wait_s=0.5, metrics=Metrics())
    pictures = [scene(120, 160, seed=seed) for seed in range(5)]
    run(queue, lambda: asyncio.gather(*[queue.predict(picture) for picture in pictures]))
    assert sorted(counting.calls, reverse=True) == [2, 2, 1]


def test_a_picture_whose_request_has_gone_is_left_out(predictor):
    counting = CountingPredictor(predictor)
    queue = ModelQueue(counting, ThreadPoolExecutor(1), max_batch=4, wait_s=0.3, metrics=Metrics())

    async def work():
        kept = asyncio.ensure_future(queue.predict(scene(seed=1)))
        gone = asyncio.ensure_future(queue.predict(scene(seed=2)))
        await asyncio.sleep(0.05)
        gone.cancel()
        return await kept

    assert len(run(queue, work).detections) > 0
    assert counting.calls == [1]
