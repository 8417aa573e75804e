"""Seeded random-weight checkpoints made with torchvision's own builders (no download)."""

from __future__ import annotations

from pathlib import Path

import torch

from model import build_detector

# With this class's classifier bias raised, nearly every proposal becomes a confident detection of it.
BOOSTED_LABEL = 1  # "person" in COCO
BOOSTED_BIAS = 12.0


def detector_state(name: str, num_classes: int = 91, seed: int = 0, boosted: bool = True) -> dict[str, torch.Tensor]:
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
