"""HTTP server: ``POST /predict`` (multipart) and ``GET /health``; the web demo at ``/gradio``.

    python -m lang_sam.serving.server --port 8000            # or: lang-sam serve --port 8000

Install with ``pip install "lang-sam[server]"`` (FastAPI, uvicorn, python-multipart; add ``[app]`` for
the demo at ``/gradio``).

Why FastAPI and not LitServe (which the later original used): LitServe hands each decoded request
to model worker processes through a multiprocessing queue and answers 504 after a default 30 s
request timeout, while one CPU predict with the default models takes about 60 s here
(benchmarks/README.md). This server validates every request in the web process before the model
runs (typed 4xx JSON errors), runs the model in one place under a lock (SAM's predictor holds
per-image state, so concurrent requests must never share it mid-call), reuses the image-encoding
cache across requests, and mounts the Gradio demo on the same app. LitServe is itself built on
FastAPI.
"""


import argparse
import io
import logging
from typing import Any

import numpy as np

from lang_sam.errors import InvalidPromptError, InvalidThresholdError, LangSAMError
from lang_sam.labeling.formats import detection_labels, masks_to_rle
from lang_sam.serving.service import ModelService, add_model_arguments, service_from_args
from lang_sam.validation import check_prompt, check_threshold

logger = logging.getLogger(__name__)

__all__ = ["create_app", "main", "masks_to_rle", "DEFAULT_MAX_PIXELS", "MAX_PROMPT_CHARS"]

DEFAULT_MAX_PIXELS = 40_000_000
MAX_PROMPT_CHARS = 2000


class RequestError(Exception):
    """A bad request: answered with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _decode_image(data: bytes, max_pixels: int):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise RequestError(400, "the 'image' file is empty")
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size  # read from the header: nothing decoded yet
    except (UnidentifiedImageError, OSError, ValueError):
        raise RequestError(400, "'image' is not a readable image file (expected JPEG, PNG, WebP, TIFF, BMP...)") from None
    if w * h > max_pixels:
        raise RequestError(413, f"image is {w}x{h} = {w * h} pixels; this server accepts at most {max_pixels}")
    try:
        img.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(400, f"'image' could not be decoded: {exc}") from None
    return img


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


def create_app(service: ModelService, *, max_pixels: int = DEFAULT_MAX_PIXELS, mount_demo: bool = True):
    """The FastAPI app around ``service``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.datastructures import UploadFile

    app = FastAPI(title="lang-sam", description="Text-prompted segmentation (GroundingDINO + SAM)")

    @app.exception_handler(RequestError)
    async def _bad_request(request, exc: RequestError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):  # never a stack trace, never a dead server
        logger.exception("error while handling %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", **service.info()}

    @app.post("/predict")
    async def predict(request: Request):
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise RequestError(415, "send multipart/form-data with an 'image' file and a 'text_prompt'")
        form = await request.form()
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "missing 'image' file field")
        data = await upload.read()
        prompt = form.get("text_prompt")
        if prompt is None:
            raise RequestError(400, "missing 'text_prompt' field (e.g. 'car. wheel')")
        try:
            check_prompt(prompt)
        except InvalidPromptError as exc:
            raise RequestError(400, f"'text_prompt': {exc}") from None
        if len(prompt) > MAX_PROMPT_CHARS:
            raise RequestError(400, f"'text_prompt' is {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
        box_threshold = _threshold("box_threshold", form.get("box_threshold"), 0.3)
        text_threshold = _threshold("text_threshold", form.get("text_threshold"), 0.25)
        fmt = form.get("format") or "json"
        if fmt not in ("json", "png"):
            raise RequestError(400, f"format must be 'json' or 'png', got {fmt!r}")
        sam_type = form.get("sam_type") or None
        image = _decode_image(data, max_pixels)
        return await _run(image, prompt, box_threshold, text_threshold, fmt, sam_type)

    async def _run(image, prompt, box_threshold, text_threshold, fmt, sam_type):
        from starlette.concurrency import run_in_threadpool

        from lang_sam.validation import to_rgb_pil

        try:
            rgb = to_rgb_pil(image)
            result = await run_in_threadpool(
                service.predict, rgb, prompt, box_threshold, text_threshold, sam_type=sam_type
            )
        except (LangSAMError, ValueError) as exc:  # bad prompt, unknown sam_type, odd image
            raise RequestError(400, str(exc)) from None
        if fmt == "png":
            from PIL import Image

            from lang_sam.utils import draw_image

            labels = detection_labels(result.phrases, result.logits)
            overlay = draw_image(np.asarray(rgb), result.masks, result.boxes, labels)
            buf = io.BytesIO()
            Image.fromarray(overlay).save(buf, format="PNG")
            return Response(buf.getvalue(), media_type="image/png")
        return {
            "width": rgb.width,
            "height": rgb.height,
            "boxes": result.boxes.tolist(),
            "phrases": result.phrases,
            "logits": result.logits.tolist(),
            "masks": masks_to_rle(result.masks),
            "sam_type": service.sam_type,
            "gdino_type": service.gdino_type,
        }

    if mount_demo:
        try:
            import gradio as gr
        except ImportError:
            logger.info("gradio is not installed: no demo at /gradio (pip install 'lang-sam[app]')")
        else:
            from lang_sam.serving.app import build_demo

            app = gr.mount_gradio_app(app, build_demo(service), path="/gradio")
    return app


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lang-sam serve", description="lang-sam HTTP server")
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    p.add_argument("--no-demo", action="store_true", help="do not mount the Gradio demo at /gradio")
    args = p.parse_args(argv)
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = service_from_args(args)
    service.load()  # fail before listening if the weights are missing
    app = create_app(service, max_pixels=args.max_pixels, mount_demo=not args.no_demo)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
