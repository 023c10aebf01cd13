"""Attack scripts kept as tests (issue 16 item 7): slow request heads and keep-alive latency on the real server."""

from __future__ import annotations

import http.client
import socket
import statistics
import time
from urllib.parse import urlsplit

import engine.server.protocol as protocol


def test_a_half_sent_request_head_is_closed_after_the_header_timeout(server, monkeypatch):
    monkeypatch.setattr(protocol, "HEADER_TIMEOUT_S", 1.0)  # read when each connection opens; 10 s by default
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHo")  # and then nothing more, as slowloris does
        began = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the engine (a timeout here raises instead)
        assert time.monotonic() - began < 10
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        began = time.monotonic()
        assert sock.recv(1024) == b""  # a connection that sends nothing at all is closed too
        assert time.monotonic() - began < 10


def test_a_complete_slow_request_is_still_answered(server, monkeypatch):
    monkeypatch.setattr(protocol, "HEADER_TIMEOUT_S", 2.0)
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")
        time.sleep(0.5)
        sock.sendall(b"Host: 127.0.0.1\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")


def test_keep_alive_requests_are_not_held_back_by_nagle(server):
    # Without TCP_NODELAY each small reply on a kept-alive connection waits for the client's delayed ACK:
    # a floor of about 40 ms per request on Linux, against well under 5 ms here even on a loaded machine.
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    times = []
    for _ in range(15):
        began = time.perf_counter()
        conn.request("GET", "/v1/health")
        conn.getresponse().read()
        times.append(time.perf_counter() - began)
    conn.close()
    assert statistics.median(times) < 0.02, f"median {statistics.median(times) * 1000:.1f} ms per request"
