"""The service's own settings, as one frozen value made once from the options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeSettings:
    """Where the service listens, what a request may send, how pictures are batched and where jobs go."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # every /v1 and /integrations route asks for it when set
    max_upload_mb: float = 20.0  # a request's body (a video job's: max_video_mb)
    max_video_mb: float = 500.0
    max_pixels: int = 40_000_000  # a picture's width x height, read from its header before decoding
    max_files: int = 16  # pictures in one request
    queue_size: int = 16  # pictures waiting or being detected; one more gets 429
    timeout_s: float = 60.0  # a detect request's limit from arrival to answer (504 past it)
    max_batch: int = 1  # pictures of one model gathered into one inference call
    batch_wait_ms: float = 5.0  # how long the first picture of a batch waits for others
    allow_sources: tuple[str, ...] = ()  # URL and path prefixes a request may name as a source
    cors: tuple[str, ...] = ()  # origins a browser may call the API from
    jobs_dir: Path = Path("outputs/jobs")
    max_jobs: int = 8  # video jobs waiting; one more gets 429
    job_workers: int = 1  # video jobs run at the same time

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_video_bytes(self) -> int:
        return int(self.max_video_mb * 1024 * 1024)
