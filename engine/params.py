"""One row per job field: its type, range or choices, help, and the one message a bad value gets.

`UpscaleSettings` carries a `Param` on each of its fields (dataclass metadata) and validates with it, the
server's request parsing checks its own params with the same class, and the CLI makes its upscale flags from
the settings' rows. So `steps=True` is refused with the same words by `UpscaleSettings`, the server and the
command line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("number", "whole", "text", "flag", "choice")
Rule = Callable[[str, Any], "str | None"]


@dataclass(frozen=True)
class Param:
    """How one field is checked and offered. The message is "{name} must be {expect}, got {value!r}"."""

    kind: str  # number (int or float, finite), whole (int), text (str), flag (bool), choice (one of `choices`)
    expect: str = ""  # what a good value is, in the message's words; "" = said from the kind and choices
    low: float | None = None  # inclusive bounds for number and whole
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = True  # None is allowed (the model's or the server's default)
    rule: Rule | None = None  # a field with more than one way to be wrong (scale): returns the message or None
    # How the command line offers it; help None = a flag without help text, cli False = no flag at all.
    help: str | None = None
    aliases: tuple[str, ...] = ()  # short flags, e.g. ("-s",)
    metavar: str | None = None
    group: str | None = None  # the argparse group it is listed in
    cli: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def message(self, name: str, value: Any) -> str:
        expect = self.expect or (f"one of {', '.join(self.choices)}" if self.kind == "choice" else {
            "number": "a number", "whole": "a whole number", "text": "text", "flag": "true or false"}[self.kind])
        return f"{name} must be {expect}, got {value!r}"

    def problem(self, name: str, value: Any) -> str | None:
        """The message for a bad `value` of field `name`, or None when it is good."""
        if value is None:
            return None if self.optional else self.message(name, value)
        if self.rule is not None:
            return self.rule(name, value)
        return None if self._fits(value) else self.message(name, value)

    def _fits(self, value: Any) -> bool:
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "text":
            return isinstance(value, str)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, int if self.kind == "whole" else (int, float)):
            return False
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an int too large for a float is still finite, but out of every range here
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def parse_text(self, name: str, text: str) -> Any:
        """A command-line word as this field's value (a number or whole number); ValueError with the message."""
        try:
            return int(text) if self.kind == "whole" else float(text)
        except ValueError:
            raise ValueError(self.problem(name, text) or self.message(name, text)) from None


def check(params: dict[str, Param], values: dict[str, Any]) -> str | None:
    """The first message of a bad value among `values` (fields without a row are not checked), or None."""
    for name, value in values.items():
        param = params.get(name)
        problem = param.problem(name, value) if param is not None else None
        if problem is not None:
            return problem
    return None
