"""How good is it: v1 and v2 trained on the synthetic world, then what every speed and small-object option costs
in accuracy, measured with the project's own scripts on held-out pictures whose every answer is known.

    python benchmarks/quality.py            # trains once (cached in the user cache), then measures
    python benchmarks/quality.py --quick    # a tiny world and a few steps: checks that everything still works

Training runs `train.py`; measuring runs `evaluate.py` (AP on the held-out split, with each option) and
`detect_video.py --track` (tracking against the world video's ground truth). A second run with the same world and
training settings starts at the measurements. Prints one table per question and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import ROOT, ChildFailed, machine, machine_line, run_script, table

from frcnn.core.arguments import positive_int
from frcnn.core.tables import cell, percent
from frcnn.evaluation.tracks import score_tracks
from frcnn.reporting.matching import match_images
from frcnn.runtimes.cache import cache_dir
from frcnn.synthetic import world

MODEL_COLOURS = {"v1": "tab:blue", "v2": "tab:orange"}
MEASUREMENTS = ("precisions", "slicing", "tracking")


@dataclass(frozen=True)
class WorldSize:
    """How much world to make: pictures for training and for measuring, the tiny-object split, the video."""

    seed: int = 0
    train: int = 400
    val: int = 120
    size: int = 160
    tiny: int = 4
    tiny_size: tuple[int, int] = (1920, 1080)
    video_frames: int = 150


@dataclass(frozen=True)
class Training:
    """The training settings handed to train.py (the cache key, with the world)."""

    # Epochs of v1 and of v2: the same CPU time for both, since a v2 step costs about twice a v1 step.
    epochs: tuple[int, int] = (2, 2)  # the same steps for both (a v2 step costs about twice a v1 step)
    batch: int = 4
    imgsz: int = 160
    box_batch: int = 128  # torchvision's 512 made a CPU step 2.4x slower at small pictures
    lr: float | None = 0.01
    device: str = "cpu"


QUICK_WORLD = WorldSize(train=8, val=4, size=128, tiny=1, tiny_size=(480, 270), video_frames=12)
QUICK_TRAINING = Training(epochs=(1, 1), batch=2, imgsz=128, box_batch=64)


def key_of(*values) -> str:
    return hashlib.sha256(json.dumps([asdict(v) for v in values], sort_keys=True).encode()).hexdigest()[:12]


def run(command: list[str], what: str) -> None:
    """A project script as a child process; its progress goes to our stderr, its failure ends the benchmark (a
    Ctrl-C lets it stop by itself, keeping what it finished)."""
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)
    try:
        run_script(command[0], command[1:], progress=True)
    except ChildFailed as error:
        raise SystemExit(f"error: {what} failed (exit {error.returncode}): {' '.join(command)}") from None


# ---------------------------------------------------------------- the world and the trained models


def make_world(folder: Path, size: WorldSize) -> Path:
    """The world's splits in `folder`, written once (the same seed gives the same files)."""
    done = folder / "world.json"
    if done.exists():
        return folder
    side = (size.size, size.size)
    world.write_split(folder / "train", size.seed, size.train, side)
    world.write_split(folder / "val", size.seed + 1, size.val, side)
    world.write_tiny_split(folder / "tiny", size.seed + 2, size.tiny, size.tiny_size)
    world.write_video(folder / "video", size.seed + 3, size.video_frames)
    done.write_text(json.dumps(asdict(size)))
    return folder


def train_command(name: str, world_dir: Path, settings: Training, folder: Path) -> list[str]:
    """train.py's arguments for one model (from scratch on the world's training split, validated on its val split)."""
    epochs = settings.epochs[0 if name == "v1" else 1]
    command = ["train.py", "--model", name, "--from-scratch", "--images", str(world_dir / "train" / "images"),
               "--annotations", str(world_dir / "train" / "annotations.json"),
               "--val-images", str(world_dir / "val" / "images"),
               "--val-annotations", str(world_dir / "val" / "annotations.json"),
               "--imgsz", str(settings.imgsz), "--batch", str(settings.batch), "--epochs", str(epochs),
               "--box-batch", str(settings.box_batch), "--device", settings.device, "--output", str(folder)]
    if settings.lr is not None:
        command += ["--lr", str(settings.lr)]
    return command


def train(name: str, world_dir: Path, settings: Training, folder: Path, pictures: int) -> dict:
    """A model trained on the world from scratch with train.py, from the cache when it finished before."""
    finished = folder / "finished.json"
    if not finished.exists():
        epochs = settings.epochs[0 if name == "v1" else 1]
        if len(learning_curve(folder)) < epochs:
            command = train_command(name, world_dir, settings, folder)
            if (folder / "resume").exists():  # an interrupted run continues with its own settings
                command = ["train.py", "--resume", str(folder), "--device", settings.device]
            run(command, f"training {name} on the world ({epochs} epochs; resumable)")
        curve = learning_curve(folder)
        seconds = round(sum(float(row.get("train_s", 0)) for row in curve))
        finished.write_text(json.dumps({"model": name, "epochs": epochs, "seconds": seconds, "curve": curve},
                                       indent=2))
    return {**json.loads(finished.read_text()), "steps_per_epoch": steps_per_epoch(folder, pictures)}


def steps_per_epoch(folder: Path, pictures: int) -> int:
    """Steps of one epoch over `pictures` of the run in `folder`, as train.py counts them (with several
    data-parallel processes, each step takes a batch in every one)."""
    settings = json.loads((folder / "settings.json").read_text())
    return math.ceil(pictures / (settings["batch"] * settings.get("replicas", 1)))


def learning_curve(folder: Path) -> list[dict]:
    """train.py's results.csv, one row per epoch."""
    path = folder / "results.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


# ---------------------------------------------------------------- measuring


# How many pictures of each split are measured (None: all); the same first ones, by id, in every row.
MEASURED: dict[str, int | None] = {"val": None, "tiny": None}


def evaluate(name: str, model_dir: Path, split: Path, imgsz: int, out: Path, extra: list[str]) -> dict:
    """evaluate.py on a world split with the trained model and `extra` options; its metrics, plus false
    positives per picture among the boxes a user is shown."""
    command = ["evaluate.py", "--model", name, "--weights", str(model_dir / "best.pth"),
               "--labels", str(model_dir / "labels.txt"), "--images", str(split / "images"),
               "--annotations", str(split / "annotations.json"), "--imgsz", str(imgsz), "--output", str(out), *extra]
    if MEASURED.get(split.name):
        command += ["--max-images", str(MEASURED[split.name])]
    run(command, f"measuring {name} {' '.join(extra) or 'OpenVINO fp32'} on {split.name}")
    metrics = json.loads((out / f"{name}_metrics.json").read_text())
    results = json.loads((out / f"{name}_results.json").read_text())
    truth = json.loads((split / "annotations.json").read_text())
    metrics["false_per_picture"] = false_positives(results, truth) / max(1, metrics["images"])
    return metrics


def false_positives(results: list[dict], truth: dict) -> int:
    """Shown boxes that match no object of their class, as the confusion matrix and the gallery count them
    (frcnn.reporting.matching: score >= DETECTED_SCORE, one to one at IoU >= MATCH_IOU, largest overlap first)."""
    matches = match_images(truth, results, sorted({r["image_id"] for r in results}))
    return sum(len(match.labels) - match.correct for match in matches.values())


def precision_rows(bf16: bool, int8: bool) -> list[tuple[str, list[str]]]:
    rows = [("PyTorch fp32", ["--backend", "torch"]), ("OpenVINO fp32", [])]
    if int8:
        rows.append(("int8", ["--precision", "int8"]))
    if bf16:
        rows.append(("bf16", ["--precision", "bf16"]))
    rows.append(("fp32, --proposals 300", ["--proposals", "300"]))
    if int8:
        rows.append(("int8, --proposals 300", ["--precision", "int8", "--proposals", "300"]))
    return rows


def measure_precisions(name: str, model_dir: Path, world_dir: Path, imgsz: int, out: Path, bf16: bool,
                       int8: bool) -> dict:
    calibration = ["--calibration", str(world_dir / "train" / "images")]
    table = {}
    for label, extra in precision_rows(bf16, int8):
        extra = extra + calibration if "int8" in extra else extra
        folder = out / f"{name}-{label.replace(' ', '').replace(',', '-')}"
        table[label] = evaluate(name, model_dir, world_dir / "val", imgsz, folder, extra)
    return table


def measure_slicing(name: str, model_dir: Path, world_dir: Path, imgsz: int, out: Path) -> dict:
    rows = {"whole picture": [], f"--slice {imgsz}": ["--slice", str(imgsz)], "--slice auto": ["--slice", "auto"]}
    return {label: evaluate(name, model_dir, world_dir / "tiny", imgsz, out / f"{name}-tiny-{i}", extra)
            for i, (label, extra) in enumerate(rows.items())}


def measure_tracking(name: str, model_dir: Path, world_dir: Path, imgsz: int, out: Path) -> dict:
    """--track with --detect-every 1, 2, 4 on the world video, scored against its ground-truth tracks."""
    video, truth = world_dir / "video" / "video.mp4", world_dir / "video" / "gt" / "gt.txt"
    table = {}
    for every in (1, 2, 4):
        folder = out / f"{name}-track-{every}"
        run(["detect_video.py", "--input", str(video), "--model", name, "--weights", str(model_dir / "best.pth"),
             "--labels", str(model_dir / "labels.txt"), "--imgsz", str(imgsz), "--track", "--detect-every",
             str(every), "--json", "--output", str(folder)], f"tracking with {name}, detecting every {every} frame(s)")
        table[str(every)] = score_tracks(folder / f"video_{name}.jsonl", truth)
    return table


# ---------------------------------------------------------------- reporting


def _number(value) -> float | None:
    """A results.csv cell as a number; None where it is empty (no validation that epoch)."""
    return None if value in (None, "") else float(value)


def format_report(report: dict) -> str:
    lines = [machine_line(report["machine"]), f"world: {report['world']}", f"training: {report['training']}"]
    for name, model in report["models"].items():
        curve = model["trained"].get("curve", [])
        per_epoch = model["trained"]["steps_per_epoch"]
        lines.append(f"\n{name}: trained from scratch for {len(curve) * per_epoch} steps ({len(curve)} epoch(s)) in "
                     f"{model['trained'].get('seconds', '?')} s; validation on all {report['world']['val']} "
                     f"held-out pictures after each epoch:")
        lines.append(table(["epoch", "steps", "mean loss", "AP", "AP50", "AP_small", "AR100", "training s"],
                           [[row["epoch"], int(row["epoch"]) * per_epoch, f"{float(row['loss']):.3f}",
                             *(percent(_number(row.get(k))) for k in ("AP", "AP50", "AP_small", "AR100")),
                             f"{float(row.get('train_s') or 0):.0f}"] for row in curve]))
        if model.get("precisions"):
            fp32 = model["precisions"]["OpenVINO fp32"]["AP"]
            lines.append(table(["option", "AP", "AP50", "AP_small", "AR100", "AP - OpenVINO fp32",
                                "false boxes shown / picture"],
                               [[label, *metric_cells(m), f"{100 * (m['AP'] - fp32):+.1f}",
                                 f"{m['false_per_picture']:.2f}"] for label, m in model["precisions"].items()]))
        if model.get("slicing"):
            lines.append(table(["tiny objects in large pictures", "AP", "AP50", "AP_small", "AR100",
                                "false boxes shown / picture"],
                               [[label, *metric_cells(m), f"{m['false_per_picture']:.2f}"]
                                for label, m in model["slicing"].items()]))
        if model.get("tracking"):
            lines.append(table(["--detect-every", "IDF1", "MOTA", "HOTA", "ID switches", "boxes / frame",
                                "objects / frame", "IoU with the truth: detected boxes", "carried boxes"],
                               [[every, percent(t["IDF1"]), percent(t["MOTA"]), percent(t["HOTA"]), t["IDSW"],
                                 cell(t.get("boxes_per_frame"), ".1f"), cell(t.get("objects_per_frame"), ".1f"),
                                 cell(t.get("detected_iou"), ".3f"), cell(t.get("carried_iou"), ".3f")]
                                for every, t in model["tracking"].items()]))
    return "\n".join(lines)


def metric_cells(metrics: dict) -> list[str]:
    return [percent(metrics[k]) for k in ("AP", "AP50", "AP_small", "AR100")]


def plot_learning_curves(report: dict, path: Path) -> None:
    """Held-out AP50 and AP by training step, v1 and v2 on one chart (a PNG)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2))
    axes = figure.subplots()
    for name, model in report["models"].items():
        curve = model["trained"].get("curve", [])
        steps = [int(row["epoch"]) * model["trained"]["steps_per_epoch"] for row in curve]
        for metric, style in (("AP50", "-"), ("AP", "--")):
            values = [float("nan") if _number(row.get(metric)) is None else 100 * _number(row[metric])
                      for row in curve]
            axes.plot(steps, values, style, color=MODEL_COLOURS[name], marker="o", markersize=4,
                      label=f"{name} {metric}")
    axes.set(title="trained from scratch on the world: held-out box AP (%)", xlabel="training steps",
             xlim=(0, None), ylim=(0, None))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even where started with it ignored
    try:
        return measure_quality()
    except KeyboardInterrupt:
        print("\ninterrupted: what was trained and measured is kept in the cache; the same command goes on from "
              "there", file=sys.stderr)
        return 130


def measure_quality() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny world, one short epoch, fp32 only: a check")
    parser.add_argument("--models", nargs="+", default=["v1", "v2"], choices=["v1", "v2"])
    parser.add_argument("--epochs", type=positive_int, nargs=2, metavar=("V1", "V2"),
                        help="training epochs of v1 and v2 (default 2 2; --quick 1 1)")
    parser.add_argument("--print-train-commands", action="store_true",
                        help="print the training commands (to run them elsewhere, e.g. on a GPU) and stop")
    parser.add_argument("--device", default="cpu", help="where to train: cpu or cuda (measuring is on the CPU)")
    parser.add_argument("--no-int8", action="store_true", help="leave out int8 (its calibration takes minutes)")
    parser.add_argument("--no-tracking", action="store_true", help="leave out the video measurements")
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS),
                        help="measure only these: precisions (AP of each runtime and option), slicing (the tiny "
                             "objects), tracking (the video); default all")
    parser.add_argument("--max-images", type=positive_int, nargs=2, metavar=("VAL", "TINY"),
                        help="measure only the first VAL held-out and TINY tiny-object pictures (default: all)")
    parser.add_argument("--cache", type=Path, help="where the world and the models are kept (default: the user cache)")
    parser.add_argument("--json-out", type=Path, default=ROOT / "outputs" / "quality.json")
    args = parser.parse_args()
    if args.max_images:
        MEASURED.update(val=args.max_images[0], tiny=args.max_images[1])
    size = QUICK_WORLD if args.quick else WorldSize()
    settings = QUICK_TRAINING if args.quick else Training()
    settings = Training(**{**asdict(settings), "device": args.device,
                           **({"epochs": tuple(args.epochs)} if args.epochs else {})})
    base = (args.cache or cache_dir() / "quality") / f"world-{key_of(size)}"
    world_dir = make_world(base, size)
    trained_root = base / f"trained-{key_of(size, settings)}"
    if args.print_train_commands:
        for name in args.models:
            print(" ".join(["python", *train_command(name, world_dir, settings, trained_root / name)]))
        return 0
    info = machine()
    bf16 = "avx512_bf16" in info["cpu_flags"] or "amx_bf16" in info["cpu_flags"]
    report = {"machine": info, "world": asdict(size), "training": asdict(settings), "models": {}}
    for name in args.models:
        model_dir = trained_root / name
        measured = trained_root / "measured"
        entry = {"trained": train(name, world_dir, settings, model_dir, size.train)}
        if "precisions" in args.only:
            entry["precisions"] = measure_precisions(name, model_dir, world_dir, settings.imgsz, measured,
                                                     bf16 and not args.quick, not (args.no_int8 or args.quick))
        if "slicing" in args.only:
            entry["slicing"] = measure_slicing(name, model_dir, world_dir, settings.imgsz, measured)
        if "tracking" in args.only and not args.no_tracking:
            entry["tracking"] = measure_tracking(name, model_dir, world_dir, settings.imgsz, measured)
        report["models"][name] = entry
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2))
    curves = args.json_out.with_name(f"{args.json_out.stem}_curves.png")
    plot_learning_curves(report, curves)
    print(format_report(report))
    print(f"report in {args.json_out}, learning curves in {curves}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
