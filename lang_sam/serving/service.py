"""A shared, locked model holder for the web demo and the HTTP server.

SAM's predictor keeps per-image state, so one :class:`LangSAM` must not serve two requests at once:
:class:`ModelService` runs every call under one lock and switches the SAM / GroundingDINO type on
request (the original web demo's dropdown), loading lazily.
"""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from lang_sam.hub import DEFAULT_GDINO, DEFAULT_SAM, get_spec, model_names
from lang_sam.validation import check_device

logger = logging.getLogger(__name__)

__all__ = ["ModelService", "add_model_arguments", "model_kwargs", "service_from_args"]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model flags shared by ``lang-sam predict``, ``serve`` and ``app``. The type choices are
    read from the registry now (types registered before the parser is built are offered)."""
    p.add_argument("--sam-type", default=DEFAULT_SAM, choices=model_names("sam"))
    p.add_argument("--sam-ckpt", default=None, help="local SAM checkpoint file")
    p.add_argument("--gdino-type", default=DEFAULT_GDINO, choices=model_names("gdino"))
    p.add_argument("--gdino-ckpt", default=None, help="local GroundingDINO checkpoint file")
    p.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--cache-size", type=int, default=2, help="images whose encodings are kept")


def model_kwargs(args: argparse.Namespace) -> dict:
    """``LangSAM`` keyword arguments from the flags of :func:`add_model_arguments`."""
    return dict(sam_type=args.sam_type, ckpt_path=args.sam_ckpt, gdino_type=args.gdino_type,
                gdino_ckpt_path=args.gdino_ckpt, device=args.device, precision=args.precision,
                cache_size=args.cache_size)


def service_from_args(args: argparse.Namespace) -> "ModelService":
    """A :class:`ModelService` from the flags of :func:`add_model_arguments`."""
    return ModelService(
        sam_type=args.sam_type, gdino_type=args.gdino_type, sam_ckpt=args.sam_ckpt,
        gdino_ckpt=args.gdino_ckpt, device=args.device, precision=args.precision,
        cache_size=args.cache_size,
    )


@dataclass
class ModelService:
    """Builds a :class:`~lang_sam.LangSAM` on first use and serialises every call to it.

    ``sam_ckpt`` / ``gdino_ckpt`` are used for the configured types only; other types picked at
    run time resolve through the registry (``LANG_SAM_WEIGHTS_DIR``, caches, download).
    """

    sam_type: str = DEFAULT_SAM
    gdino_type: str = DEFAULT_GDINO
    sam_ckpt: str | None = None
    gdino_ckpt: str | None = None
    device: str | None = None
    precision: str = "fp32"
    cache_size: int = 2
    _model: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        # Unknown types and unavailable devices fail at start-up, not at the first request.
        get_spec("sam", self.sam_type)
        get_spec("gdino", self.gdino_type)
        check_device(self.device)
        self._default = (self.sam_type, self.gdino_type)

    def _ckpt(self, family: str, name: str) -> str | None:
        default = self._default[0] if family == "sam" else self._default[1]
        path = self.sam_ckpt if family == "sam" else self.gdino_ckpt
        return path if name == default else None

    def _ensure(self, sam_type: str | None, gdino_type: str | None, progress: Callable) -> Any:
        from lang_sam import LangSAM

        sam_type = get_spec("sam", sam_type or self._default[0]).name
        gdino_type = get_spec("gdino", gdino_type or self._default[1]).name
        if self._model is None:
            progress(0.1, "loading GroundingDINO and SAM")
            self._model = LangSAM(
                sam_type, self._ckpt("sam", sam_type), gdino_type=gdino_type,
                gdino_ckpt_path=self._ckpt("gdino", gdino_type), device=self.device,
                precision=self.precision, cache_size=self.cache_size,
            )
        if self._model.sam_type != sam_type:
            progress(0.3, f"loading SAM {sam_type}")
            self._model.build_sam(self._ckpt("sam", sam_type), sam_type=sam_type)
        if self._model.gdino_type != gdino_type:
            progress(0.3, f"loading GroundingDINO {gdino_type}")
            self._model.build_groundingdino(
                gdino_type=gdino_type, ckpt_path=self._ckpt("gdino", gdino_type)
            )
        self.sam_type, self.gdino_type = sam_type, gdino_type
        return self._model

    def load(self) -> None:
        """Load the configured models now (servers do this before accepting requests)."""
        with self._lock:
            self._ensure(None, None, lambda *a: None)

    def predict(
        self,
        image,
        text_prompt: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        *,
        sam_type: str | None = None,
        gdino_type: str | None = None,
        progress: Callable[[float, str], None] = lambda *a: None,
    ):
        """``LangSAM.predict`` under the lock, on the requested model types."""
        with self._lock:
            model = self._ensure(sam_type, gdino_type, progress)
            progress(0.6, "segmenting")
            return model.predict(image, text_prompt, box_threshold, text_threshold)

    def info(self) -> dict:
        model = self._model
        return {
            "sam_type": self.sam_type,
            "gdino_type": self.gdino_type,
            "loaded": model is not None,
            "device": str(model.device) if model is not None else self.device,
            "precision": self.precision,
        }
