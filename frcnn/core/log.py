"""What the package says as it works (exporting, loading, Ray workers starting, warnings) goes to the "frcnn" logger,
so a program that embeds the package decides what reaches its users; the scripts show it on stderr, line by line
as always, between the redraws of their progress bars."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("frcnn")


class _ProgressAwareHandler(logging.Handler):
    """Each message as its own line on stderr, written through tqdm so an open progress bar is redrawn below it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # a closed stderr must not break the run
            self.handleError(record)


def show_messages_on_stderr(level: int = logging.INFO) -> None:
    """Show the package's messages as the scripts always have: the bare text, one line each, on stderr."""
    if any(isinstance(handler, _ProgressAwareHandler) for handler in log.handlers):
        return
    handler = _ProgressAwareHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
