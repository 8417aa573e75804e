"""What the scripts share: finding their inputs, naming and writing their outputs, loading the models, the main tail."""

from __future__ import annotations

import glob
import os
import signal
import sys
import threading
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from frcnn.core.errors import FrcnnError

# read_image and atomic_output are re-exported: the scripts' helpers by the name users and tests know them by.
from frcnn.core.files import (  # noqa: F401
    atomic_output,
    is_url,
    old_crops,
    read_image,
    write_bytes_atomically,
    write_image,
    written_here,
)
from frcnn.core.log import show_messages_on_stderr

# How a photo or video run that stopped part-way goes on (the finished inputs' outputs are sealed as they land).
RESUME_HINT = "the same command with --resume skips the finished ones"


# ---------------------------------------------------------------- reading


def expand_inputs(patterns: Sequence[str], suffixes: set[str], kind: str = "images",
                  passthrough=is_url) -> tuple[list[str], list[str]]:
    """Sources to process, in order and without repeats, and one error line per input that names nothing.

    Folders give every file inside with one of `suffixes`; glob patterns the files they match; sources for
    which `passthrough` is true (URLs, cameras) are kept as they are.
    """
    sources: list[str] = []
    errors: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if passthrough(pattern):
            found = [pattern]
        elif path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                errors.append(f"{path}: no {kind} in this folder")
        elif not path.exists() and glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern) if Path(p).is_file())
            if not found:
                errors.append(f"{pattern}: no file matches")
        elif not path.exists():
            errors.append(f"{path}: file not found")  # said before any model loads
            found = []
        else:
            found = [pattern]
        sources.extend(found)
    return list(dict.fromkeys(sources)), errors


# ---------------------------------------------------------------- naming outputs


def _name_parts(source: str) -> tuple[str, str, list[str]]:
    """A source's stem, extension and folders (nearest first), from a path or a URL."""
    if is_url(source):
        parsed = urlparse(source)
        path = PurePosixPath(parsed.netloc) / PurePosixPath(unquote(parsed.path).lstrip("/") or "picture")
    else:
        path = Path(os.path.abspath(source))
    return path.stem or path.name, path.suffix.lstrip(".").lower(), [p.name for p in path.parents if p.name]


def output_names(sources: Sequence[str], fixed: Callable[[str], str | None] = lambda source: None) -> dict[str, str]:
    """A distinct base name for each source's outputs: its stem; where stems repeat, its extension is added (where
    the extensions differ), then its folders one by one (`dirA_x`, `dirB_x`); a number where even that is not
    enough. Sources with a `fixed` name (a camera, a stream) keep it, numbered where it meets another."""
    names = _path_names([source for source in sources if fixed(source) is None])
    taken = set(names.values())
    for source in sources:
        base = fixed(source)
        if base is not None:
            name, number = base, 2
            while name in taken:
                name, number = f"{base}_{number}", number + 1
            taken.add(name)
            names[source] = name
    return names


def _path_names(sources: Sequence[str]) -> dict[str, str]:
    parts = {source: _name_parts(source) for source in sources}
    suffixes: dict[str, set[str]] = {}
    for stem, suffix, _ in parts.values():
        suffixes.setdefault(stem, set()).add(suffix)

    def name_at(source: str, level: int) -> str:
        stem, suffix, folders = parts[source]
        # The extension tells apart only a stem that comes with several extensions.
        telling = suffix and len(suffixes[stem]) > 1
        name = stem if level == 0 or not telling else f"{stem}_{suffix}"
        return "_".join([*reversed(folders[:max(0, level - 1)]), name])

    levels = dict.fromkeys(sources, 0)
    deepest = max((len(folders) + 1 for _, _, folders in parts.values()), default=0)
    for _ in range(deepest + 2):
        seen: dict[str, list[str]] = {}
        for source in sources:
            seen.setdefault(name_at(source, levels[source]), []).append(source)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            break
        for group in clashes:
            for source in group:
                levels[source] += 1
    names, taken = {}, set()
    for source in sources:
        name, number = name_at(source, levels[source]), 2
        while name in taken:  # folder names that join to the same text: number the later ones
            name, number = f"{name_at(source, levels[source])}_{number}", number + 1
        taken.add(name)
        names[source] = name
    return names


def check_not_an_input(outputs: Sequence[Path], inputs: Sequence[str], current: str) -> None:
    """Refuse to write where an input of the run is: an input file is never overwritten."""
    for output in outputs:
        for source in inputs:
            if not is_url(source) and _same_file(output, Path(source)):
                raise FrcnnError(f"{current}: its output {output} would overwrite an input ({source}); "
                                  f"choose another --output")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


# ---------------------------------------------------------------- writing


def write_crops(folder: Path, name: str, image: np.ndarray, detections, class_names: Sequence[str]) -> list[Path]:
    """Each detection cut out of the picture into `folder/<class>/<name>_<n>.jpg`, replacing the name's older crops;
    return the crops written."""
    from frcnn.core.detections import class_name

    remove_stale(old_crops(folder, name))
    height, width = image.shape[:2]
    written = []
    for number, (box, label) in enumerate(zip(detections.boxes, detections.labels), start=1):
        x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
        x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
        if x2 <= x1 or y2 <= y1:
            continue
        class_folder = folder / class_name(class_names, label).replace("/", "_")
        class_folder.mkdir(parents=True, exist_ok=True)
        write_image(class_folder / f"{name}_{number}.jpg", image[y1:y2, x1:x2])
        written.append(class_folder / f"{name}_{number}.jpg")
    return written


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Check that the output folder can be made or written (it is made with its first file, so a failed run
    leaves no empty folder); raise FrcnnError if not."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
    if existing.exists() and not existing.is_dir():
        what = "the output folder" if existing == path else "a folder of the output path"
        raise FrcnnError(f"--output {path}: {what} {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise FrcnnError(f"output folder {path} is not writable" if existing == path
                          else f"cannot create output folder {path}: {existing} is not writable")
    return path


def remove_stale(paths: Sequence[Path]) -> None:
    """Remove outputs an earlier run wrote that this run does not replace (labels or crops no longer asked for)."""
    for path in paths:
        if path.exists() and written_here(path):
            path.unlink()


# ---------------------------------------------------------------- loading and failing


def fail(message: str) -> int:
    """Print a user-facing error as one line on stderr; return exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1




def run_main(body: Callable[[], int], interrupted: str) -> int:
    """A script's main after its options are checked: a user's mistake is one line and exit 1, Ctrl-C says what
    was kept (the `interrupted` line) and exits 130; a bug still shows its traceback."""
    show_messages_on_stderr()
    try:
        return body()
    except FrcnnError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def command_name(script: str) -> str:
    """How the user started `script` ("train"), for hints they can paste: `frcnn-train` when they ran the installed
    command, `python train.py` when they ran the file in a clone."""
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    installed = f"frcnn-{script.replace('_', '-')}"
    return installed if invoked == installed else f"python {script}.py"


# ---------------------------------------------------------------- stopping on Ctrl-C and SIGTERM


class StopOnSignal:
    """Ctrl-C and SIGTERM, the same way in every script and mode.

    While `graceful` is false (loading the models, starting Ray) a signal stops at once. Once the inputs flow, the
    first signal sets `event`: no new input starts, those in flight finish and are written. A second signal stops
    at once. The exit code says which signal came (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, in_flight: str = "the inputs in progress", graceful: bool = False):
        self.event = threading.Event()
        self.signal: int | None = None
        self.graceful = graceful
        self.in_flight = in_flight
        self._previous: dict = {}

    def __enter__(self) -> "StopOnSignal":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        first = self.signal is None
        self.signal = self.signal or signum
        if not self.graceful or self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        if first:
            print(f"\n{signal.Signals(signum).name}: finishing {self.in_flight}, then stopping "
                  f"(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self) -> bool:
        """Whether a stop was asked for (a training loop's `should_stop`)."""
        return self.event.is_set()

    @property
    def exit_code(self) -> int:
        """128 + the signal that stopped the run (0 when none did)."""
        return 128 + self.signal if self.signal else 0


def run_stoppable(body: Callable[[StopOnSignal], int], interrupted: str, in_flight: str) -> int:
    """`run_main` for a run over many inputs that Ctrl-C or SIGTERM stop (see StopOnSignal): the `interrupted`
    line says what was kept, and the exit code is the signal's (130, 143)."""
    show_messages_on_stderr()
    with StopOnSignal(in_flight) as stopper:
        try:
            code = body(stopper)
        except FrcnnError as error:
            if not stopper.signal:
                return fail(str(error))
            print(f"error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            pass
        else:
            if not stopper.signal:
                return code
        print(interrupted, file=sys.stderr, flush=True)
        return stopper.exit_code or 130
