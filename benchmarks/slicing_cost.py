"""What sliced inference (--slice) costs against one pass over the whole picture, on the default CPU runtime.

    python benchmarks/slicing_cost.py            # the two aerial photos of ../shared/media/seed (or generated ones)
    python benchmarks/slicing_cost.py --quick    # one generated picture, --imgsz 64, one run, v1: a check that it works

For v1 and v2 and each picture it times predictor.make_predictor (the scripts' own path) without slicing, with
--slice 640 and with --slice auto, on the runtime the scripts pick for the CPU (--backend auto). For a sliced run
it also times, in the same run, each call the sliced predictor makes to the plain one: its pass over the whole
picture and its tiles, so that the rule of thumb "sliced time = full-pass time x passes" (passes = tiles + 1) is
checked against one run's own full pass. With OpenVINO it also compares, on one batch of tiles, the project's
runner (synchronous calls, LATENCY hint, one request) with asynchronous requests (AsyncInferQueue) and with the
THROUGHPUT hint, outside the project's code. Every configuration runs in its own process, after a warm-up of
each input shape; min and median of --runs runs. Prints tables with the CPU and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    SHARED_MEDIA,
    ChildFailed,
    child_result,
    machine,
    machine_busy,
    machine_line,
    others_load,
    run_child,
    show_and_save,
    table,
    weights_for,
)

from frcnn.core.tables import cell

SEED_MEDIA = SHARED_MEDIA / "seed"
# The aerial photos of small objects, with their sizes (a picture of that size is generated in their stead).
PICTURES = [("faster-rcnn-small-object-detection.jpg", 1000, 751),
            ("faster-rcnn-small-object-detection-2.jpg", 1280, 720)]
MODES = ("none", "640", "auto")  # "640" stands for --slice-size
ASYNC_NOTE = ("asynchronous requests are a pool of InferRequests started in turn (start_async, wait_for), each "
              "warmed alone on the tile shape first: with OpenVINO 2026.4 here, an AsyncInferQueue with a Python "
              "callback aborted the process at exit ('terminate called without an active exception') and "
              "deadlocked once when destroyed; requests meeting a new input shape at the same time are reported "
              "to hang on few cores (ultralytics/ultralytics#25923)")
OTHERS_WARNING = 0.25  # cores kept busy by other processes above which the timings are flagged


# ---------------------------------------------------------------- one configuration (a child process)


class CallRecorder:
    """Stands in for the sliced predictor's inner (plain) predictor and times each call it gets."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[bool, int, float]] = []  # (whole picture?, pictures, seconds)
        self.whole_shape = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, images):
        start = time.perf_counter()
        predictions = self.inner(images)
        whole = len(images) == 1 and images[0].shape == self.whole_shape
        self.calls.append((whole, len(images), time.perf_counter() - start))
        return predictions


def load_model(config: dict):
    from frcnn.core.specs import ModelSpec
    from frcnn.model import load

    return load(ModelSpec(config["model"], weights=config["weights"], imgsz=config["imgsz"], device="cpu",
                          backend=config["backend"]))


def slice_options(mode: str, size: int):
    from frcnn.core.specs import SliceOptions

    return None if mode == "none" else SliceOptions(size=0 if mode == "auto" else size)


def run_picture(config: dict) -> dict:
    """One picture, one mode: the scripts' predictor, timed; for a sliced run, its inner calls too."""
    import cv2

    from frcnn.core.specs import DetectOptions
    from frcnn.inference.loading import make_predictor
    from frcnn.inference.slicing import tile_grid

    image = cv2.imread(config["image"])
    model = load_model(config)
    options = slice_options(config["mode"], config["slice_size"])
    predictor = make_predictor(model, DetectOptions(threshold=config["threshold"], slicing=options))
    recorder = None
    if options is not None:
        recorder = CallRecorder(predictor.inner)
        recorder.whole_shape = image.shape
        predictor.inner = recorder
        height, width = image.shape[:2]
        size = predictor.tile_size(width, height)
        x, y, w, h = tile_grid(width, height, size, options.overlap)[0]
        warm = [image, image[y:y + h, x:x + w]]  # every tile has this shape: the model sees two input shapes
    else:
        warm = [image]
    for _ in range(config["warmup"]):
        for picture in warm:
            (predictor.inner if recorder else predictor)([picture])
    runs = []
    for _ in range(config["runs"]):
        if recorder:
            recorder.calls.clear()
        load, cpu, start = machine_busy(), time.process_time(), time.perf_counter()
        (prediction,) = predictor([image])
        seconds, own = time.perf_counter() - start, time.process_time() - cpu
        run = {"seconds": seconds, "cpu_seconds": own, "others": others_load(load, own, seconds),
               "reported_ms": prediction.milliseconds, "detections": len(prediction.detections)}
        if recorder:
            settings = prediction.settings.to_json()["slice"]
            full = sum(s for whole, _, s in recorder.calls if whole)
            tiles = sum(s for whole, _, s in recorder.calls if not whole)
            run.update(tiles=settings["tiles"], tile_size=settings["size"], full_pass_seconds=full,
                       tiles_seconds=tiles, other_seconds=seconds - full - tiles,
                       tile_pictures=sum(n for whole, n, _ in recorder.calls if not whole))
        runs.append(run)
    return {"runs": runs}


def run_async(config: dict) -> dict:
    """One batch of tiles through OpenVINO: the project's runner against asynchronous requests and hints."""
    import cv2
    import numpy as np
    import openvino
    import torch

    from frcnn.core.specs import SliceOptions
    from frcnn.inference.predictor import to_model_input
    from frcnn.inference.slicing import tile_grid
    from frcnn.model import cached_export

    image = cv2.imread(config["image"])
    model = load_model(config)
    height, width = image.shape[:2]
    grid = tile_grid(width, height, config["slice_size"], SliceOptions().overlap)
    # The same input the project makes for each tile, made once, outside the timings.
    inputs = [np.ascontiguousarray(to_model_input(image[y:y + h, x:x + w], model)[0].numpy())
              for x, y, w, h in grid]

    def no_export():
        raise RuntimeError("the model's load should have left its export in the cache")

    onnx_path = cached_export(no_export, config["model"], config["imgsz"], model.proposals, Path(config["weights"]),
                              "openvino")
    core = openvino.Core()
    compiled = {hint: core.compile_model(str(onnx_path), "CPU", {"PERFORMANCE_HINT": hint,
                                                                 "INFERENCE_PRECISION_HINT": "f32"})
                for hint in ("LATENCY", "THROUGHPUT")}

    def outputs_of(request) -> list:
        return [request.get_output_tensor(i).data.copy() for i in range(3)]

    def current(batch):  # model.OpenVinoRunner: LATENCY hint, one request, one call after the other
        return [[o[k].numpy() for k in ("boxes", "labels", "scores")]
                for o in model([torch.from_numpy(array) for array in batch])]

    def synchronous(hint):
        request = compiled[hint].create_infer_request()

        def infer(batch):
            results = []
            for array in batch:
                request.infer({0: array})
                results.append(outputs_of(request))
            return results
        return infer

    timeout_ms = int(config["request_timeout_s"] * 1000)

    def wait(request) -> None:
        if not request.wait_for(timeout_ms):
            raise TimeoutError(f"an infer request did not finish in {config['request_timeout_s']} s")

    def asynchronous(hint, count):
        # A pool of requests started in turn, without Python callbacks: OpenVINO's AsyncInferQueue with a Python
        # callback deadlocked or aborted here when it was destroyed (see ASYNC_NOTE). A request is reused once
        # its previous tile is done; every tile costs about the same, so the turn is also the first free one.
        pool = [compiled[hint].create_infer_request() for _ in range(count)]
        for request in pool:  # each request meets the tile shape alone, never two at once (see ASYNC_NOTE)
            request.infer({0: inputs[0]})

        def infer(batch):
            results: list = [None] * len(batch)
            pending: list = [None] * count
            for index, array in enumerate(batch):
                slot = index % count
                if pending[slot] is not None:
                    wait(pool[slot])
                    results[pending[slot]] = outputs_of(pool[slot])
                pool[slot].start_async({0: array})
                pending[slot] = index
            for slot, index in enumerate(pending):
                if index is not None:
                    wait(pool[slot])
                    results[index] = outputs_of(pool[slot])
            return results
        return infer

    optimal = compiled["THROUGHPUT"].get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    variants = {
        "sync LATENCY 1 request (model.OpenVinoRunner)": ("LATENCY", 1, current),
        "async LATENCY 2 requests": ("LATENCY", 2, asynchronous("LATENCY", 2)),
        "sync THROUGHPUT 1 request": ("THROUGHPUT", 1, synchronous("THROUGHPUT")),
        f"async THROUGHPUT {optimal} requests": ("THROUGHPUT", optimal, asynchronous("THROUGHPUT", optimal)),
    }
    for _ in range(config["warmup"]):
        for _, _, infer in variants.values():
            infer(inputs[:1])
    times: dict[str, list] = {name: [] for name in variants}
    outputs = {}
    for _ in range(config["runs"]):  # the variants take turns, so that a slower minute of the machine hits all
        for name, (_, _, infer) in variants.items():
            load, cpu, start = machine_busy(), time.process_time(), time.perf_counter()
            outputs[name] = infer(inputs)
            seconds, own = time.perf_counter() - start, time.process_time() - cpu
            times[name].append((seconds, own, others_load(load, own, seconds)))
    reference = outputs[next(iter(variants))]
    rows = []
    for name, (hint, requests, _) in variants.items():
        rows.append({"variant": name, "hint": hint, "requests": requests,
                     "streams": int(compiled[hint].get_property("NUM_STREAMS")),
                     "threads": int(compiled[hint].get_property("INFERENCE_NUM_THREADS")),
                     "seconds": [t for t, _, _ in times[name]], "cpu_seconds": [c for _, c, _ in times[name]],
                     "others": [o for _, _, o in times[name]],
                     "check": compare(reference, outputs[name])})
    return {"tiles": len(grid), "tile_shape": list(inputs[0].shape), "openvino": openvino.__version__,
            "variants": rows}


def compare(reference: list, candidate: list) -> dict:
    """Each tile's boxes, labels and scores against the project's runner's, in order."""
    same_counts = all(len(r[0]) == len(c[0]) for r, c in zip(reference, candidate))
    if not same_counts:
        return {"same_counts": False}
    pairs = [(r, c) for r, c in zip(reference, candidate) if len(r[0])]
    return {"same_counts": True,
            "same_labels": all((r[1] == c[1]).all() for r, c in pairs),
            "max_box_diff_px": max((float(abs(r[0] - c[0]).max()) for r, c in pairs), default=0.0),
            "max_score_diff": max((float(abs(r[2] - c[2]).max()) for r, c in pairs), default=0.0)}


def child_main(config: dict) -> None:
    child_result(run_async(config) if config["kind"] == "async" else run_picture(config))


# ---------------------------------------------------------------- the parent: orchestration and summary


def generated_picture(path: Path, width: int, height: int, seed: int) -> Path:
    """An aerial-like picture: a noisy ground with many small bright rectangles (cars) and a few large ones."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(60, 140, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    for _ in range(120):
        w, h = (int(v) for v in rng.integers(6, 24, 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        image[y:y + h, x:x + w] = rng.integers(0, 255, 3, dtype=np.uint8)
    for _ in range(3):
        w, h = int(rng.integers(width // 8, width // 4)), int(rng.integers(height // 8, height // 4))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        image[y:y + h, x:x + w] = rng.integers(0, 255, 3, dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def pictures(quick: bool, scratch: Path) -> list[dict]:
    """The aerial photos, or pictures of their sizes made here (--quick: the first one only, made here)."""
    found = []
    for index, (name, width, height) in enumerate(PICTURES[:1] if quick else PICTURES):
        path = SEED_MEDIA / name
        generated = quick or not path.exists()
        if generated:
            path = generated_picture(scratch / f"generated-{width}x{height}.jpg", width, height, index)
        found.append({"name": path.name, "path": str(path), "size": f"{width}x{height}", "generated": generated})
    return found


def summarize(picture_rows: list[dict]) -> None:
    """Min and median of each run's numbers, and the ratios, each taken within one run."""
    plain = {(r["model"], r["picture"]): r for r in picture_rows if r["mode"] == "none"}
    for row in picture_rows:  # each picture's unsliced row comes before its sliced ones
        runs = row.pop("runs")
        seconds = [r["seconds"] for r in runs]
        row.update(min_s=min(seconds), median_s=statistics.median(seconds), runs_s=seconds,
                   cores_busy=statistics.median(r["cpu_seconds"] / r["seconds"] for r in runs),
                   others_cores=max(r["others"]["cores"] for r in runs),
                   steal_cores=max(r["others"]["steal"] for r in runs),
                   reported_ms=statistics.median(r["reported_ms"] for r in runs),
                   detections=runs[-1]["detections"])
        if row["mode"] == "none":
            row.update(tiles=0, passes=1, vs_no_slice=1.0)
            continue
        tiles = runs[0]["tiles"]
        if runs[0]["tile_pictures"] == 0:  # the picture fits in one tile: the plain run, no full pass
            row.update(tiles=1, tile_size=runs[0]["tile_size"], passes=1)
            continue
        row.update(tiles=tiles, tile_size=runs[0]["tile_size"], passes=tiles + 1,
                   full_pass_s=statistics.median(r["full_pass_seconds"] for r in runs),
                   tile_s=statistics.median(r["tiles_seconds"] / tiles for r in runs),
                   tile_vs_full=statistics.median(r["tiles_seconds"] / tiles / r["full_pass_seconds"] for r in runs),
                   # The rule of thumb, checked within each run: sliced time / (its full pass x passes).
                   rule_ratio=statistics.median(r["seconds"] / (r["full_pass_seconds"] * (tiles + 1)) for r in runs),
                   tiles_ratio=statistics.median(r["seconds"] / (r["full_pass_seconds"] * tiles) for r in runs),
                   other_ms=statistics.median(r["other_seconds"] for r in runs) * 1000.0)
        base = plain.get((row["model"], row["picture"]))
        if base:
            row["vs_no_slice"] = row["median_s"] / base["median_s"]


def summarize_async(result: dict) -> list[dict]:
    rows = []
    base = statistics.median(result["variants"][0]["seconds"])
    for variant in result["variants"]:
        seconds = variant.pop("seconds")
        cpu = variant.pop("cpu_seconds")
        others = variant.pop("others")
        median = statistics.median(seconds)
        rows.append({**variant, "min_s": min(seconds), "median_s": median, "runs_s": seconds,
                     "others_cores": max(o["cores"] for o in others), "steal_cores": max(o["steal"] for o in others),
                     "tile_s": median / result["tiles"], "speedup": base / median,
                     "cores_busy": statistics.median(c / s for c, s in zip(cpu, seconds))})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one generated picture, imgsz 64, one run, v1 unless --models is given")
    parser.add_argument("--imgsz", type=int, default=800)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up passes over each input shape")
    parser.add_argument("--models", nargs="+", choices=["v1", "v2"])
    parser.add_argument("--backend", default="auto", help="the CPU runtime (default: the one the scripts pick)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold, as the scripts' default")
    parser.add_argument("--slice-size", type=int, default=640, help="the fixed tile size compared with auto")
    parser.add_argument("--skip-async", action="store_true", help="leave out the OpenVINO request comparison")
    parser.add_argument("--skip-pictures", action="store_true", help="only the OpenVINO request comparison")
    parser.add_argument("--json-out", type=Path, default=ROOT / "outputs" / "benchmarks" / "slicing.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    if args.quick:
        args.imgsz, args.runs = 64, 1
    models = args.models or (["v1"] if args.quick else ["v1", "v2"])
    import torch

    from frcnn.model import choose_backend

    backend = choose_backend(args.backend, torch.device("cpu"))
    scratch = Path(tempfile.mkdtemp(prefix="frcnn-slicing-"))
    env = {**os.environ, "FRCNN_CACHE": str(scratch / "cache")}  # a fresh export cache, made by the first child
    report = {"machine": machine(), "backend": backend, "imgsz": args.imgsz, "runs": args.runs,
              "warmup": args.warmup, "threshold": args.threshold, "slice_size": args.slice_size,
              "pictures": pictures(args.quick, scratch), "results": [], "async": [], "async_errors": [],
              "async_note": ASYNC_NOTE}
    started = time.perf_counter()
    try:
        for name in models:
            weights, kind = weights_for(name, scratch)
            report[f"{name}_weights"] = kind
            base = {"model": name, "weights": str(weights), "imgsz": args.imgsz, "backend": backend,
                    "threshold": args.threshold, "slice_size": args.slice_size, "warmup": args.warmup,
                    "runs": args.runs}
            for picture in [] if args.skip_pictures else report["pictures"]:
                for mode in MODES:
                    config = {**base, "kind": "picture", "image": picture["path"], "mode": mode}
                    result = run_child(__file__, config, env)
                    row = {"model": name, "picture": picture["name"], "size": picture["size"], "mode": mode,
                           "peak_rss_mb": round(result["peak_rss_mb"]), "runs": result["runs"]}
                    report["results"].append(row)
                    save_partial(report, args.json_out)
                    print(f"{name} {picture['name']} {mode}: "
                          f"{statistics.median(r['seconds'] for r in row['runs']):.2f} s", file=sys.stderr, flush=True)
            if backend == "openvino" and not args.skip_async:
                picture = report["pictures"][0]
                # A limit, in case requests hang (see ASYNC_NOTE): far above what the run should take.
                sliced = next((r["runs"] for r in report["results"] if r["model"] == name
                               and r["picture"] == picture["name"] and r["mode"] == "640"), None)
                limit = 3600.0
                if sliced:
                    per_pass = statistics.median(r["seconds"] / (r.get("tile_pictures", 0) + 1) for r in sliced)
                    tiles = sliced[0].get("tile_pictures", 1)
                    limit = 300 + 3 * 4 * (args.runs * tiles + 2 * args.warmup + 2) * per_pass
                try:
                    result = run_child(__file__, {**base, "kind": "async", "image": picture["path"],
                                        "request_timeout_s": limit / 2}, env, timeout=limit)
                except (subprocess.TimeoutExpired, ChildFailed) as error:
                    message = (f"no result after {limit:.0f} s (hung?)" if isinstance(error, subprocess.TimeoutExpired)
                               else str(error).strip().splitlines()[-1])
                    report["async_errors"].append(f"{name}: {message}")
                    print(f"{name} async FAILED: {message}", file=sys.stderr, flush=True)
                    continue
                for row in summarize_async(result):
                    report["async"].append({"model": name, "picture": picture["name"], "tiles": result["tiles"],
                                            "tile_shape": result["tile_shape"],
                                            "peak_rss_mb": round(result["peak_rss_mb"]), **row})
                save_partial(report, args.json_out)
                print(f"{name} async: done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["complete"] = True
    summarize(report["results"])
    show_and_save(format_report(report), report, args.json_out)
    return 1 if report["async_errors"] else 0


def save_partial(report: dict, path: Path) -> None:
    """The raw runs so far, so that a run cut short still leaves its measurements."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "complete": False}, indent=2) + "\n")


def format_report(report: dict) -> str:
    info = report["machine"]
    weights = ", ".join(f"{m}: {report[m + '_weights']} weights" for m in ("v1", "v2") if m + "_weights" in report)
    pictures = ", ".join(f"{p['name']} {p['size']}{' (generated)' if p['generated'] else ''}"
                         for p in report["pictures"])
    out = [machine_line(info),
           f"runtime {report['backend']}, imgsz {report['imgsz']}, threshold {report['threshold']}, "
           f"{report['runs']} runs after a warm-up of each input shape; {weights}",
           f"pictures: {pictures}", ""]
    header = ["model", "picture", "slice", "tiles (px)", "passes", "min s", "median s", "x no slice",
              "full pass s", "per tile s", "tile/full", "sliced/(full x passes)", "sliced/(full x tiles)",
              "merge etc ms", "cores busy",
              "others", "reported ms", "boxes", "peak MB"]
    rows = []
    for r in report["results"]:
        rows.append([r["model"], r["size"], r["mode"],
                     f"{r['tiles']} ({r['tile_size']})" if r["mode"] != "none" else None, str(r["passes"]),
                     f"{r['min_s']:.2f}", f"{r['median_s']:.2f}", cell(r.get("vs_no_slice"), ".2f", "x"),
                     *(cell(r.get(key), ".2f") for key in ("full_pass_s", "tile_s", "tile_vs_full", "rule_ratio",
                                                           "tiles_ratio")),
                     cell(r.get("other_ms"), ".0f"),
                     f"{r['cores_busy']:.2f}",
                     f"{r['others_cores']:.2f}",
                     f"{r['reported_ms']:.0f}", str(r["detections"]), str(r["peak_rss_mb"])])
    out.append(table(header, rows))
    out.append("full pass s, per tile s and the ratios are medians over runs of values taken within one sliced run; "
               "x no slice: median against the unsliced run's (another process); merge etc: the sliced time spent "
               "outside the model's calls; cores busy: this process's CPU time / wall time (median); others: the most "
               "cores other processes kept busy during a run; reported ms: Prediction.milliseconds (median)")
    if report["async"]:
        first = report["async"][0]
        out += ["", f"OpenVINO requests on one batch of {first['tiles']} tiles of {first['picture']} "
                    f"(--slice {report['slice_size']}; input {'x'.join(map(str, first['tile_shape']))}), "
                    f"variants taking turns in one process per model:"]
        header = ["model", "variant", "streams", "threads", "min s", "median s", "per tile s", "speed-up",
                  "cores busy", "others", "outputs vs the project's runner"]
        rows = []
        for r in report["async"]:
            check = r["check"]
            labels = "labels same" if check.get("same_labels") else "LABELS DIFFER"
            verdict = ("counts differ" if not check["same_counts"] else
                       f"{labels}, box <={check['max_box_diff_px']:.2g} px, score <={check['max_score_diff']:.1e}")
            rows.append([r["model"], r["variant"], str(r["streams"]), str(r["threads"]), f"{r['min_s']:.2f}",
                         f"{r['median_s']:.2f}", f"{r['tile_s']:.2f}", f"{r['speedup']:.2f}x",
                         f"{r['cores_busy']:.2f}", f"{r['others_cores']:.2f}", verdict])
        out.append(table(header, rows))
        out.append("speed-up: median against the project's runner's; " + ASYNC_NOTE)
    for error in report["async_errors"]:
        out.append(f"OpenVINO requests FAILED: {error}")
    busiest = max([r["others_cores"] for r in report["results"] + report["async"]], default=0.0)
    if busiest > OTHERS_WARNING:
        out.append(f"WARNING: other processes kept up to {busiest:.2f} of the {info['cores']} cores busy during "
                   f"some runs: those timings are disturbed (see the others column)")
    out.append(f"\ntotal {report['total_seconds']:.0f} s")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
