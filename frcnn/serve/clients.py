"""The service's own clients, mounted beside the API: the labelling tools' backends (Label Studio's ML backend, CVAT's
detector route) and the web page (static files in the package, calling only the public API)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from frcnn.serve.cvat import cvat_router
from frcnn.serve.detection import DetectionService
from frcnn.serve.labelstudio import basic_or_key, labelstudio_router
from frcnn.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"


def mount_clients(app: FastAPI, service: DetectionService, settings: ServeSettings, check_key: Callable) -> None:
    """The labelling routes under /integrations (behind the API key, which Label Studio may also send as basic
    auth's password), then the page at `/` (a mount comes last: the routes before it win)."""
    check = basic_or_key(settings, check_key)
    app.include_router(labelstudio_router(service, settings, check_key))
    app.include_router(cvat_router(service, check))
    if (STATIC / "index.html").is_file():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
