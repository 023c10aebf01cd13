"""The engine's client for the editor bridges: standard library only, Python 3.8+ (docs/protocol.md)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import threading
from typing import Any, Callable, Dict
from urllib.parse import quote, urlsplit

from . import multipart
from .connection import Connection, PinMismatch, PinnedHTTPSConnection, normalise_fingerprint
from .connection import parse as parse_connection
from .discovery import config_dir, engine_url, read_config_json, read_token
from .errors import (
    EngineError,
    EngineNotRunning,
    JobCancelled,
    JobFailed,
    QueueFull,
    RejectedInput,
    Unauthorized,
    WrongCertificate,
)
from .protocol import ENGINE_FILE, PNG_SIGNATURE, TIFF_SIGNATURES
from .remote_job import RemoteJob

EventCallback = Callable[[Dict[str, Any]], None]
TERMINAL_EVENTS = ("done", "failed", "cancelled")
STREAM_TIMEOUT_S = 60.0  # the engine sends a keep-alive every 10 s, so a silent minute means it is gone
TRANSFER_TIMEOUT_S = 300.0  # uploads and result downloads of large buffers
FALLBACK_MESSAGES = {413: "the request is over the engine's size limits (see `uprez serve --help`)"}
READ_CHUNK = 1024 * 1024  # a result is read into its buffer this much at a time
RESUME_TRIES = 5  # a result download that breaks is resumed (HTTP Range) this many times before giving up


def _file_kind(data: bytes) -> str | None:
    if data[:8] == PNG_SIGNATURE:
        return "png"
    if data[:4] in TIFF_SIGNATURES:
        return "tiff"
    return None


def _read_file(image: Any) -> bytes:
    """The bytes of a PNG or TIFF given as a path or bytes; ValueError for anything else."""
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            image = f.read()
    data = bytes(image)
    if _file_kind(data) is None:
        raise ValueError("only PNG and TIFF files can be sent as files; send other images as raw pixels")
    return data


def _local_pin(url: str) -> str | None:
    """The fingerprint a remote engine on this machine published in engine.json, for its own URL."""
    info = read_config_json(ENGINE_FILE)
    pin = info.get("sha256")
    return pin if isinstance(pin, str) and str(info.get("url", "")).rstrip("/") == url else None


class Client:
    """Talks to one engine. Finds it (UPREZ_URL, engine.json, the default port) and its token by itself, or takes
    a remote engine's connection string (`uprez://TOKEN@HOST:PORT/?sha256=…`, or a parsed Connection).

    With a certificate fingerprint every connection is HTTPS pinned to it: a wrong certificate raises
    WrongCertificate before the token or any pixel is sent.
    """

    def __init__(self, url: str | Connection | None = None, token: str | None = None, timeout: float = 30.0,
                 fingerprint: str | None = None) -> None:
        if isinstance(url, str) and url.strip().lower().startswith("uprez://"):
            url = parse_connection(url)  # a ValueError says what is wrong with the string
        if isinstance(url, Connection):
            url, token, fingerprint = url.url, url.token if token is None else token, fingerprint or url.fingerprint
        self.url = (url or engine_url()).rstrip("/")
        self.token = token if token is not None else read_token()
        self.timeout = timeout
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the engine URL must look like http://127.0.0.1:8742, got {self.url!r}")
        self._https = parts.scheme == "https"
        if fingerprint and not self._https:
            raise ValueError(f"a certificate fingerprint goes with an https URL, not {self.url!r}")
        found = fingerprint or (_local_pin(self.url) if self._https else None)
        self.fingerprint = normalise_fingerprint(found) if found else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")

    @classmethod
    def from_connection(cls, connection: str | Connection, timeout: float = 30.0) -> Client:
        """A client for the remote engine of a connection string (`uprez tokens add` printed it)."""
        return cls(parse_connection(connection) if isinstance(connection, str) else connection, timeout=timeout)

    # -- plain requests -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Version, device, loaded model and queue length; needs no token."""
        return self._json("GET", "/v1/health")

    def models(self) -> dict[str, Any]:
        return self._json("GET", "/v1/models")

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the engine remembers, oldest first (for a queue panel)."""
        return self._json("GET", "/v1/jobs")["jobs"]

    def queue(self) -> dict[str, Any]:
        """The whole GET /v1/jobs answer: `jobs`, `waiting`, `running`, and whether the model is loaded
        (`model_loaded`, `idle_unloaded`); polling it does not keep an idle engine awake, health does."""
        return self._json("GET", "/v1/jobs")

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    def cancel(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Cancel a queued or running job; for a finished job, forget it and free its result."""
        return self._json("DELETE", f"/v1/jobs/{quote(job_id, safe='')}", timeout=timeout)

    # -- a job as a handle ----------------------------------------------------------------------------
    def start(self, image: Any, width: int | None = None, height: int | None = None, channel_order: str = "BGRA",
              depth: int = 8, mask: bytes | None = None, profile: bytes | None = None,
              cancel_on_disconnect: bool = True, **params: Any) -> RemoteJob:
        """Send a job and follow it on a thread of its own; returns at once with the job's handle.

        Raw pixels with `width` and `height` (as `submit_raw`), else a PNG or TIFF path or bytes (as
        `submit_file`). `cancel_on_disconnect`: the engine cancels the job if this process goes away while
        following it. Errors of the upload come out of the handle's `events()`.
        """
        if (width is None) != (height is None):
            raise ValueError("give both width and height for raw pixels, or neither for a PNG or TIFF file")
        if width is not None and height is not None:
            def submit() -> str:
                return self.submit_raw(image, width, height, channel_order, depth, mask, profile, **params)
        else:
            data = _read_file(image)  # a bad file is refused here, before any thread starts

            def submit() -> str:
                return self.submit_file(data, mask, profile, **params)
        return RemoteJob(self, submit, cancel_on_disconnect)._begin()

    # -- submitting -----------------------------------------------------------------------------------
    def submit_raw(self, pixels: Any, width: int, height: int, channel_order: str = "BGRA", depth: int = 8,
                   mask: bytes | None = None, profile: bytes | None = None, **params: Any) -> str:
        """Queue raw pixels (bytes-like, little-endian samples); returns the job id.

        `mask`: one byte per pixel (0 = keep, 255 = upscale with the model), or an 8-bit PNG. `profile`: the
        pixels' ICC profile (the document's); the result comes back in it. None = sRGB. `params`:
        scale, strength, steps, seed, prompt, negative_prompt, cfg_scale, guidance, model, region_only,
        preview_every (then `preview` events carry a base64 JPEG).
        """
        params.update(format="raw", width=width, height=height, channels=channel_order, depth=depth)
        return self._submit(params, ("image", "image.raw", "application/octet-stream", pixels), mask, profile)

    def submit_file(self, image: Any, mask: bytes | None = None, profile: bytes | None = None,
                    **params: Any) -> str:
        """Queue a PNG or TIFF given as a path or as bytes; the result comes back in the same format."""
        data = _read_file(image)
        kind = _file_kind(data)
        params["format"] = kind
        return self._submit(params, ("image", f"image.{kind}", f"image/{kind}", data), mask, profile)

    def _submit(self, params: dict[str, Any], image: tuple[str, str, str, Any], mask: bytes | None,
                profile: bytes | None = None) -> str:
        files = [image]
        if profile:
            files.append(("profile", "profile.icc", "application/vnd.iccprofile", profile))
        if mask is not None:
            is_png = bytes(mask[:8]) == PNG_SIGNATURE
            params.setdefault("mask_format", "png" if is_png else "raw")
            files.append(("mask", "mask.png" if is_png else "mask.raw",
                          "image/png" if is_png else "application/octet-stream", mask))
        content_type, chunks, length = multipart.encode(params, files)
        headers = {"Content-Type": content_type, "Content-Length": str(length)}
        return self._json("POST", "/v1/jobs", chunks, headers, TRANSFER_TIMEOUT_S)["id"]

    # -- following and collecting ---------------------------------------------------------------------
    def events(self, job_id: str, callback: EventCallback | None = None,
               cancel_on_disconnect: bool = True) -> dict[str, Any]:
        """Read the job's events until it ends, calling `callback` for each; returns the final event."""
        return EventStream(self, job_id, callback, cancel_on_disconnect).run()

    def listen(self, job_id: str, callback: EventCallback | None = None,
               cancel_on_disconnect: bool = True) -> EventStream:
        """`events()` on a background thread; `close()` on the stream hangs up (and so cancels the job)."""
        return EventStream(self, job_id, callback, cancel_on_disconnect).start()

    def wait(self, job_id: str, on_event: EventCallback | None = None,
             cancel_on_disconnect: bool = True) -> dict[str, Any]:
        """Block until the job ends; returns its final state, or raises JobFailed / JobCancelled."""
        final = self.events(job_id, on_event, cancel_on_disconnect)
        if final["event"] == "failed":
            raise JobFailed(final.get("message") or "the job failed")
        if final["event"] == "cancelled":
            raise JobCancelled(final.get("message") or "the job was cancelled")
        return self.job(job_id)

    def result(self, job_id: str) -> tuple[bytes, dict[str, Any]]:
        """The output bytes and their format: raw (width, height, channels, depth), png or tiff.

        A download that breaks is resumed where it stopped (HTTP Range), and the joined bytes are checked
        against the engine's digest of the whole.
        """
        status, headers, data, _pieces = self.download_result(job_id)
        if status == 409:
            body = _error_body(data)
            state = body.get("state")
            if state == "failed":
                raise JobFailed(body.get("message") or body.get("error") or "the job failed", status)
            if state == "cancelled":
                raise JobCancelled(body.get("error") or "the job was cancelled", status)
        self._raise_for(status, headers, data)
        meta: dict[str, Any] = {}
        for key, value in headers.items():
            if key.lower().startswith("x-uprez-"):
                name = key[len("x-uprez-"):].lower()
                meta[name] = int(value) if value.isdigit() else value
        return data, meta

    def upscale_raw(self, pixels: Any, width: int, height: int, channel_order: str = "BGRA", depth: int = 8,
                    mask: bytes | None = None, on_event: EventCallback | None = None,
                    profile: bytes | None = None, **params: Any) -> tuple[bytes, dict[str, Any]]:
        """Submit, follow and fetch in one blocking call: what a bridge's worker thread runs."""
        job_id = self.submit_raw(pixels, width, height, channel_order, depth, mask, profile, **params)
        self.wait(job_id, on_event)
        return self.result(job_id)

    def download_result(self, job_id: str, tries: int = RESUME_TRIES) -> tuple[int, dict[str, str], bytes, int]:
        """GET the result, resuming a broken transfer with `Range` up to `tries` times: (status, headers of the
        first answer, body, pieces it came in). A body that does not match the engine's digest raises EngineError."""
        path = f"/v1/jobs/{quote(job_id, safe='')}/result"
        conn, response = self.open("GET", path, timeout=TRANSFER_TIMEOUT_S)
        headers = dict(response.getheaders())
        length = response.getheader("Content-Length")
        if response.status != 200 or length is None or not length.isdigit():
            try:  # an error, or no length to resume against: the whole answer as it comes
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                if response.status < 400:
                    raise self._not_running(exc) from None
                data = getattr(exc, "partial", b"")  # a refusal may lose its body when the engine hangs up
            finally:
                conn.close()
            return response.status, headers, data, 1
        buffer = bytearray(int(length))
        done, pieces, etag = 0, 0, response.getheader("ETag")
        while True:
            pieces += 1
            try:
                done, broken = _read_into(response, buffer, done)
            finally:
                conn.close()
            if broken is not None and (pieces > tries or etag is None):
                raise self._not_running(broken)
            if done == len(buffer):
                break
            # Resume from the first missing byte; If-Range makes the engine send the whole if the result changed.
            conn, response = self.open("GET", path, headers={"Range": f"bytes={done}-", "If-Range": etag or ""},
                                       timeout=TRANSFER_TIMEOUT_S)
            if response.status == 200:
                done = 0  # not the same result any more: start again
            elif response.status != 206 or not (response.getheader("Content-Range") or "").startswith(
                    f"bytes {done}-{len(buffer) - 1}/{len(buffer)}"):
                conn.close()
                raise EngineError(f"the engine did not resume the download of job {job_id}'s result "
                                  f"(HTTP {response.status}); fetch it again", response.status)
        _check_digest(buffer, headers, job_id)
        return 200, headers, bytes(buffer), pieces

    # -- HTTP -----------------------------------------------------------------------------------------
    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https and self.fingerprint:
            return PinnedHTTPSConnection(self._host, self._port, self.fingerprint, timeout)
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None = None, with_token: bool = True) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "uprez-client"}
        if self.token and with_token:
            headers["Authorization"] = "Bearer " + self.token
        headers.update(extra or {})
        return headers

    def _not_running(self, exc: BaseException) -> EngineNotRunning:
        if isinstance(exc, socket.timeout):
            return EngineNotRunning(f"the Uprez engine at {self.url} did not answer in time; it may be busy "
                                    "loading a model or stuck (restart it with `uprez serve`)")
        return EngineNotRunning(f"no Uprez engine answers at {self.url} ({exc}); start it with `uprez serve`, "
                                "or set UPREZ_URL to where it runs")

    def open(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             timeout: float | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request and return the open connection and response (for streaming)."""
        conn = self._connect(timeout or self.timeout)
        hung_up: OSError | None = None
        try:
            # No token to /v1/health: it needs none, and it is what a client asks an engine it has not verified yet.
            conn.request(method, self._prefix + path, body=body,
                         headers=self._headers(headers, with_token=path != "/v1/health"))
        except PinMismatch as exc:  # raised by connect(), before a byte of the request was sent
            conn.close()
            raise WrongCertificate(str(exc)) from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            hung_up = exc  # the engine may refuse a large upload (413) before reading it; try to read why
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._not_running(exc) from None
        try:
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if hung_up is not None:
                raise RejectedInput(f"the engine hung up during the upload ({hung_up}); the image is probably "
                                    "over its upload limit (see `uprez serve --max-upload-mb`)", 413) from None
            raise self._not_running(exc) from None

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float | None = None) -> tuple[int, dict[str, str], bytes]:
        conn, response = self.open(method, path, body, headers, timeout)
        try:
            try:
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                if response.status < 400:
                    raise self._not_running(exc) from None
                # A refusal sent before the upload ended (413) may lose its body when the engine hangs up.
                data = getattr(exc, "partial", b"")
            return response.status, dict(response.getheaders()), data
        finally:
            conn.close()

    def _json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
              timeout: float | None = None) -> Any:
        status, response_headers, data = self._request(method, path, body, headers, timeout)
        self._raise_for(status, response_headers, data)
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError:
            raise EngineError(f"the engine answered {method} {path} with something that is not JSON", status) \
                from None

    def _raise_for(self, status: int, headers: dict[str, str], data: bytes) -> None:
        if status < 400:
            return
        message = _error_body(data).get("error") or FALLBACK_MESSAGES.get(status, f"the engine answered HTTP {status}")
        if status in (401, 421):
            hint = "" if self.token else f" (no token found in {config_dir()}; is the engine set up?)"
            raise Unauthorized(message + hint, status)
        if status == 429:
            retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), "5")
            raise QueueFull(message, status, float(retry) if retry.replace(".", "", 1).isdigit() else 5.0)
        if status < 500:
            raise RejectedInput(message, status)
        raise EngineError(message, status)


def _read_into(response: http.client.HTTPResponse, buffer: bytearray,
               done: int) -> tuple[int, BaseException | None]:
    """Read the response body into `buffer` from offset `done` until it is full; returns the new offset and the
    error that broke the transfer, if one did (what arrived before it is kept, to resume from)."""
    with memoryview(buffer) as view:
        try:
            while done < len(buffer):
                count = response.readinto(view[done:done + READ_CHUNK])
                if not count:
                    raise http.client.IncompleteRead(b"", len(buffer) - done)
                done += count
        except (OSError, http.client.HTTPException) as exc:
            return done, exc
    return done, None


def _check_digest(data: bytearray, headers: dict[str, str], job_id: str) -> None:
    """Compare the joined pieces with the engine's `Repr-Digest: sha-256=:…:` of the whole result."""
    digest = next((v for k, v in headers.items() if k.lower() == "repr-digest"), "")
    for item in digest.split(","):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() == "sha-256" and value.startswith(":") and value.endswith(":"):
            if hashlib.sha256(data).digest() != base64.b64decode(value[1:-1]):
                raise EngineError(f"the result of job {job_id} arrived damaged (its SHA-256 does not match the "
                                  "engine's); fetch it again")
            return


def _error_body(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data.decode("utf-8"))
    except ValueError:
        return {"error": data[:500].decode("utf-8", "replace").strip()}
    return body if isinstance(body, dict) else {"error": str(body)}


class EventStream:
    """A job's Server-Sent Events: `run()` blocks; `start()` runs it on a thread that `close()` can end."""

    def __init__(self, client: Client, job_id: str, callback: EventCallback | None = None,
                 cancel_on_disconnect: bool = True) -> None:
        self.client, self.job_id, self.callback = client, job_id, callback
        self.cancel_on_disconnect = cancel_on_disconnect
        self.final: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> dict[str, Any]:
        """Follow the job until it ends; returns the final event (done, failed, cancelled; closed after close())."""
        flag = "1" if self.cancel_on_disconnect else "0"
        path = f"/v1/jobs/{quote(self.job_id, safe='')}/events?cancel_on_disconnect={flag}"
        conn, response = self.client.open("GET", path, headers={"Accept": "text/event-stream"},
                                          timeout=STREAM_TIMEOUT_S)
        self._conn = conn  # set before checking _closed, while close() sets _closed before reading _conn
        try:
            if self._closed.is_set():
                return self._hung_up()
            if response.status >= 400:
                self.client._raise_for(response.status, dict(response.getheaders()), response.read())
            for event in _parse_sse(response):
                if self.callback is not None:
                    self.callback(event)
                if event.get("event") in TERMINAL_EVENTS:
                    self.final = event
                    return event
        except (OSError, http.client.HTTPException) as exc:
            if self._closed.is_set():
                return self._hung_up()
            raise self.client._not_running(exc) from None
        finally:
            conn.close()
        if self._closed.is_set():
            return self._hung_up()
        raise EngineNotRunning(f"the engine at {self.client.url} ended the event stream before job "
                               f"{self.job_id} finished; it may have stopped")

    def _hung_up(self) -> dict[str, Any]:
        """The final "event" of a stream this client closed itself (the job may go on, or be cancelled)."""
        self.final = {"event": "closed", "job": self.job_id}
        return self.final

    def start(self) -> EventStream:
        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # kept for join(); a thread has nobody else to tell
                self.error = exc

        self._thread = threading.Thread(target=target, name=f"uprez-events-{self.job_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Hang up. The engine cancels the job if the stream was opened with cancel_on_disconnect."""
        self._closed.set()
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread at once

    def join(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for the thread; returns the final event, or raises what the stream raised."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.final


def _parse_sse(response: Any) -> Any:
    """Yield each Server-Sent Event's JSON data as a dict (comments and keep-alives skipped)."""
    data_lines: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data_lines:
                try:
                    event = json.loads("\n".join(data_lines))
                except ValueError:
                    event = None
                data_lines = []
                if isinstance(event, dict):
                    yield event
        elif line.startswith("data:"):
            data_lines.append(line[5:].lstrip(" "))
        # event:, id:, retry: and ":" comments carry nothing the JSON data does not
