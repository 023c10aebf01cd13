""""Upscale selection with Uprez": the last settings, no dialog; progress and the outcome as canvas messages.

An action of its own (QUICK_ACTION_ID), so people can give it a shortcut in Settings > Configure Krita >
Keyboard Shortcuts (it is listed under Scripts).
"""

from __future__ import annotations

from typing import Any

from . import document as doc_ops
from . import form, memory
from .job import UpscaleJob

QUICK_ACTION_ID = "uprez_upscale_selection"  # stable: shortcuts are bound to it
QUICK_LABEL = "Upscale selection with Uprez"
_STARTED: list = []  # keeps the running jobs' Python objects alive until they finish


def run(document: Any) -> UpscaleJob | None:
    """Start the job on `document` with the last settings; None (after saying why) when it cannot start."""
    if document is None:
        _message("open an image first")
        return None
    choices = form.quick_choices(memory.last(), doc_ops.selection_box(document) is not None)
    try:
        request = form.to_request(choices)
        source = doc_ops.read_source(document, request.scale, request.target, request.selection_only,
                                     source=request.source, params=request.params)
    except ValueError as exc:
        _message(str(exc))
        return None
    job = UpscaleJob(source, start_engine=True)
    job.finished.connect(_finished)
    _STARTED.append(job)
    what = "the selection" if request.selection_only else "the layer"
    _message(f"upscaling {what} ×{request.scale:g} ({choices.preset})…")
    return job.start()


def _finished(job: UpscaleJob) -> None:
    if job in _STARTED:
        _STARTED.remove(job)
    if job.state == "done":
        _message("done: the result is in a new layer" if job.source.plan.placement.target == "resize"
                 else "done: the result is in a new document")
    elif job.state == "cancelled":
        _message("cancelled; the document is as it was")
    else:
        _message(f"failed: {job.message}. The document is as it was.")


def _message(text: str) -> None:
    from .dialog import _float_message

    _float_message(text)
