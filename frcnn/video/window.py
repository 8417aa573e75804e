"""The on-screen window of --show (OpenCV's Qt highgui): one picture at a time, and which key was pressed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from frcnn.core.log import log

WINDOW = "Faster R-CNN"  # one window, reused for every picture and frame
WINDOW_MAX_SIZE = (1280, 800)  # fits an ordinary screen at first; the user can resize it


def _use_system_fonts_for_qt() -> None:
    """OpenCV's Qt build looks for fonts in a folder its wheel does not ship and prints warnings about it;
    point it at the system's fonts instead."""
    folder = os.environ.get("QT_QPA_FONTDIR")
    if not folder or Path(folder).is_dir():
        return
    for root in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts")):
        font = next(root.rglob("*.ttf"), None) if root.is_dir() else None
        if font is not None:
            os.environ["QT_QPA_FONTDIR"] = str(font.parent)
            return


def _open_window(width: int, height: int) -> None:
    if _window_visible():
        return
    _use_system_fonts_for_qt()
    cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
    scale = min(1.0, WINDOW_MAX_SIZE[0] / width, WINDOW_MAX_SIZE[1] / height)
    cv2.resizeWindow(WINDOW, max(1, round(width * scale)), max(1, round(height * scale)))


def show_window(title: str, image: np.ndarray, wait_ms: int = 0) -> str:
    """Show `image` (until a key is pressed, or for `wait_ms`). Returns "shown"; "quit" when the user pressed
    q or Esc; "closed" when they closed the window; "unavailable" when none can be opened (after saying so)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        reason = "no display"
    else:
        try:
            _open_window(image.shape[1], image.shape[0])
            cv2.setWindowTitle(WINDOW, title)
            cv2.imshow(WINDOW, image)
        except cv2.error:
            reason = "this OpenCV has no GUI support"
        else:
            key = cv2.waitKey(wait_ms) & 0xFF
            if key in (ord("q"), 27):
                return "quit"
            return "shown" if _window_visible() else "closed"
    log.warning(f"warning: cannot open a window ({reason}); the results are in the output folder")
    return "unavailable"


def _window_visible() -> bool:
    try:
        return cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) >= 1
    except cv2.error:  # Qt raises before its first window and after its last one is closed
        return False
