"""Pieces of the one-line reprs of results (:class:`~lang_sam.Prediction`,
:class:`~lang_sam.MaskPrediction`, :class:`~lang_sam.TiledPrediction`): a notebook shows shapes
and a few values, never whole tensors.

Imports nothing of lang_sam (and nothing heavy), so every layer may use it.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = [
    "SHOWN", "short_text", "image_size_text", "shape_text", "numbers_text", "detections_text", "count_text",
    "value_text",
]

#: How many detections (or prompts) a repr names before "... (+N more)".
SHOWN = 5


def short_text(text: str, limit: int = 24) -> str:
    """``text`` cut to at most ``limit`` characters; an ellipsis marks a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def image_size_text(masks: Any) -> str:
    """``"WxH"`` (as PIL gives an image size) of ``(..., H, W)`` masks; ``"?"`` for fewer dims."""
    shape = tuple(getattr(masks, "shape", ()))
    return f"{shape[-1]}x{shape[-2]}" if len(shape) >= 2 else "?"


def shape_text(t: Any) -> str:
    """``"(N, H, W) bool"``: the shape and dtype of a tensor or array, not its values."""
    shape = tuple(int(d) for d in getattr(t, "shape", ()))
    return f"{shape} {str(getattr(t, 'dtype', '?')).removeprefix('torch.')}"


def value_text(value: Any) -> str:
    """What ``value`` is, never its values, for an error message: ``"a (N, 4) float32 tensor"``,
    ``"a (H, W) bool numpy array"``, ``"a RGB PIL image of 640x480"``, else ``"a <type name>"``."""
    module, name = type(value).__module__.split(".")[0], type(value).__name__
    if module == "torch" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {shape_text(value)} tensor"
    if module == "numpy" and name == "ndarray":
        return f"a {shape_text(value)} numpy array"
    if module == "PIL" and hasattr(value, "mode"):
        return f"a {value.mode} PIL image of {value.width}x{value.height}"
    return f"a {name}"


def numbers_text(values: Sequence[float], digits: int = 2) -> str:
    """``"0.91, 0.85, ... (+7 more)"``: the first :data:`SHOWN` of ``values``, rounded."""
    values = list(values)
    shown = ", ".join(f"{v:.{digits}f}" for v in values[:SHOWN])
    return shown + (f", ... (+{len(values) - SHOWN} more)" if len(values) > SHOWN else "")


def detections_text(phrases: Sequence[str], scores: Any) -> str:
    """``"'car' 0.91, 'wheel' 0.85, ... (+7 more)"``: the first :data:`SHOWN` phrases (cut by
    :func:`short_text`) with their scores; only those scores are read (``scores`` ``(N,)``)."""
    n = len(phrases)
    shown = ", ".join(f"{short_text(p)!r} {s:.2f}" for p, s in zip(phrases[:SHOWN], scores[:SHOWN].tolist()))
    return shown + (f", ... (+{n - SHOWN} more)" if n > SHOWN else "")


def count_text(n: int, noun: str) -> str:
    """``"1 detection"``, ``"3 detections"``."""
    return f"{n} {noun}{'s' if n != 1 else ''}"
