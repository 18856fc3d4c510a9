"""Segment Anything: boxes -> masks.

:class:`SamSegmenter` wraps ``segment_anything.SamPredictor``: ``set_image`` encodes an image once,
``predict_boxes`` turns boxes into masks exactly as the original did
(``apply_boxes_torch`` + ``predict_torch(multimask_output=False)``).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from lang_sam._checkpoints import (
    check_architecture,
    count_blocks,
    empty_parameters,
    load_into,
    strip_prefix,
)
from lang_sam.cache import EncodingCache
from lang_sam.precision import autocast, check_precision
from lang_sam.weights import ModelSpec, SamArch, load_checkpoint, resolve_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["SamSegmenter", "build_sam_model"]


def build_sam_model(spec_or_arch: ModelSpec | SamArch, *, empty: bool = False) -> torch.nn.Module:
    """Build a SAM network in eval mode with ``segment_anything.modeling`` classes.

    Random weights, or with ``empty=True`` parameters on the meta device (see
    :func:`lang_sam._checkpoints.empty_parameters`).
    """
    with empty_parameters() if empty else nullcontext():
        return _build_sam(spec_or_arch)


def _build_sam(spec_or_arch: ModelSpec | SamArch) -> torch.nn.Module:
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


_BIAS_BYTES = 128 * 2**20  # relative-position bias materialised at a time (global blocks)


def _sdpa_forward(self, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's ``Attention.forward`` with the softmax(QK^T)V done by
    ``scaled_dot_product_attention`` and the decomposed relative-position terms as its additive
    mask, built for a few heads at a time (the global blocks' full ``(B*heads, 4096, 4096)`` bias
    would take 0.8-1 GB). Same math; float rounding differs by ~1e-7 relative."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
    if not self.use_rel_pos:
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
    else:
        Rh = get_rel_pos(H, H, self.rel_pos_h)
        Rw = get_rel_pos(W, W, self.rel_pos_w)
        out = torch.empty_like(q)
        step = max(1, _BIAS_BYTES // ((H * W) ** 2 * q.element_size()))
        for i in range(0, q.shape[0], step):
            qi = q[i:i + step]
            r_q = qi.reshape(qi.shape[0], H, W, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
            bias = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(qi.shape[0], H * W, H * W)
            out[i:i + step] = F.scaled_dot_product_attention(
                qi, k[i:i + step], v[i:i + step], attn_mask=bias.to(qi.dtype), scale=self.scale
            )
    out = out.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def use_fast_attention(sam: torch.nn.Module) -> torch.nn.Module:
    """Route every image-encoder attention block of ``sam`` through :func:`_sdpa_forward`."""
    from segment_anything.modeling.image_encoder import Attention

    for module in sam.image_encoder.modules():
        if isinstance(module, Attention):
            module.forward = _sdpa_forward.__get__(module)
    return sam


class SamSegmenter:
    """A loaded SAM network and its ``SamPredictor`` on a device.

    :meth:`set_image` encodes an image once (and keeps up to ``cache_size`` encodings, keyed by
    image content: about 4 MiB each); :meth:`predict_boxes` answers boxes cheaply.

    ``fast_attention`` (default on) computes the image encoder's attention with
    ``scaled_dot_product_attention``: faster, and masks agree with the original's on >= 99.99 % of
    pixels (tests/test_performance.py).

    Memory for masks: the returned bool masks take ``N * H * W`` bytes. Boxes are decoded in chunks
    of at most ``chunk_size`` boxes and at most ``chunk_bytes`` of float32 full-size mask logits
    (at least one box per chunk), so the transient buffer stays under about
    ``max(chunk_bytes, 4 * H * W) * 1.25`` bytes whatever N is. A 4000x3000 photo with 100 boxes:
    1.2 GB of masks plus about 0.3 GB transient (the original: 4.8 GB of float32 logits at once).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device | str = "cpu",
        name: str = "",
        *,
        precision: str = "fp32",
        fast_attention: bool = True,
        cache_size: int = 2,
        chunk_size: int = 16,
        chunk_bytes: int = 256 * 2**20,
    ):
        from segment_anything import SamPredictor

        self.device = torch.device(device)
        self.name = name
        self.precision = check_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        if fast_attention:
            use_fast_attention(self.model)
        self.predictor = SamPredictor(self.model)
        self.cache = EncodingCache(cache_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.chunk_bytes = chunk_bytes

    def boxes_per_chunk(self, height: int, width: int) -> int:
        """How many boxes are decoded together for an image of ``height x width`` pixels."""
        return max(1, min(self.chunk_size, self.chunk_bytes // (4 * height * width)))

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        ckpt_path: str | None = None,
        device: torch.device | str = "cpu",
        *,
        progress: bool = True,
        **kwargs,
    ) -> "SamSegmenter":
        """Resolve, load and check ``spec``'s checkpoint (see :mod:`lang_sam.weights`)."""
        path = resolve_checkpoint(spec, ckpt_path, progress=progress)
        state = strip_prefix(load_checkpoint(path))
        check_architecture(spec, state, str(path), sam_fingerprint)
        model = build_sam_model(spec, empty=True)
        load_into(model, state, spec, str(path), sam_fingerprint)
        logger.info("loaded SAM %s from %s", spec.name, path)
        return cls(model, device, spec.name, **kwargs)

    def encode(self, image: np.ndarray, key: str | None = None) -> tuple:
        """Run the image encoder on an ``HxWx3`` uint8 RGB image, or reuse the cached encoding for
        the content ``key`` (see :func:`lang_sam.cache.image_key`). Returns an opaque encoding
        (``(features (1, C, 64, 64), original_size, input_size)``) for :meth:`use`."""
        cached = self.cache.get((key, self.precision)) if key is not None else None
        if cached is not None:
            return cached
        p = self.predictor
        with torch.no_grad(), autocast(self.device, self.precision):
            p.set_image(image)
        encoding = (p.features, p.original_size, p.input_size)
        if key is not None:
            self.cache.put((key, self.precision), encoding)
        return encoding

    def use(self, encoding: tuple) -> None:
        """Make ``encoding`` (from :meth:`encode`) the image that :meth:`predict_boxes` answers for."""
        p = self.predictor
        p.reset_image()
        p.features, p.original_size, p.input_size = encoding
        p.is_image_set = True

    def set_image(self, image: np.ndarray, key: str | None = None) -> None:
        """Encode an ``HxWx3`` uint8 RGB image (or reuse its cached encoding) and select it."""
        self.use(self.encode(image, key))

    def predict_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Masks for ``(N, 4)`` float xyxy boxes in pixels of the image given to :meth:`set_image`.

        Returns ``(N, 1, H, W)`` bool masks on the CPU; boxes are decoded in chunks (see the class).
        """
        p = self.predictor
        H, W = p.original_size
        out = torch.empty((len(boxes), 1, H, W), dtype=torch.bool)
        transformed = p.transform.apply_boxes_torch(boxes, p.original_size)
        step = self.boxes_per_chunk(H, W)
        with torch.no_grad(), autocast(self.device, self.precision):
            for start in range(0, len(boxes), step):
                chunk = transformed[start:start + step].to(p.device)
                masks, _, _ = p.predict_torch(
                    point_coords=None, point_labels=None, boxes=chunk, multimask_output=False
                )
                out[start:start + len(chunk)] = masks.cpu()
        return out
