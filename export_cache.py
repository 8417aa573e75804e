"""The cache of exported models that the ONNX Runtime and OpenVINO backends use (about 170 MB per model and size):
where it is, and, run as a script, what is in it.

    python export_cache.py            # what is there, and how much room it takes
    python export_cache.py --clear    # remove every entry (each is made again the next time it is needed)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from frcnn.runtimes.cache import RECEIVED, SEALS, cache_dir, describe, entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List or clear the cache of exported models.")
    parser.add_argument("--clear", action="store_true", help="remove every cached export")
    args = parser.parse_args(argv)
    folder = cache_dir()
    found = entries(folder)
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
    for onnx, files in found:
        print(describe(onnx, files))
    if received:
        print(f"{RECEIVED + '/':40} {received_size / 1e6:8.1f} MB  {len(received)} file(s) sent to Ray workers "
              f"(checkpoints, calibration pictures)")
    print(f"{len(found)} cached export(s), {total / 1e6:.1f} MB in {folder}"
          + (f"; {len(seals)} --resume record(s) of finished inputs in {SEALS}/" if seals else ""), file=sys.stderr)
    return 0


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


if __name__ == "__main__":
    sys.exit(main())
