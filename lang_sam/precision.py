"""Opt-in reduced precision, scoped to the library's own calls (never a global autocast).

bfloat16 pays off only where the hardware computes it: CUDA GPUs of compute capability 8.0 and up,
and x86 CPUs with AVX-512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and
later). Elsewhere (AVX2-only CPUs, for example) oneDNN emulates it and a predict is several times
slower than float32: ``precision="bf16"`` there warns once (:class:`SlowPrecisionWarning`), and
``precision="auto"`` picks float32.

``precision="int8"`` is the OpenVINO backend's second level (``backend="openvino"``: NNCF's INT8,
computed natively by AVX2 / AVX-512 VNNI CPUs); it is approximate, and valid with that backend only.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import nullcontext
from typing import ContextManager

import torch

from lang_sam.errors import InvalidPrecisionError, SlowPrecisionWarning

logger = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "OPENVINO_PRECISIONS", "check_precision", "autocast", "native_bf16"]

#: Accepted names -> canonical name.
PRECISIONS = {
    "fp32": "fp32", "float32": "fp32", None: "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16",
    "auto": "auto",
    "int8": "int8",
}
#: What ``backend="openvino"`` runs at (its own float32, or NNCF's INT8).
OPENVINO_PRECISIONS = ("fp32", "int8")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_warned: set[str] = set()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (not emulated, so faster than float32).

    CUDA: :func:`torch.cuda.is_bf16_supported`. CPU: oneDNN's own bf16 probe, and where torch
    reports the CPU's features, AVX-512-BF16 or AMX-BF16 on x86 (AVX-512 without them converts
    each value and gains nothing), BF16 instructions on Arm. Other devices: False.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None and not probe():
        return False
    caps_of = getattr(torch.cpu, "get_capabilities", None)
    if caps_of is None:  # an older torch: its oneDNN probe is all there is
        return probe is not None
    caps = caps_of()
    if caps.get("architecture") == "x86_64":
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return bool(caps.get("bf16") or caps.get("sve_bf16"))


def check_precision(precision, device: torch.device, backend: str = "pytorch") -> str:
    """The precision to run at on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``; with
    ``backend="openvino"``, ``"fp32"`` or ``"int8"``.

    ``"auto"`` is bf16 where ``device`` computes it natively (:func:`native_bf16`), else fp16 on
    CUDA and fp32 elsewhere (fp32 with OpenVINO). ``"fp16"`` needs CUDA (CPU half-precision matmuls
    are slow). ``"bf16"`` on a CPU without native bf16 warns once per process
    (:class:`SlowPrecisionWarning`). ``"int8"`` needs ``backend="openvino"``.

    Raises:
        InvalidPrecisionError: an unknown name, ``"int8"`` without OpenVINO, ``"bf16"`` /
            ``"fp16"`` with it, ``"fp16"`` off CUDA.
    """
    if not isinstance(precision, (str, type(None))) or precision not in PRECISIONS:
        raise InvalidPrecisionError(
            f"precision must be one of 'fp32', 'bf16', 'fp16', 'auto' ('int8' with backend='openvino'), "
            f"got {precision!r}")
    name = PRECISIONS[precision]
    device = torch.device(device)
    if backend == "openvino":
        name = "fp32" if name == "auto" else name
        if name not in OPENVINO_PRECISIONS:
            raise InvalidPrecisionError(
                f"backend='openvino' runs at one of {', '.join(map(repr, OPENVINO_PRECISIONS))}; got {name!r}")
        return name
    if name == "int8":
        raise InvalidPrecisionError(
            f"precision='int8' needs backend='openvino' (OpenVINO's INT8); got backend={backend!r}: use "
            "precision='fp32', or backend='openvino'")
    if name == "auto":
        chosen = "bf16" if native_bf16(device) else "fp16" if device.type == "cuda" else "fp32"
        logger.info("precision='auto' on %s: %s", device, chosen)
        return chosen
    if name == "fp16" and device.type != "cuda":
        raise InvalidPrecisionError(
            f"precision='fp16' needs a CUDA device, got {device.type!r}; use 'bf16' or 'auto'")
    if name == "bf16" and device.type == "cpu" and not native_bf16(device) and "cpu" not in _warned:
        _warned.add("cpu")
        warnings.warn(
            "precision='bf16' on a CPU without native bfloat16 (no AVX-512-BF16 or AMX): oneDNN "
            "emulates it, and a predict is several times slower than float32 (4.5x to 6.8x measured "
            "with vit_b + Swin-T on AVX2 kernels; benchmarks/README.md). Use precision='fp32', or "
            "'auto' to get bf16 only where it is native.",
            SlowPrecisionWarning, stacklevel=2)
    return name


def autocast(device: torch.device, precision: str) -> ContextManager:
    """``torch.autocast`` for ``precision`` on ``device``'s type, or a no-op for fp32 (and int8,
    whose parts OpenVINO runs; what stays on PyTorch runs at float32)."""
    if precision in ("fp32", "int8"):
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
