"""One upscale's round trip with the engine, and the words GIMP shows for its failures (its progress text is the
client's `status_text`, the same in every front end)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from uprez_client import (
    Client,
    EngineNotRunning,
    JobCancelled,
    JobEvent,
    QueueFull,
    Unauthorized,
    UprezClientError,
    config_dir,
    remote_choice,
    status_text,
)
from uprez_client.idle import idle_note

from .formats import CHANNELS, Transfer
from .plan import AGAIN

APP = "gimp"  # this front end's remote-engine choice (uprez_client.remote_choice)
PREVIEW_EVERY = 2  # a preview every other denoising step: each costs the engine a small VAE decode
Progress = Callable[[Optional[float], Optional[str]], None]  # (fraction or None, text or None)


def connect(client: Client | None = None, on_progress: Progress | None = None) -> Client:
    """A client whose engine answers: started here when the installer's bridge.json says how.

    Raises EngineNotRunning saying how to start it by hand otherwise; called before any pixels are read.
    """
    def say(event: JobEvent) -> None:
        if on_progress is not None:
            on_progress(None, status_text(event))

    # The remote engine chosen in the dialog (never started from here), else the local one, started as before.
    client = remote_choice.connect(APP, lambda: say(JobEvent("starting_engine")), client)
    note = idle_note(client.health())
    if note is not None:  # not an error: the job loads the model again
        say(JobEvent("engine_idle", message=note))
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
    remote = client.start(pixels, width, height, CHANNELS, transfer.depth, mask=mask, profile=profile,
                          **job_params)

    def follow(event: JobEvent) -> None:
        if event.kind == "preview" and event.preview and on_preview is not None:
            on_preview(event.preview)
        if event.kind == "submitted" and on_submitted is not None and event.job is not None:
            on_submitted(event.job)
        text = status_text(event)
        if on_progress is not None and (event.fraction is not None or text):
            on_progress(event.fraction, text or None)

    remote.wait(follow)  # raises JobFailed / JobCancelled
    data, meta = remote.result()
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
    if isinstance(exc, Unauthorized) and remote_choice.load(APP) is not None:
        return (f"Uprez: the remote engine refused this plug-in's token: {exc.message}. It may have been revoked; "
                "ask for a new connection string and connect again in the Upscale with Uprez dialog.")
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
