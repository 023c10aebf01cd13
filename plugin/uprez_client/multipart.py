"""multipart/form-data bodies as a list of chunks, so large pixel buffers are sent without being copied."""

from __future__ import annotations

import json
import uuid
from typing import Any, Union

BytesLike = Union[bytes, bytearray, memoryview]


def _as_bytes_view(data: BytesLike) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def encode(params: dict, files: list[tuple[str, str, str, BytesLike]],
           boundary: str | None = None) -> tuple[str, list[Any], int]:
    """(content type, body chunks, body length) for a JSON `params` part plus (name, filename, type, data) files."""
    boundary = boundary or "uprez-" + uuid.uuid4().hex
    chunks: list[Any] = []
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n'
            'Content-Type: application/json\r\n\r\n')
    chunks.append(head.encode("utf-8") + json.dumps(params).encode("utf-8") + b"\r\n")
    for name, filename, content_type, data in files:
        header = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f"Content-Type: {content_type}\r\n\r\n")
        chunks.append(header.encode("utf-8"))
        chunks.append(_as_bytes_view(data))
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    length = sum(len(chunk) for chunk in chunks)
    return f"multipart/form-data; boundary={boundary}", chunks, length
