"""SAM 2.1's memory attention for tracking, with the work that does not depend on the object done
once per frame (bit-identical results).

Where a tracked frame's time goes (``benchmarks/README.md``, "Video: where a tracked frame's time
goes"): with ``sam2.1_hiera_tiny`` at 640x360 and three objects, about 80 % is the memory attention,
run once per object (as in Meta's ``SAM2VideoPredictor``), and two thirds of that is the
scaled-dot-product kernel of the cross-attention from the frame's 64x64 = 4096 tokens to the memories
of up to 7 past frames (7 x 4096 tokens plus the object pointers, 256 wide): compute that grows
with objects x memory frames and that no reordering of exact float32 arithmetic removes. What is
removed here is the rest that was repeated:

- the first layer's self-attention reads only the current frame's features, the same for every
  object: it is computed once per frame and shared;
- the rotary encoding of the memory keys repeated its cos / sin tables to the memory length in
  every layer of every object, and concatenated the rotated keys with the object pointers' (two
  copies of ``(S, 256)`` each): the tables are repeated once per object and frame, and the
  rotated keys written in place.

Same operations on the same values, so logits, masks and scores are bit-identical to transformers'
stock path (tests/test_sam2.py asserts it). :func:`fast_memory_attention` installs this on a
``Sam2VideoModel`` for one tracked frame (:meth:`lang_sam.models.sam2.Sam2Segmenter.track`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, cast

import torch

__all__ = ["fast_memory_attention"]


@contextmanager
def fast_memory_attention(model: Any) -> Iterator[None]:
    """Run ``model.memory_attention`` (a transformers ``Sam2VideoMemoryAttention``) through
    :func:`_memory_attention` while the block lasts: one tracked frame, so that the shared
    first-layer self-attention is that frame's. Restores the stock forward afterwards (also on
    error). A stand-in without transformers' layers (the OpenVINO part of
    :mod:`lang_sam.models.sam2_openvino`) runs as it is.

    Raises:
        AttributeError: ``model`` has no ``memory_attention``.
    """
    attention = model.memory_attention
    if not hasattr(attention, "rotary_emb"):
        yield
        return
    shared: dict[str, Any] = {}

    def forward(*args, **kwargs):
        return _memory_attention(attention, shared, *args, **kwargs)

    attention.forward = forward  # an instance attribute: nn.Module.__call__ looks it up there first
    try:
        yield
    finally:
        del attention.forward


def _memory_attention(attention: Any, shared: dict[str, Any], current_vision_features: torch.Tensor,
                      memory: torch.Tensor, current_vision_position_embeddings: torch.Tensor | None = None,
                      memory_posision_embeddings: torch.Tensor | None = None,
                      num_object_pointer_tokens: int = 0) -> torch.Tensor:
    """transformers' ``Sam2VideoMemoryAttention.forward`` (same arguments, spelling included, and
    result: ``(HW, B, 256)`` float32 for ``current_vision_features`` ``(HW, B, 256)`` and
    ``memory`` / ``memory_posision_embeddings`` ``(S, B, 64)``), with the first layer's
    self-attention taken from ``shared`` when its input is the same tensor as the last call's
    and :func:`_cross_attention` for the memory attention."""
    output = current_vision_features
    if current_vision_position_embeddings is not None:
        output = output + 0.1 * current_vision_position_embeddings
    output = output.transpose(0, 1)
    memory = memory.transpose(0, 1).unsqueeze(1)
    memory_pos = cast(torch.Tensor, memory_posision_embeddings).transpose(0, 1).unsqueeze(1)
    rope = attention.rotary_emb(output, attention.position_ids)
    keys = memory + memory_pos
    key_rope = _key_rope(rope, keys.shape[-2] - num_object_pointer_tokens)
    for i, layer in enumerate(attention.layers):
        queries = output.unsqueeze(1) if output.ndim == 3 else output
        if i == 0 and shared.get("input") is current_vision_features and \
                shared.get("pos") is current_vision_position_embeddings:
            queries = shared["output"]
        else:
            q = layer.layer_norm1(queries)
            q, _ = layer.self_attn(query=q, key=q, value=q, position_embeddings=rope)
            queries = queries + layer.dropout1(q)
            if i == 0:
                shared.update(input=current_vision_features, pos=current_vision_position_embeddings, output=queries)
        q = _cross_attention(layer.cross_attn_image, layer.layer_norm2(queries), keys, memory, rope, key_rope)
        queries = queries + layer.dropout2(q)
        q = layer.layer_norm3(queries)
        q = layer.linear2(layer.dropout(layer.activation(layer.linear1(q))))
        output = queries + layer.dropout3(q)
    return attention.layer_norm(output).transpose(0, 1)


def _key_rope(rope: tuple[torch.Tensor, torch.Tensor], rotated: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The query's ``(1, L, D)`` cos / sin tables repeated over the ``rotated`` memory keys (a whole
    number of frames of ``L`` tokens, as transformers' ``repeat_freqs_k`` requires), and that count."""
    cos, sin = rope
    length = cos.shape[-2]
    if rotated == length or rotated == 0:
        return cos, sin, rotated
    factor = rotated // length
    return cos.repeat(1, 1, factor, 1), sin.repeat(1, 1, factor, 1), rotated


def _cross_attention(attn: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     rope: tuple[torch.Tensor, torch.Tensor],
                     key_rope: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
    """transformers' ``Sam2VideoRoPEAttention.forward`` (its first output, ``(B, P, L, 256)``) for
    ``query`` ``(B, P, L, 256)`` and ``key`` / ``value`` ``(B, P, S, 64)`` float32, the keys'
    rotary tables given (:func:`_key_rope`) and the rotated keys written in place: the same
    elementwise operations as ``apply_rotary_pos_emb_2d``, so the same bits."""
    from transformers.models.sam2_video.modeling_sam2_video import ALL_ATTENTION_FUNCTIONS, \
        apply_rotary_pos_emb_2d, eager_attention_forward, rotate_pairwise

    b, p = query.shape[:2]
    shape = (b * p, -1, attn.num_attention_heads, attn.head_dim)
    q = attn.q_proj(query).view(*shape).transpose(1, 2)
    k = attn.k_proj(key).view(*shape).transpose(1, 2)
    v = attn.v_proj(value).view(*shape).transpose(1, 2)
    cos, sin = rope
    cos_k, sin_k, rotated = key_rope
    if q.dtype != torch.float32 or k.dtype != torch.float32:  # bf16 autocast: the stock rotation, cast back
        q, k = apply_rotary_pos_emb_2d(q, k, cos, sin, num_k_exclude_rope=k.shape[-2] - rotated,
                                       repeat_freqs_k=attn.rope_k_repeat)
    else:  # transformers' float32 arithmetic, the key tables repeated once and no concatenation
        q = (q * cos) + (rotate_pairwise(q) * sin)
        if rotated:
            k_rot = k[..., :rotated, :]
            keys = torch.empty(k.shape, dtype=k.dtype, device=k.device)
            out = keys[..., :rotated, :]
            torch.mul(k_rot, cos_k, out=out)
            out.add_(rotate_pairwise(k_rot) * sin_k)
            keys[..., rotated:, :] = k[..., rotated:, :]
            k = keys
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(attn.config._attn_implementation, eager_attention_forward)
    output, _ = attention(attn, q, k, v, attention_mask=None, dropout=0.0, scaling=attn.scaling,
                          is_causal=attn.is_causal)
    output = output.reshape(b, p, -1, attn.num_attention_heads * attn.head_dim).contiguous()
    return attn.o_proj(output)
