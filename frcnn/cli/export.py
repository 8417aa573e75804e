"""Export a trained checkpoint of v1 or v2 (or the COCO weights) to a model that runs without this project: ONNX,
or OpenVINO IR in fp32 or int8, with a metadata file saying how to feed it and read its outputs.

    python export.py --model v2 --weights outputs/train/v2/best.pth --output exported/v2-onnx
    python export.py --model v2 --weights best.pth --format openvino --precision int8 --calibration my/pictures \\
        --imgsz 640 --proposals 300 --output exported/v2-int8
    python examples/run_exported.py exported/v2-onnx picture.jpg

Writes into --output: model.onnx (or model.xml and model.bin) and model.json (the metadata).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core.checkpoint_files import LABELS_BESIDE_CHECKPOINT
from frcnn.core.errors import FrcnnError, first_line
from frcnn.core.files import AtomicOutputs, write_json
from frcnn.core.specs import DEFAULT_IMGSZ, DEFAULT_PROPOSALS, DEFAULT_THRESHOLD, MODEL_NAMES, ModelSpec

# PyTorch, OpenVINO and NNCF are imported once the options are known to be good.

FORMATS = ("onnx", "openvino")
PRECISIONS = ("fp32", "int8")
MODEL_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}  # what runs each format's model (in model.json)
METADATA = "model.json"


@dataclass(frozen=True)
class ExportRequest:
    """What to export, how, and where."""

    model: str
    weights: str | None  # None: the COCO weights
    labels: str | None
    imgsz: int
    proposals: int
    format: str
    precision: str
    calibration: tuple[str, ...]
    threshold: float
    output: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export Faster R-CNN v1 or v2 to ONNX or OpenVINO IR.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", choices=MODEL_NAMES,
                        help="v1 or v2 (default: a train.py checkpoint's own, from the settings.json beside it, or "
                             "the checkpoint's; v2 for the COCO weights)")
    parser.add_argument("--weights", metavar="PATH",
                        help="a checkpoint of this project (train.py's best.pth or last.pth) or any v1/v2 "
                             "state_dict (default: the COCO weights)")
    parser.add_argument("--labels", metavar="FILE",
                        help=f"class names, one per line (default: {LABELS_BESIDE_CHECKPOINT} beside the "
                             f"checkpoint, else COCO's for a checkpoint of COCO's 91 classes)")
    parser.add_argument("--imgsz", type=options.imgsz, metavar="N",
                        help=f"shorter side the model resizes pictures to (default: the size a train.py checkpoint "
                             f"was trained at, from the settings.json beside it; else {DEFAULT_IMGSZ})")
    parser.add_argument("--proposals", type=options.positive_int, default=DEFAULT_PROPOSALS, metavar="N",
                        help=f"region proposals per picture that reach the box head (default {DEFAULT_PROPOSALS}); "
                             f"fewer is faster")
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx (default: ONNX Runtime, and most other runtimes) or openvino (OpenVINO IR)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default) or int8 (OpenVINO IR quantized with NNCF, calibrated on --calibration)")
    parser.add_argument("--calibration", nargs="+", metavar="PATH",
                        help="pictures like yours for --precision int8: folders of pictures, picture files or "
                             "videos (30 pictures are used, spread over them)")
    parser.add_argument("--threshold", type=options.fraction, default=DEFAULT_THRESHOLD,
                        help=f"the lowest score the metadata suggests keeping (default {DEFAULT_THRESHOLD}); the "
                             f"model itself gives every detection above 0.05")
    parser.add_argument("--output", metavar="DIR", help="where the model and model.json go (default "
                                                        "outputs/export/<model>-<format>-<precision>)")
    return parser


def request_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ExportRequest:
    """The options as one value; a usage error where they do not fit together."""
    if args.precision == "int8" and args.format != "openvino":
        parser.error("--precision int8 is an OpenVINO model: give --format openvino")
    if args.precision == "int8" and not args.calibration:
        parser.error("--precision int8 needs pictures like yours to calibrate on: give --calibration DIR")
    if args.calibration and args.precision != "int8":
        parser.error("--calibration is for --precision int8")
    spec = options.resolved_spec(ModelSpec(args.model, weights=args.weights, labels=args.labels,
                                           imgsz=args.imgsz), parser)
    output = args.output or os.path.join("outputs", "export", f"{spec.name}-{args.format}-{args.precision}")
    return ExportRequest(spec.name, os.path.abspath(spec.weights) if spec.weights else None,
                         os.path.abspath(spec.labels) if spec.labels else None, spec.imgsz, args.proposals,
                         args.format, args.precision, tuple(os.path.abspath(p) for p in args.calibration or ()),
                         args.threshold, os.path.abspath(output))


def export(request: ExportRequest) -> Path:
    """Build the model from its weights, export it (through the cache of exported models) and write it with its
    metadata into the output folder; the model file's path."""
    import torch

    from frcnn.model import fetch_official_weights, load_model, official_weights_path
    from frcnn.runtimes.backends import backend_installed, runtime_version
    from frcnn.runtimes.export import cached_export, graph_description
    from frcnn.runtimes.quantize import cached_int8

    runtime = RUNTIMES[request.format]
    if not backend_installed(runtime):  # model.json names its version, and the export cache is keyed by it
        raise FrcnnError(f"--format {request.format} needs the '{runtime}' package: pip install {runtime} (or "
                         f"pip install -r requirements.txt)")
    missing = [path for path in request.calibration if not Path(path).exists()]
    if missing:
        raise FrcnnError(f"--calibration: not found: {', '.join(missing)}")
    output = du.prepare_output_dir(request.output)
    if request.weights is None:
        fetch_official_weights([request.model])
    loaded = load_model(request.model, torch.device("cpu"), imgsz=request.imgsz, weights=request.weights,
                        labels=request.labels, backend="torch", proposals=request.proposals)
    weights_file = Path(request.weights) if request.weights else official_weights_path(request.model)
    started = time.perf_counter()
    graph = cached_export(lambda: loaded.module, request.model, request.imgsz, request.proposals, weights_file,
                          runtime)
    if request.precision == "int8":
        graph = cached_int8(graph, request.calibration, request.imgsz)
    metadata = {"model": request.model, "weights": loaded.weights_source, "format": request.format,
                "precision": request.precision, "model_file": MODEL_FILES[request.format][0],
                "runtime": runtime, "runtime_version": runtime_version(runtime),
                "classes": loaded.class_names, "not_classes": ["__background__", "N/A"],
                "threshold": request.threshold, **graph_description(loaded.module, request.imgsz, request.proposals)}
    files = [output / name for name in MODEL_FILES[request.format]]
    stale = [output / name for other in FORMATS if other != request.format for name in MODEL_FILES[other]]
    with AtomicOutputs(files + [output / METADATA], stale=stale) as temporary:
        _write_model(graph, request, [temporary[path] for path in files])
        write_json(temporary[output / METADATA], metadata)
    print(f"exported {request.model} ({loaded.weights_source}) as {request.format} {request.precision} at "
          f"{request.imgsz} px, {request.proposals} proposals, {len(loaded.class_names) - 1} classes, in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return files[0]


def _write_model(graph: Path, request: ExportRequest, targets: list[Path]) -> None:
    """The exported graph in the format asked for, into the temporary files `targets` (model, then weights)."""
    if request.format == "onnx":
        shutil.copyfile(graph, targets[0])
        return
    if request.precision == "int8":  # quantized: already OpenVINO IR
        shutil.copyfile(graph, targets[0])
        shutil.copyfile(graph.with_suffix(".bin"), targets[1])
        return
    import openvino

    written = targets[0].with_suffix(".bin")  # where OpenVINO puts the weights of the IR it writes
    try:
        # fp32 weights as they are (OpenVINO would store them in fp16 by default)
        openvino.save_model(openvino.convert_model(str(graph)), str(targets[0]), compress_to_fp16=False)
        os.replace(written, targets[1])
    except (RuntimeError, OSError) as error:
        raise FrcnnError(f"could not convert the ONNX export to OpenVINO IR ({first_line(error)})") from error
    finally:
        written.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    request = request_from(args, parser)

    def body() -> int:
        print(export(request))
        return 0

    return du.run_main(body, "\ninterrupted: nothing was written")


if __name__ == "__main__":
    sys.exit(main())
