"""Attack script kept as a test (issue 16 item 2): four concurrent 64 MiB uploads at a full queue.

Before the fix each was read and decoded before its 429 (+755 MiB in the engine). Now the queue is checked
before the body is read, so the engine's peak memory (VmHWM of the real `uprez serve` process) barely moves.
Prints the figure; run with `-s` to see it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from server_helpers import slow_job, wait_for

from plugin.uprez_client import Client

UPLOADS, SIDE = 4, 4096  # 4096 x 4096 RGBA 8-bit = 64 MiB each
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the engine's peak RSS from /proc (Linux)")


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def upload(url: str, token: str, body: bytes, content_type: str, answers: list) -> None:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        # Refused before the body was read, the engine hangs up on the rest; its answer may still be there.
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
        try:
            answers.append(sock.recv(65536).split(b" ", 2)[1])
        except (OSError, IndexError):
            answers.append(b"hung up")


def test_four_big_uploads_at_a_full_queue_do_not_grow_the_engine(serve_process, tiny_flux):
    engine = serve_process("--model", str(tiny_flux), "--queue-size", "1")
    client = Client(engine.url, token=(engine.config_dir / "token").read_text().strip())
    jobs = [slow_job(client)]
    wait_for(lambda: client.job(jobs[0])["state"] == "running")
    jobs.append(slow_job(client))  # the queue is now full
    params = json.dumps({"format": "raw", "width": SIDE, "height": SIDE, "channels": "RGBA", "depth": 8})
    pixels = bytes(SIDE * SIDE * 4)
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="params"\r\n\r\n' + params.encode()
            + b'\r\n--b0undary\r\nContent-Disposition: form-data; name="image"; filename="i.raw"\r\n\r\n'
            + pixels + b"\r\n--b0undary--\r\n")
    before = peak_rss(engine.process.pid)
    answers: list = []
    threads = [threading.Thread(target=upload, args=(engine.url, client.token, body,
                                                     "multipart/form-data; boundary=b0undary", answers))
               for _ in range(UPLOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    growth = peak_rss(engine.process.pid) - before
    print(f"\n{UPLOADS} concurrent {len(body) / 2**20:.0f} MiB uploads at a full queue: answers {answers}, "
          f"engine peak RSS growth {growth / 2**20:.1f} MiB")
    for job in reversed(jobs):
        client.cancel(job)
    assert all(answer in (b"429", b"hung up") for answer in answers), answers
    assert growth < 32 * 2**20, f"the engine grew by {growth / 2**20:.0f} MiB while refusing the uploads"
