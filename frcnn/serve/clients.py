"""The service's own clients, mounted beside the API: the web page (static files in the package)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from frcnn.serve.detection import DetectionService
from frcnn.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"


def mount_clients(app: FastAPI, service: DetectionService, settings: ServeSettings, check_key: Callable) -> None:
    """The page at `/` (a mount comes last: the API's routes win)."""
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
