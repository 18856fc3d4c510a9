"""A model family that is not in lang_sam: a segmenter whose mask is its box, filled.

It stands for the next family (SAM 2.1, ...): one module implementing
:class:`lang_sam.models.base.Segmenter`, registered with ``ModelSpec(engine="plugin_engines:BoxFill")``.
tests/test_pipeline.py runs every entry point on it without editing lang_sam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lang_sam.cache import EncodingCache
from lang_sam.hub import load_checkpoint, resolve_checkpoint
from lang_sam.models.base import Segmenter
from lang_sam.results import MaskPrediction


@dataclass(frozen=True)
class BoxFillArch:
    """The family's own architecture record: how many pixels each box is shrunk by."""

    inset: int = 0


class BoxFill(Segmenter):
    """Each box's mask is the pixels inside it (shrunk by ``arch.inset``); its IoU score is 1."""

    encodings = 0  # images encoded, over every instance (a test reads it)

    def __init__(self, arch: BoxFillArch, device="cpu", *, precision: str = "fp32", cache_size: int = 2):
        self.arch, self.device, self.precision = arch, torch.device(device), precision
        self.model = torch.nn.Identity()
        self.cache = EncodingCache(cache_size)
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_spec(cls, spec, ckpt_path=None, device="cpu", *, progress=True, precision="fp32",
                  cache_size=2, **options):
        state = load_checkpoint(resolve_checkpoint(spec, ckpt_path, progress=progress))
        inset = int(state["inset"]) if "inset" in state else spec.arch.inset
        return cls(BoxFillArch(inset), device, precision=precision, cache_size=cache_size)

    def encode(self, image: np.ndarray, key=None):
        BoxFill.encodings += 1
        return tuple(image.shape[:2])

    def use(self, encoding) -> None:
        self._size = encoding

    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        return 3

    def predict(self, *, boxes=None, points=None, point_labels=None, mask_input=None,
                multimask_output=False, return_low_res=False) -> MaskPrediction:
        H, W = self._size
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        masks = torch.zeros((len(boxes), 1, H, W), dtype=torch.bool)
        k = self.arch.inset
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
            masks[i, 0, max(y0 + k, 0):max(y1 - k, 0), max(x0 + k, 0):max(x1 - k, 0)] = True
        return MaskPrediction(masks, torch.ones((len(boxes), 1)),
                              torch.zeros((len(boxes), 1, 256, 256)) if return_low_res else None)


def expected_mask(box, image_size, inset: int = 0) -> np.ndarray:
    H, W = image_size
    x0, y0, x1, y1 = torch.as_tensor(box).round().int().tolist()
    out = np.zeros((H, W), bool)
    out[max(y0 + inset, 0):max(y1 - inset, 0), max(x0 + inset, 0):max(x1 - inset, 0)] = True
    return out
