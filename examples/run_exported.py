"""Run a model that export.py wrote, on one picture, with nothing of the project: ONNX Runtime or OpenVINO, OpenCV,
numpy and the model's metadata (model.json). Prints the detections in the picture's own pixels as JSON:

    python examples/run_exported.py exported/v2-onnx picture.jpg [--threshold 0.5]
    [{"label": "person", "label_id": 1, "score": 0.9731, "box": [12.5, 40.0, 210.3, 398.1]}, ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def prepare(picture: np.ndarray, meta: dict) -> tuple[np.ndarray, float, float]:
    """A BGR picture as the graph's input (RGB, 0..1, CHW float32), and the factors from its pixels back to the
    picture's. A picture far larger than the model's input is shrunk first, as the metadata says."""
    rule = meta["preprocessing"]
    height, width = picture.shape[:2]
    scale = min(rule["imgsz"] / min(height, width), rule["max_size"] / max(height, width))
    fx = fy = 1.0
    if scale < rule["preshrink_below_scale"]:
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        picture = cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = width / new_w, height / new_h
    rgb = np.ascontiguousarray(picture[:, :, ::-1]).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)), fx, fy


def run_onnx(model: Path, image: np.ndarray) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["boxes", "labels", "scores"], {"image": image})


def run_openvino(model: Path, image: np.ndarray) -> list[np.ndarray]:
    import openvino

    # fp32 arithmetic, as exported (the CPU plugin may otherwise choose bf16 where the CPU has it)
    compiled = openvino.Core().compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled.create_infer_request().infer({0: image})
    return [result[compiled.output(index)] for index in range(3)]


def detect(folder: Path, picture_path: Path, threshold: float | None) -> list[dict]:
    """The model's detections of the picture at or above the threshold (default: the metadata's)."""
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    picture = cv2.imread(str(picture_path), cv2.IMREAD_COLOR)  # BGR, turned as its EXIF orientation says
    if picture is None:
        raise SystemExit(f"error: {picture_path}: not a picture OpenCV can read")
    image, fx, fy = prepare(picture, meta)
    run = run_onnx if meta["format"] == "onnx" else run_openvino
    boxes, labels, scores = run(folder / meta["model_file"], image)
    classes, not_classes = meta["classes"], set(meta["not_classes"])
    # Label 0 is the background: OpenVINO gives one such row where the model finds nothing.
    keep = (scores >= (meta["threshold"] if threshold is None else threshold)) & (labels != 0)
    detections = []
    for box, label, score in zip(boxes[keep] * np.array([fx, fy, fx, fy], np.float32), labels[keep], scores[keep]):
        name = classes[label] if 0 <= label < len(classes) and classes[label] not in not_classes else str(label)
        detections.append({"label": name, "label_id": int(label), "score": round(float(score), 4),
                           "box": [round(float(v), 1) for v in box]})
    return detections


def main() -> int:
    parser = argparse.ArgumentParser(description="Run an exported model on a picture; print its detections as JSON.")
    parser.add_argument("model_dir", type=Path, help="the folder export.py wrote (model.json and the model)")
    parser.add_argument("picture", type=Path, help="a picture file")
    parser.add_argument("--threshold", type=float, help="lowest score kept (default: the one in model.json)")
    args = parser.parse_args()
    print(json.dumps(detect(args.model_dir, args.picture, args.threshold)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
