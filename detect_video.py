"""Detect objects in videos, a webcam or a stream with Faster R-CNN v1, v2, or both side by side.

    python detect_video.py --input clip.mp4 --model v2
    python detect_video.py --input videos/ --ray          # every video of a folder, shared out over Ray workers

Each video becomes an H.264 MP4 (plays in browsers) drawn by the pipeline in video.py; Ctrl-C keeps what was
processed as a playable video.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import cv2.utils.logging
from tqdm import tqdm

import detect_utils as du
from frcnn.cli import options
from frcnn.core.errors import DetectError
from frcnn.pipelines.jobs import open_pool
from frcnn.core.specs import TrackOptions
from frcnn.inference.counting import parse_count_line
from frcnn.inference.tracking import LOW_SCORE_FLOOR
from frcnn.video.pipeline import EncodedVideo, VideoResult, VideoRun, Window, detect_video_bytes, process_video
from frcnn.video.sources import VideoSource, describe_source, is_live, live_name, open_source
from frcnn.core.files import AtomicOutputs, VIDEO_SUFFIXES, read_bytes

# PyTorch, and what needs it, is imported once the options are known to be good: --help answers at once.

DEFAULT_INPUT = Path(__file__).resolve().parent / "input" / "sample.mp4"

# ---------------------------------------------------------------- interrupts


class StopOnSignal:
    """First Ctrl-C or SIGTERM: stop reading and finish what is in flight. A second Ctrl-C aborts."""

    def __init__(self):
        self.event = threading.Event()
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopOnSignal":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        print(f"\n{signal.Signals(signum).name}: finishing the frames in flight (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_code(self) -> int:
        return 128 + self.signal if self.signal else 0


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
    tracks = parser.add_argument_group("tracking (IDs across frames, counting)")
    tracks.add_argument("--track", action="store_true",
                        help="follow objects across frames (ByteTrack): each box gets an ID, counted at the end")
    tracks.add_argument("--trails", type=options.positive_int, metavar="N",
                        help="draw the last N centre points of each track (implies --track)")
    tracks.add_argument("--count-line", type=_count_line, metavar="X1,Y1,X2,Y2",
                        help="count tracks crossing this line, per class and direction; pixels, or fractions of "
                             "the width and height when all four are within 0..1 (implies --track)")
    tracks.add_argument("--detect-every", type=options.positive_int, default=1, metavar="N",
                        help="run the model on every Nth processed frame only; the tracker carries the boxes "
                             "in between (implies --track; default 1)")
    tracks.add_argument("--track-buffer", type=options.seconds_up_to_an_hour, default=1.0, metavar="SECONDS",
                        help="how long an object that is not seen keeps its ID (default 1)")
    return parser


def _count_line(text: str) -> tuple[float, float, float, float]:
    try:
        return parse_count_line(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def track_options(args: argparse.Namespace) -> TrackOptions | None:
    """Tracking as a value; --trails, --count-line and --detect-every each imply it."""
    if not (args.track or args.trails or args.count_line or args.detect_every > 1):
        return None
    return TrackOptions(trails=args.trails or 0, count_line=args.count_line, detect_every=args.detect_every,
                        lost_seconds=args.track_buffer)


def output_base_names(sources: list[str]) -> dict[str, str]:
    """Each input's base name for its outputs, none shared: files' from their paths, cameras' and streams' from
    what they are, numbered where two would meet."""
    return du.output_names(sources, fixed=lambda source: live_name(source) if is_live(source) else None)


@dataclass(frozen=True)
class VideoOutputs:
    """Where one video's outputs go: the drawn video, and its records when asked for."""

    video: Path
    records: Path | None
    tracks: Path | None

    @classmethod
    def named(cls, out_dir: Path, name: str, run: VideoRun, records: bool) -> "VideoOutputs":
        video = out_dir / f"{name}_{run.model_option}.mp4"
        return cls(video, video.with_suffix(".jsonl") if records else None,
                   video.with_name(f"{video.stem}_tracks.jsonl") if run.tracking else None)

    def written(self) -> list[Path]:
        return [p for p in (self.video, self.records, self.tracks) if p is not None]

    def stale(self) -> list[Path]:
        """Records an earlier run left beside the video: they would describe another video."""
        return [self.video.with_suffix(".jsonl"), self.video.with_name(f"{self.video.stem}_tracks.jsonl")]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sources, errors = du.expand_inputs(args.input, VIDEO_SUFFIXES, "videos", passthrough=is_live)
    files = [source for source in sources if not is_live(source)]
    total = len(sources) + len(errors)
    specs = options.model_specs(args, parser, files)
    detect = options.detect_options(args, parser)
    ray = options.ray_options(args, parser)
    if ray is not None and args.show:
        parser.error("--show is not available with --ray: the videos are drawn on the workers")
    tracking = track_options(args)
    run = VideoRun(frame_stride=args.frame_stride, max_frames=args.max_frames, batch=args.batch, show=args.show,
                   model_option=args.model, draw=options.draw_options(args), threshold=detect.threshold,
                   tracking=tracking)
    if tracking is not None:  # the tracker's second association needs the low-score boxes too
        detect = dataclasses.replace(detect, threshold=min(detect.threshold, LOW_SCORE_FLOOR))
    # OpenCV's and its FFmpeg's messages while probing an input would bury our one-line error.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet; set it to 32 or more to debug a stream
    if ray is not None:
        errors += [f"{source}: a camera or stream is read on this machine; run it without --ray"
                   for source in sources if is_live(source)]
        sources = files
    # What is no video, or cannot be opened, is said before any model loads. Streams and cameras stay open
    # for their turn (opening them again could wait again); files are opened again when their turn comes.
    good, opened = [], {}
    for source in sources:
        try:
            capture = open_source(source)
        except DetectError as error:
            errors.append(str(error))
            continue
        good.append(source)
        if is_live(source):
            opened[source] = capture
        else:
            capture.close()
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not good:
        return 1

    def body() -> int:
        out_dir = du.prepare_output_dir(args.output)
        names = output_base_names(sources)
        with contextlib.ExitStack() as stack:
            pool = open_pool(stack, ray, specs, detect, len(good))
            if ray is None:
                failed, code = process_here(good, opened, names, pool.predictors, run, out_dir, args.json)
            else:
                failed, code = process_on_workers(pool, good, names, run, out_dir, args.json), 0
        failed += len(errors)
        if failed and total > 1:
            print(f"{failed} of {total} inputs failed", file=sys.stderr)
        return code or (1 if failed else 0)

    try:
        return du.run_main(body, "interrupted: the videos finished before are kept; those in progress were not written")
    finally:
        for capture in opened.values():
            capture.close()


def process_here(sources: list[str], opened: dict[str, VideoSource], names: dict[str, str], predictors: list,
                 run: VideoRun, out_dir: Path, records: bool) -> tuple[int, int]:
    """Each video in turn in this process; returns how many failed, and the exit code of a signal that stopped it."""
    failed = 0
    with StopOnSignal() as stopper:
        window = Window("", stopper.event) if run.show else None
        for number, spec in enumerate(sources, start=1):
            if stopper.event.is_set():
                break
            try:
                source = opened.pop(spec, None) or open_source(spec)
            except DetectError as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            try:
                outputs = VideoOutputs.named(out_dir, names[spec], run, records)
                du.check_not_an_input(outputs.written(), [name for name in names if not is_live(name)])
                counter = f"[{number}/{len(sources)}] " if len(sources) > 1 else ""
                print(counter + describe_source(source), file=sys.stderr)
                if window is not None:
                    window.title = f"{source.name} ({run.model_option})"
                result = detect_to_files(source, predictors, run, outputs, stopper.event, window)
            except DetectError as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            finally:
                source.close()
            report(spec, result, outputs)
    return failed, stopper.exit_code


def detect_to_files(source: VideoSource, predictors: list, run: VideoRun, outputs: VideoOutputs,
                    stop: threading.Event, window: Window | None) -> VideoResult:
    """One opened video's outputs, written together: none if it fails, and records left from earlier runs go."""
    with AtomicOutputs(outputs.written(), stale=outputs.stale()) as temporary:
        result = process_video(source, predictors, run, temporary[outputs.video],
                               outputs.records and temporary[outputs.records],
                               outputs.tracks and temporary[outputs.tracks], stop, window)
        if result.frames == 0:  # leaving the block by an exception keeps no file
            raise DetectError(f"{source.spec}: no frame could be read")
    return result


def process_on_workers(pool, sources: list[str], names: dict[str, str], run: VideoRun, out_dir: Path,
                       records: bool) -> int:
    """One video per Ray task; each finished one is written here as it comes back. Returns how many failed."""
    plan = {spec: VideoOutputs.named(out_dir, names[spec], run, records) for spec in sources}

    def prepare(spec: str) -> tuple:
        du.check_not_an_input(plan[spec].written(), list(names))
        return read_bytes(spec), spec, names[spec], run, records, run.tracking is not None

    failed = 0
    with tqdm(total=len(sources), desc="videos", unit="video", file=sys.stderr, dynamic_ncols=True) as bar:
        for spec, _, outcome in pool.imap(detect_video_bytes, sources, prepare):
            bar.update(1)
            if isinstance(outcome, DetectError):
                tqdm.write(f"error: {outcome}", file=sys.stderr)
                failed += 1
                continue
            write_encoded(outcome, plan[spec])
            tqdm.write(outcome.description, file=sys.stderr)
            report(spec, outcome.result, plan[spec])
    return failed


def write_encoded(encoded: EncodedVideo, outputs: VideoOutputs) -> None:
    """A worker's finished video and records, written as one set like a video processed here."""
    with AtomicOutputs(outputs.written(), stale=outputs.stale()) as temporary:
        for path, data in ((outputs.video, encoded.video), (outputs.records, encoded.records),
                           (outputs.tracks, encoded.tracks)):
            if path is not None:
                temporary[path].write_bytes(data or b"")


def report(spec: str, result: VideoResult, outputs: VideoOutputs) -> None:
    """The lines a finished video gives: what was written (stdout), tracking and speed; warnings on stderr."""
    if result.unreadable:
        tqdm.write(f"warning: {result.unreadable} frame(s) of {spec} could not be read and were skipped",
                   file=sys.stderr)
    tqdm.write(f"{result.frames} frames -> " + ", ".join(map(str, outputs.written())), file=sys.stdout)
    for summary in result.summaries:
        tqdm.write(tracking_summary(summary, several=len(result.summaries) > 1), file=sys.stdout)
    tqdm.write(result.speed, file=sys.stdout)


def tracking_summary(summary: dict, several: bool) -> str:
    """`tracked: 31 car, 12 person` (with the model's name when there are several), and the line's counts."""
    prefix = f"{summary['model']} " if several else ""
    found = ", ".join(f"{n} {name}" for name, n in summary["distinct"].items()) or "nothing"
    text = f"{prefix}tracked: {found}"
    for direction, counts in summary.get("crossings", {}).items():
        crossed = ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"
        text += f"\n{prefix}crossed {direction.replace('_', ' ')}: {crossed}"
    return text


if __name__ == "__main__":
    sys.exit(main())
