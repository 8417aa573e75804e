"""The service under load against detect_image.py on the same pictures and settings, in one run.

    python benchmarks/serve_load.py                          # v2, imgsz 640, the default runtime, 16 requests a level
    python benchmarks/serve_load.py --model v1 --imgsz 800 --requests 24 --json load.json

A server (serve.py) listens on 127.0.0.1 only; a bounded asynchronous client sends one picture a request, the real
photos of ../shared/media in turn, at concurrency 1, 2, 4 and 8: each level sends `--requests` requests and stops
after `--max-seconds`. Per level: pictures/s, latency p50/p95/p99, errors and 429s. Beside it, detect_image.py's
own pictures/s in steady state on the same pictures: the time of a run over N+1 pictures less that of a run over 1
(loading and exporting cancel out). The server's peak memory is its VmHWM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SAMPLES, SHARED_MEDIA, OthersLoad, machine, machine_line, run_script, table, weights_for

LEVELS = (1, 2, 4, 8)
READY_TIMEOUT_S = 600


def pictures() -> list[Path]:
    """The real photos (the write-up's and the others), or the sample photo where there are none."""
    found = sorted(p for p in [*SHARED_MEDIA.glob("*.jpg"), *(SHARED_MEDIA / "seed").glob("*.jpg")]
                   if not p.name.startswith("reference_"))
    return found or [SAMPLES / "coffee.jpg"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model_options: list[str], queue_size: int, max_batch: int,
                 folder: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    log = open(folder / "server.log", "wb")
    server = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), *model_options, "--port", str(port),
                               "--queue-size", str(queue_size), "--max-batch", str(max_batch), "--timeout-s", "600",
                               "--jobs-dir", str(folder / "jobs")], stdout=log, stderr=log, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server stopped:\n{(folder / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the server was not ready in time")


async def load_level(url: str, paths: list[Path], concurrency: int, requests: int, max_seconds: float) -> dict:
    """`requests` requests (or as many as fit in `max_seconds`) from `concurrency` clients at once."""
    import httpx

    bodies = [path.read_bytes() for path in paths]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = 0
    start = time.perf_counter()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.perf_counter() - start < max_seconds:
            body = bodies[sent % len(bodies)]
            sent += 1
            began = time.perf_counter()
            try:
                answer = await http.post(f"{url}/v1/detect", content=body, headers={"Content-Type": "image/jpeg"})
                status = answer.status_code
            except httpx.TransportError:
                status = 0  # no answer at all: a lost request
            latencies.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1

    async with httpx.AsyncClient(timeout=max_seconds + 60) as http:
        await asyncio.gather(*[client(http) for _ in range(concurrency)])
    seconds = time.perf_counter() - start
    ok = statuses.get(200, 0)
    ordered = sorted(latencies)

    def percentile(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return {"concurrency": concurrency, "requests": len(latencies), "ok": ok, "seconds": round(seconds, 2),
            "pictures_per_s": round(ok / seconds, 3), "p50_s": round(statistics.median(ordered), 3),
            "p95_s": round(percentile(0.95), 3), "p99_s": round(percentile(0.99), 3),
            "rejected_429": statuses.get(429, 0), "lost": statuses.get(0, 0),
            "errors": sum(n for status, n in statuses.items() if status not in (0, 200, 429))}


def cli_pictures_per_s(model_options: list[str], paths: list[Path], count: int, folder: Path) -> dict:
    """detect_image.py's steady pictures/s: a run over count+1 pictures less a run over 1, on the same photos."""
    timings = {}
    for size in (1, count + 1):
        inputs = folder / f"cli-{size}"
        inputs.mkdir()
        for index in range(size):
            source = paths[index % len(paths)]
            shutil.copy(source, inputs / f"{index:03d}{source.suffix}")
        start = time.perf_counter()
        run_script("detect_image.py", ["--input", inputs, "--json", "--output", folder / f"out-{size}",
                                       *model_options])
        timings[size] = time.perf_counter() - start
    seconds = timings[count + 1] - timings[1]
    return {"pictures": count, "seconds": round(seconds, 2), "pictures_per_s": round(count / seconds, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("v1", "v2"), default="v2")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level (default 16)")
    parser.add_argument("--max-seconds", type=float, default=300, help="time limit per level (default 300)")
    parser.add_argument("--queue-size", type=int, default=16, help="the server's --queue-size (default 16)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1],
                        help="the server's --max-batch; several values load one server each in turn (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frcnn-serve-load-") as scratch:
        folder = Path(scratch)
        weights, kind = weights_for(args.model, Path(os.environ.get("FRCNN_BENCH_DIR", folder)))
        model_options = ["--model", args.model, "--weights", str(weights), "--imgsz", str(args.imgsz),
                         "--backend", args.backend]
        paths = pictures()
        info = machine()
        print(machine_line(info), file=sys.stderr)
        others = OthersLoad()
        levels, peak = [], 0.0
        for max_batch in args.max_batch:
            server, url = start_server(model_options, args.queue_size, max_batch, folder)
            try:
                for concurrency in args.levels:
                    level = asyncio.run(load_level(url, paths, concurrency, args.requests, args.max_seconds))
                    levels.append({"max_batch": max_batch, **level})
                    print(f"--max-batch {max_batch}, concurrency {concurrency}: {level}", file=sys.stderr)
                peak = max(peak, peak_memory_mb(server.pid))
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
        cli = cli_pictures_per_s(model_options, paths, args.requests, folder)
        load = others.others()
    report = {"machine": info, "weights": kind, "model": args.model, "imgsz": args.imgsz, "backend": args.backend,
              "pictures": [p.name for p in paths], "levels": levels, "server_peak_rss_mb": round(peak),
              "cli": cli, "others_load_cores": round(load["cores"], 2)}
    best = max(level["pictures_per_s"] for level in levels)
    print(machine_line(info))
    print(f"{args.model} at {args.imgsz} px ({kind} weights, --backend {args.backend}), {len(paths)} real photos in "
          f"turn; other processes kept {load['cores']:.2f} cores busy meanwhile")
    print(table(["max batch", "concurrency", "requests", "pictures/s", "p50 s", "p95 s", "p99 s", "429", "errors",
                 "lost"],
                [[level["max_batch"], level["concurrency"], level["requests"], f"{level['pictures_per_s']:.2f}",
                  level["p50_s"],
                  level["p95_s"], level["p99_s"], level["rejected_429"], level["errors"], level["lost"]]
                 for level in levels]))
    print(f"detect_image.py: {cli['pictures_per_s']:.2f} pictures/s ({cli['pictures']} pictures in "
          f"{cli['seconds']} s); the server at its best: {best:.2f} pictures/s "
          f"(x{best / cli['pictures_per_s']:.2f}); server peak memory {peak:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
