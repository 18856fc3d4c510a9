"""SAM v1 on OpenVINO: :class:`~lang_sam.models.segmenter.SamSegmenter`'s heavy parts as compiled parts.

The image encoder (``ImageEncoderViT``: one ``1x3xSxS`` float32 input, the preprocessed image
padded to ``S = img_size``, 1024 px for the released models; ``1xCx(S/16)x(S/16)`` out) and the
mask decoder (``MaskDecoder.predict_masks``: the image embedding and its positional encoding,
``1xCxgxg`` each, the sparse prompt embeddings ``BxTxC`` and the dense ones ``BxCxgxg``, with ``B``
prompts of ``T`` tokens both dynamic; ``Bx4x(4g)x(4g)`` mask logits and ``Bx4`` IoU scores out)
are converted once (:func:`lang_sam.models.openvino.compile_part`) and put in the
``segment_anything`` model's ``image_encoder`` / ``mask_decoder`` places, so ``SamPredictor``,
its transforms, the prompt encoder and the post-processing run unchanged around them.
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast

import torch

from lang_sam.errors import InvalidArgumentError
from lang_sam.models.openvino import PartKey, cache_dir, check_target, compile_part, int8_quantizer, weights_sha256
from lang_sam.precision import OPENVINO_PRECISIONS

logger = logging.getLogger(__name__)

__all__ = ["to_openvino", "OVImageEncoder", "OVMaskDecoder"]


class OVImageEncoder(torch.nn.Module):
    """An OpenVINO part in ``Sam.image_encoder``'s place: ``(1, 3, S, S)`` float32 -> the
    ``(1, C, S/16, S/16)`` embedding; ``img_size`` is read by ``Sam.preprocess`` / ``SamPredictor``."""

    def __init__(self, part: Any, img_size: int):
        super().__init__()
        self.part, self.img_size = part, img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.part(x.float())[0]


def _flat_block_forward(block: Any, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's ``Block.forward`` with the residual stream taken through the layer norms,
    the residual adds and the MLP as ``(B, H*W, C)`` instead of ``(B, H, W, C)``: the same
    operations on the same values (a reshape moves no number). Converted from the 4-D form, OpenVINO's
    CPU plugin keeps the stream in a channels-last layout and reorders it around every layer norm:
    vit_b's encoder took 3.52 s with 50 reorders (0.70 s), 2.61 s in this form (measured on a
    2-core AMD EPYC, static 1024 px input)."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    b, h, w, c = x.shape
    shortcut = x
    x = block.norm1(x.reshape(b, h * w, c)).reshape(b, h, w, c)
    if block.window_size > 0:
        x, pad_hw = window_partition(x, block.window_size)
    x = block.attn(x)
    if block.window_size > 0:
        x = window_unpartition(x, block.window_size, pad_hw, (h, w))
    x = (shortcut + x).reshape(b, h * w, c)
    x = x + block.mlp(block.norm2(x))
    return x.reshape(b, h, w, c)


class _TracedEncoder(torch.nn.Module):
    """The image encoder in the form that is converted: every block through
    :func:`_flat_block_forward` while it runs (the blocks are restored after, also on error)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = list(cast(torch.nn.ModuleList, self.encoder.blocks))
        for block in blocks:  # an instance attribute: nn.Module.__call__ looks it up there first
            block.forward = _flat_block_forward.__get__(block)
        try:
            return self.encoder(x)
        finally:
            for block in blocks:
                del block.forward


class _PredictMasks(torch.nn.Module):
    """``MaskDecoder.predict_masks`` as a module with tensor inputs only (what is converted)."""

    def __init__(self, decoder: torch.nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, image_embeddings, image_pe, sparse, dense):
        return self.decoder.predict_masks(image_embeddings, image_pe, sparse, dense)


class OVMaskDecoder(torch.nn.Module):
    """An OpenVINO part in ``Sam.mask_decoder``'s place, called as ``MaskDecoder.forward``: the
    converted ``predict_masks`` gives all four masks, and the one (``multimask_output=False``) or
    the last three are kept, as ``MaskDecoder.forward`` does."""

    def __init__(self, part: Any):
        super().__init__()
        self.part = part

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        masks, iou = self.part(image_embeddings.float(), image_pe.float(), sparse_prompt_embeddings.float(),
                               dense_prompt_embeddings.float())
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou[:, keep]


def _calibration(size: int) -> list[tuple[torch.Tensor]]:
    """Encoder inputs for INT8 calibration (``(1, 3, size, size)``, normalized pixel scale): white
    noise and smooth (upsampled) noise, seeded."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, size, size, generator=g)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 3, size // 32, size // 32, generator=g) * 1.5,
                                             size=(size, size), mode="bilinear", align_corners=False)
    return [(noise,), (smooth,)]


def to_openvino(segmenter: Any, weights: str | os.PathLike | None, *, threads: int | None = None,
                fast_attention: bool = True) -> None:
    """Put ``segmenter``'s (a ``SamSegmenter`` on the CPU) image encoder and mask decoder on
    OpenVINO, at its ``precision`` (``"fp32"``; ``"int8"``: the encoder quantized by NNCF, the
    decoder at fp32). A part that
    cannot be converted stays on PyTorch (:class:`~lang_sam.models.openvino.BackendFallbackWarning`).

    Raises:
        DeviceError, InvalidPrecisionError: the segmenter is not on the CPU at fp32 or int8.
        InvalidArgumentError: ``weights`` (the checkpoint path: the cache's key and place) is not given.
        BackendUnavailableError: OpenVINO (or, for int8, NNCF) is not installed.
    """
    check_target(segmenter.device, segmenter.precision, engine="SAM", precisions=OPENVINO_PRECISIONS)
    if weights is None:
        raise InvalidArgumentError("backend='openvino' needs the checkpoint path (weights=): it names and "
                                   "locates the converted parts' cache; got None")
    root = cache_dir(weights)
    sha = weights_sha256(weights, root)
    model = segmenter.model
    name = segmenter.name or "sam"
    precision = segmenter.precision

    encoder = model.image_encoder
    size = int(encoder.img_size)
    x = torch.zeros(1, 3, size, size)
    # INT8: post-training quantization of the encoder (3.2x OpenVINO fp32's speed for vit_b measured
    # here; weight compression alone gave 1.3x): calibrated on normalized inputs, noise and smooth
    quantize = int8_quantizer(_calibration(size)) if precision == "int8" else None
    key = PartKey(name, sha, "image_encoder", ((1, 3, size, size),), precision,
                  (("blocks", "flat"), ("fast_attention", str(bool(fast_attention))))
                  + ((("int8", "ptq"),) if quantize else ()))
    part = compile_part(key, _TracedEncoder(encoder), (x,), root, threads=threads, quantize=quantize, release=True)
    if part is not None:
        model.image_encoder = OVImageEncoder(part, size)  # the PyTorch encoder's weights are freed

    prompt = model.prompt_encoder
    with torch.no_grad():
        pe = prompt.get_dense_pe()
        sparse, dense = prompt(points=None, boxes=torch.tensor([[0.0, 0.0, size / 2, size / 2]]), masks=None)
    emb = torch.zeros_like(pe)
    channels, grid = pe.shape[1], tuple(pe.shape[2:])
    # the decoder stays float32 at int8 (a few ms a prompt; INT8 would not pay for its error)
    key = PartKey(name, sha, "mask_decoder", (tuple(emb.shape), tuple(pe.shape), (-1, -1, channels),
                                              (-1, channels, *grid)), "fp32")
    # buffers released after each call too: 13 prompts hold ~0.8 GB of them (vit_b), for ~0.1 s a call
    part = compile_part(key, _PredictMasks(model.mask_decoder), (emb, pe, sparse, dense), root, threads=threads,
                        release=True)
    if part is not None:
        model.mask_decoder = OVMaskDecoder(part)
    logger.info("SAM %s on OpenVINO (%s): image encoder %s, mask decoder %s", name, precision,
                type(model.image_encoder).__name__, type(model.mask_decoder).__name__)
