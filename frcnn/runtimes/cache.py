"""The cache of exported and quantized models (and of files sent to Ray workers): where it is, what it holds, and
keeping it under a size limit.

Each entry (an fp32 export, or an int8 model) is marked each time it is loaded; once a new entry is written, the
entries used least recently are removed until the cache holds at most $FRCNN_CACHE_MAX_GB gigabytes (2 by default,
0 for no limit). The entry being loaded is never removed, whatever its size."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable

from frcnn.core.log import log

SEALS = "resume"  # the records --resume reads: which inputs a run finished, with which settings (pipelines/resume.py)
RECEIVED = "received"  # checkpoints and calibration pictures sent to this node's Ray workers (cluster.py)
MAX_GB_VARIABLE = "FRCNN_CACHE_MAX_GB"
DEFAULT_MAX_GB = 2.0
USED = ".used"  # an empty file beside an entry, touched whenever the entry is loaded: its last use

Entry = tuple[Path, list[Path]]


def cache_dir() -> Path:
    """Where exported models are kept: $FRCNN_CACHE, or the user's cache folder."""
    if os.environ.get("FRCNN_CACHE"):
        return Path(os.environ["FRCNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "faster-rcnn-v1-v2"



def entries(folder: Path) -> list[Entry]:
    """Each exported model in the folder with the files that belong to it (the graph, its key, its use mark,
    leftovers)."""
    if not folder.is_dir():
        return []
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            groups.setdefault(entry_stem(path), []).append(path)
    return [(folder / f"{stem}.onnx", files) for stem, files in groups.items()]


def entry_stem(path: Path) -> str:
    """The name of the entry a file belongs to (an interrupted export's ".name.onnx.PID.part" too)."""
    return path.name.lstrip(".").split(".", 1)[0]


def being_written(path: Path) -> bool:
    """Whether a file is a temporary one that an export or quantization (maybe another process's) still writes."""
    return path.name.startswith(".") and ".part" in path.name


def mark_used(model: Path) -> None:
    """Note that the entry of `model` (an .onnx or .xml in the cache) was loaded now."""
    marker = model.with_name(entry_stem(model) + USED)
    try:
        marker.touch()  # an existing marker gets the time of now
    except OSError:
        pass  # a cache that cannot be written only loses the order of removal


def last_used(files: list[Path]) -> float:
    """When an entry was last loaded (or, never loaded, written), as a timestamp."""
    return max((f.stat().st_mtime for f in files if not being_written(f)), default=0.0)


def entry_size(files: list[Path]) -> int:
    """The bytes an entry takes, the temporary files of an export under way left out (they are not removable)."""
    return sum(f.stat().st_size for f in files if not being_written(f))


def max_cache_bytes() -> float | None:
    """The cache's size limit from $FRCNN_CACHE_MAX_GB (gigabytes; 0: none); a value that is not a number of
    gigabytes is said and the default used."""
    text = os.environ.get(MAX_GB_VARIABLE, "").strip()
    gigabytes = DEFAULT_MAX_GB
    if text:
        try:
            gigabytes = float(text)
            if not gigabytes >= 0 or gigabytes == float("inf"):
                raise ValueError
        except ValueError:
            gigabytes = DEFAULT_MAX_GB
            log.warning(f"warning: {MAX_GB_VARIABLE}={text} is not a number of gigabytes (0 for no limit); "
                  f"keeping the export cache under {DEFAULT_MAX_GB:g} GB")
    return gigabytes * 1e9 if gigabytes > 0 else None


def least_recently_used(found: list[Entry], keep: Iterable[Path], limit: float) -> list[Entry]:
    """The entries to remove, least recently used first, until the rest take at most `limit` bytes; the entries
    of the files in `keep` are never among them."""
    kept = {entry_stem(Path(path)) for path in keep}
    total = sum(entry_size(files) for _, files in found)
    chosen = []
    for onnx, files in sorted(found, key=lambda entry: last_used(entry[1])):
        if total <= limit:
            break
        if onnx.stem in kept or all(being_written(f) for f in files):
            continue
        chosen.append((onnx, files))
        total -= entry_size(files)
    return chosen


def remove_entries(chosen: list[Entry]) -> int:
    """Remove the entries' files (an export under way keeps its temporary file); return the bytes freed."""
    size = 0
    for _, files in chosen:
        for path in files:
            if not being_written(path):
                size += path.stat().st_size
                path.unlink(missing_ok=True)
    return size


def keep_under_limit(folder: Path, keep: Iterable[Path]) -> list[Entry]:
    """After a new entry is written: remove the least recently used others until the cache fits its limit, said
    in one line on stderr; return what was removed."""
    limit = max_cache_bytes()
    if limit is None:
        return []
    try:
        chosen = least_recently_used(entries(folder), keep, limit)
        freed = remove_entries(chosen)
    except OSError as error:  # another process removing the same files, say: the next write tries again
        log.warning(f"warning: could not keep the export cache {folder} under its limit ({error.strerror or error})")
        return []
    if chosen:
        names = ", ".join(onnx.stem for onnx, _ in chosen)
        log.info(f"export cache: removed {len(chosen)} least recently used entr{'y' if len(chosen) == 1 else 'ies'} "
              f"({names}), {freed / 1e6:.1f} MB, to stay under {limit / 1e9:g} GB ({MAX_GB_VARIABLE})")
    return chosen



def describe(onnx: Path, files: list[Path], name_width: int = 40) -> str:
    """One line of the listing: the entry's name, size, when it was last used, and what it is (model, size,
    proposals, weights file, runtime; for int8, of which export and on how many calibration pictures)."""
    size = sum(f.stat().st_size for f in files)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(f.stat().st_mtime for f in files)))
    head = f"{onnx.stem:{name_width}} {size / 1e6:8.1f} MB  {when}  "
    int8 = onnx.with_suffix(".key.json")
    if int8.exists():  # a quantized model, keyed by the export it came from and its calibration
        key = _read(int8).get("key", {})
        export = onnx.parent / key.get("export", "?")
        return (head + f"int8:  {_what(_read(export.with_suffix('.json')))}, calibrated on "
                f"{key.get('pictures', '?')} picture(s), NNCF {key.get('nncf', '?')}")
    record = _read(onnx.with_suffix(".json"))
    key = record.get("key", {})
    runtime = next((f"{name} {key[name]}" for name in ("openvino", "onnxruntime") if name in key), "unfinished export")
    return head + f"fp32:  {_what(record)}, for {runtime}, torch {key.get('torch', '?')}"


def _what(record: dict) -> str:
    """An export's model, size, proposals and weights file, from its record."""
    key = record.get("key", {})
    weights = record.get("weights_file") or f"weights {str(key.get('weights_sha256', '?'))[:12]}"
    return (f"{key.get('model', '?')} at {key.get('imgsz', '?')} px, {key.get('proposals', '?')} proposals, "
            f"{weights}")


def made_from(onnx: Path) -> Path:
    """The export an entry was made from: itself, or, for an int8 entry, the export it quantized."""
    int8 = onnx.with_suffix(".key.json")
    return onnx.parent / _read(int8).get("key", {}).get("export", onnx.name) if int8.exists() else onnx


def weights_sha256(onnx: Path) -> str | None:
    """The SHA-256 of the weights an entry (or the export it quantized) was made from."""
    return _read(made_from(onnx).with_suffix(".json")).get("key", {}).get("weights_sha256")


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
