"""Command-line options shared by the scripts, and their turning into plain values (see specs.py) once in `main`.

Nothing here imports PyTorch: `--help` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

# The checked values, also for the scripts' own options (options.positive_int and so on).
from frcnn.core.arguments import (  # noqa: F401
    backbone_layers,
    device_name,
    fraction,
    imgsz,
    non_negative_int,
    non_negative_number,
    overlap_ratio,
    positive_int,
    positive_number,
    seconds_up_to_an_hour,
    slice_size,
)
from frcnn.core.checkpoint_files import DEFAULT_MODEL, complete_spec
from frcnn.core.coco_names import COCO_INSTANCE_CATEGORY_NAMES, is_real_class, read_labels
from frcnn.core.errors import FrcnnError
from frcnn.core.specs import (
    BACKENDS,
    DEFAULT_IMGSZ,
    DEFAULT_PROPOSALS,
    DEFAULT_THRESHOLD,
    MODEL_NAMES,
    PRECISIONS,
    DetectOptions,
    DrawOptions,
    ModelSpec,
    RayOptions,
    SliceOptions,
    model_names,
)
from frcnn.pipelines.ray_join import host_and_port

SLICE_MERGES = ("greedy-nmm", "nms")
# A run's own pictures calibrate int8 only when there are at least this many; else --calibration is asked for.
MIN_DEFAULT_CALIBRATION = 8
SLICE_MATCHES = ("ios", "iou")
# How to get Ray, in a clone or with the package installed (requirements-ray.txt is only in a clone).
RAY_INSTALL = "pip install 'ray[train]>=2.40,<3', or -r requirements-ray.txt in a clone"


# ---------------------------------------------------------------- options


def add_model_options(parser: argparse.ArgumentParser,
                      both_means: str = "both side by side (v1 left, v2 right)") -> None:
    """Which model, on what, with which weights: the same in every script."""
    parser.add_argument("--model", choices=[*MODEL_NAMES, "both"],
                        help=f"v1, v2, or {both_means} (default: a train.py checkpoint's own, from the "
                             f"settings.json beside it, or the checkpoint's; {DEFAULT_MODEL} for the COCO weights)")
    parser.add_argument("--imgsz", type=imgsz,
                        help=f"shorter side the model sees, in pixels (default: the size a train.py checkpoint was "
                             f"trained at, from the settings.json beside it; else {DEFAULT_IMGSZ}; smaller is faster)")
    parser.add_argument("--device", type=device_name, default="auto",
                        help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--weights", nargs="+", metavar="PATH",
                        help="local checkpoint instead of the COCO weights (with --model both: v1's, then v2's)")
    parser.add_argument("--labels", metavar="FILE", help="class names of a fine-tuned checkpoint, one per line "
                                                         "(default: the labels.txt beside it)")
    parser.add_argument("--half", action="store_true",
                        help="half precision on CUDA (faster, same detections within rounding)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto (default: the fastest installed runtime for the device), torch, onnxruntime, "
                             "openvino")
    parser.add_argument("--proposals", type=positive_int, default=DEFAULT_PROPOSALS, metavar="N",
                        help=f"region proposals per picture that reach the box head (default {DEFAULT_PROPOSALS}); "
                             f"fewer is faster, and may miss objects in crowded pictures")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default), int8 (quantized with NNCF, calibrated on your pictures) or bf16 "
                             "(CPUs with AVX512_BF16 or AMX); the CPU with OpenVINO; on CUDA use --half")
    parser.add_argument("--calibration", metavar="DIR",
                        help="pictures like yours for --precision int8 (default: the run's own inputs)")


def add_slice_options(parser: argparse.ArgumentParser) -> None:
    """Sliced inference for small objects: the same in every script."""
    group = parser.add_argument_group("small objects (sliced inference)")
    group.add_argument("--slice", type=slice_size, metavar="SIZE|auto",
                       help="also run the model on overlapping square tiles of SIZE picture pixels, each enlarged to "
                            "the model's input, and merge the boxes; 'auto' picks the size from the picture's")
    group.add_argument("--slice-overlap", type=overlap_ratio, metavar="R",
                       help="overlap between neighbouring tiles, 0 <= R < 1 (default 0.2)")
    group.add_argument("--slice-merge", choices=SLICE_MERGES,
                       help="greedy-nmm (default): matched boxes merge into their union, keeping the best score; "
                            "nms: only the best-scoring box of a match is kept")
    group.add_argument("--slice-match", choices=SLICE_MATCHES,
                       help="how boxes of one class match: ios (default: intersection over the smaller box, which "
                            "catches an object's part cut at a tile edge) or iou")
    group.add_argument("--slice-match-threshold", type=fraction, metavar="T",
                       help="boxes match above this overlap (default 0.5)")
    group.add_argument("--no-full-pass", dest="full_pass", action="store_false",
                       help="tiles only: skip the pass over the whole picture (large objects may be lost)")


def add_detect_options(parser: argparse.ArgumentParser, threshold: float = DEFAULT_THRESHOLD,
                       threshold_help: str | None = None, classes: bool = True) -> None:
    """What every model of a run keeps: threshold, classes (where the script offers them), slicing."""
    parser.add_argument("--threshold", type=fraction, default=threshold,
                        help=threshold_help or f"lowest score to keep, 0..1 (default {threshold})")
    if classes:
        parser.add_argument("--classes", nargs="+", metavar="CLASS",
                            help="keep only these classes, by name or id (e.g. --classes person car 'traffic light')")
    add_slice_options(parser)


def add_common_options(parser: argparse.ArgumentParser, window_keys: str) -> None:
    """The options that mean the same in both detection scripts; `window_keys` tells what keys do in --show."""
    add_model_options(parser)
    add_detect_options(parser)
    parser.add_argument("--output", default="outputs", metavar="DIR", help="output folder (default outputs/)")
    parser.add_argument("--json", action="store_true", help="also write the detections as JSON")
    parser.add_argument("--show", action="store_true", help=f"also show the results in a window ({window_keys})")
    drawing = parser.add_argument_group("drawing")
    drawing.add_argument("--hide-labels", action="store_true", help="draw boxes without labels")
    drawing.add_argument("--hide-conf", action="store_true", help="labels name the class without its score")
    drawing.add_argument("--line-width", type=positive_int, metavar="PX",
                         help="box line width in pixels (default: scaled to the picture)")


def ray_address(text: str) -> str:
    """--ray's value: auto, HOST:PORT or ray://HOST:PORT, or none (`--ray` alone: "", a local Ray for the run); a
    usage error otherwise, before Ray is started."""
    if text not in ("", "auto"):
        try:
            host_and_port(text)
        except FrcnnError:
            raise argparse.ArgumentTypeError(f"'{text}' is no Ray address: give the cluster's address as HOST:PORT "
                                             f"(or ray://HOST:PORT, or auto)") from None
    return text


class _RenamedOption(argparse.Action):
    """An option's old spelling: still works for one release, with a one-line notice naming the new one."""

    def __init__(self, option_strings, dest, new_name: str, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"notice: {option_string} is now {self.new_name}; the old spelling goes in the next release",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed_option(group, old: str, new: str, dest: str, type) -> None:
    """`old` as a deprecated spelling of `new` (same destination and type)."""
    group.add_argument(old, dest=dest, type=type, action=_RenamedOption, new_name=new, metavar="N",
                       help=argparse.SUPPRESS)  # still read, no longer shown


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """--ray and its workers: the same run shared out over a Ray cluster."""
    group = parser.add_argument_group(f"many machines (Ray: {RAY_INSTALL})")
    group.add_argument("--ray", nargs="?", const="", type=ray_address, metavar="ADDRESS",
                       help="run on a Ray cluster: HOST:PORT of its head, or auto for the one started on this machine "
                            "by 'ray start'; with no address (and no RAY_ADDRESS), a local Ray for this run")
    group.add_argument("--ray-workers", dest="workers", type=positive_int, metavar="N",
                       help="Ray workers, each with its own copy of the models (default: as many as the cluster's "
                            "CPUs and GPUs allow)")
    add_renamed_option(group, "--workers", "--ray-workers", "workers", positive_int)
    group.add_argument("--cpus-per-worker", type=positive_number, metavar="C",
                       help="CPUs each worker reserves, and the threads its models use (default 1, or more when "
                            "there are fewer inputs than CPUs)")
    group.add_argument("--gpus-per-worker", type=non_negative_number, metavar="G",
                       help="GPUs each worker reserves (default 1 where the cluster has GPUs, else 0)")


def refuse_without_ray(args: argparse.Namespace, parser: argparse.ArgumentParser, given: dict[str, object]) -> None:
    """A usage error for the first of `given` (option name -> value) that is set although --ray is not."""
    if args.ray is None:
        stray = [name for name, value in given.items() if value is not None]
        if stray:
            parser.error(f"{stray[0]} is for --ray")


# ---------------------------------------------------------------- options into values


def ray_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RayOptions | None:
    """The cluster and its workers as a value; None when the run stays in this process."""
    refuse_without_ray(args, parser, {"--ray-workers": args.workers, "--cpus-per-worker": args.cpus_per_worker,
                                      "--gpus-per-worker": args.gpus_per_worker})
    if args.ray is None:
        return None
    return RayOptions(address=args.ray or None, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                      gpus_per_worker=args.gpus_per_worker)



def model_specs(args: argparse.Namespace, parser: argparse.ArgumentParser,
                default_calibration: Sequence[str] = ()) -> list[ModelSpec]:
    """One ModelSpec per model the options ask for; a usage error where they do not fit together.
    `default_calibration`: what int8 is calibrated on without --calibration (the run's own inputs)."""
    names = model_names(args.model) if args.model else [None]
    if args.weights is not None and len(args.weights) != len(names):
        parser.error(f"--model {args.model or 'v1 or v2'} takes {len(names)} --weights path(s), got "
                     f"{len(args.weights)}")
    if args.labels and not Path(args.labels).is_file():
        parser.error(f"--labels {args.labels}: file not found")
    if args.calibration and args.precision != "int8":
        parser.error("--calibration is for --precision int8")
    if args.precision != "fp32" and args.half:
        parser.error(f"--precision {args.precision} is for the CPU and --half for CUDA: choose one")
    calibration: tuple[str, ...] = ()
    if args.precision == "int8":
        calibration = (args.calibration,) if args.calibration else tuple(default_calibration)
        if not calibration:
            parser.error(f"--precision int8 needs pictures like yours to calibrate on: give --calibration DIR "
                         f"(a folder of at least {MIN_DEFAULT_CALIBRATION} pictures)")
    weights = args.weights or [None] * len(names)
    specs = [resolved_spec(ModelSpec(name, weights=path, labels=args.labels, imgsz=args.imgsz, device=args.device,
                                     backend=args.backend, half=args.half, proposals=args.proposals,
                                     precision=args.precision, calibration=calibration), parser)
             for name, path in zip(names, weights)]
    if args.model is None:  # the outputs are named by the model that runs
        args.model = specs[0].name
    return specs


def resolved_spec(spec: ModelSpec, parser: argparse.ArgumentParser) -> ModelSpec:
    """`spec` completed as `frcnn.model.load` completes it (the labels, size and architecture beside a train.py
    checkpoint), the architecture of a checkpoint without them read from the checkpoint itself: every script names
    the same model before loading it. A file that is no checkpoint is one line and exit 1."""
    spec = complete_spec(spec)
    if spec.name is not None:
        return spec
    from frcnn.model import checkpoint_architecture  # PyTorch: only for a checkpoint without train.py's settings

    try:
        return dataclasses.replace(spec, name=checkpoint_architecture(spec.weights))
    except FrcnnError as error:
        parser.exit(1, f"error: {error}\n")


def detect_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> DetectOptions:
    """Threshold, classes (checked against the class names) and slicing, as one value."""
    return DetectOptions(threshold=args.threshold, classes=_classes(args, parser), slicing=slice_options(args, parser))


def slice_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SliceOptions | None:
    given = {"--slice-overlap": args.slice_overlap, "--slice-merge": args.slice_merge,
             "--slice-match": args.slice_match, "--slice-match-threshold": args.slice_match_threshold,
             "--no-full-pass": None if args.full_pass else False}
    if args.slice is None:
        stray = [name for name, value in given.items() if value is not None]
        if stray:
            parser.error(f"{stray[0]} needs --slice SIZE (or --slice auto)")
        return None
    defaults = SliceOptions()
    return SliceOptions(
        size=args.slice,
        overlap=defaults.overlap if args.slice_overlap is None else args.slice_overlap,
        merge=args.slice_merge or defaults.merge,
        match=args.slice_match or defaults.match,
        match_threshold=defaults.match_threshold if args.slice_match_threshold is None else args.slice_match_threshold,
        full_pass=args.full_pass,
    )


def draw_options(args: argparse.Namespace) -> DrawOptions:
    return DrawOptions(hide_labels=args.hide_labels, hide_conf=args.hide_conf, line_width=args.line_width)


def _classes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> frozenset[int] | None:
    if not getattr(args, "classes", None):
        return None
    labels = complete_spec(ModelSpec(weights=args.weights[0] if args.weights else None, labels=args.labels)).labels
    if labels:
        try:
            class_names = read_labels(labels)
        except FrcnnError as error:
            parser.error(str(error))
    else:
        class_names = COCO_INSTANCE_CATEGORY_NAMES
    try:
        return frozenset(resolve_classes(args.classes, class_names))
    except ValueError as error:
        parser.error(str(error))


def resolve_classes(values: Sequence[str], class_names: Sequence[str]) -> set[int]:
    """Class names (any case, '_' for space) or ids into label ids; ValueError lists the valid names. Any id the
    model predicts is accepted, one without a name too (COCO's unused ids): it is drawn and counted by its number."""
    lookup = {name.lower(): index for index, name in enumerate(class_names) if is_real_class(name)}
    ids = set()
    for value in values:
        key = value.strip().lower().replace("_", " ")
        if key.isdigit() and 0 < int(key) < len(class_names):
            ids.add(int(key))
        elif key in lookup:
            ids.add(lookup[key])
        else:
            valid = ", ".join(name for name in class_names if is_real_class(name))
            raise ValueError(f"--classes: unknown class '{value}'; valid classes: {valid}")
    return ids
