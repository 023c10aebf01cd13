"""Errors a person can act on: each message names the bad value and says what to do."""

from __future__ import annotations


class UprezError(Exception):
    """Base of every error whose message is meant for the user, not a traceback."""


class InvalidInput(UprezError, ValueError):
    """A setting or image the engine cannot work with."""


class ModelNotFound(UprezError):
    """The model path or repo id does not lead to loadable weights."""


class UnknownModelFamily(UprezError):
    """The weights exist but belong to a family Uprez does not drive."""


class DeviceError(UprezError):
    """The requested device is missing, or the job does not fit in its memory."""
