"""The :class:`LangSAM` facade: a detector turns a text prompt into boxes, a segmenter each box into a
mask (GroundingDINO and SAM by default). It loads the engines the registry names for ``gdino_type``
and ``sam_type`` into one :class:`~lang_sam.engines.Engines` (``model.engines``) and delegates (text
prompts: :mod:`lang_sam.pipeline`; videos: :mod:`lang_sam.video`). The API is the 2023 lang-segment-anything's,
plus SAM's own prompts (:meth:`LangSAM.segment`) and ``tile=`` (sliced inference, :mod:`lang_sam.tiling`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence, cast, overload

import torch

from lang_sam import pipeline, video
from lang_sam.cache import EncodingCache
from lang_sam.engines import (Delegated, EncodedImage, Engines, check_backend_device, check_boxes, is_type_name,
                              load_engine, runs_on_engines, takes_image_pil)
from lang_sam.errors import NoImageError
from lang_sam.hub import GDINO_MODELS, SAM_MODELS, ModelSpec
from lang_sam.masks import CropMask
from lang_sam.models.base import Detector, Engine, Segmenter, TextSegmenter
from lang_sam.models.registry import DEFAULT_GDINO, DEFAULT_SAM, get_spec
from lang_sam.precision import check_precision
from lang_sam.results import Detections, Prediction, TiledPrediction
from lang_sam.tiling import TileSpec
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD, ImageInput, default_device

if TYPE_CHECKING:
    from segment_anything import SamPredictor

__all__ = ["LangSAM", "SAM_MODELS", "GDINO_MODELS", "default_device"]

Image = ImageInput | EncodedImage


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
        backend: ``"pytorch"`` or ``"openvino"`` (CPU; fp32 or int8): :func:`lang_sam.engines.load_engine`.

    Encodings are recognised by image content, not object identity. Not thread-safe: SAM's
    predictor holds per-image state; use one ``LangSAM`` per thread.
    """

    #: The detector and segmenter engines, with the encoding cache: what every method runs.
    engines: Engines
    #: The segmenter engine (``sam_type``); a text segmenter (SAM 3) is also the detector.
    segmenter: Delegated[Segmenter | TextSegmenter] = Delegated()
    #: The detector engine (``gdino_type``), or the text segmenter itself.
    detector: Delegated[Detector | TextSegmenter] = Delegated()
    #: Give each box only the prompt part (between ``.``) holding its best token. Settable.
    return_prompts: Delegated[bool] = Delegated()
    #: The original's attributes: SAM's predictor (None without one), GroundingDINO (None with a text segmenter).
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
        backend: str = "pytorch",
    ):
        # Unknown types and unavailable devices fail before anything heavy happens.
        sam_spec = get_spec("sam", sam_type)
        gdino_spec = get_spec("gdino", gdino_type)
        self.backend, self.device = check_backend_device(backend, device)
        self.sam_type, self.gdino_type = sam_spec.name, gdino_spec.name
        self.precision = check_precision(precision, self.device, self.backend)
        self.fast_attention, self._cache_size = bool(fast_attention), EncodingCache(cache_size).maxsize  # validates
        self.engines = Engines.load((sam_spec, ckpt_path), (gdino_spec, gdino_ckpt_path), self._load,
                                    return_prompts=return_prompts, cache_size=self._cache_size)
        self._wire()

    def __repr__(self) -> str:
        cached = len(self.segmenter.cache) if hasattr(self, "engines") else 0
        detects = "None" if getattr(self, "detector", None) is getattr(self, "segmenter", 0) else repr(self.gdino_type)
        return (f"LangSAM(sam_type={self.sam_type!r}, gdino_type={detects}, device='{self.device}', "
                f"precision={self.precision!r}, cache={cached}/{self._cache_size} images, "
                f"fast_attention={self.fast_attention}, return_prompts={getattr(self, 'return_prompts', False)}, "
                f"backend={getattr(self, 'backend', 'pytorch')!r})")

    def _load(self, spec: ModelSpec, ckpt_path: str | os.PathLike | None) -> Engine:
        extra = {"fast_attention": self.fast_attention} if spec.family == "sam" else {}
        return load_engine(spec, ckpt_path, self.device, precision=self.precision, backend=self.backend,
                           cache_size=self._cache_size, **extra)

    def _wire(self) -> None:  # the original's attributes, from the engines now loaded; drops the pinned image
        self._pinned: EncodedImage | None = None
        self.sam = getattr(self.segmenter, "predictor", None)  # the original's attribute: a SamPredictor
        self.groundingdino = getattr(self.detector, "model") if self.detector is not self.segmenter else None

    def build_sam(self, ckpt_path: str | os.PathLike | None = None, *, sam_type: str | None = None) -> None:
        """(Re)load SAM: ``build_sam()``, ``build_sam("path.pth")``, ``build_sam(sam_type="vit_b")``.

        The first argument may also be a type name (``build_sam("vit_b")``, as the original web demo called
        it): a string that does not look like a path (no folder separator, no leading ``~`` or ``.``, no
        checkpoint extension such as ``.pth``) is a type, whatever files the working folder holds, so an
        unknown one raises :class:`~lang_sam.errors.UnknownModelError` listing the valid types. For a
        file of such a name, pass ``"./name"`` or a ``Path``.
        """
        if isinstance(ckpt_path, str) and sam_type is None and is_type_name(ckpt_path):
            sam_type, ckpt_path = ckpt_path, None
        spec = get_spec("sam", sam_type if sam_type is not None else self.sam_type)
        segmenter = cast("Segmenter | TextSegmenter", self._load(spec, ckpt_path))  # a sam family role
        was_text = self.detector.segments_text
        self.engines.segmenter = segmenter
        self.sam_type = self.engines.sam_type = spec.name
        if segmenter.segments_text:  # it detects too: no GroundingDINO
            self.engines.detector = cast(TextSegmenter, segmenter)
        elif was_text:  # a text segmenter was the detector: load GroundingDINO
            self.build_groundingdino()
        self._wire()

    def build_groundingdino(self, *, gdino_type: str | None = None, ckpt_path: str | os.PathLike | None = None) -> None:
        """(Re)load GroundingDINO, of ``gdino_type`` (default: the current one). With a text
        segmenter (``sam_type="sam3"``) only the type is recorded: it detects itself, and
        GroundingDINO is loaded when a box segmenter replaces it (:meth:`build_sam`)."""
        spec = get_spec("gdino", gdino_type if gdino_type is not None else self.gdino_type)
        if not self.segmenter.segments_text:
            self.engines.detector = cast(Detector, self._load(spec, ckpt_path))  # the Detector role
            self._wire()
        self.gdino_type = spec.name

    @property
    def cache_size(self) -> int:
        """How many recent images keep their encodings (0: no cache). Settable."""
        return self._cache_size

    @cache_size.setter
    def cache_size(self, value: int) -> None:
        self.engines.cache_size = self._cache_size = value

    def clear_cache(self) -> None:
        """Drop every cached image encoding (and the image pinned by :meth:`set_image`)."""
        self.engines.clear_cache()
        self._pinned = None

    #: Read an image once for several calls (an :class:`EncodedImage`): :meth:`Engines.encode`.
    encode = runs_on_engines(Engines.encode)

    @overload
    def predict_dino(self, image: Image, text_prompt: str, box_threshold: float, text_threshold: float,
                     *, tile: None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]: ...
    @overload
    def predict_dino(self, *, image_pil: Image, text_prompt: str, box_threshold: float,
                     text_threshold: float) -> tuple[torch.Tensor, torch.Tensor, list[str]]: ...
    @overload
    def predict_dino(self, image: Image, text_prompt: str, box_threshold: float, text_threshold: float,
                     *, tile: TileSpec, progress: pipeline.Progress | None = None) -> Detections: ...

    @takes_image_pil
    def predict_dino(self, image: Image, text_prompt: str, box_threshold: float, text_threshold: float,
                     *, tile: TileSpec | None = None, progress: pipeline.Progress | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, list[str]] | Detections:
        """GroundingDINO alone: ``(boxes (N, 4) float32 xyxy pixels, logits (N,), phrases)``,
        the 2023 order (``logits`` are the detector's scores, probabilities in [0, 1]).

        With ``tile``: the tiled detections of :func:`lang_sam.pipeline.detect` (not merged), a :class:`Detections`
        with ``tile_index`` and ``tiles``; ``progress("detect", tiles_done, tiles)`` after each tile (and 0 first).

        Raises:
            InvalidPromptError, InvalidThresholdError: a bad prompt or threshold (before image work).
            InvalidImageError: ``image`` cannot be read.
        """
        prepared = self.engines.prepare(text_prompt, box_threshold, text_threshold)
        det, _ = pipeline.detect(self.engines, image, prepared, tile=tile, progress=progress)
        return det if tile is not None else (det.boxes, det.scores, det.phrases)

    @overload
    def predict_sam(self, image: Image, boxes: torch.Tensor, *, tile: None = None) -> torch.Tensor: ...
    @overload
    def predict_sam(self, *, image_pil: Image, boxes: torch.Tensor) -> torch.Tensor: ...
    @overload
    def predict_sam(self, image: Image, boxes: Any, *, tile: TileSpec, progress: pipeline.Progress | None = None
                    ) -> tuple[list[CropMask], torch.Tensor]: ...

    @takes_image_pil
    def predict_sam(self, image: Image, boxes: Any, *, tile: TileSpec | None = None,
                    progress: pipeline.Progress | None = None) -> torch.Tensor | tuple[list[CropMask], torch.Tensor]:
        """SAM alone: ``(N, 1, H, W)`` bool masks for ``(N, 4)`` xyxy pixel boxes.

        With ``tile``: each box on a window of the image (:func:`lang_sam.tiling.sam_window`),
        each window encoded once; returns ``(masks, iou_scores)``: ``N`` :class:`CropMask` and SAM's
        predicted IoU ``(N,)`` float32, in the boxes' order; ``progress("segment", done, N)``.

        Raises:
            InvalidPromptError: ``boxes`` not of shape ``(N, 4)``.
            UnsupportedPromptError: a text segmenter (SAM 3) takes no box prompt.
        """
        boxes = check_boxes(boxes)
        if tile is not None:
            return pipeline.segment(self.engines, pipeline.rgb(image), boxes, tile=tile, progress=progress)
        return pipeline.segment(self.engines, image, boxes)[0][:, None]

    #: SAM's own prompts (boxes, points, masks) on an image: :meth:`lang_sam.engines.Engines.segment`.
    segment = runs_on_engines(Engines.segment)
    #: Segment everything (SAM's automatic mask generator): :meth:`lang_sam.engines.Engines.generate`.
    generate = runs_on_engines(Engines.generate)

    @overload
    def predict(self, image: Image, text_prompt: str, box_threshold: float = BOX_THRESHOLD,
                text_threshold: float = TEXT_THRESHOLD, *, tile: None = None) -> Prediction: ...
    @overload
    def predict(self, *, image_pil: Image, text_prompt: str, box_threshold: float = BOX_THRESHOLD,
                text_threshold: float = TEXT_THRESHOLD) -> Prediction: ...
    @overload
    def predict(self, image: Image, text_prompt: str, box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD,
                *, tile: TileSpec, progress: pipeline.Progress | None = None) -> TiledPrediction: ...

    @takes_image_pil
    def predict(self, image: Image, text_prompt: str, box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD,
                *, tile: TileSpec | None = None, progress: pipeline.Progress | None = None
                ) -> Prediction | TiledPrediction:
        """Segment what ``text_prompt`` names. Returns ``(masks, boxes, phrases, logits)``.

        ``image`` (the 2023 keyword ``image_pil=`` works too) may be a PIL image (any mode), an ``HxWx3``
        uint8 array, a path or an :meth:`encode` handle. See :class:`Prediction` for shapes; nothing found
        gives ``(0, H, W)``, ``(0, 4)``, ``[]``, ``(0,)``. A recent image (same pixels) reuses its
        encodings: only the prompt-dependent work runs.

        ``tile`` (a :class:`TileSpec`, e.g. ``TileSpec()``: 1024-px tiles, 20 % overlap): detect on each
        tile at full resolution, merge what two tiles found twice (``tile.merge``), segment each kept box
        on a tile-sized window. Returns a :class:`~lang_sam.results.TiledPrediction` (unpacks the same
        way; masks as crops, ``.dense()`` for ``(N, H, W)``); a tile at least as large as the image gives
        the untiled result. ``progress(stage, done, total)``: ``"detect"`` in tiles, ``"segment"`` in boxes.

        Raises:
            InvalidPromptError, InvalidThresholdError: a bad prompt or threshold (before image work).
            InvalidImageError: ``image`` cannot be read; ``ImageTooThinError``: an engine cannot take it.
        """
        return pipeline.predict(self.engines, image, text_prompt, box_threshold, text_threshold, tile=tile,
                                progress=progress)

    @overload
    def predict_prompts(self, image: Image, text_prompts: Sequence[str], box_threshold: float = BOX_THRESHOLD,
                        text_threshold: float = TEXT_THRESHOLD) -> list[Prediction]: ...
    @overload
    def predict_prompts(self, *, image_pil: Image, text_prompts: Sequence[str], box_threshold: float = BOX_THRESHOLD,
                        text_threshold: float = TEXT_THRESHOLD) -> list[Prediction]: ...

    @takes_image_pil
    def predict_prompts(self, image: Image, text_prompts: Sequence[str], box_threshold: float = BOX_THRESHOLD,
                        text_threshold: float = TEXT_THRESHOLD) -> list[Prediction]:
        """One :class:`Prediction` per prompt for one image (:func:`lang_sam.pipeline.predict_prompts`)."""
        return pipeline.predict_prompts(self.engines, image, text_prompts, box_threshold, text_threshold)

    #: One :class:`Prediction` per image (one prompt, or one each): :func:`lang_sam.pipeline.predict_batch`.
    predict_batch = runs_on_engines(pipeline.predict_batch)

    #: Track what a text prompt names through a video: :func:`lang_sam.video.predict_video` on :attr:`engines`.
    predict_video = runs_on_engines(video.predict_video)

    @overload
    def set_image(self, image: Image) -> None: ...
    @overload
    def set_image(self, *, image_pil: Image) -> None: ...

    @takes_image_pil
    def set_image(self, image: Image) -> None:
        """Encode an image with both networks now and keep it for :meth:`predict_prompt`."""
        self._pinned = self.encode(image, eager=True)

    def predict_prompt(self, text_prompt: str, box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD) -> Prediction:
        """Like :meth:`predict`, on the image given to :meth:`set_image` (no image work at all).

        Raises:
            NoImageError: :meth:`set_image` was not called (or the engines were rebuilt since).
        """
        if self._pinned is None:
            raise NoImageError("call set_image(image) before predict_prompt(text_prompt)")
        return self.predict(self._pinned, text_prompt, box_threshold, text_threshold)
