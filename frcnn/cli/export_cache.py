"""The cache of exported models that the ONNX Runtime and OpenVINO backends use (about 170 MB per model and size):
where it is, and, run as a script, what is in it.

    python export_cache.py                                  # what is there, and how much room it takes
    python export_cache.py --remove v2-800-0123abcd...      # one entry (an export takes its int8 models with it)
    python export_cache.py --remove-weights my/old_v2.pth   # every entry made from these weights
    python export_cache.py --clear                          # everything (each is made again when needed)
    python export_cache.py --clear-resume                   # only the records --resume reads

The cache keeps itself under FRCNN_CACHE_MAX_GB gigabytes (2 by default; 0: no limit): once a new export or int8
model is written, the entries used least recently go. The --resume records of outputs since removed go as each run
starts.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from frcnn.cli import shared as du
from frcnn.pipelines.resume import all_seals
from frcnn.runtimes.cache import (
    MAX_GB_VARIABLE,
    RECEIVED,
    SEALS,
    cache_dir,
    describe,
    entries,
    made_from,
    max_cache_bytes,
    weights_sha256,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List or clear the cache of exported models.")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--clear", action="store_true", help="remove every cached export")
    what.add_argument("--remove", nargs="+", metavar="ENTRY",
                      help="remove these entries, named as the listing names them (an export's int8 models go too)")
    what.add_argument("--remove-weights", metavar="FILE",
                      help="remove every entry made from this weights file (matched by its content)")
    what.add_argument("--clear-resume", action="store_true",
                      help="remove only the records --resume reads (a later --resume computes everything again)")
    args = parser.parse_args(argv)
    folder = cache_dir()
    found = entries(folder)
    if args.remove or args.remove_weights:
        return remove(found, args.remove, args.remove_weights, parser)
    if args.clear_resume:
        seals = all_seals()
        shutil.rmtree(folder / SEALS, ignore_errors=True)
        print(f"removed {len(seals)} --resume record(s) from {folder / SEALS}")
        return 0
    total = sum(f.stat().st_size for _, files in found for f in files)
    received = _files(folder / RECEIVED)
    received_size = sum(p.stat().st_size for p in received)
    seals = _files(folder / SEALS)
    if args.clear:
        for _, files in found:
            for path in files:
                path.unlink(missing_ok=True)
        shutil.rmtree(folder / RECEIVED, ignore_errors=True)
        shutil.rmtree(folder / SEALS, ignore_errors=True)  # a later --resume then computes everything again
        print(f"removed {len(found)} cached export(s), {total / 1e6:.1f} MB, from {folder}"
              + (f", and {len(received)} file(s) sent to Ray workers, {received_size / 1e6:.1f} MB" if received else "")
              + (f", and {len(seals)} --resume record(s)" if seals else ""))
        return 0
    width = max([len(onnx.stem) for onnx, _ in found] + [len(RECEIVED) + 1])
    for onnx, files in found:
        print(describe(onnx, files, width))
    if received:
        print(f"{RECEIVED + '/':{width}} {received_size / 1e6:8.1f} MB  {len(received)} file(s) sent to Ray workers "
              f"(checkpoints, calibration pictures)")
    limit = max_cache_bytes()
    print(f"{len(found)} cached export(s), {total / 1e6:.1f} MB in {folder} "
          f"({'no limit' if limit is None else f'at most {limit / 1e9:g} GB'}, {MAX_GB_VARIABLE})"
          + (f"; {len(seals)} --resume record(s) of finished inputs in {SEALS}/" if seals else ""), file=sys.stderr)
    return 0


def remove(found: list[tuple[Path, list[Path]]], names: list[str] | None, weights: str | None,
           parser: argparse.ArgumentParser) -> int:
    """Remove the entries named (with the int8 entries made from them), or those made from `weights`."""
    if weights is not None:
        if not Path(weights).is_file():
            parser.error(f"--remove-weights: no such file: {weights}")
        digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        chosen = [(onnx, files) for onnx, files in found if weights_sha256(onnx) == digest]
    else:
        stems = {onnx.stem for onnx, _ in found}
        unknown = [name for name in names if name not in stems]
        if unknown:
            parser.error(f"--remove: no entry named {unknown[0]} ({du.command_name('export_cache')} lists them)")
        exports = {onnx.name for onnx, _ in found if onnx.stem in names}
        chosen = [(onnx, files) for onnx, files in found if onnx.stem in names or made_from(onnx).name in exports]
    size = sum(f.stat().st_size for _, files in chosen for f in files)
    for _, files in chosen:
        for path in files:
            path.unlink(missing_ok=True)
    print(f"removed {len(chosen)} cached export(s), {size / 1e6:.1f} MB, from {cache_dir()}")
    return 0


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


if __name__ == "__main__":
    sys.exit(main())
