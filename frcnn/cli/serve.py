"""Serve v1, v2 or both over HTTP: the scripts' models and options behind an API, a web page and the labelling
tools' backends.

    python serve.py --model v2                          # http://127.0.0.1:8000 (the API's own page: /docs)
    python serve.py --model both --weights v1.pth v2.pth --host 0.0.0.0 --api-key SECRET
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core.log import log, show_messages_on_stderr
from frcnn.core.specs import ModelSpec, model_names
from frcnn.serve.errors import ServiceError
from frcnn.serve.settings import LOCAL_HOSTS, ServeSettings

API_KEY_VARIABLE = "FRCNN_API_KEY"
GRACEFUL_SHUTDOWN_S = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve Faster R-CNN v1 / v2 over HTTP: pictures, video jobs, a web "
                                                 "page, and pre-annotations for Label Studio and CVAT.")
    options.add_model_options(parser)
    options.add_detect_options(parser, threshold_help=f"the default lowest score to keep, 0..1 (default "
                                                      f"{options.DEFAULT_THRESHOLD}); a request may ask for another")
    listen = parser.add_argument_group("listening")
    listen.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; any other needs an API key)")
    listen.add_argument("--port", type=options.positive_int, default=8000, help="port (default 8000)")
    listen.add_argument("--api-key", metavar="KEY", default=os.environ.get(API_KEY_VARIABLE),
                        help=f"every /v1 and /integrations request must send it (Authorization: Bearer KEY or "
                             f"X-API-Key: KEY); default: ${API_KEY_VARIABLE}")
    listen.add_argument("--cors", nargs="+", metavar="ORIGIN", default=[],
                        help="origins whose web pages may call the API (e.g. http://localhost:8080)")
    limits = parser.add_argument_group("limits")
    defaults = ServeSettings()
    limits.add_argument("--max-upload-mb", type=options.positive_number, default=defaults.max_upload_mb,
                        metavar="MB", help=f"largest picture request (default {defaults.max_upload_mb:g}; 413 above)")
    limits.add_argument("--max-video-mb", type=options.positive_number, default=defaults.max_video_mb, metavar="MB",
                        help=f"largest clip a job may upload (default {defaults.max_video_mb:g})")
    limits.add_argument("--max-megapixels", type=options.positive_number, default=defaults.max_pixels / 1e6,
                        metavar="MP", help=f"largest picture, read from its header before decoding (default "
                                           f"{defaults.max_pixels / 1e6:g}; 413 above)")
    limits.add_argument("--max-files", type=options.positive_int, default=defaults.max_files, metavar="N",
                        help=f"pictures in one request (default {defaults.max_files})")
    limits.add_argument("--queue-size", type=options.positive_int, default=defaults.queue_size, metavar="N",
                        help=f"pictures waiting or being detected (default {defaults.queue_size}; 429 with "
                             f"Retry-After above)")
    limits.add_argument("--timeout-s", type=options.positive_number, default=defaults.timeout_s, metavar="S",
                        help=f"a picture request's limit (default {defaults.timeout_s:g}; 504 past it)")
    limits.add_argument("--allow-sources", nargs="+", metavar="PREFIX", default=[],
                        help="URL prefixes and server folders that requests may name as a source (a picture's "
                             "URL, a stream, a video on the server); default: none")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch", type=options.positive_int, default=defaults.max_batch, metavar="N",
                          help=f"pictures of one model gathered into one inference call (default "
                               f"{defaults.max_batch}: measured no faster on a CPU; try more on a GPU)")
    batching.add_argument("--batch-wait-ms", type=options.non_negative_number, default=defaults.batch_wait_ms,
                          metavar="MS", help=f"how long a batch waits to fill (default {defaults.batch_wait_ms:g})")
    jobs = parser.add_argument_group("video jobs")
    jobs.add_argument("--jobs-dir", default=str(defaults.jobs_dir), metavar="DIR",
                      help=f"where jobs' clips and outputs go, with their record jobs.sqlite3 (default "
                           f"{defaults.jobs_dir})")
    jobs.add_argument("--max-jobs", type=options.positive_int, default=defaults.max_jobs, metavar="N",
                      help=f"jobs waiting to run (default {defaults.max_jobs}; 429 above)")
    jobs.add_argument("--job-workers", type=options.positive_int, default=defaults.job_workers, metavar="N",
                      help=f"jobs running at once, each a detect_video.py process (default {defaults.job_workers})")
    cluster = parser.add_argument_group(f"Ray Serve (many machines: {options.RAY_INSTALL}, with ray[serve])")
    cluster.add_argument("--ray", nargs="?", const="", type=options.ray_address, metavar="ADDRESS",
                         help="serve from a Ray cluster: HOST:PORT of its head, or auto for the one 'ray start' "
                              "began on this machine; with no address (and no RAY_ADDRESS), a local Ray for the server")
    cluster.add_argument("--replicas", type=options.positive_int, metavar="N",
                         help="replicas of each model, each with its own copy (default 1; with --min-replicas or "
                              "--max-replicas: how many to start with)")
    cluster.add_argument("--min-replicas", type=options.positive_int, metavar="N",
                         help="autoscale each model's replicas, down to N (default 1)")
    cluster.add_argument("--max-replicas", type=options.positive_int, metavar="N",
                         help="autoscale each model's replicas, up to N (default: --replicas, or --min-replicas)")
    cluster.add_argument("--cpus-per-replica", type=options.positive_number, metavar="C",
                         help="CPUs each model replica reserves, and the threads its model uses (default 1)")
    labelling = parser.add_argument_group("labelling tools")
    labelling.add_argument("--write-cvat-function", metavar="DIR",
                           help="write CVAT's detector function for each model (DIR/v1, DIR/v2: function.yaml with "
                                "the model's labels, and main.py, which hands CVAT's requests on to this server at "
                                "--host and --port), then exit without serving")
    return parser


def serve_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServeSettings:
    if args.host not in LOCAL_HOSTS and not args.api_key:
        parser.error(f"--host {args.host} lets other machines in: give --api-key KEY (or set {API_KEY_VARIABLE})")
    return ServeSettings(
        host=args.host, port=args.port, api_key=args.api_key or None, max_upload_mb=args.max_upload_mb,
        max_video_mb=args.max_video_mb, max_pixels=int(args.max_megapixels * 1e6), max_files=args.max_files,
        queue_size=args.queue_size, timeout_s=args.timeout_s, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, allow_sources=tuple(args.allow_sources), cors=tuple(args.cors),
        jobs_dir=Path(args.jobs_dir).resolve(), max_jobs=args.max_jobs, job_workers=args.job_workers)


def job_model_arguments(specs: list[ModelSpec], default_model: str, threshold: float,
                        classes: frozenset[int] | None):
    """What a video job's detect_video.py is told of the models: the server's own options for the models it asks
    for (its `model` form field, or the server's default)."""
    by_name = {spec.name: spec for spec in specs}

    def arguments(model: str | None) -> list[str]:
        option = model or default_model
        names = model_names(option) if option in ("v1", "v2", "both") else []
        if not names or any(name not in by_name for name in names):
            raise ServiceError(422, f"model '{option}': this server runs {', '.join(by_name)}"
                                    + (", both" if len(by_name) > 1 else ""))
        chosen = [by_name[name] for name in names]
        first = chosen[0]
        found = ["--model", option, "--imgsz", str(first.imgsz), "--device", first.device, "--backend",
                 first.backend, "--proposals", str(first.proposals), "--precision", first.precision,
                 "--threshold", str(threshold)]
        if any(spec.weights for spec in chosen):
            found += ["--weights", *[str(Path(spec.weights).resolve()) for spec in chosen]]
        if first.labels:
            found += ["--labels", str(Path(first.labels).resolve())]
        if first.half:
            found.append("--half")
        if first.calibration:
            found += ["--calibration", str(Path(first.calibration[0]).resolve())]
        if classes:
            found += ["--classes", *map(str, sorted(classes))]
        return found

    return arguments


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    specs = options.model_specs(args, parser)
    detect = options.detect_options(args, parser)
    settings = serve_settings(args, parser)
    show_messages_on_stderr()
    if args.write_cvat_function:
        return du.run_main(lambda: write_cvat_function(Path(args.write_cvat_function), specs, settings), "stopped")
    if args.ray is not None:
        for name, value in (("--min-replicas", args.min_replicas), ("--replicas", args.replicas)):
            if value is not None and args.max_replicas is not None and value > args.max_replicas:
                parser.error(f"{name} {value} is above --max-replicas {args.max_replicas}")
        return du.run_main(lambda: serve_on_ray(specs, detect, args.model, settings, args), "stopped")
    options.refuse_without_ray(args, parser, {"--replicas": args.replicas, "--min-replicas": args.min_replicas,
                                              "--max-replicas": args.max_replicas,
                                              "--cpus-per-replica": args.cpus_per_replica})
    return du.run_main(lambda: serve(specs, detect, args.model, settings), "stopped")


def write_cvat_function(folder: Path, specs: list[ModelSpec], settings: ServeSettings) -> int:
    """CVAT's detector function per model, pointing at this server's address; nothing is served."""
    from frcnn.serve.cvat import write_cvat_functions

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}"
    for path in write_cvat_functions(folder, specs, url, api_key=bool(settings.api_key)):
        print(path)
    log.info(f"deploy each with: nuctl deploy --project-name cvat --path {folder / specs[-1].name} --platform local "
             f"(the functions call {url}: set FRCNN_URL in function.yaml to an address CVAT's functions can reach)")
    return 0


def serve_on_ray(specs: list[ModelSpec], detect, default_model: str, settings: ServeSettings,
                 args: argparse.Namespace) -> int:
    """The same API deployed on Ray Serve: a deployment per model, scaled as the options say."""
    from frcnn.serve import on_ray

    scaling = on_ray.Scaling(replicas=args.replicas or 1, min_replicas=args.min_replicas,
                             max_replicas=args.max_replicas, cpus=args.cpus_per_replica or 1.0)
    return on_ray.serve_on_ray(specs, detect, default_model, settings, args.ray or None, scaling,
                               job_model_arguments([on_ray.anchored(spec) for spec in specs], default_model,
                                                   detect.threshold, detect.classes))


def serve(specs: list[ModelSpec], detect, default_model: str, settings: ServeSettings) -> int:
    """Run the API under uvicorn until Ctrl-C or SIGTERM; 1 when the models cannot load."""
    import uvicorn

    from frcnn.core.specs import DrawOptions
    from frcnn.serve.app import create_app
    from frcnn.serve.detection import DetectionService
    from frcnn.serve.jobs import JobRunner
    from frcnn.serve.metrics import Metrics

    metrics = Metrics()
    service = DetectionService(specs, detect, DrawOptions(), default_model, settings, metrics)
    runner = JobRunner(settings, job_model_arguments(specs, default_model, detect.threshold, detect.classes), metrics)
    failed: list[str] = []

    def stop_on_load_error(message: str) -> None:
        failed.append(message)
        server.should_exit = True

    app = create_app(service, runner, settings, metrics, on_load_error=stop_on_load_error)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                                           timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S))
    log.info(f"serving on http://{settings.host}:{settings.port} (the API's page: /docs; jobs in "
             f"{settings.jobs_dir})")
    server.run()
    if failed:
        return du.fail(failed[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
