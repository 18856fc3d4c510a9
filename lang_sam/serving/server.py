"""HTTP server: ``POST /predict`` (text prompt), ``POST /segment`` (SAM boxes / points),
``POST /track`` (text-prompted video tracking) and ``GET /health``; the web demo at ``/gradio``.

    lang-sam serve --port 8000            # or: python -m lang_sam serve --port 8000

:mod:`lang_sam.cli` parses the command's flags and calls :func:`serve`.

Install with ``pip install "lang-sam[server]"`` (FastAPI, uvicorn, python-multipart; add ``[app]`` for
the demo at ``/gradio``).

Limits, each a flag with a documented default: request body size (``--max-body-mb``, checked from
``Content-Length`` and while the body streams in, chunked bodies included), image size
(``--max-pixels``, from the image header, before decoding; for ``/track`` each frame's, from the
container's header), frames per ``/track`` video (``--max-frames``), detections per text request and prompts
per SAM request (``--max-detections``: the highest-scoring boxes are kept before SAM runs, the
answer says how many were dropped, and masks are RLE-encoded chunk by chunk). Clients may not switch
the served model types unless ``--allow-model-switch``. ``--api-key`` (or ``LANG_SAM_API_KEY``)
requires ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` on everything but ``/health``.
Every error is a JSON ``{"error": message}``; no message names a server path (details of model
loading failures go to the server log only).

Why FastAPI and not LitServe (which the later original used): LitServe hands each decoded request
to model worker processes through a multiprocessing queue and answers 504 after a default 30 s
request timeout, while one CPU predict with the default models takes about 60 s here
(benchmarks/README.md). This server validates every request in the web process before the model
runs (typed 4xx JSON errors), runs the model in one place under a lock (SAM's predictor holds
per-image state, so concurrent requests must never share it mid-call), reuses the image-encoding
cache across requests, and mounts the Gradio demo on the same app. LitServe is itself built on
FastAPI.
"""

# No "from __future__ import annotations": FastAPI reads the endpoints' annotations at run time.
import hmac
import io
import json
import logging
from typing import Any

import numpy as np

from lang_sam.errors import InvalidImageError, InvalidPromptError, InvalidThresholdError, LangSAMError
from lang_sam.labeling.formats import detection_labels, masks_to_rle
from lang_sam.serving.guards import FramingHeaderGuard, UploadOnlyGuard, check_uploads, send_json
from lang_sam.serving.service import (
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    MAX_JSON_DEPTH,
    MAX_PROMPT_CHARS,
    ModelService,
    body_limit_bytes,
    json_depth,
    public_error,
    read_upload,
)
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD, check_prompt, check_threshold
from lang_sam.video import DETECT_EVERY

logger = logging.getLogger(__name__)

__all__ = [
    "create_app", "serve", "masks_to_rle", "DEFAULT_MAX_PIXELS", "DEFAULT_MAX_BODY_MB",
    "DEFAULT_MAX_DETECTIONS", "DEFAULT_MAX_FRAMES", "MAX_PROMPT_CHARS",
]

_OPEN_PATHS = ("/health",)


class RequestError(Exception):
    """A bad request: answered with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyTooLargeError(RequestError):
    """A request body over the server's limit (raised while the body streams in)."""

    def __init__(self, limit: int):
        super().__init__(413, _body_message(limit))


def _body_message(limit: int) -> str:
    return (f"request body is over this server's limit of {limit:,} bytes "
            f"({limit / 2**20:g} MiB, --max-body-mb)")


class _ApiKeyMiddleware:
    """ASGI: every HTTP request but ``open_paths`` (and ``exempt_prefix``, guarded by the demo's
    own login) needs ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; else 401. The key is
    compared in constant time."""

    def __init__(self, app, key: str, exempt_prefix: str | None = None):
        self.app = app
        self.key = key.encode()
        self.exempt_prefix = exempt_prefix

    def _allowed(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-api-key")
        return given is not None and hmac.compare_digest(given, self.key)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _OPEN_PATHS or (
                self.exempt_prefix and (path == self.exempt_prefix
                                        or path.startswith(self.exempt_prefix + "/"))):
            return await self.app(scope, receive, send)
        if not self._allowed(dict(scope["headers"])):
            return await send_json(
                send, 401, {"error": "missing or wrong API key: send 'Authorization: Bearer <key>' "
                                     "or 'X-API-Key: <key>'"},
                [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class _BodyLimitMiddleware:
    """ASGI: a request whose ``Content-Length`` is over ``max_bytes`` is answered 413 before its
    body is read; any other body (chunked ones too) is counted as it streams in and the request is
    stopped with 413 once the count passes ``max_bytes``."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await send_json(send, 400, {"error": "Content-Length is not a number"})
            if size > self.max_bytes:
                return await send_json(send, 413, {"error": _body_message(self.max_bytes)})
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError as exc:  # raised where no handler of ours caught it (the demo)
            if started:
                raise
            await send_json(send, 413, {"error": str(exc)})


def _text(form, name: str) -> str | None:
    """The text field ``name`` of a multipart form (None when absent); a file sent under a text
    field's name is a 400."""
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise RequestError(400, f"'{name}' must be a text field, not a file")
    return value


def _prompt_fields(form, example: str) -> tuple[str, float, float]:
    """The checked ``text_prompt`` (400 if missing, invalid or over :data:`MAX_PROMPT_CHARS`) and
    ``box_threshold`` / ``text_threshold`` (defaults :data:`~lang_sam.validation.BOX_THRESHOLD` /
    :data:`~lang_sam.validation.TEXT_THRESHOLD`) of a request's form."""
    prompt = _text(form, "text_prompt")
    if prompt is None:
        raise RequestError(400, f"missing 'text_prompt' field (e.g. '{example}')")
    try:
        check_prompt(prompt)
    except InvalidPromptError as exc:
        raise RequestError(400, f"'text_prompt': {exc}") from None
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(400, f"'text_prompt' is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
    return (prompt, _threshold("box_threshold", _text(form, "box_threshold"), BOX_THRESHOLD),
            _threshold("text_threshold", _text(form, "text_threshold"), TEXT_THRESHOLD))


def _threshold(name: str, raw: Any, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RequestError(400, f"{name} must be a number in [0, 1], got {raw!r}") from None
    try:
        return check_threshold(name, value)
    except InvalidThresholdError as exc:
        raise RequestError(400, str(exc)) from None


def _json_array(name: str, raw: Any, example: str):
    """A form field holding a JSON array, e.g. ``boxes='[[10, 20, 200, 180]]'``; None if absent."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        raise RequestError(400, f"'{name}' must be a form field holding a JSON array such as {example}")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(400, f"'{name}' nests arrays {depth} deep; at most {MAX_JSON_DEPTH} "
                                f"(expected an array such as {example})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"'{name}' is not valid JSON ({exc.msg} at character {exc.pos}); "
                                f"expected an array such as {example}") from None
    except ValueError:  # an integer literal over Python's 4300-digit conversion limit
        raise RequestError(400, f"'{name}' holds a number too long to read; expected an array "
                                f"such as {example}") from None
    if not isinstance(value, list):
        raise RequestError(400, f"'{name}' must be a JSON array such as {example}, got {raw!r:.80}")
    return value


def _flag(name: str, raw: Any) -> bool:
    if raw is None or raw == "":
        return False
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise RequestError(400, f"'{name}' must be true or false, got {raw!r:.40}")


def create_app(
    service: ModelService,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_body_mb: float | None = DEFAULT_MAX_BODY_MB,
    api_key: str | None = None,
    mount_demo: bool = True,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
):
    """The FastAPI app around ``service``.

    ``max_pixels``: the largest image (width x height) decoded, checked from the header (413 over
    it; for ``/track`` each frame's); ``max_frames``: the most frames of a ``/track`` video (413
    over it); ``max_body_mb``: the largest request body in MiB (413 over it); ``api_key``: required on
    every path but ``/health`` (the demo at ``/gradio`` then asks for it as its login password).
    ``None`` turns a limit off.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="lang-sam", description="Text-prompted segmentation (GroundingDINO + SAM)")

    @app.exception_handler(RequestError)
    async def _bad_request(request, exc: RequestError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(LangSAMError)
    async def _library_error(request, exc: LangSAMError):
        status, message = public_error(exc)
        if status >= 500:
            logger.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):  # multipart errors, 404, 405
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        parts = ["{}: {}".format(".".join(map(str, e.get("loc", ()))), e.get("msg", "")) for e in exc.errors()]
        return JSONResponse({"error": "; ".join(parts) or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):  # never a stack trace, never a dead server
        logger.exception("error while handling %s", request.url.path)
        return JSONResponse({"error": public_error(exc)[1]}, status_code=500)

    def _read_image(data: bytes):
        try:
            return read_upload(data, max_pixels)
        except InvalidImageError as exc:
            raise RequestError(*public_error(exc)) from None

    async def _form(request: Request, usage: str):
        """The multipart form and the decoded image (RGB PIL, EXIF orientation applied)."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise RequestError(415, f"send multipart/form-data with {usage}")
        form = await request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "missing 'image' file field")
        data = await upload.read()
        if not data:
            raise RequestError(400, "the 'image' file is empty")
        return form, data

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **service.info()}

    @app.post("/predict")
    async def predict(request: Request):
        form, data = await _form(request, "an 'image' file and a 'text_prompt'")
        prompt, box_threshold, text_threshold = _prompt_fields(form, "car. wheel")
        fmt = _text(form, "format") or "json"
        if fmt not in ("json", "png"):
            raise RequestError(400, f"format must be 'json' or 'png', got {fmt!r}")
        sam_type = _text(form, "sam_type") or None
        image = await run_in_threadpool(_read_image, data)
        del data
        result = await run_in_threadpool(
            service.predict, image, prompt, box_threshold, text_threshold, sam_type=sam_type,
            masks="overlay" if fmt == "png" else "rle",
        )
        if fmt == "png":
            return Response(await run_in_threadpool(_overlay_png, image, result),
                            media_type="image/png",
                            headers={"X-Detections": str(len(result.phrases)),
                                     "X-Dropped": str(result.dropped)})
        height, width = result.image_size
        return {
            "width": width,
            "height": height,
            "boxes": result.boxes.tolist(),
            "phrases": result.phrases,
            "logits": result.logits.tolist(),
            "masks": result.masks.rle,
            "dropped": result.dropped,
            "max_detections": service.max_detections,
            "sam_type": result.sam_type,
            "gdino_type": result.gdino_type,
        }

    @app.post("/segment")
    async def segment(request: Request):
        form, data = await _form(request, "an 'image' file and 'boxes' and/or 'points' (JSON arrays)")
        boxes = _json_array("boxes", _text(form, "boxes"), "[[x0, y0, x1, y1], ...]")
        points = _json_array("points", _text(form, "points"), "[[x, y], ...]")
        labels = _json_array("point_labels", _text(form, "point_labels"), "[1, 0, ...]")
        if boxes is None and points is None:
            raise RequestError(400, "give 'boxes' ('[[x0, y0, x1, y1], ...]') and/or 'points' "
                                    "('[[x, y], ...]') as JSON arrays in pixels")
        multimask = _flag("multimask", _text(form, "multimask"))
        sam_type = _text(form, "sam_type") or None
        image = await run_in_threadpool(_read_image, data)
        del data
        result = await run_in_threadpool(
            service.segment, image, boxes=boxes, points=points, point_labels=labels,
            multimask_output=multimask, sam_type=sam_type, masks="rle",
        )
        height, width = result.image_size
        return {
            "width": width,
            "height": height,
            "masks": result.masks.rle,
            "iou_scores": result.iou_scores.tolist(),
            "multimask": multimask,
            "sam_type": result.sam_type,
        }

    @app.post("/track")
    async def track(request: Request):
        return await _track(request, service, max_pixels=max_pixels, max_frames=max_frames)

    max_bytes = body_limit_bytes(max_body_mb)
    if mount_demo:
        try:
            import gradio as gr
        except ImportError:
            logger.info("gradio is not installed: no demo at /gradio (pip install 'lang-sam[app]')")
        else:
            from lang_sam.serving.app import build_demo, demo_auth, demo_options

            demo = build_demo(service, max_pixels=max_pixels, max_frames=max_frames)
            app = gr.mount_gradio_app(app, demo, path="/gradio", auth=demo_auth(api_key),
                                      max_file_size=max_bytes, **demo_options())
            check_uploads(demo)  # Gradio's own check of file arguments, off in a mounted demo
            app.add_middleware(UploadOnlyGuard, prefix="/gradio", max_body_bytes=max_bytes, blocks=demo)
    if max_bytes is not None:
        app.add_middleware(_BodyLimitMiddleware, max_bytes=max_bytes)
    if api_key:
        app.add_middleware(_ApiKeyMiddleware, key=api_key, exempt_prefix="/gradio" if mount_demo else None)
    app.add_middleware(FramingHeaderGuard)  # added last: the outermost of ours
    return app


#: ``/track``'s upload suffixes kept for the temporary file (FFmpeg probes content; the suffix helps).
_VIDEO_SUFFIX = r"^\.[A-Za-z0-9]{1,5}$"


async def _track(request, service: ModelService, *, max_pixels, max_frames):
    """``POST /track``: a multipart ``video`` file, ``text_prompt``, optional ``box_threshold``,
    ``text_threshold``, ``detect_every`` (default :data:`~lang_sam.video.DETECT_EVERY`), ``masks`` (true/false, default true: RLE per
    track per frame), ``format`` (``json``, default, or ``mot``: MOTChallenge text) and
    ``sam_type``. The upload is written to a temporary file (PyAV reads files), tracked within the
    server's limits (body size by the middleware; frames and pixels by
    :meth:`ModelService.track`, 413, checked while FFmpeg probes and decodes, under the service's
    lock) and deleted; no message names the temporary file. A video that ends clearly short of
    its header's frame count is answered 200 with what it holds and a warning (``warnings`` in
    the JSON, ``X-Warnings`` with ``format=mot``)."""
    import os
    import re
    import tempfile

    from fastapi.responses import PlainTextResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError(415, "send multipart/form-data with a 'video' file and a 'text_prompt'")
    form = await request.form()
    upload = form.get("video")
    if not isinstance(upload, UploadFile):
        raise RequestError(400, "missing 'video' file field")
    prompt, box_threshold, text_threshold = _prompt_fields(form, "car. person")
    raw = _text(form, "detect_every")
    try:
        detect_every = DETECT_EVERY if raw in (None, "") else int(raw)
    except ValueError:
        detect_every = 0
    if detect_every < 1:
        raise RequestError(400, f"detect_every must be a whole number >= 1, got {raw!r:.40}")
    masks = _flag("masks", _text(form, "masks")) if _text(form, "masks") not in (None, "") else True
    fmt = _text(form, "format") or "json"
    if fmt not in ("json", "mot"):
        raise RequestError(400, f"format must be 'json' or 'mot', got {fmt!r:.40}")
    sam_type = _text(form, "sam_type") or None
    suffix = os.path.splitext(upload.filename or "")[1]
    suffix = suffix if re.match(_VIDEO_SUFFIX, suffix) else ".mp4"
    fd, tmp = tempfile.mkstemp(prefix="lang-sam-track-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            size = 0
            while chunk := await upload.read(1 << 20):
                f.write(chunk)
                size += len(chunk)
        if not size:
            raise RequestError(400, "the 'video' file is empty")
        try:
            result = await run_in_threadpool(
                service.track, tmp, prompt, box_threshold, text_threshold, detect_every=detect_every,
                max_frames=max_frames, max_pixels=max_pixels, sam_type=sam_type, masks=masks)
        except LangSAMError as exc:  # the message may name the temporary file: the client's name instead
            status, message = public_error(exc)
            if status >= 500:
                raise
            raise RequestError(status, message.replace(tmp, "the uploaded video")) from None
    finally:
        os.unlink(tmp)
    declared = "" if result.frame_count_declared is None else str(result.frame_count_declared)
    if fmt == "mot":
        headers = {"X-Frames": str(len(result.frames)), "X-Tracks": str(len(result.tracks)),
                   "X-Frame-Count-Declared": declared}
        if result.warnings:
            headers["X-Warnings"] = " | ".join(result.warnings)
        return PlainTextResponse(result.mot, headers=headers)
    height, width = result.image_size
    return {
        "width": width, "height": height, "fps": result.fps,
        "frame_count": len(result.frames), "frame_count_declared": result.frame_count_declared,
        "warnings": result.warnings, "tracks": result.tracks, "frames": result.frames,
        "sam_type": result.sam_type, "gdino_type": result.gdino_type,
    }


def _overlay_png(image, result) -> bytes:
    """:func:`lang_sam.utils.draw_image` of the result (its masks in ``"overlay"`` form draw exactly
    as all the masks would) as PNG bytes."""
    from PIL import Image

    from lang_sam.utils import draw_image

    labels = detection_labels(result.phrases, result.logits)
    overlay = draw_image(np.asarray(image), result.masks.coverage, result.boxes, labels)
    buf = io.BytesIO()
    Image.fromarray(overlay).save(buf, format="PNG")
    return buf.getvalue()


def serve(
    service: ModelService,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_body_mb: float | None = DEFAULT_MAX_BODY_MB,
    api_key: str | None = None,
    mount_demo: bool = True,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
) -> None:
    """Serve :func:`create_app` around ``service`` on ``host:port`` with uvicorn until stopped
    (``lang-sam serve``); the other arguments are those of :func:`create_app`."""
    import uvicorn

    app = create_app(service, max_pixels=max_pixels, max_body_mb=max_body_mb, api_key=api_key,
                     mount_demo=mount_demo, max_frames=max_frames)
    uvicorn.run(app, host=host, port=port, log_level="info")
