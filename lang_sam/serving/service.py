"""A shared, locked model holder for the web demo and the HTTP server.

SAM's predictor keeps per-image state, so one :class:`LangSAM` must not serve two requests at once:
:class:`ModelService` runs every call under one lock. It also holds what a public service needs and
a library call does not:

- a cap on detections (and SAM prompts) per request, applied before SAM runs, with masks made chunk
  by chunk (dense, COCO RLE, or two coverage masks for drawing), so one request's memory is bounded;
- model switching (the original web demo's dropdown) only when the operator allows it;
- errors a client may see (:func:`public_error`): no server path in any message, and model-loading
  failures reported as the server's fault (details in the server log only).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lang_sam.errors import (
    CheckpointError,
    ChecksumMismatchError,
    DownloadError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    LangSAMError,
    MissingWeightsError,
    ModelLoadError,
    ModelSwitchError,
    PortUnavailableError,
    TooManyPromptsError,
    UnknownModelError,
    VideoTooLargeError,
    WeightsNotFoundError,
)
from lang_sam.engines import check_backend_device
from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, get_spec
from lang_sam.pipeline import DenseMasks, MaskCoverage, MaskSink, RleMasks
from lang_sam.results import MASK_KINDS, ServedMasks, ServedPrediction, ServedSegmentation, ServedTracks
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD
from lang_sam.video import DETECT_EVERY

logger = logging.getLogger(__name__)

__all__ = [
    "check_port",
    "ModelService",
    "read_upload",
    "public_error",
    "scrub",
    "DEFAULT_MAX_DETECTIONS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_BODY_MB",
    "body_limit_bytes",
    "DEFAULT_MAX_FRAMES",
    "MAX_PROMPT_CHARS",
    "MAX_JSON_DEPTH",
    "json_depth",
    "check_exposure",
    "is_loopback",
]

#: Detections kept per text request (the highest-scoring), and SAM prompts accepted per request.
DEFAULT_MAX_DETECTIONS = 100
#: The largest image (width x height) the server and the demo accept.
DEFAULT_MAX_PIXELS = 40_000_000
#: The largest request body (the server) or upload (the demo) in MiB: a 40-megapixel JPEG is
#: typically 10-25 MiB.
DEFAULT_MAX_BODY_MB = 50

#: The most frames a video may have on the server (``POST /track``) and the demo's video tab: a
#: 10 s clip at 30 fps. Tracking costs a segmenter pass per frame (seconds each on a CPU).
DEFAULT_MAX_FRAMES = 300

#: The longest text prompt (in characters) the server and the demo accept.
MAX_PROMPT_CHARS = 2000
def body_limit_bytes(max_body_mb: float | None) -> int | None:
    """A ``--max-body-mb`` limit in bytes (None: no limit)."""
    return None if max_body_mb is None else int(max_body_mb * 2**20)


#: The deepest nesting of JSON arrays / objects a client may send (the server's ``boxes`` /
#: ``points`` fields, the demo's request bodies); checked before parsing, so that no client can
#: make the JSON parser recurse until it fails.
MAX_JSON_DEPTH = 64

#: Each mask format's sink (:class:`lang_sam.pipeline.MaskSink`): the masks of a request are made
#: chunk by chunk, only one chunk held densely (plus the result, for ``"dense"``).
_SINKS: dict[str, Callable[[int, tuple[int, ...]], MaskSink]] = {
    "dense": DenseMasks, "rle": RleMasks, "overlay": MaskCoverage}
_INTERNAL_ERROR = "internal error (the details are in the server log)"


def json_depth(data: str | bytes) -> int:
    """The deepest nesting of ``[`` / ``{`` in the JSON text ``data``, counted without parsing it
    (brackets inside string literals are skipped). Never less than the depth the JSON parser would
    reach; text that is not valid JSON may count deeper than it is."""
    import re

    import numpy as np

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    raw = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', raw, flags=re.DOTALL)
    codes = np.frombuffer(raw, dtype=np.uint8)
    step = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(codes, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max(initial=0))


def public_error(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and the message a client may see for an error of a request.

    Model-loading failures are 503 (weights missing) or 500 (weights broken) with a message that
    names no file; a model switch that is off is 403; an image over the limit 413; any other
    :class:`LangSAMError` (bad image, prompt, threshold, unknown model type) is 400 with its own
    message, which names no server path (images arrive as bytes). Anything else is 500 with a
    generic message that names neither the error's class nor its text (log them server-side).
    """
    if isinstance(exc, ModelLoadError):
        return (503 if exc.missing else 500), scrub(str(exc))
    if isinstance(exc, ModelSwitchError):
        return 403, scrub(str(exc))
    if isinstance(exc, (ImageTooLargeError, VideoTooLargeError)):
        return 413, scrub(str(exc))
    if isinstance(exc, (WeightsNotFoundError, DownloadError, ChecksumMismatchError, CheckpointError)):
        return 503, "a model could not be loaded on this server (details are in the server log)"
    if isinstance(exc, LangSAMError):
        return 400, scrub(str(exc))
    return 500, _INTERNAL_ERROR


def scrub(message: str) -> str:
    """``message`` without the object reprs that carry a memory address (Pillow says "cannot
    identify image file <_io.BytesIO object at 0x7f...>"): a client learns nothing of the
    server's memory layout from an error."""
    import re

    message = re.sub(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>", "", message)
    return re.sub(r"\b0x[0-9a-fA-F]{6,}\b", "0x...", message)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): nothing else can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> bool:
    """Log a warning when ``host`` is reachable from other machines and no API key is set.
    Returns True when it warned."""
    if api_key or is_loopback(host):
        return False
    logger.warning(
        "listening on %s without an API key: anyone who can reach this address can run the model "
        "(set --api-key or LANG_SAM_API_KEY)", host)
    return True


def read_upload(data: bytes, max_pixels: int | None):
    """Decode an uploaded image file's bytes with :func:`lang_sam.validation.open_image` (EXIF
    orientation applied, size checked from the header before decoding) as an RGB PIL image.

    Raises:
        ImageTooLargeError: over ``max_pixels`` (width x height; None: no limit).
        InvalidImageError: anything unreadable (messages meant for the uploader).
    """
    from lang_sam.validation import open_image

    try:
        return open_image(data, max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        w, h = exc.width, exc.height
        said = f"image is {w}x{h} = {w * h} pixels; " if w is not None and h is not None else ""
        raise ImageTooLargeError(
            f"{said}this server accepts at most {max_pixels} (width x height, --max-pixels)",
            width=w, height=h, limit=max_pixels,
        ) from None
    except InvalidImageError as exc:
        raise InvalidImageError(
            "the uploaded file is not a readable image (expected JPEG, PNG, WebP, TIFF, BMP...): "
            + scrub(str(exc))
        ) from None


def _check_mask_format(masks: str, allowed: tuple[str, ...]) -> None:
    if masks not in allowed:
        raise InvalidArgumentError(f"masks must be one of {allowed}, got {masks!r}")


@dataclass
class ModelService:
    """Builds a :class:`~lang_sam.LangSAM` on first use and serialises every call to it.

    ``sam_ckpt`` / ``gdino_ckpt`` are used for the configured types only. With
    ``allow_model_switch``, a call may name another registered type: it is loaded (through the
    registry: ``LANG_SAM_WEIGHTS_DIR``, caches, download) and replaces the current one; without,
    naming another type raises :class:`ModelSwitchError`. ``max_detections`` caps the detections
    kept per :meth:`predict` (the highest-scoring, chosen before SAM runs) and the prompts per
    :meth:`segment`.

    Raises:
        UnknownModelError: ``sam_type`` or ``gdino_type`` is not registered.
        DeviceError: ``device`` is not available here.
        InvalidArgumentError: ``max_detections`` is not an int >= 1; an unknown ``backend``, or
            ``backend="openvino"`` off the CPU.
        BackendUnavailableError: ``backend="openvino"`` without OpenVINO installed.
    """

    sam_type: str = DEFAULT_SAM
    gdino_type: str = DEFAULT_GDINO
    sam_ckpt: str | None = None
    gdino_ckpt: str | None = None
    device: str | None = None
    precision: str = "fp32"
    cache_size: int = 2
    max_detections: int = DEFAULT_MAX_DETECTIONS
    allow_model_switch: bool = False
    backend: str = "pytorch"
    _model: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        # Unknown types, unavailable devices and bad limits fail at start-up, not at the first request.
        self.sam_type = get_spec("sam", self.sam_type).name
        self.gdino_type = get_spec("gdino", self.gdino_type).name
        check_backend_device(self.backend, self.device)  # OpenVINO missing: say so before listening
        if isinstance(self.max_detections, bool) or not isinstance(self.max_detections, int) \
                or self.max_detections < 1:
            raise InvalidArgumentError(f"max_detections must be an int >= 1, got {self.max_detections!r}")
        self._default = (self.sam_type, self.gdino_type)

    def _ckpt(self, family: str, name: str) -> str | None:
        default = self._default[0] if family == "sam" else self._default[1]
        path = self.sam_ckpt if family == "sam" else self.gdino_ckpt
        return path if name == default else None

    def _requested(self, family: str, name: str | None) -> str:
        current = self.sam_type if family == "sam" else self.gdino_type
        if name is None or name == "":
            return current
        name = get_spec(family, name).name  # UnknownModelError lists the registered types
        if name != current and not self.allow_model_switch:
            label = "SAM" if family == "sam" else "GroundingDINO"
            raise ModelSwitchError(
                f"this server serves {label} {current!r} only: model switching is off (the operator "
                "can start the server with --allow-model-switch)"
            )
        return name

    def _load(self, models: list[tuple[str, str]], build: Callable[[], Any]) -> Any:
        """``build()``, with its failures as :class:`ModelLoadError` naming the model of
        ``models`` (``[(family, name), ...]``) that failed, when the error says which; the
        underlying error goes to the log only."""
        try:
            return build()
        except UnknownModelError:
            raise
        except Exception as exc:
            if isinstance(exc, MissingWeightsError):  # it lists every missing file
                named = [(m.family, m.name) for m in exc.missing]
            else:
                named = [(f, n) for f, n in models if f"{f} {n!r}" in str(exc)] or models
            what = " / ".join(f"{'SAM' if f == 'sam' else 'GroundingDINO'} {n!r}" for f, n in named)
            if isinstance(exc, (WeightsNotFoundError, DownloadError, ChecksumMismatchError)):
                logger.error("cannot load %s: %s", what, exc)
                verb = "are" if len(named) > 1 else "is"
                raise ModelLoadError(f"{what} {verb} not available on this server (the weights "
                                     "could not be found or fetched)", missing=True) from exc
            # a broken file, a wrong architecture, out of memory...
            logger.exception("cannot load %s", what)
            raise ModelLoadError(f"{what} could not be loaded on this server", missing=False) from exc

    def _ensure(self, sam_type: str | None, gdino_type: str | None, progress: Callable) -> Any:
        from lang_sam import LangSAM

        sam_type = self._requested("sam", sam_type)
        gdino_type = self._requested("gdino", gdino_type)
        if self._model is None:
            progress(0.1, "loading GroundingDINO and SAM")
            self._model = self._load([("sam", sam_type), ("gdino", gdino_type)], lambda: LangSAM(
                sam_type, self._ckpt("sam", sam_type), gdino_type=gdino_type,
                gdino_ckpt_path=self._ckpt("gdino", gdino_type), device=self.device,
                precision=self.precision, cache_size=self.cache_size, backend=self.backend,
            ))
        if self._model.sam_type != sam_type:
            progress(0.3, f"loading SAM {sam_type}")
            self._load([("sam", sam_type)],
                       lambda: self._model.build_sam(self._ckpt("sam", sam_type), sam_type=sam_type))
        if self._model.gdino_type != gdino_type:
            progress(0.3, f"loading GroundingDINO {gdino_type}")
            self._load([("gdino", gdino_type)], lambda: self._model.build_groundingdino(
                gdino_type=gdino_type, ckpt_path=self._ckpt("gdino", gdino_type)))
        self.sam_type, self.gdino_type = self._model.sam_type, self._model.gdino_type
        return self._model

    def load(self) -> None:
        """Load the configured models now (servers do this before accepting requests).

        Raises:
            ModelLoadError: a model's weights are missing (``missing``) or cannot be loaded.
        """
        with self._lock:
            self._ensure(None, None, lambda *a: None)

    def predict(
        self,
        image,
        text_prompt: str,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        *,
        sam_type: str | None = None,
        gdino_type: str | None = None,
        masks: str = "dense",
        progress: Callable[[float, str], None] = lambda *a: None,
    ) -> ServedPrediction:
        """``LangSAM.predict`` under the lock, keeping at most ``max_detections`` boxes.

        ``image``: anything :meth:`LangSAM.encode` takes (PIL, ``HxWx3`` uint8 array, path, or an
        :class:`~lang_sam.EncodedImage`). GroundingDINO runs first; when it finds more than
        ``max_detections`` boxes, the highest-scoring are kept (in their original order) before SAM
        runs (:func:`lang_sam.pipeline.run` with :func:`~lang_sam.pipeline.top_k` as its select
        step). SAM then runs on the kept boxes in the chunks the library decodes together, each
        chunk turned into ``masks`` ("dense", "rle" or "overlay", see
        :class:`~lang_sam.results.ServedMasks`) before the next, so the masks of kept boxes equal
        those of ``LangSAM.predict``.

        Raises:
            InvalidArgumentError: ``masks`` is not one of :data:`~lang_sam.results.MASK_KINDS`.
            ModelSwitchError: another model type named while model switching is off.
            UnknownModelError: ``sam_type`` / ``gdino_type`` is not registered.
            ModelLoadError: a model cannot be loaded.
            LangSAMError: what :func:`lang_sam.pipeline.run` raises for the image, prompt or
                thresholds (:class:`~lang_sam.errors.InvalidImageError`,
                :class:`~lang_sam.errors.InvalidPromptError`, :class:`~lang_sam.errors.InvalidThresholdError`...).
        """
        from lang_sam import pipeline

        _check_mask_format(masks, MASK_KINDS)
        sink = _SINKS[masks]
        found = [0]

        def count(det):
            found[0] = len(det)
            return det

        def collect(n: int, image_size: tuple[int, int]) -> pipeline.MaskSink:
            progress(0.7, "segmenting")
            return sink(n, image_size)

        with self._lock:
            model = self._ensure(sam_type, gdino_type, progress)
            progress(0.5, "detecting")
            out = pipeline.run(model.engines, image, text_prompt, box_threshold, text_threshold,
                               select=[count, pipeline.top_k(self.max_detections)], collect=collect)
            det = out.detections
            return ServedPrediction(ServedMasks(masks, out.masks), det.boxes, det.phrases, det.scores, found[0],
                                    det.image_size, model.sam_type, model.gdino_type)

    def segment(
        self,
        image,
        *,
        boxes=None,
        points=None,
        point_labels=None,
        mask_input=None,
        multimask_output: bool = False,
        sam_type: str | None = None,
        masks: str = "dense",
    ) -> ServedSegmentation:
        """``LangSAM.segment`` (SAM's box / point / mask prompts, see there) under the lock.

        The image's SAM encoding is looked up by content, so repeated calls on one image (a web
        page's clicks) encode it once. Prompts are checked by
        :func:`lang_sam.validation.check_sam_prompts` (:class:`~lang_sam.errors.InvalidPromptError`);
        more than ``max_detections`` of them raise :class:`TooManyPromptsError`. They are decoded in
        the chunks the library uses, each chunk turned into ``masks`` ("dense" or "rle") before the
        next, so the result equals one ``LangSAM.segment`` call.

        Raises:
            InvalidArgumentError: ``masks`` is not "dense" or "rle".
            InvalidPromptError: prompts of the wrong shape or outside the image.
            TooManyPromptsError: more than ``max_detections`` prompts.
            ModelSwitchError, UnknownModelError, ModelLoadError: as :meth:`predict`.
            InvalidImageError: an image that cannot be read.
        """
        from lang_sam.validation import check_sam_prompts

        _check_mask_format(masks, ("dense", "rle"))
        with self._lock:
            model = self._ensure(sam_type, None, lambda *a: None)
            enc = model.encode(image)
            H, W = enc.pixels.shape[:2]
            prompts = check_sam_prompts(boxes, points, point_labels, mask_input, image_size=(H, W),
                                        mask_size=model.segmenter.mask_input_size)
            n = next(len(v) for v in prompts.values() if v is not None)
            if n > self.max_detections:
                raise TooManyPromptsError(
                    f"got {n} prompts; this server answers at most {self.max_detections} per request"
                )
            c = 3 if multimask_output else 1
            sink = _SINKS[masks](n, (c, H, W))
            scores, low_res = [], []
            step = model.segmenter.boxes_per_chunk(H, W, c)
            for start in range(0, n, step):
                part = {k: (v[start:start + step] if v is not None else None) for k, v in prompts.items()}
                out = model.segment(enc, **part, multimask_output=bool(multimask_output))
                sink.add(out.masks)
                scores.append(out.iou_scores)
                if masks == "dense":
                    low_res.append(out.low_res_logits)
            return ServedSegmentation(ServedMasks(masks, sink.result()), torch.cat(scores),
                                      torch.cat(low_res) if masks == "dense" else None, (H, W),
                                      model.sam_type)

    def track(
        self,
        video,
        text_prompt: str,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        *,
        detect_every: int = DETECT_EVERY,
        max_frames: int | None = DEFAULT_MAX_FRAMES,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        sam_type: str | None = None,
        masks: bool = True,
        overlay=None,
        progress: Callable[[float, str], None] = lambda *a: None,
    ) -> ServedTracks:
        """:meth:`LangSAM.predict_video` of ``video`` (a video file's path) under the lock, within
        limits: over ``max_pixels`` per frame or ``max_frames`` frames (each None: no limit) raises
        :class:`~lang_sam.errors.VideoTooLargeError`, from the container's header before any frame
        is decoded, and again while decoding (a header may understate). With ``max_pixels`` FFmpeg
        probes and decodes under that limit (:func:`lang_sam.video_io.open_video`): a frame over it
        is refused before it is allocated, and a video whose frame size is unknown is refused.
        The file is opened, probed and decoded under the lock, so one request at a time decodes.
        Frames are decoded one at a time; per frame only the tracks' numbers and (``masks``) their
        RLE are kept. ``overlay``: a path to write the tracked overlay mp4 to
        (:class:`lang_sam.labeling.video_formats.OverlayWriter`). ``progress(fraction, text)``
        hears of each frame when the frame count is known. A video that ends clearly short of the
        count its header announces is tracked as far as it goes, and ``warnings`` says so.

        Raises:
            VideoTooLargeError: over ``max_pixels`` per frame or ``max_frames`` frames.
            InvalidVideoError: a file that is not a readable video, or one without a frame.
            ModelSwitchError, UnknownModelError, ModelLoadError: as :meth:`predict`.
            LangSAMError: what :meth:`LangSAM.predict_video` raises for the prompt or thresholds.
        """
        from pathlib import Path

        from lang_sam.errors import InvalidVideoError
        from lang_sam.labeling import video_formats as vf
        from lang_sam.video import FrameTap
        from lang_sam.video_io import open_video

        name = str(video)

        def too_large(what: str, limit: int, got: str, index=None) -> VideoTooLargeError:
            flag = "--max-frames" if what == "frames" else "--max-pixels"
            return VideoTooLargeError(
                f"the video has {got}; this server accepts at most {limit:,} {what} "
                f"({'per frame, width x height, ' if what == 'pixels' else ''}{flag})",
                source=name, limit=limit, what=what, frame_index=index, expected=f"<= {limit}", got=got)

        def relabelled(exc: VideoTooLargeError) -> VideoTooLargeError:
            """The reader's refusal of a frame's size, in the server's words (its flag)."""
            return too_large("pixels", exc.limit, exc.got, exc.frame_index)

        def check_pixels(size, index=None):
            if max_pixels is not None and size is not None and size[0] * size[1] > max_pixels:
                raise too_large("pixels", max_pixels, f"{size[1]}x{size[0]} = {size[0] * size[1]:,} "
                                                      "pixels per frame", index)

        def frames():
            it = iter(source)
            i = 0
            while True:
                try:
                    frame = next(it)
                except StopIteration:
                    return
                except VideoTooLargeError as exc:
                    raise relabelled(exc) from None
                if i == 0:
                    check_pixels(frame.shape[:2], 0)
                if max_frames is not None and i >= max_frames:
                    raise too_large("frames", max_frames, f"more than {max_frames:,} frames", i)
                yield frame
                i += 1

        with self._lock:
            try:
                source = open_video(video, max_pixels=max_pixels)
            except VideoTooLargeError as exc:
                raise relabelled(exc) from None
            name = source.source
            check_pixels(source.image_size)
            if max_frames is not None and source.frame_count is not None and source.frame_count > max_frames:
                raise too_large("frames", max_frames, f"{source.frame_count:,} frames")
            total = source.frame_count
            model = self._ensure(sam_type, None, progress)
            tap = FrameTap(frames())
            rows = vf.TrackRows(masks=masks)
            sinks: list[vf.VideoSink] = [rows]
            if overlay is not None:
                sinks.append(vf.OverlayWriter(Path(overlay), Path(overlay).parent, source.fps or vf.DEFAULT_FPS))

            def report(f) -> None:
                if total:
                    progress(min(1.0, (f.frame_index + 1) / total), f"frame {f.frame_index + 1}/{total}")

            def no_frame() -> InvalidVideoError:
                return InvalidVideoError(f"{name}: expected at least one frame, got none", source=name,
                                         expected="one frame or more", got="0 frames")

            vf.feed_sinks(model.predict_video(tap, text_prompt, detect_every=detect_every,
                                              box_threshold=box_threshold, text_threshold=text_threshold),
                          tap, sinks, no_frame=no_frame, on_frame=report)
            return ServedTracks(rows.rows, rows.tracks, rows.mot, overlay,
                                rows.image_size, source.fps, model.sam_type, model.gdino_type, source.frame_count,
                                [source.warning] if source.warning else [])

    def info(self) -> dict:
        """What ``/health`` reports: the served types, whether they are loaded, device, precision
        and the per-request limits of the service."""
        model = self._model
        return {
            "sam_type": self.sam_type,
            "gdino_type": self.gdino_type,
            "loaded": model is not None,
            "device": str(model.device) if model is not None else self.device,
            "precision": self.precision,
            "backend": self.backend,
            "max_detections": self.max_detections,
            "model_switch": self.allow_model_switch,
        }


def check_port(host: str, port: int) -> None:
    """Raise :class:`~lang_sam.errors.PortUnavailableError` if a server could not listen on
    ``host:port`` now (the port is taken, or ``host`` is not this machine's): a test bind, as the
    servers bind (``SO_REUSEADDR``), closed at once, so that the models are not loaded for
    nothing. Port 0 (any free port) is not checked.

    Raises:
        PortUnavailableError: the port is taken, or ``host`` cannot be listened on.
    """
    import errno
    import socket

    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn picks it
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise PortUnavailableError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            why = "the port is in use by another program" if taken else (exc.strerror or str(exc))
            raise PortUnavailableError(
                f"cannot listen on {host}:{port}: {why}; choose another --port"
            ) from None
