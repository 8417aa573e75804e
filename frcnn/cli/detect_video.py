"""Detect objects in videos, a webcam or a stream with Faster R-CNN v1, v2, or both side by side.

    python detect_video.py --input clip.mp4 --model v2
    python detect_video.py --input videos/ --ray          # every video of a folder, shared out over Ray workers

Each video becomes an H.264 MP4 (plays in browsers) drawn by the pipeline in frcnn/video/; Ctrl-C keeps what was
processed as a playable video.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import threading
from dataclasses import dataclass

import cv2
import cv2.utils.logging
from tqdm import tqdm

from frcnn.analytics.geometry import ANCHORS
from frcnn.analytics.lines import UNNAMED as UNNAMED_LINE
from frcnn.analytics.lines import name_lines, parse_line
from frcnn.analytics.speed import SPEED_UNITS, parse_calibration
from frcnn.analytics.summary import report_lines
from frcnn.analytics.zones import name_zones, parse_zone
from frcnn.cli import options
from frcnn.cli import shared as du
from frcnn.core.errors import FrcnnError
from frcnn.core.files import VIDEO_SUFFIXES, read_bytes
from frcnn.core.progress import progress_bar
from frcnn.core.specs import AnalyticsOptions, DetectOptions, SpeedOptions, TrackOptions
from frcnn.inference.tracking import LOW_SCORE_FLOOR
from frcnn.pipelines.jobs import open_pool
from frcnn.pipelines.resume import ResumeBook, models_settings
from frcnn.samples import SAMPLE_VIDEO
from frcnn.video.outputs import VideoOutputs, Written, resume_settings, write_encoded
from frcnn.video.pipeline import (
    VideoResult,
    VideoRun,
    Window,
    detect_video_bytes,
    process_video,
)
from frcnn.video.relay import worker_relay
from frcnn.video.sources import VideoSource, describe_source, is_live, live_name, open_source

# PyTorch, and what needs it, is imported once the options are known to be good: --help answers at once.

DEFAULT_INPUT = SAMPLE_VIDEO
DEFAULT_TRACK_BUFFER_S = 1.0  # how long an unseen object keeps its ID

# ---------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Detect objects in a video with Faster R-CNN v1 / v2.")
    parser.add_argument("--input", nargs="+", default=[str(DEFAULT_INPUT)], metavar="SOURCE",
                        help="video files, folders (every video inside), glob patterns, a webcam index (0) or stream "
                             "URLs (rtsp://, http://); default: the sample clip")
    options.add_common_options(parser, window_keys="q or Esc: stop, keeping the video so far")
    options.add_ray_options(parser)
    parser.add_argument("--frame-stride", type=options.positive_int, default=1, metavar="N",
                        help="process every Nth frame (default 1: all); the output plays at the input rate / N")
    parser.add_argument("--max-frames", type=options.positive_int, metavar="N", help="stop after N processed frames")
    parser.add_argument("--batch", type=options.positive_int, default=1, metavar="N",
                        help="frames per inference call (default 1; larger helps on a GPU)")
    parser.add_argument("--resume", action="store_true",
                        help="skip each video whose outputs an earlier run with the same settings wrote completely "
                             "(an interrupted run carries on)")
    tracks = parser.add_argument_group("tracking (IDs across frames, counting)")
    tracks.add_argument("--track", action="store_true",
                        help="follow objects across frames (ByteTrack): each box gets an ID, counted at the end")
    tracks.add_argument("--trails", type=options.positive_int, metavar="N",
                        help="draw the last N centre points of each track (implies --track)")
    tracks.add_argument("--count-line", type=_checked(parse_line), action="append", metavar="[NAME=]X1,Y1,X2,Y2",
                        help="count tracks crossing this line, per class and direction; pixels, or fractions of "
                             "the width and height when all four are within 0..1; give it again for more lines, "
                             "each with a name (implies --track)")
    tracks.add_argument("--detect-every", type=options.positive_int, default=1, metavar="N",
                        help="run the model on every Nth processed frame only; the tracker carries the boxes "
                             "in between (implies --track; default 1)")
    tracks.add_argument("--track-buffer", type=options.seconds_up_to_an_hour, metavar="SECONDS",
                        help=f"how long an object that is not seen keeps its ID (default {DEFAULT_TRACK_BUFFER_S:g}; "
                             f"implies --track)")
    add_analytics_options(parser)
    following = parser.add_argument_group("following the run from another program (frcnn-serve's jobs use these)")
    following.add_argument("--status", metavar="FILE",
                           help="append the progress (a few times a second) and each analytics event, as they "
                                "happen, to FILE as JSON lines (with --ray, the workers send them here)")
    following.add_argument("--preview", metavar="FILE",
                           help="keep FILE the newest drawn frame, as JPEG (with --ray too)")
    return parser


def add_analytics_options(parser: argparse.ArgumentParser) -> None:
    """Zones, speed, the heatmap and crops per track: each implies --track."""
    group = parser.add_argument_group("video analytics (each implies --track)")
    group.add_argument("--zone", type=_checked(parse_zone), action="append", metavar="NAME=X1,Y1,X2,Y2,X3,Y3,...",
                       help="a polygon (or NAME=rect:X1,Y1,X2,Y2) in pixels, or fractions of the frame when all "
                            "values are within 0..1: objects inside per class, entries, exits and dwell times; "
                            "give it again for more zones")
    group.add_argument("--anchor", choices=ANCHORS,
                       help="the point of a box that is in a zone, heats the heatmap and moves at its speed: "
                            "bottom (default: the bottom centre, where it meets the ground) or center")
    group.add_argument("--speed", action="store_true",
                       help="each track's speed, from a calibration: --meters-per-pixel or --calibrate")
    group.add_argument("--meters-per-pixel", type=options.positive_number, metavar="M",
                       help="the ground's scale in a top-down view (implies --speed)")
    group.add_argument("--calibrate", type=_checked(parse_calibration), metavar="X1,Y1,...,X4,Y4=W,H",
                       help="four picture points, in order around a real W x H metre rectangle on the ground "
                            "(lane markings, a court): a perspective calibration (implies --speed)")
    group.add_argument("--speed-unit", choices=list(SPEED_UNITS), help="km/h (default), m/s or mph")
    group.add_argument("--heatmap", action="store_true",
                       help="overlay where tracked objects have been, and write <name>_<model>_heatmap.png")
    group.add_argument("--heatmap-decay", type=options.positive_number, metavar="SECONDS",
                       help="the overlay's heat halves every SECONDS (default: it never fades)")
    group.add_argument("--save-crops", action="store_true",
                       help="save each track's best view once, when it ends: crops/<model>/<class>/<name>_<track>.jpg")


def _checked(parse):
    """An argparse type from a parser that raises ValueError: the message becomes a one-line usage error."""
    def parse_option(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse_option


def track_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrackOptions | None:
    """Tracking as a value; --trails, --count-line, --detect-every, --track-buffer and every analytics option
    imply it."""
    analytics = analytics_options(args, parser)
    if not (args.track or args.trails or args.detect_every > 1 or args.track_buffer is not None or analytics.enabled):
        return None
    buffer = DEFAULT_TRACK_BUFFER_S if args.track_buffer is None else args.track_buffer
    return TrackOptions(trails=args.trails or 0, detect_every=args.detect_every, lost_seconds=buffer,
                        analytics=analytics)


def analytics_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AnalyticsOptions:
    """Lines, zones, speed, heatmap and crops as one value; a usage error where they do not fit together."""
    try:
        lines, zones = name_lines(args.count_line or []), name_zones(args.zone or [])
    except ValueError as error:
        parser.error(str(error))
    if args.heatmap_decay is not None and not args.heatmap:
        parser.error("--heatmap-decay is for --heatmap")
    measured = AnalyticsOptions(lines=lines, zones=zones, speed=speed_options(args, parser), heatmap=args.heatmap,
                                heatmap_half_life=args.heatmap_decay or 0.0, crops=args.save_crops)
    if args.anchor is not None and not (zones or measured.speed or args.heatmap):
        parser.error("--anchor is for --zone, --speed and --heatmap")
    return dataclasses.replace(measured, anchor=args.anchor or "bottom")


def speed_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SpeedOptions | None:
    """The calibration and unit of --speed (which a calibration implies); None without either."""
    if args.meters_per_pixel is not None and args.calibrate is not None:
        parser.error("--meters-per-pixel and --calibrate are two calibrations: choose one")
    calibrated = args.meters_per_pixel is not None or args.calibrate is not None
    if args.speed and not calibrated:
        parser.error("--speed needs a calibration: --meters-per-pixel M (a top-down view) or "
                     "--calibrate X1,Y1,...,X4,Y4=W,H (four points of a W x H metre rectangle)")
    if not calibrated:
        if args.speed_unit is not None:
            parser.error("--speed-unit is for --speed")
        return None
    corners, rectangle = args.calibrate or (None, None)
    return SpeedOptions(meters_per_pixel=args.meters_per_pixel, corners=corners, rectangle=rectangle,
                        unit=args.speed_unit or "km/h")


def output_base_names(sources: list[str]) -> dict[str, str]:
    """Each input's base name for its outputs, none shared: files' from their paths, cameras' and streams' from
    what they are, numbered where two would meet."""
    return du.output_names(sources, fixed=lambda source: live_name(source) if is_live(source) else None)


@dataclass(frozen=True)
class VideoJob:
    """What one detect_video.py run does, decided once from the options."""

    sources: list[str]  # in order; cameras and streams are read here even with --ray
    errors: list[str]  # one line per input that names nothing usable
    total: int  # inputs given, for the closing count
    specs: list
    detect: DetectOptions
    ray: object
    run: VideoRun
    output: str
    records: bool
    resume: bool


def video_job(args: argparse.Namespace, parser: argparse.ArgumentParser) -> VideoJob:
    """The options as one value; usage errors (exit 2) before anything is opened or loaded."""
    sources, errors = du.expand_inputs(args.input, VIDEO_SUFFIXES, "videos", passthrough=is_live)
    files = [source for source in sources if not is_live(source)]
    specs = options.model_specs(args, parser, files)
    detect = options.detect_options(args, parser)
    ray = options.ray_options(args, parser)
    if ray is not None and args.show:
        parser.error("--show is not available with --ray: the videos are drawn on the workers")
    tracking = track_options(args, parser)
    run = VideoRun(frame_stride=args.frame_stride, max_frames=args.max_frames, batch=args.batch, show=args.show,
                   model_option=args.model, draw=options.draw_options(args), threshold=detect.threshold,
                   tracking=tracking, status=args.status, preview=args.preview)
    if tracking is not None:  # the tracker's second association needs the low-score boxes too
        detect = dataclasses.replace(detect, threshold=min(detect.threshold, LOW_SCORE_FLOOR),
                                     asked_threshold=detect.threshold)
    total = len(sources) + len(errors)
    if ray is not None:
        errors = errors + [f"{source}: a camera or stream is read on this machine; run it without --ray"
                           for source in sources if is_live(source)]
        sources = files
    return VideoJob(sources, errors, total, specs, detect, ray, run, args.output, args.json, args.resume)


def quiet_opencv() -> None:
    """OpenCV's and its FFmpeg's messages while probing an input would bury our one-line error."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet; set it to 32 or more to debug a stream


def probe_sources(sources: list[str], errors: list[str]) -> tuple[list[str], dict[str, VideoSource]]:
    """The sources that open as videos, and the live ones held open: what is no video is said before any model
    loads. Streams and cameras stay open for their turn (opening them again could wait again); files are opened
    again when their turn comes."""
    good, opened = [], {}
    for source in sources:
        try:
            capture = open_source(source)
        except FrcnnError as error:
            errors.append(str(error))
            continue
        good.append(source)
        if is_live(source):
            opened[source] = capture
        else:
            capture.close()
    return good, opened


def detect_videos(job: VideoJob, good: list[str], opened: dict[str, VideoSource], stopper: du.StopOnSignal) -> int:
    """Load the models (here or on Ray workers), then process every video not done yet; the exit code."""
    written = Written(du.prepare_output_dir(job.output), output_base_names(job.sources), job.records)
    with contextlib.ExitStack() as stack:
        pool = open_pool(stack, job.ray, job.specs, job.detect, len(good))
        written.book = ResumeBook(written.out_dir, {**models_settings(pool.models, job.specs),
                                                    "classes": job.detect.classes,
                                                    "outputs": resume_settings(job.run, job.records)})
        todo = written.todo(good, job.run, job.resume)
        stopper.graceful = True
        if job.ray is None:
            failed = process_here(todo, opened, pool.predictors, job.run, written, stopper.event)
        else:
            failed = process_on_workers(pool, todo, job.run, written, stopper.event)
    failed += len(job.errors)
    if failed and job.total > 1:
        print(f"{failed} of {job.total} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    job = video_job(parser.parse_args(argv), parser)
    quiet_opencv()
    errors = list(job.errors)
    good, opened = probe_sources(job.sources, errors)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not good:
        return 1
    job = dataclasses.replace(job, errors=errors)
    in_flight = "the frames in flight on the workers" if job.ray is not None else "the frames in flight"
    try:
        return du.run_stoppable(lambda stopper: detect_videos(job, good, opened, stopper),
                                "interrupted: the videos written so far are kept; the same command with --resume "
                                "computes the one cut short again and carries on", in_flight)
    finally:
        for capture in opened.values():
            capture.close()


def process_here(sources: list[str], opened: dict[str, VideoSource], predictors: list, run: VideoRun,
                 written: Written, stop: threading.Event) -> int:
    """Each video in turn in this process, until `stop` is set; returns how many failed."""
    failed = 0
    window = Window("", stop) if run.show else None
    for number, spec in enumerate(sources, start=1):
        if stop.is_set():
            break
        try:
            source = opened.pop(spec, None) or open_source(spec)
        except FrcnnError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        try:
            outputs = written.outputs(spec, run)
            du.check_not_an_input(outputs.written(), [name for name in written.names if not is_live(name)], spec)
            counter = f"[{number}/{len(sources)}] " if len(sources) > 1 else ""
            print(counter + describe_source(source), file=sys.stderr)
            if window is not None:
                window.title = f"{source.name} ({run.model_option})"
            written.unseal(outputs.video)
            result = detect_to_files(source, predictors, run, outputs, stop, window)
        except FrcnnError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        finally:
            source.close()
        if not stop.is_set() and not is_live(spec):  # a video cut short is not done: a resumed run redoes it
            written.seal(outputs.video, spec, outputs.landed())
        report(spec, result, outputs)
    return failed


def detect_to_files(source: VideoSource, predictors: list, run: VideoRun, outputs: VideoOutputs,
                    stop: threading.Event, window: Window | None) -> VideoResult:
    """One opened video's outputs, written together: none if it fails, and records left from earlier runs go."""
    with contextlib.ExitStack() as stack:
        temporary, stage = outputs.staged(stack)
        result = process_video(source, predictors, run, temporary[outputs.video],
                               outputs.records and temporary[outputs.records],
                               outputs.tracks and temporary[outputs.tracks], stop, window,
                               {model: files.at(temporary, stage) for model, files in outputs.analytics.items()})
        if result.frames == 0:  # leaving the block by an exception keeps no file
            raise FrcnnError(f"{source.spec}: no frame could be read")
    return result


def process_on_workers(pool, sources: list[str], run: VideoRun, written: Written, stop: threading.Event) -> int:
    """One video per Ray task; each finished one is written here as it comes back. Returns how many failed."""
    plan = {spec: written.outputs(spec, run) for spec in sources}

    def prepare(spec: str) -> tuple:
        du.check_not_an_input(plan[spec].written(), list(written.names), spec)
        return read_bytes(spec), spec, written.names[spec], run, written.records, run.tracking is not None, relay

    failed = 0
    with worker_relay(pool.ray, run.status, run.preview, stop) as relay, \
            progress_bar(total=len(sources), desc="videos", unit="video", dynamic_ncols=True) as bar:
        for spec, _, outcome in pool.imap(detect_video_bytes, sources, prepare, stop, du.RESUME_HINT):
            bar.update(1)
            if isinstance(outcome, FrcnnError):
                tqdm.write(f"error: {outcome}", file=sys.stderr)
                failed += 1
                continue
            written.unseal(plan[spec].video)
            write_encoded(outcome, plan[spec])
            if not outcome.cut_short:  # a video cut short is not done: a resumed run redoes it
                written.seal(plan[spec].video, spec, plan[spec].landed())
            tqdm.write(outcome.description, file=sys.stderr)
            report(spec, outcome.result, plan[spec])
    return failed


def report(spec: str, result: VideoResult, outputs: VideoOutputs) -> None:
    """The lines a finished video gives: what was written (stdout), tracking and speed; warnings on stderr."""
    if result.unreadable:
        tqdm.write(f"warning: {result.unreadable} frame(s) of {spec} could not be read and were skipped",
                   file=sys.stderr)
    crops = [f"{files.crops}/" for files in outputs.analytics.values() if files.crops is not None]
    tqdm.write(f"{result.frames} frames -> " + ", ".join([*map(str, outputs.written()), *crops]), file=sys.stdout)
    for summary in result.summaries:
        tqdm.write(tracking_summary(summary, several=len(result.summaries) > 1), file=sys.stdout)
    tqdm.write(result.speed, file=sys.stdout)


def tracking_summary(summary: dict, several: bool) -> str:
    """`tracked: 31 car, 12 person` (with the model's name when there are several), the one unnamed line's
    counts, and what the analytics measured (named lines, zones, speeds)."""
    prefix = f"{summary['model']} " if several else ""
    found = ", ".join(f"{n} {name}" for name, n in summary["distinct"].items()) or "nothing"
    text = f"{prefix}tracked: {found}"
    measured = summary.get("analytics", {})
    lines = measured.get("lines", {})
    unnamed = "crossings" in summary and set(lines) <= {UNNAMED_LINE}
    for direction, counts in (summary["crossings"].items() if unnamed else ()):
        crossed = ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"
        text += f"\n{prefix}crossed {direction.replace('_', ' ')}: {crossed}"
    for line in report_lines(measured, named_lines=not unnamed):
        text += f"\n{prefix}{line}"
    return text


if __name__ == "__main__":
    sys.exit(main())
