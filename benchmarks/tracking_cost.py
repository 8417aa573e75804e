"""What tracking costs and what --detect-every buys, on a real video, in one run.

    python benchmarks/tracking_cost.py            # ../shared/media/scooters.mp4 (or the sample clip), v1 and v2
    python benchmarks/tracking_cost.py --quick    # imgsz 64, 6 frames, v1: a check that it still works

For v1 and v2 on the default CPU runtime it measures:
  - end-to-end frames per second of detect_video.py with --track and --detect-every 1, 2 and 4, against the
    original-style loop (speed.py's reference: eager PyTorch, one frame at a time, an mp4v writer);
  - tracking's own cost per frame: the tracker stepped over detections recorded beforehand (min and median);
  - the drift of carried boxes: on the frames --detect-every 4 does not detect, the mean IoU between its
    carried boxes and the detector's boxes on the same frames (from the --detect-every 1 run), matched one to
    one by class, and the share of the detector's boxes that found a carried partner.
Each configuration runs in its own process. Prints a table with the CPU and writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    SAMPLES,
    default_media,
    detect_video,
    machine,
    machine_line,
    run_video_reference,
    show_and_save,
    table,
    weights_for,
)

from frcnn.core.tables import cell

EVERY = (1, 2, 4)


def run_project(video: Path, name: str, weights: Path, imgsz: int, frames: int, every: int, out: Path) -> dict:
    """detect_video.py with --track as a user runs it: the pipeline's rate and the frame records."""
    result = detect_video(video, name, weights, imgsz, frames, out, ["--track", "--detect-every", str(every)])
    return {"fps": result["frames_per_second"], "records": result["records"]}


def tracker_cost(video: Path, name: str, weights: Path, imgsz: int, frames: int, runs: int) -> dict:
    """Milliseconds per frame of the tracking step alone, over detections the model made beforehand."""
    import cv2

    from frcnn.core.specs import ModelSpec, TrackOptions
    from frcnn.inference.predictor import Predictor
    from frcnn.inference.tracking import LOW_SCORE_FLOOR, VideoTracking
    from frcnn.model import load

    predictor = Predictor(load(ModelSpec(name, weights=str(weights), imgsz=imgsz, device="cpu")), LOW_SCORE_FLOOR)
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    found = []
    while len(found) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        found.append(predictor([frame])[0].detections)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    per_frame = []
    for _ in range(runs):
        tracking = VideoTracking(name, predictor.class_names, TrackOptions(), fps, 0.5, size, lambda track: None)
        start = time.perf_counter()
        for index, detections in enumerate(found):
            tracking.step(index, index / fps, detections)
        tracking.close()
        per_frame.append((time.perf_counter() - start) * 1000 / max(1, len(found)))
    return {"min_ms": min(per_frame), "median_ms": statistics.median(per_frame),
            "boxes_per_frame": statistics.mean(len(d) for d in found) if found else 0}


def drift(every_frame: list[dict], sparse: list[dict]) -> dict:
    """Mean IoU of carried boxes with the detector's on the frames the sparse run did not detect."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from frcnn.core.boxes import overlap_matrix

    detected = {r["frame"]: r["results"][0]["detections"] for r in every_frame}
    ious, partnered, total = [], 0, 0
    for record in sparse:
        if record["detected"] or record["frame"] not in detected:
            continue
        carried, truth = record["results"][0]["detections"], detected[record["frame"]]
        total += len(truth)
        for label in {d["label_id"] for d in truth}:
            a = np.array([d["box"] for d in truth if d["label_id"] == label], np.float64)
            b = np.array([d["box"] for d in carried if d["label_id"] == label], np.float64).reshape(-1, 4)
            if len(b) == 0:
                continue
            matrix = overlap_matrix(a, b)
            rows, cols = linear_sum_assignment(matrix, maximize=True)
            matched = [matrix[r, c] for r, c in zip(rows, cols) if matrix[r, c] > 0]
            ious.extend(matched)
            partnered += len(matched)
    return {"mean_iou": float(np.mean(ious)) if ious else None, "partnered": partnered, "detector_boxes": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="imgsz 64, 6 frames, v1 only, one run")
    parser.add_argument("--imgsz", type=int, default=800)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5, help="runs of the tracker over the recorded detections")
    parser.add_argument("--models", nargs="+", default=["v1", "v2"])
    parser.add_argument("--video", type=Path, default=default_media("scooters.mp4", SAMPLES / "sample.mp4"))
    parser.add_argument("--json-out", type=Path, default=ROOT / "outputs" / "benchmarks" / "tracking.json")
    args = parser.parse_args()
    if args.quick:
        args.imgsz, args.frames, args.runs, args.models = 64, 6, 1, ["v1"]
    scratch = Path(tempfile.mkdtemp(prefix="frcnn-track-bench-"))
    report = {"machine": machine(), "video": str(args.video), "imgsz": args.imgsz, "frames": args.frames,
              "models": {}}
    try:
        for name in args.models:
            weights, kind = weights_for(name, scratch)
            reference = run_video_reference({"model": name, "weights": str(weights), "imgsz": args.imgsz,
                                             "video": str(args.video), "frames": args.frames,
                                             "scratch": str(scratch)})
            row = {"weights": kind, "reference_fps": reference["fps"], "track": {}}
            runs = {}
            for every in EVERY:
                runs[every] = run_project(args.video, name, weights, args.imgsz, args.frames, every,
                                          scratch / f"{name}-every-{every}")
                row["track"][every] = {"fps": runs[every]["fps"],
                                       "speedup": runs[every]["fps"] / reference["fps"]}
            row["tracker"] = tracker_cost(args.video, name, weights, args.imgsz, args.frames, args.runs)
            row["drift_every_4"] = drift(runs[1]["records"], runs[4]["records"])
            report["models"][name] = row
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    show_and_save(format_report(report), report, args.json_out)
    return 0


def format_report(report: dict) -> str:
    header = ["model", "reference fps", "--track fps (x reference) every 1 / 2 / 4",
              "tracker ms/frame min, median (boxes/frame)", "carried-box IoU with the detector (every 4)"]
    rows = []
    for name, row in report["models"].items():
        track = " / ".join(f"{row['track'][e]['fps']:.2f} ({row['track'][e]['speedup']:.2f}x)" for e in EVERY)
        tracker, moved = row["tracker"], row["drift_every_4"]
        rows.append([f"{name} ({row['weights']} weights)", f"{row['reference_fps']:.2f}", track,
                     f"{tracker['min_ms']:.1f}, {tracker['median_ms']:.1f} ({tracker['boxes_per_frame']:.0f})",
                     f"{cell(moved['mean_iou'], '.3f')} ({moved['partnered']} of {moved['detector_boxes']} boxes "
                     f"partnered)"])
    return "\n".join([machine_line(report["machine"]),
                      f"{report['video']}, first {report['frames']} frames, imgsz {report['imgsz']}, default CPU "
                      f"runtime", table(header, rows)])


if __name__ == "__main__":
    sys.exit(main())
