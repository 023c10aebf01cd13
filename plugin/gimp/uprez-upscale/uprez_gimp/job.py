"""One upscale's round trip with the engine, and the words GIMP shows for its progress and its failures."""

from __future__ import annotations

import base64
from typing import Any, Callable, Optional

from uprez_client import (
    Client,
    EngineNotRunning,
    JobCancelled,
    QueueFull,
    Unauthorized,
    UprezClientError,
    config_dir,
    launcher,
)
from uprez_client.idle import idle_note

from .formats import CHANNELS, Transfer
from .plan import AGAIN

PREVIEW_EVERY = 2  # a preview every other denoising step: each costs the engine a small VAE decode
Progress = Callable[[Optional[float], Optional[str]], None]  # (fraction or None, text or None)


def progress_of(event: dict[str, Any]) -> tuple[float | None, str | None]:
    """What the progress bar shows for one engine event: (fraction, text), either may be None."""
    kind = event.get("event")
    if kind == "queued":
        position = event.get("position")
        where = f" (position {position})" if position else ""
        return 0.0, f"Waiting in the Uprez engine's queue{where}"
    if kind == "started":
        model = str(event.get("model") or "the model")
        return None, f"Upscaling with {model.rstrip('/').rsplit('/', 1)[-1]}"
    if kind == "progress":
        fraction = float(event.get("fraction") or 0.0)
        phase = event.get("phase")
        if phase:  # what the engine is doing now: "stage 2/2: decoding tile 7/30"
            text = f"Upscaling: {phase}"
        else:  # an engine from before work units said only the stage and step
            text = f"Upscaling: stage {event.get('stage')} of {event.get('stages')}, " \
                   f"step {event.get('step')} of {event.get('steps')}"
        eta = event.get("eta_s")
        if isinstance(eta, (int, float)) and eta >= 1:
            text += f", about {eta:.0f} s left"
        return min(max(fraction, 0.0), 1.0), text
    if kind == "retrying":
        return 0.0, "Out of memory: the engine retries with smaller tiles"
    if kind == "done":
        return 1.0, "Fetching the upscaled pixels"
    return None, None


def preview_png(event: dict[str, Any]) -> bytes | None:
    """The PNG of a preview event (the engine sends it base64-encoded), else None."""
    if event.get("event") != "preview" or not event.get("image"):
        return None
    try:
        return base64.b64decode(event["image"])
    except (ValueError, TypeError):
        return None


def connect(client: Client | None = None, on_progress: Progress | None = None) -> Client:
    """A client whose engine answers: started here when the installer's bridge.json says how.

    Raises EngineNotRunning saying how to start it by hand otherwise; called before any pixels are read.
    """
    def starting() -> None:
        if on_progress is not None:
            on_progress(None, "Starting the Uprez engine")

    client = launcher.connect(client, starting)
    note = idle_note(client.health())
    if note is not None and on_progress is not None:  # not an error: the job loads the model again
        on_progress(None, f"Uprez {note}: loading it for this upscale")
    return client


def run_job(client: Client, pixels: bytes, width: int, height: int, transfer: Transfer, params: dict[str, Any],
            mask: bytes | None = None, on_progress: Progress | None = None,
            on_submitted: Callable[[str], None] | None = None, profile: bytes | None = None,
            on_preview: Callable[[bytes], None] | None = None) -> tuple[bytes, int, int]:
    """Send RGBA pixels (and the selection mask), follow the job, return (pixels, width, height) in `transfer`.

    `profile`: the image's ICC profile, which the pixels are in; the result comes back in it.
    With a mask the engine upscales only under it and returns the mask as alpha (region_only). The event
    stream cancels the job if this process goes away: GIMP kills a plug-in whose progress is cancelled.
    """
    job_params = dict(params)
    job_params.setdefault("client", "GIMP")  # names the job in other apps' queue views
    if on_preview is not None:
        job_params.setdefault("preview_every", PREVIEW_EVERY)
    if mask is not None:
        job_params["region_only"] = True
    job_id = client.submit_raw(pixels, width, height, CHANNELS, transfer.depth, mask=mask, profile=profile,
                               **job_params)
    if on_submitted is not None:
        on_submitted(job_id)

    def follow(event: dict[str, Any]) -> None:
        preview = preview_png(event) if on_preview is not None else None
        if preview is not None:
            on_preview(preview)
        if on_progress is not None:
            fraction, text = progress_of(event)
            if fraction is not None or text is not None:
                on_progress(fraction, text)

    client.wait(job_id, follow)
    data, meta = client.result(job_id)
    out_width, out_height = int(meta.get("width", 0)), int(meta.get("height", 0))
    if (meta.get("format"), meta.get("channels"), meta.get("depth")) != ("raw", CHANNELS, transfer.depth) \
            or len(data) != transfer.size(out_width, out_height):
        raise UprezClientError(f"the engine sent a result this plug-in cannot place ({meta}, {len(data)} bytes); "
                               "update the plug-in and the engine to the same version")
    return data, out_width, out_height


def explain(exc: BaseException) -> str:
    """The message GIMP shows for a failed run: what happened and what to do."""
    if isinstance(exc, EngineNotRunning):
        return f"Uprez: {exc.message}; {AGAIN}."
    if isinstance(exc, Unauthorized):
        return (f"Uprez: the engine refused this plug-in: {exc.message}. The plug-in reads the engine's token "
                f"from {config_dir()}; if GIMP runs in a sandbox (Flatpak, Snap), set UPREZ_CONFIG_DIR or "
                "UPREZ_TOKEN for it.")
    if isinstance(exc, QueueFull):
        return f"Uprez: the engine's queue is full; try again in about {exc.retry_after:.0f} s."
    if isinstance(exc, JobCancelled):
        return f"Uprez: the upscale was cancelled ({exc.message}); the image is unchanged."
    if isinstance(exc, UprezClientError):
        return f"Uprez: {exc.message}"
    return f"Uprez: {exc}"
