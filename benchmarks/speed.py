"""Speed of this project's detection paths against an original-style eager PyTorch loop, in one run; and, with
--profile, where v1's and v2's compute and time go, stage by stage.

    python benchmarks/speed.py                    # the full benchmark on ../shared/media (or the sample files)
    python benchmarks/speed.py --quick            # small --imgsz, one repetition: a check that it still works
    python benchmarks/speed.py --profile          # the per-stage profile (FLOPs and time) of v1 and v2
    python benchmarks/speed.py --profile --quick  # the profile at a tiny --imgsz: a check that it still works

For one picture and for a video, and for v1 and v2, the speed table times:
  reference  eager torchvision as the original scripts ran it: ToTensor, torch.no_grad, one picture at a
             time, an OpenCV mp4v writer for video (written here, independent of the project's code)
  <backend>  the project's own path (predictor.Predictor; detect_video.py for video) with each backend
Every configuration runs in its own process, so its peak resident memory is its own. Detections of each
backend are checked against the reference (rule: see `equivalent`). Prints a table and writes JSON.

The profile splits one picture's inference into the model's stages (STAGES): pre-processing, the ResNet50 body, the
FPN, the RPN, the RoI heads and post-processing. Eager PyTorch: FLOPs per stage from FlopCounterMode's per-module
counts, time from forward hooks on the stage modules. OpenVINO (fp32, bf16, int8): time from its per-layer
performance counters, each layer given to a stage by the module scope the ONNX export writes into its name
("/backbone/body/...", "/rpn/head/..."); layers OpenVINO made itself carry no scope and are shown as not attributed.
Each at 1000 and 300 proposals. It also measures the machine's peak on a large matrix product in fp32, bf16 and int8
(on the same threads), and gives each path's GFLOP/s as a share of the peak of its precision.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    SAMPLES,
    SHARED_MEDIA,
    OthersLoad,
    child_result,
    children_cpu,
    clip_of,
    default_media,
    detect_video,
    installed_backends,
    machine,
    machine_busy,
    machine_line,
    others_load,
    reference_input,
    reference_model,
    reference_predict,
    run_child,
    run_script,
    run_video_reference,
    show_and_save,
    table,
    weights_for,
)

from frcnn.core.tables import MISSING, cell
from frcnn.evaluation.agreement import agreement, equivalent

# ---------------------------------------------------------------- the speed table: one configuration (a child)


def run_image(config: dict) -> dict:
    import cv2

    from frcnn.inference.predictor import Predictor
    from frcnn.model import load

    image = cv2.imread(config["image"])
    weights = Path(config["weights"])
    start = time.perf_counter()
    if config["path"] == "reference":
        module = reference_model(config["model"], weights, config["imgsz"])
        predict = lambda: reference_predict(module, image)  # noqa: E731
    else:
        predictor = Predictor(load(model_spec(config)), threshold=0.0)

        def predict():
            (prediction,) = predictor([image])
            detections = prediction.detections
            return detections.boxes, detections.scores, detections.labels
    load_seconds = time.perf_counter() - start
    for _ in range(config["warmup"]):
        predict()
    times = []
    for _ in range(config["runs"]):
        start = time.perf_counter()
        boxes, scores, labels = predict()
        times.append(time.perf_counter() - start)
    return {"times": times, "load_seconds": load_seconds,
            "detections": {"boxes": boxes.tolist(), "scores": scores.tolist(), "labels": labels.tolist()}}


def model_spec(config: dict):
    """The project's description of the model a configuration runs."""
    from frcnn.core.specs import ModelSpec

    return ModelSpec(config["model"], weights=config["weights"], imgsz=config["imgsz"], device="cpu",
                     backend=config["path"], precision=config.get("precision", "fp32"),
                     proposals=config.get("proposals", 1000), calibration=tuple(config.get("calibration", ())))


def run_video_project(config: dict) -> dict:
    """detect_video.py as a user runs it; its JSON speed figures give the pipeline FPS (model loading excluded)."""
    options = ["--backend", config["path"], "--precision", config.get("precision", "fp32"),
               "--proposals", str(config.get("proposals", 1000))]
    if config.get("precision") == "int8":
        options += ["--calibration", config["calibration"][0]]
    if config.get("detect_every"):
        options += ["--track", "--detect-every", str(config["detect_every"])]
    out = Path(config["scratch"]) / f"video-{config['model']}-{config['path']}"
    result = detect_video(Path(config["video"]), config["model"], Path(config["weights"]), config["imgsz"],
                          config["frames"], out, options)
    return {"frames": result["frames"], "fps": result["frames_per_second"], "peak_rss_mb": result["peak_rss_mb"],
            "inference_ms_per_frame": sum(result["inference_ms_per_frame"].values())}


def run_export(config: dict) -> dict:
    """The one-time export into an empty cache, timed: what the first run with a backend waits for, once."""
    from frcnn.model import build_detector, read_checkpoint
    from frcnn.runtimes.export import cached_export

    proposals = config.get("proposals", 1000)

    def build():
        module = build_detector(config["model"], imgsz=config["imgsz"], proposals=proposals)
        module.load_state_dict(read_checkpoint(config["weights"]), strict=False)
        return module

    start = time.perf_counter()
    cached_export(build, config["model"], config["imgsz"], proposals, Path(config["weights"]), config["path"])
    return {"export_seconds": time.perf_counter() - start}


# ---------------------------------------------------------------- the profile: stages


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stage of the detector: the module that computes it (a path under the detector) and the scope the ONNX
    export gives its layers' names; a part of another stage names that stage. Without a module, a part is the rest
    of its stage once the other parts are taken out."""

    key: str
    label: str
    module: str | None = None
    scope: str | None = None
    parent: str | None = None


STAGES = (
    Stage("transform", "pre-processing (transform: normalize, resize, pad)", "transform", "/transform/"),
    Stage("backbone", "backbone (ResNet50 body)", "backbone.body", "/backbone/body/"),
    Stage("fpn", "FPN", "backbone.fpn", "/backbone/fpn/"),
    Stage("rpn", "RPN (head + proposal selection)", "rpn", "/rpn/"),
    Stage("rpn.head", "head (convs)", "rpn.head", "/rpn/head/", "rpn"),
    Stage("rpn.anchors", "anchors", "rpn.anchor_generator", "/rpn/anchor_generator/", "rpn"),
    Stage("rpn.select", "proposal selection (decode, top-k, NMS)", parent="rpn"),
    Stage("roi_heads", "RoI heads (box head + predictor + post-process)", "roi_heads", "/roi_heads/"),
    Stage("roi_heads.pool", "RoIAlign", "roi_heads.box_roi_pool", "/roi_heads/box_roi_pool/", "roi_heads"),
    Stage("roi_heads.head", "box head", "roi_heads.box_head", "/roi_heads/box_head/", "roi_heads"),
    Stage("roi_heads.predictor", "predictor", "roi_heads.box_predictor", "/roi_heads/box_predictor/", "roi_heads"),
    Stage("roi_heads.post", "detection post-process (decode, NMS)", parent="roi_heads"),
    # transform.postprocess is a method, not a module's forward: eager times it by wrapping it; in the export its
    # layers sit at the graph's top level ("/Mul"), with the few that read the picture's size.
    Stage("postprocess", "post-processing (boxes to the picture)", scope="/"),
    # Eager: the detector's own code between the stages. OpenVINO: layers OpenVINO made itself (no scope in the name).
    Stage("unattributed", "not attributed"),
)
TOP = [s for s in STAGES if s.parent is None]
TOTAL = "total"


def complete(values: dict[str, float], total: float) -> dict[str, float]:
    """Fill each stage's rest part (the stage less its measured parts) and, unless measured, the not attributed
    share (the total less the stages), so that parts sum to their stage and the stages to the total."""
    values = dict(values)
    for stage in STAGES:
        if stage.parent is not None and stage.module is None:
            measured = [s.key for s in STAGES if s.parent == stage.parent and s.key != stage.key]
            values[stage.key] = values[stage.parent] - sum(values[k] for k in measured)
    if "unattributed" not in values:
        values["unattributed"] = total - sum(values[s.key] for s in TOP if s.key != "unattributed")
    values[TOTAL] = total
    return values


def submodule(module, path: str):
    for name in path.split("."):
        module = getattr(module, name)
    return module


def eager_flops(module, tensor) -> dict[str, float]:
    """FLOPs of one forward pass per stage, as FlopCounterMode counts them (convolutions and matrix products; a
    multiply-add is 2), from its per-module totals; the total is its global count."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module([tensor])
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(module).__name__
    values = {s.key: float(counts.get(f"{root}.{s.module}", 0)) for s in STAGES if s.module}
    # What the detector counts outside its stage modules: transform.postprocess (boxes), the rest of its forward.
    values["postprocess"] = counts.get(root, 0) - sum(values[s.key] for s in TOP if s.module)
    values["unattributed"] = counts.get("Global", 0) - counts.get(root, 0)
    return complete(values, float(counts.get("Global", 0)))


class StageClock:
    """Forward pre- and post-hooks on the stage modules (and a wrapper around transform.postprocess) that add up
    each stage's seconds; also notes how many proposals reached the RoI heads."""

    def __init__(self, module):
        self.seconds: dict[str, float] = {}
        self.proposals = 0
        self._started: dict[str, float] = {}
        for stage in STAGES:
            if stage.module:
                part = submodule(module, stage.module)
                part.register_forward_pre_hook(self._start(stage.key))
                part.register_forward_hook(self._stop(stage.key))
        module.roi_heads.register_forward_pre_hook(self._count)
        postprocess = module.transform.postprocess

        def timed_postprocess(*args, **kwargs):
            self._start("postprocess")(None, None)
            try:
                return postprocess(*args, **kwargs)
            finally:
                self._stop("postprocess")(None, None, None)
        module.transform.postprocess = timed_postprocess

    def _start(self, key: str):
        def hook(_module, _inputs):
            self._started[key] = time.perf_counter()
        return hook

    def _stop(self, key: str):
        def hook(_module, _inputs, _outputs):
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - self._started.pop(key)
        return hook

    def _count(self, _module, inputs) -> None:
        self.proposals = int(len(inputs[1][0]))

    def reset(self) -> None:
        self.seconds.clear()


def profile_image(config: dict):
    """The picture as the project's model input (the same tensor eager PyTorch and the export take)."""
    import cv2

    from frcnn.core.specs import max_size_for
    from frcnn.runtimes.preprocess import input_tensor

    image = cv2.imread(config["image"])
    return input_tensor(image, config["imgsz"], max_size_for(config["imgsz"]))[0], image.shape[:2]


def run_stages_eager(config: dict) -> dict:
    """Eager PyTorch, one picture: each stage's milliseconds (every run) and FLOPs (one more run, counted)."""
    import torch

    from frcnn.model import load

    tensor, size = profile_image(config)
    module = load(model_spec({**config, "path": "torch"})).module
    clock = StageClock(module)
    runs = []
    load = OthersLoad()
    for index in range(config["warmup"] + config["runs"]):
        if index == config["warmup"]:
            load = OthersLoad()
        clock.reset()
        start = time.perf_counter()
        with torch.no_grad():
            (output,) = module([tensor])
        total = time.perf_counter() - start
        if index >= config["warmup"]:
            runs.append(complete({k: 1000 * v for k, v in clock.seconds.items()}, 1000 * total))
    others = load.others()
    flops = eager_flops(module, tensor)
    return {"runs_ms": runs, "others": others, "flops": flops, "proposals_used": clock.proposals,
            "detections": len(output["boxes"]), "input": list(tensor.shape), "picture": list(size),
            "threads": torch.get_num_threads()}


def stage_of_layer(name: str) -> str:
    """The stage a layer of the exported graph belongs to, by the module scope at the start of its name (the
    deepest that matches); a name without a scope is a layer OpenVINO made itself."""
    if not name.startswith("/"):
        return "unattributed"
    scoped = [s for s in STAGES if s.scope and name.startswith(s.scope)]
    return max(scoped, key=lambda s: len(s.scope)).key


LOW_PRECISION_KERNELS = ("bf16", "i8", "u8")  # the end of OpenVINO's exec_type ("brgconv_avx512_1x1_bf16", "..._I8")


def layer_times(profiling: list) -> tuple[dict[str, float], dict[str, float], float]:
    """Milliseconds of the last inference per stage (a part's layers count in its stage too) and, of these, in
    low-precision kernels; and the sum over all layers."""
    own: dict[str, float] = {}
    low: dict[str, float] = {}
    for layer in profiling:
        ms = layer.real_time.total_seconds() * 1000
        key = stage_of_layer(layer.node_name)
        own[key] = own.get(key, 0.0) + ms
        if layer.exec_type.lower().rsplit("_", 1)[-1] in LOW_PRECISION_KERNELS:
            low[key] = low.get(key, 0.0) + ms
    summed = sum(own.values())

    def with_parts(values: dict[str, float]) -> dict[str, float]:
        rolled = {s.key: values.get(s.key, 0.0) for s in STAGES if s.module or s.scope or s.key == "unattributed"}
        for stage in STAGES:
            if stage.parent and stage.key in rolled:
                rolled[stage.parent] += rolled[stage.key]
        return rolled
    return with_parts(own), with_parts(low), summed


def run_stages_openvino(config: dict) -> dict:
    """OpenVINO, one picture: per-layer counters summed per stage, scaled to the inference's wall time (layer
    timings do not add up exactly to it); and the project's own runner timed on the same picture, without counters."""
    import openvino

    from frcnn.model import load
    from frcnn.runtimes.export import cached_export
    from frcnn.runtimes.quantize import cached_int8

    tensor, size = profile_image(config)
    start = time.perf_counter()
    model = load(model_spec({**config, "path": "openvino"}))  # exports (and quantizes) once: cached
    load_seconds = time.perf_counter() - start

    def no_export():
        raise RuntimeError("the model's load should have left its export in the cache")

    graph = cached_export(no_export, config["model"], config["imgsz"], config["proposals"], Path(config["weights"]),
                          "openvino")
    if config["precision"] == "int8":
        graph = cached_int8(graph, tuple(config["calibration"]), config["imgsz"])
    # As frcnn.runtimes.export.OpenVinoRunner compiles it, with the performance counters on.
    hint = "bf16" if config["precision"] == "bf16" else "f32"
    compiled = openvino.Core().compile_model(str(graph), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                                 "INFERENCE_PRECISION_HINT": hint, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    array = tensor.numpy()
    runs, low_runs, layer_sums, project_ms = [], [], [], []
    load = OthersLoad()
    for index in range(config["warmup"] + config["runs"]):
        if index == config["warmup"]:
            load = OthersLoad()
        start = time.perf_counter()
        request.infer({0: array})
        wall = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        (output,) = model([tensor])
        runner = 1000 * (time.perf_counter() - start)
        if index < config["warmup"]:
            continue
        profiling = request.get_profiling_info()
        stages, low, summed = layer_times(profiling)
        scale = wall / summed if summed else 0.0
        runs.append(complete({k: v * scale for k, v in stages.items()}, wall))
        stages, low = complete(stages, summed), complete(low, sum(low[s.key] for s in TOP))
        low_runs.append({k: low[k] / v for k, v in stages.items() if v > 0})
        layer_sums.append(summed)
        project_ms.append(runner)
    # The costliest layers of the last run, to see which kernels (exec_type) ran where.
    costliest = [{"name": layer.node_name, "type": layer.node_type, "exec_type": layer.exec_type,
                  "stage": stage_of_layer(layer.node_name), "ms": layer.real_time.total_seconds() * 1000}
                 for layer in sorted(profiling, key=lambda layer: -layer.real_time.total_seconds())[:20]]
    return {"runs_ms": runs, "others": load.others(), "costliest_layers": costliest, "low_precision_share": low_runs,
            "layer_sum_ms": layer_sums,
            "project_runner_ms": project_ms, "detections": len(output["boxes"]), "load_seconds": load_seconds,
            "graph": graph.name, "input": list(tensor.shape), "picture": list(size),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS"))}


def run_peak(config: dict) -> dict:
    """The machine's peak: a square matrix product in fp32, bf16 and int8 (torch._int_mm) on PyTorch's threads."""
    import torch

    from frcnn.runtimes.backends import cpu_has_bf16

    n = config["matmul"]
    flop = 2 * n ** 3
    result: dict = {"n": n, "threads": torch.get_num_threads(), "paths": {}, "notes": []}
    generator = torch.Generator().manual_seed(0)
    for precision in ("fp32", "bf16", "int8"):
        if precision == "bf16" and not cpu_has_bf16():
            result["notes"].append("bf16: the CPU has no bf16 instructions (PyTorch would emulate them); left out")
            continue
        if precision == "int8":
            a = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator)
            b = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=generator)
            product = getattr(torch, "_int_mm", None)
            if product is None:
                result["notes"].append("int8: this PyTorch has no torch._int_mm; left out")
                continue
            multiply = lambda: product(a, b)  # noqa: E731
        else:
            dtype = torch.float32 if precision == "fp32" else torch.bfloat16
            a, b = (torch.rand(n, n, generator=generator).to(dtype) for _ in range(2))
            multiply = lambda: a @ b  # noqa: E731
        try:
            multiply()
        except RuntimeError as error:
            result["notes"].append(f"{precision}: {str(error).splitlines()[0]}; left out")
            continue
        times, load = [], OthersLoad()
        for _ in range(config["runs"]):
            start = time.perf_counter()
            multiply()
            times.append(time.perf_counter() - start)
        result["paths"][precision] = {"min_s": min(times), "median_s": statistics.median(times),
                                      "gflop_per_s": flop / min(times) / 1e9, "others": load.others()}
    return result


CHILDREN = {"export": run_export, "image": run_image, "stages-eager": run_stages_eager,
            "stages-openvino": run_stages_openvino, "peak": run_peak}


def child_main(config: dict) -> None:
    kind = config["kind"]
    if kind == "flops":
        import cv2

        module = reference_model(config["model"], Path(config["weights"]), config["imgsz"])
        result = {"gflop": eager_flops(module, reference_input(cv2.imread(config["image"])))[TOTAL] / 1e9}
    elif kind == "video":
        result = run_video_reference(config) if config["path"] == "reference" else run_video_project(config)
    else:
        result = CHILDREN[kind](config)
    child_result(result)


# ---------------------------------------------------------------- the parent: orchestration and checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="imgsz 320, one run, 3 video frames (with --profile: imgsz 64, 1000 proposals, fp32)")
    parser.add_argument("--profile", action="store_true", help="the per-stage profile instead of the speed table")
    parser.add_argument("--imgsz", type=int, default=800)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per picture configuration")
    parser.add_argument("--video-frames", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["v1", "v2"])
    parser.add_argument("--backends", nargs="+", help="default: every installed one")
    parser.add_argument("--image", type=Path, default=default_media("traffic.jpg", SAMPLES / "coffee.jpg"))
    parser.add_argument("--video", type=Path, help="default: scooters.mp4 from the shared media (or the sample clip); "
                                                   "--tracked-video: its 800-px-high copy, made once in the cache")
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--tracked-video", action="store_true",
                        help="instead of the table: the video end to end with --track --detect-every N, OpenVINO "
                             "at each of --precisions (default int8) and --proposals (default 300), against the "
                             "original loop; on an 800-px copy of scooters.mp4 unless --video is given")
    parser.add_argument("--detect-every", type=int, default=2, help="--tracked-video: the model's keyframe interval")
    parser.add_argument("--video-runs", type=int, default=3, help="--tracked-video: runs per configuration")
    parser.add_argument("--precisions", nargs="+", choices=["int8", "bf16"],
                        help="lower precisions to measure with OpenVINO (bf16 only where the CPU has it; "
                             "default: int8 bf16, none with --profile --quick)")
    parser.add_argument("--proposals", nargs="+", type=int,
                        help="region proposals per picture to measure (default: 1000 300; 1000 with --profile "
                             "--quick)")
    parser.add_argument("--matmul", type=int, default=4096, help="--profile: the side of the peak's square matrices")
    parser.add_argument("--calibration", default=str(SHARED_MEDIA / "seed"),
                        help="the folder of pictures int8 is calibrated on (default: the write-up's photos)")
    parser.add_argument("--json-out", type=Path, help="default: outputs/benchmarks/speed.json (profile.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    if args.tracked_video:
        return tracked_video_main(args)
    args.video = args.video or default_media("scooters.mp4", SAMPLES / "sample.mp4")
    quick_profile = args.quick and args.profile
    if args.quick:
        args.imgsz, args.runs, args.video_frames = (64, 1, 3) if args.profile else (320, 1, 3)
        args.matmul = min(args.matmul, 512)
    args.precisions = args.precisions if args.precisions is not None else [] if quick_profile else ["int8", "bf16"]
    args.proposals = args.proposals or ([1000] if quick_profile else [1000, 300])
    args.json_out = args.json_out or ROOT / "outputs" / "benchmarks" / f"{'profile' if args.profile else 'speed'}.json"
    if not Path(args.calibration).is_dir():
        args.calibration = str(SAMPLES / "coffee.jpg")
    backends = args.backends or installed_backends()
    scratch = Path(tempfile.mkdtemp(prefix="frcnn-bench-"))
    # A fresh export cache, so the export time is measured in this run.
    env = {**os.environ, "FRCNN_CACHE": str(scratch / "cache")}
    try:
        if args.profile:
            report = profile(args, backends, scratch, env)
            text = format_profile(report)
        else:
            report = speed_table(args, backends, scratch, env)
            text = format_table(report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    show_and_save(text, report, args.json_out)
    failed = [r for r in report.get("results", []) if "check" in r and not r["check"]["equivalent"]]
    for row in failed:
        print(f"NOT EQUIVALENT: {row['model']} {row['path']}: {row['check']}", file=sys.stderr)
    return 1 if failed else 0


def speed_table(args: argparse.Namespace, backends: list[str], scratch: Path, env: dict) -> dict:
    report = {"machine": machine(), "imgsz": args.imgsz, "runs": args.runs, "warmup": 1,
              "image": str(args.image), "video": str(args.video), "video_frames": args.video_frames,
              "matching_rule": " ".join(equivalent.__doc__.split()),
              "results": []}
    report["help_seconds"] = help_seconds(1 if args.quick else 5)
    measure(args, backends, scratch, env, report)
    for row in report["results"]:
        if not args.skip_video:
            ref = next(r for r in report["results"] if r["model"] == row["model"] and r["path"] == "reference")
            row["video_speedup"] = round(row["video_fps"] / ref["video_fps"], 2)
    return report


def measure(args: argparse.Namespace, backends: list[str], scratch: Path, env: dict, report: dict) -> None:
    """Every configuration, one child process each; rows are added to report["results"]."""
    for name in args.models:
        weights, kind = weights_for(name, scratch)
        report[f"{name}_weights"] = kind
        base = {"model": name, "weights": str(weights), "imgsz": args.imgsz, "image": str(args.image),
                "video": str(args.video), "frames": args.video_frames, "warmup": 1, "runs": args.runs,
                "scratch": str(scratch)}
        report[f"{name}_gflop"] = round(run_child(__file__, {**base, "kind": "flops"}, env)["gflop"], 1)
        reference = eager = None
        for path in ["reference", "torch", *(b for b in backends if b != "torch")]:
            row = {"model": name, "path": path, "export_s": None}
            if path not in ("reference", "torch"):
                # Export first, in a process of its own, so the timed runs below find the cache warm.
                export = run_child(__file__, {**base, "kind": "export", "path": path}, env)
                row.update(export_s=export.get("export_seconds"), export_peak_rss_mb=round(export["peak_rss_mb"]))
            image = run_child(__file__, {**base, "kind": "image", "path": path}, env)
            row.update(min_s=min(image["times"]), median_s=statistics.median(image["times"]),
                       peak_rss_mb=round(image["peak_rss_mb"]))
            if path == "reference":
                reference = image
            elif path == "torch":
                # Informational: equal at sizes where the project does not pre-shrink (scale >= 0.5).
                eager = image
                row["check_original"] = equivalent(reference["detections"], image["detections"])
            else:
                row["check"] = equivalent(eager["detections"], image["detections"])
            row["speedup"] = round(statistics.median(reference["times"]) / row["median_s"], 2)
            row["gflop_per_s"] = round(report[f"{name}_gflop"] / row["median_s"], 1)
            if not args.skip_video:
                video = run_child(__file__, {**base, "kind": "video", "path": path}, env)
                row.update(video_fps=round(video["fps"], 3), video_frames=video["frames"],
                           video_peak_rss_mb=round(video["peak_rss_mb"]))
            report["results"].append(row)
            print(format_row(row), file=sys.stderr, flush=True)
            if path == "openvino":
                fp32 = image
                for variant in precision_rows(args, base, env, reference, fp32, report[f"{name}_gflop"]):
                    report["results"].append(variant)
                    print(format_row(variant), file=sys.stderr, flush=True)


def lower_precisions(args: argparse.Namespace) -> list[str]:
    """fp32 and the lower precisions asked for that this CPU computes (a note on stderr for the others)."""
    from frcnn.runtimes.backends import cpu_has_bf16

    kept = ["fp32"]
    for precision in args.precisions:
        if precision == "bf16" and not cpu_has_bf16():
            print("bf16: this CPU does not compute in bf16; left out", file=sys.stderr)
            continue
        kept.append(precision)
    return kept


def precision_rows(args, base: dict, env: dict, reference: dict, fp32: dict, gflop: float) -> list[dict]:
    """OpenVINO at each lower precision and number of proposals, against the reference and fp32 OpenVINO."""
    rows = []
    for precision in lower_precisions(args):
        for proposals in args.proposals:
            if (precision, proposals) == ("fp32", 1000):
                continue  # the openvino row itself
            config = {**base, "path": "openvino", "precision": precision, "proposals": proposals,
                      "calibration": [args.calibration]}
            label = f"openvino {precision}" + (f" p{proposals}" if proposals != 1000 else "")
            row = {"model": base["model"], "path": label, "export_s": None}
            if precision == "int8":  # quantize first, in a process of its own, so the timed runs find it cached
                run_child(__file__, {**config, "kind": "image", "runs": 1, "warmup": 0}, env)
            image = run_child(__file__, {**config, "kind": "image"}, env)
            row.update(min_s=min(image["times"]), median_s=statistics.median(image["times"]),
                       peak_rss_mb=round(image["peak_rss_mb"]),
                       speedup=round(statistics.median(reference["times"]) / statistics.median(image["times"]), 2),
                       gflop_per_s=round(gflop / statistics.median(image["times"]), 1),
                       agreement=agreement(fp32["detections"], image["detections"]))
            if not args.skip_video:
                video = run_child(__file__, {**config, "kind": "video"}, env)
                row.update(video_fps=round(video["fps"], 3), video_frames=video["frames"],
                           video_peak_rss_mb=round(video["peak_rss_mb"]))
            rows.append(row)
    return rows


def help_seconds(runs: int = 5) -> dict:
    """How long `--help` takes in each script: what a user waits before any answer."""
    timings = {}
    for script in ("detect_image.py", "detect_video.py", "evaluate.py"):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run_script(script, ["--help"])
            times.append(time.perf_counter() - start)
        timings[script] = {"min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}
    return timings


def format_row(row: dict) -> str:
    return f"{row['model']} {row['path']}: median {row['median_s']:.3f} s" + (
        f", video {row['video_fps']:.3f} fps" if "video_fps" in row else "")


def format_table(report: dict) -> str:
    header = ["model", "path", "min s", "median s", "speed-up", "GFLOP/s", "peak MB", "export s (MB)", "video fps",
              "video x", "video MB", "detections vs eager torch (torch: vs reference)"]
    rows = []
    for r in report["results"]:
        check = r.get("check") or r.get("check_original")
        verdict = None if check is None else (
            f"{'same' if check['equivalent'] else 'DIFFERENT'} "
            f"({check['paired']} of {check['reference_count']} paired, "
            f"box ≤{check['max_box_diff_px']:.3g} px, score ≤{check['max_score_diff']:.1e})")
        if "agreement" in r:
            a = r["agreement"]
            verdict = (f"vs fp32 openvino: {a['matched']} of {a['reference_shown']} shown boxes matched"
                       + (f", mean IoU {a['mean_iou']:.3f}" if a["mean_iou"] is not None else ""))
        rows.append([r["model"], r["path"], f"{r['min_s']:.3f}", f"{r['median_s']:.3f}", f"{r['speedup']:.2f}x",
                     f"{r['gflop_per_s']:.0f}", str(r["peak_rss_mb"]),
                     f"{r['export_s']:.0f} ({r['export_peak_rss_mb']})" if r["export_s"] else None,
                     cell(r.get("video_fps"), ".3f"), cell(r.get("video_speedup"), ".2f", "x"),
                     r.get("video_peak_rss_mb"), verdict])
    models = ", ".join(f"{m}: {report[m + '_gflop']} GFLOP, {report[m + '_weights']} weights"
                       for m in ("v1", "v2") if m + "_gflop" in report)
    helps = ", ".join(f"{name} {t['median_s']:.2f} s" for name, t in report.get("help_seconds", {}).items())
    return (f"{machine_line(report['machine'])}\n"
            f"imgsz {report['imgsz']}, {report['runs']} runs after 1 warm-up; {models}\n{table(header, rows)}"
            + (f"\n--help answers in (median): {helps}" if helps else ""))


# ---------------------------------------------------------------- the parent: the tracked video


REFERENCE_VIDEO_FRAMES = 10  # the original loop detects every frame: its pace per frame does not change along a clip


def tracked_video_main(args: argparse.Namespace) -> int:
    """--tracked-video: a table of frames per second (min and median of --video-runs), and JSON."""
    if args.quick:
        args.imgsz, args.video_frames, args.video_runs = 320, 6, 1
    args.precisions = args.precisions or ["int8"]
    args.proposals = args.proposals or [300]
    args.video = args.video or clip_of(800)
    if not Path(args.calibration).is_dir():
        args.calibration = str(SAMPLES / "coffee.jpg")
    args.json_out = args.json_out or ROOT / "outputs" / "benchmarks" / "tracked_video.json"
    scratch = Path(tempfile.mkdtemp(prefix="frcnn-bench-"))
    env = {**os.environ, "FRCNN_CACHE": str(scratch / "cache")}
    try:
        report = tracked_video(args, scratch, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    show_and_save(format_tracked_video(report), report, args.json_out)
    return 0


def tracked_video(args: argparse.Namespace, scratch: Path, env: dict) -> dict:
    """For each model: the original-style loop (every frame detected, no tracking) and detect_video.py --track
    --detect-every N with OpenVINO at each precision and proposal count, each --video-runs times; frames per second
    end to end (model loading excluded), the others' load during each run."""
    report = {"machine": machine(), "imgsz": args.imgsz, "video": str(args.video), "frames": args.video_frames,
              "reference_frames": min(args.video_frames, REFERENCE_VIDEO_FRAMES), "runs": args.video_runs,
              "detect_every": args.detect_every, "calibration": args.calibration, "results": []}
    for name in args.models:
        weights, kind = weights_for(name, scratch)
        report[f"{name}_weights"] = kind
        base = {"kind": "video", "model": name, "weights": str(weights), "imgsz": args.imgsz,
                "image": str(args.image), "video": str(args.video), "frames": args.video_frames,
                "scratch": str(scratch), "calibration": [args.calibration]}
        configs = [("reference", {"path": "reference", "frames": report["reference_frames"]})]
        configs += [(f"openvino {precision} p{proposals} every {args.detect_every}",
                     {"path": "openvino", "precision": precision, "proposals": proposals,
                      "detect_every": args.detect_every})
                    for precision in args.precisions for proposals in args.proposals]
        reference_fps = None
        for label, extra in configs:
            config = {**base, **extra}
            if extra.get("precision") == "int8":  # quantize first, so the timed runs find the int8 model cached
                run_child(__file__, {**config, "kind": "image", "runs": 1, "warmup": 0}, env)
            runs = [timed_child(config, env) for _ in range(args.video_runs)]
            fps = [run["fps"] for run in runs]
            row = {"model": name, "path": label, "frames": runs[0]["frames"], "min_fps": min(fps),
                   "median_fps": statistics.median(fps), "fps": fps,
                   "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs)),
                   "others_cores": [round(run["others_cores"], 2) for run in runs]}
            if "inference_ms_per_frame" in runs[0]:
                row["inference_ms_per_frame"] = statistics.median(run["inference_ms_per_frame"] for run in runs)
            reference_fps = reference_fps or row["median_fps"]
            row["speedup"] = round(row["median_fps"] / reference_fps, 2)
            report["results"].append(row)
            print(f"{name} {label}: median {row['median_fps']:.3f} frames/s", file=sys.stderr, flush=True)
    return report


def timed_child(config: dict, env: dict) -> dict:
    """One run of a video configuration, with the cores other processes kept busy meanwhile."""
    before, cpu, start = machine_busy(), children_cpu(), time.perf_counter()
    result = run_child(__file__, config, env)
    result["others_cores"] = others_load(before, children_cpu() - cpu, time.perf_counter() - start)["cores"]
    return result


def format_tracked_video(report: dict) -> str:
    header = ["model", "path", "frames", "min fps", "median fps", "x reference", "model ms per frame", "peak MB",
              "others' cores"]
    rows = [[r["model"], r["path"], r["frames"], f"{r['min_fps']:.3f}", f"{r['median_fps']:.3f}",
             f"{r['speedup']:.2f}x", cell(r.get("inference_ms_per_frame"), ".0f"), r["peak_rss_mb"],
             " ".join(f"{c:.2f}" for c in r["others_cores"])] for r in report["results"]]
    models = ", ".join(f"{m}: {report[m + '_weights']} weights" for m in ("v1", "v2") if m + "_weights" in report)
    return (f"{machine_line(report['machine'])}\n"
            f"{Path(report['video']).name} at --imgsz {report['imgsz']}, {report['runs']} runs each; the reference "
            f"detects every frame ({report['reference_frames']} frames a run), the project --track --detect-every "
            f"{report['detect_every']}; {models}\n{table(header, rows)}")


# ---------------------------------------------------------------- the parent: the profile


def profile(args: argparse.Namespace, backends: list[str], scratch: Path, env: dict) -> dict:
    """Every (model, path, precision, proposals) of the profile, one child process each, and the machine's peak."""
    report = {"machine": machine(), "imgsz": args.imgsz, "runs": args.runs, "warmup": 1, "image": str(args.image),
              "proposals": args.proposals, "calibration": args.calibration, "weights": {}, "configs": [],
              "stages": [dataclasses.asdict(stage) for stage in STAGES], "notes": []}
    report["peak"] = run_child(__file__, {"kind": "peak", "matmul": args.matmul, "runs": max(3, args.runs)}, env)
    report["notes"] += report["peak"]["notes"]
    precisions = lower_precisions(args) if "openvino" in backends else []
    if "openvino" not in backends:
        report["notes"].append("OpenVINO is not installed (or not asked for): eager PyTorch only")
    for name in args.models:
        weights, kind = weights_for(name, scratch)
        report["weights"][name] = kind
        base = {"model": name, "weights": str(weights), "imgsz": args.imgsz, "image": str(args.image),
                "warmup": 1, "runs": args.runs, "calibration": [args.calibration]}
        for proposals in args.proposals:
            result = run_child(__file__, {**base, "kind": "stages-eager", "proposals": proposals}, env)
            report["configs"].append({"model": name, "path": "eager", "precision": "fp32", "proposals": proposals,
                                      **result})
            print(f"{name} eager p{proposals}: {median_of(result['runs_ms'], TOTAL):.0f} ms", file=sys.stderr,
                  flush=True)
        for precision in precisions:
            for proposals in args.proposals:
                config = {**base, "kind": "stages-openvino", "precision": precision, "proposals": proposals}
                result = run_child(__file__, config, env)
                report["configs"].append({"model": name, "path": "openvino", "precision": precision,
                                          "proposals": proposals, **result})
                print(f"{name} openvino {precision} p{proposals}: {median_of(result['runs_ms'], TOTAL):.0f} ms",
                      file=sys.stderr, flush=True)
    summarize_profile(report)
    return report


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def summarize_profile(report: dict) -> None:
    """Each configuration's median milliseconds per stage, its FLOPs (eager's, for the same model and proposals:
    the exported graph computes the same), and its rate against the peak of its precision."""
    peak = {precision: path["gflop_per_s"] for precision, path in report["peak"]["paths"].items()}
    flops = {(c["model"], c["proposals"]): c["flops"] for c in report["configs"] if c["path"] == "eager"}
    for config in report["configs"]:
        runs = config["runs_ms"]
        # The run of the median total, whole: medians taken stage by stage would not add up to a total.
        config["ms"] = sorted(runs, key=lambda run: run[TOTAL])[(len(runs) - 1) // 2]
        config["min_ms"] = min(run[TOTAL] for run in runs)
        config["gflop"] = {key: value / 1e9 for key, value in flops[(config["model"], config["proposals"])].items()}
        config["gflop_per_s"] = {key: config["gflop"][key] / (config["ms"][key] / 1000)
                                 for key in config["ms"] if config["ms"][key] > 0 and config["gflop"].get(key)}
        config["peak_gflop_per_s"] = peak.get(config["precision"])
        if config["path"] == "openvino":
            shares = config["low_precision_share"]
            config["low_precision"] = {key: statistics.median(share.get(key, 0.0) for share in shares)
                                       for key in shares[0]}
        config["proposals_used"] = config.get("proposals_used") or flops_config(report, config).get("proposals_used")


def flops_config(report: dict, config: dict) -> dict:
    """The eager configuration of the same model and proposals."""
    return next(c for c in report["configs"] if c["path"] == "eager" and c["model"] == config["model"]
                and c["proposals"] == config["proposals"])


def label_of(config: dict) -> str:
    return ("eager" if config["path"] == "eager" else f"OV {config['precision']}") + f" p{config['proposals']}"


def stage_label(stage: Stage) -> str:
    return f"  - {stage.label}" if stage.parent else stage.label


def format_profile(report: dict) -> str:
    configs = report["configs"]
    models = list(dict.fromkeys(c["model"] for c in configs))
    eager = [c for c in configs if c["path"] == "eager"]
    out = [machine_line(report["machine"]),
           f"{report['image']}, imgsz {report['imgsz']}; median of {report['runs']} runs after 1 warm-up; weights: "
           + ", ".join(f"{m} {k}" for m, k in report["weights"].items())]

    out += ["", "GFLOP per stage (FlopCounterMode: convolutions and matrix products, a multiply-add = 2 FLOP)"]
    header = ["stage", *(f"{c['model']} p{c['proposals']}" for c in eager)]
    rows = [[stage_label(s), *(cell(c["gflop"][s.key], ".1f") for c in eager)] for s in STAGES]
    rows.append(["total", *(cell(c["gflop"][TOTAL], ".1f") for c in eager)])
    rows.append(["proposals reaching the RoI heads", *(str(c["proposals_used"]) for c in eager)])
    rows.append(["detections", *(str(c["detections"]) for c in eager)])
    out.append(table(header, rows))

    for model in models:
        mine = [c for c in configs if c["model"] == model]
        out += ["", f"{model}: milliseconds per stage in the run of the median total (OpenVINO: its layer counters "
                    f"per stage, scaled to the inference's wall time)"]
        header = ["stage", *(label_of(c) for c in mine)]
        rows = [[stage_label(s), *(cell(c["ms"][s.key], ".0f") for c in mine)] for s in STAGES]
        rows.append(["total (median)", *(cell(c["ms"][TOTAL], ".0f") for c in mine)])
        rows.append(["total (min)", *(cell(c["min_ms"], ".0f") for c in mine)])
        rows.append(["the project's runner, no counters (median)",
                     *(cell(statistics.median(c["project_runner_ms"]), ".0f") if "project_runner_ms" in c else None
                       for c in mine)])
        rows.append(["cores other processes kept busy", *(f"{c['others']['cores']:.2f}" for c in mine)])
        rows.append(["not attributed, share of the total",
                     *(cell(c["ms"]["unattributed"] / c["ms"][TOTAL], ".1%") for c in mine)])
        out.append(table(header, rows))

        lowered = [c for c in mine if c["path"] == "openvino" and c["precision"] != "fp32"]
        if lowered:
            out += ["", f"{model}: share of each stage's time in {'/'.join(sorted({c['precision'] for c in lowered}))}"
                        f" kernels (OpenVINO's exec_type)"]
            rows = [[stage_label(s), *(cell(c["low_precision"].get(s.key), ".0%") for c in lowered)]
                    for s in STAGES if s.key != "unattributed"]
            out.append(table(["stage", *(label_of(c) for c in lowered)], rows))

        out += ["", f"{model}: GFLOP/s per stage, and the share of the peak of the path's precision"]
        heavy = [s for s in STAGES if s.key in ("backbone", "fpn", "rpn.head", "roi_heads.head")]

        def rate(config: dict, key: str) -> str | None:
            value = config["gflop_per_s"].get(key)
            if value is None:
                return None
            peak = config["peak_gflop_per_s"]
            return f"{value:.0f}" + (f" ({value / peak:.0%})" if peak else "")
        rows = [[stage_label(s), *(rate(c, s.key) for c in mine)] for s in heavy]
        rows.append(["whole picture", *(rate(c, TOTAL) for c in mine)])
        out.append(table(["stage", *(label_of(c) for c in mine)], rows))

    peak = report["peak"]
    out += ["", f"peak: a {peak['n']}x{peak['n']} matrix product on {peak['threads']} threads (PyTorch)"]
    rows = [[precision, f"{p['min_s']:.3f}", f"{p['median_s']:.3f}", f"{p['gflop_per_s']:.0f}",
             f"{p['others']['cores']:.2f}"] for precision, p in peak["paths"].items()]
    out.append(table(["precision", "min s", "median s", "GFLOP/s (int8: GOP/s), best", "others' cores"], rows))
    out += [f"note: {note}" for note in report["notes"]]
    out.append(f"{MISSING}: not measured or not applicable")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
