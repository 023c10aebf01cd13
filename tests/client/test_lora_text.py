"""What a person types into an editor's LoRA field, as the engine's `loras` job param (options.parse_loras)."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.lora.spec import WEIGHT_LIMIT, parse_lora
from plugin.uprez_client.options import LORA_HINT, parse_loras
from plugin.uprez_client.protocol import LORA_WEIGHT_LIMIT

TYPED = [
    ("", []),
    ("  ,\n ; ", []),
    ("a.safetensors:0.8, b.safetensors", ["a.safetensors:0.8", "b.safetensors"]),
    ("detail.safetensors : 0.5\n/loras/up.safetensors:-1", ["detail.safetensors:0.5", "/loras/up.safetensors:-1"]),
    ("old;window.safetensors:2", ["old", "window.safetensors:2"]),  # the window's settings files used ";"
    ("detail:4", ["detail:4"]),  # a name from the LoRA folders, with a weight at the limit
    (r"C:\loras\a.safetensors, D:\b.safetensors:0.3", [r"C:\loras\a.safetensors", r"D:\b.safetensors:0.3"]),
    ("/x/y:z.safetensors, my:lora", ["/x/y:z.safetensors", "my:lora"]),  # colons in a path are the path's
]


@pytest.mark.parametrize(("text", "loras"), TYPED)
def test_typed_loras_become_the_loras_param(text, loras):
    assert parse_loras(text) == loras


@pytest.mark.parametrize(("text", "_"), [t for t in TYPED if t[1]])
def test_the_engine_reads_each_entry_as_the_dialog_meant_it(text, _):
    """The engine's own reading (engine.lora.spec) finds the same path and weight the person typed."""
    for entry in parse_loras(text):
        spec = parse_lora(entry)
        path, sep, weight = entry.rpartition(":")
        meant_weight = sep and weight.lstrip("-").replace(".", "", 1).isdigit()
        assert spec.weight == (float(weight) if meant_weight else 1.0), entry
        assert spec.path.endswith((path if meant_weight else entry).lstrip("~")), entry


@pytest.mark.parametrize(("text", "words"), [
    ("a.safetensors:strong", "LoRA weight in 'a.safetensors:strong' is not a number; write PATH:WEIGHT, e.g. "
                             "a.safetensors:0.8"),
    ("detail:1e", "is not a number"),
    ("b.safetensors, detail:5", r"LoRA weight in 'detail:5' must be from -4 to 4"),
    ("a.safetensors:-4.5", "must be from -4 to 4"),
    ("a.safetensors:nan", "must be from -4 to 4"),
    ("a.safetensors:0,8", r"'8' is not a LoRA: a weight goes after its LoRA, as PATH:WEIGHT with a decimal point"),
])
def test_a_bad_weight_gets_a_message_naming_the_entry(text, words):
    with pytest.raises(ValueError, match=words):
        parse_loras(text)


def test_the_weight_limit_is_the_engines_and_the_hint_says_how_to_type():
    assert LORA_WEIGHT_LIMIT == WEIGHT_LIMIT
    with pytest.raises(InvalidInput):
        parse_lora(f"a.safetensors:{LORA_WEIGHT_LIMIT + 0.5}")
    assert "WEIGHT" in LORA_HINT and "comma" in LORA_HINT and "LoRA folders" in LORA_HINT
