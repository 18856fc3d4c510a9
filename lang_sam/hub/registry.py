"""The model registry: one entry per model type, mapping its name to a file name, download
sources, sha256 and network architecture (as torchvision / timm weight registries do).

``SAM_MODELS`` and ``GDINO_MODELS`` (name -> primary URL) are the original's public dicts, kept in
step with the registry by :func:`register_model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from lang_sam.errors import InvalidArgumentError, UnknownModelError
from lang_sam.settings import hf_endpoint

__all__ = [
    "SamArch",
    "Sam2Arch",
    "GDinoArch",
    "HubArch",
    "SAM3_FILES",
    "ModelSpec",
    "FAMILIES",
    "DEFAULT_ENGINES",
    "SAM_MODELS",
    "GDINO_MODELS",
    "DEFAULT_SAM",
    "DEFAULT_GDINO",
    "DEFAULT_TRACK_SAM",
    "get_spec",
    "model_names",
    "register_model",
    "unregister_model",
    "registered_specs",
    "official_hashes",
]

HF_REPO = "ShilongLiu/GroundingDINO"
_GITHUB_RELEASES = "https://github.com/IDEA-Research/GroundingDINO/releases/download"
_SAM_BASE = "https://dl.fbaipublicfiles.com/segment_anything"

#: family -> the argument name users know it by.
FAMILIES = {"sam": "sam_type", "gdino": "gdino_type"}


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


#: family -> the engine class (``"module:Class"``) its entries use unless they name another.
DEFAULT_ENGINES = {
    "sam": "lang_sam.models.segmenter:SamSegmenter",
    "gdino": "lang_sam.models.detector:GroundingDINODetector",
}


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: where a checkpoint comes from, what network it fits, what runs it.

    ``family`` is the slot the model fills and the argument users name it by (:data:`FAMILIES`):
    ``"sam"`` for segmenters (``sam_type``), ``"gdino"`` for detectors (``gdino_type``).
    ``arch`` is whatever the engine builds its network from (:class:`SamArch`, :class:`GDinoArch`,
    or a new family's own). ``engine`` names the class that loads and runs it,
    ``"package.module:Class"``, implementing :class:`lang_sam.models.base.Segmenter` or
    ``Detector`` (default: :data:`DEFAULT_ENGINES` of the family); it is imported only when the
    model is loaded.
    """

    family: str  # "sam" or "gdino"
    name: str
    filename: str
    arch: Any
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    hf_repo: str | None = None
    engine: str = ""
    #: A model stored as a folder (hub layout): the files it holds; ``filename`` is then the
    #: folder's name, and each file is fetched from ``hf_repo``. Empty: one checkpoint file.
    files: tuple[str, ...] = ()
    #: The hub repository is gated (its licence must be accepted): downloads need an access token.
    gated: bool = False
    #: The licence of the weights, as users should see it (``lang-sam info``, the docs).
    licence: str = ""

    def __post_init__(self) -> None:
        if not self.engine and self.family in DEFAULT_ENGINES:
            object.__setattr__(self, "engine", DEFAULT_ENGINES[self.family])

    def sources(self) -> list[str]:
        """Download URLs in the order they are tried: a URL the user wrote into ``SAM_MODELS`` /
        ``GDINO_MODELS`` (as 2023 code did, to point at a mirror) first, then the Hugging Face hub,
        if any, then the registered URLs. The sha256, where known, is checked whatever the source."""
        out = []
        override = _user_url(self)
        if override:
            out.append(override)
        if self.hf_repo and not self.files:
            out.append(f"{hf_endpoint()}/{self.hf_repo}/resolve/main/{self.filename}")
        elif self.hf_repo:
            out.append(f"{hf_endpoint()}/{self.hf_repo}")
        out.extend(u for u in self.urls if u not in out)
        return out


_SWINT = "GroundingDINO_SwinT_OGC.py"
_SWINB = "GroundingDINO_SwinB_cfg.py"

_REGISTRY: dict[str, dict[str, ModelSpec]] = {"sam": {}, "gdino": {}}

#: SAM type -> official checkpoint URL (the original's public dict; kept in step with the registry).
SAM_MODELS: dict[str, str] = {}
#: GroundingDINO type -> primary checkpoint URL (Hugging Face hub), likewise.
GDINO_MODELS: dict[str, str] = {}
DEFAULT_SAM = "vit_h"
DEFAULT_GDINO = "swinb"
#: The SAM type that follows objects through a video when none is named (``lang-sam track``, its
#: Ray run): a SAM 2.1 (lang-sam v0.2's default size), since :data:`DEFAULT_SAM`, SAM v1, cannot.
DEFAULT_TRACK_SAM = "sam2.1_hiera_small"


#: What register_model wrote into the public dicts, to tell a user's edit from our own value.
_PUBLISHED: dict[tuple[str, str], str] = {}


def _public_dict(family: str) -> dict[str, str]:
    return SAM_MODELS if family == "sam" else GDINO_MODELS


def _user_url(spec: "ModelSpec") -> str | None:
    """The URL a user put in ``SAM_MODELS`` / ``GDINO_MODELS`` for ``spec`` (None if untouched);
    anything but an http(s) URL there raises :class:`~lang_sam.errors.InvalidModelSourceError`."""
    key = (spec.family, spec.name)
    if key not in _PUBLISHED:
        return None
    value = _public_dict(spec.family).get(spec.name, _PUBLISHED[key])
    if value == _PUBLISHED[key]:
        return None
    return _check_public_value(spec, value)


def _check_public_value(spec: "ModelSpec", value) -> str:
    from lang_sam.errors import InvalidModelSourceError
    from lang_sam.settings import ENV_WEIGHTS_DIR

    table = "SAM_MODELS" if spec.family == "sam" else "GDINO_MODELS"
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return value
    raise InvalidModelSourceError(
        f"{table}[{spec.name!r}] = {value!r}: only an http(s) URL of a mirror of "
        f"{spec.filename} can go there (it is then downloaded from it, sha256 checked). For a local "
        f"file, put it in a folder named by {ENV_WEIGHTS_DIR}, or pass its path (ckpt_path=...).",
        table=table, model=spec.name, value=value)


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add a model type to the registry (and to ``SAM_MODELS`` / ``GDINO_MODELS``)."""
    if spec.family not in _REGISTRY:
        raise InvalidArgumentError(f"family must be 'sam' or 'gdino', got {spec.family!r}")
    table = _REGISTRY[spec.family]
    if spec.name in table and not overwrite:
        raise InvalidArgumentError(f"{spec.family} model {spec.name!r} is already registered")
    table[spec.name] = spec
    _PUBLISHED.pop((spec.family, spec.name), None)
    sources = spec.sources()
    _public_dict(spec.family)[spec.name] = _PUBLISHED[spec.family, spec.name] = sources[0] if sources else ""
    return spec


def unregister_model(family: str, name: str) -> None:
    """Remove a model type added with :func:`register_model`."""
    _REGISTRY[family].pop(name, None)
    _public_dict(family).pop(name, None)
    _PUBLISHED.pop((family, name), None)


def get_spec(family: str, name: str | None) -> ModelSpec:
    """Return the registry entry for ``name`` (``None`` means the family's default).

    Raises :class:`UnknownModelError` (a ``ValueError``) listing the registered names.
    """
    if family not in _REGISTRY:
        raise InvalidArgumentError(f"family must be 'sam' or 'gdino', got {family!r}")
    if name is None:
        name = DEFAULT_SAM if family == "sam" else DEFAULT_GDINO
    table = _REGISTRY[family]
    if not isinstance(name, str) or name not in table:
        raise UnknownModelError(
            f"unknown {FAMILIES[family]} {name!r}: expected one of {sorted(table)}"
        )
    return table[name]


def model_names(family: str) -> list[str]:
    """The registered type names of ``family``, sorted."""
    return sorted(_REGISTRY[family])


def registered_specs(family: str) -> list[ModelSpec]:
    """The registered entries of ``family``, in registration order."""
    return list(_REGISTRY[family].values())


def official_hashes() -> set[str]:
    """The sha256 of every registered checkpoint that has a published one."""
    return {s.sha256 for t in _REGISTRY.values() for s in t.values() if s.sha256}


for _name, _arch, _file, _sha in (
    ("vit_h", SamArch(1280, 32, 16, (7, 15, 23, 31)), "sam_vit_h_4b8939.pth",
     "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    ("vit_l", SamArch(1024, 24, 16, (5, 11, 17, 23)), "sam_vit_l_0b3195.pth",
     "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    ("vit_b", SamArch(768, 12, 12, (2, 5, 8, 11)), "sam_vit_b_01ec64.pth",
     "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
):
    register_model(ModelSpec("sam", _name, _file, _arch, urls=(f"{_SAM_BASE}/{_file}",), sha256=_sha))

# SAM 2.1 (Meta, 2024-09-28 release, Apache-2.0): ``{"model": state_dict}`` files in Meta's layout,
# converted to transformers' Sam2 layout at load time (lang_sam.models.sam2). Meta publishes no
# sha256 for these files (not in the sam2 repository, its download script or release notes; none
# found on the web either), so, like swinb, they are size-checked by HTTP only.
_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_SAM2_ENGINE = "lang_sam.models.sam2:Sam2Segmenter"
for _name, _arch2 in (
    ("sam2.1_hiera_tiny", Sam2Arch(96, 1, (1, 2, 7, 2), (5, 7, 9), meta_config="sam2.1_hiera_t.yaml")),
    ("sam2.1_hiera_small", Sam2Arch(96, 1, (1, 2, 11, 2), (7, 10, 13), meta_config="sam2.1_hiera_s.yaml")),
    ("sam2.1_hiera_base_plus", Sam2Arch(112, 2, (2, 3, 16, 3), (12, 16, 20),
                                        window_pos_embed_bkg_spatial_size=(14, 14),
                                        meta_config="sam2.1_hiera_b+.yaml")),
    ("sam2.1_hiera_large", Sam2Arch(144, 2, (2, 6, 36, 4), (23, 33, 43), window_spec=(8, 4, 16, 8),
                                    meta_config="sam2.1_hiera_l.yaml")),
):
    register_model(ModelSpec("sam", _name, f"{_name}.pt", _arch2, urls=(f"{_SAM2_BASE}/{_name}.pt",),
                             sha256=None, engine=_SAM2_ENGINE))

register_model(ModelSpec(
    "gdino", "swinb", "groundingdino_swinb_cogcoor.pth", GDinoArch(_SWINB),
    urls=(f"{_GITHUB_RELEASES}/v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",),
    sha256=None,  # not published alongside the release; the file is still size-checked by HTTP
    hf_repo=HF_REPO,
))
register_model(ModelSpec(
    "gdino", "swint", "groundingdino_swint_ogc.pth", GDinoArch(_SWINT),
    urls=(f"{_GITHUB_RELEASES}/v0.1.0-alpha/groundingdino_swint_ogc.pth",),
    sha256="3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799",
    hf_repo=HF_REPO,
))

register_model(ModelSpec(
    "sam", "sam3", "sam3", HubArch("sam3", ("sam3_video",)), hf_repo="facebook/sam3", files=SAM3_FILES, gated=True,
    engine="lang_sam.models.sam3:Sam3Segmenter",
    licence="SAM License (Meta; gated on the hub: request access)",
))
