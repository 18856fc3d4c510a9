"""The engines a run uses, in one typed object: :class:`Engines`.

:func:`lang_sam.pipeline.run` / ``detect`` / ``segment`` and :func:`lang_sam.video.predict_video`
take an :class:`Engines`, never the :class:`~lang_sam.LangSAM` facade: it holds the detector
(:class:`~lang_sam.models.base.Detector`, or the text segmenter itself), the segmenter (a box-prompted
:class:`~lang_sam.models.base.Segmenter`, or a :class:`~lang_sam.models.base.TextSegmenter` such as
SAM 3, which segments what a text prompt names by itself), ``return_prompts`` and the encoding cache
(:class:`EncodedImage` handles, each engine's content-keyed LRU). It encodes images and answers
"masks for these detections" for every engine kind (:meth:`Engines.decoder`), so the pipeline has one
chunk loop. ``LangSAM`` builds one (``model.engines``) and delegates; a caller may build one from
engine objects directly (``Engines(detector, segmenter)``).

Also here: the facade's argument helpers (the 2023 keyword ``image_pil=``, prompt lists, type names).
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

import numpy as np
import torch
from PIL import Image

from lang_sam.cache import image_key
from lang_sam.errors import InvalidArgumentError, InvalidPromptError, InvalidPromptTypeError, UnsupportedPromptError
from lang_sam.generate import GenerateSettings, generate
from lang_sam.hub import SAM_MODELS, ModelSpec, resolve_checkpoints
from lang_sam.models.base import Detector, Engine, Segmenter, TextSegmenter, engine_for
from lang_sam.models.openvino import BackendFallbackWarning, check_backend, check_target, require_openvino
from lang_sam.results import Detections, GeneratedMasks, MaskPrediction
from lang_sam.validation import ImageInput, check_device, check_sam_prompts, to_rgb_pil

__all__ = ["Engines", "EncodedImage", "Decode", "load_engine", "check_backend_device"]

#: ``decode(detections)``: ``(N, H, W)`` bool masks and ``(N,)`` float32 scores of ``N`` detections
#: (boxes in the pixels of the image it was made for), from :meth:`Engines.decoder`.
Decode = Callable[[Detections], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(repr=False, eq=False)
class EncodedImage:
    """An image read once for several calls (:meth:`LangSAM.encode`, :meth:`Engines.encode`).

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


class Engines:
    """A detector and a segmenter, with their encoding cache: what the pipeline runs.

    Args:
        detector: a :class:`~lang_sam.models.base.Detector`, or the text segmenter itself.
        segmenter: a :class:`~lang_sam.models.base.Segmenter` (box prompts) or a
            :class:`~lang_sam.models.base.TextSegmenter` (it detects and segments by itself).
        return_prompts: give each box only the prompt part (between ``.``) holding its best token.
        cache_size: how many recent images keep their encodings (0: no content key is computed;
            default: the segmenter cache's size). Settable: both engines' caches follow.
        sam_type: the segmenter's name in error messages (default: its class name).
    """

    def __init__(self, detector: Detector | TextSegmenter, segmenter: Segmenter | TextSegmenter, *,
                 return_prompts: bool = False, cache_size: int | None = None, sam_type: str | None = None):
        self.detector = detector
        self.segmenter = segmenter
        self.return_prompts = bool(return_prompts)
        self._cache_size = segmenter.cache.maxsize if cache_size is None else cache_size
        self.sam_type = sam_type if sam_type is not None else type(segmenter).__name__

    @classmethod
    def load(cls, sam: tuple[ModelSpec, str | os.PathLike | None], gdino: tuple[ModelSpec, str | os.PathLike | None],
             load: Callable[[ModelSpec, str | os.PathLike | None], Engine], *, return_prompts: bool = False,
             cache_size: int | None = None) -> Engines:
        """The engines of ``sam`` and ``gdino`` (a registry spec and a checkpoint path or None), each
        made by ``load(spec, path)``. A text segmenter (SAM 3) is its own detector: no GroundingDINO
        is loaded. Otherwise both files are found (or fetched) before either is loaded, so one
        :class:`~lang_sam.errors.MissingWeightsError` lists every missing file.

        Raises:
            MissingWeightsError: a checkpoint can be neither found nor fetched (all of them listed).
            InvalidArgumentError: an engine class cannot be imported or does not implement its role.
        """
        spec = sam[0]
        if engine_for(spec).segments_text:
            (path,) = resolve_checkpoints([sam])
            text = cast(TextSegmenter, load(spec, path))  # engine_for checked the sam family's roles
            return cls(text, text, return_prompts=return_prompts, cache_size=cache_size, sam_type=spec.name)
        gdino_path, sam_path = resolve_checkpoints([gdino, sam])
        detector = cast(Detector, load(gdino[0], gdino_path))  # engine_for checked the Detector role
        segmenter = cast("Segmenter | TextSegmenter", load(spec, sam_path))
        return cls(detector, segmenter, return_prompts=return_prompts, cache_size=cache_size, sam_type=spec.name)

    def __repr__(self) -> str:
        return (f"Engines(detector={type(self.detector).__name__}, segmenter={type(self.segmenter).__name__}, "
                f"return_prompts={self.return_prompts}, cache_size={self._cache_size})")

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
        """Drop every image encoding the engines' caches hold."""
        self.detector.cache.clear()
        self.segmenter.cache.clear()

    def encode(self, image: ImageInput | EncodedImage, *, eager: bool = False) -> EncodedImage:
        """``image`` read once (an :class:`EncodedImage` is returned as it is); each engine's
        encoding is computed on first use, now with ``eager``.

        Raises:
            InvalidImageError: ``image`` cannot be read as an RGB image (its subclasses say why:
                missing file, too large, ...); what the engines raise for it with ``eager``.
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

    def features(self, enc: EncodedImage) -> Any:
        """The detector's encoding of ``enc`` (computed once per detector, kept on the handle)."""
        if enc.features is None or enc.features_of is not self.detector:
            enc.features = self.detector.encode_image(enc.image, enc.key)
            enc.features_of = self.detector
        return enc.features

    def sam_encoding(self, enc: EncodedImage) -> Any:
        """The box segmenter's encoding of ``enc`` (computed once per segmenter, kept on the handle).

        Raises:
            UnsupportedPromptError: the segmenter is a text segmenter (SAM 3): it has no such encoding.
        """
        segmenter = self.box_segmenter()
        if enc.sam is None or enc.sam_of is not segmenter:
            enc.sam = segmenter.encode(enc.pixels, enc.key)
            enc.sam_of = segmenter
        return enc.sam

    def box_segmenter(self) -> Segmenter:
        """The segmenter, if it takes box / point / mask prompts.

        Raises:
            UnsupportedPromptError: it is a text segmenter (SAM 3).
        """
        if not self.segmenter.takes_boxes:
            raise UnsupportedPromptError(
                f"sam_type={self.sam_type!r} segments what a text prompt names (predict, with or without "
                "tile=, the labelling and the server's text requests); it takes no box, "
                "point or mask prompt, so segment() / predict_sam() / box prompts need a box "
                f"segmenter (sam_type one of {sorted(n for n in SAM_MODELS if n != self.sam_type)})",
                engine=self.sam_type, prompt="boxes/points/masks")
        return cast(Segmenter, self.segmenter)  # takes_boxes: it implements Segmenter

    def prepare(self, text_prompt: str, box_threshold: float, text_threshold: float) -> Any:
        """The detector's checked request (before any image work).

        Raises:
            InvalidPromptError: an empty or malformed prompt.
            InvalidThresholdError: a threshold outside [0, 1].
        """
        return self.detector.prepare(text_prompt, box_threshold, text_threshold)

    def detect(self, enc: EncodedImage, prepared: Any) -> Detections:
        """The detector's boxes (xyxy float32 pixels of ``enc``) for ``prepared`` (from :meth:`prepare`)."""
        return self.detector.detect(self.features(enc), prepared, return_prompts=self.return_prompts)

    def decoder(self, enc: EncodedImage, prepared: Any = None) -> Decode:
        """"Masks for these detections" on ``enc``, for every engine kind: a text segmenter given
        the ``prepared`` prompt its detections came from gives them from its ``masks_for`` (its
        scores as the second tensor); otherwise the box segmenter decodes each box (its predicted
        IoU). Each call of the returned function is one decoding chunk.

        Raises:
            UnsupportedPromptError: no ``prepared`` and the segmenter is a text segmenter (boxes alone).
        """
        if prepared is not None and self.segmenter.segments_text:
            text = cast(TextSegmenter, self.segmenter)  # segments_text: it implements TextSegmenter
            features = self.features(enc)
            return lambda det: text.masks_for(features, det, prepared)
        encoding = self.sam_encoding(enc)
        segmenter = self.box_segmenter()
        return lambda det: segmenter.segment_boxes(encoding, det.boxes)

    def boxes_per_chunk(self, height: int, width: int) -> int:
        """How many detections one decoding chunk holds on a ``height x width`` image."""
        return self.segmenter.boxes_per_chunk(height, width)

    def check_image_size(self, height: int, width: int, what: str | None = None) -> None:
        """Each engine's check that it can take a ``height x width`` image.

        Raises:
            ImageTooThinError: an engine's resize would make a side 0 pixels.
        """
        for engine in (self.segmenter, self.detector):  # every Engine has it (a no-op by default)
            engine.check_image_size(height, width, what)

    def segment(
        self,
        image: ImageInput | EncodedImage,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        mask_input: Any = None,
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

        Raises:
            InvalidPromptError: a malformed prompt (checked first).
            UnsupportedPromptError: the segmenter is a text segmenter (SAM 3).
        """
        enc = self.encode(image)
        prompts = check_sam_prompts(boxes, points, point_labels, mask_input, image_size=enc.image_size,
                                    mask_size=self.segmenter.mask_input_size)
        encoding = self.sam_encoding(enc)  # UnsupportedPromptError for a text segmenter
        segmenter = self.box_segmenter()
        segmenter.use(encoding)
        return segmenter.predict(**prompts, multimask_output=bool(multimask_output), return_low_res=True)

    def generate(self, image: ImageInput | EncodedImage, *,
                 progress: Callable[[str, int, int], None] | None = None, **settings: Any) -> GeneratedMasks:
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

        Raises:
            UnsupportedPromptError: the segmenter is a text segmenter (SAM 3).
            InvalidArgumentError: a setting the generator does not know.
        """
        self.box_segmenter()  # SAM 3 takes no point prompt: a typed error, not an AttributeError
        config = GenerateSettings.for_engine(self.segmenter, **settings)
        enc = self.encode(image)
        H, W = enc.pixels.shape[:2]

        def encode(pixels: np.ndarray, box: tuple[int, int, int, int]) -> Any:
            if tuple(box) == (0, 0, W, H):
                return self.sam_encoding(enc)
            return self.box_segmenter().encode(pixels)  # the whole image's (first) call checked it

        return generate(self.segmenter, enc.pixels, config, encode=encode, progress=progress)


_R = TypeVar("_R")


def takes_image_pil(method: Callable[..., _R]) -> Callable[..., _R]:
    """Let a method whose image parameter is ``image`` also take the 2023 keyword ``image_pil=``
    (``model.predict(image_pil=img, text_prompt="car")`` keeps working). Each method it wraps
    declares both forms as ``typing.overload`` signatures, which are what a type checker sees."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> _R:
        if "image_pil" in kwargs:
            if args or "image" in kwargs:
                raise InvalidArgumentError(
                    f"{method.__name__}() got the image twice: pass it once, as image (or the 2023 "
                    "keyword image_pil)")
            kwargs["image"] = kwargs.pop("image_pil")
        return method(self, *args, **kwargs)

    return wrapper


_T = TypeVar("_T")


class Delegated(Generic[_T]):
    """A facade attribute that is its ``engines``' attribute of the same name (settable):
    ``model.segmenter`` is ``model.engines.segmenter``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Delegated[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Delegated[_T] | _T:
        return self if obj is None else cast(_T, getattr(getattr(obj, "engines"), self.name))

    def __set__(self, obj: object, value: _T) -> None:
        setattr(getattr(obj, "engines"), self.name, value)


_P = ParamSpec("_P")


def runs_on_engines(function: Callable[Concatenate[Engines, _P], _R]) -> Callable[Concatenate[Any, _P], _R]:
    """A facade method that runs ``function`` on its object's ``engines``: the same parameters
    (less ``engines``), docstring and return type, written once (``LangSAM.predict_video``)."""

    @functools.wraps(function)
    def method(self: Any, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return function(self.engines, *args, **kwargs)

    signature = inspect.signature(function)
    first = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    setattr(method, "__signature__", signature.replace(parameters=[first, *list(signature.parameters.values())[1:]]))
    return method


def check_backend_device(backend: Any, device: Any) -> tuple[str, torch.device]:
    """``(backend, device)`` checked: ``backend="openvino"`` runs on the CPU (``device`` None means
    it) and needs OpenVINO installed.

    Raises:
        InvalidArgumentError: an unknown backend.
        DeviceError: ``device`` is not available here, or ``backend="openvino"`` on a device other than the CPU.
        BackendUnavailableError: ``backend="openvino"`` without OpenVINO (``.extra`` names the pip extra).
    """
    backend = check_backend(backend)
    if backend == "pytorch":
        return backend, check_device(device)
    checked = check_device("cpu" if device is None else device)
    check_target(checked, engine="the engines")  # (the precision: check_precision's)
    require_openvino()
    return backend, checked


def load_engine(spec: ModelSpec, ckpt_path: str | os.PathLike | None, device: torch.device, *, precision: str,
                backend: str = "pytorch", cache_size: int = 2, **options: Any) -> Engine:
    """``spec``'s engine loaded on ``backend`` if its class lists it (``engine_for(spec).backends``);
    otherwise on PyTorch, with a :class:`~lang_sam.models.openvino.BackendFallbackWarning` naming the
    engine (``precision="int8"``, OpenVINO's, is then float32). ``options`` go to ``from_spec``.

    Raises:
        InvalidArgumentError: the engine class cannot be imported, or an option is unknown to it.
        InvalidPrecisionError: a precision the engine's device or backend does not run at.
        BackendUnavailableError: the backend's runtime is not installed.
        MissingWeightsError, CheckpointError: what loading the checkpoint raises.
    """
    engine = engine_for(spec)
    if backend != "pytorch" and backend in engine.backends:
        options["backend"] = backend
    elif backend != "pytorch":
        warnings.warn(f"{spec.family} model {spec.name!r} ({engine.__name__}) has no {backend} backend (it runs "
                      f"on {', '.join(engine.backends)}): it runs on PyTorch", BackendFallbackWarning, stacklevel=4)
        precision = "fp32" if precision == "int8" else precision
    return engine.from_spec(spec, ckpt_path, device, precision=precision, cache_size=cache_size, **options)


#: Extensions that make a string a checkpoint path rather than a model type name.
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl", ".tar")


def is_type_name(text: str) -> bool:
    """True when ``text`` reads as a model type ("vit_b") rather than a checkpoint path."""
    if any(sep in text for sep in ("/", "\\", os.sep)) or text.startswith(("~", ".")):
        return False
    return not text.lower().endswith(_CHECKPOINT_SUFFIXES)  # never decided by the working folder


def check_boxes(boxes: Any) -> torch.Tensor:
    """``boxes`` (torch, numpy or lists) as an ``(N, 4)`` float32 tensor.

    Raises:
        InvalidPromptError: not of shape ``(N, 4)``.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidPromptError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    return boxes


def prompt_list(text_prompts: Any) -> list[str]:
    """``text_prompts`` as a non-empty list.

    Raises:
        InvalidPromptTypeError: a single string was given.
        InvalidPromptError: the list is empty.
    """
    if isinstance(text_prompts, str):
        raise InvalidPromptTypeError(
            f"text_prompts must be a list of prompts, got the string {text_prompts!r}; for one prompt use predict()")
    prompts = list(text_prompts)
    if not prompts:
        raise InvalidPromptError("text_prompts is empty: expected a list of one or more prompts")
    return prompts
