"""Joining a Ray cluster without Ray's own ways of failing: an address is checked to be Ray's before `ray.init`
(which otherwise retries for minutes), Ray's C++ log lines go to a file instead of the user's terminal, and the
script's Ctrl-C / SIGTERM handling survives `ray.init` (which installs its own SIGTERM handler)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from frcnn.core.errors import FrcnnError

CONNECT_TIMEOUT_S = 10
PROBE_TIMEOUT_S = 5
# A Ray head's GCS (and a Ray Client server) speaks gRPC, that is HTTP/2: to a client's connection preface and
# empty SETTINGS frame it answers with a SETTINGS frame of its own (frame type 4 in the fourth byte).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
HTTP2_SETTINGS = 0x04


def host_and_port(address: str) -> tuple[str, int]:
    """HOST:PORT (or ray://HOST:PORT) split; FrcnnError when it is not that."""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.hostname is None or port is None:
        raise FrcnnError(f"--ray {address}: give the cluster's address as HOST:PORT (or auto)")
    return parsed.hostname, port


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing answers at host:port, or something other than Ray does."""
    if address == "auto":
        return
    host, port = host_and_port(address)
    try:
        connection = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as error:
        raise FrcnnError(f"cannot reach the Ray cluster at {address} ({error.strerror or error})") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):  # TLS first: no cleartext answer to read
        connection.close()
        return
    with connection:
        answer = _first_answer(connection)
    if answer is None or len(answer) < 9 or answer[3] != HTTP2_SETTINGS:
        raise FrcnnError(f"--ray {address}: not a Ray cluster: {describe_answer(answer)}; give the address of "
                          f"the head's GCS port (the one 'ray start --head' printed, 6379 by default)")


def _first_answer(connection: socket.socket) -> bytes | None:
    """What a server says to an HTTP/2 client's first words: up to 64 bytes; None when it says nothing in time."""
    connection.settimeout(PROBE_TIMEOUT_S)
    data = b""
    try:
        connection.sendall(HTTP2_PREFACE)
        while len(data) < 64:
            chunk = connection.recv(64 - len(data))
            if not chunk:
                break
            data += chunk
            if len(data) >= 9 and data[3] == HTTP2_SETTINGS:
                break
    except socket.timeout:
        return data or None
    except OSError:
        pass
    return data


def describe_answer(answer: bytes | None) -> str:
    """What answered, in words, from its first bytes."""
    if answer is None:
        return f"something accepted the connection but said nothing within {PROBE_TIMEOUT_S} s"
    if not answer:
        return "something accepted the connection and closed it without an answer"
    text = answer.decode("latin-1")
    first = text.splitlines()[0].strip() if text.strip() else ""
    if text.startswith("HTTP/"):
        return f"a web server answered ({first})"
    if "<html" in text.lower() or "<!doctype html" in text.lower():
        return "a web server answered (with an HTML page)"
    if text.startswith("SSH-"):
        return f"an SSH server answered ({first})"
    if first.isprintable() and first:
        return f"something else answered ({first[:60]})"
    return f"something else answered (bytes {answer[:16].hex(' ')})"


def send_token_when_there_is_one() -> None:
    """Clusters that `ray start` begins ask for a token (Ray 2.59 and later), and Ray's client sends the one it
    has only in token mode; a cluster without authentication accepts such a client too."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    if (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


class RayLogsAside:
    """While Ray runs in this process, what is written to file descriptor 2 (Ray's C++ log lines: a lost object,
    a task that could not report) goes to a log file; Python's `sys.stderr` (the script's messages, progress bars
    and tracebacks) still reaches the terminal."""

    def __init__(self):
        self.path: Path | None = None
        self._saved_fd: int | None = None
        self._stderr = None

    def __enter__(self) -> "RayLogsAside":
        try:
            sys.stderr.flush()
            self.path = _driver_log_path()
            log = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except (OSError, ValueError):
            return self  # no file for it: Ray's lines reach the terminal, as they would anyway
        self._saved_fd = os.dup(2)
        os.dup2(log, 2)
        os.close(log)
        self._stderr = sys.stderr
        encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
        sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(self._saved_fd), "w"), encoding=encoding,
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved_fd is None:
            return
        ours, sys.stderr = sys.stderr, self._stderr
        ours.close()
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None
        with contextlib.suppress(OSError):
            if self.path.stat().st_size == 0:  # Ray had nothing to say: no empty file stays behind
                self.path.unlink()


def _driver_log_path() -> Path:
    """Where this process's Ray log lines go: beside Ray's own logs (RAY_TMPDIR, or the temporary folder's ray/)."""
    folder = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"frcnn-driver-{os.getpid()}.log"


class KeepSignalHandlers:
    """Put back the SIGINT and SIGTERM handlers a script installed before the block: `ray.init` installs its own
    SIGTERM handler (which exits with Ray's messages), and the scripts stop on SIGTERM as on Ctrl-C. Where the
    handler was the default one, Ray's stays."""

    def __enter__(self) -> "KeepSignalHandlers":
        self._handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._handlers.items():
            if callable(handler) and handler is not signal.default_int_handler:
                signal.signal(signum, handler)
