"""Building torchvision's Faster R-CNN v1 / v2 detectors and loading their weights."""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
)

from frcnn.core.checkpoint_files import complete_spec, read_beside
from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES, read_labels
from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.log import log
from frcnn.core.specs import DEFAULT_IMGSZ, DEFAULT_PROPOSALS, MODEL_NAMES, ModelSpec, max_size_for
from frcnn.runtimes.backends import backend_installed, check_precision, choose_backend, cpu_has_bf16  # noqa: F401  (part of the API)
from frcnn.runtimes.cache import cache_dir
from frcnn.runtimes.export import RUNNERS, cached_export
from frcnn.runtimes.quantize import cached_int8

_BUILDERS: dict[str, Callable[..., FasterRCNN]] = {
    "v1": fasterrcnn_resnet50_fpn,
    "v2": fasterrcnn_resnet50_fpn_v2,
}
OFFICIAL_WEIGHTS = {
    "v1": FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
    "v2": FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
}
# A key that only one of the two architectures has: v2's RPN head has two conv blocks.
_V2_ONLY_KEY = "rpn.head.conv.1.0.weight"
_CLASSIFIER_KEY = "roi_heads.box_predictor.cls_score.weight"

# How a message names what its caller set: the scripts' options, or ModelSpec's fields for Python callers.
OPTION_WORDS = {"name": "--model", "weights": "--weights PATH", "labels": "--labels FILE", "cpu": "--device cpu",
                "half": "--half"}
FIELD_WORDS = {"name": "ModelSpec.name", "weights": "ModelSpec(weights=PATH)", "labels": "ModelSpec(labels=FILE)",
               "cpu": 'ModelSpec(device="cpu")', "half": "ModelSpec.half"}


@dataclass
class LoadedModel:
    """A detector ready for inference, with what is needed to prepare its input and name its output."""

    name: str
    device: torch.device
    class_names: list[str]
    weights_source: str
    min_size: int  # the shorter side the model resizes pictures to
    max_size: int  # the cap on the longer side
    run: Callable[[list[torch.Tensor]], list[dict[str, torch.Tensor]]]
    proposals: int = DEFAULT_PROPOSALS
    precision: str = "fp32"
    backend: str = "torch"
    half: bool = False  # run under CUDA float16 autocast
    module: FasterRCNN | None = None  # the PyTorch model; not kept when an exported runtime runs it
    read_beside: str = ""  # what was read beside its checkpoint (class names, trained size, architecture)

    def __repr__(self) -> str:
        beside = f"; {self.read_beside}" if self.read_beside else ""
        return (f"LoadedModel({self.name} from {self.weights_source}: {len(self.class_names) - 1} classes, "
                f"{self.min_size} px, {self.proposals} proposals, {self.backend} {self.precision} on "
                f"{self.device}{beside})")

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """torchvision's detection output (boxes, labels, scores per picture) from whichever runtime runs it."""
        return self.run(images)


def resolve_device(spec: str = "auto", words: Mapping[str, str] = OPTION_WORDS) -> torch.device:
    """Turn auto|cpu|cuda|cuda:N|mps into a device that exists here, or raise FrcnnError (naming the setting as
    `words` do)."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise FrcnnError(f"device 'mps' is not available on this machine (use {words['cpu']})")
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise FrcnnError(f"device '{spec}' is not available: PyTorch sees no CUDA GPU (use {words['cpu']})")
        device = torch.device(spec)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise FrcnnError(f"device '{spec}' does not exist: this machine has {count} CUDA device(s)")
        return device
    raise FrcnnError(f"unknown device '{spec}' (use auto, cpu, cuda, cuda:N or mps)")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def build_detector(name: str, num_classes: int = 91, imgsz: int = DEFAULT_IMGSZ,
                   proposals: int = DEFAULT_PROPOSALS) -> FasterRCNN:
    """Build the v1 or v2 architecture with untrained weights, in eval mode, keeping `proposals` region proposals
    per picture for the box head."""
    if name not in _BUILDERS:
        raise FrcnnError(f"unknown model '{name}' (choose from {', '.join(MODEL_NAMES)})")
    # weights_backbone=None: nothing may be downloaded here; the whole state is loaded afterwards.
    module = _BUILDERS[name](
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=imgsz,
        max_size=max_size_for(imgsz),
        rpn_post_nms_top_n_test=proposals,
    )
    return module.eval()


def official_weights_path(name: str) -> Path:
    """Where torchvision caches the official COCO checkpoint (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(OFFICIAL_WEIGHTS[name].url)


def official_state_dict(name: str, words: Mapping[str, str] = OPTION_WORDS) -> dict[str, torch.Tensor]:
    weights = OFFICIAL_WEIGHTS[name]
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise FrcnnError(_missing_weights_message([name], getattr(error, "reason", None) or error, words)) from error


def _missing_weights_message(names: list[str], reason: object, words: Mapping[str, str] = OPTION_WORDS) -> str:
    folder = official_weights_path(names[0]).parent
    files = "".join(f"\n  {OFFICIAL_WEIGHTS[n].url}" for n in names)
    which = " and ".join(names)
    return (f"the {which} COCO weights are not cached and could not be downloaded ({reason}): "
            f"pass {words['weights']} to a local checkpoint, or download{files}\n"
            f"and put {'them' if len(names) > 1 else 'it'} in {folder} (set TORCH_HOME to cache elsewhere)")


def fetch_official_weights(names: list[str]) -> None:
    """Download the official checkpoints of `names` that are not cached yet; one error names every one that fails."""
    failed, reason = [], None
    for name in dict.fromkeys(names):
        if official_weights_path(name).exists():
            continue
        path = official_weights_path(name)
        match = torch.hub.HASH_REGEX.search(path.name)  # the file name carries the start of its SHA-256
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(OFFICIAL_WEIGHTS[name].url, str(path), match and match.group(1),
                                           progress=True)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            failed.append(name)
            reason = getattr(error, "reason", None) or error
    if failed:
        raise FrcnnError(_missing_weights_message(failed, reason))


def _looks_saved_by_torch(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream (older ones): other bytes are no checkpoint at all,
    even where the unpickler, reading text as opcodes, reports objects it refuses."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict (plain, or under a 'model' / 'state_dict' key) without running any code."""
    path = Path(path)
    if not path.is_file():
        raise FrcnnError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise FrcnnError(f"weights file is empty: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() and _looks_saved_by_torch(path):
            raise FrcnnError(
                f"refused to load {path}: it holds Python objects besides tensors, "
                f"which could run code when loaded; save the model's state_dict instead"
            ) from error
        raise FrcnnError(f"{path} is not a readable PyTorch checkpoint ({first_line(error)})") from error
    except Exception as error:  # torch.load fails in many ways on arbitrary bytes; all mean "not a checkpoint"
        raise FrcnnError(
            f"{path} is not a readable PyTorch checkpoint: another kind of file, or truncated ({first_line(error)})"
        ) from error
    for key in ("model", "state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise FrcnnError(f"{path} holds no model state_dict (expected a mapping of names to tensors)")
    return dict(loaded)


def architecture_of(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Which of v1 / v2 a state_dict belongs to, or None if it is neither."""
    if _CLASSIFIER_KEY not in state_dict:
        return None
    return "v2" if _V2_ONLY_KEY in state_dict else "v1"


def checkpoint_architecture(path: str | os.PathLike) -> str:
    """Which of v1 / v2 a checkpoint file holds; FrcnnError where it is neither."""
    found = architecture_of(read_checkpoint(path))
    if found is None:
        raise FrcnnError(f"{path} is not a Faster R-CNN ResNet50 FPN checkpoint")
    return found


def prepare_specs(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """Check every model's device, precision, runtime and weights before any is loaded, naming every problem of
    a kind at once; return the specs with device and runtime resolved."""
    resolved = []
    for spec in specs:
        device = resolve_device(spec.device)
        backend = check_runtime(device, spec.half, spec.backend, spec.precision)
        if backend != "torch" and not _cache_writable():
            log.warning(f"warning: the export cache {cache_dir()} cannot be written (set FRCNN_CACHE to another "
                        f"folder); running {spec.name} with PyTorch instead of {backend}")
            backend = "torch"
        resolved.append(dataclasses.replace(spec, device=str(device), backend=backend))
    absent = sorted({c for spec in resolved for c in spec.calibration if not Path(c).exists()})
    if absent:
        raise FrcnnError(f"--calibration: not found: {', '.join(absent)}")
    missing = [spec.weights for spec in resolved if spec.weights is not None and not Path(spec.weights).is_file()]
    if missing:
        raise FrcnnError(f"weights file{'s' if len(missing) > 1 else ''} not found: {', '.join(map(str, missing))}")
    fetch_official_weights([spec.name for spec in resolved if spec.weights is None])
    return resolved


def _cache_writable() -> bool:
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def load(spec: ModelSpec, words: Mapping[str, str] = FIELD_WORDS) -> LoadedModel:
    """The model a ModelSpec describes, loaded and ready: the way in for scripts, workers and Python users. What the
    spec leaves open is read beside a train.py checkpoint, as the scripts read it (`complete_spec`), and said in the
    model's repr and the log. Messages name the spec's fields (`words`: the scripts pass their options')."""
    spec = complete_spec(spec)
    model = load_model(spec.name, resolve_device(spec.device, words), imgsz=spec.imgsz, weights=spec.weights,
                       labels=spec.labels, half=spec.half, backend=spec.backend, proposals=spec.proposals,
                       precision=spec.precision, calibration=spec.calibration, threads=spec.threads, words=words)
    model.read_beside = read_beside(dataclasses.replace(spec, name=model.name))
    if model.read_beside:
        log.info(f"{model.name}: {model.read_beside}")
    return model


def load_model(
    name: str | None,
    device: torch.device,
    imgsz: int = DEFAULT_IMGSZ,
    weights: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    half: bool = False,
    backend: str = "torch",
    proposals: int = DEFAULT_PROPOSALS,
    precision: str = "fp32",
    calibration: tuple[str, ...] = (),
    threads: int = 0,
    words: Mapping[str, str] = OPTION_WORDS,
) -> LoadedModel:
    """Build v1 or v2 (None: the checkpoint's own) with the official COCO weights or a local checkpoint, on
    `device`, run by `backend` at `precision` (int8: quantized with the `calibration` pictures or videos), on
    `threads` CPU threads (0: all). Messages name the settings as `words` do."""
    backend = check_runtime(device, half, backend, precision, words)
    state_dict, source, name = _weights(name, weights, words)
    num_classes = state_dict[_CLASSIFIER_KEY].shape[0]
    class_names = _class_names(num_classes, weights, labels, words)
    build = functools.partial(_build_with_state, name, num_classes, imgsz, proposals, state_dict, source)
    sizes = dict(min_size=imgsz, max_size=max_size_for(imgsz), proposals=proposals, precision=precision)
    if backend == "torch":
        if threads:
            torch.set_num_threads(threads)
        module = build().to(device)
        return LoadedModel(name, device, class_names, source, **sizes, run=module, half=half, module=module)
    weights_file = Path(weights) if weights is not None else official_weights_path(name)
    graph = cached_export(build, name, imgsz, proposals, weights_file, backend)
    # No PyTorch copy is kept (nor built, when the export is cached): the runtime holds its own.
    del build, state_dict
    if precision == "int8":
        graph = cached_int8(graph, calibration, imgsz)
    return LoadedModel(name, device, class_names, source, **sizes, run=RUNNERS[backend](graph, precision, threads),
                       backend=backend)


def check_runtime(device: torch.device, half: bool, backend: str, precision: str,
                  words: Mapping[str, str] = OPTION_WORDS) -> str:
    """The runtime that will run a model on `device`, once --half, --backend and --precision are known to fit."""
    if half and device.type != "cuda":
        raise FrcnnError(f"{words['half']} needs a CUDA device, and the device is {device}")
    backend = choose_backend(backend, device)
    check_precision(precision, device, backend)
    return backend


def _weights(name: str | None, weights: str | os.PathLike | None,
             words: Mapping[str, str]) -> tuple[dict[str, torch.Tensor], str, str]:
    """The state dict to load (the COCO weights, or a checkpoint of the right architecture), how to name it, and
    the architecture (`name`, or the checkpoint's where None)."""
    if weights is None:
        name = name or "v2"
        return official_state_dict(name, words), f"COCO weights ({official_weights_path(name).name})", name
    state_dict = read_checkpoint(weights)
    found = architecture_of(state_dict)
    if found is None:
        raise FrcnnError(f"{weights} is not a Faster R-CNN ResNet50 FPN checkpoint")
    if name is not None and found != name:
        raise FrcnnError(f"{weights} is a {found} checkpoint, but {words['name']} asks for {name}")
    return state_dict, str(weights), found


def _class_names(num_classes: int, weights: str | os.PathLike | None, labels: str | os.PathLike | None,
                 words: Mapping[str, str] = OPTION_WORDS) -> list[str]:
    """The names of the checkpoint's classes: from the labels file, or COCO's when it predicts COCO's 91."""
    if labels is not None:
        class_names = read_labels(labels)
        if len(class_names) != num_classes:
            raise FrcnnError(f"labels file {labels} names {len(class_names) - 1} classes, "
                              f"but the checkpoint predicts {num_classes - 1} (plus the background)")
        return class_names
    if num_classes == len(COCO_INSTANCE_CATEGORY_NAMES):
        return list(COCO_INSTANCE_CATEGORY_NAMES)
    raise FrcnnError(f"{weights} predicts {num_classes} classes, not COCO's {len(COCO_INSTANCE_CATEGORY_NAMES)}: "
                      f"pass {words['labels']} with their names, one per line")


def _build_with_state(name: str, num_classes: int, imgsz: int, proposals: int, state_dict: Mapping[str, torch.Tensor],
                      source: str) -> FasterRCNN:
    module = build_detector(name, num_classes, imgsz, proposals)
    _load_state(module, state_dict, source)
    return module


def _load_state(module: FasterRCNN, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    # torchvision's trained v1 uses frozen batch norm, whose state has no num_batches_tracked;
    # the counter plays no part in inference, so its absence (or presence) is accepted.
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines()]
        detail = next((line for line in lines if line.startswith("size mismatch")), first_line(error))
        raise FrcnnError(f"{source} does not fit the model: {detail}") from error
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise FrcnnError(f"{source} does not fit the model: {len(missing) + len(unexpected)} keys differ ({detail})")


# ---------------------------------------------------------------- exported runtimes for the CPU


