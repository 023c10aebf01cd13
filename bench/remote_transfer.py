"""Memory of moving a large job through a remote engine over TLS: the upload, and a 20 MB result sent in
pieces (now) or as one body (before issue 19). Prints Python's peak allocations (tracemalloc) during each.

The engine runs in this process over real TLS on 127.0.0.1 (`--remote`, self-made certificate). Its runner is
a stand-in that repeats each pixel 2x2 (the model's cost and memory are not what is measured here); the
download is read in 64 KiB pieces and thrown away, so the figures are the engine's side of the transfer.
Usage: python bench/remote_transfer.py
"""

from __future__ import annotations

import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
from fastapi.responses import Response

from engine.server import ServerConfig, start_in_thread
from engine.server import app as app_module
from engine.server.codec import encode_result
from engine.server.tokens import add_token
from plugin.uprez_client import Client
from plugin.uprez_client.connection import PinnedHTTPSConnection

WIDTH, HEIGHT = 1280, 1024  # a 5 MiB BGRA layer; x2 = 2560 x 2048 = a 20 MiB result


GO = threading.Event()  # the job waits for it, so the upload's figure holds the upload alone


def doubling_runner(job, _on_progress):  # noqa: ANN001, ANN202 - the Runner shape
    GO.wait()
    image = np.repeat(np.repeat(job.image, 2, axis=0), 2, axis=1)
    return encode_result(image, job.request.image, job.request.photo)


def whole_body(data, media_type, headers, digest, request):  # noqa: ANN001, ANN202 - the pre-issue-19 answer
    return Response(data, media_type=media_type, headers=headers)


def download(port: int, fingerprint: str, token: str, job: str) -> int:
    conn = PinnedHTTPSConnection("127.0.0.1", port, fingerprint, timeout=120)
    conn.request("GET", f"/v1/jobs/{job}/result", headers={"Authorization": f"Bearer {token}"})
    response, total = conn.getresponse(), 0
    while chunk := response.read(65536):
        total += len(chunk)
    conn.close()
    return total


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="uprez-bench-"))
    secret = add_token(folder, "bench")
    config = ServerConfig(host="127.0.0.1", port=0, model="builtin", device="cpu", config_dir=folder, remote=True)
    server = start_in_thread(config, runner=doubling_runner)
    port = int(server.url.rsplit(":", 1)[1])
    client = Client(server.url, token=secret, fingerprint=server.fingerprint)
    pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8).tobytes()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        began = time.perf_counter()
        job = client.submit_raw(pixels, WIDTH, HEIGHT, scale=2)
        upload_s = time.perf_counter() - began
        upload_peak = tracemalloc.get_traced_memory()[1] - base
        GO.set()
        client.wait(job)
        size = client.job(job)["result"]["bytes"]
        print(f"upload {len(pixels) / 2**20:.1f} MiB: {upload_s:.2f} s, peak allocations {upload_peak / 2**20:.1f} MiB "
              ""
              "(engine and client, this process; the decoded job input is 5 MiB of it)")
        for name, patch in (("in pieces (now)", None), ("one body (before)", whole_body)):
            original = app_module._result_response
            if patch is not None:
                app_module._result_response = patch
            try:
                time.sleep(0.2)
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                began = time.perf_counter()
                got = download(port, server.fingerprint, secret, job)
                seconds = time.perf_counter() - began
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                app_module._result_response = original
            assert got == size, (got, size)
            print(f"result {size / 2**20:.1f} MiB {name}: {seconds:.2f} s, peak allocations "
                  f"{peak / 2**20:.1f} MiB above the result itself")
    finally:
        tracemalloc.stop()
        server.stop()


if __name__ == "__main__":
    main()
