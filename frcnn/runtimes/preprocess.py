"""A BGR picture as the exported or eager model's input: RGB floats, pre-shrunk where far larger than the input."""

from __future__ import annotations

import cv2
import numpy as np
import torch

# Pictures far larger than the model's input are shrunk with area averaging before inference:
# it bounds memory (no full-size float tensor) and avoids the aliasing of a large bilinear step.
PRESHRINK_BELOW_SCALE = 0.5


def _input_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor torchvision's transform would resize a height×width picture by."""
    return min(min_size / min(height, width), max_size / max(height, width))


def input_tensor(image: np.ndarray, min_size: int, max_size: int,
                 device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, float, float]:
    """What `to_model_input` gives, for a model of these sizes on `device`."""
    height, width = image.shape[:2]
    scale = _input_scale(height, width, min_size, max_size)
    fx = fy = 1.0
    if scale < PRESHRINK_BELOW_SCALE:
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = width / new_w, height / new_h
    tensor = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1]))
    if device.type == "cuda":
        tensor = tensor.pin_memory()  # lets the copy below overlap with work already queued on the GPU
    # Move uint8 to the device first: a quarter of the bytes of float32.
    tensor = tensor.to(device, non_blocking=True).permute(2, 0, 1)
    return tensor.float().div_(255.0), fx, fy
