"""How many request bodies may be read at once: a budget of uploads in flight, by count and by bytes.

Each upload is read into memory and decoded before it becomes a job, so concurrent uploads that are each
under the per-request limit could still add up to far more than one. A request reserves its declared
`Content-Length` (or the whole per-request limit when it sends none) before its body is read, and gives it
back when it has been decoded and queued or refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class UploadsBusy(Exception):
    """Too many uploads (or upload bytes) are being read right now; the client should retry shortly."""

    def __init__(self, count: int, nbytes: int, retry_after: int = 2) -> None:
        super().__init__(f"the engine is already receiving {count} upload(s) ({nbytes // 2**20} MiB); try again "
                         f"in about {retry_after} s")
        self.retry_after = retry_after


class UploadBudget:
    """At most `max_count` bodies and `max_bytes` declared bytes in flight; one upload is always let in."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count, self.max_bytes = max_count, max_bytes
        self._lock = threading.Lock()
        self.count = 0
        self.bytes = 0

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the budget while the body is read and decoded; raises UploadsBusy when it is spent."""
        with self._lock:
            # An idle engine takes any single upload the per-request limit allows, whatever max_bytes says.
            if self.count and (self.count >= self.max_count or self.bytes + nbytes > self.max_bytes):
                raise UploadsBusy(self.count, self.bytes)
            self.count += 1
            self.bytes += nbytes
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1
                self.bytes -= nbytes


def declared_length(content_length: str | None, limit: int) -> int:
    """The bytes a request says it will send; a body without Content-Length (chunked) may send up to `limit`."""
    text = (content_length or "").strip()
    return int(text) if text.isdigit() else limit
