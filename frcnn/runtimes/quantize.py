"""int8 for the CPU: post-training quantization of the exported model with NNCF, calibrated on the user's pictures.

NNCF puts int8 on the layers that carry the cost (the convolutions and matrix products of the backbone, the
FPN, the RPN head and the box head); resizing, RoIAlign, NMS and element-wise arithmetic stay in floating point. The
quantized model is cached beside the fp32 export, keyed also by the calibration pictures' content and NNCF's
and OpenVINO's versions, so it is made once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from frcnn.core.errors import FrcnnError
from frcnn.core.files import IMAGE_SUFFIXES, read_image
from frcnn.core.log import log
from frcnn.core.specs import max_size_for
from frcnn.runtimes.cache import keep_under_limit, mark_used
from frcnn.runtimes.preprocess import input_tensor

CALIBRATION_PICTURES = 30  # NNCF's own advice is a few hundred; 30 keeps the one-time cost to minutes on a CPU
FRAMES_PER_VIDEO = 30
# Operations NNCF could quantize but that carry little of the cost and lose accuracy in int8. Element-wise
# arithmetic includes the box decoding in picture pixels: NNCF's MIXED preset quantizes it too, which cost trained
# models 1-3 AP; kept in float, int8 stays within about half a point of fp32 at the same speed. Keeping only the
# arithmetic outside the backbone in float (its residual additions in int8) was no faster on an AVX2 CPU and
# scored 0.3-0.4 AP lower.
# Sqrt: RoIAlign's level mapper takes the square root of each proposal's area; quantized, the area lost its
# precision and proposals near a level's edge were pooled from the wrong pyramid level.
# Pad: the picture's padding to a multiple of 32, whose amounts are computed in the graph. NNCF moves a layer's
# input quantizer up through such copying operations; past this Pad it landed on the resize's output, where OpenVINO
# could not carry int8 through the computed padding, and the backbone's first convolution ran in fp32. Kept out, the
# Pad stops the quantizer at the convolution's input, which then runs in int8.
_KEPT_IN_FLOAT = ["Interpolate", "ROIAlign", "NonMaxSuppression", "TopK", "Add", "Multiply", "Subtract", "Divide",
                  "Sqrt", "Pad"]


def calibration_pictures(sources: Sequence[str]) -> list[np.ndarray]:
    """BGR pictures from the calibration sources: picture files, folders of pictures, or videos (frames spread
    over each); at most CALIBRATION_PICTURES, spread over all of them."""
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FrcnnError(f"--calibration {path}: no pictures in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
    if not files:
        raise FrcnnError("int8 needs pictures like yours to calibrate on: give --calibration DIR")
    step = max(1, len(files) // CALIBRATION_PICTURES)
    pictures = []
    for path in files[::step][:CALIBRATION_PICTURES]:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            pictures.append(read_image(path))
        else:
            pictures.extend(video_frames(path, FRAMES_PER_VIDEO))
    if not pictures:
        raise FrcnnError("the calibration sources gave no picture: give --calibration DIR")
    return pictures[:max(CALIBRATION_PICTURES, FRAMES_PER_VIDEO)]


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over a video."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in np.linspace(0, max(0, total - 1), num=min(count, max(1, total))).round().astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append(frame)
    capture.release()
    if not frames:
        raise FrcnnError(f"{path}: no frame could be read to calibrate on")
    return frames


def cached_int8(onnx_path: Path, calibration: Sequence[str], imgsz: int) -> Path:
    """The int8 OpenVINO model of an fp32 export, from the cache when the same export and pictures made one."""
    tensors = calibration_tensors(calibration, imgsz)
    xml_path, key_fields = int8_cache_entry(onnx_path, tensors)
    meta_path = xml_path.with_suffix(".key.json")
    if xml_path.exists() and xml_path.with_suffix(".bin").exists() and meta_path.exists():
        try:
            if json.loads(meta_path.read_text()).get("key") == key_fields:
                mark_used(xml_path)
                return xml_path
        except (OSError, ValueError):
            pass
    log.info(f"Quantizing {onnx_path.stem} to int8 with NNCF on {len(tensors)} calibration picture(s) "
          f"(once; cached in {onnx_path.parent}) ...")
    start = time.perf_counter()
    quantized = _quantize(onnx_path, tensors)
    _save_atomically(quantized, xml_path)
    meta_path.write_text(json.dumps({"key": key_fields}, indent=2))
    log.info(f"Quantized in {time.perf_counter() - start:.0f} s")
    mark_used(xml_path)
    keep_under_limit(xml_path.parent, keep=[xml_path, onnx_path])  # the export it was made from is in use too
    return xml_path


def calibration_tensors(calibration: Sequence[str], imgsz: int) -> list[np.ndarray]:
    """The calibration pictures as the exported graph's inputs."""
    return [input_tensor(picture, imgsz, max_size_for(imgsz))[0].numpy() for picture in
            calibration_pictures(calibration)]


def int8_cache_entry(onnx_path: Path, tensors: list[np.ndarray]) -> tuple[Path, dict]:
    """Where the int8 model of this export and these calibration inputs is cached, and what keys it."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tensor.shape).encode())
        digest.update(tensor.tobytes())
    key_fields = {"export": onnx_path.name, "calibration_sha256": digest.hexdigest(), "pictures": len(tensors),
                  "nncf": importlib.metadata.version("nncf"), "openvino": importlib.metadata.version("openvino"),
                  "kept_in_float": _KEPT_IN_FLOAT}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:12]
    return onnx_path.with_name(f"{onnx_path.stem}-int8-{key}.xml"), key_fields


def _quantize(onnx_path: Path, tensors: list[np.ndarray]):
    try:
        import nncf
        import openvino
    except ImportError as error:
        raise FrcnnError(f"--precision int8 needs NNCF: pip install -r requirements.txt ({error})") from error
    import contextlib
    import logging

    nncf.set_log_level(logging.ERROR)  # its notes would bury our lines; its progress bars stay, on stderr
    # convert_model, not read_model: NNCF's graph builder needs the names convert_model gives.
    model = openvino.convert_model(str(onnx_path))
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(model, nncf.Dataset(tensors), subset_size=len(tensors),
                             preset=nncf.QuantizationPreset.MIXED,
                             ignored_scope=nncf.IgnoredScope(types=_KEPT_IN_FLOAT, validate=False))


def _save_atomically(model, xml_path: Path) -> None:
    """Write the model's .xml and .bin under temporary names, then rename both (the .bin first)."""
    import openvino

    temporary = xml_path.with_name(f".{xml_path.stem}.{os.getpid()}.part.xml")
    try:
        openvino.save_model(model, str(temporary))
        os.replace(temporary.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(temporary, xml_path)
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_suffix(".bin").unlink(missing_ok=True)
