"""SAM 2.1 on OpenVINO: the image encoder, memory attention and memory encoder of a loaded
transformers ``Sam2VideoModel`` replaced by compiled OpenVINO parts (:mod:`lang_sam.models.openvino`).

:func:`use_openvino` swaps three submodules of the model for stand-ins that take and return what
the originals do, so every caller (``Sam2Segmenter.encode`` / ``predict`` on images,
transformers' tracking loop on video) runs unchanged:

- ``vision_encoder`` (Hiera + FPN neck): one part, input ``(1, 3, S, S)`` float32 (``S`` the
  model's input side, 1024 for the released models); outputs the three FPN levels
  ``(1, 256, S/4, S/4)``, ``(1, 256, S/8, S/8)``, ``(1, 256, S/16, S/16)`` and their sine
  position encodings. The PyTorch encoder is freed once it is converted.
- ``memory_encoder``: inputs ``(B, 256, S/16, S/16)`` features and ``(B, 1, S, S)`` scaled mask
  probabilities, ``B`` the objects whose memory is written on a frame.
- ``memory_attention``: inputs the current frame's ``(HW, 1, 256)`` features and position
  encodings and ``(M, 1, 64)`` memories and their position encodings, ``M`` = stored memory frames
  x ``HW`` + 4 tokens per object pointer.

The two video parts' inputs change with the number of objects, stored memory frames and object
pointers: each is converted once with those dims dynamic, when a video first needs it (the memory
attention through :class:`_TraceableMemoryAttention`, the same operations as transformers' without
the Python branches on shapes). Every conversion is cached on disk, so later processes only compile.
A part that cannot be converted runs on PyTorch with a
:class:`~lang_sam.models.openvino.BackendFallbackWarning`.

Nothing here imports OpenVINO until :func:`use_openvino` is called.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from lang_sam.errors import InvalidArgumentError
from lang_sam.models.openvino import (
    ROTARY_OPTION, OVPart, PartKey, cache_dir, check_target, compile_part, require_openvino, rotate_pairs,
    weights_sha256,
)

__all__ = ["use_openvino", "output_class", "OVVisionEncoder"]

logger = logging.getLogger(__name__)


class _Flat(nn.Module):
    """A module whose outputs are flattened to a tuple of tensors, for tracing."""

    def __init__(self, module: nn.Module, call: Callable[..., tuple[torch.Tensor, ...]]):
        super().__init__()
        self.module, self.call = module, call

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.call(self.module, *inputs)


def _vision_outputs(encoder: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = encoder(pixel_values, return_dict=True)
    return (*out.fpn_hidden_states, *out.fpn_position_encoding)


class OVVisionEncoder(nn.Module):
    """Stands in for a SAM 2.1 or SAM 3 vision encoder: ``shape`` pixels (``(1, 3, S, S)``) ->
    ``output_cls`` with the OpenVINO ``part``'s outputs: first one tensor for each name in
    ``singles`` (SAM 3: ``last_hidden_state``), then the FPN levels (``fpn_hidden_states``, high
    resolution first) and as many position encodings (``fpn_position_encoding``)."""

    def __init__(self, part: OVPart, output_cls: type, shape: tuple[int, ...], singles: tuple[str, ...] = ()):
        super().__init__()
        self.part, self.output_cls, self.shape, self.singles = part, output_cls, shape, singles

    def forward(self, pixel_values: torch.Tensor, **kwargs: Any):
        if tuple(pixel_values.shape) != self.shape:
            raise InvalidArgumentError(f"the OpenVINO vision encoder takes {self.shape} pixels, "
                                       f"got {tuple(pixel_values.shape)}")
        outs = self.part(pixel_values.float())
        k = len(self.singles)
        n = (len(outs) - k) // 2
        return self.output_cls(**dict(zip(self.singles, outs)), fpn_hidden_states=tuple(outs[k:k + n]),
                               fpn_position_encoding=tuple(outs[k + n:]))


def output_class(module: nn.Module, name: str) -> type:
    """The class ``name`` of the transformers module that defines ``module``'s class (an output
    class, from the model module itself)."""
    return getattr(sys.modules[type(module).__module__], name)


def _attend(attn: Any, query, key, value, cos, sin, cos_k, sin_k, rope_k) -> torch.Tensor:
    """transformers' ``Sam2VideoRoPEAttention.forward`` with the keys' rotary embedding given per
    key (``cos_k`` / ``sin_k`` ``(1, keys, d)``) and applied where ``rope_k`` ``(keys, 1)`` is 1
    (memory tokens; object-pointer tokens, 0, are not rotated): the same operations, without the
    Python branches on shapes that would fix the number of memories at conversion."""
    b, p = query.shape[:2]
    shape = (b * p, -1, attn.num_attention_heads, attn.head_dim)
    q = attn.q_proj(query).view(*shape).transpose(1, 2)
    k = attn.k_proj(key).view(*shape).transpose(1, 2)
    v = attn.v_proj(value).view(*shape).transpose(1, 2)
    q = q * cos + rotate_pairs(q) * sin
    k = torch.where(rope_k > 0, k * cos_k + rotate_pairs(k) * sin_k, k)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=attn.scaling)
    return attn.o_proj(out.transpose(1, 2).reshape(b, p, -1, attn.num_attention_heads * attn.head_dim))


class _TraceableMemoryAttention(nn.Module):
    """transformers' ``Sam2VideoMemoryAttention.forward`` (inference) in a form that converts once
    for any number of memories ``M``: inputs ``(HW, 1, 256)`` features and position encodings,
    ``(M, 1, 64)`` memories and position encodings, ``rope_k`` ``(M, 1)`` float (1 where a memory
    token is rotated) and ``key_pos`` ``(M,)`` int64 (each memory token's position in the
    ``HW`` grid, which transformers gets by tiling); returns ``(HW, 1, 256)``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, feats, memory, feats_pe, memory_pe, rope_k, key_pos):
        ma = self.module
        output = (feats + 0.1 * feats_pe).transpose(0, 1)
        memory = memory.transpose(0, 1).unsqueeze(1)
        memory_pe = memory_pe.transpose(0, 1).unsqueeze(1)
        cos, sin = ma.rotary_emb(output, ma.position_ids)
        cos_k, sin_k = cos[:, key_pos], sin[:, key_pos]
        ones = torch.ones(1, 1, dtype=feats.dtype)
        for layer in ma.layers:
            queries = output.unsqueeze(1) if output.ndim == 3 else output
            q = layer.layer_norm1(queries)
            queries = queries + _attend(layer.self_attn, q, q, q, cos, sin, cos, sin, ones)
            q = layer.layer_norm2(queries)
            queries = queries + _attend(layer.cross_attn_image, q, memory + memory_pe, memory, cos, sin,
                                        cos_k, sin_k, rope_k)
            q = layer.layer_norm3(queries)
            output = queries + layer.linear2(layer.activation(layer.linear1(q)))
        return ma.layer_norm(output).transpose(0, 1)


class _Lazy(nn.Module):
    """Stands in for a video part: converted (or loaded from the cache) when first called, with the
    dynamic dims its key records; if it cannot be converted, the PyTorch module runs."""

    torch_module: Any
    traced: Any

    def __init__(self, module: nn.Module, traced: nn.Module, key: PartKey, root: Path, threads: int | None):
        super().__init__()
        # kept for conversion and fallback, not registered: the stand-in has no parameters of its own
        self.__dict__["torch_module"] = module
        self.__dict__["traced"] = traced
        self.key, self.root, self.threads = key, root, threads
        self.part: OVPart | None = None
        self.converted = False

    def compiled(self, example: tuple[torch.Tensor, ...]) -> OVPart | None:
        if not self.converted:
            self.part = compile_part(self.key, self.traced, example, self.root, threads=self.threads)
            self.converted = True
        return self.part

    def fits(self, tensors: tuple[torch.Tensor, ...]) -> bool:
        return all(len(t.shape) == len(s) and all(d < 0 or d == n for d, n in zip(s, t.shape))
                   for t, s in zip(tensors, self.key.shapes))


class _OVMemoryEncoder(_Lazy):
    """Stands in for ``Sam2VideoModel.memory_encoder``: ``(B, 256, h, w)`` features and
    ``(B, 1, S, S)`` scaled mask probabilities -> ``(memory (B, 64, h, w), position encoding
    (B, 64, h, w))``, any ``B``."""

    def forward(self, vision_features: torch.Tensor, masks: torch.Tensor):
        tensors = (vision_features.float().contiguous(), masks.float().contiguous())
        part = self.compiled(tensors) if self.fits(tensors) else None
        if part is None:
            return self.torch_module(vision_features, masks)
        features, pos = part(*tensors)
        return features, pos


class _OVMemoryAttention(_Lazy):
    """Stands in for ``Sam2VideoModel.memory_attention`` (called with keywords, as transformers
    does): returns the conditioned ``(HW, 1, 256)`` features, any number of memories."""

    def forward(self, current_vision_features: torch.Tensor, memory: torch.Tensor,
                current_vision_position_embeddings: torch.Tensor | None = None,
                memory_posision_embeddings: torch.Tensor | None = None, num_object_pointer_tokens: int = 0):
        args = (current_vision_features, memory, current_vision_position_embeddings, memory_posision_embeddings,
                num_object_pointer_tokens)
        if current_vision_position_embeddings is None or memory_posision_embeddings is None:
            return self.torch_module(*args)
        hw, m = current_vision_features.shape[0], memory.shape[0]
        rope_k = (torch.arange(m) < m - int(num_object_pointer_tokens)).float()[:, None]
        key_pos = torch.arange(m) % hw
        tensors = (current_vision_features.float().contiguous(), memory.float().contiguous(),
                   current_vision_position_embeddings.float().contiguous(),
                   memory_posision_embeddings.float().contiguous(), rope_k, key_pos)
        part = self.compiled(tensors) if self.fits(tensors) else None
        if part is None:
            return self.torch_module(*args)
        return part(*tensors)[0]


def use_openvino(engine: Any, weights_path: str | os.PathLike, *, threads: int | None = None,
                 parts: tuple[str, ...] = ("vision_encoder", "memory_encoder", "memory_attention")) -> None:
    """Put ``parts`` of a SAM 2.1 engine's model (a ``Sam2Segmenter`` on the CPU, fp32) on
    OpenVINO, converting them (or loading them from :func:`~lang_sam.models.openvino.cache_dir`
    of ``weights_path``) and setting ``engine.backend = "openvino"``. The image encoder is
    converted now; the video parts when a video first needs a shape.

    Raises:
        BackendUnavailableError: OpenVINO is not installed.
        DeviceError, InvalidPrecisionError: the engine is not on the CPU at fp32.
        InvalidArgumentError: ``parts`` names an unknown part.
        OSError: the checkpoint cannot be read (its sha256 keys the cache).
    """
    require_openvino()
    unknown = sorted(set(parts) - {"vision_encoder", "memory_encoder", "memory_attention"})
    if unknown:
        raise InvalidArgumentError(f"unknown SAM 2.1 parts {unknown}: expected vision_encoder, memory_encoder, "
                                   "memory_attention")
    check_target(engine.device, engine.precision, engine="SAM 2.1")
    model, root, sha = engine.model, cache_dir(weights_path), weights_sha256(weights_path)
    name = engine.name or Path(weights_path).stem

    def key(part: str, shapes: tuple, options: tuple = ()) -> PartKey:  # -1 in shapes: a dynamic dim
        return PartKey(name, sha, part, shapes, "fp32", options)

    s, (h, w) = engine.image_size, model.backbone_feature_sizes[-1]
    if "vision_encoder" in parts:
        example = (torch.zeros(1, 3, s, s),)
        encoder = model.vision_encoder
        part = compile_part(key("vision_encoder", ((1, 3, s, s),)), _Flat(encoder, _vision_outputs), example,
                            root, threads=threads, release=True)
        if part is not None:
            model.vision_encoder = OVVisionEncoder(part, output_class(encoder, "Sam2VisionEncoderOutput"),
                                                    (1, 3, s, s))
    if "memory_encoder" in parts:
        me = model.memory_encoder
        dims = ((-1, me.feature_projection.in_channels, h, w), (-1, 1, s, s))
        model.memory_encoder = _OVMemoryEncoder(me, me, key("memory_encoder", dims), root, threads)
    if "memory_attention" in parts:
        ma = model.memory_attention
        hw, c, mem = h * w, ma.layer_norm.normalized_shape[0], ma.layers[0].cross_attn_image.kv_in_dim
        attention_dims = ((hw, 1, c), (-1, 1, mem), (hw, 1, c), (-1, 1, mem), (-1, 1), (-1,))
        attention_key = key("memory_attention", attention_dims, (ROTARY_OPTION,))
        model.memory_attention = _OVMemoryAttention(ma, _TraceableMemoryAttention(ma), attention_key, root, threads)
    engine.backend = "openvino"
    logger.info("SAM 2.1 %s: %s on OpenVINO (cache %s)", name, ", ".join(parts), root)

