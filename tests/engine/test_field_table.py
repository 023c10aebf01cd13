"""One table of fields: UpscaleSettings, the server's params and the CLI's flags refuse a bad value with one message."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from engine.cli import build_parser
from engine.errors import InvalidInput
from engine.server.request import JobRequest, parse_params
from engine.settings import SETTINGS_PARAMS, UpscaleSettings

BAD = [
    ("steps", True), ("steps", 2.5), ("steps", 0), ("steps", 201), ("steps", "4"),
    ("scale", True), ("scale", 1), ("scale", 1000), ("scale", "2"), ("scale", 1e400),
    ("strength", True), ("strength", 1.5), ("strength", -0.1), ("strength", "0.3"),
    ("seed", -1), ("seed", 2**63), ("seed", 1.0), ("seed", False),
    ("cfg_scale", 31), ("guidance", True), ("tile_size", 10), ("tile_size", 512.0), ("tile_overlap", -1),
    ("tile_batch", 0), ("tile_batch", True), ("skip_residual", 2), ("stochastic", True), ("dilated_views", "x"),
    ("match_statistics", 1), ("scale_aware", "yes"), ("preset", "wild"), ("preset", 3), ("prompt", 7),
    ("negative_prompt", ["a"]), ("upsampler", 4), ("sampler", "dpm"), ("sampler", True),
]


def _server_message(name, value):
    text = json.dumps({"format": "png", name: value}).replace("Infinity", "1e400")
    with pytest.raises(InvalidInput) as refused:
        JobRequest.from_params(parse_params(text))
    return str(refused.value)


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_settings_and_server_refuse_with_the_same_message(name, value):
    with pytest.raises(InvalidInput) as refused:
        UpscaleSettings(**{name: value})
    assert str(refused.value) == _server_message(name, value)
    assert str(refused.value).startswith(f"{name} must be ")


def test_steps_true_is_refused_as_the_server_refuses_it():
    """Before the table, UpscaleSettings(steps=True) was accepted (True is an int) while the server refused it."""
    with pytest.raises(InvalidInput, match="steps must be a whole number from 1 to 200, got True"):
        UpscaleSettings(steps=True)


@pytest.mark.parametrize(("flag", "word", "name"), [
    ("--steps", "many", "steps"), ("--strength", "lots", "strength"), ("--tile-size", "1k", "tile_size"),
    ("--scale", "double", "scale"),
])
def test_cli_flags_say_the_fields_message_for_a_word_that_is_no_number(flag, word, name, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["upscale", "in.png", "-o", "out.png", flag, word])
    assert SETTINGS_PARAMS[name].problem(name, word) in capsys.readouterr().err


def test_every_settings_field_has_a_flag_with_its_default():
    args = build_parser().parse_args(["upscale", "in.png", "-o", "out.png"])
    for item in fields(UpscaleSettings):
        assert getattr(args, item.name) == item.default, item.name
    args = build_parser().parse_args(["upscale", "in.png", "-o", "out.png", "--sampler", "heun", "-s", "3",
                                      "--no-match-statistics", "--tile-batch", "2"])
    assert (args.sampler, args.scale, args.match_statistics, args.tile_batch) == ("heun", 3.0, False, 2)


def test_good_values_pass_every_boundary():
    good = {"steps": 4, "scale": 3, "strength": 0.3, "seed": 2**63 - 1, "match_statistics": False,
            "sampler": "heun", "preset": "creative", "tile_size": 512, "tile_overlap": 64}
    request = JobRequest.from_params(parse_params(json.dumps({"format": "png", **good})))
    assert request.settings == UpscaleSettings(**good)
