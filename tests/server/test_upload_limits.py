"""Attack scripts kept as tests (issue 16 item 2): uploads are refused before their body is read.

A full queue, an over-limit Content-Length and a spent in-flight budget must be answered while the client
is still sending: each test sends the headers and a first slice of the body, then waits for the answer
without sending the rest. A server that reads the body first never answers, and the test times out.
"""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import urlsplit

import pytest
from server_helpers import TEST_LIMITS, raw_image, slow_job, wait_for

from engine.server import Limits
from plugin.uprez_client import Client

ANSWER_WITHIN_S = 5.0  # the refusals need no model work; a server waiting for the body never answers
# The start of a well-formed multipart body: the image part's headers and its first kilobyte.
FIRST_SLICE = b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="i.bin"\r\n\r\n' + b"x" * 1024


def open_upload(url: str, token: str, declared: int, first: bytes = FIRST_SLICE,
                extra_headers: str = "") -> socket.socket:
    """A POST /v1/jobs whose headers promise `declared` body bytes, of which only `first` is sent."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_WITHIN_S)
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {declared}\r\n"
            f"{extra_headers}\r\n")
    sock.sendall(head.encode() + first)
    return sock


def answer_of(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body the server sent back (a timeout here means it is still reading the body)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body or b"{}")


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture(scope="module")
def busy_server(start_server, config_dir):
    """An engine running a long job with one more waiting (queue_size 1): its queue is full for the module."""
    server = start_server(queue_size=1)
    client = Client(server.url)
    jobs = [slow_job(client)]
    wait_for(lambda: client.job(jobs[0])["state"] == "running")
    jobs.append(slow_job(client))
    yield server, client.token
    for job in reversed(jobs):
        client.cancel(job)


def test_full_queue_is_refused_before_the_upload_is_read(busy_server):
    server, token = busy_server
    with open_upload(server.url, token, declared=TEST_LIMITS.max_upload_bytes - 1) as sock:
        status, body = answer_of(sock)
    assert status == 429 and "queue is full" in body["error"] and body["retry_after"] >= 1


def test_over_limit_content_length_is_refused_before_the_upload_is_read(server, client):
    with open_upload(server.url, client.token, declared=TEST_LIMITS.max_upload_bytes + 1) as sock:
        status, body = answer_of(sock)
    assert status == 413 and "--max-upload-mb" in body["error"]


def test_uploads_in_flight_are_bounded_by_count(start_server, config_dir):
    limits = Limits(**{**TEST_LIMITS.__dict__, "max_uploads_in_flight": 2})
    server = start_server(limits=limits)
    token = Client(server.url).token
    stalled = [open_upload(server.url, token, declared=100_000) for _ in range(2)]
    try:
        wait_for(lambda: server.app.state.uploads.count == 2, timeout=ANSWER_WITHIN_S)
        with open_upload(server.url, token, declared=10_000) as third:
            status, body = answer_of(third)
        assert status == 429 and "receiving 2 upload(s)" in body["error"]
    finally:
        for sock in stalled:
            sock.close()
    wait_for(lambda: server.app.state.uploads.count == 0, timeout=ANSWER_WITHIN_S)
    # and once they are gone, an upload is read as usual
    job = Client(server.url).submit_raw(raw_image(16, 16), 16, 16, scale=2, strength=0.3, steps=8)
    assert Client(server.url).wait(job)["state"] == "done"


def test_uploads_in_flight_are_bounded_by_bytes(start_server, config_dir):
    limits = Limits(**{**TEST_LIMITS.__dict__, "max_upload_bytes_in_flight": 1_500_000})
    server = start_server(limits=limits)
    token = Client(server.url).token
    with open_upload(server.url, token, declared=1_000_000):
        wait_for(lambda: server.app.state.uploads.count == 1, timeout=ANSWER_WITHIN_S)
        with open_upload(server.url, token, declared=1_000_000) as second:
            status, body = answer_of(second)
        assert status == 429 and "upload(s)" in body["error"]
        with open_upload(server.url, token, declared=400_000) as small:  # fits the bytes left: read as usual
            wait_for(lambda: server.app.state.uploads.count == 2, timeout=ANSWER_WITHIN_S)
    wait_for(lambda: server.app.state.uploads.count == 0, timeout=ANSWER_WITHIN_S)
    del small


def test_a_client_leaving_mid_upload_is_one_quiet_line(server, client, caplog):
    with caplog.at_level(logging.INFO, logger="uprez.server"):
        sock = open_upload(server.url, client.token, declared=100_000)
        wait_for(lambda: server.app.state.uploads.count == 1, timeout=ANSWER_WITHIN_S)
        sock.close()
        wait_for(lambda: server.app.state.uploads.count == 0, timeout=ANSWER_WITHIN_S)
    records = [r for r in caplog.records if r.name == "uprez.server"]
    assert not [r for r in records if r.levelno >= logging.WARNING or r.exc_info], [r.getMessage() for r in records]
    assert any("left during the upload" in r.getMessage() for r in records)
