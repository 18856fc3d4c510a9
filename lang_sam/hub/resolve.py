"""Finding a checkpoint: one fixed resolution order, stopping at the first hit.

1. an explicit path (``ckpt_path=`` / ``gdino_ckpt_path=``; a folder holding the canonical name works);
2. ``$LANG_SAM_WEIGHTS_DIR/<filename>`` (a folder you fill yourself, e.g. on an air-gapped machine);
3. the caches the original ``lang-segment-anything`` used, so existing downloads are reused:
   ``torch.hub.get_dir()/checkpoints/<filename>`` (honours ``TORCH_HOME``; where
   ``torch.hub.load_state_dict_from_url`` put SAM) and the Hugging Face cache (honours ``HF_HOME`` /
   ``HF_HUB_CACHE``; where ``hf_hub_download`` put GroundingDINO);
4. a download (:func:`lang_sam.hub.download.download_file`), unless offline mode is on
   (``LANG_SAM_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``). Downloads go to ``$LANG_SAM_WEIGHTS_DIR`` if
   set, else the torch hub checkpoints folder.

Nothing here touches the network at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lang_sam.errors import WeightsNotFoundError
from lang_sam.hub.download import download_file
from lang_sam.hub.registry import ModelSpec
from lang_sam.settings import (
    ENV_OFFLINE,
    ENV_WEIGHTS_DIR,
    hf_cache_dir,
    is_offline,
    torch_hub_checkpoints,
    weights_dir,
)

logger = logging.getLogger(__name__)

__all__ = ["download_dir", "candidate_paths", "resolve_checkpoint"]


def download_dir() -> Path:
    """Where downloads are written: ``$LANG_SAM_WEIGHTS_DIR`` or the torch hub checkpoints folder."""
    return weights_dir() or torch_hub_checkpoints()


def _hf_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface-hub is a dependency
        return None
    try:
        found = try_to_load_from_cache(repo_id=repo, filename=filename, cache_dir=hf_cache_dir())
    except Exception as exc:  # a malformed cache must not stop a local load
        logger.debug("Hugging Face cache lookup failed: %s", exc)
        return None
    return Path(found) if isinstance(found, str) else None


def candidate_paths(spec: ModelSpec) -> list[Path]:
    """Every place, in resolution order, where an existing copy of ``spec`` is looked for."""
    out = []
    wd = weights_dir()
    if wd is not None:
        out.append(wd / spec.filename)
    out.append(torch_hub_checkpoints() / spec.filename)
    if spec.hf_repo:
        hf = _hf_cached(spec.hf_repo, spec.filename)
        if hf is not None:
            out.append(hf)
    return out


def resolve_checkpoint(
    spec: ModelSpec,
    path: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    download_to: str | os.PathLike | None = None,
) -> Path:
    """Find (or fetch) the checkpoint for ``spec`` following the module's resolution order.

    ``download_to`` names a folder looked in first and downloaded into, instead of
    :func:`download_dir` (``lang-sam download --to``).
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / spec.filename
        if not p.is_file():
            raise WeightsNotFoundError(
                f"checkpoint file not found: {str(p)!r} (expected the {spec.family} "
                f"{spec.name!r} checkpoint, canonically named {spec.filename!r})"
            )
        return p
    target = Path(download_to).expanduser() if download_to is not None else download_dir()
    looked = candidate_paths(spec)
    if download_to is not None:
        looked.insert(0, target / spec.filename)
    for p in looked:
        if p.is_file():
            logger.debug("%s %s resolved to %s", spec.family, spec.name, p)
            return p
    where = ", ".join(str(p.parent) for p in looked)
    if is_offline():
        raise WeightsNotFoundError(
            f"{spec.filename} ({spec.family} {spec.name!r}) is not on disk and offline mode is on "
            f"({ENV_OFFLINE} / HF_HUB_OFFLINE). Looked in: {where}. Copy the file into "
            f"${ENV_WEIGHTS_DIR} or {torch_hub_checkpoints()}, or pass its path explicitly."
        )
    sources = spec.sources()
    if not sources:
        raise WeightsNotFoundError(
            f"{spec.filename} ({spec.family} {spec.name!r}) is not on disk (looked in: {where}) and "
            "the registry names no source to download it from; pass its path explicitly."
        )
    return download_file(sources, target / spec.filename, sha256=spec.sha256, progress=progress)
