"""Checks at the library's boundary: images, prompts and thresholds.

Each check returns the normalised value or raises a typed error naming what was expected and what
arrived.
"""

from __future__ import annotations

import math
import os
from numbers import Real
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lang_sam.errors import (
    ImageNotFoundError,
    InvalidImageError,
    InvalidPromptError,
    InvalidThresholdError,
)

__all__ = ["ImageInput", "check_threshold", "check_prompt", "open_image", "to_rgb_pil", "to_rgb_array"]

#: What the library accepts as an image.
ImageInput = Union[Image.Image, np.ndarray, str, os.PathLike]


def check_threshold(name: str, value: Any) -> float:
    """A float in [0, 1]; anything else raises :class:`InvalidThresholdError`."""
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        raise InvalidThresholdError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise InvalidThresholdError(f"{name} must be in [0, 1], got {value}")
    return value


def check_prompt(text_prompt: Any) -> str:
    """A non-empty string (after stripping white space and dots)."""
    if not isinstance(text_prompt, str):
        raise InvalidPromptError(
            f"text_prompt must be a str such as 'car. wheel', got {type(text_prompt).__name__}"
        )
    if not text_prompt.strip().strip(".").strip():
        raise InvalidPromptError(f"text_prompt is empty ({text_prompt!r}); name what to find, e.g. 'car'")
    return text_prompt


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


def open_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as RGB, applying its EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"cannot read image {str(path)!r}: {exc}") from exc
    return to_rgb_pil(img, str(path))
