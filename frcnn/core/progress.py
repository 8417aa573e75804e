"""Progress bars on stderr, the same in every script: redrawn ten times a second on a terminal (each redraw replaces
the last), every few seconds into a log file or a pipe (where every redraw stays as text)."""

from __future__ import annotations

import sys

from tqdm import tqdm

# Seconds between redraws where the bar's stream is not a terminal.
LOGGED_INTERVAL_S = 10.0


def progress_bar(*args, **kwargs) -> tqdm:
    """tqdm on stderr (unless `file` says otherwise), slowed down where that is not a terminal."""
    stream = kwargs.setdefault("file", sys.stderr)
    if "mininterval" not in kwargs and not _is_terminal(stream):
        kwargs["mininterval"] = LOGGED_INTERVAL_S
    return tqdm(*args, **kwargs)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False
