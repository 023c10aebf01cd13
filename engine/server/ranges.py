"""HTTP range requests on results (RFC 9110 §14): a dropped download resumes where it stopped.

One range per request (`bytes=A-B`, `bytes=A-`, `bytes=-N`) is what a resuming client sends; a request for
several ranges gets the whole result (which the RFC allows). `If-Range` with the result's ETag guards a resume
against a result that changed in between (here: a job id reused after its result was forgotten cannot happen,
but a client cannot know that).
"""

from __future__ import annotations

from collections.abc import Iterator

CHUNK = 256 * 1024  # one TLS write at a time: a 20 MB result is never copied whole into the socket's buffers


class Unsatisfiable(ValueError):
    """The range starts past the end of the result (416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, of a single `bytes=` range within `size`; None = send the whole.

    Raises Unsatisfiable when no byte of the range exists.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # another unit, or several ranges: the whole result, with 200
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isdigit() or (not first_text and last_text.isdigit())):
        return None  # malformed: ignored, as the RFC says
    if not first_text:  # the last N bytes
        count = int(last_text)
        if count == 0 or size == 0:
            raise Unsatisfiable(f"bytes=-{count} of {size}")
        return max(0, size - count), size - 1
    if last_text and not last_text.isdigit():
        return None
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # malformed: ignored
    if first >= size:
        raise Unsatisfiable(f"bytes={first}- of {size}")
    return first, min(last, size - 1)


def etag_for(sha256: str) -> str:
    return f'"{sha256[:32]}"'


def if_range_allows(header: str | None, etag: str) -> bool:
    """Whether a Range may be honoured under this If-Range (a date, or an ETag of another result, may not)."""
    if header is None:
        return True
    return header.strip() == etag  # strong comparison; a date never matches, so the whole result is sent


def chunks(data: bytes, first: int, last: int) -> Iterator[memoryview]:
    """Slices of `data[first:last + 1]` as views: no copy of the result is made to send it."""
    view = memoryview(data)
    for start in range(first, last + 1, CHUNK):
        yield view[start:min(start + CHUNK, last + 1)]
