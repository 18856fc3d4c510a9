"""Segment Anything: boxes -> masks.

:class:`SamSegmenter` wraps ``segment_anything.SamPredictor``: ``set_image`` encodes an image once,
``predict_boxes`` turns boxes into masks exactly as the original did
(``apply_boxes_torch`` + ``predict_torch(multimask_output=False)``).

With ``backend="openvino"`` the image encoder (its 1x3x1024x1024 padded input) and the mask
decoder's transformer and heads (a dynamic prompt count) run as OpenVINO parts
(:mod:`lang_sam.models.openvino`) in the predictor's own ``image_encoder`` / ``mask_decoder``
places; the prompt encoder, resizing and post-processing stay PyTorch's.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lang_sam.cache import EncodingCache
from lang_sam.errors import InvalidArgumentError
from lang_sam.hub import ModelSpec
from lang_sam.models.base import MaskLogits, Segmenter, prompt_count
from lang_sam.models.checkpoints import count_blocks, load_network, perturb, save_atomic
from lang_sam.patches import empty_parameters, quiet_third_party, use_fast_attention
from lang_sam.models.openvino import check_backend
from lang_sam.precision import autocast, check_precision
from lang_sam.results import MaskPrediction

logger = logging.getLogger(__name__)

__all__ = ["SamArch", "SPECS", "SamSegmenter", "build_sam_model", "sam_fingerprint", "random_sam_state_dict"]


@dataclass(frozen=True)
class SamArch:
    """Shape of a SAM network (see ``segment_anything.build_sam``)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything"
#: The SAM v1 registry entries (Meta, 2023-04, Apache-2.0): bare state dicts, sha256 published.
SPECS = tuple(
    ModelSpec("sam", name, file, arch, urls=(f"{_SAM_BASE}/{file}",), sha256=sha)
    for name, arch, file, sha in (
        ("vit_h", SamArch(1280, 32, 16, (7, 15, 23, 31)), "sam_vit_h_4b8939.pth",
         "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
        ("vit_l", SamArch(1024, 24, 16, (5, 11, 17, 23)), "sam_vit_l_0b3195.pth",
         "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
        ("vit_b", SamArch(768, 12, 12, (2, 5, 8, 11)), "sam_vit_b_01ec64.pth",
         "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
    )
)


@quiet_third_party()
def build_sam_model(spec_or_arch: ModelSpec | SamArch, *, empty: bool = False) -> torch.nn.Module:
    """Build a SAM network in eval mode with ``segment_anything.modeling`` classes.

    Random weights, or with ``empty=True`` parameters on the meta device (see
    :func:`lang_sam.patches.empty_parameters`).
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


class SamSegmenter(Segmenter):
    """A loaded SAM network and its ``SamPredictor`` on a device: the
    :class:`~lang_sam.models.base.Segmenter` of the ``sam`` family.

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

    Chunks change float32 rounding, nothing else. How many prompts the mask decoder takes at once
    can change the order in which its matrix products add (batch-size-dependent BLAS kernels, e.g.
    AVX2; a batch of one prompt also gets another memory layout in ``output_upscaling``, where
    GELU rounds differently), so logits move by about 1e-7 and a pixel whose logit is that close to
    0 (SAM's ``mask_threshold``) may flip. Prompts that fit in one chunk are decoded exactly as one
    ``SamPredictor.predict_torch`` call (bit for bit); more are not one call, as the original's
    were. ``tests/test_performance.py`` bounds the difference (1e-5 on logits and scores).

    ``backend="openvino"`` (CPU only; ``weights``: the checkpoint path, which names and locates
    the converted-part cache) runs the image encoder and the mask decoder on OpenVINO, at
    ``precision`` ``"fp32"`` (agrees with PyTorch within float32 rounding) or ``"int8"``
    (NNCF, approximate); ``threads``: OpenVINO's inference threads (default: the physical cores).
    """

    backends = ("pytorch", "openvino")

    @quiet_third_party()
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
        backend: str = "pytorch",
        weights: str | os.PathLike | None = None,
        threads: int | None = None,
    ):
        from segment_anything import SamPredictor

        self.device = torch.device(device)
        self.name = name
        self.backend = check_backend(backend)
        self.precision = check_precision(precision, self.device, self.backend)
        self.model = model.to(self.device).eval()
        if fast_attention:
            use_fast_attention(self.model)
        self.predictor = SamPredictor(self.model)
        # segment-anything's PromptEncoder: 4x its image embedding grid (256 at a 1024-px input)
        self.mask_input_size = int(self.predictor.model.prompt_encoder.mask_input_size[0])
        self.cache = EncodingCache(cache_size)
        if chunk_size < 1:
            raise InvalidArgumentError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.chunk_bytes = chunk_bytes
        if self.backend == "openvino":
            from lang_sam.models.sam_openvino import to_openvino

            to_openvino(self, weights, threads=threads, fast_attention=fast_attention)

    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        """How many prompts are decoded together for an image of ``height x width`` pixels."""
        per_prompt = 4 * height * width * masks_per_prompt
        return max(1, min(self.chunk_size, self.chunk_bytes // per_prompt))

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        ckpt_path: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        *,
        progress: bool = True,
        **kwargs,
    ) -> "SamSegmenter":
        """Resolve ``spec``'s SAM checkpoint (see :mod:`lang_sam.hub`), check it is a SAM of
        ``spec.arch``'s shape and load it; ``kwargs`` go to the constructor.

        Raises:
            WeightsNotFoundError, DownloadError, ChecksumMismatchError, CheckpointError: finding,
                fetching or reading the SAM file failed (see
                :func:`~lang_sam.models.checkpoints.load_network`).
            InvalidArgumentError: an unknown option (``kwargs``), a bad ``chunk_size`` or
                ``backend``, ``backend="openvino"`` on a device other than the CPU.
            InvalidPrecisionError: a precision the backend does not run at.
            BackendUnavailableError: ``backend="openvino"`` without OpenVINO installed.
        """
        model, path = load_network(spec, ckpt_path, lambda s: build_sam_model(s, empty=True),
                                   sam_fingerprint, progress=progress)
        logger.info("loaded SAM %s from %s", spec.name, path)
        return cls(model, device, spec.name, weights=path, **kwargs)

    @classmethod
    def write_random_checkpoint(cls, path: str | os.PathLike, arch: SamArch, seed: int = 0, **options: Any) -> Path:
        """Save a SAM of ``arch`` with random weights (:func:`random_sam_state_dict`) in the released
        format, a bare state dict.

        Raises:
            InvalidArgumentError: an option is given (SAM v1's writer takes none).
        """
        if options:
            raise InvalidArgumentError(f"the SAM writer takes no option(s) {sorted(options)}")
        return save_atomic(random_sam_state_dict(arch, seed), path)

    def check_image_size(self, height: int, width: int, what: str | None = None) -> None:
        """An image whose short side SAM's ``ResizeLongestSide`` (long side to the encoder's
        ``img_size``, 1024 px) would round to 0 pixels (its long side more than ``2 * 1024`` times
        the short one) raises :class:`~lang_sam.errors.ImageTooThinError`; Pillow raised a plain
        ValueError."""
        from lang_sam.validation import check_resized

        transform = self.predictor.transform
        side = int(transform.target_length)
        check_resized(height, width, transform.get_preprocess_shape(height, width, side),
                      engine=f"SAM {self.name!r}", resize=f"long side to {side} px", max_aspect=2 * side,
                      inclusive=True, what=what)

    @quiet_third_party()
    def encode(self, image: np.ndarray, key: str | None = None) -> tuple:
        """Run the image encoder on an ``HxWx3`` uint8 RGB image, or reuse the cached encoding for
        the content ``key`` (see :func:`lang_sam.cache.image_key`). Returns an opaque encoding
        (``(features (1, C, 64, 64), original_size, input_size)``) for :meth:`use`. An image too
        thin for SAM's resize raises :class:`~lang_sam.errors.ImageTooThinError`."""
        self.check_image_size(*image.shape[:2])
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
        This is the original's computation (``apply_boxes_torch`` + ``predict_torch`` with
        ``multimask_output=False``).
        """
        return self.predict(boxes=boxes).masks

    @quiet_third_party()
    def predict(
        self,
        *,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        return_low_res: bool = False,
    ) -> "MaskPrediction":
        """Masks for a batch of ``B`` prompts on the image given to :meth:`set_image`.

        Inputs are in pixels of that image, already checked and batched (see
        :func:`lang_sam.validation.check_sam_prompts`):

        - ``boxes``: ``(B, 4)`` xyxy;
        - ``points``: ``(B, K, 2)`` xy, with ``point_labels`` ``(B, K)`` (1 foreground, 0 background);
        - ``mask_input``: ``(B, 1, 256, 256)`` low-resolution logits from an earlier call.

        Coordinates given as torch tensors are mapped to SAM's 1024-px frame in float32 with
        ``apply_*_torch`` (as the original lang-sam and ``predict_torch`` callers do); numpy arrays
        in float64 with ``apply_coords`` / ``apply_boxes``, as ``SamPredictor.predict`` does, so
        that both give bit-identical results to their upstream counterparts.

        Returns a :class:`~lang_sam.results.MaskPrediction`: masks ``(B, C, H, W)`` bool,
        iou_scores ``(B, C)`` (SAM's predicted IoU) and, with ``return_low_res``, low_res_logits ``(B, C, 256, 256)``; ``C`` is
        3 with ``multimask_output`` else 1. Prompts are decoded in chunks (see the class), on the CPU.
        """
        p = self.predictor
        H, W = p.original_size
        n = prompt_count(boxes, points, mask_input)
        c = 3 if multimask_output else 1
        masks = torch.empty((n, c, H, W), dtype=torch.bool)
        scores = torch.empty((n, c), dtype=torch.float32)
        low_res = torch.empty((n, c, *mask_input.shape[-2:]) if mask_input is not None
                              else (n, c, self.mask_input_size, self.mask_input_size),
                              dtype=torch.float32) if return_low_res else None
        boxes = _to_input_frame(boxes, p.transform.apply_boxes, p.transform.apply_boxes_torch, p.original_size)
        points = _to_input_frame(points, p.transform.apply_coords, p.transform.apply_coords_torch,
                                 p.original_size)
        if point_labels is not None:
            point_labels = torch.as_tensor(point_labels, dtype=torch.int)
        if mask_input is not None:
            mask_input = torch.as_tensor(mask_input, dtype=torch.float)
        step = self.boxes_per_chunk(H, W, c)
        with torch.no_grad(), autocast(self.device, self.precision):
            for start in range(0, n, step):
                part = slice(start, min(start + step, n))

                def chunk(t):
                    return t[part].to(p.device) if t is not None else None

                m, iou, low = p.predict_torch(
                    point_coords=chunk(points), point_labels=chunk(point_labels), boxes=chunk(boxes),
                    mask_input=chunk(mask_input), multimask_output=multimask_output,
                )
                masks[part] = m.cpu()
                scores[part] = iou.float().cpu()
                if low_res is not None:
                    low_res[part] = low.float().cpu()
        return MaskPrediction(masks, scores, low_res)


    @quiet_third_party()
    def predict_logits(self, *, points, point_labels, mask_input=None,
                       multimask_output: bool = True) -> MaskLogits:
        """Mask logits for ``B`` point prompts in one ``predict_torch(return_logits=True)`` call,
        as ``SamAutomaticMaskGenerator`` decodes its batches (see
        :meth:`lang_sam.models.base.Segmenter.predict_logits`): numpy points are mapped with
        ``apply_coords`` in their own dtype (the generator's float64 grid stays float64), so the
        logits are bit for bit the generator's. Returns CPU float32 tensors."""
        p = self.predictor
        if isinstance(points, torch.Tensor):
            coords = p.transform.apply_coords_torch(points, p.original_size)
        else:
            coords = torch.as_tensor(p.transform.apply_coords(np.asarray(points), p.original_size))
        labels = torch.as_tensor(point_labels, dtype=torch.int)
        masks_in = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float).to(p.device)
        with torch.no_grad(), autocast(self.device, self.precision):
            logits, iou, low = p.predict_torch(coords.to(p.device), labels.to(p.device), mask_input=masks_in,
                                               multimask_output=multimask_output, return_logits=True)
        return MaskLogits(logits.float().cpu(), iou.float().cpu(), low.float().cpu())


def _to_input_frame(coords, numpy_fn, torch_fn, original_size) -> torch.Tensor | None:
    if coords is None:
        return None
    if isinstance(coords, torch.Tensor):
        return torch_fn(coords, original_size)
    return torch.as_tensor(numpy_fn(np.asarray(coords), original_size), dtype=torch.float)


def random_sam_state_dict(arch: ModelSpec | SamArch, seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of a SAM network of ``arch`` (or a spec's) with random weights (norms and
    biases too: :func:`~lang_sam.models.checkpoints.perturb`), the same for the same ``seed``."""
    torch.manual_seed(seed)
    net = build_sam_model(arch)
    perturb(net, torch.Generator().manual_seed(seed))
    return net.state_dict()
