"""The HTTP API (docs/protocol.md): routes that validate, queue, stream and return; no model work here."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from engine import __version__
from engine.colour import colour_space
from engine.errors import InvalidInput
from engine.server import models
from engine.server.codec import MEDIA_TYPES, decode_mask, decode_photo, image_size, sniff
from engine.server.config import ServerConfig
from engine.server.idle import ActivityMiddleware, IdleWatch
from engine.server.jobs import Job, JobNotFound, JobQueue, JobState, QueueFull, Runner
from engine.server.ranges import Unsatisfiable, chunks, etag_for, if_range_allows, parse_range
from engine.server.request import JobRequest, parse_params
from engine.server.runner import make_runner
from engine.server.security import BodyTooLarge, Guard, HostPolicy, load_or_create_token, token_matches
from engine.server.tokens import LOCAL_OWNER, TokenStore
from engine.server.uploads import UploadBudget, UploadsBusy, declared_length
from engine.stages import output_size

log = logging.getLogger("uprez.server")
EVENT_POLL_S = 0.05  # how often an event stream looks for news; cheap, and well under one model step
KEEPALIVE_S = 10.0  # an SSE comment this often keeps proxies from closing an idle stream
PARTS = ("params", "image", "mask", "profile")
MAX_PROFILE_BYTES = 4 * 2**20  # ICC profiles of photos are a few KB; LUT profiles up to a few hundred


class ApiError(Exception):
    """An error with its HTTP status; `extra` fields go into the JSON body, `headers` into the response."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, /, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.headers, self.extra = status, headers, extra


def _error(status: int, message: str, headers: dict[str, str] | None = None, /, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is `{"error": message, "status": code}`: one shape for the client to read."""

    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.headers, **exc.extra)

    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return _error(422, "; ".join(parts) or "invalid request")

    async def invalid_input(_request: Request, exc: InvalidInput) -> JSONResponse:
        return _error(422, str(exc))

    async def too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _error(413, str(exc), {"Connection": "close"})

    async def not_found(_request: Request, exc: JobNotFound) -> JSONResponse:
        return _error(404, str(exc))

    async def queue_full(_request: Request, exc: QueueFull) -> JSONResponse:
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after)}, retry_after=exc.retry_after)

    async def uploads_busy(_request: Request, exc: UploadsBusy) -> JSONResponse:
        return _error(429, str(exc), {"Retry-After": str(exc.retry_after)}, retry_after=exc.retry_after)

    async def disconnected(request: Request, _exc: ClientDisconnect) -> JSONResponse:
        # Not an engine fault (a bridge cancelled, an editor closed): one line, not a traceback.
        log.info("a client left during the upload to %s; nothing was queued", request.url.path)
        return _error(400, "the client disconnected before its upload was complete")

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the engine's log has the details")

    for kind, handler in ((ApiError, api_error), (HTTPException, http_error), (RequestValidationError,
                          validation_error), (InvalidInput, invalid_input), (BodyTooLarge, too_large),
                          (JobNotFound, not_found), (QueueFull, queue_full), (UploadsBusy, uploads_busy),
                          (ClientDisconnect, disconnected), (Exception, unexpected)):
        app.add_exception_handler(kind, handler)  # type: ignore[arg-type]


def _prepare(config: ServerConfig, params_text: str | bytes, data: bytes, mask_data: bytes | None,
             profile: bytes | None = None) -> tuple[JobRequest, np.ndarray, np.ndarray | None]:
    """Validate and decode one submission; runs in a thread pool because decoding is CPU work."""
    request = JobRequest.from_params(parse_params(params_text), sniffed=sniff(data), has_mask=mask_data is not None)
    width, height = image_size(data, request.image)
    if width < 1 or height < 1:
        raise InvalidInput(f"the image is empty ({width}x{height})")
    limits = config.limits
    if width * height > limits.max_pixels:
        raise ApiError(413, f"the image is {width}x{height} = {width * height} pixels, over this engine's limit of "
                            f"{limits.max_pixels}; send a region, or start the engine with a larger --max-pixels")
    out_w, out_h = output_size(width, height, request.settings.scale)
    if out_w * out_h > limits.max_output_pixels:
        raise ApiError(413, f"the result would be {out_w}x{out_h} = {out_w * out_h} pixels, over this engine's "
                            f"limit of {limits.max_output_pixels}; use a smaller scale or region, or start the "
                            "engine with a larger --max-output-pixels")
    request = replace(request, model=models.resolve(request.model, config.model))
    if request.settings.upsampler:  # an SR model's name or path: a typo fails at submit, not after the queue
        from engine.sr.find import resolve_upsampler
        from engine.sr.load import is_sr_checkpoint

        if is_sr_checkpoint(Path(request.model)):
            raise InvalidInput("upsampler goes with a flow model; this job's model is already an upscale model")
        found = resolve_upsampler(request.settings.upsampler, config.config_dir)
        request = replace(request, settings=replace(request.settings, upsampler=str(found) if found else None))
    if request.settings.loras:  # a missing file or another family's LoRA fails at submit, not after the queue
        from engine.lora.apply import check_loras, source_family
        from engine.settings import BUILTIN_MODEL
        from engine.sr.load import is_sr_checkpoint

        if request.model == BUILTIN_MODEL or is_sr_checkpoint(Path(request.model)):
            raise InvalidInput(f"loras go with a flow model (FLUX, SD3, Qwen-Image, Z-Image); {request.model} "
                               "takes none")
        from engine.lora.find import resolve_lora
        from engine.lora.spec import parse_loras

        loras = tuple(resolve_lora(text, config.config_dir) for text in request.settings.loras)
        check_loras(parse_loras(loras), source_family(request.model), request.model)
        request = replace(request, settings=replace(request.settings, loras=loras))
    if profile is not None and (len(profile) > MAX_PROFILE_BYTES or colour_space(profile) is None):
        raise InvalidInput(f"the profile part ({len(profile)} bytes) is not an RGB or grey ICC profile that "
                           "LittleCMS can read; send the image's profile as its .icc bytes, or no profile for sRGB")
    image, photo = decode_photo(data, request.image)
    request = replace(request, photo=photo if profile is None else replace(photo, icc=profile))
    if image.shape[:2] not in ((height, width), (width, height)):  # turned upright by its EXIF orientation
        raise InvalidInput(f"the file says {width}x{height} but decodes to {image.shape[1]}x{image.shape[0]}")
    upright = (image.shape[1], image.shape[0])  # a mask goes with the picture as shown
    mask = None if mask_data is None else decode_mask(mask_data, request.mask_format or "raw", upright)
    return request, image, mask


async def _read_parts(request: Request, max_params: int,
                      ) -> tuple[str | bytes, bytes, bytes | None, bytes | None]:
    """The params, image, mask and (ICC) profile parts of a multipart/form-data body."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "POST /v1/jobs takes multipart/form-data with parts params (JSON), image and "
                            "optionally mask; see docs/protocol.md")
    form = await request.form(max_files=len(PARTS), max_fields=len(PARTS), max_part_size=max_params)
    try:
        unknown = sorted(set(form.keys()) - set(PARTS))
        if unknown:
            raise ApiError(400, f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
        repeated = [name for name in PARTS if len(form.getlist(name)) > 1]
        if repeated:
            raise ApiError(400, f"part(s) {', '.join(repeated)} given more than once; send each once")
        values: dict[str, bytes | str | None] = {}
        for name in PARTS:
            part = form.get(name)
            values[name] = await part.read() if isinstance(part, UploadFile) else part
        image, mask, profile = values["image"], values["mask"], values["profile"]
        if image is None:
            raise ApiError(400, "the image part is missing; send it as a file part named image")
        if isinstance(image, str) or isinstance(mask, str) or isinstance(profile, str):
            raise ApiError(400, "image, mask and profile must be file parts (with a filename in "
                                "Content-Disposition), so their bytes arrive unchanged")
        return values["params"] or "{}", image, mask, profile
    finally:
        await form.close()


def _sse(event: dict[str, Any]) -> str:
    return f"id: {event['seq']}\nevent: {event['event']}\ndata: {json.dumps(event)}\n\n"


def create_app(config: ServerConfig, *, runner: Runner | None = None, token: str | None = None) -> FastAPI:
    """The engine's ASGI app; `runner` replaces the real model runner in tests."""
    from engine.backends.loader import resolve_device

    if config.model is not None:
        config = replace(config, model=models.resolve(config.model, None))  # a bad --model fails at start
    device = str(resolve_device(config.device))
    token = token or load_or_create_token(config.config_dir)
    runner = runner or make_runner(config)
    # A cluster runner brings its queue (one worker thread per Ray worker, engine/cluster/queue.py).
    queue = getattr(runner, "job_queue", JobQueue)(runner, queue_size=config.queue_size, result_ttl=config.result_ttl)
    idle = IdleWatch(config.idle, queue, runner)  # its `exit` is set by whoever runs the server (run.py)
    named = TokenStore(config.config_dir) if config.remote else None  # `uprez tokens add`: remote engines only
    uploads = UploadBudget(config.limits.max_uploads_in_flight, config.limits.max_upload_bytes_in_flight)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        queue.start(warmup=getattr(runner, "warmup", None))
        idle.start()
        yield
        idle.stop()
        await run_in_threadpool(queue.stop)

    app = FastAPI(title="Uprez engine", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # nothing is served without the token
    app.state.config, app.state.queue, app.state.runner = config, queue, runner
    app.state.idle, app.state.uploads = idle, uploads
    app.add_middleware(Guard, policy=HostPolicy(config.host, config.allowed_hosts, any_name=config.tls),
                       max_body=config.limits.max_upload_bytes)
    app.add_middleware(ActivityMiddleware, watch=idle)  # outermost: a stopping engine answers 503 to everything
    _install_error_handlers(app)

    def require_token(request: Request) -> str:
        """Who is asking: the local token's owner, or a named token's (engine.server.tokens); 401 otherwise."""
        header = request.headers.get("authorization")
        if token_matches(header, token):
            return LOCAL_OWNER
        if named is not None:
            return _named_owner(named, header)
        raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer <token>' with the token from "
                            f"the file 'token' in the engine's config folder ({config.config_dir})",
                       {"WWW-Authenticate": "Bearer"})

    public = APIRouter(prefix="/v1")
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @public.get("/health")
    def health() -> dict[str, Any]:
        running = queue.running
        idle.touch()  # bridges check health right before submitting: no idle exit in between
        shown = running.id if running and not config.remote else None  # no token here: no one's job ids
        return {"status": "ok", "version": __version__, "device": device,
                "model": getattr(runner, "loaded", None), "default_model": config.model,
                "queue": queue.waiting, "running": shown, **idle.state()}

    @api.get("/models")
    def list_models() -> dict[str, Any]:
        return models.catalogue(config.model, getattr(runner, "loaded", None), config.model_dirs)

    @api.post("/jobs", status_code=202)
    async def submit(request: Request, owner: str = Depends(require_token)) -> JSONResponse:
        # Refusals that need no body come before a byte of it is read (the Guard already refused an
        # over-limit Content-Length): a full queue, and more uploads in flight than the budget allows.
        queue.check_room()
        with uploads.reserve(declared_length(request.headers.get("content-length"), config.limits.max_upload_bytes)):
            params, data, mask_data, profile = await _read_parts(request, max_params=64 * 1024)
            job_request, image, mask = await run_in_threadpool(_prepare, config, params, data, mask_data, profile)
            del params, data, mask_data, profile  # the upload's bytes are decoded: free them before the budget is
            job = queue.submit(job_request, image, mask, owner=owner)
        return JSONResponse(queue.summary(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @api.get("/jobs")
    def list_jobs(owner: str = Depends(require_token)) -> dict[str, Any]:
        running = queue.running  # `waiting` counts everyone's (health says as much); the ids are the owner's own
        return {"jobs": queue.summaries(owner), "waiting": queue.waiting,
                "running": running.id if running and running.owner == owner else None,
                **idle.state()}  # a queue view learns "engine idle, model unloaded" without touching the idle clock

    @api.get("/jobs/{job_id}")
    def get_job(job_id: str, owner: str = Depends(require_token)) -> dict[str, Any]:
        return queue.summary(queue.get(job_id, owner))

    @api.delete("/jobs/{job_id}")
    def cancel_job(job_id: str, owner: str = Depends(require_token)) -> dict[str, Any]:
        return queue.summary(queue.cancel(job_id, owner))

    @api.get("/jobs/{job_id}/result")
    def result(job_id: str, request: Request, owner: str = Depends(require_token)) -> Response:
        job = queue.get(job_id, owner)
        data, meta = job.result, job.result_meta  # read once: the sweeper may free them at any moment
        if job.state is not JobState.DONE or data is None or meta is None:
            hint = {"queued": "wait for its done event", "running": "wait for its done event",
                    "failed": job.message, "cancelled": "it was cancelled"}.get(job.state.value, "")
            raise ApiError(409, f"job {job_id} has no result: it is {job.state.value}; {hint}",
                           state=job.state.value, message=job.message)
        headers = {f"X-Uprez-{key.capitalize()}": str(value) for key, value in meta.items()}
        if job.result_sha256 is None:  # on this thread-pool thread at the first download (~30 ms for 20 MB)
            job.result_sha256 = hashlib.sha256(data).hexdigest()
        digest = job.result_sha256
        return _result_response(data, MEDIA_TYPES[str(meta["format"])], headers, digest, request)

    @api.get("/jobs/{job_id}/events")
    def events(job_id: str, cancel_on_disconnect: bool = True, owner: str = Depends(require_token),
               ) -> StreamingResponse:
        job = queue.get(job_id, owner)
        stream = idle.follow(_stream(queue, job, cancel_on_disconnect))  # an open stream keeps the engine up
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(public)
    app.include_router(api)
    return app


def _named_owner(named: TokenStore, authorization: str | None) -> str:
    """The owner of the named token in `authorization`; 401 for none, an unknown or a revoked one."""
    scheme, _, secret = (authorization or "").partition(" ")
    found = named.lookup(secret.strip()) if scheme.lower() == "bearer" and secret.strip() else None
    if found is not None and found.revoked is None:
        named.used(found)
        return found.owner
    if found is not None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(found.revoked))
        message = (f"the token {found.name!r} was revoked ({when}); ask the engine's owner for a new connection "
                   "string")
    else:
        message = ("missing or unknown token: paste the whole connection string the engine's owner made with "
                   "`uprez tokens add NAME`")
    raise ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def _result_response(data: bytes, media_type: str, headers: dict[str, str], digest: str | None,
                     request: Request) -> Response:
    """The result, whole (200) or one byte range of it (206), sent in chunks; 416 for a range past the end."""
    size = len(data)
    headers = dict(headers, **{"Accept-Ranges": "bytes"})
    if digest is not None:  # the client checks that the pieces of a resumed download join to the whole
        headers["ETag"] = etag_for(digest)
        headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(digest)).decode('ascii')}:"
    try:
        wanted = parse_range(request.headers.get("range"), size)
    except Unsatisfiable:
        raise ApiError(416, f"the range {request.headers.get('range')!r} starts past the result's {size} bytes; "
                            "ask for bytes=0- to start again", {"Content-Range": f"bytes */{size}"}) from None
    if wanted is not None and not if_range_allows(request.headers.get("if-range"), headers.get("ETag", "")):
        wanted = None  # a resume of another result: the whole of this one
    first, last = wanted if wanted is not None else (0, size - 1)
    headers["Content-Length"] = str(last - first + 1)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"

    async def body() -> AsyncIterator[memoryview]:  # async: each chunk waits for the socket, no thread hops
        for chunk in chunks(data, first, last):
            yield chunk

    return StreamingResponse(body(), status_code=206 if wanted is not None else 200, media_type=media_type,
                             headers=headers)


async def _stream(queue: JobQueue, job: Job, cancel_on_disconnect: bool) -> AsyncIterator[str]:
    """Replay the job's events, then follow it until it ends; a client that leaves may cancel its job."""
    seq, last_write = 0, time.monotonic()
    try:
        while True:
            ended = job.terminal  # read before fetching, so the final event is in this batch
            for event in queue.events_after(job, seq):
                seq = event["seq"]
                last_write = time.monotonic()
                yield _sse(event)
            if ended:
                return
            if time.monotonic() - last_write > KEEPALIVE_S:
                last_write = time.monotonic()
                yield ": keepalive\n\n"
            await asyncio.sleep(EVENT_POLL_S)
    finally:
        # Reached on a normal end too; only a stream that left before its job ended cancels it. GIMP
        # kills a plug-in on cancel, and this is the only way the engine hears about it.
        if cancel_on_disconnect and not job.terminal:
            with suppress(JobNotFound):
                queue.cancel(job.id)
