"""The engine seam: what a detector, a segmenter and a text segmenter must do.

:class:`~lang_sam.LangSAM` and the pipeline (:mod:`lang_sam.pipeline`) speak only these interfaces;
the registry entry of a model type (:class:`lang_sam.hub.ModelSpec`) names the class that
implements its family (``engine="lang_sam.models.segmenter:SamSegmenter"``), and
:func:`engine_for` imports it when the model is loaded. So a new model family is one module under
``lang_sam/models/`` implementing one of these classes, plus its registry entries and tests: the
pipeline, the CLI, Ray, tiling and the server are not edited (see docs/development.md, "Add a model family").

All three follow ``SamPredictor``'s split: encode an image once (cached by content key), then
answer prompts on that encoding cheaply. Coordinates are input-image pixels, boxes xyxy, sizes
``(H, W)`` (:mod:`lang_sam.results` has the vocabulary).
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence, TypeVar, cast

import numpy as np
import torch
from PIL import Image

from lang_sam.cache import EncodingCache
from lang_sam.errors import InvalidArgumentError, InvalidPromptError
from lang_sam.hub.spec import ModelSpec
from lang_sam.results import Detections, MaskPrediction

__all__ = ["Engine", "Detector", "Segmenter", "MaskLogits", "TextSegmenter", "VideoSegmenter", "TrackStep",
           "TextVideoSegmenter", "TextTrackStep", "ROLES",
           "engine_for", "prompt_count"]


class _Implements:
    """A capability question an engine answers by the interfaces of this module it implements, so
    its answer cannot disagree with the methods the pipeline then calls. Readable on the class
    (``engine_for(spec).can_track``, before loading weights) and on an engine (``seg.can_track``);
    a ``bool`` either way. ``interfaces`` is called when first asked: the video interfaces are
    defined below :class:`Engine`."""

    def __init__(self, interfaces: Callable[[], tuple[type, ...]], doc: str) -> None:
        self.interfaces = interfaces
        self.__doc__ = doc

    def __get__(self, obj: object | None, owner: type | None = None) -> bool:
        return issubclass(owner if owner is not None else type(obj), self.interfaces())


class Engine(ABC):
    """What every engine has: built from a registry entry, on a device, with an encoding cache.

    Attributes an implementation sets: ``device`` (``torch.device``), ``precision`` (``"fp32"``,
    ``"bf16"`` or ``"fp16"``), ``cache`` (:class:`~lang_sam.cache.EncodingCache` of image
    encodings), ``model`` (the ``torch.nn.Module``).

    The capability questions (``bool``, on the class or an engine) are answered here from the
    interfaces an engine implements; code outside ``lang_sam/models/`` asks them instead of
    testing classes: ``takes_boxes`` (box / point / mask prompts: a :class:`Segmenter`),
    ``segments_text`` (a :class:`TextSegmenter`: it finds and segments what a text prompt names by
    itself, so no detector is loaded), ``can_track`` (it follows objects through a video: a
    :class:`VideoSegmenter` or a :class:`TextVideoSegmenter`) and ``tracks_text`` (a
    :class:`TextVideoSegmenter`: it follows what a text prompt names by itself).
    """

    device: torch.device
    precision: str
    model: torch.nn.Module
    cache: EncodingCache
    #: The backends this engine's heavy parts can run on (:data:`lang_sam.models.openvino.BACKENDS`);
    #: an engine that lists ``"openvino"`` takes ``backend="openvino"`` in :meth:`from_spec`.
    #: Readable on the class, before loading weights.
    backends: tuple[str, ...] = ("pytorch",)
    #: The backend this engine was built with.
    backend: str = "pytorch"

    takes_boxes = _Implements(lambda: (Segmenter,), "It takes box / point / mask prompts (a Segmenter).")
    segments_text = _Implements(lambda: (TextSegmenter,),
                                "It detects and segments what a text prompt names by itself (a TextSegmenter).")
    can_track = _Implements(lambda: (VideoSegmenter, TextVideoSegmenter),
                            "It follows objects through a video (a VideoSegmenter or a TextVideoSegmenter).")
    tracks_text = _Implements(lambda: (TextVideoSegmenter,),
                              "It follows what a text prompt names through a video by itself (a TextVideoSegmenter).")

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: ModelSpec, ckpt_path: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                  *, progress: bool = True, precision: str = "fp32", cache_size: int = 2,
                  **options: Any) -> "Engine":
        """Resolve ``spec``'s checkpoint (explicit path, cache, download: :mod:`lang_sam.hub`),
        check it fits ``spec.arch`` and load it. ``options`` an engine does not know are errors;
        ``backend=<name>`` is an option of the engines whose :attr:`backends` list it."""

    @classmethod
    def write_random_checkpoint(cls, path: str | os.PathLike, arch: Any, seed: int = 0, **options: Any) -> Path:
        """Write a checkpoint of the network ``arch`` describes with random weights, in the format
        :meth:`from_spec` reads (the released files' format), at ``path`` (written beside it and
        renamed); for tests and benchmarks (:mod:`lang_sam.testing`). ``options`` are the engine's.

        Raises:
            InvalidArgumentError: the engine has no random-weight writer, or does not know an option.
        """
        raise InvalidArgumentError(f"{cls.__module__}.{cls.__name__} cannot write random-weight checkpoints")

    def check_image_size(self, height: int, width: int, what: str | None = None) -> None:
        """Raise :class:`~lang_sam.errors.ImageTooThinError` if this engine cannot take an image of
        ``height x width`` pixels (its resize to the network's input would make a side 0 pixels).
        ``what`` names the image in the message (default ``"image WxH"``). Engines that resize to a
        fixed square (SAM 2.1, SAM 3) take any image: the default does nothing."""


class Detector(Engine):
    """Text -> boxes (GroundingDINO: :class:`~lang_sam.models.detector.GroundingDINODetector`)."""

    @abstractmethod
    def prepare(self, text_prompt: str, box_threshold: float, text_threshold: float) -> Any:
        """Check a request before any image work and return it ready for :meth:`detect`
        (:class:`~lang_sam.errors.InvalidPromptError`, ``InvalidThresholdError``, ...)."""

    @abstractmethod
    def encode_image(self, image: Image.Image, key: str | None = None) -> Any:
        """The prompt-independent work on an RGB PIL image (cached under the content ``key``)."""

    @abstractmethod
    def detect(self, features: Any, prepared: Any, *, return_prompts: bool = False) -> Detections:
        """The boxes ``prepared`` (from :meth:`prepare`) names in the image of ``features``."""


class MaskLogits(NamedTuple):
    """What :meth:`Segmenter.predict_logits` returns for ``B`` prompts, ``C`` masks each.

    ``logits``: ``(B, C, H, W)`` float32 mask logits in image pixels (a mask is ``logits >
    mask_threshold``, 0.0 for SAM); ``iou_scores``: ``(B, C)`` float32, the predicted IoU;
    ``low_res_logits``: ``(B, C, 256, 256)`` float32, what ``mask_input`` takes back.
    """

    logits: torch.Tensor
    iou_scores: torch.Tensor
    low_res_logits: torch.Tensor


class Segmenter(Engine):
    """Boxes / points / masks -> masks (SAM: :class:`~lang_sam.models.segmenter.SamSegmenter`)."""

    #: The automatic mask generator's settings that differ from SAM v1's
    #: (:class:`lang_sam.generate.GenerateSettings`), e.g. ``{"pred_iou_thresh": 0.8}`` for SAM 2.
    generate_defaults: dict[str, Any] = {}

    @abstractmethod
    def encode(self, image: np.ndarray, key: str | None = None) -> Any:
        """The image encoding of an ``HxWx3`` uint8 RGB array (cached under the content ``key``)."""

    #: Side of the square low-resolution logits :meth:`predict` returns and ``mask_input`` takes
    #: back: a quarter of the input size, 256 for every released SAM (tiny test models read less).
    mask_input_size: int = 256

    @abstractmethod
    def use(self, encoding: Any) -> None:
        """Make ``encoding`` (from :meth:`encode`) the image :meth:`predict` answers for."""

    @abstractmethod
    def predict(self, *, boxes: Any = None, points: Any = None, point_labels: Any = None,
                mask_input: Any = None, multimask_output: bool = False,
                return_low_res: bool = False) -> MaskPrediction:
        """Masks for ``B`` checked, batched prompts (``(B, 4)`` boxes, ``(B, K, 2)`` points with
        ``(B, K)`` labels, ``(B, 1, 256, 256)`` mask logits) on the image given to :meth:`use`."""

    @abstractmethod
    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        """How many prompts are decoded together on a ``height x width`` image (the pipeline
        hands masks on chunk by chunk, so this bounds its memory)."""

    def predict_logits(self, *, points: Any, point_labels: Any, mask_input: Any = None,
                       multimask_output: bool = True) -> MaskLogits:
        """Mask logits (not thresholded) for ``B`` point prompts, as the family's automatic mask
        generator reads them (:mod:`lang_sam.generate`): ``points`` ``(B, K, 2)`` xy pixels of the
        image given to :meth:`use` (numpy float64 or torch), ``point_labels`` ``(B, K)``,
        ``mask_input`` ``(B, 1, 256, 256)`` or None. All ``B`` prompts may be decoded at once (the
        caller bounds ``B``: ``points_per_batch``).

        This default calls :meth:`predict` and upsamples its ``low_res_logits`` bilinearly to the
        image size (``align_corners=False``): SAM 2's post-processing (Meta's
        ``SAM2Transforms.postprocess_masks`` without hole filling, and transformers'). An engine
        whose masks are made otherwise (SAM v1 pads to 1024 px first), or whose low-resolution
        logits are clamped, overrides it so that its logits are those of its own predictor."""
        out = self.predict(points=points, point_labels=point_labels, mask_input=mask_input,
                           multimask_output=multimask_output, return_low_res=True)
        assert out.low_res_logits is not None, "predict(return_low_res=True) returns low_res_logits"
        low = out.low_res_logits.float()
        logits = torch.nn.functional.interpolate(low, out.image_size, mode="bilinear", align_corners=False)
        return MaskLogits(logits, out.iou_scores.float(), low)

    def segment_boxes(self, encoding: Any, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, H, W)`` bool masks and ``(N,)`` float32 IoU scores for ``(N, 4)`` float32 xyxy
        boxes (``N`` may be 0) on the image of ``encoding``: one mask per box."""
        self.use(encoding)
        out = self.predict(boxes=boxes)
        return out.masks[:, 0], out.iou_scores[:, 0]


class TextSegmenter(Engine):
    """Text -> masks in one network (the kind SAM 3 is: :class:`~lang_sam.models.sam3.Sam3Segmenter`):
    it plays detector and segmenter at once. A registry entry of the ``sam`` family may name one
    (:data:`ROLES`); :class:`~lang_sam.LangSAM` then loads no detector (``model.detector`` is the
    text segmenter itself), and :func:`lang_sam.pipeline.run` maps its detect and segment steps
    onto :meth:`detect` (boxes, scores, phrases) and :meth:`masks_for` (the masks of the
    detections kept). It takes no box / point / mask prompts (``LangSAM.segment`` raises
    :class:`~lang_sam.errors.UnsupportedPromptError`)."""

    @abstractmethod
    def prepare(self, text_prompt: str, box_threshold: float, text_threshold: float) -> Any:
        """As :meth:`Detector.prepare`."""

    @abstractmethod
    def encode_image(self, image: Image.Image, key: str | None = None) -> Any:
        """As :meth:`Detector.encode_image`."""

    @abstractmethod
    def detect(self, features: Any, prepared: Any, *, return_prompts: bool = False) -> Detections:
        """The objects the prompt names, as boxes (their masks are kept for :meth:`masks_for`)."""

    #: A text segmenter takes no mask prompt; this is the side box / point / mask prompts are
    #: checked against (as for the released SAMs) before it refuses them
    #: (:class:`~lang_sam.errors.UnsupportedPromptError`), so a malformed prompt is reported first.
    mask_input_size: int = 256

    @abstractmethod
    def masks_for(self, features: Any, detections: Detections,
                  prepared: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, H, W)`` bool masks (pixels of the image of ``features``) and ``(N,)`` float32
        scores of ``detections``: those :meth:`detect` returned for ``prepared`` on ``features``
        (``None``: the last prompt detected there), any subset, in any order, phrases possibly
        renamed. A detection not among them (a box merged across tiles, given in another
        window's pixels) gets the mask of the one found there that its box overlaps most
        (``prepared`` is then detected on ``features`` first), or an empty mask and score 0."""

    @abstractmethod
    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        """How many detections :meth:`masks_for` is given at once on a ``height x width`` image."""


class TrackStep(NamedTuple):
    """What :meth:`VideoSegmenter.track` returns for one frame: the objects it follows there.

    ``object_ids``: ``(N,)`` int64 tensor (the ids given to :meth:`VideoSegmenter.track`);
    ``masks``: ``(N, H, W)`` bool tensor in frame pixels; ``iou_scores``: ``(N,)`` float32 (the
    segmenter's confidence in each mask; an object it lost on this frame has an empty mask).
    """

    object_ids: torch.Tensor
    masks: torch.Tensor
    iou_scores: torch.Tensor


class VideoSegmenter(ABC):
    """A segmenter that can follow objects through a video (SAM 2.1's memory): a mixin that a
    :class:`Segmenter` engine also implements. The video pipeline (``LangSAM.predict_video``)
    feeds frames one by one, in order, so a session must keep memory flat with video length
    (only the frames its memory attends to; the rest offloaded or dropped).
    """

    @abstractmethod
    def start_video(self, *, offload: bool = True) -> Any:
        """A new, empty tracking session (``offload``: keep per-frame state on the CPU)."""

    @abstractmethod
    def track(self, session: Any, frame: np.ndarray, *, new_ids: Sequence[int] = (),
              new_boxes: torch.Tensor | None = None) -> TrackStep:
        """Feed the next ``HxWx3`` uint8 RGB ``frame`` (frame ``i`` of the session after ``i``
        calls) and return the masks of every live object on it. ``new_ids`` / ``new_boxes``
        (``(K, 4)`` float32 xyxy frame pixels) start following ``K`` new objects from this frame,
        prompted by their boxes, before the frame is segmented."""

    @abstractmethod
    def drop(self, session: Any, object_ids: Sequence[int]) -> None:
        """Stop following ``object_ids`` (their memory is freed)."""


class TextTrackStep(NamedTuple):
    """What :meth:`TextVideoSegmenter.track` returns for one frame: the objects it follows there.

    ``object_ids``: ``(N,)`` int64 tensor, the engine's own ids (stable while an object is
    followed; the video pipeline maps them to track ids); ``masks``: ``(N, H, W)`` bool in frame
    pixels; ``scores``: ``(N,)`` float32 (the engine's detection score of each object);
    ``phrases``: the prompt phrase that found each object.
    """

    object_ids: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor
    phrases: list[str]


class TextVideoSegmenter(ABC):
    """A text segmenter that follows what a prompt names through a video by itself (SAM 3's video
    model): it detects on every frame and keeps its own object ids, so the video pipeline uses no
    detector, no key frames and no track table for it. A mixin that a :class:`TextSegmenter`
    engine also implements. Frames come one by one, in order; a session keeps memory flat with
    video length and returns every frame's objects when that frame is fed (no output held back).
    """

    @abstractmethod
    def prepare(self, text_prompt: str, box_threshold: float, text_threshold: float) -> Any:
        """As :meth:`TextSegmenter.prepare`: the checked prompt :meth:`start_video` takes."""

    @abstractmethod
    def start_video(self, prepared: Any, *, offload: bool = True) -> Any:
        """A new tracking session for ``prepared`` (from :meth:`TextSegmenter.prepare`: each
        phrase one concept); ``offload``: keep per-frame state on the CPU."""

    @abstractmethod
    def track(self, session: Any, frame: np.ndarray) -> TextTrackStep:
        """Feed the next ``HxWx3`` uint8 RGB ``frame`` (frame ``i`` of the session after ``i``
        calls) and return every object followed on it."""


#: Registry family -> the interface(s) its engines implement (a ``sam`` engine segments boxes, or
#: text directly).
ROLES: dict[str, type[Engine] | tuple[type[Engine], ...]] = {
    "sam": (Segmenter, TextSegmenter), "gdino": Detector,
}


def prompt_count(boxes: Any = None, points: Any = None, mask_input: Any = None) -> int:
    """The batch size ``B`` of a :meth:`Segmenter.predict` call's prompts: the common length of
    those given (``boxes`` ``(B, 4)``, ``points`` ``(B, K, 2)``, ``mask_input`` ``(B, 1, h, w)``).

    Raises:
        InvalidPromptError: none is given, or their lengths differ.
    """
    sizes = [len(t) for t in (boxes, points, mask_input) if t is not None]
    if not sizes:
        raise InvalidPromptError("give at least one of boxes, points or mask_input")
    if len(set(sizes)) != 1:
        raise InvalidPromptError(f"boxes, points and mask_input must have the same batch size, got {sizes}")
    return sizes[0]


_M = TypeVar("_M", bound=torch.nn.Module)


def on_device(model: _M, device: torch.device) -> _M:
    """``model.to(device).eval()``, typed as the model's own class (both return the module itself).

    transformers types ``PreTrainedModel.to`` through ``functools.wraps(nn.Module.to)``, which loses
    the bound ``self``; called through ``nn.Module`` the call is checked as torch declares it."""
    module: torch.nn.Module = model
    return cast(_M, module.to(device).eval())


def engine_for(spec: ModelSpec) -> type[Engine]:
    """The engine class named by ``spec.engine`` (``"package.module:Class"``; empty, the family's
    :data:`~lang_sam.models.registry.DEFAULT_ENGINES` entry), imported now.

    Raises:
        InvalidArgumentError: the class cannot be imported, or does not implement its family's
            interface (:data:`ROLES`).
    """
    from lang_sam.models.registry import DEFAULT_ENGINES

    if not spec.engine and spec.family in DEFAULT_ENGINES:
        spec = replace(spec, engine=DEFAULT_ENGINES[spec.family])
    module_name, _, class_name = spec.engine.partition(":")
    role = ROLES.get(spec.family, Engine)
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgumentError(
            f"{spec.family} model {spec.name!r}: its engine {spec.engine!r} cannot be imported "
            f"({type(exc).__name__}: {exc}); expected 'package.module:Class'") from exc
    if not (isinstance(cls, type) and issubclass(cls, role)):
        roles = role if isinstance(role, tuple) else (role,)
        raise InvalidArgumentError(
            f"{spec.family} model {spec.name!r}: its engine {spec.engine!r} is not a "
            f"{' or a '.join(f'{r.__module__}.{r.__name__}' for r in roles)}")
    return cls
