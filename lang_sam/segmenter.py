"""Segment Anything: boxes -> masks.

:class:`SamSegmenter` wraps ``segment_anything.SamPredictor``: ``set_image`` encodes an image once,
``predict_boxes`` turns boxes into masks exactly as the original did
(``apply_boxes_torch`` + ``predict_torch(multimask_output=False)``).
"""

from __future__ import annotations

import logging
from functools import partial

import numpy as np
import torch

from lang_sam._checkpoints import check_architecture, count_blocks, load_into, strip_prefix
from lang_sam.weights import ModelSpec, SamArch, load_checkpoint, resolve_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["SamSegmenter", "build_sam_model"]


def build_sam_model(spec_or_arch: ModelSpec | SamArch) -> torch.nn.Module:
    """Build a SAM network (random weights, eval mode) with ``segment_anything.modeling`` classes."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    a = spec_or_arch.arch if isinstance(spec_or_arch, ModelSpec) else spec_or_arch
    grid = a.image_size // a.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=a.encoder_depth,
            embed_dim=a.encoder_embed_dim,
            img_size=a.image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a.encoder_num_heads,
            patch_size=a.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(a.encoder_global_attn_indexes),
            window_size=a.window_size,
            out_chans=a.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=a.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(a.image_size, a.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=a.decoder_depth,
                embedding_dim=a.prompt_embed_dim,
                mlp_dim=a.decoder_mlp_dim,
                num_heads=a.decoder_num_heads,
            ),
            transformer_dim=a.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=a.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def sam_fingerprint(source) -> tuple | None:
    """(encoder width, encoder depth, embedding grid) of a :class:`SamArch` or a SAM state dict."""
    if isinstance(source, SamArch):
        return (source.encoder_embed_dim, source.encoder_depth, source.image_size // source.patch_size)
    try:
        width = source["image_encoder.patch_embed.proj.weight"].shape[0]
        grid = source["image_encoder.pos_embed"].shape[1]
    except (KeyError, AttributeError, IndexError, TypeError):
        return None
    return (width, count_blocks(source, "image_encoder.blocks."), grid)


class SamSegmenter:
    """A loaded SAM network and its ``SamPredictor`` on a device."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu", name: str = ""):
        from segment_anything import SamPredictor

        self.device = torch.device(device)
        self.name = name
        self.model = model.to(self.device).eval()
        self.predictor = SamPredictor(self.model)

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        ckpt_path: str | None = None,
        device: torch.device | str = "cpu",
        *,
        progress: bool = True,
    ) -> "SamSegmenter":
        """Resolve, load and check ``spec``'s checkpoint (see :mod:`lang_sam.weights`)."""
        path = resolve_checkpoint(spec, ckpt_path, progress=progress)
        state = strip_prefix(load_checkpoint(path))
        check_architecture(spec, state, str(path), sam_fingerprint)
        model = build_sam_model(spec)
        load_into(model, state, spec, str(path), sam_fingerprint)
        logger.info("loaded SAM %s from %s", spec.name, path)
        return cls(model, device, spec.name)

    def set_image(self, image: np.ndarray) -> None:
        """Encode an ``HxWx3`` uint8 RGB image (runs the image encoder once)."""
        self.predictor.set_image(image)

    def predict_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Masks for ``(N, 4)`` float xyxy boxes in pixels of the image given to :meth:`set_image`.

        Returns ``(N, 1, H, W)`` bool masks on the CPU.
        """
        predictor = self.predictor
        transformed = predictor.transform.apply_boxes_torch(boxes, predictor.original_size)
        with torch.no_grad():
            masks, _, _ = predictor.predict_torch(
                point_coords=None,
                point_labels=None,
                boxes=transformed.to(predictor.device),
                multimask_output=False,
            )
        return masks.cpu()
