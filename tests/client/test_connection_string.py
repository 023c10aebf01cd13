"""The remote engine's connection string (plugin/uprez_client/connection.py): it round-trips, and every
malformed one is refused with a sentence that says what is missing."""

from __future__ import annotations

import pytest

from plugin.uprez_client import connection

FP = "ab" * 32


@pytest.mark.parametrize("url", ["https://studio.local:8743", "https://10.0.0.5:9000", "https://[::1]:8743"])
def test_a_connection_string_round_trips(url):
    line = connection.format_connection(url, "tok/en+1", FP.upper())
    assert line.startswith("uprez://")
    assert connection.parse(line) == connection.Connection(url, "tok/en+1", FP)


@pytest.mark.parametrize("line, words", [
    ("https://x:1/?sha256=" + FP, "starts with uprez://"),
    ("uprez://x:1/?sha256=" + FP, "no token"),
    ("uprez://tok@x:99999/?sha256=" + FP, "port"),
    ("uprez://tok@x:1/", "no certificate fingerprint"),
    ("uprez://tok@x:1/?sha256=abc", "64 hexadecimal"),
])
def test_a_broken_connection_string_says_what_is_wrong(line, words):
    with pytest.raises(ValueError, match=words):
        connection.parse(line)


def test_only_https_urls_make_connection_strings():
    with pytest.raises(ValueError, match="https"):
        connection.format_connection("http://x:1", "t", FP)
