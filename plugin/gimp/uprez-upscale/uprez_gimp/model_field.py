"""The dialog's "Upscale model" field, its pure part: the engine's models (GET /v1/models) as (label, key) choices,
and the argument values a choice stands for. The Gtk widget is uprez_gimp_ui.model_row.

GIMP's generated procedure dialog shows a string argument as a plain entry and cannot hold a list that is only
known when the dialog opens, so this field is a Gtk combo box of our own, bound to the procedure's "model" and
"upsampler" string arguments: what it shows comes from the config (GIMP remembers the last values there), and
what is chosen goes back to it. The labels tell the built-in flow model, the big flow models, SR models on their
own and "SR model, then refine with …" apart (uprez_client.options.model_choices, the list the Krita dialog and
the window show too).
"""

from __future__ import annotations

from uprez_client.options import choice_key, model_choices, split_choice

LABEL = "Upscale _model"
ENGINE_DEFAULT_LABEL = "Engine default"


def fetch_choices(timeout: float = 3.0) -> tuple[list[tuple[str, str]], str | None]:
    """(label, key) pairs from the running engine, and a note when it could not be asked (then only typing)."""
    from uprez_client import UprezClientError, remote_choice

    try:
        listing = remote_choice.client_for("gimp", timeout=timeout).models()
    except (UprezClientError, OSError, ValueError) as exc:
        return [], f"the model list needs the engine ({exc}); type a model, or leave it empty for the default"
    return model_choices(listing if isinstance(listing, dict) else {}), None


def current_key(model: str | None, upsampler: str | None) -> str:
    return choice_key((model or "").strip() or None, (upsampler or "").strip() or None)


def chosen(active_id: str | None, typed: str) -> tuple[str, str]:
    """(model, upsampler) argument values for the combo's state: a listed choice, or the typed text as the model."""
    if active_id is not None:
        model, upsampler = split_choice(active_id)
        return model or "", upsampler or ""
    return typed.strip(), ""
