"""The :class:`LangSAM` facade: a detector turns a text prompt into boxes, a segmenter each box into a
mask (GroundingDINO and SAM by default).

It only wires the engines the registry names for ``gdino_type`` and ``sam_type``
(:mod:`lang_sam.models.base`: a :class:`~lang_sam.models.base.Detector` and a
:class:`~lang_sam.models.base.Segmenter`) and runs :func:`lang_sam.pipeline.run`; the API is that
of the 2023 ``lang-segment-anything``, plus :meth:`LangSAM.encode` / :meth:`LangSAM.segment` for SAM's other
prompts (boxes, points, masks) on an image encoded once, and :meth:`LangSAM.predict_tiled` for
large images (sliced inference, :mod:`lang_sam.tiling`; masks kept as crops, :mod:`lang_sam.masks`).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar, cast, overload

import numpy as np
import torch
from PIL import Image

from lang_sam import pipeline
from lang_sam.cache import EncodingCache, image_key
from lang_sam.errors import (
    InvalidArgumentError,
    InvalidPromptError,
    InvalidPromptTypeError,
    NoImageError,
    UnsupportedPromptError,
)
from lang_sam.hub import GDINO_MODELS, SAM_MODELS, resolve_checkpoints
from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, get_spec
from lang_sam.masks import CropMask
from lang_sam.models.base import Detector, Segmenter, TextSegmenter, engine_for
from lang_sam.precision import check_precision
from lang_sam.generate import GenerateSettings, generate
from lang_sam.results import (
    Detections, GeneratedMasks, MaskPrediction, Prediction, TiledPrediction, TrackedFrame,
)
from lang_sam.tiling import TileSpec
from lang_sam.tracking import IOU_THRESHOLD, LOST_AFTER
from lang_sam.validation import (
    ImageInput,
    check_device,
    check_sam_prompts,
    default_device,
    to_rgb_pil,
)
from lang_sam.video import DETECT_EVERY, MAX_CANDIDATES

if TYPE_CHECKING:
    from segment_anything import SamPredictor

logger = logging.getLogger(__name__)

__all__ = [
    "LangSAM", "Prediction", "EncodedImage", "MaskPrediction", "TileSpec", "TiledPrediction",
    "Detections", "CropMask", "SAM_MODELS", "GDINO_MODELS", "default_device",
]


_R = TypeVar("_R")


def _takes_image_pil(method: Callable[..., _R]) -> Callable[..., _R]:
    """Let a method whose image parameter is ``image`` also take the 2023 keyword ``image_pil=``
    (``model.predict(image_pil=img, text_prompt="car")`` keeps working). Each method it wraps
    declares both forms as ``typing.overload`` signatures, which are what a type checker sees."""

    @functools.wraps(method)
    def wrapper(self: LangSAM, *args: Any, **kwargs: Any) -> _R:
        if "image_pil" in kwargs:
            if args or "image" in kwargs:
                raise InvalidArgumentError(
                    f"{method.__name__}() got the image twice: pass it once, as image (or the 2023 "
                    "keyword image_pil)")
            kwargs["image"] = kwargs.pop("image_pil")
        return method(self, *args, **kwargs)

    return wrapper


class LangSAM:
    """Text-prompted segmentation: ``LangSAM().predict(image, "car. wheel")``.

    Args:
        sam_type: ``"vit_h"`` (default; ``None`` means it too), ``"vit_l"`` or ``"vit_b"``.
        ckpt_path: a local SAM checkpoint file; ``None`` resolves it (see :mod:`lang_sam.hub`).
        return_prompts: give each box only the prompt part (between ``.``) holding its best token.
        gdino_type: ``"swinb"`` (default) or ``"swint"``.
        gdino_ckpt_path: a local GroundingDINO checkpoint file.
        device: ``None`` picks CUDA, then MPS, then CPU. A device that is not available here
            (``"cuda"`` without a GPU, ``"cuda:7"``, ``"gpu"``) raises
            :class:`~lang_sam.errors.DeviceError`, before anything is loaded.
        precision: ``"fp32"`` (default), ``"bf16"`` (CUDA, or CPUs with AVX-512-BF16/AMX) or
            ``"fp16"`` (CUDA): autocast scoped to this object's own calls.
        cache_size: how many recent images keep their encodings (SAM image embedding, ~4 MiB;
            GroundingDINO backbone features, ~40 MiB for an 800x1066 input), so that a new prompt
            on a recent image skips both image encoders. 0 turns the cache off.
        fast_attention: SAM's image encoder attention through ``scaled_dot_product_attention``
            (faster; masks agree with the plain computation on >= 99.99 % of pixels). ``False``
            reproduces the original's masks bit for bit when the boxes fit in one decoding chunk
            (:class:`~lang_sam.models.segmenter.SamSegmenter`: 16 boxes); more boxes are decoded in
            chunks, which may differ from one batch by float32 rounding.

    Encodings are recognised by image content, not object identity. Not thread-safe: SAM's
    predictor holds per-image state; use one ``LangSAM`` per thread.
    """

    #: The segmenter engine (``sam_type``); a text segmenter (SAM 3) is also the detector.
    segmenter: Segmenter | TextSegmenter
    #: The detector engine (``gdino_type``), or the text segmenter itself.
    detector: Detector | TextSegmenter
    #: The original's attributes: SAM's predictor (None for engines without one) and the
    #: GroundingDINO network (None with a text segmenter).
    sam: SamPredictor | None
    groundingdino: torch.nn.Module | None

    def __init__(
        self,
        sam_type: str | None = DEFAULT_SAM,
        ckpt_path: str | os.PathLike | None = None,
        return_prompts: bool = False,
        *,
        gdino_type: str = DEFAULT_GDINO,
        gdino_ckpt_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        cache_size: int = 2,
        fast_attention: bool = True,
    ):
        # Unknown types and unavailable devices fail before anything heavy happens.
        sam_spec = get_spec("sam", sam_type)
        gdino_spec = get_spec("gdino", gdino_type)
        self.device = check_device(device)
        self.sam_type = sam_spec.name
        self.gdino_type = gdino_spec.name
        self.return_prompts = bool(return_prompts)
        self.precision = check_precision(precision, self.device)
        self.fast_attention = bool(fast_attention)
        self._cache_size = EncodingCache(cache_size).maxsize  # validates
        self._pinned: EncodedImage | None = None
        if engine_for(sam_spec).segments_text:
            # Text straight to masks (SAM 3): it is its own detector, no GroundingDINO is loaded.
            (sam_path,) = resolve_checkpoints([(sam_spec, ckpt_path)])
            self.build_sam(sam_path)
            return
        # Find (or fetch) both files before loading either: one MissingWeightsError lists all missing.
        gdino_path, sam_path = resolve_checkpoints([(gdino_spec, gdino_ckpt_path), (sam_spec, ckpt_path)])
        self.build_groundingdino(ckpt_path=gdino_path)
        self.build_sam(sam_path)

    def __repr__(self) -> str:
        cached = len(self.segmenter.cache) if hasattr(self, "segmenter") else 0
        detects = "None" if getattr(self, "detector", None) is getattr(self, "segmenter", 0) else repr(self.gdino_type)
        return (
            f"LangSAM(sam_type={self.sam_type!r}, gdino_type={detects}, "
            f"device='{self.device}', precision={self.precision!r}, "
            f"cache={cached}/{self._cache_size} images, fast_attention={self.fast_attention}, "
            f"return_prompts={self.return_prompts})"
        )

    # ----------------------------------------------------------------------------------------
    # Building
    # ----------------------------------------------------------------------------------------
    def build_sam(
        self, ckpt_path: str | os.PathLike | None = None, *, sam_type: str | None = None
    ) -> None:
        """(Re)load SAM: ``build_sam()``, ``build_sam("path.pth")``, ``build_sam(sam_type="vit_b")``.

        The first argument may also be a type name (``build_sam("vit_b")``, as the original web
        demo called it): a string that does not look like a path (no folder separator, no leading
        ``~`` or ``.``, no checkpoint extension such as ``.pth``) is a type, whatever files the
        working folder holds, so an unknown one raises :class:`~lang_sam.errors.UnknownModelError`
        listing the valid types. For a file of such a name, pass ``"./name"`` or a ``Path``.
        """
        if isinstance(ckpt_path, str) and sam_type is None and _is_type_name(ckpt_path):
            sam_type, ckpt_path = ckpt_path, None
        spec = get_spec("sam", sam_type if sam_type is not None else self.sam_type)
        # engine_for checked that the class implements the sam family's roles (Segmenter or
        # TextSegmenter); from_spec is typed on the abstract Engine.
        self.segmenter = cast("Segmenter | TextSegmenter", engine_for(spec).from_spec(
            spec, ckpt_path, self.device, precision=self.precision,
            fast_attention=self.fast_attention, cache_size=self._cache_size,
        ))
        self._pinned = None
        self.sam_type = spec.name
        self.sam = getattr(self.segmenter, "predictor", None)  # the original's attribute: a SamPredictor
        previous = getattr(self, "detector", None)
        if self.segmenter.segments_text:  # it detects too: no GroundingDINO
            self.detector = cast(TextSegmenter, self.segmenter)  # segments_text: it is a TextSegmenter
            self.groundingdino = None
        elif previous is None or previous.segments_text:  # none yet, or it was a text segmenter
            self.build_groundingdino()

    def build_groundingdino(
        self, *, gdino_type: str | None = None, ckpt_path: str | os.PathLike | None = None
    ) -> None:
        """(Re)load GroundingDINO, of ``gdino_type`` (default: the current one). With a text
        segmenter (``sam_type="sam3"``) only the type is recorded: it detects itself, and
        GroundingDINO is loaded when a box segmenter replaces it (:meth:`build_sam`)."""
        spec = get_spec("gdino", gdino_type if gdino_type is not None else self.gdino_type)
        segmenter = getattr(self, "segmenter", None)
        if segmenter is not None and segmenter.segments_text:
            self.gdino_type = spec.name
            return
        detector = cast(Detector, engine_for(spec).from_spec(  # engine_for checked the Detector role
            spec, ckpt_path, self.device, precision=self.precision, cache_size=self._cache_size
        ))
        self.detector = detector
        self._pinned = None
        self.gdino_type = spec.name
        self.groundingdino = detector.model  # the original's attribute (the network)

    # ----------------------------------------------------------------------------------------
    # Caching
    # ----------------------------------------------------------------------------------------
    @property
    def cache_size(self) -> int:
        """How many recent images keep their encodings (0: no cache). Settable."""
        return self._cache_size

    @cache_size.setter
    def cache_size(self, value: int) -> None:
        self.detector.cache.maxsize = value
        self.segmenter.cache.maxsize = value
        self._cache_size = value

    def clear_cache(self) -> None:
        """Drop every cached image encoding (and the image pinned by :meth:`set_image`)."""
        self.detector.cache.clear()
        self.segmenter.cache.clear()
        self._pinned = None

    def encode(self, image: ImageInput | EncodedImage, *, eager: bool = False) -> "EncodedImage":
        """Read an image once, for several calls: ``enc = model.encode(img)``, then pass ``enc``
        wherever an image is taken (:meth:`predict`, :meth:`predict_dino`, :meth:`predict_sam`,
        :meth:`segment`). Each network's encoding is computed on its first use (now if ``eager``)
        and kept on the handle, so nothing is encoded twice.
        """
        if isinstance(image, EncodedImage):
            enc = image
        else:
            pil = to_rgb_pil(image)
            pixels = np.asarray(pil)
            enc = EncodedImage(pil, pixels, image_key(pixels) if self._cache_size else None)
        if eager:
            self.features(enc)
            if self.segmenter.takes_boxes:
                self.sam_encoding(enc)
        return enc

    def features(self, enc: "EncodedImage"):
        """The detector's encoding of ``enc`` (computed once per detector, kept on the handle)."""
        if enc.features is None or enc.features_of is not self.detector:
            enc.features = self.detector.encode_image(enc.image, enc.key)
            enc.features_of = self.detector
        return enc.features

    def sam_encoding(self, enc: "EncodedImage"):
        """The segmenter's encoding of ``enc`` (computed once per segmenter, kept on the handle).
        A text segmenter (SAM 3) has none: it takes no box, point or mask prompt, so this raises
        :class:`~lang_sam.errors.UnsupportedPromptError` (for :meth:`segment`, :meth:`predict_sam`)."""
        segmenter = self._box_segmenter()
        if enc.sam is None or enc.sam_of is not segmenter:
            enc.sam = segmenter.encode(enc.pixels, enc.key)
            enc.sam_of = segmenter
        return enc.sam

    def _box_segmenter(self) -> Segmenter:
        """The segmenter, if it takes box / point / mask prompts; else
        :class:`~lang_sam.errors.UnsupportedPromptError` (a text segmenter, SAM 3)."""
        if not self.segmenter.takes_boxes:
            raise UnsupportedPromptError(
                f"sam_type={self.sam_type!r} segments what a text prompt names (predict, "
                "predict_tiled, the labelling and the server's text requests); it takes no box, "
                "point or mask prompt, so segment() / predict_sam() / box prompts need a box "
                f"segmenter (sam_type one of {sorted(n for n in SAM_MODELS if n != self.sam_type)})",
                engine=self.sam_type, prompt="boxes/points/masks")
        return cast(Segmenter, self.segmenter)  # takes_boxes: it implements Segmenter

    # ----------------------------------------------------------------------------------------
    # Predicting: every text-prompted method runs lang_sam.pipeline.run
    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _prediction(out: "pipeline.Segmented") -> Prediction:
        det = out.detections
        return Prediction(out.masks, det.boxes, det.phrases, det.scores, iou_scores=out.iou_scores)

    @overload
    def predict_dino(
        self, image: ImageInput | EncodedImage,
        text_prompt: str, box_threshold: float, text_threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]: ...
    @overload
    def predict_dino(
        self, *, image_pil: ImageInput | EncodedImage,
        text_prompt: str, box_threshold: float, text_threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]: ...

    @_takes_image_pil
    def predict_dino(
        self,
        image: ImageInput | EncodedImage,
        text_prompt: str,
        box_threshold: float,
        text_threshold: float,
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """GroundingDINO alone: ``(boxes (N, 4) float32 xyxy pixels, logits (N,), phrases)``,
        the 2023 order (``logits`` are the detector's scores, probabilities in [0, 1])."""
        prepared = self.detector.prepare(text_prompt, box_threshold, text_threshold)
        det, _ = pipeline.detect(self, image, prepared)
        return det.boxes, det.scores, det.phrases

    @overload
    def predict_sam(self, image: ImageInput | EncodedImage, boxes: torch.Tensor) -> torch.Tensor: ...
    @overload
    def predict_sam(self, *, image_pil: ImageInput | EncodedImage, boxes: torch.Tensor) -> torch.Tensor: ...

    @_takes_image_pil
    def predict_sam(self, image: ImageInput | EncodedImage, boxes: torch.Tensor) -> torch.Tensor:
        """SAM alone: ``(N, 1, H, W)`` bool masks for ``(N, 4)`` xyxy pixel boxes."""
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidPromptError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
        masks, _ = pipeline.segment(self, image, boxes)
        return masks[:, None]

    def segment(
        self,
        image: ImageInput | EncodedImage,
        *,
        boxes=None,
        points=None,
        point_labels=None,
        mask_input=None,
        multimask_output: bool = False,
    ) -> MaskPrediction:
        """SAM's own prompts on an image (encoded once: pass an :meth:`encode` handle to reuse it).

        Coordinates are in input-image pixels (torch, numpy or lists):

        - ``boxes``: ``(4,)`` or ``(B, 4)`` xyxy;
        - ``points``: ``(K, 2)`` xy, one object prompted by ``K`` points, or ``(B, K, 2)``, one set
          per object; with ``B`` boxes, a ``(K, 2)`` set is added to every box;
        - ``point_labels``: ``(K,)`` or ``(B, K)``, 1 foreground / 0 background (default: all 1);
        - ``mask_input``: ``(256, 256)``, ``(1, 256, 256)`` or ``(B, 1, 256, 256)`` low-resolution
          logits, e.g. a ``low_res_logits[i, j]`` of an earlier call, to refine that mask.

        Returns a :class:`~lang_sam.results.MaskPrediction`: ``masks`` ``(B, C, H, W)`` bool,
        ``iou_scores`` ``(B, C)`` SAM's predicted IoU, ``low_res_logits`` ``(B, C, 256, 256)``;
        ``C`` = 3 with ``multimask_output`` (SAM's three candidates), else 1. For one prompt,
        ``[0]`` of each equals what ``SamPredictor.predict`` returns. Bad shapes, points outside
        the image or labels other than 0/1 raise :class:`~lang_sam.errors.InvalidPromptError`.
        """
        enc = self.encode(image)
        H, W = enc.pixels.shape[:2]
        prompts = check_sam_prompts(boxes, points, point_labels, mask_input, image_size=(H, W),
                                    mask_size=self.segmenter.mask_input_size)
        encoding = self.sam_encoding(enc)  # UnsupportedPromptError for a text segmenter
        segmenter = self._box_segmenter()
        segmenter.use(encoding)
        return segmenter.predict(**prompts, multimask_output=bool(multimask_output),
                                      return_low_res=True)

    def generate(
        self,
        image: ImageInput | EncodedImage,
        *,
        progress: Callable[[str, int, int], None] | None = None,
        **settings,
    ) -> GeneratedMasks:
        """Segment everything: every mask of ``image`` that SAM's automatic mask generator keeps
        (``SamAutomaticMaskGenerator`` for SAM v1, ``SAM2AutomaticMaskGenerator`` for SAM 2),
        with no prompt; GroundingDINO is not used.

        ``settings`` are the generator's parameters, by SAM's names (``points_per_side=32``,
        ``points_per_batch=64``, ``pred_iou_thresh``, ``stability_score_thresh=0.95``,
        ``stability_score_offset=1.0``, ``box_nms_thresh=0.7``, ``crop_n_layers=0``,
        ``crop_nms_thresh=0.7``, ``crop_overlap_ratio``, ``crop_n_points_downscale_factor``,
        ``point_grids``, ``min_mask_region_area=0``, ``mask_threshold``, ``multimask_output``,
        ``use_m2m``), defaults the SAM family's own (:class:`~lang_sam.generate.GenerateSettings`;
        ``pred_iou_thresh`` 0.88 for SAM v1, 0.8 for SAM 2); an unknown name raises
        :class:`~lang_sam.errors.InvalidArgumentError`. The whole image is encoded once (and
        reuses a cached encoding); each crop of ``crop_n_layers`` is encoded once more.
        ``progress("generate", points_done, points_total)`` hears of each batch of points.

        Returns a :class:`~lang_sam.results.GeneratedMasks` (``masks`` ``(N, H, W)`` bool,
        ``boxes``, ``areas``, ``iou_scores``, ``stability_scores``, ``point_coords``,
        ``crop_boxes``); its ``records()`` is ``SamAutomaticMaskGenerator.generate``'s list of dicts.
        """
        self._box_segmenter()  # SAM 3 takes no point prompt: a typed error, not an AttributeError
        config = GenerateSettings.for_engine(self.segmenter, **settings)
        enc = self.encode(image)
        H, W = enc.pixels.shape[:2]

        def encode(pixels: np.ndarray, box: tuple[int, int, int, int]):
            if tuple(box) == (0, 0, W, H):
                return self.sam_encoding(enc)
            return self._box_segmenter().encode(pixels)  # the whole image's (first) call checked it

        return generate(self.segmenter, enc.pixels, config, encode=encode, progress=progress)

    @overload
    def predict(
        self, image: ImageInput | EncodedImage,
        text_prompt: str, box_threshold: float = 0.3, text_threshold: float = 0.25
    ) -> Prediction: ...
    @overload
    def predict(
        self, *, image_pil: ImageInput | EncodedImage,
        text_prompt: str, box_threshold: float = 0.3, text_threshold: float = 0.25
    ) -> Prediction: ...

    @_takes_image_pil
    def predict(
        self,
        image: ImageInput | EncodedImage,
        text_prompt: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> Prediction:
        """Segment what ``text_prompt`` names. Returns ``(masks, boxes, phrases, logits)``.

        ``image`` (the 2023 keyword ``image_pil=`` works too) may be a PIL image (any mode), an
        ``HxWx3`` uint8 array, a path or an :meth:`encode` handle. See :class:`Prediction` for
        shapes; nothing found gives ``(0, H, W)``, ``(0, 4)``, ``[]``, ``(0,)``. A recent image
        (same pixels) reuses its encodings: only the prompt-dependent work runs.
        """
        return self._prediction(pipeline.run(self, image, text_prompt, box_threshold, text_threshold))

    @overload
    def predict_prompts(
        self, image: ImageInput | EncodedImage,
        text_prompts: Sequence[str], box_threshold: float = 0.3, text_threshold: float = 0.25
    ) -> list[Prediction]: ...
    @overload
    def predict_prompts(
        self, *, image_pil: ImageInput | EncodedImage,
        text_prompts: Sequence[str], box_threshold: float = 0.3, text_threshold: float = 0.25
    ) -> list[Prediction]: ...

    @_takes_image_pil
    def predict_prompts(
        self,
        image: ImageInput | EncodedImage,
        text_prompts: Sequence[str],
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> list[Prediction]:
        """One :class:`Prediction` per prompt for one image; the image is encoded once.

        Each prompt gets its own GroundingDINO pass, so phrases never merge across prompts.
        """
        prompts = _prompt_list(text_prompts)
        enc = self.encode(image)
        return [self.predict(enc, p, box_threshold, text_threshold) for p in prompts]

    def predict_batch(
        self,
        images: Sequence[ImageInput | EncodedImage],
        text_prompts: str | Sequence[str],
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> list[Prediction]:
        """One :class:`Prediction` per image: ``text_prompts`` is one prompt for every image, or a
        list with one prompt per image."""
        images = list(images)
        if isinstance(text_prompts, str):
            prompts = [text_prompts] * len(images)
        else:
            prompts = _prompt_list(text_prompts)
            if len(prompts) != len(images):
                raise InvalidArgumentError(f"got {len(images)} images but {len(prompts)} prompts")
        return [self.predict(img, p, box_threshold, text_threshold) for img, p in zip(images, prompts)]

    # ----------------------------------------------------------------------------------------
    # Large images: sliced inference
    # ----------------------------------------------------------------------------------------
    def predict_dino_tiled(
        self,
        image: ImageInput | EncodedImage,
        text_prompt: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        *,
        tile: TileSpec | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Detections:
        """GroundingDINO on every tile of ``tile.grid`` at full resolution; boxes mapped to image
        pixels and cut at the tile's inner borders (a tile sees nothing past them; the image's own
        edges are left as :meth:`predict` leaves them), not merged (see
        :func:`lang_sam.pipeline.merge_tiles`): :class:`~lang_sam.results.Detections` with
        ``tile_index`` and ``tiles``. One tile's work is held at a time.
        ``progress("detect", tiles_done, tiles)`` is called after each tile (and once with 0 first)."""
        tile = TileSpec() if tile is None else tile
        prepared = self.detector.prepare(text_prompt, box_threshold, text_threshold)
        det, _ = pipeline.detect(self, image, prepared, tile=tile, progress=progress)
        return det

    def predict_sam_tiled(
        self, image: ImageInput | EncodedImage, boxes, *, tile: TileSpec | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> tuple[list[CropMask], torch.Tensor]:
        """SAM masks for ``(N, 4)`` xyxy image-pixel boxes, each segmented at full resolution on a
        window of the image (:func:`lang_sam.tiling.sam_window`: the grid tile that holds the box
        and is most centred on it, else a tile-sized window around it, which later boxes it holds
        share). Each window is encoded once. Returns ``(masks, iou_scores)``: ``N``
        :class:`CropMask` trimmed to their True pixels and SAM's predicted IoU ``(N,)`` float32, in
        the boxes' order. ``progress("segment", boxes_done, N)`` is called after each chunk of
        boxes (and once with 0 first)."""
        tile = TileSpec() if tile is None else tile
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InvalidPromptError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
        return pipeline.segment(self, pipeline.rgb(image), boxes, tile=tile, progress=progress)

    def predict_tiled(
        self,
        image: ImageInput | EncodedImage,
        text_prompt: str,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        *,
        tile: TileSpec | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> TiledPrediction:
        """Sliced inference for large images: :meth:`predict` on overlapping tiles.

        GroundingDINO runs on each tile of ``tile`` (default :class:`TileSpec`: 1024-px tiles, 20 %
        overlap) at full resolution; boxes are mapped to image pixels; detections of the same
        phrase that two tiles found are merged (``tile.merge``); SAM segments each kept box on a
        tile-sized window around it. Returns a :class:`~lang_sam.results.TiledPrediction`, which
        unpacks as :meth:`predict`'s result does, its masks crops with offsets (``.dense()`` gives
        ``(N, H, W)`` on request). A tile at least as large as the image gives exactly
        :meth:`predict`'s result. ``progress(stage, done, total)``, if given, hears of each tile
        detected (``"detect"``) and boxes segmented (``"segment"``): an image of many tiles takes
        minutes on a CPU.
        """
        tile = TileSpec() if tile is None else tile
        out = pipeline.run(self, pipeline.rgb(image), text_prompt, box_threshold, text_threshold,
                           select=[pipeline.merge_tiles(tile)], tile=tile, progress=progress)
        det = out.detections
        return TiledPrediction(out.masks, det.boxes, det.phrases, det.scores, iou_scores=out.iou_scores,
                               image_size=det.image_size, tiles=det.tiles)

    # ----------------------------------------------------------------------------------------
    # Video
    # ----------------------------------------------------------------------------------------
    def predict_video(
        self,
        video,
        text_prompt: str,
        *,
        detect_every: int = DETECT_EVERY,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        iou_threshold: float = IOU_THRESHOLD,
        lost_after: int = LOST_AFTER,
        max_candidates: int = MAX_CANDIDATES,
        offload: bool = True,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> Iterator[TrackedFrame]:
        """Track what ``text_prompt`` names through a video: yields one
        :class:`~lang_sam.results.TrackedFrame` per frame (masks, boxes, stable ``track_ids``),
        as each frame is done; frames are never all held in memory.

        ``video``: a video file (``pip install "lang-sam[video]"``), a folder of frame images, or
        any iterable of frames (PIL images or ``HxWx3`` uint8 arrays). The detector runs on the
        first frame with detections and every ``detect_every``-th frame after it; the segmenter
        (a video segmenter: SAM 2.1) follows objects in between; detections overlapping a track by
        ``iou_threshold`` (mask IoU) are that track, others start new tracks; a track empty for
        ``lost_after`` frames ends; a key frame gives at most ``max_candidates`` detections (the
        highest-scoring) to the segmenter. See :func:`lang_sam.video.predict_video`. A segmenter that
        cannot track (SAM v1 ``vit_*``) raises :class:`~lang_sam.errors.TrackingNotSupportedError`.
        """
        from lang_sam.video import predict_video

        return predict_video(self, video, text_prompt, detect_every=detect_every, box_threshold=box_threshold,
                             text_threshold=text_threshold, iou_threshold=iou_threshold, lost_after=lost_after,
                             max_candidates=max_candidates, offload=offload, progress=progress)

    @overload
    def set_image(self, image: ImageInput | EncodedImage) -> None: ...
    @overload
    def set_image(self, *, image_pil: ImageInput | EncodedImage) -> None: ...

    @_takes_image_pil
    def set_image(self, image: ImageInput | EncodedImage) -> None:
        """Encode an image with both networks now and keep it for :meth:`predict_prompt`."""
        self._pinned = self.encode(image, eager=True)

    def predict_prompt(
        self, text_prompt: str, box_threshold: float = 0.3, text_threshold: float = 0.25
    ) -> Prediction:
        """Like :meth:`predict`, on the image given to :meth:`set_image` (no image work at all)."""
        if self._pinned is None:
            raise NoImageError("call set_image(image) before predict_prompt(text_prompt)")
        return self.predict(self._pinned, text_prompt, box_threshold, text_threshold)


@dataclass(repr=False, eq=False)
class EncodedImage:
    """An image read once for several calls (:meth:`LangSAM.encode`).

    ``image`` is the RGB PIL image, ``pixels`` its ``HxWx3`` uint8 array, ``key`` its content key
    (None when the model's cache is off). The GroundingDINO features and SAM embedding are filled
    in on first use, for the networks that computed them (a rebuilt network recomputes).
    """

    image: Image.Image
    pixels: np.ndarray
    key: str | None
    features: object = None
    sam: tuple | None = None
    features_of: object = field(default=None, compare=False)
    sam_of: object = field(default=None, compare=False)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.image.height, self.image.width

    def __repr__(self) -> str:
        done = [n for n, v in (("GroundingDINO", self.features), ("SAM", self.sam)) if v is not None]
        return (f"EncodedImage({self.image.width}x{self.image.height}, encoded by: "
                f"{', '.join(done) or 'none yet'})")


#: Extensions that make a string a checkpoint path rather than a model type name.
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl", ".tar")


def _is_type_name(text: str) -> bool:
    """True when ``text`` reads as a model type ("vit_b") rather than a checkpoint path."""
    if any(sep in text for sep in ("/", "\\", os.sep)) or text.startswith(("~", ".")):
        return False
    return not text.lower().endswith(_CHECKPOINT_SUFFIXES)  # never decided by the working folder


def _prompt_list(text_prompts) -> list[str]:
    if isinstance(text_prompts, str):
        raise InvalidPromptTypeError(
            f"text_prompts must be a list of prompts, got the string {text_prompts!r}; for one prompt use predict()")
    prompts = list(text_prompts)
    if not prompts:
        raise InvalidPromptError("text_prompts is empty: expected a list of one or more prompts")
    return prompts
