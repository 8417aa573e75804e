"""Speed of this project's detection paths against an original-style eager PyTorch loop, in one run.

    python benchmarks/speed.py            # the full benchmark on ../shared/media (or the sample files)
    python benchmarks/speed.py --quick    # small --imgsz, one repetition: a check that it still works

For one picture and for a video, and for v1 and v2, it times:
  reference  eager torchvision as the original scripts ran it: ToTensor, torch.no_grad, one picture at a
             time, an OpenCV mp4v writer for video (written here, independent of the project's code)
  <backend>  the project's own path (predictor.Predictor; detect_video.py for video) with each backend
Every configuration runs in its own process, so its peak resident memory is its own. Detections of each
backend are checked against the reference (rule: see `equivalent`). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import SHARED_MEDIA, default_media, machine, machine_line  # noqa: E402

from frcnn.evaluation.agreement import agreement, equivalent  # noqa: E402

# ---------------------------------------------------------------- one configuration (a child process)


def seeded_weights(name: str, folder: Path) -> Path:
    """Seeded random weights with one class boosted (detections exist; speed does not depend on values)."""
    from frcnn.synthetic.checkpoints import detector_state, save_checkpoint

    path = folder / f"{name}-seeded.pth"
    if not path.exists():
        save_checkpoint(path, detector_state(name))
    return path


def weights_for(name: str, folder: Path) -> tuple[Path, str]:
    """The official COCO weights when they are cached here, else seeded random ones."""
    from frcnn.model import official_weights_path

    official = official_weights_path(name)
    if official.exists():
        return official, "COCO"
    return seeded_weights(name, folder), "seeded random"


def reference_model(name: str, weights: Path, imgsz: int):
    """torchvision's builder and the checkpoint, nothing of the project's loading path."""
    import torch
    import torchvision

    builder = {"v1": torchvision.models.detection.fasterrcnn_resnet50_fpn,
               "v2": torchvision.models.detection.fasterrcnn_resnet50_fpn_v2}[name]
    module = builder(weights=None, weights_backbone=None, min_size=imgsz, max_size=round(imgsz * 1333 / 800))
    # Built with plain batch norm; torchvision's released v1 freezes it, which computes the same in eval mode.
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=False)
    return module.eval()


def reference_predict(module, image_bgr):
    """As the original scripts did: BGR→RGB, ToTensor, no_grad, one picture."""
    import cv2
    import torch
    from torchvision import transforms

    tensor = transforms.ToTensor()(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
    with torch.no_grad():
        output = module([tensor])[0]
    return output["boxes"].numpy(), output["scores"].numpy(), output["labels"].numpy()


def run_image(config: dict) -> dict:
    import cv2

    from frcnn.core.specs import ModelSpec
    from frcnn.inference.predictor import Predictor
    from frcnn.model import load

    image = cv2.imread(config["image"])
    weights = Path(config["weights"])
    start = time.perf_counter()
    if config["path"] == "reference":
        module = reference_model(config["model"], weights, config["imgsz"])
        predict = lambda: reference_predict(module, image)  # noqa: E731
    else:
        predictor = Predictor(load(ModelSpec(config["model"], weights=str(weights), imgsz=config["imgsz"], device="cpu",
                                             backend=config["path"], precision=config.get("precision", "fp32"),
                                             proposals=config.get("proposals", 1000),
                                             calibration=tuple(config.get("calibration", ())))), threshold=0.0)

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


def run_flops(config: dict) -> dict:
    """Floating-point operations of one eager forward pass (multiply and add counted apart)."""
    import cv2
    from torch.utils.flop_counter import FlopCounterMode

    module = reference_model(config["model"], Path(config["weights"]), config["imgsz"])
    with FlopCounterMode(display=False) as counter:
        reference_predict(module, cv2.imread(config["image"]))
    return {"gflop": counter.get_total_flops() / 1e9}


def run_video_reference(config: dict) -> dict:
    """The original-style video loop: read, ToTensor, no_grad model, draw, mp4v write; FPS over the loop."""
    import cv2
    import numpy as np

    module = reference_model(config["model"], Path(config["weights"]), config["imgsz"])
    capture = cv2.VideoCapture(config["video"])
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    output = Path(config["scratch"]) / f"reference_{config['model']}.mp4"
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames = 0
    start = time.perf_counter()
    while frames < config["frames"]:
        ok, frame = capture.read()
        if not ok:
            break
        boxes, scores, labels = reference_predict(module, frame)
        for box in boxes[scores >= 0.5].astype(np.int32):
            cv2.rectangle(frame, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), (0, 0, 255), 2)
        writer.write(frame)
        frames += 1
    elapsed = time.perf_counter() - start
    writer.release()
    return {"frames": frames, "fps": frames / elapsed}


def run_video_project(config: dict) -> dict:
    """detect_video.py as a user runs it; its own report gives the pipeline FPS (model loading excluded)."""
    command = [sys.executable, str(ROOT / "detect_video.py"), "--input", config["video"], "--model", config["model"],
               "--weights", config["weights"], "--imgsz", str(config["imgsz"]), "--backend", config["path"],
               "--max-frames", str(config["frames"]), "--output", config["scratch"], "--device", "cpu",
               "--precision", config.get("precision", "fp32"), "--proposals", str(config.get("proposals", 1000))]
    if config.get("precision") == "int8":
        command += ["--calibration", config["calibration"][0]]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("speed:"))
    fps = pipeline_fps(line)
    frames = int(next(line for line in result.stdout.splitlines() if " frames -> " in line).split()[0])
    return {"frames": frames, "fps": fps, "peak_rss_mb": _children_peak_rss_mb()}


def pipeline_fps(summary: str) -> float:
    """The whole pipeline's frames per second from detect_video.py's speed line (frames/s or s/frame)."""
    value, unit = summary.rsplit("whole pipeline ", 1)[1].split()[:2]
    return float(value) if unit == "frames/s" else 1.0 / float(value)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_export(config: dict) -> dict:
    """Load with an empty cache: the one-time export, timed by the project's own report on stderr."""
    from frcnn.core.specs import ModelSpec
    from frcnn.model import load

    load(ModelSpec(config["model"], weights=config["weights"], imgsz=config["imgsz"], device="cpu",
                   backend=config["path"]))
    return {}


def child_main(config: dict) -> None:
    if config["kind"] == "export":
        result = run_export(config)
    elif config["kind"] == "flops":
        result = run_flops(config)
    elif config["kind"] == "image":
        result = run_image(config)
    elif config["path"] == "reference":
        result = run_video_reference(config)
    else:
        result = run_video_project(config)
    result.setdefault("peak_rss_mb", _peak_rss_mb())
    print(json.dumps(result))


# ---------------------------------------------------------------- the parent: orchestration and checks


def run_child(config: dict, env: dict) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], capture_output=True,
                               text=True, env=env)
    if completed.returncode != 0:
        raise RuntimeError(f"{config['kind']} {config['model']} {config['path']} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    export = [line for line in completed.stderr.splitlines() if line.startswith("Exported")]
    if export:
        result["export_seconds"] = float(export[0].split(" in ")[1].split()[0])
    return result


def installed_backends() -> list[str]:
    from frcnn.model import backend_installed

    return [b for b in ("torch", "onnxruntime", "openvino") if backend_installed(b)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="imgsz 320, one run, 3 video frames")
    parser.add_argument("--imgsz", type=int, default=800)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per picture configuration")
    parser.add_argument("--video-frames", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["v1", "v2"])
    parser.add_argument("--backends", nargs="+", help="default: every installed one")
    parser.add_argument("--image", type=Path, default=default_media("traffic.jpg", ROOT / "input" / "coffee.jpg"))
    parser.add_argument("--video", type=Path, default=default_media("scooters.mp4", ROOT / "input" / "sample.mp4"))
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--precisions", nargs="+", default=["int8", "bf16"], choices=["int8", "bf16"],
                        help="lower precisions to measure with OpenVINO (bf16 only where the CPU has it)")
    parser.add_argument("--proposals", nargs="+", type=int, default=[1000, 300],
                        help="region proposals per picture to measure with each precision")
    parser.add_argument("--calibration", default=str(SHARED_MEDIA / "seed"),
                        help="the folder of pictures int8 is calibrated on (default: the write-up's photos)")
    parser.add_argument("--json-out", type=Path, default=ROOT / "outputs" / "benchmarks" / "speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    if args.quick:
        args.imgsz, args.runs, args.video_frames = 320, 1, 3
    backends = args.backends or installed_backends()
    scratch = Path(tempfile.mkdtemp(prefix="frcnn-bench-"))
    # A fresh export cache, so the export time is measured in this run.
    env = {**os.environ, "FRCNN_CACHE": str(scratch / "cache")}
    report = {"machine": machine(), "imgsz": args.imgsz, "runs": args.runs, "warmup": 1,
              "image": str(args.image), "video": str(args.video), "video_frames": args.video_frames,
              "matching_rule": " ".join(equivalent.__doc__.split()),
              "results": []}
    try:
        report["help_seconds"] = help_seconds(1 if args.quick else 5)
        measure(args, backends, scratch, env, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for row in report["results"]:
        if not args.skip_video:
            ref = next(r for r in report["results"] if r["model"] == row["model"] and r["path"] == "reference")
            row["video_speedup"] = round(row["video_fps"] / ref["video_fps"], 2)
    print(format_table(report))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json_out}")
    failed = [r for r in report["results"] if "check" in r and not r["check"]["equivalent"]]
    for row in failed:
        print(f"NOT EQUIVALENT: {row['model']} {row['path']}: {row['check']}", file=sys.stderr)
    return 1 if failed else 0


def measure(args: argparse.Namespace, backends: list[str], scratch: Path, env: dict, report: dict) -> None:
    """Every configuration, one child process each; rows are added to report["results"]."""
    for name in args.models:
        weights, kind = weights_for(name, scratch)
        report[f"{name}_weights"] = kind
        base = {"model": name, "weights": str(weights), "imgsz": args.imgsz, "image": str(args.image),
                "video": str(args.video), "frames": args.video_frames, "warmup": 1, "runs": args.runs,
                "scratch": str(scratch)}
        report[f"{name}_gflop"] = round(run_child({**base, "kind": "flops"}, env)["gflop"], 1)
        reference = eager = None
        for path in ["reference", "torch", *(b for b in backends if b != "torch")]:
            row = {"model": name, "path": path, "export_s": None}
            if path not in ("reference", "torch"):
                # Export first, in a process of its own, so the timed runs below find the cache warm.
                export = run_child({**base, "kind": "export", "path": path}, env)
                row.update(export_s=export.get("export_seconds"), export_peak_rss_mb=round(export["peak_rss_mb"]))
            image = run_child({**base, "kind": "image", "path": path}, env)
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
                video = run_child({**base, "kind": "video", "path": path}, env)
                row.update(video_fps=round(video["fps"], 3), video_frames=video["frames"],
                           video_peak_rss_mb=round(video["peak_rss_mb"]))
            report["results"].append(row)
            print(format_row(row), file=sys.stderr, flush=True)
            if path == "openvino":
                fp32 = image
                for variant in precision_rows(args, base, env, reference, fp32, report[f"{name}_gflop"]):
                    report["results"].append(variant)
                    print(format_row(variant), file=sys.stderr, flush=True)


def precision_rows(args, base: dict, env: dict, reference: dict, fp32: dict, gflop: float) -> list[dict]:
    """OpenVINO at each lower precision and number of proposals, against the reference and fp32 OpenVINO."""
    from frcnn.model import cpu_has_bf16

    calibration = [args.calibration if Path(args.calibration).is_dir() else str(ROOT / "input")]
    rows = []
    for precision in ["fp32", *args.precisions]:
        if precision == "bf16" and not cpu_has_bf16():
            print("bf16: this CPU does not compute in bf16; left out", file=sys.stderr)
            continue
        for proposals in args.proposals:
            if (precision, proposals) == ("fp32", 1000):
                continue  # the openvino row itself
            config = {**base, "path": "openvino", "precision": precision, "proposals": proposals,
                      "calibration": calibration}
            label = f"openvino {precision}" + (f" p{proposals}" if proposals != 1000 else "")
            row = {"model": base["model"], "path": label, "export_s": None}
            if precision == "int8":  # quantize first, in a process of its own, so the timed runs find it cached
                run_child({**config, "kind": "image", "runs": 1, "warmup": 0}, env)
            image = run_child({**config, "kind": "image"}, env)
            row.update(min_s=min(image["times"]), median_s=statistics.median(image["times"]),
                       peak_rss_mb=round(image["peak_rss_mb"]),
                       speedup=round(statistics.median(reference["times"]) / statistics.median(image["times"]), 2),
                       gflop_per_s=round(gflop / statistics.median(image["times"]), 1),
                       agreement=agreement(fp32["detections"], image["detections"]))
            if not args.skip_video:
                video = run_child({**config, "kind": "video"}, env)
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
            subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        timings[script] = {"min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}
    return timings


def format_row(row: dict) -> str:
    return f"{row['model']} {row['path']}: median {row['median_s']:.3f} s" + (
        f", video {row['video_fps']:.3f} fps" if "video_fps" in row else "")


def format_table(report: dict) -> str:
    header = ["model", "path", "min s", "median s", "speed-up", "GFLOP/s", "peak MB", "export s (MB)", "video fps",
              "video x", "video MB", "detections vs eager torch (torch: vs reference)"]
    lines = [header]
    for r in report["results"]:
        check = r.get("check") or r.get("check_original")
        verdict = "-" if check is None else (
            f"{'same' if check['equivalent'] else 'DIFFERENT'} "
            f"({check['paired']} of {check['reference_count']} paired, "
            f"box ≤{check['max_box_diff_px']:.3g} px, score ≤{check['max_score_diff']:.1e})")
        if "agreement" in r:
            a = r["agreement"]
            verdict = (f"vs fp32 openvino: {a['matched']} of {a['reference_shown']} shown boxes matched"
                       + (f", mean IoU {a['mean_iou']:.3f}" if a["mean_iou"] is not None else ""))
        lines.append([r["model"], r["path"], f"{r['min_s']:.3f}", f"{r['median_s']:.3f}", f"{r['speedup']:.2f}x",
                      f"{r['gflop_per_s']:.0f}", str(r["peak_rss_mb"]),
                      f"{r['export_s']:.0f} ({r['export_peak_rss_mb']})" if r["export_s"] else "-",
                      f"{r['video_fps']:.3f}" if "video_fps" in r else "-",
                      f"{r['video_speedup']:.2f}x" if "video_speedup" in r else "-",
                      str(r.get("video_peak_rss_mb", "-")), verdict])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = "\n".join(" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in lines)
    models = ", ".join(f"{m}: {report[m + '_gflop']} GFLOP, {report[m + '_weights']} weights"
                       for m in ("v1", "v2") if m + "_gflop" in report)
    helps = ", ".join(f"{name} {t['median_s']:.2f} s" for name, t in report.get("help_seconds", {}).items())
    return (f"{machine_line(report['machine'])}\n"
            f"imgsz {report['imgsz']}, {report['runs']} runs after 1 warm-up; {models}\n{table}"
            + (f"\n--help answers in (median): {helps}" if helps else ""))


if __name__ == "__main__":
    sys.exit(main())
