"""One way into inference: pictures in, each model's `Detections` (with timings) out.

    predictor = make_predictor(load(ModelSpec("v2")), DetectOptions(threshold=0.5))
    (prediction,) = predictor([cv2.imread("photo.jpg")])
"""

from __future__ import annotations

import time
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch

from detections import Detections, Prediction
from model import LoadedModel
from specs import DetectOptions, SliceOptions  # noqa: F401  (SliceOptions: part of the API, with make_predictor)

# Pictures far larger than the model's input are shrunk with area averaging before inference:
# it bounds memory (no full-size float tensor) and avoids the aliasing of a large bilinear step.
_PRESHRINK_BELOW_SCALE = 0.5


class PicturePredictor(Protocol):
    """Anything that turns a batch of BGR pictures into one Prediction each (plain or sliced)."""

    name: str
    class_names: list[str]

    def __call__(self, images: Sequence[np.ndarray]) -> list[Prediction]: ...


def _input_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor torchvision's transform would resize a height×width picture by."""
    return min(min_size / min(height, width), max_size / max(height, width))


def to_model_input(image: np.ndarray, model: LoadedModel) -> tuple[torch.Tensor, float, float]:
    """A BGR picture as the model's RGB float tensor, plus the x and y factors back to the picture."""
    return input_tensor(image, model.min_size, model.max_size, model.device)


def input_tensor(image: np.ndarray, min_size: int, max_size: int,
                 device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, float, float]:
    """What `to_model_input` gives, for a model of these sizes on `device`."""
    height, width = image.shape[:2]
    scale = _input_scale(height, width, min_size, max_size)
    fx = fy = 1.0
    if scale < _PRESHRINK_BELOW_SCALE:
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = width / new_w, height / new_h
    tensor = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1]))
    if device.type == "cuda":
        tensor = tensor.pin_memory()  # lets the copy below overlap with work already queued on the GPU
    # Move uint8 to the device first: a quarter of the bytes of float32.
    tensor = tensor.to(device, non_blocking=True).permute(2, 0, 1)
    return tensor.float().div_(255.0), fx, fy


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def predict(model: LoadedModel, images: Sequence[np.ndarray]) -> tuple[list[Detections], float]:
    """Run the model on a batch of BGR pictures; return all their detections and the milliseconds taken."""
    inputs = [to_model_input(image, model) for image in images]
    _synchronize(model.device)
    start = time.perf_counter()
    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=model.half):
        outputs = model([tensor for tensor, _, _ in inputs])
    _synchronize(model.device)
    milliseconds = (time.perf_counter() - start) * 1000.0
    results = []
    for output, (_, fx, fy) in zip(outputs, inputs):
        boxes = output["boxes"].float().cpu().numpy() * np.array([fx, fy, fx, fy], dtype=np.float32)
        results.append(Detections(boxes, output["scores"].float().cpu().numpy(), output["labels"].cpu().numpy()))
    return results, milliseconds


class Predictor:
    """A loaded model with the run's threshold and classes: a batch of pictures in, one Prediction each out."""

    def __init__(self, model: LoadedModel, threshold: float = 0.0, classes: set[int] | frozenset[int] | None = None):
        self.model = model
        self.threshold = threshold
        self.classes = classes
        self.name = model.name
        self.class_names = model.class_names
        self.settings = {"weights": model.weights_source, "imgsz": model.min_size, "runtime": model.backend,
                         "precision": model.precision, "proposals": model.proposals, "threshold": threshold}

    def __call__(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        if not images:
            return []
        batch, milliseconds = predict(self.model, images)
        return [Prediction(self.name, self.class_names, detections.filter(self.threshold, self.classes),
                           milliseconds / len(images), dict(self.settings)) for detections in batch]


def make_predictor(model: LoadedModel, options: DetectOptions) -> PicturePredictor:
    """The predictor the options ask for: plain, or sliced into tiles around a plain one."""
    predictor = Predictor(model, options.threshold, options.classes)
    if options.slicing is None:
        return predictor
    from slicing import SlicedPredictor

    return SlicedPredictor(predictor, options.slicing)


def predict_all(predictors: Sequence[PicturePredictor], images: Sequence[np.ndarray]) -> list[list[Prediction]]:
    """Each predictor's Prediction for each picture: one list per picture, in predictor order."""
    per_image: list[list[Prediction]] = [[] for _ in images]
    for predictor in predictors:
        for results, prediction in zip(per_image, predictor(images)):
            results.append(prediction)
    return per_image
