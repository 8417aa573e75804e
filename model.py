"""Building torchvision's Faster R-CNN v1 / v2 detectors and loading their weights: `frcnn.model`, by the name a clone
has always offered (`import model`)."""

from frcnn.model import *  # noqa: F401,F403
