"""GroundingDINO: text prompt -> boxes, scores and phrases.

:class:`GroundingDINODetector` wraps a groundingdino-py network built from groundingdino's own config
files and modules, with the bundled BERT tokenizer/config and :class:`BertTextEncoder`. Its numbers
are those of ``groundingdino.util.inference.predict`` (the algorithm the original used):
``preprocess_caption``, ``RandomResize([800], max_size=1333)`` + ImageNet normalisation, sigmoid
logits, ``max > box_threshold``, cxcywh -> xyxy times ``[W, H, W, H]``.
"""

from __future__ import annotations

import ast
import bisect
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Mapping, Protocol, cast

import torch
import torch.nn.functional as F
from PIL import Image

from lang_sam.cache import EncodingCache
from lang_sam.errors import PromptTooLongError
from lang_sam.hub import ModelSpec
from lang_sam.models.base import Detector
from lang_sam.models.checkpoints import count_blocks, load_network, perturb, save_atomic
from lang_sam.models.openvino import cache_dir, check_backend, check_target, weights_sha256
from lang_sam.models.text_encoder import BERT_DIR, BertTextEncoder, build_bert, load_tokenizer
from lang_sam.patches import bundled_text_encoder, empty_parameters, quiet_third_party, swin_backbone
from lang_sam.precision import autocast, check_precision
from lang_sam.results import Detections
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD, check_prompt, check_threshold, open_image

if TYPE_CHECKING:  # transformers is imported when the network is built, not with this module
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "GDinoArch", "SPECS", "ImageFeatures", "random_gdino_state_dict", "GroundingDINODetector", "build_groundingdino_model",
    "preprocess_caption",
]

@dataclass(frozen=True)
class GDinoArch:
    """A GroundingDINO configuration: one of groundingdino's bundled config files, plus overrides.

    ``bert`` overrides keys of the bundled bert-base-uncased config; ``swin`` overrides keys of the
    config's Swin entry in groundingdino's ``build_swin_transformer`` table (``embed_dim``,
    ``depths``, ``num_heads``, ``window_size``). Tiny test models use both.

    ``image_size`` and ``max_size`` are the input transform's ``RandomResize([image_size],
    max_size=max_size)``: the shorter side is resized to ``image_size`` pixels unless the longer one
    would pass ``max_size``. Every release runs at 800 and 1333; tiny test models read less.
    """

    config_file: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    bert: Mapping[str, Any] = field(default_factory=dict)
    swin: Mapping[str, Any] = field(default_factory=dict)
    image_size: int = 800
    max_size: int = 1333

    @property
    def input_size(self) -> tuple[int, int]:
        """``(image_size, max_size)``, what :class:`~lang_sam.models.detector.GroundingDINODetector`
        takes as ``input_size``."""
        return self.image_size, self.max_size


HF_REPO = "ShilongLiu/GroundingDINO"
_GITHUB_RELEASES = "https://github.com/IDEA-Research/GroundingDINO/releases/download"
#: The GroundingDINO registry entries (IDEA Research, Apache-2.0), on the hub and on GitHub.
SPECS = (
    ModelSpec("gdino", "swinb", "groundingdino_swinb_cogcoor.pth", GDinoArch("GroundingDINO_SwinB_cfg.py"),
              urls=(f"{_GITHUB_RELEASES}/v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",),
              sha256=None,  # not published alongside the release; the file is still size-checked by HTTP
              hf_repo=HF_REPO),
    ModelSpec("gdino", "swint", "groundingdino_swint_ogc.pth", GDinoArch("GroundingDINO_SwinT_OGC.py"),
              urls=(f"{_GITHUB_RELEASES}/v0.1.0-alpha/groundingdino_swint_ogc.pth",),
              sha256="3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799",
              hf_repo=HF_REPO),
)

#: GroundingDINO reads at most this many tokens ([CLS] and [SEP] included).
MAX_TEXT_LEN = 256
#: Keys the released checkpoints hold that the network does not (ignored on load).
ALLOWED_UNEXPECTED = ("label_enc.weight", "bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
#: Buffers that are derived, so a checkpoint may lack them.
OPTIONAL_KEYS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")

def preprocess_caption(caption: str) -> str:
    """Lower-case, strip, and end with ``.`` (groundingdino's own rule)."""
    result = caption.lower().strip()
    return result if result.endswith(".") else result + "."


@quiet_third_party()
def _read_config(arch: GDinoArch) -> SimpleNamespace:
    import groundingdino

    path = Path(groundingdino.__file__).resolve().parent / "config" / arch.config_file
    values = {}
    for node in ast.parse(path.read_text()).body:  # plain `name = literal` lines; nothing is run
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    # Gradient checkpointing only matters for training; in inference it costs time and warns on
    # every call, and never changes a forward result. Overrides may turn it back on.
    values["use_checkpoint"] = values["use_transformer_ckpt"] = False
    values.update(arch.overrides)
    values["device"] = "cpu"
    values["text_encoder_type"] = str(BERT_DIR)
    return SimpleNamespace(**values)


@quiet_third_party()
def build_groundingdino_model(
    spec_or_arch: ModelSpec | GDinoArch, *, empty: bool = False
) -> torch.nn.Module:
    """Build a GroundingDINO network in eval mode from a registry entry.

    Random weights, or with ``empty=True`` parameters on the meta device, to be loaded with
    :func:`lang_sam.models.checkpoints.load_into` (no time spent on an init the checkpoint overwrites).
    """
    from groundingdino.models import build_model

    arch = spec_or_arch.arch if isinstance(spec_or_arch, ModelSpec) else spec_or_arch
    args = _read_config(arch)
    text = bundled_text_encoder(load_tokenizer, lambda: build_bert(arch.bert), BertTextEncoder)
    with text, swin_backbone(arch.swin), (empty_parameters() if empty else nullcontext()):
        model = build_model(args)
    return model.eval()


_SWIN = {  # groundingdino's swin_transformer.build_swin_transformer table: width, depth of stage 3, window
    "swin_T_224_1k": (96, 6, 7),
    "swin_B_224_22k": (128, 18, 7),
    "swin_B_384_22k": (128, 18, 12),
    "swin_L_224_22k": (192, 18, 7),
    "swin_L_384_22k": (192, 18, 12),
}


def gdino_fingerprint(source) -> tuple | None:
    """(Swin width, stage-3 depth, window, hidden dim, BERT width, encoder and decoder layers)."""
    if isinstance(source, GDinoArch):
        args = _read_config(source)
        if args.backbone not in _SWIN:
            return None
        width, depth, window = _SWIN[args.backbone]
        swin = source.swin
        width, window = swin.get("embed_dim", width), swin.get("window_size", window)
        depth = swin["depths"][2] if "depths" in swin else depth
        bert = source.bert.get("hidden_size", 768)
        return (width, depth, window, args.hidden_dim, bert, args.enc_layers, args.dec_layers)
    try:
        width = source["backbone.0.patch_embed.proj.weight"].shape[0]
        table = source["backbone.0.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
        hidden, bert = source["feat_map.weight"].shape
    except (KeyError, AttributeError, IndexError, TypeError, ValueError):
        return None
    window = (round(table ** 0.5) + 1) // 2
    return (
        width, count_blocks(source, "backbone.0.layers.2.blocks."), window, hidden, bert,
        count_blocks(source, "transformer.encoder.layers."),
        count_blocks(source, "transformer.decoder.layers."),
    )


@dataclass
class ImageFeatures:
    """GroundingDINO's text-independent work for one image: the backbone's multi-scale features
    after the input projections (``srcs``, each ``(1, 256, h_l, w_l)``), their padding ``masks`` and
    position embeddings ``poss``, and the image's ``image_size`` ``(H, W)``."""

    srcs: tuple[torch.Tensor, ...]
    masks: tuple[torch.Tensor, ...]
    poss: tuple[torch.Tensor, ...]
    image_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.srcs, *self.masks, *self.poss))


class _GroundingDINONet(Protocol):
    """What the detector reads of groundingdino-py's ``GroundingDINO`` network (the package ships
    no type information; torch's ``Module.__getattr__`` would type each as ``Tensor | Module``)."""

    tokenizer: PreTrainedTokenizerBase
    specical_tokens: list[int]  # groundingdino's spelling
    sub_sentence_present: bool
    num_feature_levels: int
    backbone: torch.nn.Sequential  # Joiner(backbone, position_embedding)
    input_proj: torch.nn.ModuleList
    bert: torch.nn.Module
    feat_map: torch.nn.Module
    transformer: torch.nn.Module
    bbox_embed: torch.nn.ModuleList
    class_embed: torch.nn.ModuleList



@quiet_third_party()
def image_levels(model: torch.nn.Module, images: torch.Tensor) -> tuple[list, list, list]:
    """GroundingDINO's text-independent forward for ``images`` ``(1, 3, h, w)`` float (normalised,
    unpadded): the Swin backbone and the input projections. Returns ``(srcs, masks, poss)``: per
    feature level, ``(1, 256, h_l, w_l)`` features, ``(1, h_l, w_l)`` bool padding masks (all
    False for one unpadded image) and ``(1, 256, h_l, w_l)`` position embeddings."""
    from groundingdino.util.misc import NestedTensor, nested_tensor_from_tensor_list

    m = cast(_GroundingDINONet, model)
    samples = nested_tensor_from_tensor_list(list(images))
    features, poss = m.backbone(samples)
    srcs, masks = [], []
    for level, feat in enumerate(features):
        src, mask = feat.decompose()
        srcs.append(m.input_proj[level](src))
        masks.append(mask)
    for level in range(len(srcs), m.num_feature_levels):
        src = m.input_proj[level](features[-1].tensors if level == len(features) else srcs[-1])
        mask = F.interpolate(samples.mask[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
        poss.append(m.backbone[1](NestedTensor(src, mask)).to(src.dtype))
        srcs.append(src)
        masks.append(mask)
    return srcs, masks, poss


@quiet_third_party()
def text_inputs(model: torch.nn.Module, caption: str, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """The tokenised ``caption`` as GroundingDINO reads it, at most :data:`MAX_TEXT_LEN` tokens
    ``L``: ``(input_ids, token_mask, position_ids, attention)``, shapes ``(1, L)`` long, ``(1, L)``
    bool (True = a token), ``(1, L)`` long (restarting at each phrase) and ``(1, L, L)`` bool
    (True = attend: tokens of one phrase attend to each other)."""
    from groundingdino.models.GroundingDINO.bertwarper import (
        generate_masks_with_special_tokens_and_transfer_map,
    )

    m = cast(_GroundingDINONet, model)
    L = MAX_TEXT_LEN
    tokenized = m.tokenizer([caption], padding="longest", return_tensors="pt").to(device)
    attention, position_ids, _ = generate_masks_with_special_tokens_and_transfer_map(
        tokenized, m.specical_tokens, m.tokenizer
    )
    return (tokenized["input_ids"][:, :L], tokenized["attention_mask"][:, :L].bool(), position_ids[:, :L],
            attention[:, :L, :L])


def encode_text(model: torch.nn.Module, input_ids: torch.Tensor, token_mask: torch.Tensor,
                position_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """BERT and the text projection on :func:`text_inputs`' tensors: ``(1, L, 256)`` float."""
    m = cast(_GroundingDINONet, model)
    token_type_ids = torch.zeros_like(input_ids)
    if m.sub_sentence_present:
        out = m.bert(input_ids=input_ids, attention_mask=attention, token_type_ids=token_type_ids,
                     position_ids=position_ids)
    else:
        out = m.bert(input_ids=input_ids, attention_mask=token_mask.long(), token_type_ids=token_type_ids)
    return m.feat_map(out["last_hidden_state"])


@quiet_third_party()
def fuse(model: torch.nn.Module, srcs, masks, poss, encoded: torch.Tensor, token_mask: torch.Tensor,
         position_ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The text-image encoder, the decoder and the last layer's heads on :func:`image_levels`'
    levels and :func:`encode_text`'s ``encoded`` text: token logits ``(1, num_queries, 256)``
    (before the sigmoid; ``-inf`` past the caption) and boxes ``(1, num_queries, 4)`` (normalised
    cxcywh)."""
    from groundingdino.util.misc import inverse_sigmoid

    m = cast(_GroundingDINONet, model)
    text_dict = {"encoded_text": encoded, "text_token_mask": token_mask, "position_ids": position_ids,
                 "text_self_attention_masks": attention}
    hs, reference, _, _, _ = m.transformer(list(srcs), list(masks), None, list(poss), None, None, text_dict)
    # Only the last decoder layer's outputs are used; forward() computes every layer's.
    delta = m.bbox_embed[-1](hs[-1])
    boxes = (delta + inverse_sigmoid(reference[-2])).sigmoid()
    return m.class_embed[-1](hs[-1], text_dict), boxes


class GroundingDINODetector(Detector):
    """A loaded GroundingDINO network on a device: the :class:`~lang_sam.models.base.Detector` of
    the ``gdino`` family.

    :meth:`encode_image` runs the text-independent part (Swin backbone and input projections) once
    per image; :meth:`forward_text` runs the text encoder, the fusion transformer and the heads for
    a caption on those features. Together they compute exactly what the network's ``forward`` does.
    With ``backend="openvino"`` (``precision="fp32"``, CPU) the backbone and the fusion transformer
    with the heads run on OpenVINO (:mod:`lang_sam.models.detector_openvino`; BERT stays on
    PyTorch), converted once per shape and cached in ``openvino_cache`` (:meth:`from_spec`: beside
    the weights), keyed by ``openvino_weights`` (:meth:`from_spec`: the checkpoint file's sha256;
    default: the network's state dict hashed).
    :meth:`prepare` checks a prompt and thresholds; :meth:`detect` turns them into
    :class:`~lang_sam.results.Detections`.
    """

    backends = ("pytorch", "openvino")

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device | str = "cpu",
        *,
        precision: str = "fp32",
        cache_size: int = 2,
        input_size: tuple[int, int] = (800, 1333),
        backend: str = "pytorch",
        openvino_cache: str | os.PathLike | None = None,
        openvino_weights: str | None = None,
        name: str = "gdino",
    ):
        self.backend = check_backend(backend)
        self.openvino: Any = None  # the OpenVINO parts (detector_openvino.OpenVINOParts) or None
        if self.backend == "openvino":
            from lang_sam.models.detector_openvino import OpenVINOParts

            # "int8" is accepted and runs at fp32 here: INT8 is SAM v1's image encoder only (where it pays)
            check_target(device, precision, engine="GroundingDINO", precisions=("fp32", "int8"))
            self.precision = "fp32"
        self.device = torch.device(device)
        self.input_size = input_size
        self.model = model.to(self.device).eval()
        self.tokenizer = cast("PreTrainedTokenizerBase", model.tokenizer)
        if self.backend == "openvino":
            self.openvino = OpenVINOParts(self.model, name, openvino_cache, image_levels, encode_text, fuse,
                                          weights=openvino_weights)
        else:
            self.precision = check_precision(precision, self.device)
        self.cache = EncodingCache(cache_size)

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        ckpt_path: str | os.PathLike | None = None,
        device: torch.device | str = "cpu",
        *,
        progress: bool = True,
        **kwargs,
    ) -> "GroundingDINODetector":
        """Resolve ``spec``'s GroundingDINO checkpoint (see :mod:`lang_sam.hub`), check it is a
        GroundingDINO of ``spec.arch``'s configuration and load it; ``kwargs`` go to the constructor.

        Raises:
            WeightsNotFoundError, DownloadError, ChecksumMismatchError, CheckpointError: the
                GroundingDINO file could not be found, fetched or read (see
                :func:`~lang_sam.models.checkpoints.load_network`).
        """
        model, path = load_network(
            spec, ckpt_path, lambda s: build_groundingdino_model(s, empty=True), gdino_fingerprint,
            progress=progress, allowed_unexpected=ALLOWED_UNEXPECTED, optional=OPTIONAL_KEYS,
        )
        logger.info("loaded GroundingDINO %s from %s", spec.name, path)
        arch = cast(GDinoArch, spec.arch)
        if kwargs.get("backend") == "openvino":
            root = Path(kwargs["openvino_cache"]) if kwargs.get("openvino_cache") else cache_dir(path)
            # the checkpoint file's sha256 (remembered beside the cache: not re-read, and the
            # network's weights are not touched, at a later start) keys the converted parts
            kwargs = {"openvino_cache": root, "openvino_weights": weights_sha256(path, root), "name": spec.name,
                      **kwargs}
        return cls(model, device, input_size=arch.input_size, **kwargs)

    # ----------------------------------------------------------------------------------------
    def count_tokens(self, text_prompt: str) -> int:
        """Number of tokens GroundingDINO sees for ``text_prompt`` ([CLS] and [SEP] included)."""
        return len(self.tokenizer(preprocess_caption(text_prompt))["input_ids"])

    @classmethod
    def write_random_checkpoint(cls, path: str | os.PathLike, arch: GDinoArch, seed: int = 0,
                                **options: Any) -> Path:
        """Save a GroundingDINO of ``arch`` with random weights in the released format
        (``{"model": state_dict}``, with the ``label_enc.weight`` entry the released files carry).
        ``options`` go to :func:`random_gdino_state_dict` (``few_boxes=True``: a realistic handful
        of boxes).

        Raises:
            TypeError: an option :func:`random_gdino_state_dict` does not take.
        """
        state = random_gdino_state_dict(arch, seed, **options)
        args_hidden = next(v for k, v in state.items() if k == "feat_map.weight").shape[0]
        state = {**state, "label_enc.weight": torch.zeros(2001, args_hidden)}
        return save_atomic({"model": state}, path)

    def check_prompt(self, text_prompt: str) -> str:
        """Validate a one-pass prompt; raise :class:`PromptTooLongError` past the 256-token window."""
        text_prompt = check_prompt(text_prompt)
        n = self.count_tokens(text_prompt)
        if n > MAX_TEXT_LEN:
            raise PromptTooLongError(
                f"text_prompt has {n} tokens; GroundingDINO reads at most {MAX_TEXT_LEN} (including "
                f"[CLS] and [SEP]) and would silently drop the rest. Shorten it or split it into "
                f"several prompts at '.' boundaries."
            )
        return text_prompt

    def split_prompt(self, text_prompt: str) -> list[str]:
        """The passes for ``text_prompt``: itself if it fits GroundingDINO's 256-token window, else
        its ``.``-separated phrases packed greedily, in order, into parts that each fit.

        Raises :class:`PromptTooLongError` only for a single phrase longer than the window.
        """
        text_prompt = check_prompt(text_prompt)
        if self.count_tokens(text_prompt) <= MAX_TEXT_LEN:
            return [text_prompt]
        parts: list[str] = []
        current: list[str] = []
        for phrase in (p.strip() for p in text_prompt.split(".")):
            if not phrase:
                continue
            if self.count_tokens(". ".join(current + [phrase])) <= MAX_TEXT_LEN:
                current.append(phrase)
                continue
            if current:
                parts.append(". ".join(current))
            self.check_prompt(phrase)  # a single phrase over the window cannot be split
            current = [phrase]
        parts.append(". ".join(current))
        logger.info("prompt of %d tokens split into %d passes", self.count_tokens(text_prompt), len(parts))
        return parts

    @quiet_third_party()
    def transform(self, image: Image.Image) -> torch.Tensor:
        """``RandomResize([800], max_size=1333)`` (the spec's ``image_size`` and ``max_size``:
        800 and 1333 in every release), ``ToTensor``, ImageNet ``Normalize``: (3, h, w) float32."""
        import groundingdino.datasets.transforms as T

        size, max_size = self.input_size
        transform = T.Compose([
            T.RandomResize([size], max_size=max_size),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])
        tensor, _ = transform(image, None)
        return tensor

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` :meth:`transform` resizes an image of ``height x width`` to:
        groundingdino's ``get_size_with_aspect_ratio`` (``datasets/transforms.py``), its arithmetic
        (and rounding) copied."""
        size, max_size = self.input_size
        short, long = float(min(width, height)), float(max(width, height))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
        if (width <= height and width == size) or (height <= width and height == size):
            return height, width
        if width < height:
            return int(size * height / width), size
        return size, int(size * width / height)

    def check_image_size(self, height: int, width: int, what: str | None = None) -> None:
        """An image whose short side :meth:`resized_size` would round to 0 pixels (its long side
        ``2 * max_size`` or more times the short one: 2666 for the released 800 / 1333) raises
        :class:`~lang_sam.errors.ImageTooThinError`; torchvision's resize raised a plain ValueError."""
        from lang_sam.validation import check_resized

        size, max_size = self.input_size
        check_resized(height, width, self.resized_size(height, width), engine="GroundingDINO",
                      resize=f"short side to {size} px, long side at most {max_size} px",
                      max_aspect=2 * max_size, inclusive=False, what=what)

    def encode_image(self, image: Image.Image, key: str | None = None) -> ImageFeatures:
        """The text-independent part of GroundingDINO's forward for an RGB PIL image.

        With a content ``key`` (see :func:`lang_sam.cache.image_key`) the result is cached. An
        image too thin for the resize raises :class:`~lang_sam.errors.ImageTooThinError`
        (:meth:`check_image_size`).
        """
        self.check_image_size(image.height, image.width)
        cached = self.cache.get((key, self.precision)) if key is not None else None
        if cached is not None:
            return cached
        features = self._encode_image(image)
        if key is not None:
            self.cache.put((key, self.precision), features)
        return features

    def _encode_image(self, image: Image.Image) -> ImageFeatures:
        tensor = self.transform(image).to(self.device)
        with torch.no_grad(), autocast(self.device, self.precision):
            if self.openvino is not None:
                srcs, masks, poss = self.openvino.image_levels(tensor[None])
            else:
                srcs, masks, poss = image_levels(self.model, tensor[None])
        return ImageFeatures(tuple(srcs), tuple(masks), tuple(poss), (image.height, image.width))

    @quiet_third_party()
    def forward_text(self, features: ImageFeatures, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The text-dependent part for a preprocessed ``caption``.

        Returns the last decoder layer's token scores ``(num_queries, 256)`` (sigmoid) and boxes
        ``(num_queries, 4)`` (normalised cxcywh), float32 on the CPU.
        """
        m = self.model
        with torch.no_grad(), autocast(self.device, self.precision):
            tokens = text_inputs(m, caption, self.device)
            if self.openvino is not None:
                logits, boxes = self.openvino.forward_text(features, tokens)
            else:
                encoded = encode_text(m, *tokens)
                logits, boxes = fuse(m, features.srcs, features.masks, features.poss, encoded, *tokens[1:])
        return logits.float().cpu().sigmoid()[0], boxes.float().cpu()[0]

    def predict(
        self,
        image: Image.Image,
        text_prompt: str,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        *,
        return_prompts: bool = False,
        features: ImageFeatures | None = None,
    ) -> Detections:
        """Detect ``text_prompt`` in an RGB PIL image: :meth:`prepare`, :meth:`encode_image` (unless
        ``features`` of the same image are given), :meth:`detect`."""
        prepared = self.prepare(text_prompt, box_threshold, text_threshold)
        if features is None:
            features = self.encode_image(image)
        return self.detect(features, prepared, return_prompts=return_prompts)

    def prepare(
        self, text_prompt: str, box_threshold: float, text_threshold: float
    ) -> tuple[list[str], float, float]:
        """Validate a request before any image work: ``(passes, box_threshold, text_threshold)``.
        A prompt over GroundingDINO's 256-token window is never truncated: it is split at ``.``
        into several passes (:meth:`split_prompt`)."""
        box_threshold = check_threshold("box_threshold", box_threshold)
        text_threshold = check_threshold("text_threshold", text_threshold)
        return self.split_prompt(text_prompt), box_threshold, text_threshold

    def detect(
        self, features: ImageFeatures, prepared: tuple[list[str], float, float], *,
        return_prompts: bool = False,
    ) -> Detections:
        """The detections of ``prepared`` (from :meth:`prepare`) on ``features``: each pass over the
        same image features, their detections concatenated in prompt order."""
        passes, box_threshold, text_threshold = prepared
        return Detections.concat(
            [self._detect_one(features, p, box_threshold, text_threshold, return_prompts) for p in passes],
            features.image_size)

    def _detect_one(self, features, text_prompt, box_threshold, text_threshold, return_prompts) -> Detections:
        caption = preprocess_caption(self.check_prompt(text_prompt))
        scores, boxes = self.forward_text(features, caption)
        keep = scores.max(dim=1)[0] > box_threshold
        scores, boxes = scores[keep], boxes[keep]
        phrases = self.phrases(scores, caption, text_threshold, return_prompts=return_prompts)
        return Detections(self.to_pixels(boxes, features.image_size), scores.max(dim=1)[0], phrases,
                          features.image_size)

    @staticmethod
    @quiet_third_party()
    def to_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Normalised cxcywh ``(N, 4)`` -> xyxy in pixels of an image of ``image_size`` ``(H, W)``."""
        from groundingdino.util import box_ops

        H, W = image_size
        return box_ops.box_cxcywh_to_xyxy(boxes) * torch.Tensor([W, H, W, H])

    def phrases(
        self,
        scores: torch.Tensor,
        caption: str,
        text_threshold: float,
        *,
        return_prompts: bool = False,
    ) -> list[str]:
        """Decode, for each row of token scores ``(N, 256)``, the tokens over ``text_threshold``.

        Special tokens ([CLS], [SEP], [PAD]) are never part of a phrase, and ``.`` is removed. With
        ``return_prompts`` only the tokens of the prompt part (between ``.``/special tokens) that
        holds the row's best token are kept, as GroundingDINO's ``remove_combined`` does (a row
        whose best token is [CLS] gets ``""``, as there).
        """
        ids = self.tokenizer(caption)["input_ids"][:MAX_TEXT_LEN]
        tok = self.tokenizer
        special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
        dot = tok.convert_tokens_to_ids(".")
        bounds = [i for i, t in enumerate(ids) if t in special or t == dot]
        out = []
        for row in scores:
            posmap = (row > text_threshold).tolist()[: len(ids)]
            lo, hi = 0, len(ids)
            if return_prompts and len(bounds) >= 2:
                k = bisect.bisect_left(bounds, int(row.argmax()))
                if k == 0:
                    # The best token is [CLS]: remove_combined pairs it with the last bound on its
                    # left (index -1) and keeps nothing, so the phrase is "" there too.
                    lo = hi = 0
                else:
                    k = min(k, len(bounds) - 1)  # (past the last bound remove_combined would raise)
                    lo, hi = bounds[k - 1] + 1, bounds[k]
            tokens = [ids[i] for i in range(lo, hi) if posmap[i] and ids[i] not in special]
            text = cast(str, self.tokenizer.decode(tokens))  # a flat list of ids decodes to one str
            out.append(text.replace(".", ""))
        return out


def _calibration_image():
    """A deterministic photo-like 600x400 RGB image (gradients and a few solid shapes)."""
    import numpy as np
    from PIL import Image

    h, w = 400, 600
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (h + w - 2)], -1)
    img = img.astype(np.uint8)
    for i, (y0, x0, c) in enumerate([(40, 60, 200), (150, 300, 30), (250, 100, 120), (60, 420, 250)]):
        img[y0:y0 + 90 + 10 * i, x0:x0 + 120, :] = (c, 255 - c, (c * 7) % 256)
    return Image.fromarray(img)


def random_gdino_state_dict(
    arch: GDinoArch, seed: int = 0, *, few_boxes: bool = False, target_boxes: int = 8,
    calibration_image=None, feature_scale: float = 1 / 16, calibration_prompt: str = "object.",
) -> dict[str, torch.Tensor]:
    """The state dict of a GroundingDINO network of ``arch`` with random weights.

    Random GroundingDINO scores saturate: nearly every query scores about 1 for some token, so all
    900 queries pass the 0.3 threshold (and SAM then decodes 900 masks). ``few_boxes=True`` gives a
    realistic handful instead, by setting two LayerNorms (compute is unchanged):

    - the last text-enhancer layer's output norm to weight 0 and a random bias ``c``, so every
      token's feature is ``c`` and a query's score depends on the prompt only a little (the
      prompt still reaches the decoder through the earlier fusion layers);
    - the decoder's final norm to weight ``feature_scale`` and a bias ``-k c / |c|^2``, which
      lowers every logit by ``k``. ``k`` is calibrated with one forward pass on
      ``calibration_image`` (a path or PIL image; default a fixed synthetic 600x400 image) so that
      exactly ``target_boxes`` queries score over 0.3 there for ``calibration_prompt`` (default
      ``"object."``); other prompts give about as many (6 instead of 8 was seen), so calibrate
      with the prompt you measure, and other images other counts (the
      scores' offset depends on the image: 532 boxes were seen on another photo), so calibrate on
      the image you measure.
      A list of images calibrates on all of them: at most ``target_boxes`` on each, exactly that
      many on the one that gives most (e.g. every distinct tile of a sliced benchmark).

    Raises:
        ImageNotFoundError: a calibration image path does not exist.
        InvalidImageError: a calibration image cannot be read.
    """
    torch.manual_seed(seed)
    net = build_groundingdino_model(arch)
    generator = torch.Generator().manual_seed(seed)
    perturb(net, generator)
    state = net.state_dict()
    if not few_boxes:
        return state
    width = state["transformer.decoder.norm.weight"].shape[0]
    last = max(int(k.split(".")[3]) for k in state if k.startswith("transformer.encoder.text_layers."))
    text_norm = f"transformer.encoder.text_layers.{last}.norm2"
    c = torch.randn(width, generator=generator)
    state[f"{text_norm}.weight"] = torch.zeros(width)
    state[f"{text_norm}.bias"] = c
    state["transformer.decoder.norm.weight"] = torch.full((width,), feature_scale)
    state["transformer.decoder.norm.bias"] = torch.zeros(width)
    net.load_state_dict(state)
    detector = GroundingDINODetector(net, input_size=arch.input_size)  # as the spec runs it
    images = calibration_image if isinstance(calibration_image, (list, tuple)) else [calibration_image]
    wanted = -float("inf")
    for image in images:
        if image is None:
            image = _calibration_image()
        elif not hasattr(image, "size"):
            image = open_image(image)
        scores, _ = detector.forward_text(detector.encode_image(image), preprocess_caption(calibration_prompt))
        logits = torch.logit(scores[:, 1].double())  # every token scores the same now
        wanted = max(wanted, logits.topk(target_boxes).values[-1].item())
    k = wanted - torch.logit(torch.tensor(BOX_THRESHOLD, dtype=torch.float64)).item() + 1e-3
    state["transformer.decoder.norm.bias"] = -k * c / c.dot(c)
    return state
