"""What the hub needs to find and fetch a model's file: the :class:`ModelSpec` record (name, file,
download sources, sha256, and an architecture it treats as opaque), and the original's public
name -> URL tables, ``SAM_MODELS`` and ``GDINO_MODELS``, where a user may point a model at a mirror.

The entries themselves are declared by the model families (``lang_sam/models/<family>.py``) and
collected by :mod:`lang_sam.models.registry`, which publishes each one here (:func:`publish`): the
hub never imports the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lang_sam.settings import hf_endpoint

__all__ = [
    "ModelSpec",
    "FAMILIES",
    "SAM_MODELS",
    "GDINO_MODELS",
    "publish",
    "unpublish",
    "official_hashes",
]

#: family -> the argument name users know it by.
FAMILIES = {"sam": "sam_type", "gdino": "gdino_type"}


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: where a checkpoint comes from, what network it fits, what runs it.

    ``family`` is the slot the model fills and the argument users name it by (:data:`FAMILIES`):
    ``"sam"`` for segmenters (``sam_type``), ``"gdino"`` for detectors (``gdino_type``).
    ``arch`` is whatever the engine builds its network from (``SamArch`` of
    :mod:`lang_sam.models.segmenter`, ``GDinoArch`` of :mod:`lang_sam.models.detector`, or a new
    family's own); the hub never reads it. ``engine`` names the class that loads and runs it,
    ``"package.module:Class"``, implementing :class:`lang_sam.models.base.Segmenter` or
    ``Detector``; empty, the family's default (:data:`lang_sam.models.registry.DEFAULT_ENGINES`,
    filled in by :func:`~lang_sam.models.registry.register_model`). It is imported only when the
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

    def sources(self) -> list[str]:
        """Download URLs in the order they are tried: a URL the user wrote into ``SAM_MODELS`` /
        ``GDINO_MODELS`` (as 2023 code did, to point at a mirror) first, then the Hugging Face hub,
        if any, then the registered URLs. The sha256, where known, is checked whatever the source.

        Raises:
            InvalidModelSourceError: the user's ``SAM_MODELS`` / ``GDINO_MODELS`` value for this
                model is not an http(s) URL.
        """
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


#: SAM type -> official checkpoint URL (the original's public dict; kept in step with the registry).
SAM_MODELS: dict[str, str] = {}
#: GroundingDINO type -> primary checkpoint URL (Hugging Face hub), likewise.
GDINO_MODELS: dict[str, str] = {}

#: What :func:`publish` wrote into the public dicts, to tell a user's edit from our own value, and
#: each published entry's sha256 (:func:`official_hashes`).
_PUBLISHED: dict[tuple[str, str], str] = {}
_HASHES: dict[tuple[str, str], str] = {}


def _public_dict(family: str) -> dict[str, str]:
    return SAM_MODELS if family == "sam" else GDINO_MODELS


def _user_url(spec: ModelSpec) -> str | None:
    """The URL a user put in ``SAM_MODELS`` / ``GDINO_MODELS`` for ``spec`` (None if untouched);
    anything but an http(s) URL there raises :class:`~lang_sam.errors.InvalidModelSourceError`."""
    key = (spec.family, spec.name)
    if key not in _PUBLISHED:
        return None
    value = _public_dict(spec.family).get(spec.name, _PUBLISHED[key])
    if value == _PUBLISHED[key]:
        return None
    return _check_public_value(spec, value)


def _check_public_value(spec: ModelSpec, value) -> str:
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


def publish(spec: ModelSpec) -> None:
    """Write ``spec``'s first download source into ``SAM_MODELS`` / ``GDINO_MODELS`` and record its
    sha256 as official (what :func:`~lang_sam.models.registry.register_model` does for each entry).
    A value the user had written for this name is replaced."""
    key = (spec.family, spec.name)
    _PUBLISHED.pop(key, None)
    sources = spec.sources()
    _public_dict(spec.family)[spec.name] = _PUBLISHED[key] = sources[0] if sources else ""
    _HASHES.pop(key, None)
    if spec.sha256:
        _HASHES[key] = spec.sha256


def unpublish(family: str, name: str) -> None:
    """Forget what :func:`publish` wrote for ``family`` / ``name`` (nothing if it wrote nothing)."""
    _public_dict(family).pop(name, None)
    _PUBLISHED.pop((family, name), None)
    _HASHES.pop((family, name), None)


def official_hashes() -> set[str]:
    """The sha256 of every published checkpoint that has one (:func:`publish`)."""
    return set(_HASHES.values())
