"""Opt-in reduced precision, scoped to the library's own calls (never a global autocast)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch

__all__ = ["PRECISIONS", "check_precision", "autocast"]

#: Accepted names -> canonical name.
PRECISIONS = {
    "fp32": "fp32", "float32": "fp32", None: "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16",
}
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision, device: torch.device) -> str:
    """Canonical precision name; ``fp16`` needs CUDA (CPU half-precision matmuls are slow)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of 'fp32', 'bf16', 'fp16', got {precision!r}")
    name = PRECISIONS[precision]
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA device, got {device.type!r}; use 'bf16'")
    return name


def autocast(device: torch.device, precision: str) -> ContextManager:
    """``torch.autocast`` for ``precision`` on ``device``'s type, or a no-op for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
