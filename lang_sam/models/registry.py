"""The model registry: one entry per model type, mapping its name to a file name, download
sources, sha256, network architecture and engine (as torchvision / timm weight registries do).

The entries are declared by the family modules (``SPECS`` of :mod:`lang_sam.models.segmenter`,
:mod:`lang_sam.models.sam2`, :mod:`lang_sam.models.sam3`, :mod:`lang_sam.models.detector`) and
collected when :mod:`lang_sam.models` is imported; a plugin adds its own with
:func:`register_model`. Each entry is published to the hub (:func:`lang_sam.hub.spec.publish`), which
keeps ``SAM_MODELS`` and ``GDINO_MODELS`` (name -> primary URL, the original's public dicts) in step.

Which model fills a slot when none is named is a property of the registry too
(:func:`default_model`): the image segmenter and detector, and the segmenter that tracks.
"""

from __future__ import annotations

from dataclasses import replace

from lang_sam.errors import InvalidArgumentError, UnknownModelError
from lang_sam.hub.spec import FAMILIES, ModelSpec, publish, unpublish

__all__ = [
    "DEFAULT_ENGINES",
    "DEFAULTS",
    "DEFAULT_SAM",
    "DEFAULT_GDINO",
    "DEFAULT_TRACK_SAM",
    "default_model",
    "get_spec",
    "model_names",
    "register_model",
    "unregister_model",
    "registered_specs",
]

#: family -> the engine class (``"module:Class"``) its entries use unless they name another.
DEFAULT_ENGINES = {
    "sam": "lang_sam.models.segmenter:SamSegmenter",
    "gdino": "lang_sam.models.detector:GroundingDINODetector",
}

#: (family, task) -> the model type used when none is named. ``"image"``: ``LangSAM()``'s; ``"track"``:
#: the SAM type that follows objects through a video (``lang-sam track``, its Ray run), a SAM 2.1
#: (lang-sam v0.2's default size), since the image default, SAM v1, cannot.
DEFAULTS: dict[tuple[str, str], str] = {
    ("sam", "image"): "vit_h",
    ("gdino", "image"): "swinb",
    ("sam", "track"): "sam2.1_hiera_small",
}
DEFAULT_SAM = DEFAULTS["sam", "image"]
DEFAULT_GDINO = DEFAULTS["gdino", "image"]
DEFAULT_TRACK_SAM = DEFAULTS["sam", "track"]

_REGISTRY: dict[str, dict[str, ModelSpec]] = {"sam": {}, "gdino": {}}


def _check_family(family: str) -> dict[str, ModelSpec]:
    if family not in _REGISTRY:
        raise InvalidArgumentError(f"family must be 'sam' or 'gdino', got {family!r}")
    return _REGISTRY[family]


def default_model(family: str, task: str = "image") -> str:
    """The type name used for ``family`` when none is named, for ``task`` (``"image"`` or
    ``"track"``; :data:`DEFAULTS`).

    Raises:
        InvalidArgumentError: ``family`` is not ``"sam"`` / ``"gdino"``, or it has no default for
            ``task``.
    """
    _check_family(family)
    if (family, task) not in DEFAULTS:
        raise InvalidArgumentError(f"no default {family} model for task {task!r}: "
                                   f"expected one of {sorted(t for f, t in DEFAULTS if f == family)}")
    return DEFAULTS[family, task]


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> ModelSpec:
    """Add a model type to the registry (and to ``SAM_MODELS`` / ``GDINO_MODELS``); returns the
    stored entry (``spec``, with the family's :data:`DEFAULT_ENGINES` entry as ``engine`` if it
    names none).

    Raises:
        InvalidArgumentError: ``spec.family`` is not ``"sam"`` / ``"gdino"``, or the name is taken
            and ``overwrite`` is false.
    """
    table = _check_family(spec.family)
    if spec.name in table and not overwrite:
        raise InvalidArgumentError(f"{spec.family} model {spec.name!r} is already registered")
    if not spec.engine:
        spec = replace(spec, engine=DEFAULT_ENGINES[spec.family])
    table[spec.name] = spec
    publish(spec)
    return spec


def unregister_model(family: str, name: str) -> None:
    """Remove a model type added with :func:`register_model` (nothing if it is not registered).

    Raises:
        KeyError: ``family`` is not ``"sam"`` / ``"gdino"``.
    """
    _REGISTRY[family].pop(name, None)
    unpublish(family, name)


def get_spec(family: str, name: str | None) -> ModelSpec:
    """Return the registry entry for ``name`` (``None`` means the family's image default,
    :func:`default_model`).

    Raises:
        InvalidArgumentError: ``family`` is not ``"sam"`` / ``"gdino"``.
        UnknownModelError: (a ``ValueError``) ``name`` is not registered; the message lists the
            registered names.
    """
    table = _check_family(family)
    if name is None:
        name = DEFAULTS[family, "image"]
    if not isinstance(name, str) or name not in table:
        raise UnknownModelError(
            f"unknown {FAMILIES[family]} {name!r}: expected one of {sorted(table)}"
        )
    return table[name]


def model_names(family: str) -> list[str]:
    """The registered type names of ``family``, sorted.

    Raises:
        KeyError: ``family`` is not ``"sam"`` / ``"gdino"``.
    """
    return sorted(_REGISTRY[family])


def registered_specs(family: str) -> list[ModelSpec]:
    """The registered entries of ``family``, in registration order.

    Raises:
        KeyError: ``family`` is not ``"sam"`` / ``"gdino"``.
    """
    return list(_REGISTRY[family].values())
