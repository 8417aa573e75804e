"""Sources a request names instead of sending (a picture's or a video's URL, a path on the server): only under a
prefix the operator allowed with --allow-sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from frcnn.core.errors import FrcnnError
from frcnn.core.files import fetch_url, read_bytes
from frcnn.serve.errors import ServiceError


def _is_url(source: str) -> bool:
    return bool(urlparse(source).scheme) and len(urlparse(source).scheme) > 1  # "C:" is a drive, not a scheme


def allowed_source(source: str, allowed: Sequence[str]) -> str:
    """The source as it will be read (a path made absolute and free of `..` and links), if it lies under one of
    the `allowed` prefixes; 403 otherwise."""
    if not allowed:
        raise ServiceError(403, "this server reads no URLs or server paths (its operator can allow some with "
                                "--allow-sources PREFIX)")
    if _is_url(source):
        parsed = urlparse(source)
        if parsed.username or parsed.password or ".." in parsed.path.split("/"):
            raise ServiceError(403, f"{source}: not under the sources this server allows")
        if any(source.startswith(prefix) for prefix in allowed if _is_url(prefix)):
            return source
        raise ServiceError(403, f"{source}: not under the sources this server allows")
    resolved = Path(os.path.realpath(source))
    for prefix in allowed:
        if not _is_url(prefix) and resolved.is_relative_to(os.path.realpath(prefix)):
            return str(resolved)
    raise ServiceError(403, f"{source}: not under the folders this server allows")


def read_allowed(source: str, allowed: Sequence[str]) -> bytes:
    """The bytes of an allowed URL (http or https) or server file; 403 where not allowed, 422 where unreadable."""
    checked = allowed_source(source, allowed)
    try:
        if _is_url(checked):
            if urlparse(checked).scheme not in ("http", "https"):
                raise ServiceError(422, f"{source}: only http and https URLs are read")
            return fetch_url(checked)
        return read_bytes(checked)
    except FrcnnError as error:
        raise ServiceError(422, str(error)) from None
