"""SAM 2.1: boxes / points / masks -> masks on images, and objects followed through a video.

:class:`Sam2Segmenter` runs transformers' ``Sam2VideoModel`` (one network for both: its image
encoder, prompt encoder and mask decoder answer image prompts; its memory attention and memory
encoder follow objects through frames). It loads **Meta's released files**
(``sam2.1_hiera_*.pt``, ``{"model": state_dict}`` in the layout of Meta's ``sam2`` package),
converting names at load time (:func:`lang_sam.models.sam2_keys.meta_to_transformers`), and computes what Meta's
``SAM2ImagePredictor`` computes: the same resize and normalisation, boxes given to the prompt
encoder as two corner points before any clicked points, the same dynamic single-mask choice and
upsampling (tests/test_sam2.py compares the two on the same weights).

Why not Meta's own ``sam2`` package: it is source-only (a normal install builds it in an isolated
environment that downloads torch again and tries to compile a CUDA extension), ``import sam2``
initialises Hydra's global config for the whole process, and ``build_sam2`` defaults to CUDA.
transformers (already a dependency, for GroundingDINO's BERT) ships the network without any of
that. See docs/guides/sam2.md.

Nothing here imports transformers' SAM 2 classes until a model is built or loaded; a transformers
without them (or older than 5.0) raises :class:`~lang_sam.errors.EngineUnavailableError`.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F

from lang_sam.cache import EncodingCache
from lang_sam.errors import EngineUnavailableError, InvalidArgumentError, InvalidPromptError
from lang_sam.hub import ModelSpec
from lang_sam.models.base import Segmenter, TrackStep, VideoSegmenter, on_device, prompt_count
from lang_sam.models.checkpoints import (
    check_architecture, count_blocks, load_into, perturb, save_atomic, state_dict_from,
)
from lang_sam.models.sam2_keys import meta_to_transformers, transformers_to_meta
from lang_sam.models.sam2_tracking import fast_memory_attention
from lang_sam.patches import empty_parameters, quiet_third_party
from lang_sam.precision import autocast, check_precision
from lang_sam.results import MaskPrediction

if TYPE_CHECKING:  # transformers' SAM 2 is imported when a model is built (_transformers_sam2)
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoModel

logger = logging.getLogger(__name__)

__all__ = [
    "Sam2Arch", "SPECS", "Sam2Segmenter", "Sam2Session", "build_sam2_model", "sam2_config",
    "sam2_fingerprint", "load_sam2_state", "random_sam2_state_dict",
]

@dataclass(frozen=True)
class Sam2Arch:
    """Shape of a SAM 2.1 network: the Hiera image encoder of Meta's
    ``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml`` (``image_encoder.trunk``) and the number of
    memory-attention layers (and the input size, 1024 in every release). Everything else (256-wide
    decoder and neck, 64-wide memory, 7 memories) is the same for the four released sizes. Stage ``i`` has
    ``embed_dim * 2**i`` channels and ``num_heads * 2**i`` heads (Hiera's ``dim_mul`` and
    ``head_mul``)."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    memory_attention_layers: int = 4
    image_size: int = 1024  # tiny test models use less (Meta's SAM2ImagePredictor needs 1024)
    meta_config: str = ""  # Meta's config file, for reference (its sam2 package's name for it)


# SAM 2.1 (Meta, 2024-09-28 release, Apache-2.0): ``{"model": state_dict}`` files in Meta's layout,
# converted to transformers' Sam2 layout at load time. Meta publishes no sha256 for these files (not
# in the sam2 repository, its download script or release notes; none found on the web either), so,
# like swinb, they are size-checked by HTTP only.
_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
#: The SAM 2.1 registry entries, run by :class:`Sam2Segmenter`.
SPECS = tuple(
    ModelSpec("sam", name, f"{name}.pt", arch, urls=(f"{_SAM2_BASE}/{name}.pt",), sha256=None,
              engine="lang_sam.models.sam2:Sam2Segmenter")
    for name, arch in (
        ("sam2.1_hiera_tiny", Sam2Arch(96, 1, (1, 2, 7, 2), (5, 7, 9), meta_config="sam2.1_hiera_t.yaml")),
        ("sam2.1_hiera_small", Sam2Arch(96, 1, (1, 2, 11, 2), (7, 10, 13), meta_config="sam2.1_hiera_s.yaml")),
        ("sam2.1_hiera_base_plus", Sam2Arch(112, 2, (2, 3, 16, 3), (12, 16, 20),
                                            window_pos_embed_bkg_spatial_size=(14, 14),
                                            meta_config="sam2.1_hiera_b+.yaml")),
        ("sam2.1_hiera_large", Sam2Arch(144, 2, (2, 6, 36, 4), (23, 33, 43), window_spec=(8, 4, 16, 8),
                                        meta_config="sam2.1_hiera_l.yaml")),
    )
)

#: Meta's ``SAM2Transforms`` normalisation (ImageNet mean / std, on 0..1 values).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


#: The transformers SAM 2.1 runs on: 4.56-4.57 have a SAM 2 whose outputs differ (tuples where
#: 5.x returns ``fpn_hidden_states``, no ``object_score_logits``), so 5.0 is the floor.
_TRANSFORMERS_NEEDED = "5.0"


def _transformers_sam2():
    """transformers' SAM 2 classes, or :class:`~lang_sam.errors.EngineUnavailableError` naming
    the version needed and the one found."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise EngineUnavailableError(
            f"SAM 2.1 needs transformers>={_TRANSFORMERS_NEEDED}, which cannot be imported: {exc}",
            package="transformers", required=f">={_TRANSFORMERS_NEEDED}", installed=None) from exc
    version = transformers.__version__
    try:
        if int(version.split(".")[0]) < int(_TRANSFORMERS_NEEDED.split(".")[0]):
            raise ImportError(f"transformers {version} is older than {_TRANSFORMERS_NEEDED}")
        from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig
        from transformers.models.sam2_video.configuration_sam2_video import Sam2VideoConfig
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession, Sam2VideoModel
    except ImportError as exc:
        raise EngineUnavailableError(
            f"SAM 2.1 needs transformers>={_TRANSFORMERS_NEEDED} (its Sam2VideoModel); transformers "
            f"{version} is installed, whose SAM 2 is missing or differs: pip install "
            f"'transformers>={_TRANSFORMERS_NEEDED},<6'",
            package="transformers", required=f">={_TRANSFORMERS_NEEDED}", installed=version) from exc
    return Sam2HieraDetConfig, Sam2VisionConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VideoInferenceSession


def _arch(spec_or_arch: ModelSpec | Sam2Arch) -> Sam2Arch:
    arch = spec_or_arch.arch if isinstance(spec_or_arch, ModelSpec) else spec_or_arch
    if not isinstance(arch, Sam2Arch):
        raise InvalidArgumentError(f"expected a Sam2Arch (or a ModelSpec holding one), got {type(arch).__name__}")
    return arch


def sam2_config(spec_or_arch: ModelSpec | Sam2Arch):
    """transformers' ``Sam2VideoConfig`` of a :class:`Sam2Arch`: Meta's
    ``sam2.1_hiera_*.yaml`` expressed in transformers' names (its other defaults are SAM 2.1's:
    dynamic single-mask selection with delta 0.05 and threshold 0.98, 7 memories, object pointers
    with temporal encoding, the occlusion embedding)."""
    hiera_cfg, vision_cfg, video_cfg, _, _ = _transformers_sam2()
    a = _arch(spec_or_arch)
    e, h = a.embed_dim, a.num_heads
    backbone = hiera_cfg(
        hidden_size=e, num_attention_heads=h, blocks_per_stage=list(a.stages),
        embed_dim_per_stage=[e, 2 * e, 4 * e, 8 * e], num_attention_heads_per_stage=[h, 2 * h, 4 * h, 8 * h],
        window_size_per_stage=list(a.window_spec), global_attention_blocks=list(a.global_att_blocks),
        window_positional_embedding_background_size=list(a.window_pos_embed_bkg_spatial_size),
        image_size=[a.image_size, a.image_size],
    )
    s = a.image_size
    vision = vision_cfg(backbone_config=backbone, backbone_channel_list=[8 * e, 4 * e, 2 * e, e],
                        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]])
    return video_cfg(vision_config=vision, memory_attention_num_layers=a.memory_attention_layers,
                     image_size=s, prompt_encoder_config={"image_size": s},
                     memory_attention_rope_feat_sizes=[s // 16, s // 16])


@quiet_third_party()
def build_sam2_model(spec_or_arch: ModelSpec | Sam2Arch, *, empty: bool = False) -> Sam2VideoModel:
    """A transformers ``Sam2VideoModel`` for ``spec_or_arch`` in eval mode: random weights, or with
    ``empty=True`` parameters on the meta device (load them with :func:`load_into`)."""
    _, _, _, model_cls, _ = _transformers_sam2()
    config = sam2_config(spec_or_arch)
    config._attn_implementation = "sdpa"
    with empty_parameters() if empty else nullcontext():
        model = model_cls(config)
    return model.eval()


def sam2_fingerprint(source) -> tuple | None:
    """(Hiera width, Hiera depth) of a :class:`Sam2Arch` or of a SAM 2.1 state dict in
    Meta's or transformers' names; ``None`` for anything else (a SAM v1 or GroundingDINO file)."""
    if isinstance(source, Sam2Arch):
        return (source.embed_dim, sum(source.stages))
    if isinstance(source, ModelSpec):
        return sam2_fingerprint(source.arch)
    for patch, blocks in (("image_encoder.trunk.patch_embed.proj.weight", "image_encoder.trunk.blocks."),
                          ("vision_encoder.backbone.patch_embed.projection.weight", "vision_encoder.backbone.blocks.")):
        try:
            width = source[patch].shape[0]
        except (KeyError, AttributeError, IndexError, TypeError):
            continue
        return (width, count_blocks(source, blocks))
    return None


# --- the engine -------------------------------------------------------------------------------------


@dataclass
class Sam2Encoding:
    """One image's encoding: ``image_embed`` ``(1, 256, 64, 64)``, ``high_res`` the two
    higher-resolution feature maps ``(1, 32, 256, 256)`` and ``(1, 64, 128, 128)`` (already
    projected by the mask decoder's ``conv_s0`` / ``conv_s1``), ``original_size`` ``(H, W)``."""

    image_embed: torch.Tensor
    high_res: list[torch.Tensor]
    original_size: tuple[int, int]


@dataclass
class Sam2Session:
    """A video tracking session (from :meth:`Sam2Segmenter.start_video`): transformers'
    ``Sam2VideoInferenceSession`` plus the frame counter and the ids followed.

    ``inference``: the transformers session; ``frame_index``: frames fed so far; ``object_ids``:
    the ids followed, in the model's order; ``size``: ``(H, W)`` of the frames.
    """

    inference: Any
    frame_index: int = 0
    object_ids: list[int] = field(default_factory=list)
    size: tuple[int, int] | None = None

    def stored_frames(self) -> int:
        """How many per-frame entries the session holds (outputs of every object, frames, cached
        features, bookkeeping): bounded by the memory window whatever the video length."""
        s = self.inference
        n = len(s.processed_frames or {}) + len(s.cache._vision_features)
        for per_obj in s.output_dict_per_obj.values():
            n += len(per_obj["cond_frame_outputs"]) + len(per_obj["non_cond_frame_outputs"])
        for table in (s.frames_tracked_per_obj, s.point_inputs_per_obj, s.mask_inputs_per_obj):
            n += sum(len(v) for v in table.values())
        return n

    def stored_bytes(self) -> int:
        """Bytes of every tensor the session holds."""
        seen: set[int] = set()

        def walk(x) -> int:
            if isinstance(x, torch.Tensor):
                if id(x) in seen:
                    return 0
                seen.add(id(x))
                return x.numel() * x.element_size()
            if isinstance(x, dict):
                return sum(walk(v) for v in x.values())
            if isinstance(x, (list, tuple)):
                return sum(walk(v) for v in x)
            return 0

        s = self.inference
        return sum(walk(t) for t in (s.processed_frames or {}, s.cache._vision_features, s.output_dict_per_obj,
                                     s.point_inputs_per_obj, s.mask_inputs_per_obj))


class Sam2Segmenter(Segmenter, VideoSegmenter):
    """A loaded SAM 2.1 network on a device: the :class:`~lang_sam.models.base.Segmenter` (and
    :class:`~lang_sam.models.base.VideoSegmenter`) of the ``sam2.1_hiera_*`` models.

    Images: :meth:`encode` runs the image encoder once (up to ``cache_size`` encodings are kept,
    keyed by image content; about 16 MiB each), :meth:`predict` answers boxes, points and masks
    on it as Meta's ``SAM2ImagePredictor.predict`` does. Prompts are decoded in chunks (at most
    ``chunk_size`` prompts and ``chunk_bytes`` of float32 full-size logits), as in
    :class:`~lang_sam.models.segmenter.SamSegmenter`.

    Video: :meth:`start_video` / :meth:`track` / :meth:`drop` (one frame at a time). Memory is
    flat with video length: after each frame, per-frame state older than what the memory attention
    reads is dropped (``memory_frames`` past frames for both mask memories and object pointers,
    and at most ``max_cond_frames`` prompted frames per object, the most recent).
    """

    #: Meta's ``SAM2AutomaticMaskGenerator`` keeps masks whose predicted IoU is over 0.8 (SAM v1: 0.88).
    generate_defaults = {"pred_iou_thresh": 0.8}
    backends = ("pytorch", "openvino")  # openvino: lang_sam.models.sam2_openvino

    model: Sam2VideoModel

    def __init__(self, model: Sam2VideoModel, device: torch.device | str = "cpu", name: str = "", *,
                 precision: str = "fp32", cache_size: int = 2, chunk_size: int = 16,
                 chunk_bytes: int = 256 * 2**20, max_cond_frames: int = 4):
        self.device = torch.device(device)
        self.name = name
        self.precision = check_precision(precision, self.device)
        self.model = on_device(model, self.device)
        self.cache = EncodingCache(cache_size)
        if chunk_size < 1:
            raise InvalidArgumentError(f"chunk_size must be >= 1, got {chunk_size}")
        if max_cond_frames < 1:
            raise InvalidArgumentError(f"max_cond_frames must be >= 1, got {max_cond_frames}")
        self.chunk_size = chunk_size
        self.chunk_bytes = chunk_bytes
        self.max_cond_frames = max_cond_frames
        config = self.model.config
        #: past frames whose outputs the memory attention reads (mask memories and object pointers)
        self.memory_frames = max(config.num_maskmem - 1, config.max_object_pointers_in_encoder - 1)
        self.image_size = int(cast(int, config.image_size))  # one side: the model's input is square
        self.mask_input_size = 4 * self.image_size // 16
        self._encoding: Sam2Encoding | None = None

    # -- loading --

    @classmethod
    def from_spec(cls, spec: ModelSpec, ckpt_path: str | os.PathLike | None = None, device: torch.device | str = "cpu", *,
                  progress: bool = True, precision: str = "fp32", cache_size: int = 2,
                  fast_attention: bool = True, backend: str = "pytorch", **options) -> "Sam2Segmenter":
        """Resolve ``spec``'s checkpoint (explicit path, weights dir, cache, download:
        :mod:`lang_sam.hub`), check it is a SAM 2.1 of ``spec.arch``'s shape, convert Meta's
        names and load it. ``fast_attention`` is accepted for the facade's sake and changes
        nothing (transformers' SAM 2 always uses ``scaled_dot_product_attention``, as Meta's
        does). ``backend="openvino"``: image encoder, memory encoder and memory attention on
        OpenVINO (:mod:`lang_sam.models.sam2_openvino`; CPU, fp32). ``options``: ``chunk_size``,
        ``chunk_bytes``, ``max_cond_frames``.

        Raises:
            WeightsNotFoundError, DownloadError, ChecksumMismatchError, CheckpointError: as
                :func:`~lang_sam.models.checkpoints.load_network` says, for the SAM 2.1 file.
            InvalidArgumentError: an unknown option or backend.
            DeviceError, InvalidPrecisionError: ``backend="openvino"`` off the CPU or not at fp32.
            EngineUnavailableError: the installed transformers has no SAM 2.1.
            BackendUnavailableError: ``backend="openvino"`` without OpenVINO installed.
        """
        from lang_sam.hub import load_checkpoint, resolve_checkpoint
        from lang_sam.models.openvino import check_backend, check_target, require_openvino

        if check_backend(backend) == "openvino":  # before reading a large file
            require_openvino()
            precision = check_target(device, precision, engine="SAM 2.1")

        known = {"chunk_size", "chunk_bytes", "max_cond_frames"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InvalidArgumentError(
                f"SAM 2.1 model {spec.name!r} does not take {unknown}: expected some of {sorted(known)}")
        _transformers_sam2()  # fail before reading a large file
        path = resolve_checkpoint(spec, ckpt_path, progress=progress)
        state = state_dict_from(load_checkpoint(path), str(path), wrapper_key="model")
        check_architecture(spec, state, str(path), sam2_fingerprint)
        model = load_sam2_state(spec, state, str(path))
        logger.info("loaded SAM 2.1 %s from %s", spec.name, path)
        engine = cls(model, device, spec.name, precision=precision, cache_size=cache_size, **options)
        if backend == "openvino":
            from lang_sam.models.sam2_openvino import use_openvino

            use_openvino(engine, path)
        return engine

    # -- images --

    @classmethod
    def write_random_checkpoint(cls, path: str | os.PathLike, arch: Sam2Arch, seed: int = 0, **options: Any) -> Path:
        """Save a SAM 2.1 of ``arch`` with random weights in Meta's released format
        (``{"model": state_dict}``, Meta's names: :func:`random_sam2_state_dict`, which takes
        ``options``: ``object_score``).

        Raises:
            TypeError: an option :func:`random_sam2_state_dict` does not take.
            EngineUnavailableError: the installed transformers has no SAM 2.1.
        """
        return save_atomic({"model": random_sam2_state_dict(arch, seed, **options)}, path)

    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        """How many prompts are decoded together for an image of ``height x width`` pixels."""
        per_prompt = 4 * height * width * masks_per_prompt
        return max(1, min(self.chunk_size, self.chunk_bytes // per_prompt))

    def _pixels(self, image: np.ndarray) -> torch.Tensor:
        """Meta's ``SAM2Transforms``: ``(1, 3, S, S)`` float32, resized (bilinear, antialiased,
        aspect not kept) and normalised; from an ``HxWx3`` uint8 RGB array."""
        x = torch.tensor(image).permute(2, 0, 1).contiguous().float().div(255)
        x = F.interpolate(x[None], size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    @quiet_third_party()
    def encode(self, image: np.ndarray, key: str | None = None) -> Sam2Encoding:
        """Run the image encoder on an ``HxWx3`` uint8 RGB image (or reuse the cached encoding for
        the content ``key``). Returns a :class:`Sam2Encoding` for :meth:`use`."""
        cached = self.cache.get((key, self.precision)) if key is not None else None
        if cached is not None:
            return cached
        _check_image(image)
        m = self.model
        with torch.no_grad(), autocast(self.device, self.precision):
            out = m.get_image_features(self._pixels(image), return_dict=True)
            feats = list(out.fpn_hidden_states)  # (h*w, 1, C) each, high resolution first
            feats[-1] = feats[-1] + m.no_memory_embedding
            maps = [f.permute(1, 2, 0).reshape(1, -1, *size) for f, size in zip(feats, m.backbone_feature_sizes)]
        encoding = Sam2Encoding(maps[-1], maps[:-1], (int(image.shape[0]), int(image.shape[1])))
        if key is not None:
            self.cache.put((key, self.precision), encoding)
        return encoding

    def use(self, encoding: Sam2Encoding) -> None:
        """Make ``encoding`` (from :meth:`encode`) the image :meth:`predict` answers for."""
        self._encoding = encoding

    def set_image(self, image: np.ndarray, key: str | None = None) -> None:
        """Encode an ``HxWx3`` uint8 RGB image (or reuse its cached encoding) and select it."""
        self.use(self.encode(image, key))

    def _to_input_frame(self, coords, original_size) -> torch.Tensor:
        """``(..., 2)`` xy pixels -> the model's ``S x S`` frame, as Meta's ``transform_coords``."""
        h, w = original_size
        c = _as_float_tensor(coords).clone()
        c[..., 0] = c[..., 0] / w
        c[..., 1] = c[..., 1] / h
        return c * self.image_size

    @quiet_third_party()
    def predict(self, *, boxes=None, points=None, point_labels=None, mask_input=None,
                multimask_output: bool = False, return_low_res: bool = False) -> MaskPrediction:
        """Masks for a batch of ``B`` prompts on the image given to :meth:`use`.

        Inputs are in pixels of that image, checked and batched (see
        :func:`lang_sam.validation.check_sam_prompts`): ``boxes`` ``(B, 4)`` xyxy; ``points``
        ``(B, K, 2)`` xy with ``point_labels`` ``(B, K)`` (1 foreground, 0 background);
        ``mask_input`` ``(B, 1, 256, 256)`` low-resolution logits from an earlier call.

        Returns a :class:`~lang_sam.results.MaskPrediction`: masks ``(B, C, H, W)`` bool,
        iou_scores ``(B, C)`` float32 and, with ``return_low_res``, low_res_logits
        ``(B, C, 256, 256)`` float32 clamped to [-32, 32] (as Meta's); ``C`` is 3 with
        ``multimask_output``, else 1 (SAM 2.1's dynamic choice: the single-mask output, or the best
        of the three when it is unstable). On the CPU.
        """
        enc = self._encoding
        if enc is None:
            from lang_sam.errors import NoImageError

            raise NoImageError("no image is set: call encode() and use() (or set_image()) first")
        H, W = enc.original_size
        n = prompt_count(boxes, points, mask_input)
        if (points is None) != (point_labels is None):
            raise InvalidPromptError("points and point_labels go together: give both or neither")
        c = 3 if multimask_output else 1
        masks = torch.empty((n, c, H, W), dtype=torch.bool)
        scores = torch.empty((n, c), dtype=torch.float32)
        side = self.mask_input_size
        low_res = torch.empty((n, c, side, side), dtype=torch.float32) if return_low_res else None
        # Meta's order: box corners (labels 2, 3) first, then the clicked points.
        coords = labels = None
        if boxes is not None:
            coords = self._to_input_frame(_as_float_tensor(boxes).reshape(-1, 2, 2), (H, W))
            labels = torch.tensor([[2, 3]], dtype=torch.int32).repeat(n, 1)
        if points is not None:
            p = self._to_input_frame(points, (H, W)).reshape(n, -1, 2)
            pl = torch.as_tensor(np.asarray(point_labels) if not isinstance(point_labels, torch.Tensor)
                                 else point_labels).to(torch.int32).reshape(n, -1)
            coords = p if coords is None else torch.cat([coords, p], dim=1)
            labels = pl if labels is None else torch.cat([labels, pl], dim=1)
        if mask_input is not None:
            mask_input = torch.as_tensor(mask_input, dtype=torch.float32)
        step = self.boxes_per_chunk(H, W, c)
        m = self.model
        with torch.no_grad(), autocast(self.device, self.precision):
            image_pe = m.get_image_wide_positional_embeddings()
            for start in range(0, n, step):
                part = slice(start, min(start + step, n))
                b = part.stop - part.start
                lo, iou = self._decode(
                    enc, image_pe, b,
                    coords[part].to(self.device) if coords is not None else None,
                    labels[part].to(self.device) if labels is not None else None,
                    mask_input[part].to(self.device) if mask_input is not None else None,
                    multimask_output)
                full = F.interpolate(lo.float(), (H, W), mode="bilinear", align_corners=False)
                masks[part] = (full > 0.0).cpu()
                scores[part] = iou.float().cpu()
                if low_res is not None:
                    low_res[part] = torch.clamp(lo.float(), -32.0, 32.0).cpu()
        return MaskPrediction(masks, scores, low_res)

    def _decode(self, enc: Sam2Encoding, image_pe, b: int, coords, labels, mask_input, multimask: bool):
        """``b`` prompts through the prompt encoder and mask decoder: ``(b, C, 256, 256)`` logits
        and ``(b, C)`` scores. Each prompt gets its own copy of the image embedding, as Meta's
        ``repeat_image`` does."""
        m = self.model
        pe_prompt = m.prompt_encoder
        if coords is not None:
            sparse, _ = pe_prompt(input_points=coords[:, None], input_labels=labels[:, None],
                                  input_boxes=None, input_masks=None)
        else:
            sparse = torch.zeros((b, 1, 0, pe_prompt.hidden_size), device=self.device, dtype=image_pe.dtype)
        if mask_input is not None:
            dense = pe_prompt.mask_embed(mask_input)
        else:
            dense = pe_prompt.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, *pe_prompt.image_embedding_size)
        low, iou, _, _ = m.mask_decoder(
            image_embeddings=enc.image_embed.expand(b, -1, -1, -1),
            image_positional_embeddings=image_pe.expand(b, -1, -1, -1),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=[f.expand(b, -1, -1, -1) for f in enc.high_res])
        return low[:, 0], iou[:, 0]

    # -- video --

    def start_video(self, *, offload: bool = True) -> Sam2Session:
        """A new, empty tracking session. ``offload``: per-frame state (memories, masks, the
        current frame) lives on the CPU; otherwise on the model's device."""
        *_, session_cls = _transformers_sam2()
        state_device = torch.device("cpu") if offload else self.device
        inference = session_cls(inference_device=self.device, inference_state_device=state_device,
                                video_storage_device=state_device, dtype=torch.float32)
        return Sam2Session(inference)

    @quiet_third_party()
    def track(self, session: Sam2Session, frame: np.ndarray, *, new_ids: Sequence[int] = (),
              new_boxes: torch.Tensor | None = None) -> TrackStep:
        """Feed the next ``HxWx3`` uint8 RGB ``frame`` and return the masks of every followed
        object on it (see :meth:`lang_sam.models.base.VideoSegmenter.track`).

        ``iou_scores`` here are SAM 2.1's object-presence probabilities (sigmoid of its object
        score): its video path predicts no IoU. An object judged absent gets an empty mask.
        """
        if not isinstance(session, Sam2Session):
            raise InvalidArgumentError(f"expected a session from start_video(), got {type(session).__name__}")
        _check_image(frame)
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if session.size is not None and size != session.size:
            raise InvalidArgumentError(
                f"frame {session.frame_index} is {size[1]}x{size[0]}, the session's frames are "
                f"{session.size[1]}x{session.size[0]}: all frames of a video must have one size")
        new_ids = [int(i) for i in new_ids]
        if new_ids:
            if new_boxes is None or len(new_boxes) != len(new_ids):
                got = None if new_boxes is None else len(new_boxes)
                raise InvalidArgumentError(f"new_ids has {len(new_ids)} ids but new_boxes has {got} boxes")
            clash = sorted(set(new_ids) & set(session.object_ids)) or (
                sorted({i for i in new_ids if new_ids.count(i) > 1}))
            if clash:
                raise InvalidArgumentError(f"object ids {clash} are already followed (or repeated)")
        idx = session.frame_index
        s = session.inference
        session.size = size
        s.video_height, s.video_width = size
        if new_ids:
            boxes = self._to_input_frame(_as_float_tensor(new_boxes).reshape(-1, 2, 2), size)
            for obj_id, corners in zip(new_ids, boxes):
                obj_idx = s.obj_id_to_idx(obj_id)
                s.add_point_inputs(obj_idx, idx, {
                    "point_coords": corners[None, None].to(self.device),
                    "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32, device=self.device)})
                s.remove_mask_inputs(obj_idx, idx)
            s.obj_with_new_inputs = list(new_ids)
            session.object_ids = list(s.obj_ids)
        session.frame_index += 1
        ids = list(s.obj_ids)
        if not ids:
            return TrackStep(torch.zeros(0, dtype=torch.int64), torch.zeros((0, *size), dtype=torch.bool),
                             torch.zeros(0, dtype=torch.float32))
        with torch.no_grad(), autocast(self.device, self.precision), fast_memory_attention(self.model):
            out = self.model(inference_session=s, frame_idx=idx, frame=self._pixels(frame)[0])
            low = out.pred_masks.float()
            if low.dim() == 3:
                low = low[:, None]
            full = F.interpolate(low, size, mode="bilinear", align_corners=False)[:, 0]
            presence = torch.sigmoid(out.object_score_logits.float().reshape(-1))
        self._prune(session, idx)
        return TrackStep(torch.tensor(list(out.object_ids), dtype=torch.int64), (full > 0.0).cpu(),
                         presence.cpu())

    def _prune(self, session: Sam2Session, idx: int) -> None:
        """Drop what the memory attention will not read again (so memory is flat with length)."""
        s = session.inference
        oldest = idx - self.memory_frames
        for frame in [f for f in (s.processed_frames or {}) if f != idx]:
            del s.processed_frames[frame]
        for obj_idx, per_obj in s.output_dict_per_obj.items():
            for out in (*per_obj["cond_frame_outputs"].values(), *per_obj["non_cond_frame_outputs"].values()):
                out.pop("high_res_masks", None)  # only used within the step that made it
            non_cond = per_obj["non_cond_frame_outputs"]
            for frame in [f for f in non_cond if f < oldest]:
                del non_cond[frame]
            cond = per_obj["cond_frame_outputs"]
            for frame in sorted(cond)[:-self.max_cond_frames]:
                del cond[frame]
            for table in (s.point_inputs_per_obj[obj_idx], s.mask_inputs_per_obj[obj_idx]):
                for frame in [f for f in table if f != idx and f not in cond]:
                    del table[frame]
            tracked = s.frames_tracked_per_obj[obj_idx]
            for frame in [f for f in tracked if f < oldest]:
                del tracked[frame]

    def drop(self, session: Sam2Session, object_ids: Sequence[int]) -> None:
        """Stop following ``object_ids`` (ids not followed are ignored); their state is freed."""
        s = session.inference
        gone = {int(i) for i in object_ids} & set(s.obj_ids)
        if not gone:
            return
        keep = [i for i in s.obj_ids if i not in gone]
        old = {obj_id: s.obj_id_to_idx(obj_id) for obj_id in s.obj_ids}
        tables = (s.point_inputs_per_obj, s.mask_inputs_per_obj, s.output_dict_per_obj, s.frames_tracked_per_obj)
        saved = [{obj_id: t[old[obj_id]] for obj_id in keep} for t in tables]
        s._obj_id_to_idx.clear()
        s._obj_idx_to_id.clear()
        for t in tables:
            t.clear()
        for new_idx, obj_id in enumerate(keep):
            s._obj_id_to_idx[obj_id] = new_idx
            s._obj_idx_to_id[new_idx] = obj_id
            for t, values in zip(tables, saved):
                t[new_idx] = values[obj_id]
        s.obj_ids = list(keep)
        s.obj_with_new_inputs = [i for i in s.obj_with_new_inputs if i not in gone]
        session.object_ids = list(keep)


def _as_float_tensor(x) -> torch.Tensor:
    return torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x), dtype=torch.float32)


def _check_image(image) -> None:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        from lang_sam.errors import InvalidImageError

        what = (f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}").strip()
        raise InvalidImageError(f"expected an HxWx3 uint8 RGB array, got {what}")


def load_sam2_state(spec: ModelSpec, state: Mapping[str, torch.Tensor], path: str) -> Sam2VideoModel:
    """Build ``spec``'s network (parameters on the meta device) and load Meta's state dict into it
    after converting its names; keys no rule knows, missing keys and shape mismatches raise
    :class:`~lang_sam.errors.CheckpointMismatchError`."""
    from lang_sam.errors import CheckpointMismatchError

    converted, unknown = meta_to_transformers(state)
    if unknown:
        more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
        raise CheckpointMismatchError(
            f"{path} does not fit sam_type={spec.name!r}: {len(unknown)} keys are not SAM 2.1 "
            f"(Meta's sam2.1_hiera_*.pt layout expected): {'; '.join(unknown[:3])}{more}")
    model = build_sam2_model(spec, empty=True)
    load_into(model, converted, spec, path, sam2_fingerprint)
    return model


def random_sam2_state_dict(arch: ModelSpec | Sam2Arch, seed: int = 0, *,
                           object_score: float = 4.0) -> dict[str, torch.Tensor]:
    """A SAM 2.1 state dict of ``arch`` (or a spec's) with random weights **in Meta's names** (what
    the released ``sam2.1_hiera_*.pt`` files hold under ``"model"``).

    Built with transformers' ``Sam2VideoModel`` and renamed with
    :func:`lang_sam.models.sam2_keys.transformers_to_meta`. Random weights make SAM 2.1's
    object-score head say "no object" about half the time, and then every mask is empty; the head's
    output bias is set to ``object_score`` (a logit) so that masks are not trivially empty.

    Raises:
        EngineUnavailableError: the installed transformers has no SAM 2.1.
    """
    torch.manual_seed(seed)
    net = build_sam2_model(arch)
    perturb(net, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        net.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(object_score)
    return transformers_to_meta(net.state_dict())
