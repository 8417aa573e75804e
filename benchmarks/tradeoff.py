"""Which setting to pick: the speed options a user can choose, each measured for time and for accuracy in one run,
drawn as a speed-accuracy chart with its Pareto front, and tabled.

    python benchmarks/tradeoff.py            # the world models quality.py trained (newest in the cache), shared media
    python benchmarks/tradeoff.py --quick    # tiny sizes, one run each, fp32 only: a check that it still works

Pictures: for each setting (model, precision, --proposals, --imgsz) the seconds per picture of the project's own
path (predictor.Predictor, as detect_image.py runs it) on a photo (traffic.jpg) at that --imgsz, with seeded weights
(time does not depend on the weights' values), against the original-style eager loop at 800 px in the same run; and
the AP of the trained world model with the same options on the world's held-out pictures (evaluate.py). The world's
models were trained on 160-px pictures, so a smaller --imgsz is measured as the same shrink of the world's size
(800, 640, 512 -> 160, 128, 102).

Video: for each setting (model, precision, --proposals, --detect-every) the frames per second of detect_video.py
--track end to end (decode, detect, track, draw, H.264 encode) on an 800-px clip, and IDF1 / MOTA of the world model
with the same options on the world video against its ground-truth tracks.

Every configuration runs in a process of its own. Prints one table per part and the Pareto front (the settings no
other setting beats on both time and accuracy), writes JSON and the chart (PNG). `--resume` keeps the points an
interrupted run of the same command already measured.
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
    machine,
    machine_busy,
    machine_line,
    others_load,
    reference_model,
    reference_predict,
    run_child,
    run_script,
    seeded_weights,
    table,
)

from frcnn.core.tables import cell, percent

WORLD_IMGSZ = 160  # what the world's models were trained at; the settings' --imgsz scale it (800 -> 160)
SPEED_IMGSZ = 800


@dataclasses.dataclass(frozen=True)
class Setting:
    """One choice a user can make: model, precision, proposals and size; for video, how often the model runs."""

    model: str
    precision: str = "fp32"
    proposals: int = 1000
    imgsz: int = 800
    every: int | None = None  # None: a picture setting; N: video with --track --detect-every N
    backend: str = "openvino"

    @property
    def label(self) -> str:
        runtime = "PyTorch" if self.backend == "torch" else self.precision
        parts = [self.model, runtime, f"p{self.proposals}", f"{self.imgsz}px"]
        return " ".join(parts + ([f"every {self.every}"] if self.every else []))

    def options(self) -> list[str]:
        """The command-line options that choose it (calibration apart)."""
        if self.backend == "torch":
            return ["--backend", "torch"]
        return ["--backend", "openvino", "--precision", self.precision, "--proposals", str(self.proposals)]


def picture_settings(models: list[str], precisions: list[str]) -> list[Setting]:
    """The subset measured for pictures (the full cross product, 36 settings with an int8 model quantized for each
    size and number of proposals, does not fit an afternoon on 2 cores): PyTorch, and each precision at 800 px with
    1000 proposals; 300 proposals for fp32 and int8; and the smaller sizes for int8 at 300 proposals, where a user who
    needs more speed goes next (bf16 at 300 proposals and the smaller sizes of fp32 and bf16 are left out)."""
    settings = []
    fastest = "int8" if "int8" in precisions else precisions[-1]
    for model in models:
        settings.append(Setting(model, backend="torch"))
        settings += [Setting(model, precision, 1000) for precision in precisions]
        settings += [Setting(model, precision, 300) for precision in precisions if precision != "bf16"]
        settings += [Setting(model, fastest, 300, imgsz) for imgsz in (640, 512)]
    return settings


def video_settings(models: list[str], precisions: list[str]) -> list[Setting]:
    """The fastest picture setting at 800 px, detecting every 1, 2 and 4 frames."""
    fastest = "int8" if "int8" in precisions else precisions[-1]
    return [Setting(model, fastest, 300, 800, every) for model in models for every in (1, 2, 4)]


def world_imgsz(imgsz: int) -> int:
    return round(WORLD_IMGSZ * imgsz / SPEED_IMGSZ)


# ---------------------------------------------------------------- the children: one timed configuration each


def run_picture(config: dict) -> dict:
    """The project's path (or the original-style loop) on one photo: seconds of each run after the warm-ups."""
    import cv2

    from frcnn.core.specs import ModelSpec
    from frcnn.inference.predictor import Predictor
    from frcnn.model import load

    image = cv2.imread(config["image"])
    if config["backend"] == "reference":
        module = reference_model(config["model"], Path(config["weights"]), config["imgsz"], config["proposals"])
        predict = lambda: reference_predict(module, image)  # noqa: E731
    else:
        spec = ModelSpec(config["model"], weights=config["weights"], imgsz=config["imgsz"], device="cpu",
                         backend=config["backend"], precision=config["precision"], proposals=config["proposals"],
                         calibration=tuple(config["calibration"]))
        predictor = Predictor(load(spec), threshold=0.0)
        predict = lambda: predictor([image])  # noqa: E731
    for _ in range(config["warmup"]):
        predict()
    times, load = [], OthersLoad()
    for _ in range(config["runs"]):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    return {"times": times, "others": load.others()}


def child_main(config: dict) -> None:
    child_result(run_picture(config))


# ---------------------------------------------------------------- the parent


def speed_of_picture(setting: Setting, args, weights: dict, env: dict, scratch: Path) -> dict:
    config = {"model": setting.model, "weights": str(weights[setting.model]), "image": str(args.image),
              "imgsz": timed_imgsz(setting.imgsz, args), "proposals": setting.proposals, "precision": setting.precision,
              "backend": setting.backend, "calibration": [args.calibration], "warmup": 1, "runs": args.runs}
    if setting.precision == "int8":  # quantized once in a process of its own: the timed runs find it cached
        run_child(__file__, {**config, "warmup": 0, "runs": 1}, env)
    result = run_child(__file__, config, env)
    return {"min_s": min(result["times"]), "median_s": statistics.median(result["times"]), "times": result["times"],
            "others_cores": result["others"]["cores"]}


def speed_of_video(setting: Setting, args, weights: dict, env: dict, scratch: Path) -> dict:
    """detect_video.py --track on the clip, `args.runs` times: frames per second of the whole pipeline (model
    loading excluded) and of the model alone."""
    options = [*setting.options(), "--track", "--detect-every", str(setting.every)]
    if setting.precision == "int8":
        options += ["--calibration", args.calibration]
    rates, inference, others = [], [], []
    for run in range(args.runs):
        before, cpu, start = machine_busy(), children_cpu(), time.perf_counter()
        figures = detect_video(args.video, setting.model, weights[setting.model], timed_imgsz(setting.imgsz, args),
                               args.video_frames,
                               scratch / f"video-{setting.label.replace(' ', '-')}-{run}", options, env)
        # The script is a child of this process: its CPU time is ours, not the others'.
        others.append(others_load(before, children_cpu() - cpu, time.perf_counter() - start)["cores"])
        rates.append(figures["frames_per_second"])
        inference.append(sum(figures["inference_ms_per_frame"].values()))
    return {"best_fps": max(rates), "median_fps": statistics.median(rates), "fps": rates,
            "inference_ms_per_frame": statistics.median(inference), "others_cores": statistics.median(others)}


def accuracy_of_picture(setting: Setting, args, trained: dict, env: dict, scratch: Path) -> dict:
    """evaluate.py with the trained world model and the setting's options on the world's held-out pictures."""
    run_dir = trained[setting.model]
    val = args.world / "val"
    out = scratch / f"eval-{setting.label.replace(' ', '-')}"
    options = setting.options()
    if setting.precision == "int8":
        options += ["--calibration", str(args.world / "train" / "images")]
    command = ["--model", setting.model, "--weights", run_dir / "best.pth", "--labels", run_dir / "labels.txt",
               "--images", val / "images", "--annotations", val / "annotations.json",
               "--imgsz", world_imgsz(setting.imgsz), "--output", out, *options]
    if args.max_images:
        command += ["--max-images", args.max_images]
    run_script("evaluate.py", command, env)
    metrics = json.loads((out / f"{setting.model}_metrics.json").read_text())
    return {key: metrics[key] for key in ("AP", "AP50", "AR100", "images")}


def accuracy_of_video(setting: Setting, args, trained: dict, env: dict, scratch: Path) -> dict:
    """detect_video.py --track with the trained world model on the world video, scored against its tracks."""
    from frcnn.evaluation.tracks import score_tracks

    run_dir = trained[setting.model]
    out = scratch / f"track-{setting.label.replace(' ', '-')}"
    options = [*setting.options(), "--track", "--detect-every", str(setting.every)]
    if setting.precision == "int8":
        options += ["--calibration", str(args.world / "train" / "images")]
    video = args.world / "video" / "video.mp4"
    run_script("detect_video.py", ["--input", video, "--model", setting.model, "--weights", run_dir / "best.pth",
                                   "--labels", run_dir / "labels.txt", "--imgsz", world_imgsz(setting.imgsz),
                                   "--json", "--device", "cpu", "--output", out, *options], env)
    scores = score_tracks(out / f"video_{setting.model}.jsonl", args.world / "video" / "gt" / "gt.txt")
    return {key: scores.get(key) for key in ("IDF1", "MOTA", "HOTA", "IDSW", "boxes_per_frame", "objects_per_frame")}


MEASURE = {("speed", "pictures"): speed_of_picture, ("speed", "videos"): speed_of_video,
           ("accuracy", "pictures"): accuracy_of_picture, ("accuracy", "videos"): accuracy_of_video}


def pareto(points: list[dict], time_key: str, accuracy_key: str) -> set[str]:
    """The labels of the points no other point beats: none faster (or as fast) that is at least as accurate."""
    front, best = set(), float("-inf")
    for point in sorted(points, key=lambda p: (p[time_key], -p[accuracy_key])):
        if point[accuracy_key] > best:
            front.add(point["label"])
            best = point[accuracy_key]
    return front


PARTS = {"speed": {"pictures": "median_s", "videos": "median_fps"}, "accuracy": {"pictures": "AP", "videos": "IDF1"}}


def measure(args, scratch: Path, env: dict, report: dict) -> dict:
    """Each part asked for, of each setting not yet measured for it; the report is written after every point, so an
    interrupted run goes on with --resume, and a run of one part can be completed by a run of the other."""
    weights = {model: seeded_weights(model, scratch) for model in args.models}
    trained = {model: getattr(args, model) for model in args.models}
    report.setdefault("machine", machine())
    report.update(image=str(args.image), video=str(args.video), video_frames=args.video_frames, runs=args.runs,
                  world=str(args.world), calibration=args.calibration,
                  trained={model: str(path) for model, path in trained.items()})
    report.setdefault("reference", {})
    report.setdefault("loads", [])
    settings = {"pictures": picture_settings(args.models, args.precisions),
                "videos": video_settings(args.models, args.precisions)}
    measured = ["pictures"] + ([] if args.skip_video else ["videos"])
    for kind in settings:
        known = {point["label"]: point for point in report.get(kind, [])}
        report[kind] = [known.get(s.label, {"label": s.label, **dataclasses.asdict(s)}) for s in settings[kind]]
    started = time.perf_counter()
    if "speed" in args.parts:
        for model in args.models:
            if model not in report["reference"]:
                reference = run_child(__file__, {"model": model, "weights": str(weights[model]),
                                                 "image": str(args.image), "imgsz": args.speed_imgsz,
                                                 "proposals": 1000, "precision": "fp32", "backend": "reference",
                                                 "calibration": [], "warmup": 1, "runs": args.runs}, env)
                report["reference"][model] = {"min_s": min(reference["times"]),
                                              "median_s": statistics.median(reference["times"]),
                                              "others_cores": reference["others"]["cores"]}
                save(report, args.json_out)
            log(f"{model} original-style loop: median {report['reference'][model]['median_s']:.2f} s")
    for part in args.parts:
        measured_any = False
        for kind in measured:
            for setting, point in zip(settings[kind], report[kind]):
                if PARTS[part][kind] in point:
                    continue
                point.update(MEASURE[part, kind](setting, args, weights if part == "speed" else trained, env,
                                                 scratch))
                if part == "speed" and kind == "pictures":
                    point["speedup"] = report["reference"][setting.model]["median_s"] / point["median_s"]
                save(report, args.json_out)
                measured_any = True
                log(f"{setting.label}: " + ", ".join(f"{k} {v:.3g}" for k, v in point.items()
                                                     if k in ("median_s", "median_fps", "AP", "IDF1")))
        if measured_any:  # the load average at the end of the part (/proc/loadavg: 1, 5, 15 minutes)
            report["loads"].append({"part": part, "uptime": load_average()})
    report["seconds"] = report.get("seconds", 0) + time.perf_counter() - started
    report["videos"] = [point for point in report["videos"] if "median_fps" in point or "IDF1" in point
                        or not args.skip_video]  # --skip-video from the start: no video points
    complete = all(PARTS[part][kind] in point for part in PARTS for kind in settings for point in report[kind])
    report["front"] = {"pictures": sorted(pareto(report["pictures"], "median_s", "AP")),
                       "videos": sorted(pareto([{**p, "s_per_frame": 1 / p["median_fps"]} for p in report["videos"]],
                                               "s_per_frame", "IDF1"))} if complete else None
    return report


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def save(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, path)


def timed_imgsz(imgsz: int, args) -> int:
    """The size a setting is timed at: itself, or with --quick the same share of the small --speed-imgsz."""
    return round(imgsz * args.speed_imgsz / SPEED_IMGSZ)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def format_report(report: dict) -> str:
    def seconds(point: dict, key: str) -> str | None:
        return cell(point.get(key), ".2f")

    fronts = report.get("front") or {"pictures": [], "videos": []}
    lines = [machine_line(report["machine"]),
             f"pictures: {Path(report['image']).name}, {report['runs']} runs after 1 warm-up, seeded weights; "
             f"AP: the trained world models on the world's held-out pictures ({report['world']})",
             "load average while measuring: " + "; ".join(f"{load['part']} {load['uptime']}"
                                                          for load in report.get("loads", []))]
    header = ["setting", "min s", "median s", "x original loop", "AP", "AP50", "AR100", "on the front",
              "others' cores"]
    rows = [[f"{m} original-style loop (eager PyTorch, 800 px)", seconds(r, "min_s"), seconds(r, "median_s"),
             "1.00x", None, None, None, None, cell(r.get("others_cores"), ".2f")]
            for m, r in report["reference"].items()]
    rows += [[p["label"], seconds(p, "min_s"), seconds(p, "median_s"), cell(p.get("speedup"), ".2f", "x"),
              percent(p.get("AP")), percent(p.get("AP50")), percent(p.get("AR100")),
              "yes" if p["label"] in fronts["pictures"] else None, cell(p.get("others_cores"), ".2f")]
             for p in report["pictures"]]
    lines += [table(header, rows)]
    if report["videos"]:
        lines += ["", f"video: {Path(report['video']).name}, {report['video_frames']} frames, detect_video.py "
                      f"--track end to end, {report['runs']} runs; IDF1 / MOTA: the world video"]
        header = ["setting", "best frames/s", "median frames/s", "inference ms / frame", "IDF1", "MOTA", "HOTA",
                  "boxes / frame", "on the front", "others' cores"]
        rows = [[p["label"], seconds(p, "best_fps"), seconds(p, "median_fps"),
                 cell(p.get("inference_ms_per_frame"), ".0f"), percent(p.get("IDF1")), percent(p.get("MOTA")),
                 percent(p.get("HOTA")), cell(p.get("boxes_per_frame"), ".1f"),
                 "yes" if p["label"] in fronts["videos"] else None, cell(p.get("others_cores"), ".2f")]
                for p in report["videos"]]
        lines += [table(header, rows)]
    return "\n".join(lines)


MODEL_COLOURS = {"v1": "tab:blue", "v2": "tab:orange"}
PRECISION_MARKERS = {"fp32": "o", "bf16": "s", "int8": "^", "torch": "x"}


def plot(report: dict, path: Path) -> None:
    """Time on x, accuracy on y; pictures on the left, video on the right; the Pareto front joined and ringed."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    parts = [("pictures", "median_s", "AP", "seconds per picture (traffic.jpg)", "AP on the world (%)")]
    if report["videos"]:
        parts.append(("videos", "s_per_frame", "IDF1", "seconds per frame, end to end (1 / median frames/s)",
                      "IDF1 on the world video (%)"))
    figure = Figure(figsize=(7.5 * len(parts), 5.2))
    for axes, (kind, x_key, y_key, x_label, y_label) in zip(figure.subplots(1, len(parts), squeeze=False)[0], parts):
        points = [{**p, "s_per_frame": 1 / p["median_fps"]} if kind == "videos" else p for p in report[kind]]
        front = set(report["front"][kind])
        for point in points:
            marker = PRECISION_MARKERS["torch" if point["backend"] == "torch" else point["precision"]]
            x, y = point[x_key], 100 * point[y_key]
            axes.scatter(x, y, marker=marker, color=MODEL_COLOURS.get(point["model"], "grey"), s=36, zorder=3)
            if point["label"] in front:
                axes.scatter(x, y, s=150, facecolors="none", edgecolors="black", linewidths=1.2, zorder=2)
            axes.annotate(point["label"].split(" ", 1)[1], (x, y), textcoords="offset points", xytext=(4, 3),
                          fontsize=6.5)
        line = sorted((p for p in points if p["label"] in front), key=lambda p: p[x_key])
        axes.plot([p[x_key] for p in line], [100 * p[y_key] for p in line], "k--", linewidth=0.8, zorder=1,
                  label="Pareto front")
        for model, colour in MODEL_COLOURS.items():
            if any(p["model"] == model for p in points):
                axes.scatter([], [], color=colour, label=model)
        axes.set(xlabel=x_label, ylabel=y_label, xscale="log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=8, loc="lower right")
    figure.suptitle("speed against accuracy (markers: o fp32, s bf16, ^ int8, x PyTorch)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)


def newest_world() -> tuple[Path | None, dict[str, Path]]:
    """The newest world under the quality benchmark's cache and, per model, its newest finished (or newest) run."""
    from frcnn.runtimes.cache import cache_dir

    worlds = sorted((cache_dir() / "quality").glob("world-*"), key=lambda p: p.stat().st_mtime)
    if not worlds:
        return None, {}
    runs = {}
    for model in ("v1", "v2"):
        found = sorted(worlds[-1].glob(f"trained-*/{model}/best.pth"), key=lambda p: p.stat().st_mtime)
        if found:
            runs[model] = found[-1].parent
    return worlds[-1], runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="sizes scaled down to --speed-imgsz 96, one run, 3 video frames, fp32 only")
    parser.add_argument("--models", nargs="+", default=["v1", "v2"], choices=["v1", "v2"])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "int8"],
                        help="default: fp32, bf16 where the CPU has it, int8")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per setting (pictures), runs per video")
    parser.add_argument("--speed-imgsz", type=int, default=SPEED_IMGSZ, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, default=default_media("traffic.jpg", SAMPLES / "coffee.jpg"))
    parser.add_argument("--video", type=Path, help="the clip timed (default: an 800-px copy of scooters.mp4, made "
                                                   "once in the user cache)")
    parser.add_argument("--video-frames", type=int, default=20)
    parser.add_argument("--skip-video", action="store_true")
    parser.add_argument("--calibration", default=str(SHARED_MEDIA / "seed" / "image_1.jpg"),
                        help="the picture(s) int8 is calibrated on for timing (time does not depend on them; one "
                             "picture quantizes fastest); accuracy is calibrated on the world's training split")
    parser.add_argument("--world", type=Path, help="the world folder (default: the quality benchmark's newest)")
    parser.add_argument("--v1", type=Path, help="v1's train.py folder (default: its newest run in the world)")
    parser.add_argument("--v2", type=Path, help="v2's train.py folder (default: its newest run in the world)")
    parser.add_argument("--max-images", type=int, help="measure AP on the first N held-out pictures only")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS),
                        help="measure only time or only accuracy (a later run of the other part completes the points)")
    parser.add_argument("--resume", action="store_true", help="keep the points --json-out already holds")
    parser.add_argument("--json-out", type=Path, default=ROOT / "outputs" / "benchmarks" / "tradeoff.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    from frcnn.runtimes.backends import cpu_has_bf16

    if args.quick:
        args.speed_imgsz, args.runs, args.video_frames = 96, 1, 3
        args.precisions = args.precisions or ["fp32"]
    args.precisions = args.precisions or ["fp32", *(["bf16"] if cpu_has_bf16() else []), "int8"]
    world, runs = newest_world()
    args.world = args.world or world
    for model in args.models:
        setattr(args, model, getattr(args, model) or runs.get(model))
        if getattr(args, model) is None or args.world is None:
            parser.error(f"no trained {model} on the world: run benchmarks/quality.py first, or give --world and "
                         f"--{model}")
    if not Path(args.calibration).exists():
        args.calibration = str(SAMPLES / "coffee.jpg")
    scratch = Path(tempfile.mkdtemp(prefix="frcnn-tradeoff-"))
    env = {**os.environ, "FRCNN_CACHE": str(scratch / "cache")}  # the run's exports and int8 models, made here
    args.video = args.video or clip_of(args.speed_imgsz)
    previous = json.loads(args.json_out.read_text()) if args.resume and args.json_out.exists() else {}
    try:
        report = measure(args, scratch, env, previous)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    save(report, args.json_out)
    print(format_report(report))
    if report["front"] is None:
        print(f"\nwritten to {args.json_out}; the chart needs both parts (run the other with --resume)",
              file=sys.stderr)
        return 0
    chart = args.json_out.with_suffix(".png")
    plot(report, chart)
    print(f"\nwritten to {args.json_out} and {chart}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
