"""Validation box AP with the project's scorer: the eval-mode model wrapped in the same Predictor evaluate.py uses,
at threshold 0, scored by frcnn.evaluation.coco, so the numbers agree with evaluate.py's."""

from __future__ import annotations

from collections.abc import Callable

import torch

from frcnn.core.specs import max_size_for
from frcnn.evaluation.coco import category_map, score, to_coco_results
from frcnn.inference.predictor import Predictor
from frcnn.model import LoadedModel
from frcnn.training.loaders import val_loader
from frcnn.training.sets import LabelledSet, coco_for_scoring


class Validator:
    """Scores a model on the validation set; each unreadable picture is reported once and left out."""

    def __init__(self, labelled: LabelledSet, model_name: str, imgsz: int, workers: int,
                 warn: Callable[[str], None]):
        self.labelled = labelled
        self.coco = coco_for_scoring(labelled)
        self.model_name, self.imgsz, self.workers, self.warn = model_name, imgsz, workers, warn
        self.reported: set[int] = set()

    def loaded(self, module: torch.nn.Module, device: torch.device) -> LoadedModel:
        """The training module as the scripts' LoadedModel, run by PyTorch."""
        return LoadedModel(self.model_name, device, self.labelled.class_names, "the model in training", self.imgsz,
                           max_size_for(self.imgsz), run=module, module=module)

    def __call__(self, module: torch.nn.Module, device: torch.device,
                 should_stop: Callable[[], bool]) -> dict[str, float | None] | None:
        """pycocotools' box metrics as fractions; None if stopped part-way."""
        model = self.loaded(module, device)
        predictor = Predictor(model, threshold=0.0)
        categories = category_map(model, self.coco)
        detections, scored = [], []
        module.eval()
        try:
            for image_id, picture, error in val_loader(self.labelled, self.workers):
                if picture is None:
                    if image_id not in self.reported:
                        self.reported.add(image_id)
                        self.warn(f"{error}; left out of validation")
                    continue
                (prediction,) = predictor([picture])
                detections += to_coco_results(prediction.detections, image_id, categories)
                scored.append(image_id)
                if should_stop():
                    return None
        finally:
            module.train()
        return score(self.coco, detections, scored)
