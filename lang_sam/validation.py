"""Checks at the library's boundary: images, prompts and thresholds.

Each check returns the normalised value or raises a typed error naming what was expected and what
arrived.
"""

from __future__ import annotations

import io
import math
import os
from numbers import Real
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lang_sam.errors import (
    DeviceError,
    ImageNotFoundError,
    ImageTooLargeError,
    ImageTooThinError,
    InvalidImageError,
    InvalidPromptError,
    InvalidThresholdError,
)

__all__ = [
    "ImageInput", "as_numpy", "check_threshold", "check_prompt", "check_sam_prompts", "open_image",
    "to_rgb_pil", "to_rgb_array", "available_devices", "default_device", "check_device",
    "check_resized", "BOX_THRESHOLD", "TEXT_THRESHOLD",
]

#: GroundingDINO's default box threshold: a box is kept when its best token scores over this.
BOX_THRESHOLD = 0.3
#: GroundingDINO's default text threshold: a token names the box's phrase when it scores over this.
TEXT_THRESHOLD = 0.25

#: What the library accepts as an image.
ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike]


def as_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device, detached) or array-like as a numpy array (no copy when possible)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch.Tensor, without importing torch here
        return x.detach().cpu().numpy()
    return np.asarray(x)


def available_devices() -> list[str]:
    """The devices this machine can run on: ``"cpu"``, then ``"cuda"`` and ``"cuda:0"`` ...
    ``"cuda:N-1"`` when PyTorch sees N GPUs, then ``"mps"`` (Apple) when available."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def default_device():
    """The ``torch.device`` used when none is given: CUDA if available, then Apple MPS, then CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: Any):
    """A ``torch.device`` that exists here, from a name (``"cuda:1"``), a ``torch.device``, or None
    (:func:`default_device`).

    Raises:
        DeviceError: ``device`` is not a str, ``torch.device`` or None; a name PyTorch does not
            know (``"gpu"``); a device type that is not available (``"cuda"`` without a GPU) or
            not supported; or a GPU index past the last one. The message lists
            :func:`available_devices`.
    """
    import torch

    if device is None:
        return default_device()
    available = available_devices()
    listing = f"available here: {', '.join(repr(d) for d in available)}"
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise DeviceError(
                f"device {device!r} is not a device name (expected 'cpu', 'cuda', 'cuda:<index>' or "
                f"'mps'); {listing}"
            ) from None
    else:
        raise DeviceError(
            f"device must be a str such as 'cuda:0', a torch.device or None, got "
            f"{type(device).__name__}; {listing}"
        )
    name = str(dev)
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "PyTorch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise DeviceError(f"device {name!r} is not available ({why}); {listing}")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {name!r} does not exist: PyTorch sees {count} GPU(s), cuda:0 to "
                f"cuda:{count - 1}; {listing}"
            )
        return dev
    if dev.type == "mps":
        if name not in available:
            raise DeviceError(f"device {name!r} is not available (no Apple MPS here); {listing}")
        return dev
    raise DeviceError(f"device {name!r} is not supported: lang-sam runs on cpu, cuda or mps; {listing}")


def check_threshold(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1].

    Raises:
        InvalidThresholdError: ``value`` is not a real number (a bool is not), is NaN, or is
            outside [0, 1]; the message names it ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise InvalidThresholdError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise InvalidThresholdError(f"{name} must be in [0, 1], got {value}")
    return value


def check_prompt(text_prompt: Any) -> str:
    """``text_prompt`` unchanged, once checked to be a non-empty string (after stripping white
    space and dots).

    Raises:
        InvalidPromptError: ``text_prompt`` is not a str, or holds nothing but white space and dots.
    """
    if not isinstance(text_prompt, str):
        raise InvalidPromptError(
            f"text_prompt must be a str such as 'car. wheel', got {type(text_prompt).__name__}"
        )
    if not text_prompt.strip().strip(".").strip():
        raise InvalidPromptError(f"text_prompt is empty ({text_prompt!r}); name what to find, e.g. 'car'")
    return text_prompt


def _float_array(name: str, value: Any, shapes: str, ndims: tuple[int, ...], last: int | None) -> np.ndarray:
    try:
        arr = np.asarray(as_numpy(value), dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an int over 1.8e308
        raise InvalidPromptError(f"{name} must be numbers shaped {shapes}, got {value!r:.80}: {exc}") from None
    if arr.ndim not in ndims or (last is not None and arr.shape[-1] != last) or 0 in arr.shape[-2:]:
        raise InvalidPromptError(f"{name} must be shaped {shapes}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidPromptError(f"{name} must be finite numbers, got {arr.tolist()!r:.80}")
    with np.errstate(over="ignore"):
        in_float32 = arr.astype(np.float32)
    if not np.isfinite(in_float32).all():  # SAM computes in float32: 1e39 would become inf there
        raise InvalidPromptError(f"{name} must be finite float32 numbers (|v| <= 3.4e38), got "
                                 f"{arr[~np.isfinite(in_float32)][0]:g}")
    return arr


def check_sam_prompts(
    boxes: Any = None,
    points: Any = None,
    point_labels: Any = None,
    mask_input: Any = None,
    *,
    image_size: tuple[int, int],
    mask_size: int = 256,
) -> dict:
    """Check SAM prompts in pixels of an image of ``image_size`` ``(H, W)`` and batch them.

    Accepts ``boxes`` ``(4,)``/``(B, 4)`` xyxy with ``x0 <= x1``, ``y0 <= y1``, each coordinate
    within the image extended by its size on every side (``-W <= x <= 2W``, ``-H <= y <= 2H``); ``points``
    ``(K, 2)``/``(B, K, 2)`` xy inside the image; ``point_labels`` ``(K,)``/``(B, K)`` of 0/1
    (default all 1); ``mask_input`` ``(256, 256)``/``(1, 256, 256)``/``(B, 1, 256, 256)`` (the
    segmenter's ``mask_input_size``, ``mask_size``: 256 for every released SAM). Returns
    numpy arrays ``boxes (B, 4)`` and ``points (B, K, 2)`` float64, ``point_labels (B, K)`` int32,
    ``mask_input (B, 1, 256, 256)`` float32 (absent ones None), a ``(K, 2)`` point set or a single
    mask repeated for each of ``B`` boxes. Every number must be finite as float32 (the dtype SAM
    computes in).

    Raises:
        InvalidPromptError: no prompt at all; a prompt that is not finite float32 numbers of the
            shapes above; boxes not xyxy or far outside the image; points outside the image;
            point labels not 0/1, not one per point, or without points; batch sizes that differ
            (other than 1); the message names what was expected.
    """
    H, W = image_size
    if boxes is None and points is None and mask_input is None:
        raise InvalidPromptError("give SAM at least one prompt: boxes, points or mask_input")
    batch = None
    if boxes is not None:
        b = _float_array("boxes", boxes, "(4,) or (B, 4) xyxy pixels", (1, 2), 4).reshape(-1, 4)
        bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bad.any():
            raise InvalidPromptError(
                f"boxes must be xyxy with x0 <= x1 and y0 <= y1, got {b[bad][0].tolist()}"
            )
        # Far outside the image, SAM's float32 prompt encoding overflows (1e38 gives NaN scores).
        far = ((b[:, [0, 2]] < -W) | (b[:, [0, 2]] > 2 * W)).any(1) \
            | ((b[:, [1, 3]] < -H) | (b[:, [1, 3]] > 2 * H)).any(1)
        if far.any():
            raise InvalidPromptError(
                f"boxes must lie within the image extended by its size on every side "
                f"({-W} <= x <= {2 * W}, {-H} <= y <= {2 * H}), got {b[far][0].tolist()}"
            )
        batch = len(b)
        boxes = b
    if points is not None:
        pts = _float_array("points", points, "(K, 2) or (B, K, 2) xy pixels", (2, 3), 2)
        outside = (pts[..., 0] < 0) | (pts[..., 0] > W) | (pts[..., 1] < 0) | (pts[..., 1] > H)
        if outside.any():
            raise InvalidPromptError(
                f"points must lie in the image (0 <= x <= {W}, 0 <= y <= {H}), got "
                f"{pts[outside][0].tolist()}"
            )
        if point_labels is None:
            labels = np.ones(pts.shape[:-1], dtype=np.float64)
        else:
            labels = _float_array("point_labels", point_labels, "(K,) or (B, K) of 0/1", (1, 2), None)
            if labels.shape != pts.shape[:-1]:
                raise InvalidPromptError(
                    f"point_labels must be shaped {pts.shape[:-1]} (one per point), got {labels.shape}"
                )
            if not np.isin(labels, (0, 1)).all():
                raise InvalidPromptError(
                    f"point_labels must be 1 (foreground) or 0 (background), got {sorted(set(labels.ravel().tolist()))}"
                )
        if pts.ndim == 2:
            pts, labels = pts[None], labels[None]
        if batch is not None and len(pts) != batch:
            if len(pts) != 1:
                raise InvalidPromptError(
                    f"got {batch} boxes but {len(pts)} point sets; give one set per box or one for all"
                )
            pts, labels = np.repeat(pts, batch, 0), np.repeat(labels, batch, 0)
        batch = len(pts)
        points, point_labels = pts, labels.astype(np.int32)
    elif point_labels is not None:
        raise InvalidPromptError("point_labels were given without points")
    if mask_input is not None:
        s = mask_size
        shapes = f"({s}, {s}), (1, {s}, {s}) or (B, 1, {s}, {s})"
        m = _float_array("mask_input", mask_input, shapes, (2, 3, 4), None)
        if m.shape[-2:] != (s, s) or (m.ndim >= 3 and m.shape[-3] != 1):
            raise InvalidPromptError(
                f"mask_input must be SAM's low-resolution logits shaped {shapes}, got shape {m.shape}"
            )
        m = m.reshape(-1, 1, s, s)
        if batch is not None and len(m) != batch:
            if len(m) != 1:
                raise InvalidPromptError(f"got {batch} prompts but {len(m)} masks in mask_input")
            m = np.repeat(m, batch, 0)
        mask_input = m.astype(np.float32)
    return {"boxes": boxes, "points": points, "point_labels": point_labels, "mask_input": mask_input}


def check_resized(height: int, width: int, resized: tuple[int, int], *, engine: str, resize: str,
                  max_aspect: float, inclusive: bool, what: str | None = None) -> None:
    """Raise :class:`ImageTooThinError` when an engine's resize of a ``height x width`` image to its
    input gives ``resized`` ``(h, w)`` with a side under 1 pixel (a 100000x1 image). ``resize`` says
    what the engine's resize is (for the message); the engine takes images whose long side is at
    most (``inclusive``) or less than ``max_aspect`` times the short one. ``what``: the message's
    subject (default ``"image WxH"``; a tile says which image it is of).

    Raises:
        ImageTooThinError: a side of ``resized`` is under 1 pixel (with the image's size, the
            engine and its aspect limit as attributes).
    """
    if min(resized) >= 1:
        return
    long, short = max(height, width), min(height, width)
    bound = "at most" if inclusive else "less than"
    raise ImageTooThinError(
        f"{what or f'image {width}x{height}'} is too thin for {engine}: its resize ({resize}) would make it "
        f"{resized[1]}x{resized[0]} pixels; expected each side >= 1 pixel after that resize, i.e. "
        f"the long side {bound} {max_aspect:g} times the short one (this image's is "
        f"{long / short:g} times)",
        width=width, height=height, engine=engine, resized=(int(resized[0]), int(resized[1])),
        max_aspect=max_aspect)


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind in "iu":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0:
            raise InvalidImageError(f"{what}: integer pixels must be >= 0, got minimum {lo}")
        if hi > 65535:
            raise InvalidImageError(f"{what}: integer pixels must fit 16 bits, got maximum {hi}")
        if arr.dtype == np.uint16 or hi > 255:  # 16-bit -> 8-bit
            return np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
            raise InvalidImageError(
                f"{what}: float pixels must be finite and in [0, 1], got range "
                f"[{arr.min()}, {arr.max()}]; pass uint8 in [0, 255] instead"
            )
        return np.round(arr * 255.0).astype(np.uint8)
    raise InvalidImageError(f"{what}: expected uint8 pixels, got dtype {arr.dtype}")


def to_rgb_array(image: np.ndarray, what: str = "image") -> np.ndarray:
    """An ``HxW``, ``HxWx1``, ``HxWx3`` or ``HxWx4`` array -> contiguous ``HxWx3`` uint8 RGB.

    16-bit pixels are scaled to 8 bits; alpha is dropped (as PIL's ``convert("RGB")`` does).

    Raises:
        InvalidImageError: another shape, a zero-size image, or pixels that are not uint8, bool,
            integers in [0, 65535] or finite floats in [0, 1]; the message starts with ``what``.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        pass
    elif arr.ndim == 2:
        arr = arr[:, :, None]
    else:
        raise InvalidImageError(
            f"{what}: expected an HxWx3 (or HxW, HxWx1, HxWx4) array, got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidImageError(f"{what}: image has zero size {arr.shape[:2]}")
    arr = _to_uint8(arr, what)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def to_rgb_pil(image: ImageInput, what: str = "image") -> Image.Image:
    """Any accepted image (see :data:`ImageInput`) -> an RGB PIL image.

    PIL images of any mode are converted like ``Image.convert("RGB")``, except 16/32-bit and float
    modes, which are scaled to 8 bits rather than clipped. Paths are read with :func:`open_image`.

    Raises:
        InvalidImageError: ``image`` is none of the accepted types, has zero size, is an array
            :func:`to_rgb_array` refuses, or is a path to a file that does not decode.
        ImageNotFoundError: ``image`` is a path that is not a file.
        ImageTooLargeError: ``image`` is a path to an image over the pixel limit (:func:`open_image`).
        InvalidSettingError: ``image`` is a path and ``LANG_SAM_MAX_IMAGE_PIXELS`` is invalid.
    """
    if isinstance(image, (str, os.PathLike)):
        return open_image(image)
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise InvalidImageError(f"{what}: image has zero size {image.size}")
        if image.mode == "RGB":
            return image
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            return Image.fromarray(to_rgb_array(np.asarray(image), what))
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(to_rgb_array(image, what))
    raise InvalidImageError(
        f"{what}: expected a PIL image, an HxWx3 uint8 numpy array or a path, "
        f"got {type(image).__name__}"
    )


_DEFAULT = object()


def _open_header(fp) -> Image.Image:
    """``PIL.Image.open`` without Pillow's decompression-bomb check (the caller applies its own
    limit to the size before decoding): Pillow's format plugins, tried as ``Image.open`` tries
    them (the common ones, then all), read the header only. ``fp``: a path or a binary file."""
    import struct

    owned = isinstance(fp, (str, os.PathLike))
    f = open(fp, "rb") if owned else fp
    try:
        try:
            f.seek(0)
        except (AttributeError, io.UnsupportedOperation):
            f = io.BytesIO(f.read())
        prefix = f.read(16)
        filename = os.fspath(fp) if owned else ""
        for loader in (Image.preinit, Image.init):
            loader()
            for fmt in list(Image.ID):
                factory, accept = Image.OPEN[fmt]
                try:
                    result = not accept or accept(prefix)
                    if not result or isinstance(result, str):
                        continue
                    f.seek(0)
                    img = factory(f, filename)
                except (SyntaxError, IndexError, TypeError, struct.error):
                    continue
                if owned:
                    img._exclusive_fp = True  # closing the image closes the file we opened
                return img
        raise UnidentifiedImageError("cannot identify image file")
    except BaseException:
        if owned:
            f.close()
        raise


def open_image(source: str | os.PathLike | bytes | BinaryIO, *, max_pixels: Any = _DEFAULT) -> Image.Image:
    """Read an image (a path, the file's bytes, or a binary file object) as RGB, applying its EXIF
    orientation.

    ``max_pixels`` (width x height) is checked from the file's header, before anything is decoded:
    a larger image raises :class:`ImageTooLargeError` (an :class:`InvalidImageError`). The default
    is :func:`lang_sam.settings.max_image_pixels` (``LANG_SAM_MAX_IMAGE_PIXELS``, 256 megapixels
    unless set); ``None`` means no limit. This limit replaces Pillow's own guard for the header
    (``PIL.Image.MAX_IMAGE_PIXELS`` is never changed: it is the whole process's).

    Raises:
        ImageNotFoundError: ``source`` is a path that is not a file.
        ImageTooLargeError: the header gives more than ``max_pixels`` pixels (nothing is decoded).
        InvalidImageError: empty bytes, a ``source`` of another type, or data that does not decode
            as an image.
        InvalidSettingError: ``max_pixels`` is left to ``LANG_SAM_MAX_IMAGE_PIXELS``, which is set
            to something other than a whole number >= 0 (or ``none`` / ``off``).
    """
    from lang_sam.settings import ENV_MAX_PIXELS, max_image_pixels

    limit = max_image_pixels() if max_pixels is _DEFAULT else max_pixels
    fp: Path | BinaryIO
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {str(path)!r}")
        name, fp = repr(str(path)), path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise InvalidImageError("image data is empty (0 bytes)")
        name, fp = "image data", io.BytesIO(source)
    elif hasattr(source, "read"):
        name, fp = "image file", source
    else:
        raise InvalidImageError(
            f"expected an image path, bytes or a binary file object, got {type(source).__name__}"
        )
    try:
        img = _open_header(fp)
        with img:
            w, h = img.size  # from the header: nothing decoded yet
            if limit is not None and w * h > limit:
                raise ImageTooLargeError(
                    f"image {name} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                    f"(set {ENV_MAX_PIXELS} to allow larger images, 0 for no limit)",
                    width=w, height=h, limit=limit,
                )
            img.load()
            img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, InvalidImageError):
            raise
        raise InvalidImageError(f"cannot read image {name}: {exc}") from exc
    return to_rgb_pil(img, name)
