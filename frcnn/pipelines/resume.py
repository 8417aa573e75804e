"""Resuming a run over many inputs: which inputs already have their complete outputs, made with this run's settings.

Each input's outputs are sealed once they have all landed: a small record, written atomically after them, names the
settings that made them (the models as their records name them, the checkpoints' contents, the drawing and output
options), the input (its path, size and modification time) and every file written with its size. Before an input's
outputs are written again, its seal goes, so an interrupted write never leaves a seal over files of another run. An
input is done when its seal names this run's settings and this input, and every file it lists is there with its
size. The seals live in the cache folder (`resume/<output folder's name>-<hash of its path>/`), not among the
outputs, which stay exactly what the run was asked for. A seal names its output folder, so the seals of outputs
since removed can be found and removed too: each run does that as it opens its book.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from frcnn.core.files import is_url, write_bytes_atomically
from frcnn.core.log import log
from frcnn.runtimes.cache import SEALS, cache_dir

CHUNK = 1 << 20


def jsonable(value: Any) -> Any:
    """A value (dataclasses, tuples, sets included) as plain JSON values: what a seal stores and compares."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(item) for item in value)
    if isinstance(value, Path):
        return str(value)
    return value


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's contents: a checkpoint replaced under the same name is another checkpoint."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def models_settings(models: Sequence, specs: Sequence) -> dict:
    """What the models are, as every record names them (name, classes, weights, size, runtime, precision,
    proposals, threshold, slicing), and the contents of the checkpoint and labels files they were made from."""
    files = sorted({path for spec in specs for path in (spec.weights, spec.labels) if path is not None})
    return {"models": [{"name": model.name, "classes": list(model.class_names), **model.settings.to_json()}
                       for model in models],
            "files": {str(path): file_digest(path) for path in files if Path(path).is_file()}}


def input_identity(source: str) -> dict:
    """What says an input is the one a seal was made from: a file's absolute path, size and modification time;
    a URL's text."""
    if is_url(source):
        return {"url": source}
    path = Path(source)
    try:
        status = path.stat()
    except OSError:
        return {"path": os.path.abspath(source)}
    return {"path": os.path.abspath(source), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def seals_folder(out_dir: Path) -> Path:
    """Where the seals of an output folder are kept: its own folder in the cache, named after it."""
    path = os.path.abspath(out_dir)
    return cache_dir() / SEALS / f"{Path(path).name}-{hashlib.sha256(path.encode('utf-8')).hexdigest()[:16]}"


class ResumeBook:
    """The seals of one run's output folder: which inputs are done with `settings`, and sealing new ones."""

    def __init__(self, out_dir: Path, settings: dict):
        self.out_dir = Path(out_dir)
        self.settings = jsonable(settings)
        self.folder = seals_folder(self.out_dir)
        self._warned = False
        prune_seals()  # here, so the records never pile up: every run opens a book

    def seal_path(self, main: Path) -> Path:
        """Where the seal of the outputs whose main file (the picture, the video) is `main` goes."""
        return self.folder / f"{Path(main).name}.json"

    def is_done(self, main: Path, source: str) -> bool:
        """Whether `main`'s outputs are complete and were made from `source` with this run's settings."""
        try:
            seal = json.loads(self.seal_path(main).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        if not isinstance(seal, dict) or seal.get("settings") != self.settings:
            return False
        if seal.get("input") != input_identity(source) or not isinstance(seal.get("files"), dict):
            return False
        return all(_has_size(self.out_dir / name, size) for name, size in seal["files"].items())

    def unseal(self, main: Path) -> None:
        """Before `main`'s outputs are written again: until they are all written, they are not done."""
        try:
            self.seal_path(main).unlink(missing_ok=True)
        except OSError as error:
            self._warn(error)

    def seal(self, main: Path, source: str, files: Iterable[Path]) -> None:
        """Once every output of `source` has landed: record them, with this run's settings."""
        listed = {Path(path).relative_to(self.out_dir).as_posix(): Path(path).stat().st_size for path in files}
        seal = {"settings": self.settings, "input": input_identity(source), "files": listed,
                "out_dir": os.path.abspath(self.out_dir)}
        try:
            write_bytes_atomically(self.seal_path(main), (json.dumps(seal, indent=1) + "\n").encode("utf-8"))
        except OSError as error:
            self._warn(error)

    def _warn(self, error: OSError) -> None:
        """A cache that cannot be written costs only the resuming: said once, the run goes on."""
        if not self._warned:
            self._warned = True
            log.warning(f"warning: cannot keep the records --resume reads in {self.folder} "
                       f"({error.strerror or error}); set FRCNN_CACHE to a folder that can be written")


def _has_size(path: Path, size: object) -> bool:
    try:
        return path.is_file() and path.stat().st_size == size
    except OSError:
        return False


def all_seals() -> list[Path]:
    """Every seal in the cache, of every output folder."""
    root = cache_dir() / SEALS
    return sorted(root.glob("*/*.json")) if root.is_dir() else []


def outputs_gone(seal_path: Path) -> bool:
    """Whether a seal names outputs of which one no longer exists (its folder removed, say): it can never again
    say an input is done. A seal that cannot be read, or that does not name its folder, is kept."""
    try:
        seal = json.loads(seal_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not (isinstance(seal, dict) and isinstance(seal.get("out_dir"), str) and isinstance(seal.get("files"), dict)):
        return False
    out_dir = Path(seal["out_dir"])
    # Missing, not of another size: a run that rewrites an input removes its seal before touching its files.
    return not all((out_dir / name).is_file() for name in seal["files"])


def prune_seals() -> int:
    """Remove the seals whose outputs are gone, and the folders they leave empty; return how many seals went.
    A cache that cannot be changed is left as it is: pruning only saves room."""
    pruned = 0
    try:
        for path in all_seals():
            if outputs_gone(path):
                path.unlink(missing_ok=True)
                pruned += 1
        folders = [path for path in (cache_dir() / SEALS).iterdir() if path.is_dir()] if pruned else []
    except OSError:
        return pruned
    for folder in folders:
        try:
            folder.rmdir()  # only an empty one goes
        except OSError:
            pass
    return pruned


def pending(book: ResumeBook, sources: Sequence[str], main_of, resume: bool) -> tuple[list[str], int]:
    """The sources still to compute, and how many were skipped as done (none unless `resume`)."""
    if not resume:
        return list(sources), 0
    todo = [source for source in sources if not book.is_done(main_of(source), source)]
    return todo, len(sources) - len(todo)


def skipped_line(skipped: int, total: int) -> str:
    """What a resumed run says before it starts."""
    inputs = "input" if total == 1 else "inputs"
    if skipped == 0:
        return f"resume: none of the {total} {inputs} is done with these settings yet"
    return (f"resume: {skipped} of {total} {inputs} already done with these settings, skipped; "
            f"{total - skipped} to compute")
