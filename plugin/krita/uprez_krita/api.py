"""The scripting entry point: `uprez_krita.upscale(document, ...)`, for automation and tests."""

from __future__ import annotations

from typing import Any

from . import document as doc_ops
from .job import UpscaleJob


def upscale(document: Any, scale: float = 2.0, target: str = "resize", selection_only: bool = False,
            wait: bool = True, **params: Any) -> Any:
    """Upscale `document`'s active layer (or visible image, or selection) with the local engine.

    `target`: "resize" scales the document by `scale` (Krita's Lanczos for the existing layers) and adds
    the result as a new layer above the source; "new_document" opens a new document holding it.
    `selection_only`: send only the selection's region (plus context) with its soft mask; the result
    layer holds just that region, the mask as its alpha.
    `params`: engine job params (preset, model, seed, prompt, steps, strength, ...), and for the bridge:
    `node` (the layer to read; default the active one), `source` ("layer" or "visible"), `client`
    (an uprez_client.Client), `start_engine` (False: never start one).

    With `wait=True`, blocks (keeping Krita's events flowing) and returns the new layer node ("resize")
    or the new document ("new_document"); raises UpscaleFailed (UpscaleCancelled) with the engine's
    message. With `wait=False`, returns the started UpscaleJob: connect to `finished`, or call `wait()`.
    The source layer is never modified; a failed or cancelled job leaves the document as it was.
    """
    node = params.pop("node", None)
    source = params.pop("source", "layer")
    client = params.pop("client", None)
    start = params.pop("start_engine", True)
    src = doc_ops.read_source(document, scale, target, selection_only, node=node, source=source, params=params)
    job = UpscaleJob(src, client, start_engine=start).start()
    return job.wait() if wait else job
