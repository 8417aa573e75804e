"""ONNX export of a detector (cached, keyed by everything that shapes the graph) and the runners that execute it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN

from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.log import log
from frcnn.core.specs import max_size_for
from frcnn.runtimes.backends import runtime_version
from frcnn.runtimes.cache import cache_dir, keep_under_limit, mark_used
from frcnn.runtimes.preprocess import PRESHRINK_BELOW_SCALE  # the rule it describes

_ONNX_OPSET = 17


_OUTPUT_NAMES = ["boxes", "labels", "scores"]



def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()



def cached_export(build: Callable[[], FasterRCNN], name: str, imgsz: int, proposals: int, weights_file: Path,
                  backend: str) -> Path:
    """The ONNX export of the model `build` makes, from the cache when an intact entry for the same inputs exists."""
    key_fields = {
        "model": name,
        "weights_sha256": _file_sha256(weights_file),
        "imgsz": imgsz,
        "proposals": proposals,
        "max_size": max_size_for(imgsz),
        "input": "one CHW float picture of any size, resized and padded to /32 inside the graph",
        "roi_merge": _ROI_MERGE,
        "opset": _ONNX_OPSET,
        "torch": torch.__version__,
        backend: runtime_version(backend),
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    folder = cache_dir()
    onnx_path, meta_path = folder / f"{name}-{imgsz}-{key}.onnx", folder / f"{name}-{imgsz}-{key}.json"
    if onnx_path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == key_fields and meta.get("onnx_sha256") == _file_sha256(onnx_path):
                mark_used(onnx_path)
                return onnx_path
        except (OSError, ValueError):
            pass
        log.info(f"Cached export {onnx_path.name} is stale or damaged: exporting again")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FrcnnError(f"cannot create the export cache {folder}: {error.strerror or error}") from error
    log.info(f"Exporting {name} to ONNX for {backend} (once; cached in {folder}) ...")
    start = time.perf_counter()
    temporary = onnx_path.with_name(f".{onnx_path.name}.{os.getpid()}.part")
    module = build()
    try:
        _export_onnx(module, imgsz, temporary)
        os.replace(temporary, onnx_path)
    except torch.onnx.OnnxExporterError as error:  # e.g. the onnx package is missing
        raise FrcnnError(f"could not export {name} to ONNX ({first_line(error)}); "
                          f"install the requirements, or use --backend torch") from error
    finally:
        temporary.unlink(missing_ok=True)
    # The weights file's path is not part of the key (its content is): kept for the cache's listing.
    meta_path.write_text(json.dumps({"key": key_fields, "onnx_sha256": _file_sha256(onnx_path),
                                     "weights_file": str(weights_file)}, indent=2))
    log.info(f"Exported {name} in {time.perf_counter() - start:.1f} s")
    mark_used(onnx_path)
    keep_under_limit(folder, keep=[onnx_path])
    return onnx_path



# How the export merges RoIAlign's pyramid levels (a cache key: a graph merged otherwise is another graph).
_ROI_MERGE = "concat-gather"


def _merge_levels_by_gather(levels: torch.Tensor, unmerged_results: list[torch.Tensor]) -> torch.Tensor:
    """RoIAlign's per-level results back in the proposals' order: the levels concatenated, then one gather.

    torchvision's traced merge scatters each level into a tensor of zeros (ScatterElementsUpdate). A quantizer
    cannot follow a scatter into the zeros, so the box head's first layer got floating-point input and ran in fp32
    (v2: a 3x3 convolution over every proposal, a sixth of an int8 picture). Concat and Gather only move values:
    the quantizer NNCF puts on the first layer's input reaches RoIAlign's outputs, and OpenVINO runs the layer in
    int8. The result is the same tensor, copied instead of scattered."""
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged_results))])
    # Row i of the concatenation is proposal order[i]; proposal j's row is where order equals j.
    positions = torch.ones_like(order).cumsum(0) - 1
    inverse = torch.zeros_like(order).scatter(0, order, positions)
    return torch.cat(unmerged_results).index_select(0, inverse)


@contextlib.contextmanager
def _levels_merged_by_gather():
    """torchvision's traced RoIAlign merge replaced by `_merge_levels_by_gather` while exporting."""
    from torchvision.ops import poolers

    original = poolers._onnx_merge_levels
    poolers._onnx_merge_levels = _merge_levels_by_gather
    try:
        yield
    finally:
        poolers._onnx_merge_levels = original


def _export_onnx(module: FasterRCNN, imgsz: int, path: Path) -> None:
    # The TorchScript-based exporter handles torchvision's detection models; the graph keeps torchvision's
    # own resize and pad-to-32, so any picture size gives the feature-map sizes eager PyTorch gives.
    example = torch.rand(3, imgsz, imgsz * 4 // 3, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(), torch.no_grad(), _levels_merged_by_gather():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.cpu().eval(), ([example],), str(path), opset_version=_ONNX_OPSET, dynamo=False,
            input_names=["image"], output_names=_OUTPUT_NAMES, dynamic_axes={"image": {1: "height", 2: "width"}},
        )



def graph_description(module: FasterRCNN, imgsz: int, proposals: int) -> dict:
    """What a graph `cached_export` made takes and gives, and how a picture becomes its input, for those who run it
    without this project (the metadata `export.py` writes beside a model)."""
    transform = module.transform
    return {
        "input": {"name": "image", "shape": [3, "height", "width"], "dtype": "float32",
                  "meaning": "one picture (no batch axis), RGB, channels first, values 0..1 (8-bit values / 255)"},
        "preprocessing": {
            "steps": ["decode the picture as 8-bit BGR (OpenCV's default, EXIF orientation applied)",
                      f"scale = min({imgsz} / shorter side, {max_size_for(imgsz)} / longer side); if scale < "
                      f"{PRESHRINK_BELOW_SCALE}, first shrink the picture to round(width * scale) x round(height * "
                      f"scale) with area interpolation (cv2.INTER_AREA), and remember fx = width / new width, "
                      f"fy = height / new height (else fx = fy = 1)",
                      "BGR to RGB, to float32, divide by 255, HWC to CHW",
                      "do not resize otherwise: the graph resizes (bilinear) so the shorter side is imgsz and the "
                      "longer at most max_size, normalizes with the mean and std below, and pads to multiples of 32"],
            "imgsz": imgsz, "max_size": max_size_for(imgsz), "preshrink_below_scale": PRESHRINK_BELOW_SCALE,
            "mean": [float(v) for v in transform.image_mean], "std": [float(v) for v in transform.image_std],
            "size_divisible": transform.size_divisible},
        "outputs": {
            "boxes": "float32 [N, 4]: x1, y1, x2, y2 in the pixels of the input given to the graph (0-based edges); "
                     "multiply x by fx and y by fy for the original picture's pixels",
            "labels": "int64 [N]: class ids, indexes into `classes` (0 is the background and never given)",
            "scores": "float32 [N]: confidences 0..1, highest first"},
        "score_floor": float(module.roi_heads.score_thresh),
        "max_detections": int(module.roi_heads.detections_per_img),
        "proposals": proposals,
        "opset": _ONNX_OPSET,
    }


def _as_output(arrays) -> dict[str, torch.Tensor]:
    boxes, labels, scores = (np.asarray(value) for value in arrays)
    # Where the model finds nothing, OpenVINO gives one row of label 0 (the background, never a detection)
    # instead of none: such rows are not detections.
    found = labels != 0
    return {key: torch.from_numpy(np.ascontiguousarray(value[found]))
            for key, value in zip(_OUTPUT_NAMES, (boxes, labels, scores))}



class OnnxRuntimeRunner:
    """Runs the exported graph with ONNX Runtime, one picture per call (the export has no batch axis)."""

    def __init__(self, path: Path, precision: str = "fp32", threads: int = 0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [_as_output(self.session.run(None, {"image": image.cpu().numpy()})) for image in images]



SIZES_WATCHED = 8  # a size seen again among this many is given a copy compiled for it
# Copies kept: a camera's two orientations, or slicing's tiles and its edge tiles. Each costs memory (v2 int8 at 800
# px: about 0.4 GB, mostly its own repacked weights), so not more.
SIZED_COPIES = 2


class OpenVinoRunner:
    """Runs the exported graph with OpenVINO on the CPU, one picture per call, tuned for latency.

    The graph takes pictures of any size. When a size comes again among the last few (a video's frames, a camera's
    photos in either orientation, the tiles of sliced inference), a copy compiled for that size alone runs it from
    then on: knowing the size, OpenVINO folds the anchors and every shape computation into constants and plans the
    memory once (a few percent of each call; compiling it costs about one call). The copies of the sizes used last
    are kept, so sizes that take turns are not compiled again."""

    def __init__(self, path: Path, precision: str = "fp32", threads: int = 0):
        import openvino

        self.core = openvino.Core()
        self.path = path
        # An explicit fp32 keeps detections equal to PyTorch's (the CPU plugin may pick bf16 otherwise); an int8
        # model computes its quantized layers in int8 and the rest in fp32.
        hint = "bf16" if precision == "bf16" else "f32"
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:  # one of several processes sharing the machine (a Ray worker)
            # OpenVINO pins its threads to the first cores by default: every such process would pin the same ones.
            self.config.update(INFERENCE_NUM_THREADS=threads, ENABLE_CPU_PINNING=False)
        self.compiled = self.core.compile_model(str(path), "CPU", self.config)
        self.request = self.compiled.create_infer_request()
        self.seen_once: OrderedDict[tuple[int, ...], None] = OrderedDict()  # sizes seen lately, the newest last
        self.sized: OrderedDict[tuple[int, ...], object] = OrderedDict()  # size: its copy's request, newest last

    def _request_for(self, shape: tuple[int, ...]):
        if shape in self.sized:
            self.sized.move_to_end(shape)
            return self.sized[shape]
        if shape not in self.seen_once:
            self.seen_once[shape] = None
            if len(self.seen_once) > SIZES_WATCHED:
                self.seen_once.popitem(last=False)
            return self.request
        del self.seen_once[shape]
        model = self.core.read_model(str(self.path))
        model.reshape({0: list(shape)})
        self.sized[shape] = self.core.compile_model(model, "CPU", self.config).create_infer_request()
        if len(self.sized) > SIZED_COPIES:  # each copy holds its weights and its size's buffers
            self.sized.popitem(last=False)
        return self.sized[shape]

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        outputs = []
        for image in images:
            result = self._request_for(tuple(image.shape)).infer({0: image.cpu().numpy()})
            outputs.append(_as_output(result.to_tuple()))
        return outputs


RUNNERS = {"onnxruntime": OnnxRuntimeRunner, "openvino": OpenVinoRunner}
