"""Pictures for one model gathered into inference calls: the first picture of a call waits up to `wait_s` for
others, up to `max_batch`; calls run one at a time on the service's inference thread. A picture whose request has
gone (timed out, or its client disconnected) is dropped before its call starts."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from frcnn.core.detections import Prediction
from frcnn.serve.metrics import Metrics


@dataclass
class _Waiting:
    image: np.ndarray
    future: asyncio.Future


class ModelQueue:
    """One model's waiting pictures and the task that feeds them to it."""

    def __init__(self, predictor, executor: Executor, max_batch: int, wait_s: float, metrics: Metrics):
        self.predictor, self.executor, self.metrics = predictor, executor, metrics
        self.name = predictor.name
        self.max_batch, self.wait_s = max_batch, wait_s
        self.seconds_per_picture = 1.0  # a running mean, for Retry-After
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"model-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def predict(self, image: np.ndarray) -> Prediction:
        """The model's prediction for one picture, once its batch has run."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(image, future))
        return await future

    async def _next_batch(self) -> list[_Waiting]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - loop.time()
            try:
                batch.append(self._queue.get_nowait() if remaining <= 0 else
                             await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
        return [waiting for waiting in batch if not waiting.future.done()]

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            start = time.perf_counter()
            try:
                predictions = await loop.run_in_executor(self.executor, self.predictor,
                                                         [waiting.image for waiting in batch])
            except Exception as error:  # the requests answer it; the queue goes on
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(error)
                continue
            seconds = time.perf_counter() - start
            self.seconds_per_picture = 0.8 * self.seconds_per_picture + 0.2 * seconds / len(batch)
            self.metrics.inference.labels(self.name).observe(seconds)
            self.metrics.batch_size.labels(self.name).observe(len(batch))
            self.metrics.pictures.labels(self.name).inc(len(batch))
            for waiting, prediction in zip(batch, predictions):
                if not waiting.future.done():
                    waiting.future.set_result(prediction)
