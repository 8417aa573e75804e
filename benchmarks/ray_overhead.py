"""What running on Ray (--ray) costs against one process, on the same pictures, at the default size.

    python benchmarks/ray_overhead.py                       # v2, imgsz 800, OpenVINO, 6 pictures, 2 runs
    python benchmarks/ray_overhead.py --model v1 --json ray.json

Measured with the project's own code (the pools `detect_image.py` uses, minus writing files):
  - overhead per picture: the time per picture that is not the model's (reading, decoding, drawing, encoding and,
    with Ray, the trip to the worker and back), Ray with one worker of 1 CPU against one process on 1 thread,
    as a share of the inference time;
  - worker start-up: starting a local cluster, placing a worker, loading its model (from the export cache);
  - throughput: 1 and 2 workers of 1 CPU each against one process with 1 and 2 threads.
Weights: the COCO weights where cached, else seeded random ones (speed does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import SAMPLES, SHARED_MEDIA, machine, machine_line, table, weights_for

from frcnn.core.tables import MISSING


def pictures(count: int) -> list[Path]:
    """The shared photos (the write-up's and the others), repeated to `count`."""
    found = sorted(p for p in [*SHARED_MEDIA.glob("*.jpg"), *(SHARED_MEDIA / "seed").glob("*.jpg")]
                   if not p.name.startswith("reference_"))
    if not found:
        found = [SAMPLES / "coffee.jpg"]
    return [found[i % len(found)] for i in range(count)]


def timed_pass(pool, paths: list[Path]) -> dict:
    """One pass over the pictures through the pool: wall seconds per picture and model milliseconds per picture."""
    from frcnn.cli import shared as du
    from frcnn.core.specs import DrawOptions
    from frcnn.pipelines.jobs import detect_picture

    def prepare(index: int) -> tuple:
        return du.read_bytes(paths[index]), str(paths[index]), DrawOptions()

    start = time.perf_counter()
    model_ms = []
    for _, _, outcome in pool.imap(detect_picture, range(len(paths)), prepare):
        if isinstance(outcome, Exception):
            raise outcome
        model_ms.append(sum(p.milliseconds for p in outcome.predictions))
    wall = (time.perf_counter() - start) / len(paths)
    return {"wall_s": wall, "model_s": statistics.mean(model_ms) / 1000}


def summarize(passes: list[dict]) -> dict:
    walls = [p["wall_s"] for p in passes]
    return {"wall_min_s": round(min(walls), 3), "wall_median_s": round(statistics.median(walls), 3),
            "model_median_s": round(statistics.median(p["model_s"] for p in passes), 3),
            "other_median_s": round(statistics.median(p["wall_s"] - p["model_s"] for p in passes), 4)}


def local_rows(spec, paths: list[Path], runs: int, threads_list: list[int]) -> dict:
    import dataclasses

    from frcnn.core.specs import DetectOptions
    from frcnn.inference.predictor import make_predictor
    from frcnn.model import load
    from frcnn.pipelines.jobs import LocalPool

    rows = {}
    for threads in threads_list:
        pool = LocalPool([make_predictor(load(dataclasses.replace(spec, threads=threads)), DetectOptions())])
        timed_pass(pool, paths[:1])  # warm-up
        rows[f"one process, {threads} thread{'s' if threads > 1 else ''}"] = summarize(
            [timed_pass(pool, paths) for _ in range(runs)])
    return rows


def ray_rows(spec, paths: list[Path], runs: int, workers_list: list[int]) -> dict:
    from frcnn.core.specs import DetectOptions, RayOptions
    from frcnn.pipelines.cluster import Cluster

    rows = {}
    for workers in workers_list:
        start = time.perf_counter()
        with Cluster(RayOptions(workers=workers, cpus_per_worker=1)) as cluster:
            started = time.perf_counter()
            pool = cluster.workers([spec], DetectOptions(), len(paths))
            pool.start()
            pool.wait_loaded()  # every worker has loaded before timing starts; the first pass warms them up
            ready = time.perf_counter()
            timed_pass(pool, paths[:workers])
            row = summarize([timed_pass(pool, paths) for _ in range(runs)])
            row.update(cluster_start_s=round(started - start, 2), workers_ready_s=round(ready - started, 2),
                       model_load_s=[round(s, 2) for s in pool.load_seconds])
        rows[f"Ray, {workers} worker{'s' if workers > 1 else ''} x 1 CPU"] = row
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("v1", "v2"), default="v2")
    parser.add_argument("--imgsz", type=int, default=800)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--pictures", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    from frcnn.core.specs import ModelSpec

    scratch = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    weights, kind = weights_for(args.model, scratch)
    spec = ModelSpec(args.model, weights=str(weights), imgsz=args.imgsz, device="cpu", backend=args.backend)
    paths = pictures(args.pictures)
    rows = local_rows(spec, paths, args.runs, [1, 2])
    rows.update(ray_rows(spec, paths, args.runs, [1, 2]))
    base = rows["one process, 1 thread"]
    single = rows["Ray, 1 worker x 1 CPU"]
    report = {"machine": machine(), "model": args.model, "weights": kind, "imgsz": args.imgsz,
              "runtime": args.backend, "pictures": len(paths), "runs": args.runs,
              "overhead_share_of_inference": round((single["other_median_s"] - base["other_median_s"])
                                                   / base["model_median_s"], 4),
              "rows": rows}
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def format_report(report: dict) -> str:
    lines = [machine_line(report["machine"]),
             f"{report['model']} ({report['weights']} weights), imgsz {report['imgsz']}, {report['runtime']}, "
             f"{report['pictures']} pictures x {report['runs']} runs"]
    header = ["", "s/picture min", "median", "model", "other", "pictures/s"]
    # With several workers, pictures overlap: the time outside the model is not the difference.
    lines.append(table(header, [[name, f"{row['wall_min_s']:.3f}", f"{row['wall_median_s']:.3f}",
                                 f"{row['model_median_s']:.3f}",
                                 MISSING if "2 workers" in name else f"{row['other_median_s']:.3f}",
                                 f"{1 / row['wall_median_s']:.3f}"] for name, row in report["rows"].items()]))
    for name, row in report["rows"].items():
        if "cluster_start_s" in row:
            lines.append(f"{name}: cluster start {row['cluster_start_s']} s, workers ready {row['workers_ready_s']} s "
                         f"(model loads {row['model_load_s']} s)")
    lines.append(f"Ray's overhead per picture (1 worker vs 1 thread, time outside the model): "
                 f"{100 * report['overhead_share_of_inference']:+.1f}% of the inference time")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
