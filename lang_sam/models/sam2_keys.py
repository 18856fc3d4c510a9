"""SAM 2.1 checkpoints in Meta's names <-> transformers' names: :func:`meta_to_transformers` converts
a released ``sam2.1_hiera_*.pt`` state dict at load time (:mod:`lang_sam.models.sam2`), and
:func:`transformers_to_meta` writes random-weight ones in the released layout.

Written from the two networks' module trees (Meta's ``sam2.modeling`` and transformers'
``modeling_sam2_video``): one template per parameter family, ``{a}`` / ``{b}`` an index, ``{p}``
weight or bias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping

import torch

from lang_sam.errors import InvalidArgumentError

__all__ = ["meta_to_transformers", "transformers_to_meta"]

#: Blocks of Meta's memory-encoder mask downsampler (total stride 16 in steps of 2).
_DOWNSAMPLER_LAYERS = 4

# Written from the two networks' module trees (Meta's sam2.modeling and transformers'
# modeling_sam2_video): one template per parameter family, "{a}" / "{b}" an index, "{p}" weight or bias.
# Each template pair is used both ways. Three things are not renames and are handled apart: Meta's
# four point embeddings (one Embedding each) are one 4-row Embedding in transformers; Meta's random
# Fourier matrix is stored twice by transformers (prompt encoder and image-wide positional embedding);
# Meta's memory-encoder downsampler is one Sequential (conv, norm, GELU) x 4 + conv.

_ATTN = ("q_proj", "k_proj", "v_proj")


def _templates() -> list[tuple[str, str]]:
    t = [
        ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
        ("no_mem_embed", "no_memory_embedding"),
        ("no_mem_pos_enc", "no_memory_positional_encoding"),
        ("no_obj_ptr", "no_object_pointer"),
        ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
        ("mask_downsample.{p}", "mask_downsample.{p}"),
        ("obj_ptr_tpos_proj.{p}", "temporal_positional_encoding_projection_layer.{p}"),
        ("image_encoder.trunk.pos_embed", "vision_encoder.backbone.pos_embed"),
        ("image_encoder.trunk.pos_embed_window", "vision_encoder.backbone.pos_embed_window"),
        ("image_encoder.trunk.patch_embed.proj.{p}", "vision_encoder.backbone.patch_embed.projection.{p}"),
        ("image_encoder.trunk.blocks.{a}.norm{b}.{p}", "vision_encoder.backbone.blocks.{a}.layer_norm{b}.{p}"),
        ("image_encoder.trunk.blocks.{a}.attn.qkv.{p}", "vision_encoder.backbone.blocks.{a}.attn.qkv.{p}"),
        ("image_encoder.trunk.blocks.{a}.attn.proj.{p}", "vision_encoder.backbone.blocks.{a}.attn.proj.{p}"),
        ("image_encoder.trunk.blocks.{a}.proj.{p}", "vision_encoder.backbone.blocks.{a}.proj.{p}"),
        ("image_encoder.trunk.blocks.{a}.mlp.layers.0.{p}", "vision_encoder.backbone.blocks.{a}.mlp.proj_in.{p}"),
        ("image_encoder.trunk.blocks.{a}.mlp.layers.1.{p}", "vision_encoder.backbone.blocks.{a}.mlp.proj_out.{p}"),
        ("image_encoder.neck.convs.{a}.conv.{p}", "vision_encoder.neck.convs.{a}.{p}"),
        ("memory_attention.layers.{a}.linear{b}.{p}", "memory_attention.layers.{a}.linear{b}.{p}"),
        ("memory_attention.layers.{a}.norm{b}.{p}", "memory_attention.layers.{a}.layer_norm{b}.{p}"),
        ("memory_attention.norm.{p}", "memory_attention.layer_norm.{p}"),
        ("memory_encoder.pix_feat_proj.{p}", "memory_encoder.feature_projection.{p}"),
        ("memory_encoder.fuser.layers.{a}.gamma", "memory_encoder.memory_fuser.layers.{a}.scale"),
        ("memory_encoder.fuser.layers.{a}.dwconv.{p}", "memory_encoder.memory_fuser.layers.{a}.depthwise_conv.{p}"),
        ("memory_encoder.fuser.layers.{a}.norm.{p}", "memory_encoder.memory_fuser.layers.{a}.layer_norm.{p}"),
        ("memory_encoder.fuser.layers.{a}.pwconv{b}.{p}",
         "memory_encoder.memory_fuser.layers.{a}.pointwise_conv{b}.{p}"),
        ("memory_encoder.out_proj.{p}", "memory_encoder.projection.{p}"),
        ("sam_prompt_encoder.not_a_point_embed.weight", "prompt_encoder.not_a_point_embed.weight"),
        ("sam_prompt_encoder.no_mask_embed.weight", "prompt_encoder.no_mask_embed.weight"),
        ("sam_mask_decoder.transformer.layers.{a}.norm{b}.{p}", "mask_decoder.transformer.layers.{a}.layer_norm{b}.{p}"),
        ("sam_mask_decoder.transformer.layers.{a}.mlp.layers.0.{p}", "mask_decoder.transformer.layers.{a}.mlp.proj_in.{p}"),
        ("sam_mask_decoder.transformer.layers.{a}.mlp.layers.1.{p}",
         "mask_decoder.transformer.layers.{a}.mlp.proj_out.{p}"),
        ("sam_mask_decoder.transformer.norm_final_attn.{p}", "mask_decoder.transformer.layer_norm_final_attn.{p}"),
        ("sam_mask_decoder.output_upscaling.0.{p}", "mask_decoder.upscale_conv1.{p}"),
        ("sam_mask_decoder.output_upscaling.1.{p}", "mask_decoder.upscale_layer_norm.{p}"),
        ("sam_mask_decoder.output_upscaling.3.{p}", "mask_decoder.upscale_conv2.{p}"),
        ("sam_mask_decoder.conv_s{b}.{p}", "mask_decoder.conv_s{b}.{p}"),
    ]
    for i, name in ((0, "conv1"), (1, "layer_norm1"), (3, "conv2"), (4, "layer_norm2"), (6, "conv3")):
        t.append((f"sam_prompt_encoder.mask_downscaling.{i}.{{p}}", f"prompt_encoder.mask_embed.{name}.{{p}}"))
    for token in ("iou_token", "mask_tokens", "obj_score_token"):
        t.append((f"sam_mask_decoder.{token}.weight", f"mask_decoder.{token}.weight"))
    for proj in _ATTN + ("out_proj",):
        hf = "o_proj" if proj == "out_proj" else proj
        for attn in ("self_attn", "cross_attn_image"):
            t.append((f"memory_attention.layers.{{a}}.{attn}.{proj}.{{p}}",
                      f"memory_attention.layers.{{a}}.{attn}.{hf}.{{p}}"))
        for attn in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            t.append((f"sam_mask_decoder.transformer.layers.{{a}}.{attn}.{proj}.{{p}}",
                      f"mask_decoder.transformer.layers.{{a}}.{attn}.{hf}.{{p}}"))
        t.append((f"sam_mask_decoder.transformer.final_attn_token_to_image.{proj}.{{p}}",
                  f"mask_decoder.transformer.final_attn_token_to_image.{hf}.{{p}}"))
    # Three-layer MLPs: Meta's layers.0 / 1 / 2 are transformers' proj_in / layers.0 / proj_out.
    for meta, hf in (("sam_mask_decoder.output_hypernetworks_mlps.{a}", "mask_decoder.output_hypernetworks_mlps.{a}"),
                     ("sam_mask_decoder.iou_prediction_head", "mask_decoder.iou_prediction_head"),
                     ("sam_mask_decoder.pred_obj_score_head", "mask_decoder.pred_obj_score_head"),
                     ("obj_ptr_proj", "object_pointer_proj")):
        for i, name in ((0, "proj_in"), (1, "layers.0"), (2, "proj_out")):
            t.append((f"{meta}.layers.{i}.{{p}}", f"{hf}.{name}.{{p}}"))
    for i in range(_DOWNSAMPLER_LAYERS):
        t.append((f"memory_encoder.mask_downsampler.encoder.{3 * i}.{{p}}",
                  f"memory_encoder.mask_downsampler.layers.{i}.conv.{{p}}"))
        t.append((f"memory_encoder.mask_downsampler.encoder.{3 * i + 1}.{{p}}",
                  f"memory_encoder.mask_downsampler.layers.{i}.layer_norm.{{p}}"))
    t.append((f"memory_encoder.mask_downsampler.encoder.{3 * _DOWNSAMPLER_LAYERS}.{{p}}",
              "memory_encoder.mask_downsampler.final_conv.{p}"))
    return t


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, group in (("a", r"(?P<a>\d+)"), ("b", r"(?P<b>\d+)"), ("p", r"(?P<p>weight|bias)")):
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return re.compile(pattern + "$")


@dataclass
class _Rules:
    forward: list[tuple[re.Pattern, str]] = field(default_factory=list)
    backward: list[tuple[re.Pattern, str]] = field(default_factory=list)


@lru_cache(maxsize=None)
def _rules() -> _Rules:
    rules = _Rules()
    for meta, hf in _templates():
        rules.forward.append((_compile(meta), hf))
        rules.backward.append((_compile(hf), meta))
    return rules


def _rename(key: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, target in table:
        m = pattern.match(key)
        if m:
            return target.format(**m.groupdict())
    return None


_META_PE = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_HF_PE = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")
_META_POINTS = "sam_prompt_encoder.point_embeddings.{}.weight"
_HF_POINTS = "prompt_encoder.point_embed.weight"


def _convert(state_dict: Mapping[str, torch.Tensor], table: list[tuple[re.Pattern, str]],
             special: Callable[[str, torch.Tensor, dict[str, torch.Tensor]], bool],
             ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename every key of ``state_dict`` by ``table``, except those ``special`` handles itself
    (it writes into the output and returns True). Returns ``(converted, unknown keys)``."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if special(key, value, out):
            continue
        new = _rename(key, table)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    return out, unknown


def meta_to_transformers(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Meta's SAM 2.1 state dict (``sam2.1_hiera_*.pt``'s ``"model"``) in transformers'
    ``Sam2VideoModel`` names. Tensors are not copied (the four point embeddings are stacked into
    one). Returns ``(converted, unknown)``: ``unknown`` lists Meta-side keys no rule knows."""
    points: dict[int, torch.Tensor] = {}

    def special(key: str, value: torch.Tensor, out: dict[str, torch.Tensor]) -> bool:
        if key == _META_PE:
            for name in _HF_PE:
                out[name] = value
            return True
        m = re.fullmatch(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight", key)
        if m:
            points[int(m.group(1))] = value
        return m is not None

    out, unknown = _convert(state_dict, _rules().forward, special)
    if points:
        if sorted(points) != list(range(len(points))):
            unknown.extend(_META_POINTS.format(i) for i in sorted(points))
        else:
            out[_HF_POINTS] = torch.cat([points[i] for i in range(len(points))], dim=0)
    return out, unknown


def transformers_to_meta(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`meta_to_transformers`: a ``Sam2VideoModel`` state dict in Meta's names
    (what ``torch.save({"model": ...})`` of Meta's ``SAM2Base`` holds).

    Raises:
        InvalidArgumentError: a key has no Meta name (the message names the first five).
    """
    def special(key: str, value: torch.Tensor, out: dict[str, torch.Tensor]) -> bool:
        if key in _HF_PE:
            out[_META_PE] = state_dict[_HF_PE[0]]
        elif key == _HF_POINTS:
            for i, row in enumerate(value):
                out[_META_POINTS.format(i)] = row[None].clone()
        return key in _HF_PE or key == _HF_POINTS

    out, unknown = _convert(state_dict, _rules().backward, special)
    if unknown:
        raise InvalidArgumentError(f"{len(unknown)} keys have no Meta name: {unknown[:5]}")
    return out
