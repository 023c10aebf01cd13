"""Helpers for the server tests: test images, raw HTTP for what the client would never send, polling."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from engine.server import Limits

# Small enough that every test image fits and the limit tests need no big buffers.
TEST_LIMITS = Limits(max_upload_bytes=2 * 2**20, max_pixels=128 * 128, max_output_pixels=512 * 512)
FAST = {"strength": 0.3, "steps": 8}  # about two model calls a stage on the tiny model
SLOW = {"strength": 1.0, "steps": 200, "scale": 4}  # two stages of 200 steps: long enough to catch running


def slow_job(client) -> str:
    """Submit a job that runs for seconds on the tiny model (400 model calls), for cancel and queue tests."""
    return client.submit_raw(raw_image(32, 32), 32, 32, **SLOW)


def raw_image(width: int, height: int, channels: int = 4, depth: int = 8, seed: int = 0) -> bytes:
    """A smooth random image as raw little-endian samples (gradients, so the VAE sees something image-like)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x / max(width - 1, 1)), (y / max(height - 1, 1)), np.full_like(x, 0.5, dtype=float),
                     np.ones_like(x, dtype=float)], axis=2)[:, :, :channels]
    values = (base + rng.normal(0, 0.05, base.shape)).clip(0, 1)
    if depth == 8:
        return np.round(values * 255).astype(np.uint8).tobytes()
    if depth == 16:
        return np.round(values * 65535).astype("<u2").tobytes()
    return values.astype("<f4").tobytes()


def http_request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """One raw HTTP request (for what the client would never send); returns status, headers, body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def multipart_body(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    """A multipart/form-data body from (name, filename or None, data) parts, with no checks at all."""
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post_job(url: str, token: str, params: dict | str, image: bytes, mask: bytes | None = None,
             ) -> tuple[int, dict, bytes]:
    """POST /v1/jobs with exactly these bytes (params as given, even if it is not valid JSON)."""
    text = params if isinstance(params, str) else json.dumps(params)
    parts = [("params", None, text.encode()), ("image", "image.bin", image)]
    if mask is not None:
        parts.append(("mask", "mask.bin", mask))
    body, content_type = multipart_body(parts)
    return http_request(url, "POST", "/v1/jobs", body,
                        {"Authorization": f"Bearer {token}", "Content-Type": content_type})


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02):
    """Poll until `predicate()` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {predicate}")


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]
