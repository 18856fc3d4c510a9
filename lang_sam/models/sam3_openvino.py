"""SAM 3 on OpenVINO: the vision encoder and the text-conditioned heads of a loaded transformers
``Sam3Model`` replaced by compiled OpenVINO parts (:mod:`lang_sam.models.openvino`).

:func:`use_openvino` changes two things of the model, so that ``Sam3Segmenter`` (and the video
model, whose detector is this model) call it as before:

- ``vision_encoder`` (the ViT and its FPN neck): one part, input ``(1, 3, S, S)`` float32 (``S``
  1008 for the released model); outputs ``last_hidden_state`` and the FPN levels and their
  position encodings, returned in the encoder's output class. The PyTorch encoder is freed.
- the model's call on cached vision features and token ids (``model(vision_embeds=...,
  input_ids=..., attention_mask=...)``: the CLIP text encoder, the DETR-like encoder and decoder,
  the box / score heads and the mask decoder): one part per number of phrases ``P`` in a call
  (converted when first met, cached on disk), inputs the batch-1 vision features and ``(P, 32)``
  int64 token ids and attention mask; outputs ``pred_logits`` ``(P, Q)``, ``pred_boxes``
  ``(P, Q, 4)`` (normalised xyxy), ``presence_logits`` ``(P, 1)`` and ``pred_masks``
  ``(P, Q, h, w)``. Other calls (text embeddings given, box prompts, vision features of several
  images) run on PyTorch.

A part that cannot be converted stays on PyTorch with a
:class:`~lang_sam.models.openvino.BackendFallbackWarning`. Nothing here imports OpenVINO until
:func:`use_openvino` is called.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lang_sam.models.openvino import (
    ROTARY_OPTION, OVPart, PartKey, cache_dir, check_backend, check_target, compile_part, require_openvino,
    rotate_pairs, weights_sha256,
)
from lang_sam.models.sam2_openvino import OVVisionEncoder, output_class
from lang_sam.patches import for_this_thread

__all__ = ["use_openvino"]

logger = logging.getLogger(__name__)


class _VisionParts(nn.Module):
    """The vision encoder with flat outputs: ``last_hidden_state``, the FPN levels, their position
    encodings."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers.models.sam3 import modeling_sam3

        # the ViT's rotary encoding in the form OpenVINO runs best (a transformers without the
        # function is traced as it is)
        swap = for_this_thread(modeling_sam3, "rotate_pairwise", rotate_pairs) \
            if hasattr(modeling_sam3, "rotate_pairwise") else nullcontext()
        with swap:
            out = self.encoder(pixel_values)
        return (out.last_hidden_state, *out.fpn_hidden_states, *out.fpn_position_encoding)


class _Heads(nn.Module):
    """The model's call on one image's vision features and ``P`` phrases, with flat inputs and
    outputs (for tracing): the features are expanded to ``P`` inside, as ``Sam3Segmenter`` does."""

    def __init__(self, model: nn.Module, output_cls: type, levels: int):
        super().__init__()
        self.model, self.output_cls, self.levels = model, output_cls, levels

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        last, fpn, pos = inputs[0], inputs[1:1 + self.levels], inputs[1 + self.levels:1 + 2 * self.levels]
        input_ids, attention_mask = inputs[-2:]
        p = input_ids.shape[0]
        vision = self.output_cls(last_hidden_state=last.expand(p, *last.shape[1:]),
                                 fpn_hidden_states=tuple(t.expand(p, *t.shape[1:]) for t in fpn),
                                 fpn_position_encoding=tuple(t.expand(p, *t.shape[1:]) for t in pos))
        out = type(self.model).forward(self.model, vision_embeds=vision, input_ids=input_ids,
                                       attention_mask=attention_mask)
        return out.pred_logits, out.pred_boxes, out.presence_logits, out.pred_masks


class _OVForward:
    """Stands in for ``Sam3Model.forward`` (set on the instance): calls with ``vision_embeds`` of
    one image (or one image expanded, as ``Sam3Segmenter`` passes them), ``input_ids`` and
    ``attention_mask`` run on an OpenVINO part per phrase count; any other call on PyTorch."""

    def __init__(self, model: nn.Module, key: Any, root: Path, threads: int | None):
        self.model, self.key, self.root, self.threads = model, key, root, threads
        self.parts: dict[tuple, OVPart | None] = {}

    def __call__(self, *args: Any, vision_embeds: Any = None, input_ids: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, **kwargs: Any):
        def torch_forward():
            return type(self.model).forward(self.model, *args, vision_embeds=vision_embeds, input_ids=input_ids,
                                            attention_mask=attention_mask, **kwargs)

        if args or kwargs or vision_embeds is None or input_ids is None or attention_mask is None:
            return torch_forward()
        p = input_ids.shape[0]
        vision = [vision_embeds.last_hidden_state, *vision_embeds.fpn_hidden_states,
                  *vision_embeds.fpn_position_encoding]
        if not all(t.shape[0] == 1 or (t.shape[0] == p and t.stride(0) == 0) for t in vision):
            return torch_forward()  # several images
        tensors = (*(t[:1].float().contiguous() for t in vision), input_ids.long(), attention_mask.long())
        shapes = tuple(tuple(int(d) for d in t.shape) for t in tensors)
        if shapes not in self.parts:
            heads = _Heads(self.model, type(vision_embeds), len(vision_embeds.fpn_hidden_states))
            self.parts[shapes] = compile_part(self.key("heads", shapes), heads, tensors, self.root,
                                              threads=self.threads)
        part = self.parts[shapes]
        if part is None:
            return torch_forward()
        logits, boxes, presence, masks = part(*tensors)
        return output_class(self.model, "Sam3ImageSegmentationOutput")(
            pred_logits=logits, pred_boxes=boxes, presence_logits=presence, pred_masks=masks)


def use_openvino(engine: Any, folder: str | os.PathLike, backend: str = "openvino", *,
                 threads: int | None = None) -> None:
    """Put a SAM 3 engine's (a ``Sam3Segmenter`` on the CPU, fp32) vision encoder and heads on
    OpenVINO when ``backend`` is ``"openvino"`` (``"pytorch"``: nothing changes), converting them
    (or loading them from :func:`~lang_sam.models.openvino.cache_dir` of the folder's
    ``model.safetensors``) and setting ``engine.backend``.

    Raises:
        InvalidArgumentError: ``backend`` is unknown.
        DeviceError, InvalidPrecisionError: the engine is not on the CPU at fp32.
        BackendUnavailableError: OpenVINO is not installed.
        OSError: ``model.safetensors`` cannot be read (its sha256 keys the cache).
    """
    if check_backend(backend) == "pytorch":
        return
    require_openvino()
    check_target(engine.device, engine.precision, engine="SAM 3")
    weights = Path(folder) / "model.safetensors"
    model, root, sha = engine.model, cache_dir(weights), weights_sha256(weights)

    def key(part: str, shapes: tuple, options: tuple = ()) -> PartKey:
        return PartKey(engine.name, sha, part, shapes, "fp32", options)

    size = int(engine.processor.image_processor.size["height"])
    shape = (1, 3, size, size)
    encoder = model.vision_encoder
    part = compile_part(key("vision_encoder", (shape,), (ROTARY_OPTION,)), _VisionParts(encoder),
                        (torch.zeros(shape),), root, threads=threads, release=True)
    if part is not None:
        model.vision_encoder = OVVisionEncoder(part, output_class(encoder, "Sam3VisionEncoderOutput"), shape,
                                                ("last_hidden_state",))
    object.__setattr__(model, "forward", _OVForward(model, key, root, threads))
    engine.backend = "openvino"
    logger.info("SAM 3 %s: vision encoder and heads on OpenVINO (cache %s)", engine.name, root)
