"""One way into inference: pictures in, each model's `Detections` (with timings) out.

`frcnn.inference.loading.make_predictor` builds the predictor a run's options ask for (plain or sliced).
"""

from __future__ import annotations

import os
import time
from typing import Protocol, Sequence, Union

import numpy as np
import torch

from frcnn.core.detections import Detections, Prediction, PredictionSettings
from frcnn.core.files import read_image
from frcnn.model import LoadedModel
from frcnn.runtimes.preprocess import input_tensor

# A picture as a predictor takes it: an 8-bit BGR array (as OpenCV reads it), or a file's path.
Picture = Union[np.ndarray, str, os.PathLike]


class PicturePredictor(Protocol):
    """Anything that turns a batch of BGR pictures (or their paths) into one Prediction each (plain or sliced)."""

    name: str
    class_names: list[str]

    def __call__(self, images: Sequence[Picture]) -> list[Prediction]: ...


def as_pictures(images: Sequence[Picture]) -> list[np.ndarray]:
    """BGR arrays as they are, and paths read as the scripts read them (EXIF orientation applied); TypeError in one
    line for anything else."""
    if isinstance(images, (np.ndarray, str, os.PathLike)) and not (isinstance(images, np.ndarray) and images.ndim == 4):
        raise TypeError(f"a predictor takes a list of pictures, not one {type(images).__name__}: "
                        f"predictor([picture]) (each an 8-bit BGR array or a file's path)")
    pictures = []
    for image in images:
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image)
        elif not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            shape = f" of shape {image.shape}" if isinstance(image, np.ndarray) else ""
            raise TypeError(f"a predictor takes 8-bit BGR arrays (height x width x 3, as cv2.imread gives) or file "
                            f"paths, not a {type(image).__name__}{shape}")
        pictures.append(image)
    return pictures


def to_model_input(image: np.ndarray, model: LoadedModel) -> tuple[torch.Tensor, float, float]:
    """A BGR picture as the model's RGB float tensor, plus the x and y factors back to the picture."""
    return input_tensor(image, model.min_size, model.max_size, model.device)


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
        self.settings = PredictionSettings(model.weights_source, model.min_size, model.backend, model.precision,
                                           model.proposals, threshold)

    def __call__(self, images: Sequence[Picture]) -> list[Prediction]:
        """One Prediction per picture: BGR arrays, or paths read as the scripts read them."""
        images = as_pictures(images)
        if not images:
            return []
        batch, milliseconds = predict(self.model, images)
        return [Prediction(self.name, self.class_names, detections.filter(self.threshold, self.classes),
                           milliseconds / len(images), self.settings) for detections in batch]


def predict_all(predictors: Sequence[PicturePredictor], images: Sequence[np.ndarray]) -> list[list[Prediction]]:
    """Each predictor's Prediction for each picture: one list per picture, in predictor order."""
    per_image: list[list[Prediction]] = [[] for _ in images]
    for predictor in predictors:
        for results, prediction in zip(per_image, predictor(images)):
            results.append(prediction)
    return per_image
