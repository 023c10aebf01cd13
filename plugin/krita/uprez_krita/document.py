"""Reading a document's pixels and adding a result to it, through Krita's scripting API.

Everything here runs on Krita's GUI thread. Reading never changes the document; adding happens only
once a result is in hand, so a failed or cancelled job leaves the document exactly as it was.
Krita's scripting API has no undo macro: adding a layer is one undo step, and with "Resize canvas" the
scaling of the image is a second one before it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .formats import PixelFormat, check_buffer, pixel_format
from .plan import Plan, make_plan
from .profile import profile_bytes

SCALE_FILTER = "Lanczos3"  # the engine's own conventional filter, so layers scaled by Krita match its outside
FALLBACK_FILTER = "Bicubic"


class Source(NamedTuple):
    """What a job reads, captured on the GUI thread when the job starts."""

    document: Any  # krita.Document
    node: Any  # the source layer, or None for the visible image
    fmt: PixelFormat
    plan: Plan
    pixels: bytes
    mask: bytes | None  # the selection's crop, one byte per pixel, with selection_only
    doc_size: tuple[int, int]
    name: str
    profile: bytes | None = None  # the pixels' ICC profile (the layer's or document's); None = sRGB


def selection_box(document: Any) -> tuple[int, int, int, int] | None:
    selection = document.selection()
    if selection is None or selection.width() <= 0 or selection.height() <= 0:
        return None
    return selection.x(), selection.y(), selection.width(), selection.height()


def source_node(document: Any, node: Any = None, source: str = "layer") -> Any:
    """The layer to read, or None for the visible image (also when no layer is active, as in kritarunner)."""
    if source == "visible":
        return None
    if source != "layer":
        raise ValueError(f"source must be layer or visible, got {source!r}")
    node = node if node is not None else document.activeNode()
    if node is not None and node.type() not in ("paintlayer", "grouplayer", "filelayer", "clonelayer",
                                                 "filllayer", "vectorlayer"):
        raise ValueError(f"the active node is a {node.type()}; select a layer, or upscale the visible image")
    return node


def read_source(document: Any, scale: float, target: str = "resize", selection_only: bool = False,
                node: Any = None, source: str = "layer", params: dict[str, Any] | None = None) -> Source:
    """Read what the job sends. Raises ValueError (or UnsupportedDocument) with a message a person can act on."""
    if document is None:
        raise ValueError("there is no open document; open an image first")
    node = source_node(document, node, source)
    holder = node if node is not None else document
    fmt = pixel_format(holder.colorModel(), holder.colorDepth())
    size = (document.width(), document.height())
    name = node.name() if node is not None else "visible image"
    plan = make_plan(size, scale, target, selection_only, selection_box(document) if selection_only else None,
                     params, name)
    read = plan.placement.crop
    if node is None:
        document.refreshProjection()
        document.waitForDone()
    pixels = bytes(holder.pixelData(read.x, read.y, read.width, read.height))
    check_buffer(pixels, read.width, read.height, fmt, "layer" if node is not None else "image")
    mask = None
    if selection_only:
        mask = bytes(document.selection().pixelData(read.x, read.y, read.width, read.height))
        if len(mask) != read.width * read.height or not any(mask):
            raise ValueError("the selection is empty; select the part to upscale, or switch off Selection only")
    return Source(document, node, fmt, plan, pixels, mask, size, name, profile_bytes(holder))


def is_open(document: Any) -> bool:
    from krita import Krita

    return any(open_doc == document for open_doc in Krita.instance().documents())


def add_result(source: Source, data: bytes, meta: dict[str, Any]) -> Any:
    """Put the result in place: returns the new layer ("resize") or the new document ("new_document")."""
    plan = source.plan.placement
    out = plan.crop
    if (meta.get("width"), meta.get("height")) != (out.out_width, out.out_height):
        raise ValueError(f"the engine returned {meta.get('width')}x{meta.get('height')}, expected "
                         f"{out.out_width}x{out.out_height}")
    check_buffer(data, out.out_width, out.out_height, source.fmt, "result")
    if plan.target == "new_document":
        return _new_document(source, data)
    document = source.document
    if (document.width(), document.height()) != source.doc_size:
        # The canvas changed during the job: scaling it again would be wrong, and the result must not be lost.
        return _new_document(source, data)
    layer = _layer(document, source, data)
    resolution = int(round(document.resolution()))  # scaleImage takes whole ppi
    document.scaleImage(plan.canvas[0], plan.canvas[1], resolution, resolution, _filter())
    document.waitForDone()
    node = source.node
    parent = node.parentNode() if node is not None else document.rootNode()
    above = node if node is not None else (parent.childNodes() or [None])[-1]
    parent.addChildNode(layer, above)
    document.waitForDone()
    document.refreshProjection()
    return layer


def _layer(document: Any, source: Source, data: bytes) -> Any:
    """A paint layer holding the result, filled before it joins the document (so adding it is one step)."""
    place = source.plan.placement
    layer = document.createNode(place.layer_name, "paintlayer")
    x, y = place.layer_at
    layer.setPixelData(data, x, y, place.crop.out_width, place.crop.out_height)
    return layer


def _new_document(source: Source, data: bytes) -> Any:
    from krita import Krita

    app = Krita.instance()
    original = source.document
    width, height = source.plan.placement.canvas
    title = f"{original.name() or 'Untitled'} ×{source.plan.placement.scale:g}"
    document = app.createDocument(width, height, title, "RGBA", source.fmt.krita_depth, original.colorProfile(),
                                  original.resolution())
    root = document.rootNode()
    for child in root.childNodes():  # the default white background would hide a region's transparency
        child.remove()
    layer = _layer(document, source, data)
    root.addChildNode(layer, None)
    document.waitForDone()
    document.refreshProjection()
    window = app.activeWindow()
    if window is not None and not app.batchmode():
        window.addView(document)
    return document


def _filter() -> str:
    from krita import Krita

    return SCALE_FILTER if SCALE_FILTER in Krita.instance().filterStrategies() else FALLBACK_FILTER
