"""A real server for the service's tests: serve.py in a subprocess on 127.0.0.1, on a free port, offline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from helpers import ROOT, offline_env

READY_TIMEOUT_S = 300
JOB_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python serve.py ARGS` listening on 127.0.0.1:PORT; its output in `log`."""

    def __init__(self, folder: Path, *args: str, env: dict | None = None, port: int | None = None):
        self.folder, self.args, self.env = folder, args, env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> "Server":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--port", str(self.port),
                                             *self.args], cwd=self.folder, env=offline_env(self.folder, self.env),
                                            stdout=log, stderr=log)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, headers: dict | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server stopped: {self.output()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5, headers=headers).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the server was not ready in {READY_TIMEOUT_S} s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_mb(self) -> float:
        """The server process's resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        os.kill(self.process.pid, signum)
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop(signal.SIGKILL if exc[0] else signal.SIGTERM)


def events(server: Server, job_id: str, last_event_id: str | None = None,
           timeout: float = JOB_TIMEOUT_S) -> list[tuple[str | None, str, dict]]:
    """Every server-sent event of the job until its stream ends: (id, event, data)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    found, event_id, kind = [], None, None
    with httpx.stream("GET", f"{server.url}/v1/jobs/{job_id}/events", headers=headers,
                      timeout=timeout) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                found.append((event_id if kind != "state" else None, kind, json.loads(line[6:])))
                event_id = None
    return found


def wait_for(server: Server, job_id: str, states=("done", "failed", "cancelled"), frames: int = 0) -> dict:
    """The job once it is in one of these states with at least `frames` done."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30).json()
        if job["state"] in states and job["frames_done"] >= frames:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job}: {server.output()[-3000:]}")
