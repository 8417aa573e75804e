"""Training augmentation with torchvision.transforms.v2, boxes moving with the picture; each picture's random draws
come from (seed, epoch, picture index) alone, so neither worker count nor timing nor a resume changes them."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

# Scale jitter: zoom 0.75x to 1.25x about the centre, shifted up to 10% of the side; the canvas keeps its size, so
# the model's own resize does not undo the zoom (a zoomed-out picture gets a black border, as in large-scale jitter).
ZOOM = (0.75, 1.25)
SHIFT = (0.1, 0.1)
MIN_BOX_SIDE = 1.0  # pixels; boxes cut smaller than this by the zoom or the edge are dropped


def training_transform() -> v2.Transform:
    """Horizontal flip, scale jitter and colour jitter; then boxes clamped to the picture and tiny ones dropped."""
    return v2.Compose([
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomAffine(degrees=0.0, translate=SHIFT, scale=ZOOM),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=MIN_BOX_SIDE),
    ])


def picture_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one picture's augmentation in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


def augment(transform: v2.Transform, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
            seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The transformed picture (C x H x W floats), boxes (x1 y1 x2 y2) and labels, drawn from `seed`."""
    height, width = image.shape[-2:]
    target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)), "labels": labels}
    # torchvision's transforms draw from the global generator: fork it, so that neither the caller's stream
    # (the model's box sampling, when the pictures are made in the training process) nor other pictures are touched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        picture, target = transform(tv_tensors.Image(image), target)
    return picture.as_subclass(torch.Tensor), target["boxes"].as_subclass(torch.Tensor), target["labels"]
