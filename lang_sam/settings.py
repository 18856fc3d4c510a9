"""Every environment setting lang-sam reads, in one place, read when asked (never at import).

| variable | meaning |
| --- | --- |
| ``LANG_SAM_WEIGHTS_DIR`` | a folder looked in first for checkpoints; downloads go there when set |
| ``LANG_SAM_OFFLINE`` (or ``HF_HUB_OFFLINE``) | ``1``: never touch the network |
| ``LANG_SAM_TRUST_CHECKPOINTS`` | ``1``: allow checkpoints that need full unpickling |
| ``LANG_SAM_MAX_IMAGE_PIXELS`` | the largest image (width x height) the library decodes |
| ``LANG_SAM_API_KEY`` | the key the HTTP server and the demo require (``lang-sam serve --api-key``) |
| ``HF_ENDPOINT`` | a Hugging Face mirror for GroundingDINO and SAM 3 downloads |
| ``HF_TOKEN`` | a Hugging Face access token, sent for gated repositories (SAM 3) |
| ``HF_HUB_CACHE`` / ``HF_HOME`` | where the Hugging Face cache is looked in |
| ``TORCH_HOME`` | where the torch hub cache is (through ``torch.hub.get_dir``) |
"""

from __future__ import annotations

import os
from pathlib import Path

from lang_sam.errors import InvalidSettingError

__all__ = [
    "ENV_WEIGHTS_DIR",
    "ENV_OFFLINE",
    "ENV_TRUST",
    "ENV_MAX_PIXELS",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "is_offline",
    "weights_dir",
    "trust_checkpoints",
    "hf_endpoint",
    "hf_token",
    "hf_cache_dir",
    "torch_hub_checkpoints",
    "max_image_pixels",
    "ENV_API_KEY",
    "api_key",
    "ENV_NAMES",
    "environment",
]

ENV_WEIGHTS_DIR = "LANG_SAM_WEIGHTS_DIR"
ENV_OFFLINE = "LANG_SAM_OFFLINE"
ENV_TRUST = "LANG_SAM_TRUST_CHECKPOINTS"
ENV_MAX_PIXELS = "LANG_SAM_MAX_IMAGE_PIXELS"
ENV_API_KEY = "LANG_SAM_API_KEY"

#: The default pixel limit for decoding an image: 256 megapixels (16000x16000), about 0.75 GB of
#: RGB. Pillow's own guard (about 179 MP) is replaced by this one for the library's reads.
DEFAULT_MAX_IMAGE_PIXELS = 256_000_000

#: Every environment variable lang-sam reads (the table above), for handing to worker processes.
ENV_NAMES = (
    ENV_WEIGHTS_DIR, ENV_OFFLINE, ENV_TRUST, ENV_MAX_PIXELS, "HF_HUB_OFFLINE", "HF_ENDPOINT",
    "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "TORCH_HOME", "HF_TOKEN",
)


def environment() -> dict[str, str]:
    """The variables of :data:`ENV_NAMES` that are set in this process, name -> value.

    The Ray path passes them to its workers, which on a cluster do not inherit the driver's
    environment, so that weights resolve and images are checked alike everywhere.
    """
    return {name: os.environ[name] for name in ENV_NAMES if name in os.environ}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """True when ``LANG_SAM_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return _truthy(os.environ.get(ENV_OFFLINE)) or _truthy(os.environ.get("HF_HUB_OFFLINE"))


def weights_dir() -> Path | None:
    """The folder named by ``LANG_SAM_WEIGHTS_DIR``, or None."""
    value = os.environ.get(ENV_WEIGHTS_DIR)
    return Path(value).expanduser() if value else None


def trust_checkpoints() -> bool:
    """True when ``LANG_SAM_TRUST_CHECKPOINTS`` is set to 1/true/yes/on."""
    return _truthy(os.environ.get(ENV_TRUST))


def hf_endpoint() -> str:
    """The Hugging Face endpoint (``HF_ENDPOINT``, default ``https://huggingface.co``)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_token() -> str | None:
    """A Hugging Face access token: ``HF_TOKEN`` (or the older ``HUGGING_FACE_HUB_TOKEN``), else
    the one ``huggingface-cli login`` stored (read from its file, no network), else None."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token.strip() or None
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    path = os.environ.get("HF_TOKEN_PATH") or os.path.join(os.path.expanduser(home), "token")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def hf_cache_dir() -> str | None:
    """The Hugging Face hub cache folder from ``HF_HUB_CACHE`` / ``HF_HOME``, or None (its default).

    Read now, not at huggingface_hub's import (older releases freeze it then).
    """
    cache_dir = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not cache_dir and os.environ.get("HF_HOME"):
        cache_dir = os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return cache_dir or None


def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (honours ``TORCH_HOME``): where the original put SAM."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def max_image_pixels() -> int | None:
    """The largest image, in pixels, the library decodes (``LANG_SAM_MAX_IMAGE_PIXELS``).

    ``0`` or ``none`` turns the limit off; unset gives :data:`DEFAULT_MAX_IMAGE_PIXELS`. A value that
    is not an integer raises ``ValueError`` naming the variable.
    """
    raw = os.environ.get(ENV_MAX_PIXELS)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_IMAGE_PIXELS
    if raw.strip().lower() in {"0", "none", "off"}:
        return None
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise InvalidSettingError(
            f"{ENV_MAX_PIXELS} must be a whole number of pixels (or 0 for no limit), got {raw!r}",
            name=ENV_MAX_PIXELS, value=raw,
        ) from None
    if value < 0:
        raise InvalidSettingError(f"{ENV_MAX_PIXELS} must be >= 0, got {value}", name=ENV_MAX_PIXELS, value=raw)
    return value or None


def api_key() -> str | None:
    """The key the HTTP server and the web demo require (``LANG_SAM_API_KEY``), or None when it is
    unset or blank. Surrounding white space is ignored."""
    value = (os.environ.get(ENV_API_KEY) or "").strip()
    return value or None
