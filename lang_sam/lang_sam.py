"""The :class:`LangSAM` facade: GroundingDINO turns a text prompt into boxes, SAM each box into a mask.

It only wires :class:`~lang_sam.detector.GroundingDINODetector` and
:class:`~lang_sam.segmenter.SamSegmenter`; the API is that of the 2023 ``lang-segment-anything``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lang_sam.detector import GroundingDINODetector
from lang_sam.segmenter import SamSegmenter
from lang_sam.validation import ImageInput, to_rgb_pil
from lang_sam.weights import (
    DEFAULT_GDINO,
    DEFAULT_SAM,
    GDINO_MODELS,
    SAM_MODELS,
    get_spec,
    resolve_checkpoint,
)

logger = logging.getLogger(__name__)

__all__ = ["LangSAM", "Prediction", "SAM_MODELS", "GDINO_MODELS", "default_device"]


class Prediction(NamedTuple):
    """What :meth:`LangSAM.predict` returns; unpacks as ``masks, boxes, phrases, logits``.

    - ``masks``: ``(N, H, W)`` bool tensor, one mask per box, in input-image pixels;
    - ``boxes``: ``(N, 4)`` float32 tensor, xyxy in input-image pixels;
    - ``phrases``: ``N`` strings, the prompt words each box answers;
    - ``logits``: ``(N,)`` float32 tensor, each box's best token score (sigmoid, in [0, 1]).
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    phrases: list[str]
    logits: torch.Tensor


def default_device() -> torch.device:
    """CUDA if available, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class LangSAM:
    """Text-prompted segmentation: ``LangSAM().predict(image, "car. wheel")``.

    Args:
        sam_type: ``"vit_h"`` (default; ``None`` means it too), ``"vit_l"`` or ``"vit_b"``.
        ckpt_path: a local SAM checkpoint file; ``None`` resolves it (see :mod:`lang_sam.weights`).
        return_prompts: give each box only the prompt part (between ``.``) holding its best token.
        gdino_type: ``"swinb"`` (default) or ``"swint"``.
        gdino_ckpt_path: a local GroundingDINO checkpoint file.
        device: ``None`` picks CUDA, then MPS, then CPU.
    """

    def __init__(
        self,
        sam_type: str | None = DEFAULT_SAM,
        ckpt_path: str | os.PathLike | None = None,
        return_prompts: bool = False,
        *,
        gdino_type: str = DEFAULT_GDINO,
        gdino_ckpt_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ):
        sam_spec = get_spec("sam", sam_type)  # unknown types fail before anything heavy happens
        gdino_spec = get_spec("gdino", gdino_type)
        self.sam_type = sam_spec.name
        self.gdino_type = gdino_spec.name
        self.return_prompts = bool(return_prompts)
        self.device = torch.device(device) if device is not None else default_device()
        # Find both files first, so a missing SAM file is reported before GroundingDINO is loaded.
        gdino_path = resolve_checkpoint(gdino_spec, gdino_ckpt_path)
        sam_path = resolve_checkpoint(sam_spec, ckpt_path)
        self.build_groundingdino(ckpt_path=gdino_path)
        self.build_sam(sam_path)

    # ----------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------
    def build_sam(
        self, ckpt_path: str | os.PathLike | None = None, *, sam_type: str | None = None
    ) -> None:
        """(Re)load SAM: ``build_sam()``, ``build_sam("path.pth")``, ``build_sam(sam_type="vit_b")``.

        A registry name as the first argument (``build_sam("vit_b")``, as the original web demo
        called it) means a type, not a path, unless a file of that name exists.
        """
        if (
            isinstance(ckpt_path, str)
            and ckpt_path in SAM_MODELS
            and sam_type is None
            and not Path(ckpt_path).is_file()
        ):
            sam_type, ckpt_path = ckpt_path, None
        spec = get_spec("sam", sam_type if sam_type is not None else self.sam_type)
        self.segmenter = SamSegmenter.from_spec(spec, ckpt_path, self.device)
        self.sam_type = spec.name
        self.sam = self.segmenter.predictor  # the original's attribute: a SamPredictor

    def build_groundingdino(
        self, *, gdino_type: str | None = None, ckpt_path: str | os.PathLike | None = None
    ) -> None:
        """(Re)load GroundingDINO, of ``gdino_type`` (default: the current one)."""
        spec = get_spec("gdino", gdino_type if gdino_type is not None else self.gdino_type)
        self.detector = GroundingDINODetector.from_spec(spec, ckpt_path, self.device)
        self.gdino_type = spec.name
        self.groundingdino = self.detector.model  # the original's attribute

    # ----------------------------------------------------------------------------------------
    # Predicting
    # ----------------------------------------------------------------------------------------
    def predict_dino(
        self,
        image_pil: ImageInput,
        text_prompt: str,
        box_threshold: float,
        text_threshold: float,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """GroundingDINO alone: ``(boxes (N, 4) float32 xyxy pixels, logits (N,), phrases)``."""
        image = to_rgb_pil(image_pil)
        det = self.detector.predict(
            image, text_prompt, box_threshold, text_threshold, return_prompts=self.return_prompts
        )
        return det.boxes, det.logits, det.phrases

    def predict_sam(self, image_pil: ImageInput, boxes: torch.Tensor) -> torch.Tensor:
        """SAM alone: ``(N, 1, H, W)`` bool masks for ``(N, 4)`` xyxy pixel boxes."""
        image = np.asarray(to_rgb_pil(image_pil))
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
        self.segmenter.set_image(image)
        return self.segmenter.predict_boxes(boxes)

    def predict(
        self,
        image_pil: ImageInput,
        text_prompt: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> Prediction:
        """Segment what ``text_prompt`` names. Returns ``(masks, boxes, phrases, logits)``.

        ``image_pil`` may be a PIL image (any mode), an ``HxWx3`` uint8 array or a path. See
        :class:`Prediction` for shapes; nothing found gives ``(0, H, W)``, ``(0, 4)``, ``[]``, ``(0,)``.
        """
        image = to_rgb_pil(image_pil)
        boxes, logits, phrases = self.predict_dino(image, text_prompt, box_threshold, text_threshold)
        W, H = image.size
        if len(boxes) > 0:
            masks = self.predict_sam(image, boxes).squeeze(1)
        else:
            masks = torch.zeros((0, H, W), dtype=torch.bool)
        return Prediction(masks, boxes, phrases, logits)
