"""Driving a script's window on a test X display as a user would: a key press, the close button."""

from __future__ import annotations

import ctypes
import os
import subprocess
import time

CLIENT_MESSAGE = 33  # X11's event type number for ClientMessage


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class _Event(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("padding", ctypes.c_long * 24)]


def find_window(display: str, title: str, timeout: float = 60) -> str:
    """The id of the first window whose title contains `title`, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--name", title], env={**os.environ, "DISPLAY": display},
                               capture_output=True, text=True).stdout.split()
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no window titled {title!r} appeared")


def press_key(display: str, window: str, key: str) -> None:
    subprocess.run(["xdotool", "key", "--window", window, key], env={**os.environ, "DISPLAY": display},
                   check=True, capture_output=True)


def click_close(display: str, window: str) -> None:
    """Send WM_DELETE_WINDOW, the message a window manager sends when the close button is clicked."""
    xlib = ctypes.cdll.LoadLibrary("libX11.so.6")
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XInternAtom.restype = ctypes.c_ulong
    xlib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    xlib.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                                ctypes.POINTER(_Event)]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = xlib.XOpenDisplay(display.encode())
    assert connection, f"cannot connect to {display}"
    event = _Event()
    event.xclient.type = CLIENT_MESSAGE
    event.xclient.window = int(window, 0)
    event.xclient.message_type = xlib.XInternAtom(connection, b"WM_PROTOCOLS", 0)
    event.xclient.format = 32
    event.xclient.data[0] = xlib.XInternAtom(connection, b"WM_DELETE_WINDOW", 0)
    assert xlib.XSendEvent(connection, event.xclient.window, 0, 0, ctypes.byref(event))
    xlib.XCloseDisplay(connection)  # flushes the request
