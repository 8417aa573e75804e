"""The model to train and how: starting weights (COCO, a checkpoint, or none), the new box predictor, the frozen
backbone stages, and torchvision's detection reference recipe (SGD, linear warm-up, cosine or step decay)."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn.core.errors import FrcnnError, first_line
from frcnn.model import architecture_of, build_detector, official_state_dict, read_checkpoint
from frcnn.training.settings import MOMENTUM, WARMUP_FACTOR, WARMUP_STEPS, WEIGHT_DECAY, TrainSettings

_CLASSIFIER = "roi_heads.box_predictor.cls_score.weight"
# Backbone stages from the top, as torchvision's builders count trainable layers (5 adds the stem's batch norm).
_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")
# torchvision's reference steps the rate down by 10x at epochs 16 and 22 of 26; the same fractions of any length.
_STEP_AT = (16 / 26, 22 / 26)


def starting_weights(settings: TrainSettings) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The state a run starts from (None: random weights) and where it comes from."""
    if settings.start == "scratch":
        return None, "random weights"
    if settings.start == "weights":
        state = read_checkpoint(settings.weights)
        found = architecture_of(state)
        if found is None:
            raise FrcnnError(f"{settings.weights} is not a Faster R-CNN ResNet50 FPN checkpoint")
        if found != settings.model:
            raise FrcnnError(f"{settings.weights} is a {found} checkpoint, but --model asks for {settings.model}")
        return state, str(settings.weights)
    try:
        return official_state_dict(settings.model), f"the {settings.model} COCO weights"
    except FrcnnError as error:
        raise FrcnnError(f"cannot start from the {settings.model} COCO weights (train --from-scratch, or start from "
                          f"a local checkpoint with --weights PATH): {error}") from error


def build_for_training(settings: TrainSettings, classes: int, state: Mapping[str, torch.Tensor] | None = None,
                       source: str = "") -> FasterRCNN:
    """The detector for `classes` classes (background included), in train mode: the starting `state` loaded (None:
    random weights, or a resume that loads its own), its box predictor replaced where the state has other classes,
    and, unless it trains from scratch, the backbone frozen as torchvision's builders freeze trained weights."""
    torch.manual_seed(settings.seed)  # the same random weights (and new predictor) in every run of a seed
    have = classes if state is None else state[_CLASSIFIER].shape[0]
    module = build_detector(settings.model, have, settings.imgsz)
    if state is not None:
        load_weights(module, state, source)
    if have != classes:
        print(f"{source} predicts {have - 1} classes: its box predictor is replaced by a new one for "
              f"{classes - 1}", file=sys.stderr)
        features = module.roi_heads.box_predictor.cls_score.in_features
        module.roi_heads.box_predictor = FastRCNNPredictor(features, classes)
    if settings.start != "scratch":
        if settings.model == "v1":
            freeze_batch_norm(module.backbone.body)  # as torchvision's v1 builder does for trained weights
        freeze_stages(module.backbone.body, settings.trainable_layers)
    module.roi_heads.fg_bg_sampler.batch_size_per_image = settings.box_batch
    return module.train()


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a state into a freshly built detector; FrcnnError where it does not fit. A missing or extra
    num_batches_tracked (frozen batch norm keeps none) is no difference."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as error:
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), first_line(error))
        raise FrcnnError(f"{source} does not fit the model: {detail}") from error
    differ = [key for key in [*result.missing_keys, *result.unexpected_keys] if not key.endswith("num_batches_tracked")]
    if differ:
        raise FrcnnError(f"{source} does not fit the model: {len(differ)} keys differ (e.g. {differ[0]})")


def freeze_batch_norm(module: nn.Module) -> None:
    """Replace every BatchNorm2d inside `module` with a FrozenBatchNorm2d holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)


def freeze_stages(body: nn.Module, trainable: int) -> None:
    """Stop gradients in the ResNet stages below the top `trainable` ones, as torchvision's builders do."""
    train = list(_STAGES[:trainable]) + (["bn1"] if trainable == 5 else [])
    for name, parameter in body.named_parameters():
        if not any(name.startswith(stage) for stage in train):
            parameter.requires_grad_(False)


def make_optimizer(module: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    parameters = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.SGD(parameters, lr=settings.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


class LearningRateFactor:
    """The factor on the base rate at each step: linear warm-up from 0.001 over the first min(1000, steps per epoch
    - 1) steps, times a cosine decay to 0 over the run or 10x steps at 16/26 and 22/26 of it."""

    def __init__(self, steps_per_epoch: int, epochs: int, schedule: str):
        self.steps_per_epoch, self.total = steps_per_epoch, steps_per_epoch * epochs
        self.warmup = min(WARMUP_STEPS, steps_per_epoch - 1)
        self.schedule = schedule
        self.milestones = [round(epochs * at) for at in _STEP_AT]

    def __call__(self, step: int) -> float:
        warm = 1.0
        if step < self.warmup:
            alpha = step / self.warmup
            warm = WARMUP_FACTOR * (1 - alpha) + alpha
        if self.schedule == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, self.total) / self.total))
        epoch = step // self.steps_per_epoch
        return warm * 0.1 ** sum(epoch >= milestone for milestone in self.milestones)


def make_schedule(optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                  settings: TrainSettings) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per training step."""
    factor = LearningRateFactor(steps_per_epoch, settings.epochs, settings.schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
