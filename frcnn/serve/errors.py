"""A request that cannot be answered as asked: its HTTP status and one line saying why."""

from __future__ import annotations


class ServiceError(Exception):
    """Answered as `{"error": message}` with `status` (and `headers`, such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
