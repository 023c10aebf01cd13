"""What the dialog remembers: its choices per open document (for this Krita session), and the last choices made
in any document, kept in Krita's settings (kritarc), which the quick action runs with."""

from __future__ import annotations

from typing import Any

from . import form

_BY_DOCUMENT: list = []  # [(krita.Document, form.Choices)]: Krita's wrappers compare equal for the same document


def for_document(document: Any) -> form.Choices | None:
    """The choices last made for `document`, or None when the dialog never ran on it."""
    _forget_closed()
    for known, choices in _BY_DOCUMENT:
        if document is not None and known == document:
            return choices
    return None


def remember(document: Any, choices: form.Choices) -> None:
    if document is None:
        return
    _BY_DOCUMENT[:] = [(known, kept) for known, kept in _BY_DOCUMENT if known != document]
    _BY_DOCUMENT.append((document, choices))
    save_last(choices)


def last() -> form.Choices:
    try:
        from krita import Krita
    except ImportError:
        return form.Choices()
    return form.choices_from_text(Krita.instance().readSetting(form.SETTINGS_GROUP, form.LAST_CHOICES_KEY, ""))


def save_last(choices: form.Choices) -> None:
    try:
        from krita import Krita
    except ImportError:
        return
    Krita.instance().writeSetting(form.SETTINGS_GROUP, form.LAST_CHOICES_KEY, form.choices_to_text(choices))


def _forget_closed() -> None:
    try:
        from krita import Krita
    except ImportError:
        return
    open_documents = Krita.instance().documents()
    _BY_DOCUMENT[:] = [(known, kept) for known, kept in _BY_DOCUMENT if any(known == d for d in open_documents)]
