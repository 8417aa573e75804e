"""The COCO category names of torchvision's detection models: `frcnn.core.coco_names`, by the name a clone has always
offered (`import coco_names`)."""

from frcnn.core.coco_names import *  # noqa: F401,F403
