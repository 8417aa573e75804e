"""Predictors from model descriptions, the same in this process and on a Ray worker, and what the driver keeps
of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from frcnn.core.detections import PredictionSettings
from frcnn.core.specs import DetectOptions, ModelSpec
from frcnn.inference.predictor import PicturePredictor, Predictor
from frcnn.inference.slicing import SlicedPredictor
from frcnn.model import OPTION_WORDS, LoadedModel, load, prepare_specs


def make_predictor(model: LoadedModel, options: DetectOptions) -> PicturePredictor:
    """The predictor the options ask for: plain, or sliced into tiles around a plain one."""
    predictor = Predictor(model, options.threshold, options.classes)
    if options.slicing is None:
        return predictor
    return SlicedPredictor(predictor, options.slicing)


def load_predictors(specs: Sequence[ModelSpec], options: DetectOptions, announce: Callable[[str], None] | None = None,
                    weights_named: Sequence[str | None] | None = None) -> list[PicturePredictor]:
    """Check what can be checked for every model, then load each and wrap it in the predictor the options ask for.

    `weights_named`: the checkpoint each record names where it differs from the file loaded (a Ray node's copy).
    """
    predictors = []
    for index, spec in enumerate(prepare_specs(specs)):
        if announce:
            announce(f"Loading {spec.name} on {spec.device} ...")
        model = load(spec, OPTION_WORDS)  # it logs what it read beside the checkpoint
        if weights_named is not None and weights_named[index] is not None:
            model.weights_source = weights_named[index]
        predictor = make_predictor(model, options)
        if announce:
            announce(f"Loaded {model.name}: {loaded_line(predictor.settings, options)}")
        predictors.append(predictor)
    return predictors


def loaded_line(settings: PredictionSettings, options: DetectOptions) -> str:
    """How a loaded model runs, with the threshold the user asked for (and the tracker's floor where it has one)."""
    if options.asked_threshold is None:
        return settings.describe()
    return (f"{settings.with_threshold(options.asked_threshold).describe()} (the tracker also sees boxes down to "
            f"{options.threshold:g})")


@dataclass(frozen=True)
class ModelInfo:
    """What the driver knows of a model that may run elsewhere: its name, class names and settings."""

    name: str
    class_names: list[str]
    settings: PredictionSettings


def describe_models(predictors: Sequence[PicturePredictor]) -> list[ModelInfo]:
    return [ModelInfo(p.name, list(p.class_names), p.settings) for p in predictors]
