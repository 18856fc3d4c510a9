"""GroundingDINO's heavy parts on OpenVINO (``GroundingDINODetector(..., backend="openvino")``).

Two parts, each converted by :func:`lang_sam.models.openvino.compile_part` and cached beside the
weights, each falling back to PyTorch alone (with a :class:`~lang_sam.models.openvino.BackendFallbackWarning`
naming it) if it cannot be converted:

- ``image``: the Swin backbone and the input projections (``detector.image_levels``), input
  ``(1, 3, h, w)`` float32, outputs the levels' features and position embeddings (the padding
  masks of one unpadded image are all False and are not converted);
- ``fuse``: the text-image encoder, the decoder and the last layer's heads (``detector.fuse``),
  the multi-scale deformable attention included: groundingdino-py computes it in pure PyTorch
  (``multi_scale_deformable_attn_pytorch``: ``grid_sample``, which OpenVINO has as GridSample), so
  the conversion is of the same arithmetic. The two-stage query selection's proposals (anchor boxes
  that depend only on the level sizes) are computed by PyTorch and given to the part as inputs:
  computed inside OpenVINO, ``(y + 0.5) / H`` could round to the other side of groundingdino-py's
  0.99 validity bound (a 50-row level: 49.5 / 50), which changed the selected queries.

BERT and the text projection (``detector.encode_text``) stay on PyTorch, on the padded caption the
``fuse`` part takes: converted, they ran in 18 ms instead of 34-53 ms, but each process paid 0.35 s
to compile them on first use and held BERT's 440 MB twice more (OpenVINO's blob and its own copy).
Measured with Swin-T + vit_b (load + two predicts, warm cache): peak RSS 4826 -> 4401 MiB, first
predict 8.55 -> 8.41 s.

Shapes are static, one conversion per shape (see docs/openvino-gdino.md for the measurements):
the backbone's window padding and the deformable attention's level sizes are Python integers
taken from the image size, so a converted model is only exact for the size it was traced at. The
image size is the resized one (:meth:`~lang_sam.models.detector.GroundingDINODetector.resized_size`),
so every photo of one camera and orientation shares a conversion. Captions are padded to a multiple
of :data:`TEXT_BUCKET` tokens (at most 256), so a few conversions serve every prompt: the padding
tokens are masked out of every attention and of the logits, so padding does not change the result
(tests/test_openvino_gdino.py checks it against the unpadded PyTorch path).

This module imports neither ``detector`` nor ``openvino`` at import time: the detector passes its
torch functions in, and :func:`lang_sam.models.openvino.require_openvino` imports OpenVINO.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from lang_sam.models.openvino import OVPart, PartKey, cache_dir, compile_part, require_openvino
from lang_sam.patches import for_this_thread

__all__ = ["TEXT_BUCKET", "OpenVINOParts", "pad_text", "state_sha256"]

logger = logging.getLogger(__name__)

#: Captions are padded to a multiple of this many tokens (capped at GroundingDINO's 256).
TEXT_BUCKET = 32
_MAX_TEXT_LEN = 256
#: Compiled parts kept in memory per part name (each holds its own copy of the part's weights).
_KEEP = 2


def state_sha256(model: nn.Module) -> str:
    """Hex sha256 of ``model``'s state dict (names, dtypes, shapes and bytes, in name order): what a
    converted part's weights are."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def pad_text(tokens: Sequence[torch.Tensor], length: int) -> tuple[torch.Tensor, ...]:
    """``detector.text_inputs``' ``(input_ids, token_mask, position_ids, attention)`` for ``L``
    tokens padded to ``length`` tokens: pad id 0, not a token (``token_mask`` False), position 0,
    attending only to itself (so no attention row is empty); real tokens never attend to a pad.

    Raises:
        ValueError: ``length`` is shorter than the caption.
    """
    input_ids, token_mask, position_ids, attention = tokens
    n = input_ids.shape[1]
    if length < n:
        raise ValueError(f"cannot pad {n} tokens to {length}")
    if length == n:
        return tuple(tokens)
    extra = length - n
    pad = input_ids.new_zeros((1, extra))
    square = torch.eye(length, dtype=torch.bool)[None]
    square[:, :n, :n] = attention
    return (torch.cat([input_ids, pad], 1), torch.cat([token_mask, pad.bool()], 1),
            torch.cat([position_ids, pad.to(position_ids.dtype)], 1), square)


def bucket(n: int) -> int:
    """The padded length of a caption of ``n`` tokens: the next multiple of :data:`TEXT_BUCKET`,
    at most 256."""
    return min(_MAX_TEXT_LEN, -(-n // TEXT_BUCKET) * TEXT_BUCKET)


class _ImagePart(nn.Module):
    def __init__(self, model: nn.Module, image_levels: Callable):
        super().__init__()
        self.model, self.image_levels = model, image_levels

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        srcs, _, poss = self.image_levels(self.model, images)
        return (*srcs, *poss)


def proposals(srcs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """groundingdino-py's two-stage proposals for one unpadded image's levels, as PyTorch computes
    them: ``(1, S, 4)`` float32 (inverse-sigmoid boxes, ``inf`` where invalid) and ``(1, S, 1)`` bool
    (valid), ``S`` the levels' total size."""
    from groundingdino.models.GroundingDINO.utils import gen_encoder_output_proposals

    shapes = torch.as_tensor([tuple(s.shape[-2:]) for s in srcs], dtype=torch.long)
    size = int(shapes.prod(1).sum())
    _, boxes = gen_encoder_output_proposals(torch.zeros(1, size, 1), torch.zeros(1, size, dtype=torch.bool), shapes)
    return boxes, torch.isfinite(boxes).all(-1, keepdim=True)


class _FusePart(nn.Module):
    """``fuse`` on flat inputs: the levels, their position embeddings, the text, then
    :func:`proposals`' two tensors (used in place of groundingdino-py's own computation)."""

    def __init__(self, model: nn.Module, fuse: Callable, levels: int):
        super().__init__()
        self.model, self.fuse, self.levels = model, fuse, levels

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import groundingdino.models.GroundingDINO.transformer as transformer

        n = self.levels
        srcs, poss, text, (boxes, valid) = inputs[:n], inputs[n:2 * n], inputs[2 * n:-2], inputs[-2:]

        def given(memory: torch.Tensor, mask: torch.Tensor, shapes: Any, learnedwh: Any = None):
            return memory.masked_fill(~valid, 0.0), boxes

        # this thread's calls only: another thread's detector keeps groundingdino-py's own
        with for_this_thread(transformer, "gen_encoder_output_proposals", given):
            return self.fuse(self.model, srcs, _no_padding(srcs), poss, *text)


def _no_padding(srcs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The padding masks of one unpadded image's levels: all False, ``(1, h_l, w_l)`` bool."""
    return [torch.zeros((1, *s.shape[-2:]), dtype=torch.bool) for s in srcs]


class OpenVINOParts:
    """GroundingDINO's ``image`` and ``fuse`` parts compiled for OpenVINO, per input shape.

    ``model`` is the loaded network (kept: parts that cannot be converted run on it); ``name`` the
    registry name (part of the cache key with ``weights``, the checkpoint's hex sha256: give it
    where the file is known, as ``GroundingDINODetector.from_spec`` does; by default the state
    dict is hashed, which reads every weight); ``root`` the cache folder
    (default: ``$LANG_SAM_OPENVINO_CACHE`` or ``openvino/`` in lang_sam's download folder). The
    three functions are ``lang_sam.models.detector``'s ``image_levels``, ``encode_text`` and ``fuse``.

    Raises:
        BackendUnavailableError: OpenVINO is not installed.
    """

    def __init__(self, model: nn.Module, name: str, root: str | os.PathLike | None, image_levels: Callable,
                 encode_text: Callable, fuse: Callable, *, threads: int | None = None, weights: str | None = None):
        require_openvino()
        if root is None:
            from lang_sam.hub.resolve import download_dir

            root = cache_dir(download_dir() / name)
        self.model, self.name, self.root, self.threads = model, name, Path(root), threads
        self.weights = weights if weights is not None else state_sha256(model)
        self.functions = {"image": image_levels, "text": encode_text, "fuse": fuse}
        self.modules = {"image": _ImagePart(model, image_levels)}
        self._compiled: dict[str, OrderedDict[PartKey, OVPart | None]] = {}

    def part(self, name: str, module: nn.Module, inputs: Sequence[torch.Tensor]) -> OVPart | None:
        """The compiled part ``name`` for ``inputs``' shapes (converted on first use, then loaded from
        the cache), or None if it could not be converted (it then runs on PyTorch)."""
        key = PartKey(self.name, self.weights, name, tuple(tuple(t.shape) for t in inputs))
        kept = self._compiled.setdefault(name, OrderedDict())
        if key not in kept:
            kept[key] = compile_part(key, module, inputs, self.root, threads=self.threads, release=True)
            while len(kept) > _KEEP:
                kept.popitem(last=False)
        kept.move_to_end(key)
        return kept[key]

    def image_levels(self, images: torch.Tensor) -> tuple[list, list, list]:
        """``detector.image_levels`` for ``images`` ``(1, 3, h, w)`` float32."""
        part = self.part("image", self.modules["image"], (images,))
        if part is None:
            return self.functions["image"](self.model, images)
        out = part(images)
        srcs, poss = list(out[:len(out) // 2]), list(out[len(out) // 2:])
        return srcs, _no_padding(srcs), poss

    def forward_text(self, features: Any, tokens: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``detector.encode_text`` (on PyTorch) then ``detector.fuse`` on ``features`` (an
        ``ImageFeatures``) for ``detector.text_inputs``' ``tokens``, padded to :func:`bucket`'s
        length: logits ``(1, num_queries, 256)`` and boxes ``(1, num_queries, 4)``."""
        padded = pad_text(tokens, bucket(tokens[0].shape[1]))
        encoded = self.functions["text"](self.model, *padded)
        srcs, poss = tuple(features.srcs), tuple(features.poss)
        inputs = (*srcs, *poss, encoded, *padded[1:], *proposals(srcs))
        fuse = _FusePart(self.model, self.functions["fuse"], len(srcs))
        compiled = self.part("fuse", fuse, inputs)
        if compiled is None:
            return fuse(*inputs)
        logits, boxes = compiled(*inputs)
        return logits, boxes
