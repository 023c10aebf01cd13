"""Random requests against a real engine: whatever arrives, the answer is never a 500 and the engine stays up."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import http_request, multipart_body, raw_image

from plugin.uprez_client import Client

KEYS = ["scale", "strength", "steps", "seed", "prompt", "negative_prompt", "cfg_scale", "guidance", "model",
        "region_only", "format", "width", "height", "channels", "depth", "mask_format", "preview_every", "bogus"]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 2, 4, 8, 16, 32, 1.5, 1000, "raw", "png", "tiff", "RGBA", "BGRA", "L", "/no/model", ""]),
    st.text(max_size=40), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                                 max_size=2),
)
PARAMS = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8).map(json.dumps),
    st.fixed_dictionaries({"format": st.just("raw"), "width": st.integers(1, 6), "height": st.integers(1, 6),
                           "scale": st.sampled_from([1.5, 2]), "steps": st.integers(1, 3),
                           "strength": st.sampled_from([0.0, 0.2])}).map(json.dumps),
    st.text(max_size=60),
    st.sampled_from(["", "{", "null", "[]", '{"scale": NaN}', '{"scale": 1e999}', '{"a":' * 50]),
)
IMAGES = st.one_of(st.binary(max_size=300), st.just(raw_image(4, 4)), st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
                   st.just(b"II*\x00" + b"\0" * 40))
PATHS = st.one_of(
    st.sampled_from(["/v1/health", "/v1/models", "/v1/jobs", "/", "/v1", "/docs", "/openapi.json", "/v1/jobs/"]),
    st.text(max_size=20).map(lambda s: f"/v1/jobs/{quote(s, safe='')}"),
    st.text(max_size=20).map(lambda s: f"/v1/jobs/{quote(s, safe='')}/result"),
    st.text(max_size=12).map(lambda s: f"/v1/jobs/{quote(s, safe='')}/events?cancel_on_disconnect={quote(s)}"),
    st.text(max_size=20).map(lambda s: "/" + quote(s)),
)


@st.composite
def coherent_job(draw):
    """A raw job whose geometry matches its bytes, so the request gets past parsing into validation."""
    width, height = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    channels, depth = draw(st.sampled_from(["RGBA", "BGRA", "RGB", "L", "LA"])), draw(st.sampled_from([8, 16, 32]))
    params = {"format": "raw", "width": width, "height": height, "channels": channels, "depth": depth,
              "scale": draw(st.sampled_from([1.5, 2, 0.5, 17])), "steps": draw(st.integers(1, 3)),
              "strength": draw(st.sampled_from([0.0, 0.2, 2.0])),
              "seed": draw(st.integers(-1, 2**64)), "prompt": draw(st.text(max_size=10))}
    if draw(st.booleans()):
        params[draw(st.sampled_from(KEYS))] = draw(VALUES)  # one field made wrong, perhaps
    image = draw(st.binary(min_size=width * height * len(channels) * depth // 8,
                           max_size=width * height * len(channels) * depth // 8))
    parts = [("params", None, json.dumps(params).encode()), ("image", "i.raw", image)]
    if draw(st.booleans()):
        mask_size = draw(st.sampled_from([width * height, width * height + 1, 0]))
        parts.append(("mask", "m.raw", draw(st.binary(min_size=mask_size, max_size=mask_size))))
    return parts


@st.composite
def requests(draw, token: str):
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "GET", "DELETE", "PUT"]))
    path = "/v1/jobs" if method == "POST" and draw(st.integers(0, 4)) else draw(PATHS)
    host = ["127.0.0.1", "localhost:1", "[::1]", "evil.example", "x:y"]
    headers = {"Host": draw(st.sampled_from(host[:3] * 6 + host))}
    auth = draw(st.sampled_from(["good"] * 8 + ["none", "wrong", "basic"]))
    if auth != "none":
        headers["Authorization"] = {"good": f"Bearer {token}", "wrong": "Bearer nope", "basic": "Basic eA=="}[auth]
    body = None
    if method in ("POST", "PUT"):
        shape = draw(st.sampled_from(["coherent", "coherent", "multipart", "multipart", "bytes", "none"]))
        if shape == "coherent":
            body, headers["Content-Type"] = multipart_body(draw(coherent_job()))
        elif shape == "multipart":
            parts = [("params", draw(st.sampled_from([None, "p.json"])), draw(PARAMS).encode()),
                     ("image", draw(st.sampled_from(["i.raw", "i.raw", None])), draw(IMAGES))]
            if draw(st.booleans()):
                parts.append(("mask", "m.raw", draw(st.binary(max_size=40))))
            if draw(st.booleans()):
                parts.append((draw(st.sampled_from(["extra", "image", "params"])), "x", b"1"))
            body, headers["Content-Type"] = multipart_body(draw(st.permutations(parts)))
        elif shape == "bytes":
            body = draw(st.binary(max_size=200))
            headers["Content-Type"] = draw(st.sampled_from(["multipart/form-data; boundary=zz", "application/json",
                                                            "multipart/form-data", "text/plain"]))
    return method, path, body, headers


@pytest.fixture(scope="module")
def fuzz_server(start_server):
    return start_server(queue_size=1)


def test_random_requests_never_get_a_500(fuzz_server):
    client = Client(fuzz_server.url)
    statuses: dict[int, int] = {}

    @given(requests(client.token))
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(request):
        method, path, body, headers = request
        status, response_headers, data = http_request(fuzz_server.url, method, path, body, headers, timeout=10)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (method, path, headers, body[:200] if body else body, data[:300])
        if status >= 400 and response_headers.get("content-type") == "application/json":
            assert json.loads(data)["error"]  # every refusal of ours says why
        if status == 202:
            client.cancel(json.loads(data)["id"])  # keep the one worker free for the next example

    check()
    assert client.health()["status"] == "ok"
    assert sum(statuses.values()) >= 200 and len(statuses) > 4, statuses
