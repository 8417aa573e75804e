"""Seeded random-weight checkpoints made with torchvision's own builders (no download): what tests and benchmarks
run where the COCO weights cannot be had. Random weights give almost no detection above torchvision's 0.05 score
floor; raising one class's classifier bias makes nearly every proposal a confident detection of it."""

from __future__ import annotations

from pathlib import Path

import torch

from frcnn.model import build_detector

BOOSTED_LABEL = 1  # "person" in COCO
BOOSTED_BIAS = 12.0


def detector_state(name: str, num_classes: int = 91, seed: int = 0, boosted: bool = True) -> dict[str, torch.Tensor]:
    """The state of a freshly built v1 or v2 with seeded weights (one class boosted unless `boosted` is False)."""
    torch.manual_seed(seed)
    module = build_detector(name, num_classes=num_classes)
    if boosted:
        with torch.no_grad():
            module.roi_heads.box_predictor.cls_score.bias[BOOSTED_LABEL] += BOOSTED_BIAS
    return module.state_dict()


def official_format(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """torchvision's released v1 uses frozen batch norm, whose state has no num_batches_tracked."""
    if name != "v1":
        return dict(state)
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def save_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path
