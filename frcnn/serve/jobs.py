"""Video jobs: a clip (or an allowed stream or server file) run through `detect_video.py` in a process of its own,
with the server's models and the job's own options; recorded in SQLite beside the jobs' folders so that a server
stopped mid-job, even by SIGKILL, runs it again when it starts, and every finished job's files stay served.

A job's folder holds `input/` (the uploaded clip), `outputs/` (what detect_video.py writes), `status.jsonl` (its
progress and analytics events as they happen), `preview.jpg` (its newest drawn frame) and `log.txt`.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

from frcnn.cli import detect_video
from frcnn.serve.errors import ServiceError
from frcnn.serve.metrics import Metrics
from frcnn.serve.settings import ServeSettings
from frcnn.video.sources import is_live

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
STATUS_FILE, PREVIEW_FILE, LOG_FILE = "status.jsonl", "preview.jpg", "log.txt"
STOP_GRACE_S = 15.0  # how long a job stopped by SIGINT or SIGTERM may take to finish its frames in flight

# detect_video.py's options a job may set, by form field: a flag, a value, or a value that may be repeated.
FLAGS = {"track", "speed", "heatmap", "save_crops", "hide_labels", "hide_conf"}
VALUES = {"trails", "detect_every", "track_buffer", "anchor", "meters_per_pixel", "calibrate", "speed_unit",
          "heatmap_decay", "frame_stride", "max_frames", "threshold", "line_width"}
REPEATED = {"count_line", "zone", "classes"}
_TRUE, _FALSE = {"1", "true", "on", "yes"}, {"0", "false", "off", "no", ""}


class _UsageError(Exception):
    pass


def _raise_usage(message: str):
    raise _UsageError(message)


def job_arguments(fields: dict[str, list[str]]) -> list[str]:
    """A job's form fields as detect_video.py options; 422 naming a field that is not one."""
    arguments: list[str] = []
    for field, values in fields.items():
        option = "--" + field.replace("_", "-")
        if field in FLAGS:
            value = values[-1].strip().lower()
            if value not in _TRUE | _FALSE:
                raise ServiceError(422, f"{field}: '{values[-1]}' is not true or false")
            arguments += [option] if value in _TRUE else []
        elif field in VALUES:
            arguments += [option, values[-1]]
        elif field == "classes":
            names = [name.strip() for value in values for name in value.split(",") if name.strip()]
            arguments += [option, *names] if names else []
        elif field in REPEATED:
            for value in values:
                arguments += [option, value]
        else:
            known = ", ".join(sorted(FLAGS | VALUES | REPEATED | {"model", "source", "file"}))
            raise ServiceError(422, f"'{field}' is no job option; the options are {known}")
    return arguments


def check_arguments(arguments: list[str]) -> None:
    """detect_video.py's own checks on the job's command line (without opening or loading anything): 422 with its
    usage error."""
    parser = detect_video.build_parser()
    parser.error = _raise_usage  # one line back to the client instead of an exit
    try:
        job = detect_video.video_job(parser.parse_args(arguments), parser)
    except _UsageError as error:
        raise ServiceError(422, str(error)) from None
    if job.errors:
        raise ServiceError(422, job.errors[0])


class JobStore:
    """The jobs' records in SQLite: one row per job, written by the event loop's thread only."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._db = sqlite3.connect(folder / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("""CREATE TABLE IF NOT EXISTS jobs (
                id TEXT PRIMARY KEY, created REAL, updated REAL, state TEXT, source TEXT, name TEXT,
                live INTEGER, arguments TEXT, frames_done INTEGER DEFAULT 0, frames_total INTEGER, fps REAL,
                error TEXT, pid INTEGER)""")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, job_id: str, source: str, name: str, arguments: list[str]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, created, updated, state, source, name, live, arguments) "
                             "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                             (job_id, now, now, source, name, int(is_live(source)), json.dumps(arguments)))

    def update(self, job_id: str, **fields) -> None:
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {columns}, updated = ? WHERE id = ?",
                             (*fields.values(), time.time(), job_id))

    def get(self, job_id: str) -> dict | None:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
            row = cursor.fetchone()
            return None if row is None else dict(zip([c[0] for c in cursor.description], row))

    def newest(self, states: Sequence[str], limit: int, before: dict | None = None) -> list[dict]:
        """Up to `limit` jobs in these states, newest first, and only those older than the job `before` (a page
        after the one it ended): one query, whatever the number of jobs."""
        marks = ", ".join("?" * len(states))
        older = "AND (created, id) < (?, ?)" if before else ""
        with self._lock:
            cursor = self._db.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) {older} ORDER BY created DESC, id DESC LIMIT ?",
                (*states, *((before["created"], before["id"]) if before else ()), limit))
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def ids(self, states: Sequence[str] = STATES) -> list[str]:
        """The jobs in these states, oldest first."""
        marks = ", ".join("?" * len(states))
        with self._lock:
            return [row[0] for row in self._db.execute(
                f"SELECT id FROM jobs WHERE state IN ({marks}) ORDER BY created", tuple(states))]

    def counts(self) -> dict[str, int]:
        with self._lock:
            found = dict(self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in STATES}


def _die_with_parent() -> None:
    """In the job's process before it starts: Linux kills it when the server dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _job_environment() -> dict[str, str]:
    """The server's environment, with this package importable however the server was started (from a clone too)."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def _last_error(log: Path) -> str:
    """The job's one-line reason: the last `error:` line detect_video.py wrote, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip()]
    except OSError:
        return "the job stopped"
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors[-1][len("error: "):] if errors else lines[-1] if lines else "the job stopped")[:500]


class StatusReader:
    """Reads a job's status file as it grows: each call gives the complete lines written since the last one,
    numbered from 1, without reading the file again from its start."""

    def __init__(self, path: Path, after: int = 0):
        self.path, self.after = path, after
        self._offset, self._number = 0, 0
        self._lock = threading.Lock()  # a reader may be asked from two threads at once

    def new_lines(self) -> list[tuple[int, dict]]:
        with self._lock:
            return self._read()

    def _read(self) -> list[tuple[int, dict]]:
        found = []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break  # a line still being written: read it whole next time
                    self._offset += len(raw)
                    self._number += 1
                    if self._number > self.after:
                        found.append((self._number, json.loads(raw)))
        except FileNotFoundError:
            pass
        return found


class JobRunner:
    """Runs the queued jobs, `job_workers` at a time, each as a detect_video.py process."""

    def __init__(self, settings: ServeSettings, model_arguments: Callable[[str | None], list[str]], metrics: Metrics):
        self.settings, self.model_arguments, self.metrics = settings, model_arguments, metrics
        self.store = JobStore(settings.jobs_dir)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._cancelled: set[str] = set()
        self._progress: dict[str, StatusReader] = {}
        self._stopping = False
        self._workers: list[asyncio.Task] = []

    def folder(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    # ------------------------------------------------------------ the queue

    async def start(self) -> None:
        """Queue again what a stopped server left queued or running, then start the workers."""
        for job_id in self.store.ids(("queued", "running")):
            self._stop_leftover(self.store.get(job_id))
            self.store.update(job_id, state="queued", pid=None)
            self._queue.put_nowait(job_id)
        self._count()
        self._workers = [asyncio.get_running_loop().create_task(self._work(), name=f"jobs-{n}")
                         for n in range(self.settings.job_workers)]

    @staticmethod
    def _stop_leftover(job: dict) -> None:
        """A job process that outlived its server (where the kernel does not stop it): stopped before a rerun."""
        pid = job.get("pid")
        if not pid:
            return
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return
        if "frcnn.cli.detect_video" in command and job["id"] in command:
            os.kill(pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Stop the running jobs as Ctrl-C would (their frames so far are kept) and leave them queued for the next
        start."""
        self._stopping = True
        for process in list(self._processes.values()):
            _signal(process, signal.SIGTERM)
        waits = [process.wait() for process in self._processes.values()]
        if waits:
            await asyncio.wait([asyncio.ensure_future(wait) for wait in waits], timeout=STOP_GRACE_S)
        for process in list(self._processes.values()):
            _signal(process, signal.SIGKILL)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.store.close()

    def _count(self) -> None:
        for state, count in self.store.counts().items():
            self.metrics.jobs.labels(state).set(count)

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            job = self.store.get(job_id)
            if job is None or job["state"] != "queued":
                continue
            try:
                await self._run(job)
            except Exception as error:  # a job's failure never stops the queue
                self.store.update(job_id, state="failed", error=f"the server could not run the job: {error}")
            self._processes.pop(job_id, None)
            self._count()

    async def _run(self, job: dict) -> None:
        folder = self.folder(job["id"])
        command = [sys.executable, "-m", "frcnn.cli.detect_video", *json.loads(job["arguments"])]
        self.store.update(job["id"], state="running", error=None)
        self._count()
        with open(folder / LOG_FILE, "ab") as log:
            process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                           stderr=log, env=_job_environment(),
                                                           preexec_fn=_die_with_parent)
        self._processes[job["id"]] = process
        self.store.update(job["id"], pid=process.pid)
        follower = asyncio.get_running_loop().create_task(self._follow(job["id"]))
        code = await process.wait()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        self._record_progress(job["id"])
        self._progress.pop(job["id"], None)
        if self._stopping:
            self.store.update(job["id"], state="queued", pid=None)  # run again at the next start
        elif job["id"] in self._cancelled:
            self.store.update(job["id"], state="cancelled", pid=None)
        elif code == 0:
            self.store.update(job["id"], state="done", pid=None)
        else:
            self.store.update(job["id"], state="failed", pid=None, error=_last_error(folder / LOG_FILE))

    def _record_progress(self, job_id: str) -> None:
        reader = self._progress.setdefault(job_id, StatusReader(self.folder(job_id) / STATUS_FILE))
        progress = [line for _, line in reader.new_lines() if line.get("type") == "progress"]
        if progress:
            last = progress[-1]
            self.store.update(job_id, frames_done=last["frames_done"], frames_total=last["frames_total"],
                              fps=last["fps"])

    async def _follow(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self._record_progress, job_id)

    # ------------------------------------------------------------ what the routes ask

    def new_job(self) -> tuple[str, Path]:
        """A new job's id and the folder its uploaded clip goes into."""
        job_id = uuid.uuid4().hex[:16]
        inputs = self.folder(job_id) / "input"
        inputs.mkdir(parents=True)
        return job_id, inputs

    def submit(self, job_id: str, source: str, fields: dict[str, list[str]], model: str | None) -> dict:
        """Check the job's options as detect_video.py would, record the job and queue it: 422 for options it
        refuses, 429 when the queue is full; the job's folder goes when it is refused."""
        try:
            waiting = len(self.store.ids(("queued",)))
            if waiting >= self.settings.max_jobs:
                self.metrics.rejected.labels("jobs_full").inc()
                raise ServiceError(429, f"{waiting} video jobs are waiting already (the server's --max-jobs); try "
                                        f"again when one has finished", {"Retry-After": "30"})
            folder = self.folder(job_id)
            models = self.model_arguments(model)
            arguments = ["--input", source, "--output", str(folder / "outputs"), "--json", "--resume",
                         *models, *job_arguments(fields), "--status", str(folder / STATUS_FILE),
                         "--preview", str(folder / PREVIEW_FILE)]
            check_arguments(arguments)
        except BaseException:
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
            raise
        self.store.add(job_id, source, Path(source).name if not is_live(source) else source, arguments)
        self._queue.put_nowait(job_id)
        self._count()
        return self.describe(job_id)

    def cancel(self, job_id: str) -> dict:
        """Stop a queued or running job (a running one as Ctrl-C stops it: its video so far is kept)."""
        job = self._job(job_id)
        if job["state"] == "queued":
            self.store.update(job_id, state="cancelled")
        elif job["state"] == "running":
            self._cancelled.add(job_id)
            if job_id in self._processes:
                _signal(self._processes[job_id], signal.SIGINT)
        self._count()
        return self.describe(job_id)

    def remove(self, job_id: str) -> None:
        """Forget a finished job and delete its folder."""
        self._job(job_id)
        self.store.remove(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
        self._count()

    def _job(self, job_id: str) -> dict:
        job = self.store.get(job_id) if job_id.isalnum() else None
        if job is None:
            raise ServiceError(404, f"no job {job_id}")
        return job

    def describe(self, job_id: str) -> dict:
        """A job's state, progress and links (what GET /v1/jobs/{id} answers)."""
        return _described(self._job(job_id))

    def listed(self, states: Sequence[str], limit: int, before: str | None = None) -> list[dict]:
        """What GET /v1/jobs answers: the newest jobs in these states, older than the job `before` if given."""
        return [_described(job) for job in self.store.newest(states, limit, self._job(before) if before else None)]

    def files(self, job_id: str) -> list[dict]:
        """The job's output files (crops included), by name relative to its outputs' folder."""
        self._job(job_id)
        outputs = self.folder(job_id) / "outputs"
        found = sorted(p for p in outputs.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [{"name": p.relative_to(outputs).as_posix(), "size": p.stat().st_size,
                 "url": f"/v1/jobs/{job_id}/files/{p.relative_to(outputs).as_posix()}"} for p in found
                if not p.relative_to(outputs).as_posix().startswith(".")]

    def file(self, job_id: str, name: str) -> Path:
        """One output file's path; 404 for a name that is not one of them (or leads out of the folder)."""
        self._job(job_id)
        outputs = (self.folder(job_id) / "outputs").resolve()
        path = (outputs / name).resolve()
        if not path.is_relative_to(outputs) or not path.is_file() or any(
                part.startswith(".") for part in path.relative_to(outputs).parts):
            raise ServiceError(404, f"job {job_id} has no file {name}")
        return path


def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass


def _described(job: dict) -> dict:
    """A job's record as the API shows it."""
    base = f"/v1/jobs/{job['id']}"
    return {"id": job["id"], "state": job["state"], "source": job["name"], "live": bool(job["live"]),
            "created": job["created"], "updated": job["updated"], "frames_done": job["frames_done"] or 0,
            "frames_total": job["frames_total"], "fps": job["fps"], "error": job["error"],
            "links": {"self": base, "events": f"{base}/events", "files": f"{base}/files",
                      "preview": f"{base}/preview.mjpeg"}}
