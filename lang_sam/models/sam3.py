"""SAM 3 (Segment Anything with Concepts): text -> every instance mask, in one network.

:class:`Sam3Segmenter` is the :class:`~lang_sam.models.base.TextSegmenter` of the ``sam`` family
(``LangSAM(sam_type="sam3")``): it plays detector and segmenter at once, so no GroundingDINO is
loaded. It runs transformers' implementation (``Sam3Model`` + ``Sam3Processor``, transformers >= 5)
from a folder in the Hugging Face hub layout (``facebook/sam3``: ``config.json``,
``model.safetensors``, tokenizer and processor files; :data:`SAM3_FILES`).

How the 2023 ``predict(image, text_prompt, box_threshold, text_threshold)`` maps onto it:

- each ``.``-separated phrase of ``text_prompt`` is one concept query; the phrases are batched
  through the text encoder and the detector / mask heads in one call (up to
  ``phrases_per_call`` at a time) on the image's vision features;
- ``phrases`` are the prompt's phrases (one per detection), ``logits`` SAM 3's scores (presence
  probability x detection probability, as ``Sam3Processor.post_process_instance_segmentation``
  computes them), ``box_threshold`` the score threshold (kept: score > threshold);
- ``text_threshold`` has no meaning for SAM 3: it is ignored, with an
  :class:`~lang_sam.errors.IgnoredArgumentWarning` (once per model) when it is given another value
  than the default 0.25.

Encode once, prompt many: the vision encoder's output (FPN features, about 240 MiB for the
full-size model) is cached by image content (``cache_size`` images), so another prompt on a recent
image runs only the text encoder and the heads. Masks are SAM 3's 288x288 mask logits, upsampled
to the image size (bilinear) and thresholded at probability 0.5, exactly as transformers'
post-processing does, chunk by chunk.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import torch
from PIL import Image

from lang_sam.cache import EncodingCache
from lang_sam.errors import (
    CheckpointError,
    CheckpointMismatchError,
    EngineUnavailableError,
    IgnoredArgumentWarning,
    InvalidArgumentError,
    PromptTooLongError,
)
from lang_sam.hub import ModelSpec, resolve_checkpoint
from lang_sam.models.base import TextSegmenter, TextTrackStep, TextVideoSegmenter, on_device
from lang_sam.models.openvino import check_backend, check_target
from lang_sam.precision import autocast, check_precision
from lang_sam.results import Detections
from lang_sam.validation import TEXT_THRESHOLD, check_prompt, check_threshold

if TYPE_CHECKING:  # SAM 3 is imported when a model is loaded (require_sam3), not with this module
    from transformers import Sam3Model, Sam3Processor, Sam3VideoModel, Sam3VideoProcessor

logger = logging.getLogger(__name__)

__all__ = ["HubArch", "SAM3_FILES", "SPECS", "Sam3Segmenter", "Sam3Features", "Sam3Prepared", "split_phrases", "require_sam3",
           "MAX_PHRASE_TOKENS", "Sam3VideoSession", "require_sam3_video",
           "clip_bpe_path", "write_clip_tokenizer"]

@dataclass(frozen=True)
class HubArch:
    """A network stored as a folder in the Hugging Face hub layout (``config.json``, weights in
    ``model.safetensors``, tokenizer and processor files), built by transformers from its
    ``config.json``: ``model_type`` is what that file must say (``"sam3"``), or one of
    ``compatible`` (``facebook/sam3`` holds the video model's config, ``"sam3_video"``, whose
    detector part ``Sam3Model`` loads)."""

    model_type: str
    compatible: tuple[str, ...] = ()

    @property
    def model_types(self) -> tuple[str, ...]:
        """Every ``config.json`` ``model_type`` this network loads from."""
        return (self.model_type, *self.compatible)


#: The files of a SAM 3 folder (``facebook/sam3`` on the hub; what ``save_pretrained`` of
#: ``Sam3Model`` and ``Sam3Processor`` writes).
SAM3_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
              "tokenizer_config.json")

#: The SAM 3 registry entry (Meta): a gated hub folder, run by :class:`Sam3Segmenter`.
SPECS = (
    ModelSpec("sam", "sam3", "sam3", HubArch("sam3", ("sam3_video",)), hf_repo="facebook/sam3", files=SAM3_FILES,
              gated=True, engine="lang_sam.models.sam3:Sam3Segmenter",
              licence="SAM License (Meta; gated on the hub: request access)"),
)

#: SAM 3's text encoder reads 32 tokens per phrase (start and end tokens included).
MAX_PHRASE_TOKENS = 32
_TRANSFORMERS_NEEDED = "5.0"


def require_sam3() -> tuple[type[Sam3Model], type[Sam3Processor]]:
    """``(Sam3Model, Sam3Processor)`` from transformers (SAM 3 is in transformers 5; 4.x lacks it).

    Raises:
        EngineUnavailableError: transformers is missing or has no SAM 3 (names the version needed).
    """
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise EngineUnavailableError(
            f"SAM 3 needs transformers>={_TRANSFORMERS_NEEDED}, which is not installed: "
            f"pip install 'transformers>={_TRANSFORMERS_NEEDED}'",
            package="transformers", required=f">={_TRANSFORMERS_NEEDED}", installed=None) from exc
    model, processor = _classes(transformers, "SAM 3", "SAM 3", ("Sam3Model", "Sam3Processor"))
    return model, processor


def _classes(transformers: Any, who: str, what: str, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The classes ``names`` of ``transformers``, or :class:`EngineUnavailableError` saying that
    ``who`` needs a newer one, since the installed one has no ``what``."""
    try:
        return tuple(getattr(transformers, name) for name in names)
    except (ImportError, AttributeError) as exc:
        version = getattr(transformers, "__version__", "unknown")
        raise EngineUnavailableError(
            f"{who} needs transformers>={_TRANSFORMERS_NEEDED} ({', '.join(names)}); "
            f"transformers {version} is installed, which has no {what}: pip install "
            f"'transformers>={_TRANSFORMERS_NEEDED},<6'",
            package="transformers", required=f">={_TRANSFORMERS_NEEDED}", installed=version) from exc


def require_sam3_video() -> tuple[type[Sam3VideoModel], type[Sam3VideoProcessor]]:
    """``(Sam3VideoModel, Sam3VideoProcessor)`` from transformers.

    Raises:
        EngineUnavailableError: transformers is missing or has no SAM 3 video model.
    """
    require_sam3()
    import transformers

    model, processor = _classes(transformers, "SAM 3 video", "SAM 3 video model",
                                ("Sam3VideoModel", "Sam3VideoProcessor"))
    return model, processor


def split_phrases(text_prompt: str) -> tuple[str, ...]:
    """The concept queries of ``text_prompt``: its ``.``-separated phrases, stripped, in order,
    each once (``"wheel. car."`` -> ``("wheel", "car")``)."""
    text_prompt = check_prompt(text_prompt)
    return tuple(dict.fromkeys(p.strip() for p in text_prompt.split(".") if p.strip()))


class Sam3Prepared(NamedTuple):
    """A checked request: the phrases (one concept query each) and the score threshold."""

    phrases: tuple[str, ...]
    threshold: float


@dataclass
class _Found:
    """What one prompt found on one image: ``boxes`` ``(N, 4)`` float32 xyxy px, ``scores``
    ``(N,)`` float32, ``phrases``, and ``mask_logits`` ``(N, h, w)`` (SAM 3's low-resolution
    masks, 288x288 for the full model) for :meth:`Sam3Segmenter.masks_for`."""

    boxes: torch.Tensor
    scores: torch.Tensor
    phrases: list[str]
    mask_logits: torch.Tensor


@dataclass(eq=False)
class Sam3Features:
    """An image's SAM 3 vision encoding (``Sam3VisionEncoderOutput``: FPN features and position
    encodings, batch 1) and its ``image_size`` ``(H, W)``; ``found`` keeps the last few prompts'
    results on it (for :meth:`Sam3Segmenter.masks_for`)."""

    vision: Any
    image_size: tuple[int, int]
    found: "OrderedDict[Sam3Prepared, _Found]" = field(default_factory=OrderedDict)


@dataclass(eq=False)
class Sam3VideoSession:
    """A streaming ``Sam3VideoInferenceSession`` (``inference``) with its prompt, the number of
    frames fed so far and their size ``(H, W)``."""

    inference: Any
    prepared: "Sam3Prepared"
    frame_index: int = 0
    size: tuple[int, int] | None = None


class Sam3Segmenter(TextSegmenter, TextVideoSegmenter):
    """A loaded ``Sam3Model`` and its ``Sam3Processor`` on a device (see the module docstring).

    ``phrases_per_call``: how many phrases go through the heads in one batched call (each costs
    about ``200 x 288 x 288`` float32 of mask logits, 66 MiB, while the call runs).
    ``chunk_size``: how many masks are upsampled to the image size at once by :meth:`masks_for`.
    """

    model: Sam3Model
    backends = ("pytorch", "openvino")  # openvino: lang_sam.models.sam3_openvino

    def __init__(self, model: Sam3Model, processor: Any, device: torch.device | str = "cpu",
                 name: str = "sam3", *, precision: str = "fp32", cache_size: int = 2,
                 phrases_per_call: int = 8, chunk_size: int = 16):
        self.device = torch.device(device)
        self.name = name
        self.precision = check_precision(precision, self.device)
        self.model = on_device(model, self.device)
        self.processor = processor
        self.cache = EncodingCache(cache_size)
        self.phrases_per_call = int(phrases_per_call)
        self.chunk_size = int(chunk_size)
        self._warned = False
        #: The hub-layout folder loaded from (the video model is loaded from it when first needed).
        self.folder: Path | None = None
        self._attn = "sdpa"
        self._video: tuple[Any, Any] | None = None
        #: Images run through the vision encoder by this engine (tests and benchmarks read it).
        self.vision_runs = 0

    @classmethod
    def from_spec(cls, spec: ModelSpec, ckpt_path: str | os.PathLike | None = None, device: torch.device | str = "cpu", *,
                  progress: bool = True, precision: str = "fp32", cache_size: int = 2,
                  fast_attention: bool = True, backend: str = "pytorch", **options: Any) -> "Sam3Segmenter":
        """Resolve ``spec``'s folder (a local folder in the hub layout, a hub repository id, or the usual
        order: :func:`lang_sam.hub.resolve_checkpoint`) and load it with transformers, never touching the
        network (``local_files_only``). ``fast_attention``: ``scaled_dot_product_attention`` (transformers'
        ``"sdpa"``) or else ``"eager"``. ``backend="openvino"``: :mod:`lang_sam.models.sam3_openvino`."""
        if options:
            raise InvalidArgumentError(f"SAM 3 ({spec.name!r}) takes no option(s) {sorted(options)}; expected only "
                                       "precision, cache_size, fast_attention")
        if check_backend(backend) == "openvino":
            precision = check_target(device, precision, engine="SAM 3")
        Sam3Model, Sam3Processor = require_sam3()  # before any file work: says what to install
        folder = resolve_checkpoint(spec, ckpt_path, progress=progress)
        _check_folder(spec, folder)
        attn = "sdpa" if fast_attention else "eager"
        model = _load_model(Sam3Model, folder, attn)
        processor = _reading(folder, _PROCESSOR_FILES,
                             lambda: Sam3Processor.from_pretrained(folder, local_files_only=True))
        logger.info("loaded SAM 3 %s from %s", spec.name, folder)
        engine = cls(model, processor, device, spec.name, precision=precision, cache_size=cache_size)
        engine.folder, engine._attn = Path(folder), attn
        from lang_sam.models.sam3_openvino import use_openvino
        use_openvino(engine, folder, backend)
        return engine

    @classmethod
    def write_random_checkpoint(cls, path: str | os.PathLike, arch: HubArch, seed: int = 0, *,
                                config: dict | None = None, video: bool = False, tracker: dict | None = None,
                                video_config: dict | None = None, **options: Any) -> Path:
        """Write a random-weight SAM 3 folder in the hub layout (:data:`SAM3_FILES`) at ``path``
        (beside it, then renamed): a ``Sam3Model`` of ``config`` (``Sam3Config`` keywords; none: the
        released shape, about 3.4 GB) and a ``Sam3Processor`` with CLIP's tokenizer
        (:func:`write_clip_tokenizer`). ``video=True``: the video model instead, as ``facebook/sam3``
        is (``Sam3VideoModel``, the detector plus a tracker of ``tracker``, tracker_config keywords,
        with ``video_config``'s ``Sam3VideoConfig`` keywords; ``Sam3Model`` loads its detector half).

        Raises:
            EngineUnavailableError: transformers has no SAM 3, or open-clip-torch (CLIP's BPE
                vocabulary) is not installed.
            InvalidArgumentError: another option is given.
        """
        import copy
        import shutil
        import tempfile

        if options:
            raise InvalidArgumentError(f"the SAM 3 writer takes no option(s) {sorted(options)}")

        Sam3Model, Sam3Processor = require_sam3()
        from transformers import CLIPTokenizer, PretrainedConfig, ProcessorMixin, Sam3Config, Sam3ImageProcessor

        sam3_config = Sam3Config(**copy.deepcopy(config or {}))
        # transformers types sub-configs as "dict | PretrainedConfig | None"; Sam3Config builds them as configs.
        vision = cast(PretrainedConfig, sam3_config.vision_config)
        side = cast(PretrainedConfig, vision.backbone_config).image_size
        torch.manual_seed(seed)
        if video:
            from transformers import Sam3VideoConfig, Sam3VideoModel

            tracker_config = {} if tracker is None else {"vision_config": vision.to_dict(), **copy.deepcopy(tracker)}
            vconfig = Sam3VideoConfig(detector_config=sam3_config.to_dict(), tracker_config=tracker_config,
                                      **(video_config or {}))
            vconfig.image_size = side
            model = Sam3VideoModel(vconfig).eval()
        else:
            model = Sam3Model(sam3_config).eval()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tokenizer = CLIPTokenizer(*(str(write_clip_tokenizer(tmp / "bpe") / f)
                                        for f in ("vocab.json", "merges.txt")))
            processor: ProcessorMixin = Sam3Processor(Sam3ImageProcessor(size={"height": side, "width": side}),
                                                      tokenizer)
            if video:
                from transformers import Sam3VideoProcessor
                from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

                processor = Sam3VideoProcessor(processor.image_processor,
                                               Sam2VideoVideoProcessor(size={"height": side, "width": side}), tokenizer)
            out = tmp / "folder"
            model.save_pretrained(out)
            processor.save_pretrained(out)
            if path.exists():
                shutil.rmtree(path)
            os.replace(out, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    # ----------------------------------------------------------------------------------------
    def prepare(self, text_prompt: str, box_threshold: float, text_threshold: float) -> Sam3Prepared:
        """Check a request before any image work: the prompt's phrases (each at most
        :data:`MAX_PHRASE_TOKENS` tokens, else :class:`~lang_sam.errors.PromptTooLongError`) and
        ``box_threshold`` as the score threshold. ``text_threshold`` is checked, then ignored."""
        threshold = check_threshold("box_threshold", box_threshold)
        text_threshold = check_threshold("text_threshold", text_threshold)
        if text_threshold != TEXT_THRESHOLD and not self._warned:
            self._warned = True
            warnings.warn(
                f"text_threshold={text_threshold} is ignored by SAM 3 ({self.name!r}): it scores whole "
                "phrases (presence x detection), so only box_threshold (the score threshold) applies",
                IgnoredArgumentWarning, stacklevel=5)
        phrases = split_phrases(text_prompt)
        for phrase in phrases:
            n = len(self.processor.tokenizer(phrase)["input_ids"])
            if n > MAX_PHRASE_TOKENS:
                raise PromptTooLongError(
                    f"the phrase {phrase!r} has {n} tokens; SAM 3 reads at most {MAX_PHRASE_TOKENS} "
                    "per phrase (start and end included). Shorten it: a phrase is a short noun "
                    "phrase such as 'red car'; separate concepts with '.'")
        return Sam3Prepared(phrases, threshold)

    @torch.inference_mode()
    def encode_image(self, image: Image.Image, key: str | None = None) -> Sam3Features:
        """The vision encoding of an RGB PIL image (cached under the content ``key``)."""
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        inputs = self.processor.image_processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        with autocast(self.device, self.precision):
            vision = self.model.get_vision_features(pixel_values=pixels)
        self.vision_runs += 1
        vision.hidden_states = vision.attentions = None  # not needed by the heads
        features = Sam3Features(vision, (image.height, image.width))
        if key is not None:
            self.cache.put(key, features)
        return features

    def detect(self, features: Sam3Features, prepared: Sam3Prepared, *,
               return_prompts: bool = False) -> Detections:
        """Every instance of each phrase on the image of ``features``: boxes ``(N, 4)`` float32
        xyxy pixels, scores ``(N,)`` float32 (presence x detection), the phrase of each; phrase by
        phrase in prompt order, SAM 3's query order within one. ``return_prompts`` changes
        nothing (the phrases are the prompt's own)."""
        found = self._found(features, prepared)
        return Detections(found.boxes.clone(), found.scores.clone(), list(found.phrases),
                          features.image_size)

    def masks_for(self, features: Sam3Features, detections: Detections,
                  prepared: Sam3Prepared | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, H, W)`` bool masks and ``(N,)`` float32 scores of ``detections`` on the image of
        ``features`` (see :meth:`TextSegmenter.masks_for`)."""
        found = self._found(features, prepared) if prepared is not None else self._last(features)
        H, W = features.image_size
        n = len(detections)
        masks = torch.zeros((n, H, W), dtype=torch.bool)
        scores = torch.zeros((n,), dtype=torch.float32)
        if not n or found is None or not len(found.scores):
            return masks, scores
        index = _match(detections.boxes, detections.scores, found.boxes, found.scores)
        hit = (index >= 0).nonzero().flatten()
        for start in range(0, len(hit), self.chunk_size):
            part = hit[start:start + self.chunk_size]
            src = index[part]
            masks[part] = _upsample(found.mask_logits[src], (H, W))
            scores[part] = found.scores[src]
        return masks, scores

    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        """How many masks :meth:`masks_for` upsamples at once (callers that decode in chunks ask)."""
        return self.chunk_size

    # ----------------------------------------------------------------------------------------
    def _last(self, features: Sam3Features) -> _Found | None:
        return next(reversed(features.found.values())) if features.found else None

    @torch.inference_mode()
    def _found(self, features: Sam3Features, prepared: Sam3Prepared) -> _Found:
        if prepared in features.found:
            features.found.move_to_end(prepared)
            return features.found[prepared]
        parts = [self._run(features, prepared.phrases[i:i + self.phrases_per_call], prepared.threshold)
                 for i in range(0, len(prepared.phrases), self.phrases_per_call)]
        found = _Found(torch.cat([p.boxes for p in parts]), torch.cat([p.scores for p in parts]),
                       [ph for p in parts for ph in p.phrases], torch.cat([p.mask_logits for p in parts]))
        features.found[prepared] = found
        while len(features.found) > 2:
            features.found.popitem(last=False)
        return found

    def _run(self, features: Sam3Features, phrases: tuple[str, ...], threshold: float) -> _Found:
        """One batched call of the text encoder and heads for ``phrases`` on cached features."""
        text = self.processor(text=list(phrases), return_tensors="pt")
        P = len(phrases)
        vision = features.vision
        batched = type(vision)(
            last_hidden_state=vision.last_hidden_state.expand(P, *vision.last_hidden_state.shape[1:]),
            fpn_hidden_states=tuple(t.expand(P, *t.shape[1:]) for t in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(t.expand(P, *t.shape[1:]) for t in vision.fpn_position_encoding),
        )
        with autocast(self.device, self.precision):
            out = self.model(vision_embeds=batched, input_ids=text["input_ids"].to(self.device),
                             attention_mask=text["attention_mask"].to(self.device))
        # Sam3ImageProcessor.post_process_instance_segmentation's scores, boxes and threshold.
        scores = out.pred_logits.float().sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.float().sigmoid()
        H, W = features.image_size
        boxes = out.pred_boxes.float() * torch.tensor([W, H, W, H], dtype=torch.float32, device=scores.device)
        keep = scores > threshold  # (P, Q)
        which = keep.nonzero()
        return _Found(
            boxes[keep].cpu().to(torch.float32).reshape(-1, 4),
            scores[keep].cpu().to(torch.float32),
            [phrases[i] for i in which[:, 0].tolist()],
            out.pred_masks[keep].float().cpu(),
        )


    # -- video (TextVideoSegmenter) ---------------------------------------------------------
    def video_model(self) -> tuple[Any, Any]:
        """``(Sam3VideoModel, Sam3VideoProcessor)`` of :attr:`folder`, loaded on first use. The
        folder must hold the video model (``config.json`` ``model_type`` ``"sam3_video"``, as
        ``facebook/sam3`` does); its detector half is this engine's image model (the same
        weights), so one detector is held in memory."""
        if self._video is not None:
            return self._video
        Sam3VideoModel, Sam3VideoProcessor = require_sam3_video()
        folder = self.folder
        if folder is None:
            raise CheckpointError(
                f"SAM 3 {self.name!r} was not loaded from a folder (from_spec), so its video model "
                "cannot be loaded: expected an engine made by Sam3Segmenter.from_spec")
        got = _read_json(folder / "config.json").get("model_type")
        if got != "sam3_video":
            raise CheckpointMismatchError(
                f"{folder} holds a {got!r} model (config.json model_type): SAM 3 video needs the "
                "'sam3_video' folder (detector + tracker), as facebook/sam3 ships it")
        model = _load_model(Sam3VideoModel, folder, self._attn)
        processor = _reading(folder, _PROCESSOR_FILES,
                             lambda: Sam3VideoProcessor.from_pretrained(folder, local_files_only=True))
        model.detector_model = self.model  # the same weights, loaded once
        self._video = (on_device(model, self.device), processor)
        logger.info("loaded SAM 3 video model from %s", folder)
        return self._video

    def start_video(self, prepared: Sam3Prepared, *, offload: bool = True) -> Sam3VideoSession:
        """A streaming session (no preloaded video) for ``prepared``'s phrases, one text prompt
        each (transformers' ``Sam3VideoProcessor.add_text_prompt``). ``offload``: frames and
        per-object memories live on the CPU. Loads the video model on first call."""
        if not isinstance(prepared, Sam3Prepared):
            raise InvalidArgumentError(f"expected a Sam3Prepared from prepare(), got {type(prepared).__name__}")
        model, processor = self.video_model()
        state = torch.device("cpu") if offload else self.device
        inference = processor.init_video_session(inference_device=self.device, inference_state_device=state,
                                                 video_storage_device=state, dtype=torch.float32)
        processor.add_text_prompt(inference, list(prepared.phrases))
        return Sam3VideoSession(inference, prepared)

    @torch.inference_mode()
    def track(self, session: Sam3VideoSession, frame: np.ndarray) -> TextTrackStep:
        """Feed the next ``HxWx3`` uint8 RGB ``frame``: SAM 3 detects every phrase on it,
        associates detections with the objects it follows and propagates those (its streaming
        mode: ``Sam3VideoModel(inference_session, frame=...)``, then
        ``Sam3VideoProcessor.postprocess_outputs``). Returns its object ids (ascending), masks
        ``(N, H, W)`` bool, detection scores ``(N,)`` float32 and each object's phrase.

        Streaming has no look-ahead, so SAM 3's "hotstart" (holding outputs back ``hotstart_delay``
        frames to remove tracks that turn out spurious) does not run: every frame's objects come
        back when the frame is fed. Memory stays flat: only the current frame is kept, and of each
        object the memories the tracker can still attend to (see :meth:`_prune`)."""
        if not isinstance(session, Sam3VideoSession):
            raise InvalidArgumentError(f"expected a session from start_video(), got {type(session).__name__}")
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
            from lang_sam.errors import InvalidImageError

            what = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}".strip()
            raise InvalidImageError(f"expected an HxWx3 uint8 RGB array, got {what}")
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if session.size is not None and size != session.size:
            raise InvalidArgumentError(
                f"frame {session.frame_index} is {size[1]}x{size[0]}, the session's frames are "
                f"{session.size[1]}x{session.size[0]}: all frames of a video must have one size")
        model, processor = self.video_model()
        s = session.inference
        inputs = processor(images=frame, return_tensors="pt")
        with autocast(self.device, self.precision):
            # frame_idx given: past frames are pruned, so the session cannot count them itself
            out = model(inference_session=s, frame_idx=session.frame_index,
                        frame=inputs["pixel_values"][0].to(self.device))
        r = processor.postprocess_outputs(s, out, original_sizes=[list(size)])
        session.size = size
        idx = session.frame_index
        session.frame_index += 1
        ids = r["object_ids"].to(torch.int64).cpu()
        phrases = [s.prompts[s.obj_id_to_prompt_id[int(o)]] for o in ids.tolist()]
        self._prune(model, s, idx)
        return TextTrackStep(ids, r["masks"].to(torch.bool).cpu(), r["scores"].to(torch.float32).cpu(), phrases)

    @staticmethod
    def _prune(model: Any, s: Any, idx: int) -> None:
        """Drop what the tracker will not read again in streaming: past frames' pixels, memories
        older than it attends to (``num_maskmem`` and ``max_object_pointers_in_encoder`` frames
        back), conditioning frames beyond the ``max_cond_frame_num`` most recent (in streaming the
        closest ones are the most recent, the ones it selects) and per-frame bookkeeping."""
        tracker = model.tracker_model.config
        window = max(int(tracker.num_maskmem), int(tracker.max_object_pointers_in_encoder)) + 1
        oldest = idx + 1 - window  # keep the last `window` frames: the next one reads back max(...) frames
        max_cond = int(tracker.max_cond_frame_num)
        for f in [f for f in (s.processed_frames or {}) if f != idx]:
            del s.processed_frames[f]
        for per_obj in s.output_dict_per_obj.values():
            non_cond = per_obj["non_cond_frame_outputs"]
            for f in [f for f in non_cond if f < oldest]:
                del non_cond[f]
            cond = per_obj["cond_frame_outputs"]
            if max_cond > 0:
                for f in sorted(cond)[:-max_cond]:
                    del cond[f]
        for tracked in s.frames_tracked_per_obj.values():
            for f in [f for f in tracked if f < oldest]:
                del tracked[f]
        for table in (s.obj_id_to_tracker_score_frame_wise, s.suppressed_obj_ids):
            for f in [f for f in table if isinstance(f, int) and f < oldest]:
                del table[f]


def _upsample(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(n, h, w)`` mask logits -> ``(n, H, W)`` bool, as transformers' post-processing does
    (sigmoid, bilinear to ``size``, > 0.5)."""
    probs = mask_logits.sigmoid()
    up = torch.nn.functional.interpolate(probs.unsqueeze(0), size=size, mode="bilinear",
                                         align_corners=False).squeeze(0)
    return up > 0.5


def _match(boxes: torch.Tensor, scores: torch.Tensor, found_boxes: torch.Tensor,
           found_scores: torch.Tensor) -> torch.Tensor:
    """For each of ``boxes`` ``(N, 4)``, the index in ``found_boxes`` of the same detection: the
    one with equal box and score, else the one its box overlaps most (IoU > 0; a box a select step
    merged or moved to another window), else -1. ``(N,)`` int64."""
    from torchvision.ops import box_iou

    iou = box_iou(boxes.float(), found_boxes.float())  # (N, M)
    same = (boxes[:, None, :] == found_boxes[None, :, :]).all(-1) & (scores[:, None] == found_scores[None, :])
    iou = torch.where(same, torch.full_like(iou, 2.0), iou)
    best, index = iou.max(dim=1)
    return torch.where(best > 0, index, torch.full_like(index, -1))


#: The files transformers reads for a SAM 3 processor (named in its errors).
_PROCESSOR_FILES = ("processor_config.json", "tokenizer.json", "tokenizer_config.json")


def _read_json(path: Path) -> dict:
    """A folder's JSON file holding an object, or :class:`CheckpointError` naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {_one_line(exc)}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} holds a JSON {type(value).__name__}, expected an object")
    return value


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return (text[:limit] + " ...") if len(text) > limit else text or "(no message)"


def _reading(folder: Path, files: str | tuple[str, ...], load: Any) -> Any:
    """``load()``, any failure (transformers', tokenizers', safetensors', a bad value's TypeError or
    RuntimeError, MemoryError) a :class:`CheckpointError` naming ``folder``'s ``files``."""
    names = files if isinstance(files, str) else ", ".join(files)
    try:
        return load()
    except CheckpointError:
        raise
    except MemoryError as exc:
        raise CheckpointError(
            f"cannot load the SAM 3 folder {folder} ({names}): it asked for more memory than this "
            "machine could give (MemoryError); a damaged config.json (sizes far too large) or a "
            "machine without enough free memory") from exc
    except Exception as exc:  # transformers reports bad files with many types
        raise CheckpointError(f"cannot load the SAM 3 folder {folder} ({names}): "
                              f"{type(exc).__name__}: {_one_line(exc)}") from exc


def _load_model(cls: Any, folder: Path, attn: str) -> Any:
    """``cls.from_pretrained(folder)`` (a ``Sam3Model`` or ``Sam3VideoModel``), its config read
    first, so that a bad field names config.json; weights the network lacks in the file raise
    :class:`CheckpointMismatchError` (transformers would initialise them at random)."""
    config = _reading(folder, "config.json",
                      lambda: cls.config_class.from_pretrained(folder, local_files_only=True))
    model, info = _reading(folder, ("config.json", "model.safetensors"), lambda: cls.from_pretrained(
        folder, config=config, local_files_only=True, attn_implementation=attn, output_loading_info=True,
        ignore_mismatched_sizes=True))  # mismatches are reported in info, and refused below
    missing = sorted(info.get("missing_keys") or ())
    mismatched = [f"{m[0]}: file {tuple(m[1])} vs network {tuple(m[2])}" if isinstance(m, tuple) and len(m) == 3
                  else str(m) for m in info.get("mismatched_keys") or ()]
    if missing or mismatched:
        parts = [f"{len(v)} {k}: {', '.join(map(str, v[:3]))}{' ...' if len(v) > 3 else ''}"
                 for k, v in (("missing weights", missing), ("shape mismatches", mismatched)) if v]
        raise CheckpointMismatchError(
            f"{folder / 'model.safetensors'} does not fit its config.json's {cls.__name__}: "
            f"{'; '.join(parts)}; expected every weight of the network, of its shape")
    return model


def _check_folder(spec: ModelSpec, folder: Path) -> None:
    """Check a SAM 3 folder before transformers reads it: ``config.json`` (and the processor's JSON
    files) hold JSON objects, ``config.json`` describes the network ``spec.arch`` names
    (``model_type``), ``model.safetensors``'s header is well formed and fits the file
    (:func:`lang_sam.hub.load.check_safetensors`, so no hostile header reaches native code)."""
    from lang_sam.hub.load import check_safetensors

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    for name in _PROCESSOR_FILES:
        if (folder / name).exists():
            _read_json(folder / name)
    want = getattr(spec.arch, "model_types", ("sam3",))
    got = config.get("model_type")
    if got not in want:
        raise CheckpointMismatchError(
            f"{folder} holds a {got!r} model (config.json model_type), not the "
            f"{' or '.join(map(repr, want))} that sam_type={spec.name!r} expects")
    if (folder / "model.safetensors").exists():
        check_safetensors(folder / "model.safetensors")


def clip_bpe_path() -> Path:
    """CLIP's BPE merges (``bpe_simple_vocab_16e6.txt.gz``, MIT licence) as the ``open-clip-torch``
    package ships them (the ``test`` extra installs it), found without importing it; raises
    :class:`~lang_sam.errors.EngineUnavailableError` if it is not installed. Never downloaded."""
    import importlib.util

    from lang_sam.errors import EngineUnavailableError

    spec = importlib.util.find_spec("open_clip")
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) / "bpe_simple_vocab_16e6.txt.gz" \
        if spec is not None else None
    if path is None or not path.is_file():
        raise EngineUnavailableError(
            "writing a random SAM 3 folder needs CLIP's BPE vocabulary from open-clip-torch: "
            "pip install open-clip-torch (or pip install 'lang-sam[test]')",
            package="open-clip-torch", required=">=2", installed=None)
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map of the 256 bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer(folder: str | os.PathLike) -> Path:
    """Write CLIP's tokenizer (``vocab.json``, ``merges.txt``: 49408 tokens, the vocabulary SAM 3's
    text encoder reads) into ``folder``, built from :func:`clip_bpe_path` as open_clip builds it."""
    import gzip
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(clip_bpe_path()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in pairs) + "\n",
                                       encoding="utf-8")
    return folder
