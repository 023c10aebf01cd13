"""The remote engine's pure parts: fair order between owners, HTTP byte ranges, the plain-HTTP rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.server.config import ServerConfig
from engine.server.fair import FairQueue
from engine.server.ranges import Unsatisfiable, parse_range
from engine.server.run import PlainHttpRefused, certificate_for
from engine.server.tls import engine_certificate


@dataclass(eq=False)
class Job:
    owner: str
    name: str


def test_fair_queue_is_round_robin_between_owners_and_fifo_within_one():
    queue: FairQueue[Job] = FairQueue()
    jobs = [Job(owner, f"{owner}{i}") for owner, count in (("a", 3), ("b", 2), ("c", 1)) for i in range(count)]
    for job in jobs:
        queue.append(job)
    assert [job.name for job in queue] == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert queue.index(jobs[4]) == 4 and len(queue) == 6
    queue.remove(jobs[5])  # c's only job: c leaves the rotation
    assert [queue.popleft().name for _ in range(2)] == ["a0", "b0"]
    queue.append(Job("c", "c9"))  # c comes back at the back of the rotation
    assert [queue.popleft().name for _ in range(len(queue))] == ["a1", "b1", "c9", "a2"]
    assert not queue


def test_one_owner_is_plain_fifo():
    queue: FairQueue[Job] = FairQueue()
    jobs = [Job("local", str(i)) for i in range(5)]
    for job in jobs:
        queue.append(job)
    assert list(queue) == jobs and [queue.popleft() for _ in jobs] == jobs


@pytest.mark.parametrize("header, expected", [
    (None, None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-10", (990, 999)),
    ("bytes=900-5000", (900, 999)), ("bytes=-5000", (0, 999)), ("bytes=5-1", None), ("bytes=0-1,5-6", None),
    ("items=0-1", None), ("bytes=a-b", None), ("bytes=1-x", None),
])
def test_single_byte_ranges_parse_and_the_rest_send_the_whole(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0"])
def test_a_range_past_the_end_is_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


@pytest.mark.parametrize("host, ok", [("127.0.0.1", True), ("::1", True), ("0.0.0.0", False), ("192.0.2.7", False)])
def test_plain_http_off_loopback_needs_insecure(tmp_path: Path, host, ok):
    plain = ServerConfig(host=host, config_dir=tmp_path)
    if ok:
        assert certificate_for(plain) is None
    else:
        with pytest.raises(PlainHttpRefused, match="--insecure"):
            certificate_for(plain)
    assert certificate_for(ServerConfig(host=host, config_dir=tmp_path, insecure=True)) is None


def test_the_self_made_certificate_is_made_once_and_kept(tmp_path: Path):
    first = engine_certificate(tmp_path, ["localhost", "127.0.0.1"])
    again = certificate_for(ServerConfig(host="0.0.0.0", config_dir=tmp_path, remote=True))
    assert again == first and len(first.fingerprint) == 64
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
