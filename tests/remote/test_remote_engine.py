"""The remote engine against a real `uprez serve --remote` process over TLS on 127.0.0.1 (one per module): its
self-made certificate, connection strings through a real job, pinning, named tokens and their revocation,
per-token jobs, fair order between tokens, and a broken result download resumed with HTTP Range."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time

import pytest
from remote_helpers import FAST, BreakingProxy, RemoteEngine

from plugin.uprez_client import Client, RejectedInput, Unauthorized, WrongCertificate
from plugin.uprez_client.connection import PinnedHTTPSConnection, fingerprint_of, parse


def raw_image(width: int, height: int) -> bytes:
    """A smooth BGRA gradient: something image-like for the VAE."""
    return bytes(((x * 255 // width) if c == 0 else (y * 255 // height) if c == 1 else 128 if c == 2 else 255)
                 for y in range(height) for x in range(width) for c in range(4))


@pytest.fixture(scope="module")
def engine(tiny_flux, tmp_path_factory):
    server = RemoteEngine(tmp_path_factory.mktemp("remote-config"), "--model", str(tiny_flux), "--queue-size", "8")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def anna(engine) -> Client:
    return Client(engine.add_token("anna"))


@pytest.fixture(scope="module")
def ben(engine) -> Client:
    return Client(engine.add_token("ben"))


def https(engine, method: str, path: str, token: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One raw request over the pinned connection, for what the client library would not send."""
    conn = PinnedHTTPSConnection("127.0.0.1", engine.port, engine.fingerprint, timeout=30)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}", **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_engine_makes_its_certificate_and_serves_only_https(engine):
    cert, key = engine.config_dir / "cert.pem", engine.config_dir / "key.pem"
    for path in (cert, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    served = ssl.get_server_certificate(("127.0.0.1", engine.port))  # what any client sees in the handshake
    assert fingerprint_of(ssl.PEM_cert_to_DER_cert(served)) == engine.fingerprint
    from cryptography import x509

    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    with socket.create_connection(("127.0.0.1", engine.port), timeout=10) as sock:  # plain HTTP gets no answer
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" not in sock.recv(4096)


def test_a_connection_string_round_trips_through_a_real_job(engine, tiny_flux):
    env = dict(os.environ, UPREZ_CONFIG_DIR=str(engine.config_dir))
    done = subprocess.run([sys.executable, "-m", "engine.cli", "tokens", "add", "carla", "--host", "127.0.0.1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    connection = parse(line)
    assert connection.url == f"https://127.0.0.1:{engine.port}" and connection.fingerprint == engine.fingerprint
    stored = (engine.config_dir / "tokens.json").read_text()
    assert connection.token not in stored and hashlib.sha256(connection.token.encode()).hexdigest() in stored
    assert stat.S_IMODE((engine.config_dir / "tokens.json").stat().st_mode) == 0o600
    client = Client(line)
    assert client.health()["status"] == "ok"
    job = client.submit_raw(raw_image(16, 16), 16, 16, scale=2, **FAST)
    assert client.wait(job)["state"] == "done"
    data, meta = client.result(job)
    assert (meta["width"], meta["height"]) == (32, 32) and len(data) == 32 * 32 * 4
    code, out, _ = engine.tokens("list")
    assert code == 0 and "carla" in out and connection.token not in out
    row = next(row for row in out.splitlines() if row.startswith("carla"))
    assert "never" not in row.split(maxsplit=3)[3]  # created and last used are both dates now


def test_a_wrong_fingerprint_is_refused_before_the_token_is_sent(engine):
    line = engine.add_token("dora")
    connection = parse(line)
    impostor = Client(connection._replace(fingerprint="0" * 64))
    with pytest.raises(WrongCertificate, match="not the one in the connection string"):
        impostor.jobs()
    used = engine.config_dir / "tokens-used.json"
    entries = json.loads((engine.config_dir / "tokens.json").read_text())["tokens"]
    ids = {entry["name"]: entry["id"] for entry in entries}
    assert not used.exists() or ids["dora"] not in json.loads(used.read_text())  # the engine never saw the token
    assert Client(line).jobs() == []  # the right pin gets in, and is noted as used
    assert ids["dora"] in json.loads(used.read_text())


def test_a_revoked_token_is_refused_at_once(engine):
    client = Client(engine.add_token("eve"))
    assert client.jobs() == []
    code, _, err = engine.tokens("revoke", "eve")
    assert code == 0, err
    with pytest.raises(Unauthorized, match="revoked"):
        client.jobs()
    with pytest.raises(Unauthorized):
        client.submit_raw(raw_image(8, 8), 8, 8, scale=2, **FAST)
    code, out, _ = engine.tokens("list")
    assert "revoked" in next(row for row in out.splitlines() if row.startswith("eve"))
    assert engine.tokens("revoke", "eve")[0] == 2  # nothing left to revoke: a usage error, not a crash


def test_one_token_cannot_see_or_touch_anothers_jobs(engine, anna, ben, monkeypatch):
    job = anna.submit_raw(raw_image(16, 16), 16, 16, scale=2, **FAST)
    assert [j["id"] for j in ben.jobs()] == [] and job in [j["id"] for j in anna.jobs()]
    for attempt in (lambda: ben.job(job), lambda: ben.events(job), lambda: ben.result(job), lambda: ben.cancel(job)):
        with pytest.raises(RejectedInput) as refused:
            attempt()
        assert refused.value.status == 404 and "no job" in refused.value.message
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(engine.config_dir))  # the engine's own user, on its machine
    local = Client(engine.url, token=(engine.config_dir / "token").read_text().strip())
    assert local.fingerprint == engine.fingerprint  # found in engine.json, beside the local token
    assert job not in [j["id"] for j in local.jobs()]
    assert anna.wait(job)["state"] == "done"  # ben's cancel did nothing
    assert ben.queue()["running"] is None


def test_jobs_of_two_tokens_run_in_fair_order(engine, anna, ben):
    blocker = anna.submit_raw(raw_image(32, 32), 32, 32, scale=4, strength=1.0, steps=200)  # seconds of work
    deadline = time.monotonic() + 60
    while anna.job(blocker)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    mine = [anna.submit_raw(raw_image(8, 8), 8, 8, scale=2, seed=i, **FAST) for i in range(3)]
    theirs = [ben.submit_raw(raw_image(8, 8), 8, 8, scale=2, seed=i, **FAST) for i in range(2)]
    # Anna queued three first, yet Ben's two are not behind all of them: round robin between the tokens.
    assert [anna.job(j)["position"] for j in mine] == [1, 3, 5]
    assert [ben.job(j)["position"] for j in theirs] == [2, 4]
    anna.cancel(blocker)
    for client, jobs in ((anna, mine), (ben, theirs)):
        for job in jobs:
            assert client.wait(job)["state"] == "done"
    started = sorted([(anna.job(j)["started"], "anna") for j in mine] + [(ben.job(j)["started"], "ben")
                                                                          for j in theirs])
    assert [who for _, who in started] == ["anna", "ben", "anna", "ben", "anna"]


def test_a_broken_download_resumes_with_range_and_equals_the_whole(engine, anna):
    job = anna.submit_raw(raw_image(96, 96), 96, 96, scale=2, **FAST)  # a 192x192 RGBA result: 147456 bytes
    anna.wait(job)
    status, headers, whole = https(engine, "GET", f"/v1/jobs/{job}/result", anna.token)
    assert status == 200 and len(whole) == 192 * 192 * 4 and headers["accept-ranges"] == "bytes"
    proxy = BreakingProxy(engine.port, cut_after=60_000)
    try:
        through = Client(f"https://127.0.0.1:{proxy.url_port}", token=anna.token, fingerprint=engine.fingerprint)
        status, _, data, pieces = through.download_result(job)
    finally:
        proxy.close()
    assert proxy.cuts == 1 and pieces == 2  # it did break, and one ranged request finished it
    assert status == 200 and data == whole
    assert headers["repr-digest"].startswith("sha-256=:")


def test_result_ranges_follow_http(engine, anna):
    job = anna.submit_raw(raw_image(16, 16), 16, 16, scale=2, **FAST)
    anna.wait(job)
    path = f"/v1/jobs/{job}/result"
    _, headers, whole = https(engine, "GET", path, anna.token)
    size, etag = len(whole), headers["etag"]
    status, part_headers, part = https(engine, "GET", path, anna.token, {"Range": "bytes=100-199"})
    assert status == 206 and part == whole[100:200] and part_headers["content-range"] == f"bytes 100-199/{size}"
    status, _, tail = https(engine, "GET", path, anna.token, {"Range": "bytes=-10", "If-Range": etag})
    assert status == 206 and tail == whole[-10:]
    status, _, again = https(engine, "GET", path, anna.token, {"Range": "bytes=100-", "If-Range": '"another"'})
    assert status == 200 and again == whole  # a resume of some other result gets the whole of this one
    status, past, _ = https(engine, "GET", path, anna.token, {"Range": f"bytes={size}-"})
    assert status == 416 and past["content-range"] == f"bytes */{size}"
